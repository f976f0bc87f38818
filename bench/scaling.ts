// `make bench-scaling`: how the policy's CPU per event, memory per tracked
// source and detections move as the threshold N, the number of tracked
// sources and the number of probes grow (METHOD below says how), as tables
// in BENCHMARKS.md and a chart, docs/scaling.svg.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GetPolicyStatusResponse, GetStatusResponse } from '@packetwatch/proto';
import type { Program } from 'libbpf-ts';
import { Cleanup, type NamespacePair, XDP_PASS, cpuShares, cpuSnapshot, drive, sleep, waitFor } from '@packetwatch/test-support';
import type { Services } from '@packetwatch/test-support/services';
import type { Stack } from '@packetwatch/test-support/stack';
import { startStackBench } from './harness.js';
import { RANGES, SourceFrames, collectGarbage, feedPopulation, rssBytes } from './population.js';
import { BenchError, REPO_ROOT, type Machine, type ResultEntry, SMOKE, count, machineText, publish, rel, round2, runBench, table, today, sectionFacts } from './report.js';
import { lineChartsSvg } from './svgchart.js';

const NAME = 'scaling';
const SECTION_HEADING = '## Scaling';
const PLOT_FILE = join(REPO_ROOT, 'docs', 'scaling.svg');

type AxisName = 'N' | 'sources' | 'probes';
interface Config {
  n: number;
  sources: number;
  probes: number;
}
const BASE: Config = SMOKE ? { n: 3, sources: 1000, probes: 1 } : { n: 3, sources: 100_000, probes: 1 };
const AXES: readonly { axis: AxisName; values: readonly number[]; config: (v: number) => Config }[] = [
  { axis: 'N', values: SMOKE ? [3, 10] : [3, 10, 30, 100], config: (n) => ({ ...BASE, n }) },
  { axis: 'sources', values: SMOKE ? [1000] : [1000, 10_000, 100_000, 1_000_000], config: (sources) => ({ ...BASE, sources }) },
  { axis: 'probes', values: SMOKE ? [1, 2] : [1, 2, 4, 8], config: (probes) => ({ ...BASE, probes }) },
];
const MAX_PROBES = Math.max(...(AXES.find((a) => a.axis === 'probes')?.values ?? [1]));
/** Background SYNs per second over all probes, and how long the load phase lasts. */
const LOAD_RATE = 100_000;
const LOAD_SECONDS = SMOKE ? 2 : 5;
/** Port scans started per second over all probes, each N SYNs from a fresh source. */
const SCAN_RATE = 20;
/** Each probe's background: this many sources (RFC 2544 range), one port each, never a scanner. */
// (4 rather than more: bpftool 7.1's batch mode keeps one descriptor open per `prog run` line,
// one line per frame file per 10 ms slice.)
const BACKGROUND_SOURCES = 4;
const WINDOW_SECONDS = 3600;
const MAX_TRACKED = 1 << 21;
/** Below this RSS growth a population's bytes per source is within the noise of RSS itself (pages, heap steps). */
const MIN_RSS_DELTA = 8 << 20;
const SLOT = 210;

interface Libs {
  bpf: typeof import('@packetwatch/bpf');
  stack: typeof import('@packetwatch/test-support/stack');
  services: typeof import('@packetwatch/test-support/services');
}

interface Point extends Config {
  tracked: number;
  evictions: number;
  rssBefore: number;
  rssAfter: number;
  bytesPerSource: number;
  loadSeconds: number;
  offered: number;
  lost: number;
  policyCpuPerMillion: number;
  probeCpuPerMillion: number;
  policyCpu: number;
  scans: number;
  detections: number;
  detectionsPerSecond: number;
  blocks: number;
}

async function loadLibs(): Promise<Libs> {
  try {
    const [bpf, stack, services] = await Promise.all([import('@packetwatch/bpf'), import('@packetwatch/test-support/stack'), import('@packetwatch/test-support/services')]);
    return { bpf, stack, services };
  } catch (e) {
    throw new BenchError(`loading the build failed (${(e as Error).message}): run make build`);
  }
}

