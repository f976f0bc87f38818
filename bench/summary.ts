// `make bench` ends here: every benchmark's bench/results/<name>.json in one
// table, the same figures machine-readable in bench/results.json, and the
// table as the Summary section of BENCHMARKS.md. Each figure keeps the
// comparison it was measured against in its own run (a ratio), and its
// target where the performance goals set one.
//
// PW_BENCH_SMOKE=1 prints the table and writes nothing.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, BenchError, type ResultEntry, SMOKE, machine, machineText, rel, round2, runBench, table, today, updateBenchmarks } from './report.js';

const SECTION_HEADING = '## Summary';
export const RESULTS_FILE = join(BENCH_DIR, 'results.json');

/** The benches in the order `make bench` runs them, with the heading of their BENCHMARKS.md section. */
export const BENCHES: readonly (readonly [name: string, section: string])[] = [
  ['datapath', 'Datapath cost'],
  ['probe', 'Probe'],
  ['pipeline', 'Event pipeline'],
  ['detection', 'Detection to block'],
  ['leak', 'Ports leaked to a fast scanner'],
  ['memory', 'Memory'],
  ['scaling', 'Scaling'],
  ['replay', 'Replay'],
];

/** One figure of bench/results.json. */
export interface SummaryEntry {
  bench: string;
  name: string;
  value: number;
  unit: string;
  /** What the figure was compared against in the same run, or null. */
  comparison: string | null;
  comparisonValue: number | null;
  /** value / comparisonValue, or null without a comparison. */
  ratio: number | null;
  target: string | null;
  /** Whether the target was met; null without a target. */
  met: boolean | null;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Reads one bench's entries; the older spelling `baseline` is taken as `comparison`. */
export function readBench(bench: string, file: string): SummaryEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BenchError(`${rel(file)} is not JSON: ${(e as Error).message}; run make bench-${bench} again`);
  }
  if (!Array.isArray(parsed)) throw new BenchError(`${rel(file)} holds no list of results; run make bench-${bench} again`);
  return parsed.map((raw: Partial<ResultEntry> & Record<string, unknown>, i) => {
    const value = num(raw.value);
    if (typeof raw.name !== 'string' || value === null || typeof raw.unit !== 'string') {
      throw new BenchError(`${rel(file)}: entry ${i} lacks a name, a numeric value or a unit`);
    }
    const comparisonValue = num(raw.comparisonValue);
    const ratio = num(raw.ratio) ?? (comparisonValue ? round2(value / comparisonValue) : null);
    const met = typeof raw.met === 'boolean' ? raw.met : null;
    return {
      bench,
      name: raw.name,
      value,
      unit: raw.unit,
      comparison: str(raw.comparison) ?? str(raw.baseline),
      comparisonValue,
      ratio,
      target: str(raw.target) ?? (met !== null && comparisonValue !== null ? `${str(raw.comparison) ?? 'target'} ${comparisonValue}` : null),
      met,
    };
  });
}

function valueText(e: SummaryEntry): string {
  const digits = Math.abs(e.value) >= 100 ? 0 : Math.abs(e.value) >= 1 ? 2 : 3;
  return `${e.value.toLocaleString('en-US', { maximumFractionDigits: digits })} ${e.unit}`;
}

/** Every figure with a target: what the performance goals ask, and whether this run met it. */
export function targetsTable(entries: readonly SummaryEntry[]): string {
  const rows = entries
    .filter((e) => e.target !== null)
    .map((e) => [e.bench, e.name, valueText(e), e.ratio === null ? '' : `${e.ratio}x ${e.comparison ?? ''}`.trim(), e.target ?? '', e.met === null ? '' : e.met ? 'met' : 'MISSED']);
  return table(['bench', 'figure', 'value', 'ratio (same run)', 'target', 'result'], rows, [false, false, true, false, false, false]);
}

/** The other figures measured against something in the same run. */
export function comparisonsTable(entries: readonly SummaryEntry[]): string {
  const rows = entries
    .filter((e) => e.target === null && e.ratio !== null)
    .map((e) => [e.bench, e.name, valueText(e), `${e.ratio}x`, e.comparison ?? '']);
  return table(['bench', 'figure', 'value', 'ratio', 'compared with (same run)'], rows, [false, false, true, true, false]);
}

async function main(): Promise<void> {
  const entries: SummaryEntry[] = [];
  const missing: string[] = [];
  for (const [bench] of BENCHES) {
    const file = join(BENCH_DIR, 'results', `${bench}.json`);
    if (!existsSync(file)) {
      missing.push(bench);
      continue;
    }
    entries.push(...readBench(bench, file));
  }
  if (missing.length > 0 && !SMOKE) {
    throw new BenchError(`no results yet from ${missing.map((b) => `bench-${b}`).join(', ')}: run make ${missing.map((b) => `bench-${b}`).join(' ')} (or make bench)`);
  }
  const m = machine();
  const targets = targetsTable(entries);
  const comparisons = comparisonsTable(entries);
  console.log(`Benchmark summary, ${today()}: ${machineText(m)}`);
  console.log('');
  console.log(targets);
  console.log('');
  console.log(comparisons);
  const withTarget = entries.filter((e) => e.met !== null);
  const missed = withTarget.filter((e) => e.met === false);
  const verdict = `${withTarget.length} figures with a target: ${withTarget.length - missed.length} met, ${missed.length} missed`;
  console.log(`\n${verdict}.`);
  if (SMOKE) {
    console.log('smoke run (PW_BENCH_SMOKE=1): nothing written');
    return;
  }
  writeFileSync(RESULTS_FILE, `${JSON.stringify({ date: today(), machine: m, command: 'make bench', results: entries }, null, 2)}\n`);
  updateBenchmarks(
    SECTION_HEADING,
    [
      SECTION_HEADING,
      '',
      'Every figure below that has a target or a comparison, from the sections that follow (each row names its section: bench-<bench>). Comparisons were made side by side in the same run; ratio = value / the compared figure.',
      '',
      '- Command: `make bench` (as root), which runs every bench and then `node bench/dist/summary.js`',
      `- Date: ${today()}`,
      `- Machine: ${machineText(m)}`,
      `- Machine-readable: \`${rel(RESULTS_FILE)}\` (all ${entries.length} figures, one object each: bench, name, value, unit, comparison, comparisonValue, ratio, target, met)`,
      '',
      '### Targets',
      '',
      'Rows marked "policy alone" measure the policy\'s detector with the in-kernel detector off (PW_KERNEL_DETECTION=False; also the case for an N above what the XDP program takes, docs/detection.md): the fallback, not the default. Why each missed target is missed is said in its section.',
      '',
      '```text',
      targets,
      '```',
      '',
      `${verdict}${missed.length ? ` (${missed.map((e) => `${e.bench}: ${e.name}`).join('; ')})` : ''}.`,
      '',
      '### Other comparisons',
      '',
      '```text',
      comparisons,
      '```',
      '',
      '_This section is rewritten by `make bench`._',
      '',
    ].join('\n'),
  );
  console.log(`wrote ${rel(RESULTS_FILE)} and the summary in BENCHMARKS.md`);
}

await runBench('summary', main);
