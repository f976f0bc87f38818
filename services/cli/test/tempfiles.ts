// Files the capture tests write: one temporary directory per test file,
// removed after its tests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export interface TempFiles {
  /** The directory (a fresh one, named after the prefix). */
  dir: string;
  /** Writes bytes to a new file in it; its path. */
  file(bytes: Buffer): string;
}

export function tempFiles(prefix: string): TempFiles {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  return {
    dir,
    file(bytes) {
      const p = join(dir, `c${files++}`);
      writeFileSync(p, bytes);
      return p;
    },
  };
}