const key = (c: Config) => `${c.n}/${c.sources}/${c.probes}`;

/** The settings of one point, for policy and probes alike. */
function settings(c: Config): Record<string, string> {
  return {
    // The in-kernel detector does not take N = 100 (docs/detection.md); off at every point, so that the
    // policy's detector does all detections and points along N compare like with like.
    PW_KERNEL_DETECTION: 'False',
    // The fleet rule off: the points measure the per-host rule alone, as
    // before it existed.
    PW_FLEET_PORT_THRESHOLD: '0',
    PW_PORTSCAN_PORT_THRESHOLD: String(c.n),
    PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
    PW_MAX_TRACKED_SOURCES: String(MAX_TRACKED),
  };
}

/** Policy + probe 0 in pair 0 (a Stack), probes 1.. in pairs 1.., all reporting to that policy. */
class Deployment {
  readonly extra: Services[] = [];
  programs: Program[] = [];
  programIds: number[] = [];

  private constructor(
    readonly stack: Stack,
    readonly nets: readonly NamespacePair[],
  ) {}

  static async start(libs: Libs, nets: readonly NamespacePair[], c: Config, cleanup: Cleanup): Promise<Deployment> {
    const stack = await libs.stack.Stack.start(nets[0]!, 'policy alone', cleanup, settings(c));
    const d = new Deployment(stack, nets.slice(0, c.probes));
    for (const net of d.nets.slice(1)) {
      const svc = new libs.services.Services({
        netns: net.victimNs,
        ifdev: net.victimIf,
        env: { ...settings(c), PW_LOG_FORMAT: 'json', PW_LOG_LEVEL: 'info' },
        reportTo: stack.svc,
      });
      cleanup.add(`stop the probe on ${net.victimIf}`, () => {
        if (!d.stopped) svc.destroySync();
      });
      d.extra.push(svc);
    }
    try {
      // Each returns once the policy has the probe's hello.
      await Promise.all(d.extra.map((s) => s.startProbe()));
    } catch (e) {
      throw new BenchError(`a probe did not start: ${(e as Error).message}`);
    }
    const statuses = await d.probeStatuses();
    d.programIds = statuses.map((s) => s.programId);
    d.programs = d.programIds.map((id) => stack.openProgram(id, cleanup));
    return d;
  }

  probeStatuses(): Promise<GetStatusResponse[]> {
    return Promise.all([this.stack.probeStatus(), ...this.extra.map((s) => s.probeStatus())]);
  }

  policyStatus(): Promise<GetPolicyStatusResponse> {
    return this.stack.policyStatus();
  }

  get policyPid(): number | undefined {
    return this.stack.svc.policy?.pid;
  }

  get probePids(): (number | undefined)[] {
    return [this.stack.svc.probe?.pid, ...this.extra.map((s) => s.probe?.pid)];
  }

  stopped = false;

  async stop(): Promise<void> {
    this.stopped = true;
    for (const p of this.programs) p.close();
    await Promise.all(this.extra.map((s) => s.destroy()));
    await this.stack.stop();
  }
}

const events = (statuses: readonly GetStatusResponse[]) => statuses.reduce((n, s) => n + Number(s.counters?.events ?? 0n), 0);
const lost = (statuses: readonly GetStatusResponse[]) => statuses.reduce((n, s) => n + Number(s.eventsLost), 0);

/** Scan j's source: 198.19.0.0/16 (RFC 2544), fresh at every point. */
const scanSource = (j: number) => `198.19.${(j >> 8) & 255}.${j & 255}`;

