// `make bench-memory`: the policy's RSS per tracked source (SYNs from 1,000,000 sources through the attached program of
// probe + policy as deployed, so every event takes the real path), and the probe's and policy's RSS across a SYN flood.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Cleanup, type NamespacePair, XDP_PASS, cpuShares, cpuSnapshot, drive, runOnce, sleep } from '@packetwatch/test-support';
import { type Column, type StackLibs, columnTable, loadStack, pct, startStackBench, tableBlocks } from './harness.js';
import { RANGES, type SourceRange, SourceFrames, collectGarbage, feedPopulation, rssBytes, sourceAddress } from './population.js';
import {
  BenchError, REPO_ROOT, type Machine, type ResultEntry, SMOKE, count, entry, machineText, median, publish, round2, runBench, sectionFacts, sectionText, today,
} from './report.js';

const NAME = 'memory';
const SECTION_HEADING = '## Memory';
const SOURCES = SMOKE ? 10_000 : 1_000_000;
/** The per-host thresholds measured: the default, and two larger ones. */
const PORT_THRESHOLDS = [3, 16, 64] as const;
/** The population is fed in this many equal parts, RSS measured after each: the slope is the marginal cost. */
const PARTS = 4;
/** 2^23: every source hits 2 ports or more, so it is protected, an eighth of the cap (2^20, above SOURCES): no eviction. */
const MAX_TRACKED = 8_388_608;
/** One hour: no source expires while the population is fed and measured. */
const WINDOW_SECONDS = 3600;
const TARGET_BYTES = 256;
const FLOOD_SECONDS = SMOKE ? 5 : 60;
const WARMUP_SECONDS = SMOKE ? 1 : 10;
const FLOOD_RATE = SMOKE ? 100_000 : 500_000;
const TARGET_FLAT = 10;
/** The flood: this many sources (RFC 2544 range), one port each, so none is ever a scanner. */
const FLOOD_SOURCES = 64;
const SLOT = 230;

/** A population: N, the distinct ports each source hits, its addresses; worst: N - 1 ports (no target). */
type Case = { n: number; ports: number; range: SourceRange; worst: boolean };

/** The target's, 2 ports a source, all ranges at each N (about 20 s each); the worst case at 16 and 64 (64: about 10 minutes). */
const CASES: readonly Case[] = [
  ...PORT_THRESHOLDS.flatMap((n) => Object.values(RANGES).map((range) => ({ n, ports: 2, range, worst: false }))),
  ...([[16, RANGES.v4Low], [64, RANGES.v4Low], [64, RANGES.v6]] as const).map(([n, range]) => ({ n, ports: n - 1, range, worst: true })),
];

/** Why the worst case has no target: the information its times and ports carry (docs/detection.md, "Memory"). */
const WORST_CASE =
  `The worst case has no target: with its times kept to the tick (4 µs at T = 3,600 s, 9e8 ticks a window) a source holding 63 ports carries ` +
  `log2 C(9e8, 63) bits of times, log2 C(65536, 63) of its port set and log2 63! of which port has which time (each decides when that port ` +
  `leaves the window): 25.1 + 11.4 + 4.6 = 41.1 bits, 5.1 bytes a port, 324 bytes for 63 ports before any index or slot (81 for 15 ports).`;

/** Source i's j-th distinct port (j < N - 1 <= 63): 1-1024. */
const portOf = (i: number, j: number): number => 1 + ((i + j) % 1024);
const POLICY_DIST = join(REPO_ROOT, 'services/policy/dist');

type PerSource = Awaited<ReturnType<typeof perSource>>;
type Flood = Awaited<ReturnType<typeof flood>>;
type FloodStats = ReturnType<typeof floodStats>;

function slope(xs: readonly number[], ys: readonly number[]): number {
  const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const [mx, my] = [mean(xs), mean(ys)];
  const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  return num / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
}

// V8's gc, exposed once at run time for detectorHeap's measurements.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** detectorHeap's source keys by range (a million each, as the policy makes them), built for the first case of a range. */
const keysByRange = new Map<SourceRange, unknown[]>();

