// What every benchmark reports the same way: the machine it ran on, fixed-width tables, bench/results/<name>.json
// and its own section of BENCHMARKS.md, fitted to lines under 120 characters.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HarnessError, commandError } from '@packetwatch/test-support';

export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const REPO_ROOT = dirname(BENCH_DIR);
export const BENCHMARKS_FILE = join(REPO_ROOT, 'BENCHMARKS.md');
/** PW_BENCH_SMOKE=1: every bench runs its real code paths at a tiny size and writes nothing (`make test` does this). */
export const SMOKE = process.env.PW_BENCH_SMOKE === '1';
/** The longest line of BENCHMARKS.md and docs/performance.md: one screen's width. */
export const MAX_LINE = 119;

/** A failure the user can act on (@packetwatch/test-support's HarnessError): runBench prints it as one message, exit code 1, no stack. */
export { HarnessError as BenchError, commandError };

/** One entry of bench/results/<name>.json; `label`: a short name for the summary's narrow columns (else it shortens name). */
export type ResultEntry = { name: string; value: number; unit: string; [detail: string]: string | number | boolean | null };

export const rel = (path: string): string => relative(REPO_ROOT, path);

/**
 * An entry: its value against `vs` (what it was compared with and its value, the ratio rounded) and a `goal` (a target and
 * whether it was met), null where it has none; `details` follow.
 */
export function entry(name: string, value: number, unit: string, vs?: readonly [string, number] | null, goal?: readonly [string, boolean] | null, details = {}): ResultEntry {
  const [comparison, comparisonValue, ratio] = vs ? [vs[0], round2(vs[1]), round2(value / vs[1])] : [null, null, null];
  return { name, value, unit, comparison, comparisonValue, ratio, target: goal?.[0] ?? null, met: goal?.[1] ?? null, ...details };
}

export type Machine = ReturnType<typeof machine>;

