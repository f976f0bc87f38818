// Shared by the libbpf-ts suites: BPF fixtures compiled from test/fixtures
// into a temporary directory, packets, and unique bpffs pin directories.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Collection, ObjectSpec } from 'libbpf-ts';
import { afterAll, beforeAll } from 'vitest';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const BPF_PROG_TYPE_XDP = 6;

/** Compiled fixture objects in a temporary directory; cleanup() removes them. */
export interface CompiledFixtures {
  /** The temporary directory holding the objects. */
  readonly dir: string;
  /** Path of the compiled object of test/fixtures/<name>.bpf.c. */
  path(name: string): string;
  cleanup(): void;
}

/** Compiles test/fixtures/<name>.bpf.c for each name (call it in beforeAll). */
export function compileFixtures(...names: string[]): CompiledFixtures {
  const dir = mkdtempSync(join(tmpdir(), 'libbpf-ts-fixtures-'));
  for (const name of names) {
    execFileSync(
      'clang',
      ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(FIXTURES, `${name}.bpf.c`), '-o', join(dir, `${name}.o`)],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  }
  return {
    dir,
    path: (name) => join(dir, `${name}.o`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A bpffs directory of this test process (one per file: files run in separate forks). */
export function pinDir(suite: string): string {
  const dir = `/sys/fs/bpf/libbpf-ts-test-${process.pid}-${suite}`;
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function removePinDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A frame of len bytes 0, 1, 2, ...; XDP test runs need at least 14. */
export function packet(len: number, byte14?: number): Buffer {
  const buf = Buffer.alloc(len);
  for (let i = 0; i < len; i++) buf[i] = i & 0xff;
  if (byte14 !== undefined) buf[14] = byte14;
  return buf;
}

/**
 * test/fixtures/maps.bpf.c compiled and loaded once for a test file (the
 * hooks are registered where this is called, at the top of the file); read
 * .col and .fx inside tests and hooks.
 */
export function loadedMaps(): { readonly fx: CompiledFixtures; readonly col: Collection } {
  let fx: CompiledFixtures | undefined;
  let col: Collection | undefined;
  beforeAll(() => {
    fx = compileFixtures('maps');
    col = ObjectSpec.open(fx.path('maps')).load();
  });
  afterAll(() => {
    col?.close();
    fx?.cleanup();
  });
  const ready = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('the maps fixture is loaded in beforeAll: use it inside a test or hook');
    return v;
  };
  return {
    get fx() {
      return ready(fx);
    },
    get col() {
      return ready(col);
    },
  };
}

/** The error a call throws (fails the test when it does not throw). */
export function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to throw');
}