/**
 * The detector's heap bytes per source for a case, of which the fleet rule's, and the rule's F: heapUsed + arrayBuffers
 * after full collections (V8's gc exposed at run time) in this process, of services/policy's Detector at N with the fleet
 * rule at the policy's default F and of one without it (both alive to the end: a freed one's array buffers could be
 * released during the other's measurement), fed as the stack is (`ports` rounds, each a hit of every source on its next
 * port, source i on probe i mod 8).
 */
async function detectorHeap({ range, n, ports }: Case) {
  const [{ parseAddress }, { Detector }, { SourceKeys }, { fleetThresholdOf, policySettings }] = await Promise.all(
    [import.meta.resolve('@packetwatch/common'), ...['detector', 'sourcekey', 'config'].map((m) => join(POLICY_DIST, `${m}.js`))].map((m) => import(m)),
  );
  const mem = () => {
    gc();
    gc();
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    return heapUsed + arrayBuffers;
  };
  // Each source keyed as the policy keys it (its default prefix lengths), once per range for every N.
  const sourceKeys = new SourceKeys({ ipv6: policySettings.ipv6Prefix.default, ipv4: policySettings.ipv4Prefix.default });
  const keys = keysByRange.get(range) ?? Array.from({ length: SOURCES }, (_, i) => sourceKeys.of(parseAddress(sourceAddress(range, i))));
  keysByRange.set(range, keys);
  const F: number = fleetThresholdOf({ fleetThreshold: policySettings.fleetThreshold.default, portThreshold: n });
  const filled = (pairThreshold: number) => {
    const before = mem();
    const d = new Detector({ portThreshold: n, windowSeconds: WINDOW_SECONDS, maxSources: MAX_TRACKED, pairThreshold });
    const t = Date.now();
    for (let j = 0; j < ports; j++) for (let i = 0; i < SOURCES; i++) d.observe(keys[i], portOf(i, j), t + j, i % 8);
    if (d.tracked !== SOURCES) throw new BenchError(`the detector tracks ${d.tracked} of ${SOURCES}`);
    return { d, bytes: (mem() - before) / SOURCES };
  };
  const [plain, full] = [filled(0), filled(F)];
  return { detector: full.bytes, fleet: full.bytes - plain.bytes, pairThreshold: F };
}

/**
 * The policy's RSS for a population: rss after a full GC at 0, 1/PARTS, ... all sources, rssBeforeGc just before the
 * last GC (garbage included), perSource = (last - first) / sources, slope the least-squares slope over sources.
 */
async function perSource(libs: StackLibs, net: NamespacePair, c: Case, cleanup: Cleanup) {
  const env = { PW_PORTSCAN_PORT_THRESHOLD: String(c.n), PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS), PW_MAX_TRACKED_SOURCES: String(MAX_TRACKED) };
  const stack = await libs.stack.Stack.start(net, 'in-kernel', cleanup, env);
  const pid = stack.svc.policy?.pid;
  const prog = stack.openProgram((await stack.probeStatus()).programId, cleanup);
  const frames = new SourceFrames(c.range, (src, port) => libs.bpf.synFrame(src, net.victimAddr, 40_000, port), libs.bpf.checksum);
  const received = async () => Number((await stack.policyStatus()).eventsReceived);
  // Started, connected, its first sweeps and reconcile done: the state before any source.
  await sleep(2000);
  const rss = [await collectGarbage(net.victimNs, pid)];
  const part = SOURCES / PARTS;
  let [feedSeconds, rssBeforeGc] = [0, 0];
  for (let k = 0; k < PARTS; k++) {
    // The part's sources, each on its next port, `ports` times.
    for (let j = 0; j < c.ports; j++) {
      feedSeconds += await feedPopulation([prog], { frames, first: k * part, count: part, port: (i) => portOf(i, j) }, received);
    }
    rssBeforeGc = rssBytes(pid);
    rss.push(await collectGarbage(net.victimNs, pid));
    console.log(`  N = ${c.n}, ${c.range.label}: ${count((k + 1) * part)} sources fed ${c.ports} ports each, policy RSS ${mib(rss[k + 1]!)} MiB after GC`);
  }
  const [policy, probe] = await Promise.all([stack.policyStatus(), stack.probeStatus()]);
  await stack.stop();
  const [tracked, evictions, lost] = [Number(policy.trackedSources), Number(policy.evictions), Number(policy.eventsLost) + Number(probe.eventsLost)];
  const [perSource, fit, heap] = [(rss[PARTS]! - rss[0]!) / SOURCES, slope(rss.map((_, k) => k * part), rss), await detectorHeap(c)];
  return { ...c, tracked, evictions, lost, rss, rssBeforeGc, feedSeconds, perSource, slope: fit, heap };
}