/** Runs SCAN_RATE scans a second until `until`, each N SYNs from a fresh source through the programs in turn; returns how many. */
async function scan(libs: Libs, d: Deployment, c: Config, until: number): Promise<number> {
  const victims = d.nets.map((n) => n.victimAddr);
  const start = performance.now();
  let j = 0;
  while (performance.now() < until) {
    const wait = start + (j * 1000) / SCAN_RATE - performance.now();
    if (wait > 0) await sleep(wait);
    if (performance.now() >= until) break;
    const p = j % d.programs.length;
    const src = scanSource(j);
    for (let port = 1; port <= c.n; port++) {
      const r = d.programs[p]!.testRun({ data: libs.bpf.synFrame(src, victims[p]!, 50_000, port) });
      if (r.retval !== XDP_PASS) throw new BenchError(`the program returned ${r.retval} for SYN ${port} of scanner ${src}, expected XDP_PASS`);
    }
    j++;
  }
  return j;
}

async function measure(libs: Libs, nets: readonly NamespacePair[], dir: string, c: Config, cleanup: Cleanup): Promise<Point> {
  const d = await Deployment.start(libs, nets, c, cleanup);
  const pid = d.policyPid;
  const ns = nets[0]!.victimNs;
  const received = async () => Number((await d.policyStatus()).eventsReceived);

  // 1. The population.
  await sleep(1000);
  await collectGarbage(ns, pid);
  const rssBefore = rssBytes(pid);
  const frames = new SourceFrames(RANGES.v4Low, (src, port) => libs.bpf.synFrame(src, nets[0]!.victimAddr, 40_000, port));
  await feedPopulation(d.programs, { frames, first: 0, count: c.sources, port: (i) => 1 + (i % 1024) }, received);
  await collectGarbage(ns, pid);
  const rssAfter = rssBytes(pid);
  const filled = await d.policyStatus();

  // 2. The load.
  const files = d.nets.map((net, p) =>
    Array.from({ length: BACKGROUND_SOURCES }, (_, s) => {
      const file = join(dir, `bg-${p}-${s}.bin`);
      writeFileSync(file, libs.bpf.synFrame(`198.18.${SLOT + p}.${s + 1}`, net.victimAddr, 40_000 + s, 80));
      return file;
    }),
  );
  const drivers: (ChildProcess | undefined)[] = [];
  cleanup.add('stop the drivers', () => drivers.forEach((c) => c?.kill('SIGKILL')));
  const [probes0, policy0] = await Promise.all([d.probeStatuses(), d.policyStatus()]);
  const pids = Object.fromEntries([['policy', pid], ...d.probePids.map((p, i) => [`probe${i}`, p])]) as Record<string, number | undefined>;
  const cpu0 = cpuSnapshot(pids);
  const t0 = performance.now();
  const [driven, scans] = await Promise.all([
    Promise.all(d.programIds.map((id, p) => drive(id, files[p]!, LOAD_RATE / c.probes, LOAD_SECONDS * 1000, (ch) => (drivers[p] = ch)))),
    scan(libs, d, c, t0 + LOAD_SECONDS * 1000),
  ]);
  const loadSeconds = Math.max(...driven.map((r) => r.seconds));
  // Drained: the policy has every event the programs passed (or the probes counted lost).
  const probes1 = await d.probeStatuses();
  const want = events(probes1) - events(probes0) - (lost(probes1) - lost(probes0));
  await waitFor('the policy to receive every event', async () => ((await received()) - Number(policy0.eventsReceived) >= want ? true : undefined), 30_000);
  const cpu1 = cpuSnapshot(pids);
  // Blocks are applied asynchronously after the detections: wait for them (they are part of the work, not of the figure).
  await waitFor('every scanner blocked', async () => {
    const s = await d.policyStatus();
    return Number(s.activeDecisions - policy0.activeDecisions) >= scans ? s : undefined;
  }, 10_000).catch(() => undefined);
  const [probes2, policy2] = await Promise.all([d.probeStatuses(), d.policyStatus()]);
  await d.stop();

  const shares = cpuShares(cpu0, cpu1);
  const wall = (cpu1.at - cpu0.at) / 1000;
  const got = Number(policy2.eventsReceived - policy0.eventsReceived);
  const probeCpu = d.probePids.reduce<number>((n, _, i) => n + (shares[`probe${i}`] ?? 0), 0) * wall;
  const detections = Number(policy2.detections - policy0.detections);
  return {
    ...c,
    tracked: Number(filled.trackedSources),
    evictions: Number(policy2.evictions),
    rssBefore,
    rssAfter,
    bytesPerSource: (rssAfter - rssBefore) / c.sources,
    loadSeconds,
    offered: (events(probes1) - events(probes0)) / loadSeconds,
    lost: lost(probes2) - lost(probes0),
    policyCpuPerMillion: ((shares.policy ?? 0) * wall) / (got / 1e6),
    probeCpuPerMillion: probeCpu / (got / 1e6),
    policyCpu: shares.policy ?? 0,
    scans,
    detections,
    detectionsPerSecond: detections / loadSeconds,
    blocks: Number(policy2.activeDecisions - policy0.activeDecisions),
  };
}

