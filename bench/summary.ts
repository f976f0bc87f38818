// `make bench` ends here: every bench's bench/results/<name>.json as one table, the Summary of BENCHMARKS.md, and
// the same figures machine-readable in bench/results.json. A figure keeps the comparison it was measured against in
// its own run (a ratio), and its target where the performance goals set one. PW_BENCH_SMOKE=1 writes nothing.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, BenchError, type ResultEntry, SMOKE, rel, round2, runBench, table, updateBenchmarks } from './report.js';

const RESULTS_FILE = join(BENCH_DIR, 'results.json');
/** The benches in the order `make bench` runs them. */
const BENCHES = ['datapath', 'probe', 'pipeline', 'detection', 'leak', 'memory', 'scaling', 'replay'];

/** What bench/results.json keeps of an entry() (null where a figure has none), in its order. */
const FIELDS = ['name', 'value', 'unit', 'comparison', 'comparisonValue', 'ratio', 'target', 'met', 'label', 'date', 'machine'] as const;
type SummaryEntry = { bench: string; name: string; value: number; unit: string; ratio: number | null; met: boolean | null } & Record<
  'comparison' | 'target' | 'label' | 'date' | 'machine', string | null>;

/** One bench's figures, as bench/results.json holds them. */
function readBench(bench: string, file: string): SummaryEntry[] {
  let entries: ResultEntry[];
  try {
    entries = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BenchError(`${rel(file)} is not JSON: ${(e as Error).message}; run make bench-${bench} again`);
  }
  return entries.map((e) => ({ bench, ...Object.fromEntries(FIELDS.map((k) => [k, e[k] ?? null])) }) as SummaryEntry);
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

/** The entries by key, in the order each key first appears. */
const groupBy = (entries: readonly SummaryEntry[], key: (e: SummaryEntry) => string) =>
  entries.reduce((m, e) => m.set(key(e), [...(m.get(key(e)) ?? []), e]), new Map<string, SummaryEntry[]>());

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
 * The headline figures: a row per bench, target and result, showing the worst of the figures sharing them (the
 * highest ratio where lower is better, "<" targets; else the lowest) and how many share them.
 */
function targetsTable(entries: readonly SummaryEntry[]): string {
  const groups = groupBy(entries.filter((x) => x.target !== null), (e) => `${e.bench}|${shorter(e.target!)}|${e.met}`);
  const rows = [...groups.values()].map((g) => {
    const lower = /^(p99 )?</.test(g[0]!.target!);
    const score = (e: SummaryEntry) => (lower ? 1 : -1) * (e.ratio ?? e.value);
    const e = g.reduce((w, x) => (score(x) > score(w) ? x : w));
    return [e.bench, e.label ?? shorter(e.name), String(g.length), valueText(e), shorter(e.target!), e.met ? 'met' : 'MISSED', comparisonText(e)];
  });
  return table(['bench', 'figure', 'n', 'value', 'target', 'result', 'same run: ratio to'], rows, [false, false, true, true, false, false, false]);
}

/** Each date and machine the figures come from, with the benches that ran there ("every bench" when one run made them all). */
function provenance(entries: readonly SummaryEntry[]): string[] {
  const groups = groupBy(entries, (e) => `${e.date ?? 'date not recorded'}, ${e.machine ?? 'machine not recorded'}`);
  return [...groups.values()].map((g) => {
    const benches = [...new Set(g.map((e) => e.bench))];
    const [date, machine] = [g[0]!.date ?? 'date not recorded', g[0]!.machine ?? 'machine not recorded'];
    // Several runs: each machine on a line of its own, so that fitting the line to the screen never splits it.
    return benches.length === BENCHES.length ? `- every bench: ${date}, ${machine}` : `- ${benches.join(', ')}, ${date}:\n  ${machine}`;
  });
}

async function main(): Promise<void> {
  const files = BENCHES.map((bench) => [bench, join(BENCH_DIR, 'results', `${bench}.json`)] as const);
  const missing = files.filter(([, file]) => !existsSync(file)).map(([bench]) => `bench-${bench}`);
  if (missing.length > 0 && !SMOKE) throw new BenchError(`no results yet from ${missing.join(', ')}: run make ${missing.join(' ')} (or make bench)`);
  const entries = files.filter(([, file]) => existsSync(file)).flatMap(([bench, file]) => readBench(bench, file));
  const targets = targetsTable(entries);
  const withTarget = entries.filter((e) => e.met !== null);
  const verdict = `${withTarget.filter((e) => e.met).length} of ${withTarget.length} targets met`;
  console.log(`${targets}\n\n${verdict}.`);
  if (SMOKE) {
    console.log('smoke run (PW_BENCH_SMOKE=1): nothing written');
    return;
  }
  writeFileSync(RESULTS_FILE, `${JSON.stringify({ command: 'sudo make bench', results: entries }, null, 2)}\n`);
  const summary = [
    '## Summary',
    '',
    '- Reproduce: `sudo make bench` (after `make build`): every bench, one after the other, then this summary;',
    '  one bench alone: `sudo make bench-<bench>`, then `make bench-summary`.',
    ...provenance(entries),
    `- Every figure, machine-readable: \`${rel(RESULTS_FILE)}\`; the other same-run comparisons are in each bench's section.`,
    '',
    ...['```text', targets, '```', ''],
    `${verdict} (n: the figures sharing a row's target and result, the worst shown). "policy alone": the policy's ` +
      'detector with in-kernel detection off (PW_KERNEL_DETECTION=False, or an N the XDP program does not take; ' +
      'docs/detection.md): the fallback, not the default. Each section says why a target is missed. A ratio is to ' +
      'the figure named after it, measured in the same run.',
    '',
  ];
  updateBenchmarks('## Summary', summary.join('\n'));
  console.log(`wrote ${rel(RESULTS_FILE)} and the summary in BENCHMARKS.md`);
}

await runBench('summary', main);
