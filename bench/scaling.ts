// `make bench-scaling`: the Scaling section of BENCHMARKS.md (what it measures: section(); how: METHOD) and docs/scaling.svg.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GetStatusResponse } from '@packetwatch/proto';
import { Cleanup, type NamespacePair, XDP_PASS, drive, ownCpu, sleep, waitFor } from '@packetwatch/test-support';
import { View, parse } from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';
import { type StackLibs as Libs, loadStack, startStackBench } from './harness.js';
import { RANGES, SourceFrames, collectGarbage, feedPopulation, rssBytes } from './population.js';
import { BenchError, REPO_ROOT, type Machine, type ResultEntry, SMOKE, count, entry, publish, rel, round2, runBench, sectionFacts, sectionText, table, today } from './report.js';

const SECTION_HEADING = '## Scaling';
const PLOT_FILE = join(REPO_ROOT, 'docs', 'scaling.svg');
const SLOT = 210;

type Axis = 'N' | 'sources' | 'probes';
type Config = Record<Axis, number>;
/** The base point; each axis varies one of its settings. */
const BASE: Config = { N: 3, sources: SMOKE ? 1000 : 100_000, probes: 1 };
const AXES: Record<Axis, readonly number[]> = SMOKE
  ? { N: [3, 10], sources: [1000], probes: [1, 2] }
  : { N: [3, 10, 30, 100], sources: [1000, 10_000, 100_000, 1_000_000], probes: [1, 2, 4, 8] };
const AXIS_TITLE: Record<Axis, string> = { N: 'threshold N (ports)', sources: 'tracked sources', probes: 'probes reporting to one policy' };
/** Background SYNs per second over all probes, and how long the load phase lasts. */
const LOAD_RATE = 100_000;
const LOAD_SECONDS = SMOKE ? 2 : 5;
/** Port scans started per second over all probes, each N SYNs from a fresh source. */
const SCAN_RATE = 20;
/** Each probe's background sources, one port each (not more: bpftool 7.1's batch mode keeps a descriptor per frame file per 10 ms). */
const BACKGROUND_SOURCES = 4;
const WINDOW_SECONDS = 3600;
const MAX_TRACKED = 1 << 21;
/** Below this RSS growth a population's bytes per source is within the noise of RSS itself (pages, heap steps). */
const MIN_RSS_DELTA = 8 << 20;

const events = (statuses: readonly GetStatusResponse[]) => statuses.reduce((n, s) => n + Number(s.counters?.events ?? 0n), 0);
const lost = (statuses: readonly GetStatusResponse[]) => statuses.reduce((n, s) => n + Number(s.eventsLost), 0);
const pointText = (c: Config) => `N=${c.N} sources=${c.sources} probes=${c.probes}`;

