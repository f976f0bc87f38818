// What every benchmark reports the same way: the machine it ran on, a
// fixed-width table, bench/results/<name>.json and its own section of
// BENCHMARKS.md. Kept in one place so that the sections stay comparable.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const REPO_ROOT = dirname(BENCH_DIR);
export const BENCHMARKS_FILE = join(REPO_ROOT, 'BENCHMARKS.md');

/** A failure the user can act on: printed as one message, exit code 1, no stack. */
export class BenchError extends Error {}

export interface Machine {
  kernel: string;
  cpu: string;
  cpus: number;
  node: string;
  clang: string;
}

/** One entry of bench/results/<name>.json. */
export interface ResultEntry {
  name: string;
  value: number;
  unit: string;
  [detail: string]: string | number | boolean | null;
}

export function rel(path: string): string {
  return relative(REPO_ROOT, path);
}

/** A BenchError for a failed command, with its stderr, or what to install when it is missing. */
export function commandError(what: string, e: unknown, missingHint = 'run make deps'): BenchError {
  const err = e as NodeJS.ErrnoException & { stderr?: Buffer | string; path?: string };
  if (err.code === 'ENOENT') return new BenchError(`${what}: ${err.path ?? 'command'} not found; ${missingHint}`);
  const detail = err.stderr?.toString().trim() || err.message;
  return new BenchError(`${what}:\n${detail}`);
}

export function machine(): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux-like /proc: keep what Node reports
  }
  let clang: string;
  try {
    clang = execFileSync('clang', ['--version'], { encoding: 'utf8' }).split('\n')[0]?.trim() ?? 'unknown';
  } catch (e) {
    throw commandError('clang --version failed', e);
  }
  return { kernel: os.release(), cpu, cpus: os.cpus().length, node: process.version, clang };
}

/** The "Machine:" line of a BENCHMARKS.md section. */
export function machineText(m: Machine): string {
  return `Linux ${m.kernel}, ${m.cpu}, ${m.cpus} CPUs; Node ${m.node}; ${m.clang}`;
}

export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const hi = sorted[mid] ?? NaN;
  return sorted.length % 2 ? hi : ((sorted[mid - 1] ?? NaN) + hi) / 2;
}

/** Nearest-rank percentile (p in 0-100) of values sorted ascending: always a measured value, never an interpolation. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? NaN;
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Two significant digits: rates a reader can repeat (a bisection's midpoint). */
export function roundRate(x: number): number {
  const p = 10 ** (Math.floor(Math.log10(x)) - 1);
  return Math.round(x / p) * p;
}

/** A rate as 250k or 1.5M; '-' for NaN (no target rate). */
export function rateLabel(r: number): string {
  if (Number.isNaN(r)) return '-';
  return r >= 1e6 ? `${round2(r / 1e6)}M` : `${round2(r / 1e3)}k`;
}

/** The Command, Date and Machine lines every BENCHMARKS.md section starts with; load: the 1-minute load average when the bench started, if it reports one. */
export function sectionFacts(name: string, date: string, m: Machine, load?: number, extra = ''): string[] {
  const loadText = load === undefined ? '' : `; 1-minute load average ${load.toFixed(2)} when the bench started`;
  return [`- Command: \`make bench-${name}\` (as root, after \`make build\`)`, `- Date: ${date}`, `- Machine: ${machineText(m)}${loadText}${extra}`];
}

/** Thousands separators, as the tables and sections print counts. */
export function count(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/** A fixed-width text table: numeric columns right-aligned, the others left-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], numeric: readonly boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Writes bench/results/<name>.json; returns its path. */
export function writeResults(name: string, entries: readonly ResultEntry[]): string {
  const file = join(BENCH_DIR, 'results', `${name}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(entries, null, 2)}\n`);
  return file;
}

/** Replaces the section from `heading` to the next `## ` heading, or appends it; other sections are kept as they are. */
export function updateBenchmarks(heading: string, text: string): void {
  const body = text.endsWith('\n') ? text : `${text}\n`;
  if (!existsSync(BENCHMARKS_FILE)) {
    writeFileSync(BENCHMARKS_FILE, `# Benchmarks\n\nEach section is written by the benchmark named in it.\n\n${body}`);
    return;
  }
  const lines = readFileSync(BENCHMARKS_FILE, 'utf8').split('\n');
  const start = lines.findIndex((l) => l.trimEnd() === heading);
  if (start < 0) {
    const doc = lines.join('\n').trimEnd();
    writeFileSync(BENCHMARKS_FILE, `${doc}\n\n${body}`);
    return;
  }
  let end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  if (end < 0) end = lines.length;
  const before = lines.slice(0, start).join('\n');
  const after = lines.slice(end).join('\n');
  writeFileSync(BENCHMARKS_FILE, `${before}${before ? '\n' : ''}${body}${after ? `\n${after}` : ''}`);
}

/** PW_BENCH_SMOKE=1: every bench runs its real code paths at a tiny size and writes nothing (`make test` does this). */
export const SMOKE = process.env.PW_BENCH_SMOKE === '1';

/**
 * A bench's last step: writes bench/results/<name>.json and its section of
 * BENCHMARKS.md, or, in a smoke run, says what ran and writes nothing.
 */
export function publish(name: string, heading: string, entries: () => readonly ResultEntry[], section: () => string, smokeSize: string): void {
  if (SMOKE) {
    console.log(`smoke run (PW_BENCH_SMOKE=1, ${smokeSize}): nothing written`);
    return;
  }
  const resultsFile = writeResults(name, entries());
  updateBenchmarks(heading, section());
  console.log(`wrote ${rel(resultsFile)} and the "${heading.slice(3)}" section of ${rel(BENCHMARKS_FILE)}`);
}

/** Runs a benchmark's main: a BenchError becomes `bench-<name>: message` on stderr and exit code 1. */
export async function runBench(name: string, main: () => void | Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (!(e instanceof BenchError)) throw e;
    console.error(`bench-${name}: ${e.message}`);
    process.exitCode = 1;
  }
}