async function flood(libs: StackLibs, net: NamespacePair, dir: string, cleanup: Cleanup) {
  const stack = await libs.stack.Stack.start(net, 'in-kernel', cleanup);
  const pids = { probe: stack.svc.probe?.pid, policy: stack.svc.policy?.pid };
  const rss = () => ({ probe: rssBytes(pids.probe), policy: rssBytes(pids.policy) });
  const status = () => Promise.all([stack.probeStatus(), stack.policyStatus()]);
  const programId = (await stack.probeStatus()).programId;
  const files = Array.from({ length: FLOOD_SOURCES }, (_, s) => join(dir, `flood-${s}.bin`));
  files.forEach((file, s) => writeFileSync(file, libs.bpf.synFrame(`198.18.${SLOT}.${s + 1}`, net.victimAddr, 40_000 + s, 80)));
  const verdict = runOnce(programId, files[0]!);
  if (verdict !== XDP_PASS) throw new BenchError(`setup check: the program returned ${verdict} for a flood SYN, expected XDP_PASS`);
  await sleep(1000);
  const idle = rss();
  let driver: ChildProcess | undefined;
  cleanup.add('stop the flood', () => driver?.kill('SIGKILL'));
  const [before, cpu0] = [await status(), cpuSnapshot(pids)];
  let done = false;
  const driving = drive(programId, files, FLOOD_RATE, FLOOD_SECONDS * 1000, (c) => (driver = c)).finally(() => (done = true));
  const samples: { second: number; probe: number; policy: number; events: number; lost: number }[] = [];
  const start = performance.now();
  for (let s = 1; !done; s++) {
    await sleep(Math.max(0, start + s * 1000 - performance.now()));
    if (done) break;
    if (!stack.running) throw new BenchError(`a service died during the flood:\n${stack.tail()}`);
    const st = await stack.probeStatus();
    samples.push({ second: s, ...rss(), events: Number(st.counters?.events ?? 0n), lost: Number(st.eventsLost) });
  }
  const { seconds } = await driving;
  const cpu = cpuShares(cpu0, cpuSnapshot(pids));
  // Let the policy catch up before its count is read.
  await sleep(2000);
  const after = await status();
  await stack.stop();
  const [received, probeLost] = [Number(after[1].eventsReceived - before[1].eventsReceived), Number(after[0].eventsLost - before[0].eventsLost)];
  const grew = (k: 'syn' | 'ringbufFull') => libs.stack.counterDelta(before[0], after[0], k);
  return { idle, samples, cpu, offered: grew('syn') / seconds, received, probeLost, ringbufFull: grew('ringbufFull') };
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const label = (c: Case) => (c.worst ? `policy RSS per source holding N - 1 ports` : `policy RSS per tracked source`);
const perSourceMet = (r: PerSource) => r.tracked === SOURCES && r.evictions === 0 && r.perSource <= TARGET_BYTES;
const caseColumns: readonly Column<PerSource>[] = [
  ['N', true, (r) => String(r.n)],
  ['sources', false, (r) => `${count(SOURCES)} ${r.range.label}`],
  ['ports each', true, (r) => String(r.ports)],
];

const PER_SOURCE: readonly Column<PerSource>[] = [
  ...caseColumns,
  ['tracked', true, (r) => count(r.tracked)],
  ['evictions', true, (r) => count(r.evictions)],
  ['lost', true, (r) => count(r.lost)],
  ['feed s', true, (r) => r.feedSeconds.toFixed(1)],
  ['RSS before MiB', true, (r) => mib(r.rss[0]!)],
  ['RSS after MiB', true, (r) => mib(r.rss[PARTS]!)],
  ['bytes/source', true, (r) => r.perSource.toFixed(0)],
  ['slope bytes/source', true, (r) => r.slope.toFixed(0)],
  ['before GC bytes/source', true, (r) => ((r.rssBeforeGc - r.rss[0]!) / SOURCES).toFixed(0)],
  ['target', false, (r) => (r.worst ? '-' : `<= ${TARGET_BYTES}`)],
  ['result', false, (r) => (r.worst ? '-' : perSourceMet(r) ? 'met' : 'MISSED')],
];

const CHECKPOINTS: readonly Column<PerSource>[] = [
  ...caseColumns,
  ...Array.from({ length: PARTS + 1 }, (_, k): Column<PerSource> => [`${count((k * SOURCES) / PARTS)} sources MiB`, true, (r) => mib(r.rss[k]!)]),
];

const BREAKDOWN: readonly Column<PerSource>[] = [
  ...caseColumns,
  ['detector (index, slot arrays)', true, (r) => r.heap.detector.toFixed(0)],
  ['of which the fleet rule', true, (r) => r.heap.fleet.toFixed(0)],
  ['F', true, (r) => String(r.heap.pairThreshold)],
  ['RSS bytes/source', true, (r) => r.perSource.toFixed(0)],
  ['rest (V8 and allocator overhead)', true, (r) => (r.perSource - r.heap.detector).toFixed(0)],
];

/** Samples after the warm-up: the flat-memory figures. */
function floodStats(f: Flood, who: 'probe' | 'policy') {
  const after = f.samples.filter((s) => s.second > WARMUP_SECONDS).map((s) => s[who]);
  if (after.length === 0) throw new BenchError('no RSS sample after the warm-up');
  const med = median(after);
  const dev = Math.max(...after.map((v) => Math.abs(v - med))) / med;
  return { who, idle: f.idle[who], first: after[0]!, min: Math.min(...after), max: Math.max(...after), last: after.at(-1)!, median: med, devPct: dev * 100 };
}

const floodTable = (f: Flood): string =>
  columnTable((['probe', 'policy'] as const).map((who) => floodStats(f, who)), [
    ['process', false, (r) => r.who],
    ['idle MiB', true, (r) => mib(r.idle)],
    ...(['first', 'min', 'max', 'last', 'median'] as const).map((k): Column<FloodStats> => [
      `${k === 'first' ? `first after ${WARMUP_SECONDS} s` : k} MiB`, true, (r) => mib(r[k]),
    ]),
    ['max dev from median %', true, (r) => r.devPct.toFixed(1)],
    ['target', false, (r) => (r.who === 'probe' ? `<= ${TARGET_FLAT}%` : '-')],
    ['result', false, (r) => (r.who === 'policy' ? '-' : r.devPct <= TARGET_FLAT ? 'met' : 'MISSED')],
  ]);

const seriesTable = (f: Flood): string =>
  columnTable(f.samples.filter((s) => s.second % (SMOKE ? 1 : 5) === 0 || s.second === 1), [
    ['second', true, (s) => String(s.second)],
    ['probe RSS MiB', true, (s) => mib(s.probe)],
    ['policy RSS MiB', true, (s) => mib(s.policy)],
    ['probe events', true, (s) => count(s.events)],
    ['probe lost', true, (s) => count(s.lost)],
  ]);

const floodSummary = (f: Flood, cpus: number): string =>
  `Flood: ${count(Math.round(f.offered))} SYN/s offered for ${FLOOD_SECONDS} s (target ${count(FLOOD_RATE)}/s), ${count(f.received)} events received by the policy, ` +
  `${count(f.probeLost)} lost by the probe (ringbufFull ${count(f.ringbufFull)}). CPU over the flood (100% = one CPU): probe ${pct(f.cpu.probe)}, policy ${pct(f.cpu.policy)}, ` +
  `bpftool ${pct(f.cpu.children)}, other processes ${pct(f.cpu.others)}, idle ${pct(f.cpu.idle)} of ${cpus * 100}%.`;

const casesText = (worst: boolean) => CASES.filter((c) => c.worst === worst).map((c) => `N = ${c.n} ${c.range.label}`).join(', ');

const METHOD_SOURCES =
  `Probe + policy as deployed (\`make run\`) in a victim namespace, a fresh stack per population: N = ${PORT_THRESHOLDS.join(', ')} (in-kernel ` +
  `detection on, the fleet rule at its default), a window of ${count(WINDOW_SECONDS)} s and PW_MAX_TRACKED_SOURCES=${count(MAX_TRACKED)}, so ` +
  `nothing expires or is evicted. This process runs the attached program (BPF_PROG_TEST_RUN) on one SYN to each distinct port of ` +
  `${count(SOURCES)} sources, a quarter of them at a time and never more than 16,384 SYNs ahead of the policy, so every event takes the real ` +
  `path and none is lost. Target populations, each source on 2 ports (a client of two services): ${casesText(false)}; the worst case, N - 1 ` +
  `ports a source: ${casesText(true)}. ${WORST_CASE} RSS is the policy's VmRSS after a full garbage collection (through its inspector), before ` +
  `the first source and after each quarter: bytes/source = growth / sources; slope = least squares over the five points; before GC = the ` +
  `growth just before the last collection. The breakdown: services/policy's Detector fed the same way in this process (heapUsed + ` +
  `arrayBuffers after full collections), with the fleet rule and without it.`;

const METHOD_FLOOD =
  `The default settings. \`bpftool batch file -\` runs the attached program at ${count(FLOOD_RATE)} SYN/s for ${FLOOD_SECONDS} s on SYNs from ` +
  `${FLOOD_SOURCES} sources, each to port 80 only (never a scanner). VmRSS of probe and policy every second; max dev = the largest ` +
  `|sample - median| / median over the samples after the first ${WARMUP_SECONDS} s.`;

/** The section's tables in order, each with its caption (the flood's summary is the series table's). */
const tables = (rows: readonly PerSource[], f: Flood, cpus: number): [string, string][] => [
  ['', columnTable(rows, PER_SOURCE)],
  ['Policy RSS after a full GC as the population grows:', columnTable(rows, CHECKPOINTS)],
  ['Where the bytes of a source go (heap bytes per source, measured apart):', columnTable(rows, BREAKDOWN)],
  ['', floodTable(f)],
  [floodSummary(f, cpus), seriesTable(f)],
];

function section(m: Machine, date: string, load: number, rows: readonly PerSource[], f: Flood): string {
  const [t, probeDev] = [tables(rows, f, m.cpus), floodStats(f, 'probe').devPct];
  const bytes = (r: PerSource) => `N = ${r.n} ${r.range.label} ${r.perSource.toFixed(0)} bytes`;
  const facts = [...sectionFacts('memory', date, m, load), `- Method (per source): ${METHOD_SOURCES}`, `- Method (flood): ${METHOD_FLOOD}`];
  return sectionText(SECTION_HEADING, NAME, "How much memory the policy spends per tracked source, and whether the probe's memory stays flat under a SYN flood.", facts, [
    ...['### Policy RSS per tracked source', '', ...tableBlocks(t.slice(0, 3)), '### Probe RSS across a SYN flood', '', ...tableBlocks(t.slice(3))],
    `Targets: policy <= ${TARGET_BYTES} bytes per tracked source (a client of two services): ` +
      `${rows.filter((r) => !r.worst).map((r) => `${bytes(r)}, ${perSourceMet(r) ? 'met' : 'MISSED'}`).join('; ')}; ` +
      `worst case, no target: ${rows.filter((r) => r.worst).map(bytes).join('; ')}; ` +
      `probe RSS within ±${TARGET_FLAT}% across the flood: max deviation ${probeDev.toFixed(1)}%, ${probeDev <= TARGET_FLAT ? 'met' : 'MISSED'}.`,
    '',
  ]);
}

function results(rows: readonly PerSource[], f: Flood): ResultEntry[] {
  const [p, q] = [floodStats(f, 'probe'), floodStats(f, 'policy')];
  return [
    ...rows.map((r) =>
      entry(`${label(r)}, ${count(SOURCES)} sources from ${r.range.label}, N = ${r.n}`, Math.round(r.perSource), 'bytes',
        r.worst ? null : ['target bytes per source', TARGET_BYTES], r.worst ? null : [`<= ${TARGET_BYTES} bytes`, perSourceMet(r)], {
          portThreshold: r.n, portsPerSource: r.ports, sources: SOURCES, trackedSources: r.tracked, evictions: r.evictions, eventsLost: r.lost,
          rssBeforeBytes: r.rss[0]!, rssAfterBytes: r.rss[PARTS]!, slopeBytesPerSource: Math.round(r.slope),
          beforeGcBytesPerSource: Math.round((r.rssBeforeGc - r.rss[0]!) / SOURCES),
          detectorBytesPerSource: Math.round(r.heap.detector), fleetRuleBytesPerSource: Math.round(r.heap.fleet),
        }),
    ),
    entry(`probe RSS max deviation from its median across a ${FLOOD_SECONDS} s flood`, round2(p.devPct), '%',
      ['target deviation', TARGET_FLAT], [`<= ${TARGET_FLAT} %`, p.devPct <= TARGET_FLAT], {
        offeredSynPerSecond: Math.round(f.offered), probeIdleBytes: f.idle.probe, probeFirstAfterWarmupBytes: p.first,
        probeMinBytes: p.min, probeMaxBytes: p.max, probeLastBytes: p.last, probeEventsLost: f.probeLost,
      }),
    entry(`policy RSS max deviation from its median across the same flood`, round2(q.devPct), '%', null, null,
      { policyIdleBytes: f.idle.policy, policyMinBytes: q.min, policyMaxBytes: q.max, policyLastBytes: q.last }),
  ];
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench(NAME);
  const libs = await loadStack();
  const { rows, f } = await cleanup.around(async () => {
    const net = libs.stack.namespaces(SLOT, cleanup);
    const rows: PerSource[] = [];
    for (const c of CASES) {
      console.log(`${label(c)} at N = ${c.n}: ${count(SOURCES)} sources from ${c.range.label} (${sourceAddress(c.range, 0)} ...), ${c.ports} ports each`);
      rows.push(await perSource(libs, net, c, cleanup));
    }
    console.log(`probe RSS across a ${FLOOD_SECONDS} s flood at ${count(FLOOD_RATE)} SYN/s`);
    return { rows, f: await flood(libs, net, cleanup.tempDir(), cleanup) };
  });
  const short = rows.find((r) => r.tracked !== SOURCES);
  if (short) throw new BenchError(`the policy tracks ${count(short.tracked)} of the ${count(SOURCES)} sources fed from ${short.range.label} (evictions ${short.evictions})`);
  const date = today();
  console.log(`\nMemory, ${date}: ${machineText(m)}; load average ${load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}\n`);
  for (const [caption, text] of tables(rows, f, m.cpus)) console.log(`${caption ? `${caption}\n` : ''}${text}\n`);
  publish(NAME, SECTION_HEADING, () => results(rows, f), () => section(m, date, load, rows, f), `${count(SOURCES)} sources, ${FLOOD_SECONDS} s flood`);
}

await runBench('memory', main);