/** One point: a fresh policy with probe 0 in pair 0 (a Stack) and probes 1.. in pairs 1.., all reporting to it. */
async function measure(libs: Libs, nets: readonly NamespacePair[], dir: string, c: Config, cleanup: Cleanup) {
  const env = {
    PW_KERNEL_DETECTION: 'False',
    PW_FLEET_PORT_THRESHOLD: '0',
    PW_PORTSCAN_PORT_THRESHOLD: String(c.N),
    PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
    PW_MAX_TRACKED_SOURCES: String(MAX_TRACKED),
  };
  const stack = await libs.stack.Stack.start(nets[0]!, 'policy alone', cleanup, env);
  const probeEnv = { ...env, PW_LOG_FORMAT: 'json', PW_LOG_LEVEL: 'info' };
  const extra = nets
    .slice(1, c.probes)
    .map((net) => new libs.services.Services({ netns: net.victimNs, ifdev: net.victimIf, env: probeEnv, reportTo: stack.svc }));
  let stopped = false;
  cleanup.add('stop the other probes', () => {
    if (!stopped) for (const svc of extra) svc.destroySync();
  });
  // Each returns once the policy has the probe's hello.
  await Promise.all(extra.map((s) => s.startProbe())).catch((e: Error) => {
    throw new BenchError(`a probe did not start: ${e.message}`);
  });
  const probeStatuses = () => Promise.all([stack.probeStatus(), ...extra.map((s) => s.probeStatus())]);
  const programIds = (await probeStatuses()).map((s) => s.programId);
  const programs = programIds.map((id) => stack.openProgram(id, cleanup));
  const pids = [stack.svc.policy?.pid, stack.svc.probe?.pid, ...extra.map((s) => s.probe?.pid)];
  const received = async () => Number((await stack.policyStatus()).eventsReceived);

  // 1. The population: one SYN from each of c.sources sources, the policy's RSS read after a full GC before and after.
  await sleep(1000);
  await collectGarbage(nets[0]!.victimNs, pids[0]);
  const rssBefore = rssBytes(pids[0]);
  const frames = new SourceFrames(RANGES.v4Low, (src, port) => libs.bpf.synFrame(src, nets[0]!.victimAddr, 40_000, port), libs.bpf.checksum);
  await feedPopulation(programs, { frames, first: 0, count: c.sources, port: (i) => 1 + (i % 1024) }, received);
  await collectGarbage(nets[0]!.victimNs, pids[0]);
  const rssGrowth = rssBytes(pids[0]) - rssBefore;
  const tracked = Number((await stack.policyStatus()).trackedSources);

  // 2. The load: the background from bpftool, and SCAN_RATE scans a second through the programs in turn.
  const files = programIds.map((_, p) =>
    Array.from({ length: BACKGROUND_SOURCES }, (_, s) => {
      const file = join(dir, `bg-${p}-${s}.bin`);
      writeFileSync(file, libs.bpf.synFrame(`198.18.${SLOT + p}.${s + 1}`, nets[p]!.victimAddr, 40_000 + s, 80));
      return file;
    }),
  );
  const drivers: (ChildProcess | undefined)[] = [];
  cleanup.add('stop the drivers', () => drivers.forEach((d) => d?.kill('SIGKILL')));
  const scan = async (until: number): Promise<number> => {
    for (let j = 0, start = performance.now(); ; j++) {
      const wait = start + (j * 1000) / SCAN_RATE - performance.now();
      if (wait > 0) await sleep(wait);
      if (performance.now() >= until) return j;
      const p = j % programs.length;
      const src = `198.19.${(j >> 8) & 255}.${j & 255}`; // 198.19.0.0/16 (RFC 2544), fresh at every point
      for (let port = 1; port <= c.N; port++) {
        const r = programs[p]!.testRun({ data: libs.bpf.synFrame(src, nets[p]!.victimAddr, 50_000, port) });
        if (r.retval !== XDP_PASS) throw new BenchError(`the program returned ${r.retval} for SYN ${port} of scanner ${src}, expected XDP_PASS`);
      }
    }
  };
  const [probes0, policy0] = await Promise.all([probeStatuses(), stack.policyStatus()]);
  const cpu0 = pids.map(ownCpu);
  const t0 = performance.now();
  const [driven, scans] = await Promise.all([
    Promise.all(programIds.map((id, p) => drive(id, files[p]!, LOAD_RATE / c.probes, LOAD_SECONDS * 1000, (d) => (drivers[p] = d)))),
    scan(t0 + LOAD_SECONDS * 1000),
  ]);
  const loadSeconds = Math.max(...driven.map((r) => r.seconds));
  // Drained: the policy has every event the programs passed (or the probes counted lost).
  const probes1 = await probeStatuses();
  const want = events(probes1) - events(probes0) - (lost(probes1) - lost(probes0));
  await waitFor('the policy to receive every event', async () => ((await received()) - Number(policy0.eventsReceived) >= want ? true : undefined), 30_000);
  const cpu = pids.map((pid, i) => ownCpu(pid) - cpu0[i]!);
  const wall = (performance.now() - t0) / 1000;
  // Blocks are applied asynchronously after the detections: wait for them (they are part of the work, not of the figure).
  const blocked = async () => Number((await stack.policyStatus()).activeDecisions - policy0.activeDecisions);
  await waitFor('every scanner blocked', async () => ((await blocked()) >= scans ? true : undefined), 10_000).catch(() => undefined);
  const [probes2, policy2] = await Promise.all([probeStatuses(), stack.policyStatus()]);
  stopped = true;
  for (const p of programs) p.close();
  await Promise.all(extra.map((s) => s.destroy()));
  await stack.stop();

  const detections = Number(policy2.detections - policy0.detections);
  if (tracked < c.sources || policy2.evictions > 0) throw new BenchError(`${pointText(c)}: the policy tracked ${tracked} (evictions ${policy2.evictions})`);
  if (detections < scans) throw new BenchError(`${pointText(c)}: ${detections} detections of ${scans} scans`);
  const perMillion = Number(policy2.eventsReceived - policy0.eventsReceived) / 1e6;
  return {
    ...c,
    offered: (events(probes1) - events(probes0)) / loadSeconds,
    lost: lost(probes2) - lost(probes0),
    rssGrowth,
    /** CPUs the policy used on average under the load. */
    policyCpu: cpu[0]! / wall,
    policyCpuPerMillion: cpu[0]! / perMillion,
    probeCpuPerMillion: cpu.slice(1).reduce((a, b) => a + b, 0) / perMillion,
    detectionsPerSecond: detections / loadSeconds,
    scans,
    blocks: Number(policy2.activeDecisions - policy0.activeDecisions),
  };
}
type Point = Awaited<ReturnType<typeof measure>>;