export function machine() {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  let clang: string;
  try {
    clang = execFileSync('clang', ['--version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch (e) {
    throw commandError('clang --version failed', e);
  }
  return { kernel: os.release(), cpu, cpus: os.cpus().length, node: process.version, clang };
}

export const machineText = (m: Machine): string => `Linux ${m.kernel}, ${m.cpu}, ${m.cpus} CPUs; Node ${m.node}; ${m.clang}`;
export const today = (): string => new Date().toISOString().slice(0, 10);

export function median(values: readonly number[]): number {
  const [sorted, mid] = [[...values].sort((a, b) => a - b), values.length >> 1];
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0-100) of values sorted ascending: always a measured value, never an interpolation. */
export function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? NaN;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Two significant digits: rates a reader can repeat (a bisection's midpoint). */
export function roundRate(x: number): number {
  const p = 10 ** (Math.floor(Math.log10(x)) - 1);
  return Math.round(x / p) * p;
}

/** A rate as 250k or 1.5M; '-' for NaN (no target rate). */
export const rateLabel = (r: number): string => (Number.isNaN(r) ? '-' : r >= 1e6 ? `${round2(r / 1e6)}M` : `${round2(r / 1e3)}k`);

/** Thousands separators, as the tables and sections print counts. */
export const count = (n: number | bigint): string => n.toLocaleString('en-US');

/** The Command, Date and Machine lines a section starts with; load: the 1-minute load average when the bench started. */
export function sectionFacts(name: string, date: string, m: Machine, load?: number, extra = ''): string[] {
  const loadText = load === undefined ? '' : `; load average ${load.toFixed(2)} at the start`;
  return [`- Command: \`sudo make bench-${name}\` (after \`make build\`)`, `- Date: ${date}`, `- Machine: ${machineText(m)}${loadText}${extra}`];
}

/** A section of BENCHMARKS.md: its heading, what it measures, its facts (sectionFacts, the method), then its body. */
export function sectionText(heading: string, name: string, intro: string, facts: readonly string[], body: readonly string[], rewritten = 'This section is'): string {
  return [heading, '', intro, '', ...facts, '', ...body, `_${rewritten} rewritten by \`make bench-${name}\`._`, ''].join('\n');
}

/** Text in lines of at most `width` characters, broken between words; lines after the first start with `indent`. */
function wrapText(text: string, width: number, indent = ''): string[] {
  const out: string[] = [];
  let line = '';
  // A code span or a link is one word: a reader of the plain text sees it whole.
  for (const word of text.match(/(?:[^\s`[]*(?:`[^`]*`|\[[^\]]*\]\([^)]*\)))+[^\s`[]*|\S+/g) ?? ['']) {
    if (line && line.length + 1 + word.length > width - (out.length ? indent.length : 0)) {
      out.push(line);
      line = '';
    }
    line = line ? `${line} ${word}` : word;
  }
  out.push(line);
  return out.map((l, i) => (i ? indent + l : l));
}

const longestWord = (s: string) => Math.max(0, ...s.split(/\s+/).map((w) => w.length));

/**
 * A fixed-width text table: numeric columns right-aligned, the others left-aligned. Wider than maxWidth, it
 * wraps its headers first, then its text cells (between words), never a numeric cell.
 */
export function table(header: readonly string[], rows: readonly (readonly string[])[], numeric: readonly boolean[], maxWidth = MAX_LINE): string {
  const cells = (i: number) => rows.map((r) => r[i] ?? '');
  const widths = header.map((h, i) => Math.max(h.length, ...cells(i).map((c) => c.length)));
  const cellMax = (i: number, f: (c: string) => number) => Math.max(0, ...cells(i).map(f));
  const len = (c: string) => c.length;
  // What a column may narrow to, in turn: its header wrapped, its text cells wrapped, then both cut within words.
  for (let stage = 0; stage < 4; stage++) {
    const least = header.map((h, i) => Math.max(stage < 2 ? longestWord(h) : 1, numeric[i] || !stage ? cellMax(i, len) : stage < 3 ? cellMax(i, longestWord) : 1));
    while (widths.reduce((a, w) => a + w + 2, -2) > maxWidth) {
      const k = widths.reduce((best, w, i) => (w > least[i]! && (best < 0 || w > widths[best]!) ? i : best), -1);
      if (k < 0) break;
      widths[k]!--;
    }
  }
  const wrap = (s: string, w: number) => (s.length <= w ? [s] : wrapText(s, w).flatMap((l) => l.match(new RegExp(`.{1,${w}}`, 'g')) ?? ['']));
  const lines = (row: readonly string[], bottom = false): string[] => {
    const parts = widths.map((w, i) => wrap(row[i] ?? '', w));
    const height = Math.max(...parts.map((p) => p.length));
    const at = (p: string[], j: number) => (bottom ? p[j - height + p.length] : p[j]) ?? '';
    return Array.from({ length: height }, (_, j) =>
      parts
        .map((p, i) => (numeric[i] ? at(p, j).padStart(widths[i]!) : at(p, j).padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    );
  };
  return [...lines(header, true), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.flatMap((r) => lines(r))].join('\n');
}

/**
 * Markdown fitted to MAX_LINE: prose lines wrapped between words (a list item's next lines indented under its text);
 * code blocks (the tables, which table() fits as it makes them), headings, pipe tables and single words left as they are.
 */
export function fitMarkdown(md: string): string {
  const out: string[] = [];
  let code = false;
  for (const l of md.split('\n')) {
    if (l.startsWith('```')) code = !code;
    if (code || l.length <= MAX_LINE || /^(#|\||```)/.test(l) || !l.trim().includes(' ')) out.push(l);
    else {
      const lead = /^\s*/.exec(l)![0];
      const indent = ' '.repeat((/^\s*([-*]|\d+\.) /.exec(l)?.[0].length ?? lead.length) - lead.length);
      out.push(...wrapText(l, MAX_LINE - lead.length, indent).map((x) => lead + x));
    }
  }
  return out.join('\n');
}

/** Replaces the section from `heading` to the next `## ` heading with `text` fitted by fitMarkdown, or appends it. */
export function updateBenchmarks(heading: string, text: string): void {
  const fitted = fitMarkdown(text);
  const body = fitted.endsWith('\n') ? fitted : `${fitted}\n`;
  const doc = existsSync(BENCHMARKS_FILE) ? readFileSync(BENCHMARKS_FILE, 'utf8') : '# Benchmarks\n';
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => l.trimEnd() === heading);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  const updated = start < 0 ? `${doc.trimEnd()}\n\n${body}` : [...lines.slice(0, start), body, ...(end < 0 ? [] : lines.slice(end))].join('\n');
  writeFileSync(BENCHMARKS_FILE, updated);
}

/** A bench's last step: bench/results/<name>.json and its section of BENCHMARKS.md, or in a smoke run nothing. */
export function publish(name: string, heading: string, entries: () => readonly ResultEntry[], section: () => string, smokeSize: string): void {
  if (SMOKE) {
    // The figures a full run would write, so that a change to a bench can be checked to still produce each one.
    for (const e of entries()) console.log(`figure: ${e.name} [${e.unit}]${typeof e.target === 'string' ? ` target ${e.target}` : ''}`);
    console.log(`smoke run (PW_BENCH_SMOKE=1, ${smokeSize}): nothing written`);
    return;
  }
  const file = join(BENCH_DIR, 'results', `${name}.json`);
  const stamp = { date: today(), machine: machineText(machine()) };
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(entries().map((e) => ({ ...stamp, ...e })), null, 2)}\n`);
  updateBenchmarks(heading, section());
  console.log(`wrote ${rel(file)} and the "${heading.slice(3)}" section of ${rel(BENCHMARKS_FILE)}`);
}

/** Runs a benchmark's main: a BenchError becomes `bench-<name>: message` on stderr and exit code 1. */
export async function runBench(name: string, main: () => void | Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (!(e instanceof HarnessError)) throw e;
    console.error(`bench-${name}: ${e.message}`);
    process.exitCode = 1;
  }
}
