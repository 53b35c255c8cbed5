// Preload for tests (`NODE_OPTIONS=--import <this file>`): in a daemon started with it, SIGUSR2 stops
// the edge's storage thread the way a crash of that thread would (Worker.terminate), with no change to
// the daemon's own code. Send the signal only while the daemon is idle: a thread stopped inside
// SQLite's native code takes the whole process down (see docs/edge.md).
import { isMainThread } from 'node:worker_threads';
import { createRequire, syncBuiltinESMExports } from 'node:module';

if (isMainThread) {
  const threads = createRequire(import.meta.url)('node:worker_threads');
  const Original = threads.Worker;
  const storage = [];
  threads.Worker = class extends Original {
    constructor(file, options) {
      super(file, options);
      if (options?.workerData?.bufferPath) storage.push(this);
    }
  };
  syncBuiltinESMExports();
  process.on('SIGUSR2', () => {
    for (const worker of storage) void worker.terminate();
  });
}
