// `make bench` ends here: every benchmark's bench/results/<name>.json in one
// table, the same figures machine-readable in bench/results.json, and the
// table as the Summary section of BENCHMARKS.md. Each figure keeps the
// comparison it was measured against in its own run (a ratio), and its
// target where the performance goals set one.
//
// PW_BENCH_SMOKE=1 prints the table and writes nothing.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, BenchError, type ResultEntry, SMOKE, rel, round2, runBench, table, updateBenchmarks } from './report.js';

const SECTION_HEADING = '## Summary';
const OTHER_HEADING = '## Other comparisons';
export const RESULTS_FILE = join(BENCH_DIR, 'results.json');

/** The benches in the order `make bench` runs them. */
export const BENCHES = ['datapath', 'probe', 'pipeline', 'detection', 'leak', 'memory', 'scaling', 'replay'] as const;

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
  /** The entry's own short name, if it has one. */
  label: string | null;
  /** When and where the bench ran (report.ts writeResults stamps them). */
  date: string | null;
  machine: string | null;
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
      label: str(raw.label),
      date: str(raw.date),
      machine: str(raw.machine),
    };
  });
}

/** Shorter wordings for the summary's narrow columns, in order (a figure's full name stays in results.json). */
const SHORTER: readonly (readonly [RegExp, string])[] = [
  [/, same run.*$/, ''],
  [/ \([^)]*\)$/, ''],
  [/^detection to block, /, ''],
  [/^SYNs leaked after the crossing one, /, 'leaked, '],
  [/^policy RSS per tracked source, [\d,]+ sources from (\S+) \S+, N = \d+$/, 'policy bytes/source, $1'],
  [/^probe RSS max deviation from its median across a \d+ s flood$/, 'probe RSS deviation, flood'],
  [/^highest zero-loss event rate, probe \+ policy$/, 'zero-loss rate'],
  [/ vs N = \d+$/, ''],
  [/xdp-filter xdpfilt_(\w+)_ip\.o/, 'xdp-filter $1'],
  [/ deny policy$/, ' deny'],
  [/^replay rate, (.*) capture$/, '$1 capture'],
  [/^bench-probe's highest zero-loss rate, probe -> counting receiver$/, 'bench-probe alone'],
  [/^(\S+) of the program at (\w+)$/, '$1 at $2'],
  [/ after the crossing one| delivered to the policy|^target( .*)?$/g, ''],
  [/ vs the previous program/, ' vs previous'],
  [/N = (\d+)/g, 'N=$1'],
  [/500000 SYN\/s/, '500k/s'],
  [/1,000,000 (\w+)\/s/, '1M $1/s'],
  [/ events\/s zero loss$/, '/s, no loss'],
  [/ns\/packet/, 'ns/pkt'],
];
const shorter = (s: string): string => SHORTER.reduce((t, [re, to]) => t.replace(re, to), s).trim();

function valueText(e: SummaryEntry): string {
  const digits = Math.abs(e.value) >= 100 ? 0 : Math.abs(e.value) >= 1 ? 2 : 3;
  const v = e.value >= 1e6 ? `${round2(e.value / 1e6)}M` : e.value.toLocaleString('en-US', { maximumFractionDigits: digits });
  return `${v} ${shorter(e.unit)}`;
}

/** The ratio to what it was compared with in the same run; '-' when that was its target (the target column says it). */
function comparisonText(e: SummaryEntry): string {
  const what = shorter(e.comparison ?? '').split(', ')[0]!;
  return e.ratio === null || what === '' ? '-' : `${e.ratio}x ${what}`;
}

/**
 * The headline figures: one row per bench, target and result, the worst of the figures sharing them (the highest
 * ratio where lower is better, "<" targets; else the lowest), with how many share them.
 */