/** The figures followed along each axis: label (results, legend), short (table header), unit. */
const FIGURES: readonly { label: string; short: string; unit: string; value: (p: Point) => number; resolvable?: (p: Point) => boolean }[] = [
  { label: 'policy CPU s per M events', short: 'policy s/M', unit: 's/M events', value: (p) => p.policyCpuPerMillion },
  { label: 'policy bytes per tracked source', short: 'bytes/src', unit: 'bytes', value: (p) => p.bytesPerSource, resolvable: (p) => p.rssAfter - p.rssBefore >= MIN_RSS_DELTA },
  { label: 'detections/s', short: 'det/s', unit: '/s', value: (p) => p.detectionsPerSecond },
  { label: 'probe CPU s per M events (all probes)', short: 'probe s/M', unit: 's/M events', value: (p) => p.probeCpuPerMillion },
];

interface AxisRows {
  axis: AxisName;
  points: Point[];
}

/** Ratio of a figure to the first point of its axis (the first whose RSS growth is measurable, for bytes per source). */
function ratios(a: AxisRows, f: (typeof FIGURES)[number]): (number | null)[] {
  const ref = a.points.find((p) => f.resolvable?.(p) ?? true);
  return a.points.map((p) => (ref && (f.resolvable?.(p) ?? true) ? f.value(p) / f.value(ref) : null));
}

const axisValue = (a: AxisName, p: Point) => (a === 'N' ? p.n : a === 'sources' ? p.sources : p.probes);
const AXIS_TITLE: Record<AxisName, string> = { N: 'threshold N (ports)', sources: 'tracked sources', probes: 'probes reporting to one policy' };
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const ratioText = (r: number | null | undefined) => (r === null || r === undefined ? '-' : r.toFixed(2));

function axisTable(a: AxisRows): string {
  const rs = FIGURES.map((f) => ratios(a, f));
  const header = [a.axis, 'offered/s', 'lost', ...FIGURES.flatMap((f) => [f.short, 'x']), 'blocked', 'policy CPU'];
  const rows = a.points.map((p, i) => [
    count(axisValue(a.axis, p)),
    count(Math.round(p.offered)),
    count(p.lost),
    ...FIGURES.flatMap((f, k) => [f.resolvable?.(p) === false ? `(${fmt(f.value(p))})` : fmt(f.value(p)), ratioText(rs[k]![i])]),
    `${count(p.blocks)}/${count(p.scans)}`,
    `${Math.round(p.policyCpu * 100)}%`,
  ]);
  return table(header, rows, header.map(() => true));
}

/** Each figure at the last point of each axis, as a ratio to the first: the curves in one table. */
function endsTable(axes: readonly AxisRows[]): string {
  const ends = (a: AxisRows) => [a.points[0]!, a.points[a.points.length - 1]!].map((p) => count(axisValue(a.axis, p)));
  const rows = axes.map((a) => [a.axis, ...ends(a), ...FIGURES.map((f) => ratioText(ratios(a, f).at(-1)))]);
  return table(['axis', 'from', 'to', ...FIGURES.map((f) => `${f.short} x`)], rows, [false, true, true, ...FIGURES.map(() => true)]);
}