/** label: in the results and the legend; short: the table's header; noisy: where the figure is within the noise. */
type Figure = { label: string; short: string; unit: string; value: (p: Point) => number; noisy?: (p: Point) => boolean };
const FIGURES: readonly Figure[] = [
  { label: 'policy CPU s per M events', short: 'policy s/M', unit: 's/M events', value: (p) => p.policyCpuPerMillion },
  { label: 'policy bytes per tracked source', short: 'bytes/src', unit: 'bytes', value: (p) => p.rssGrowth / p.sources, noisy: (p) => p.rssGrowth < MIN_RSS_DELTA },
  { label: 'detections/s', short: 'det/s', unit: '/s', value: (p) => p.detectionsPerSecond },
  { label: 'probe CPU s per M events (all probes)', short: 'probe s/M', unit: 's/M events', value: (p) => p.probeCpuPerMillion },
];

type Along = { axis: Axis; points: Point[] };

/** A figure's ratio at each point to the axis's first point where it is not noisy. */
function ratios(points: readonly Point[], f: Figure): (number | null)[] {
  const ref = points.find((p) => !f.noisy?.(p));
  return points.map((p) => (ref && !f.noisy?.(p) ? f.value(p) / f.value(ref) : null));
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const ratioText = (r: number | null | undefined) => (r === null || r === undefined ? '-' : r.toFixed(2));

function axisTable({ axis, points }: Along): string {
  const rs = FIGURES.map((f) => ratios(points, f));
  const header = [axis, 'offered/s', 'lost', ...FIGURES.flatMap((f) => [f.short, 'x']), 'blocked', 'policy CPU'];
  const rows = points.map((p, i) => [
    count(p[axis]),
    count(Math.round(p.offered)),
    count(p.lost),
    ...FIGURES.flatMap((f, k) => [f.noisy?.(p) ? `(${fmt(f.value(p))})` : fmt(f.value(p)), ratioText(rs[k]![i])]),
    `${count(p.blocks)}/${count(p.scans)}`,
    `${Math.round(p.policyCpu * 100)}%`,
  ]);
  return table(header, rows, header.map(() => true));
}

/**
 * The chart, a vega-lite spec drawn by vega: a row of panels per measure, a column per axis; values, not ratios, each with its unit.
 * The axes grow geometrically (log x, ticked at the measured points); y from 0; one legend, a series keeping its colour in every panel.
 */
async function plot(axes: readonly Along[]): Promise<string> {
  const [cpu, bytes, det, probeCpu] = FIGURES as [Figure, Figure, Figure, Figure];
  const measures = [
    { what: 'CPU', yLabel: 'CPU s per million events', figures: [cpu, probeCpu] },
    { what: 'Memory', yLabel: 'policy RSS, bytes per source', figures: [bytes] },
    { what: 'Detections', yLabel: 'detections per second', figures: [det] },
  ];
  const legend = (f: Figure) => (f.noisy ? `${f.label} (no point where RSS grew less than ${MIN_RSS_DELTA >> 20} MiB: noise)` : f.label);
  const series = measures.flatMap((m) => m.figures.map(legend));
  const spec: TopLevelSpec = {
    title: { text: 'Packetwatch policy as N, the tracked sources and the probes grow (make bench-scaling)', fontSize: 15, offset: 12 },
    background: 'white',
    columns: axes.length,
    concat: measures.flatMap(({ what, yLabel, figures }) =>
      axes.map(({ axis, points }) => ({
        title: `${what} along ${AXIS_TITLE[axis]}`,
        // A noisy point is null: vega-lite leaves it out and breaks the line there.
        data: { values: figures.flatMap((f) => points.map((p) => ({ series: legend(f), x: p[axis], y: f.noisy?.(p) ? null : round2(f.value(p)) }))) },
        mark: { type: 'line', point: true },
        encoding: {
          x: {
            field: 'x',
            type: 'quantitative',
            title: `${AXIS_TITLE[axis]}, log scale`,
            scale: { type: 'log', nice: false },
            axis: { values: points.map((p) => p[axis]), format: '~s' },
          },
          y: { field: 'y', type: 'quantitative', title: yLabel, scale: { zero: true } },
          color: { field: 'series', type: 'nominal', title: null, scale: { domain: series } },
        },
      })),
    ),
    resolve: { scale: { x: 'independent', y: 'independent' } },
    config: { view: { continuousWidth: 300, continuousHeight: 200 }, legend: { orient: 'bottom', direction: 'vertical', labelLimit: 0 } },
  };
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const METHOD =
  `Each point is a fresh policy with P probes, each in a namespace pair of its own, as deployed, with N = PW_PORTSCAN_PORT_THRESHOLD, a ` +
  `window of ${count(WINDOW_SECONDS)} s and room for ${count(MAX_TRACKED)} sources (nothing expires or is evicted), the fleet rule and ` +
  'in-kernel detection off (the policy does every detection; the XDP program does not take N = 100). Base point: ' +
  `N = ${BASE.N}, ${count(BASE.sources)} sources, ${BASE.probes} probe; each axis varies one. Memory: one SYN from each of S sources; ` +
  `bytes/src = the policy's RSS growth over S, read after full GCs (in parentheses, with no ratio, where it grew less than ` +
  `${MIN_RSS_DELTA >> 20} MiB: noise). Load: ${LOAD_SECONDS} s of ${count(LOAD_RATE)} SYN/s from non-scanners over all probes plus ` +
  `${SCAN_RATE} port scans a second, each a detection and a block. s/M = CPU seconds per million events the policy received; blocked = ` +
  'decisions / scans; x = the ratio to the first point of the axis. The load is the same at every point: the ratios show what N, the ' +
  'table size and the probes cost, not a throughput limit (bench-pipeline measures that).';

function section(m: Machine, date: string, load: number, axes: readonly Along[], seconds: number): string {
  return sectionText(
    SECTION_HEADING,
    'scaling',
    "How the policy's CPU per event, memory per tracked source and detections move as the threshold N, the number of " +
      'tracked sources and the number of probes grow, measured side by side in one run.',
    [...sectionFacts('scaling', date, m, load, `; the run took ${Math.round(seconds)} s`), `- Method: ${METHOD}`],
    [
      `![CPU per event, memory per source and detections along N, the tracked sources and the probes](${rel(PLOT_FILE)})`,
      '',
      ...axes.flatMap((a) => [`### Along ${AXIS_TITLE[a.axis]}`, '', '```text', axisTable(a), '```', '']),
    ],
    'This section and docs/scaling.svg are',
  );
}

/** Every point of every axis; an axis's last point names the first as its comparison (the curve's end, in the summary). */
function results(axes: readonly Along[]): ResultEntry[] {
  return axes.flatMap(({ axis, points }) =>
    FIGURES.flatMap((f) => {
      const rs = ratios(points, f);
      const ref = points.find((p) => !f.noisy?.(p));
      return points.map((p, i) => {
        const end = i === points.length - 1 && ref !== undefined && ref !== p && rs[i] !== null ? ref : undefined;
        const name = `${f.label}, ${axis} = ${count(p[axis])} (N = ${p.N}, ${count(p.sources)} sources, ${p.probes} probe${p.probes > 1 ? 's' : ''})`;
        return entry(name, round2(f.value(p)), f.unit, end ? [`${axis} = ${count(end[axis])}, same run`, f.value(end)] : null);
      });
    }),
  );
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench('scaling');
  const libs = await loadStack();
  const started = performance.now();
  const axes = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const nets = Array.from({ length: Math.max(...AXES.probes) }, (_, i) => libs.stack.namespaces(SLOT + i, cleanup));
    const done = new Map<string, Point>(); // the base point, measured once for every axis
    const out: Along[] = [];
    for (const [axis, values] of Object.entries(AXES) as [Axis, number[]][]) {
      const points: Point[] = [];
      for (const c of values.map((v) => ({ ...BASE, [axis]: v }))) {
        const key = pointText(c);
        if (!done.has(key)) {
          const t = performance.now();
          const p = await measure(libs, nets, dir, c, cleanup);
          console.log(`  ${key}: ${FIGURES.map((f) => `${fmt(f.value(p))} ${f.label}`).join(', ')}, ${count(p.lost)} lost (${((performance.now() - t) / 1000).toFixed(1)} s)`);
          done.set(key, p);
        }
        points.push(done.get(key)!);
      }
      out.push({ axis, points });
    }
    return out;
  });
  const seconds = (performance.now() - started) / 1000;
  const date = today();
  console.log(axes.map(axisTable).join('\n\n'));
  const svg = await plot(axes);
  // Written with the section: a smoke run writes neither.
  const text = () => {
    writeFileSync(PLOT_FILE, svg);
    console.log(`wrote ${rel(PLOT_FILE)}`);
    return section(m, date, load, axes, seconds);
  };
  const smokeSize = `${Object.entries(AXES).map(([axis, values]) => `${axis} ${values.join(', ')}`).join('; ')}; ${LOAD_SECONDS} s load`;
  publish('scaling', SECTION_HEADING, () => results(axes), text, smokeSize);
}

await runBench('scaling', main);