export function headlines(entries: readonly SummaryEntry[]): (SummaryEntry & { of: number })[] {
  const groups = new Map<string, SummaryEntry[]>();
  for (const e of entries.filter((x) => x.target !== null)) {
    const k = `${e.bench}|${shorter(e.target ?? '')}|${e.met}`;
    groups.set(k, [...(groups.get(k) ?? []), e]);
  }
  return [...groups.values()].map((g) => {
    const lower = g[0]!.target!.startsWith('<') || g[0]!.target!.startsWith('p99 <');
    const score = (e: SummaryEntry) => (lower ? 1 : -1) * (e.ratio ?? e.value);
    const worst = g.reduce((w, e) => (score(e) > score(w) ? e : w));
    return { ...worst, of: g.length };
  });
}

/** The headline figures: what the performance goals ask, whether this run met it, and the same-run comparison. */
export function targetsTable(entries: readonly SummaryEntry[]): string {
  const rows = headlines(entries).map((e) => [e.bench, e.label ?? shorter(e.name), String(e.of), valueText(e), shorter(e.target ?? ''), e.met ? 'met' : 'MISSED', comparisonText(e)]);
  return table(['bench', 'figure', 'n', 'value', 'target', 'result', 'same run: ratio to'], rows, [false, false, true, true, false, false, false]);
}

/** The other figures measured against something in the same run. */
export function comparisonsTable(entries: readonly SummaryEntry[]): string {
  const rows = entries.filter((e) => e.target === null && e.ratio !== null).map((e) => [e.bench, e.label ?? shorter(e.name), valueText(e), comparisonText(e)]);
  return table(['bench', 'figure', 'value', 'same run: ratio to'], rows, [false, false, true, false]);
}

/** "date, machine: benches" for each date and machine the figures come from. */
function provenance(entries: readonly SummaryEntry[]): string[] {
  const groups = new Map<string, Set<string>>();
  for (const e of entries) {
    const k = `${e.date ?? 'date not recorded'}, ${e.machine ?? 'machine not recorded'}`;
    groups.set(k, (groups.get(k) ?? new Set()).add(e.bench));
  }
  return [...groups].map(([k, benches]) => `- ${[...benches].join(', ')}: ${k}`);
}

async function main(): Promise<void> {
  const entries: SummaryEntry[] = [];
  const missing: string[] = [];
  for (const bench of BENCHES) {
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
  const targets = targetsTable(entries);
  const comparisons = comparisonsTable(entries);
  const withTarget = entries.filter((e) => e.met !== null);
  const missed = withTarget.filter((e) => e.met === false);
  const verdict = `${withTarget.length - missed.length} of ${withTarget.length} targets met`;
  console.log(`${targets}\n\n${comparisons}\n\n${verdict}.`);
  if (SMOKE) {
    console.log('smoke run (PW_BENCH_SMOKE=1): nothing written');
    return;
  }
  writeFileSync(RESULTS_FILE, `${JSON.stringify({ command: 'sudo make bench', results: entries }, null, 2)}\n`);
  updateBenchmarks(
    SECTION_HEADING,
    [
      SECTION_HEADING,
      '',
      '- Reproduce: `sudo make bench` (after `make build`): every bench, one after the other, then this summary;',
      '  one bench alone: `sudo make bench-<bench>`, then `make bench-summary`.',
      ...provenance(entries),
      `- Every figure, machine-readable: \`${rel(RESULTS_FILE)}\`; the other same-run comparisons: [below](#other-comparisons).`,
      '',
      '```text',
      targets,
      '```',
      '',
      `${verdict} (n: the figures sharing a row's target and result, the worst shown). "policy alone": the policy's ` +
        'detector with in-kernel detection off (PW_KERNEL_DETECTION=False, or an N the XDP program does not take; ' +
        'docs/detection.md): the fallback, not the default. Each section says why a target is missed. A ratio is to ' +
        'the figure named after it, measured in the same run.',
      '',
    ].join('\n'),
  );
  updateBenchmarks(OTHER_HEADING, [OTHER_HEADING, '', 'Every other figure measured against another in the same run (ratio = value / that figure).', '', '```text', comparisons, '```', '', '_Written by `make bench-summary`._', ''].join('\n'));
  console.log(`wrote ${rel(RESULTS_FILE)} and the summary in BENCHMARKS.md`);
}

await runBench('summary', main);