/** The chart: a row of panels per measure, a column per axis; values, not ratios, each with its unit. */
function plot(axes: readonly AxisRows[]): string {
  const [cpu, bytes, det, probeCpu] = FIGURES;
  const measures = [
    { what: 'CPU', yLabel: 'CPU s per million events', figures: [cpu!, probeCpu!] },
    { what: 'Memory', yLabel: 'policy RSS, bytes per source', figures: [bytes!] },
    { what: 'Detections', yLabel: 'detections per second', figures: [det!] },
  ];
  return lineChartsSvg({
    title: 'Packetwatch policy as N, the tracked sources and the probes grow (make bench-scaling)',
    columns: axes.length,
    panels: measures.flatMap((m) =>
      axes.map((a) => ({
        title: `${m.what} along ${AXIS_TITLE[a.axis]}`,
        xLabel: `${AXIS_TITLE[a.axis]}, log scale`,
        yLabel: m.yLabel,
        x: a.points.map((p) => axisValue(a.axis, p)),
        series: m.figures.map((f) => ({
          label: f.resolvable ? `${f.label} (no point where RSS grew less than ${MIN_RSS_DELTA >> 20} MiB: noise)` : f.label,
          y: a.points.map((p) => (f.resolvable?.(p) === false ? null : round2(f.value(p)))),
        })),
      })),
    ),
  });
}

const METHOD =
  `Each point is a fresh policy with P probes, each in a network namespace pair of its own and reporting to it, ` +
  `as deployed (bench/services.ts), with PW_PORTSCAN_PORT_THRESHOLD=N, PW_PORTSCAN_TIME_THRESHOLD=${WINDOW_SECONDS}, ` +
  `PW_MAX_TRACKED_SOURCES=${count(MAX_TRACKED)} (nothing expires or is evicted), the fleet rule off and ` +
  'PW_KERNEL_DETECTION=False (the XDP program does not take N = 100; off at every N, so the policy does every ' +
  `detection). Base point: N = ${BASE.n}, ${count(BASE.sources)} sources, ${BASE.probes} probe; each axis varies one. ` +
  'Memory: one SYN from each of S distinct sources through the programs; bytes/src = policy RSS growth, each read ' +
  `after a full GC, over S (in parentheses, with no ratio, where RSS grew less than ${MIN_RSS_DELTA >> 20} MiB: noise). ` +
  `Load: ${LOAD_SECONDS} s of ${count(LOAD_RATE)} SYN/s in total from non-scanners (bpftool, all probes at once) plus ` +
  `${SCAN_RATE} port scans a second from fresh sources, each a detection and a block on every probe. s/M = CPU ` +
  'seconds (/proc/<pid>/stat) per million events the policy received; det/s from GetStatus; blocked = decisions ' +
  'after / scans; x = the ratio to the first point of the axis. The load is the same at every point: the ratios show ' +
  'what N, the table size and the probes cost, not a throughput limit (bench-pipeline measures that).';

function section(m: Machine, date: string, load: number, axes: readonly AxisRows[], seconds: number): string {
  const out = [
    SECTION_HEADING,
    '',
    "How the policy's CPU per event, memory per tracked source and detections move as the threshold N, the number of " +
      'tracked sources and the number of probes grow, measured side by side in one run.',
    '',
    ...sectionFacts('scaling', date, m, load, `; the run took ${Math.round(seconds)} s`),
    `- Method: ${METHOD}`,
    '',
    `![CPU per event, memory per source and detections along N, the tracked sources and the probes](${rel(PLOT_FILE)})`,
    '',
    'Each figure at the last point of each axis, as a ratio to the first:',
    '',
    ...['```text', endsTable(axes), '```', ''],
  ];
  for (const a of axes) out.push(`### Along ${AXIS_TITLE[a.axis]}`, '', '```text', axisTable(a), '```', '');
  out.push('_This section and docs/scaling.svg are rewritten by `make bench-scaling`._', '');
  return out.join('\n');
}

