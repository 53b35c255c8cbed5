/**
 * A small real file system for the tests of a disk that fills up: a tmpfs of `bytes`, mounted for one
 * test file (the tests run as root, like CI; without root the mount fails and so does the test, saying
 * why: no skip). Test processes started afterwards put their data on it (OPSDB_TEST_TMP).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function mountSmallDisk(label: string, bytes: number): { path: string; unmount(): void } {
  const path = mkdtempSync(join(tmpdir(), `opsdb-${label}-`));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', path]);
  process.env.OPSDB_TEST_TMP = path;
  return {
    path,
    unmount() {
      execFileSync('umount', [path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** A bulk of 50 file records with long paths (≈ 22 KB as a transaction): fills a buffer quickly. */
export const bulkOfFiles = (executedObsUnitId: string, i: number) => ({
  executed_obs_unit_id: executedObsUnitId,
  files: Array.from({ length: 50 }, (_, k) => ({
    name: `f${i}_${k}.fits`, path: `/data/raw/${'x'.repeat(200)}/f${i}_${k}.fits`, size: 1, checksum: `c${i}_${k}`, file_type: 'fits',
  })),
});
