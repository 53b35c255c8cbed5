import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { bufferConformance } from './buffer-conformance.js';

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-buffer-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

bufferConformance('SQLite (WAL, synchronous=FULL, a real file)', {
  open: async () => new SqliteBuffer(join(dir, `buffer-${++n}.db`)),
  reopen: async (b) => {
    await b.close();
    return new SqliteBuffer((b as SqliteBuffer).path);
  },
});
