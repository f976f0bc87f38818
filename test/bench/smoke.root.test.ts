// Every benchmark once at a tiny size (PW_BENCH_SMOKE=1), so that none of
// them rots between `make bench` runs: each must run its real code paths
// (real processes, real packets), exit 0, print its table, and write nothing
// (BENCHMARKS.md and the results files stay as they were).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BENCH = join(ROOT, 'bench');

/** The benches: every bench/<name>.ts whose main is run by runBench('<name>', ...); the summary last. */
function benches(): string[] {
  const names = readdirSync(BENCH)
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => {
      const m = /^await runBench\('([a-z-]+)', main\);$/m.exec(readFileSync(join(BENCH, f), 'utf8'));
      return m ? [m[1]!] : [];
    });
  return [...names.filter((n) => n !== 'summary').sort(), 'summary'];
}

/** What a smoke run must leave untouched. */
function written(): Record<string, string> {
  const files = [join(ROOT, 'BENCHMARKS.md'), join(BENCH, 'results.json')];
  const dir = join(BENCH, 'results');
  if (existsSync(dir)) files.push(...readdirSync(dir).map((f) => join(dir, f)));
  return Object.fromEntries(files.filter(existsSync).map((f) => [f, createHash('sha256').update(readFileSync(f)).digest('hex')]));
}

const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');

describe('benchmarks, smoke size', () => {
  const names = benches();

  test('every bench has a make target, and make bench runs them all', () => {
    const all = /^bench:([^#\n]*)/m.exec(makefile)?.[1]?.trim().split(/\s+/) ?? [];
    for (const n of names) expect(makefile).toContain(`\nbench-${n}: build`);
    // Exactly the benches found here, the summary aside (make bench runs it last, by its own recipe).
    expect([...all].sort()).toEqual(names.filter((n) => n !== 'summary').map((n) => `bench-${n}`));
  });

  test.each(names)('bench-%s runs at smoke size and writes nothing', (name) => {
    const before = written();
    const r = spawnSync(process.execPath, ['--enable-source-maps', join(BENCH, 'dist', `${name}.js`)], {
      cwd: ROOT,
      env: { ...process.env, PW_BENCH_SMOKE: '1' },
      encoding: 'utf8',
      timeout: 470_000,
      maxBuffer: 64 << 20,
    });
    const output = `${r.stdout}\n${r.stderr}`;
    expect(r.error, output).toBeUndefined();
    expect(r.status, output).toBe(0);
    // Every bench prints at least one table (a header line over a ----- rule; a narrow column may have a shorter rule).
    expect(r.stdout).toMatch(/\n-{3,}(  -+)+\n/);
    expect(r.stdout).toContain('nothing written');
    expect(written()).toEqual(before);
  }, 480_000);
});