/**
 * Every point of every axis. Only the last point of an axis names the first
 * as its comparison (ratio = the curve's end, what the summary table shows);
 * the others carry their ratio to the first point as ratioToFirst.
 */
function results(axes: readonly AxisRows[]): ResultEntry[] {
  const out: ResultEntry[] = [];
  for (const a of axes) {
    const first = a.points[0]!;
    for (const f of FIGURES) {
      const rs = ratios(a, f);
      const ref = a.points.find((p) => f.resolvable?.(p) ?? true);
      a.points.forEach((p, i) => {
        const ratio = rs[i] === null || rs[i] === undefined ? null : round2(rs[i]!);
        const end = i === a.points.length - 1 && ref !== undefined && ref !== p && ratio !== null;
        out.push({
          name: `${f.label}, ${a.axis} = ${count(axisValue(a.axis, p))} (N = ${p.n}, ${count(p.sources)} sources, ${p.probes} probe${p.probes > 1 ? 's' : ''})`,
          value: round2(f.value(p)),
          unit: f.unit,
          comparison: end ? `${a.axis} = ${count(axisValue(a.axis, ref))}, same run` : null,
          comparisonValue: end ? round2(f.value(ref)) : null,
          ratio: end ? ratio : null,
          target: null,
          met: null,
          ratioToFirst: ratio,
          axis: a.axis,
          axisFirst: axisValue(a.axis, first),
          eventsLost: p.lost,
          evictions: p.evictions,
        });
      });
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench(NAME);
  const libs = await loadLibs();
  const started = performance.now();
  const axes = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const nets = Array.from({ length: MAX_PROBES }, (_, i) => libs.stack.namespaces(SLOT + i, cleanup));
    const done = new Map<string, Point>();
    const out: AxisRows[] = [];
    for (const a of AXES) {
      const points: Point[] = [];
      for (const v of a.values) {
        const c = a.config(v);
        let p = done.get(key(c));
        if (!p) {
          const t = performance.now();
          p = await measure(libs, nets, dir, c, cleanup);
          done.set(key(c), p);
          console.log(
            `  N=${c.n} sources=${count(c.sources)} probes=${c.probes}: ${fmt(p.policyCpuPerMillion)} policy CPU s/M events, ${p.bytesPerSource.toFixed(0)} bytes/source, ` +
              `${p.detectionsPerSecond.toFixed(1)} detections/s, ${count(p.lost)} lost (${((performance.now() - t) / 1000).toFixed(1)} s)`,
          );
        }
        points.push(p);
      }
      out.push({ axis: a.axis, points });
    }
    return out;
  });
  const seconds = (performance.now() - started) / 1000;
  for (const a of axes) {
    for (const p of a.points) {
      if (p.tracked < p.sources || p.evictions > 0) throw new BenchError(`N=${p.n} sources=${p.sources} probes=${p.probes}: the policy tracked ${p.tracked} (evictions ${p.evictions})`);
      if (p.detections < p.scans) throw new BenchError(`N=${p.n} sources=${p.sources} probes=${p.probes}: ${p.detections} detections of ${p.scans} scans`);
    }
  }
  const date = today();
  const facts = `${machineText(m)}; load average ${load.toFixed(2)} at the start; ${Math.round(seconds)} s${SMOKE ? ' (smoke run)' : ''}`;
  console.log([`\nScaling, ${date}: ${facts}`, ...axes.map(axisTable), endsTable(axes)].join('\n\n'));
  const svg = plot(axes);
  publish(
    NAME,
    SECTION_HEADING,
    () => {
      mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
      writeFileSync(PLOT_FILE, svg);
      console.log(`wrote ${rel(PLOT_FILE)}`);
      return results(axes);
    },
    () => section(m, date, load, axes, seconds),
    `${AXES.map((a) => `${a.axis} ${a.values.join(', ')}`).join('; ')}; ${LOAD_SECONDS} s load`,
  );
}

await runBench('scaling', main);
