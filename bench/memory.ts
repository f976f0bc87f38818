// `make bench-memory`: what the stack's memory does under load.
//
// 1. Policy RSS per tracked source, at N = 3, 16 and 64: probe + policy as
//    deployed in a victim namespace (@packetwatch/test-support's stack); SYNs from 1,000,000
//    distinct sources run through the attached program (BPF_PROG_TEST_RUN
//    from this process), so every event takes the real path: program, ring
//    buffer, probe, Report stream, the policy's detector. Each source hits
//    N - 1 distinct ports inside a one-hour window: the most a source holds
//    without being a scanner, so all stay tracked. The policy's RSS after a
//    full garbage collection, before and after, over the number of sources;
//    IPv4 and IPv6 populations, each with a fresh stack.
// 2. Probe RSS across a 60 s SYN flood: bpftool runs the attached program at
//    a fixed rate (@packetwatch/test-support's drive()), the probe's and the policy's
//    RSS sampled every second.
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cleanup, type NamespacePair, XDP_PASS, cpuShares, cpuSnapshot, drive, runOnce, sleep } from '@packetwatch/test-support';
import { startStackBench } from './harness.js';
import { RANGES, type SourceRange, SourceFrames, collectGarbage, feedPopulation, rssBytes, sourceAddress } from './population.js';
import {
  BenchError,
  REPO_ROOT,
  type Machine,
  type ResultEntry,
  SMOKE,
  count,
  machineText,
  median,
  publish,
  round2,
  runBench,
  table,
  today,
  sectionFacts,
} from './report.js';

const NAME = 'memory';
const SECTION_HEADING = '## Memory';
const SOURCES = SMOKE ? 10_000 : 1_000_000;
/** The per-host thresholds measured: the default, and two larger ones. */
const PORT_THRESHOLDS = [3, 16, 64] as const;
/** The population is fed in this many equal parts, RSS measured after each: the slope is the marginal cost. */
const PARTS = 4;
/**
 * 2^23, so that nothing is evicted: every source hits N - 1 >= 2 distinct
 * ports, so it is promoted to the protected space, an eighth of the cap
 * (2^20 = 1,048,576, above SOURCES). The spaces' arrays grow as they fill, so
 * the cap itself costs nothing.
 */
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
const POPULATIONS: readonly SourceRange[] = [RANGES.v4Low, RANGES.v4High, RANGES.v6];
/**
 * The populations at each N: all three at N = 3; above it IPv4 below 2^31 and
 * IPv6 (the IPv4 range above 2^31 differs only in its keys, which N does not
 * change, and each population at N = 64 is 63,000,000 SYNs, about 10 minutes).
 */
const populationsAt = (n: number): readonly SourceRange[] => (n === 3 ? POPULATIONS : [RANGES.v4Low, RANGES.v6]);
/** Source i's j-th distinct port (j < N - 1 <= 63): 1-1024. */
const portOf = (i: number, j: number): number => 1 + ((i + j) % 1024);
const DETECTOR_JS = join(REPO_ROOT, 'services/policy/dist/detector.js');
/** How the policy keys a source, when it has such a module (else the 16-byte address as a latin1 string). */
const SOURCE_KEY_JS = join(REPO_ROOT, 'services/policy/dist/sourcekey.js');
/** The policy's settings, for the fleet rule's default F, when it has one (the detector is built as the policy builds it). */
const POLICY_CONFIG_JS = join(REPO_ROOT, 'services/policy/dist/config.js');

interface Libs {
  bpf: typeof import('@packetwatch/bpf');
  stack: typeof import('@packetwatch/test-support/stack');
}

interface PerSource {
  range: SourceRange;
  /** N, and the distinct ports each source hit (N - 1). */
  n: number;
  ports: number;
  sources: number;
  tracked: number;
  evictions: number;
  policyLost: number;
  probeLost: number;
  /** RSS after a full GC at 0, 1/PARTS, ... all sources. */
  rss: number[];
  /** RSS just before the last GC (garbage included). */
  rssBeforeGc: number;
  feedSeconds: number;
  /** (last - first) / sources. */
  perSource: number;
  /** Least-squares slope of rss over sources. */
  slope: number;
  breakdown: Breakdown;
}

/** Heap bytes per source of the detector's parts, measured in a separate Node process (--expose-gc). */
interface Breakdown {
  key: number;
  map: number;
  detector: number;
  /** Of the detector's bytes, those of the fleet rule's state (the detector with it minus without; 0 where the policy has none). */
  fleet: number;
  /** The fleet rule's F the detector was built with (0: none). */
  pairThreshold: number;
}

interface Sample {
  second: number;
  probe: number;
  policy: number;
  events: number;
  lost: number;
}

interface Flood {
  idleProbe: number;
  idlePolicy: number;
  samples: Sample[];
  offered: number;
  received: number;
  probeLost: number;
  ringbufFull: number;
  cpu: { probe: number; policy: number; children: number; others: number; idle: number };
}

async function loadLibs(): Promise<Libs> {
  try {
    const [bpf, stack] = await Promise.all([import('@packetwatch/bpf'), import('@packetwatch/test-support/stack')]);
    return { bpf, stack };
  } catch (e) {
    throw new BenchError(`loading the build failed (${(e as Error).message}): run make build`);
  }
}

function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return num / den;
}

/**
 * What a tracked source costs the detector, part by part, in a Node process
 * of its own with --expose-gc: the key as the policy makes it (its
 * sourceKey(), or the 16-byte address as a latin1 string), a Map entry from key
 * to slot (what a Map index would cost, for comparison), and the detector
 * itself (its source index, slot arrays and probation ring), each as heapUsed
 * + arrayBuffers after a full collection.
 */
function breakdown(range: SourceRange, sources: number, n: number): Breakdown {
  const script = `
    const { Detector } = await import(${JSON.stringify(DETECTOR_JS)});
    let keyOf = (buf) => buf.toString('latin1');
    try { const m = await import(${JSON.stringify(SOURCE_KEY_JS)}); keyOf = (buf) => m.sourceKey(buf, 0); } catch {}
    const [S, fam, base, max, win, N] = process.argv.slice(1).map(Number);
    const mem = () => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
    const addr = Buffer.alloc(16);
    if (fam === 4) { addr[10] = 0xff; addr[11] = 0xff; } else { addr.writeUInt32BE(0x20010db8, 0); }
    const keys = new Array(S).fill(undefined);
    const b0 = mem();
    for (let i = 0; i < S; i++) { addr.writeUInt32BE((base + i) >>> 0, 12); keys[i] = keyOf(addr); }
    const b1 = mem();
    const map = new Map();
    for (let i = 0; i < S; i++) map.set(keys[i], i);
    const b2 = mem();
    map.clear();
    let F = 0;
    try { const m = await import(${JSON.stringify(POLICY_CONFIG_JS)}); F = m.policySettings.fleetThreshold?.default ?? 0; } catch {}
    // As the policy takes it: 0, or at least N.
    if (F > 0 && F < N) F = N;
    // Both detectors stay alive to the end: a freed one's array buffers could be released during the other's measurement.
    const filled = (pairThreshold) => {
      const before = mem();
      const d = new Detector({ portThreshold: N, windowSeconds: win, maxSources: max, pairThreshold });
      const t = Date.now();
      // As the stack is fed: N - 1 rounds, each a hit of every source on its next port.
      const portOf = ${portOf.toString()};
      for (let j = 0; j < N - 1; j++) for (let i = 0; i < S; i++) d.observe(keys[i], portOf(i, j), t + j, i % 8);
      if (d.tracked !== S) throw new Error('detector tracks ' + d.tracked + ' of ' + S);
      return { d, bytes: (mem() - before) / S };
    };
    const plain = F > 0 ? filled(0) : undefined;
    const full = filled(F);
    const fleet = plain ? full.bytes - plain.bytes : 0;
    console.log(JSON.stringify({ key: (b1 - b0) / S, map: (b2 - b1) / S, detector: full.bytes, fleet, pairThreshold: F, tracked: full.d.tracked + (plain?.d.tracked ?? 0) }));
  `;
  try {
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--input-type=module', '-e', script, String(sources), String(range.family), String(range.base), String(MAX_TRACKED), String(WINDOW_SECONDS), String(n)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 20 },
    );
    return JSON.parse(out) as Breakdown;
  } catch (e) {
    throw new BenchError(`measuring the detector's parts in a separate process failed: ${(e as Error).message}`);
  }
}

const policyEnv = (n: number) => ({
  PW_PORTSCAN_PORT_THRESHOLD: String(n),
  PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
  PW_MAX_TRACKED_SOURCES: String(MAX_TRACKED),
});

async function perSource(libs: Libs, net: NamespacePair, range: SourceRange, n: number, cleanup: Cleanup): Promise<PerSource> {
  const stack = await libs.stack.Stack.start(net, 'in-kernel', cleanup, policyEnv(n));
  const pid = stack.svc.policy?.pid;
  const programId = (await stack.probeStatus()).programId;
  const prog = stack.openProgram(programId, cleanup);
  const frames = new SourceFrames(range, (src, port) => libs.bpf.synFrame(src, net.victimAddr, 40_000, port));
  frames.check();
  const received = async () => Number((await stack.policyStatus()).eventsReceived);
  // Started, connected, its first sweeps and reconcile done: the state before any source.
  await sleep(2000);
  await collectGarbage(net.victimNs, pid);
  const rss = [rssBytes(pid)];
  const part = SOURCES / PARTS;
  let feedSeconds = 0;
  let rssBeforeGc = 0;
  for (let k = 0; k < PARTS; k++) {
    // The part's sources, each on its next port, N - 1 times.
    for (let j = 0; j < n - 1; j++) {
      feedSeconds += await feedPopulation([prog], { frames, first: k * part, count: part, port: (i) => portOf(i, j) }, received);
    }
    rssBeforeGc = rssBytes(pid);
    await collectGarbage(net.victimNs, pid);
    rss.push(rssBytes(pid));
    console.log(`  N = ${n}, ${range.label}: ${count((k + 1) * part)} sources fed ${n - 1} ports each, policy RSS ${(rss[rss.length - 1]! / 2 ** 20).toFixed(1)} MiB after GC`);
  }
  const [policy, probe] = await Promise.all([stack.policyStatus(), stack.probeStatus()]);
  await stack.stop();
  const xs = rss.map((_, k) => k * part);
  return {
    range,
    n,
    ports: n - 1,
    sources: SOURCES,
    tracked: Number(policy.trackedSources),
    evictions: Number(policy.evictions),
    policyLost: Number(policy.eventsLost),
    probeLost: Number(probe.eventsLost),
    rss,
    rssBeforeGc,
    feedSeconds,
    perSource: (rss[rss.length - 1]! - rss[0]!) / SOURCES,
    slope: slope(xs, rss),
    breakdown: breakdown(range, SOURCES, n),
  };
}

async function flood(libs: Libs, net: NamespacePair, dir: string, cleanup: Cleanup): Promise<Flood> {
  const stack = await libs.stack.Stack.start(net, 'in-kernel', cleanup);
  const probePid = stack.svc.probe?.pid;
  const policyPid = stack.svc.policy?.pid;
  const programId = (await stack.probeStatus()).programId;
  const files: string[] = [];
  for (let s = 0; s < FLOOD_SOURCES; s++) {
    const file = join(dir, `flood-${s}.bin`);
    writeFileSync(file, libs.bpf.synFrame(`198.18.${SLOT}.${s + 1}`, net.victimAddr, 40_000 + s, 80));
    files.push(file);
  }
  const verdict = runOnce(programId, files[0]!);
  if (verdict !== XDP_PASS) throw new BenchError(`setup check: the program returned ${verdict} for a flood SYN, expected XDP_PASS`);
  await sleep(1000);
  const idleProbe = rssBytes(probePid);
  const idlePolicy = rssBytes(policyPid);
  let driver: ChildProcess | undefined;
  cleanup.add('stop the flood', () => driver?.kill('SIGKILL'));
  const before = await Promise.all([stack.probeStatus(), stack.policyStatus()]);
  const cpu0 = cpuSnapshot({ probe: probePid, policy: policyPid });
  let done = false;
  const driving = drive(programId, files, FLOOD_RATE, FLOOD_SECONDS * 1000, (c) => (driver = c)).finally(() => (done = true));
  const samples: Sample[] = [];
  const start = performance.now();
  for (let s = 1; !done; s++) {
    const wait = start + s * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
    if (done) break;
    if (!stack.running) throw new BenchError(`a service died during the flood:\n${stack.tail()}`);
    const st = await stack.probeStatus();
    samples.push({ second: s, probe: rssBytes(probePid), policy: rssBytes(policyPid), events: Number(st.counters?.events ?? 0n), lost: Number(st.eventsLost) });
  }
  const { seconds } = await driving;
  const cpu1 = cpuSnapshot({ probe: probePid, policy: policyPid });
  // Let the policy catch up before its count is read.
  await sleep(2000);
  const after = await Promise.all([stack.probeStatus(), stack.policyStatus()]);
  await stack.stop();
  const c = (s: (typeof before)[0], k: 'syn' | 'ringbufFull') => Number(s.counters?.[k] ?? 0n);
  const shares = cpuShares(cpu0, cpu1);
  return {
    idleProbe,
    idlePolicy,
    samples,
    offered: (c(after[0], 'syn') - c(before[0], 'syn')) / seconds,
    received: Number(after[1].eventsReceived - before[1].eventsReceived),
    probeLost: Number(after[0].eventsLost - before[0].eventsLost),
    ringbufFull: c(after[0], 'ringbufFull') - c(before[0], 'ringbufFull'),
    cpu: { probe: shares.probe, policy: shares.policy, children: shares.children, others: shares.others, idle: shares.idle },
  };
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

function perSourceMet(r: PerSource): boolean {
  return r.tracked === r.sources && r.evictions === 0 && r.perSource <= TARGET_BYTES;
}

function perSourceTable(rows: readonly PerSource[]): string {
  return table(
    ['N', 'sources', 'ports each', 'tracked', 'evictions', 'lost', 'feed s', 'RSS before MiB', 'RSS after MiB', 'bytes/source', 'slope bytes/source', 'before GC bytes/source', 'target', 'result'],
    rows.map((r) => [
      String(r.n),
      `${count(r.sources)} ${r.range.label}`,
      String(r.ports),
      count(r.tracked),
      count(r.evictions),
      count(r.policyLost + r.probeLost),
      r.feedSeconds.toFixed(1),
      mib(r.rss[0]!),
      mib(r.rss[r.rss.length - 1]!),
      r.perSource.toFixed(0),
      r.slope.toFixed(0),
      ((r.rssBeforeGc - r.rss[0]!) / r.sources).toFixed(0),
      `<= ${TARGET_BYTES}`,
      perSourceMet(r) ? 'met' : 'MISSED',
    ]),
    [true, false, true, true, true, true, true, true, true, true, true, true, false, false],
  );
}

function checkpointTable(rows: readonly PerSource[]): string {
  const part = SOURCES / PARTS;
  return table(
    ['sources', ...rows.map((r) => `N = ${r.n} ${r.range.label} RSS MiB`)],
    rows[0]!.rss.map((_, k) => [count(k * part), ...rows.map((r) => mib(r.rss[k]!))]),
    [true, ...rows.map(() => true)],
  );
}

function breakdownTable(rows: readonly PerSource[]): string {
  return table(
    ['N', 'population', 'detector (index, slot arrays)', 'of which the fleet rule', 'F', 'RSS bytes/source', 'rest (V8 and allocator overhead)'],
    rows.map((r) => {
      const b = r.breakdown;
      return [
        String(r.n),
        r.range.label,
        b.detector.toFixed(0),
        b.fleet.toFixed(0),
        String(b.pairThreshold),
        r.perSource.toFixed(0),
        (r.perSource - b.detector).toFixed(0),
      ];
    }),
    [true, false, true, true, true, true, true],
  );
}

/** Samples after the warm-up: the flat-memory figures. */
function floodStats(f: Flood, pick: (s: Sample) => number) {
  const after = f.samples.filter((s) => s.second > WARMUP_SECONDS).map(pick);
  if (after.length === 0) throw new BenchError('no RSS sample after the warm-up');
  const med = median(after);
  const dev = Math.max(...after.map((v) => Math.abs(v - med))) / med;
  return { first: after[0]!, min: Math.min(...after), max: Math.max(...after), last: after[after.length - 1]!, median: med, devPct: dev * 100 };
}

function floodTable(f: Flood): string {
  const rows = (['probe', 'policy'] as const).map((who) => {
    const st = floodStats(f, (s) => s[who]);
    const idle = who === 'probe' ? f.idleProbe : f.idlePolicy;
    return [
      who,
      mib(idle),
      mib(st.first),
      mib(st.min),
      mib(st.max),
      mib(st.last),
      mib(st.median),
      st.devPct.toFixed(1),
      who === 'probe' ? `<= ${TARGET_FLAT}%` : '-',
      who === 'probe' ? (st.devPct <= TARGET_FLAT ? 'met' : 'MISSED') : '-',
    ];
  });
  return table(
    ['process', 'idle MiB', `first after ${WARMUP_SECONDS} s MiB`, 'min MiB', 'max MiB', 'last MiB', 'median MiB', 'max dev from median %', 'target', 'result'],
    rows,
    [false, true, true, true, true, true, true, true, false, false],
  );
}

function seriesTable(f: Flood): string {
  return table(
    ['second', 'probe RSS MiB', 'policy RSS MiB', 'probe events', 'probe lost'],
    f.samples.filter((s) => s.second % (SMOKE ? 1 : 5) === 0 || s.second === 1).map((s) => [String(s.second), mib(s.probe), mib(s.policy), count(s.events), count(s.lost)]),
    [true, true, true, true, true],
  );
}

function floodSummary(f: Flood, cpus: number): string {
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  return (
    `Flood: ${count(Math.round(f.offered))} SYN/s offered for ${FLOOD_SECONDS} s (target ${count(FLOOD_RATE)}/s), ${count(f.received)} events received by the policy, ` +
    `${count(f.probeLost)} lost by the probe (ringbufFull ${count(f.ringbufFull)}). CPU over the flood (100% = one CPU): probe ${pct(f.cpu.probe)}, policy ${pct(f.cpu.policy)}, ` +
    `bpftool ${pct(f.cpu.children)}, other processes ${pct(f.cpu.others)}, idle ${pct(f.cpu.idle)} of ${cpus * 100}%.`
  );
}

const METHOD_SOURCES =
  `Probe + policy run as deployed (\`make run\`: the probe as root, the policy as the unprivileged packetwatch user, Unix sockets) in a victim network namespace, XDP on its veth, ` +
  `N = PW_PORTSCAN_PORT_THRESHOLD = ${PORT_THRESHOLDS.join(', ')}, a fresh stack for each N and population (in-kernel detection on, as by default; the fleet rule at its default, F = max(10, N)), ` +
  `PW_PORTSCAN_TIME_THRESHOLD=${WINDOW_SECONDS} so that no source expires during the run, PW_MAX_TRACKED_SOURCES=${count(MAX_TRACKED)} ` +
  `(an eighth of it, 1,048,576, is the protected space, where a source seen on two ports or more is: above the population, so nothing is evicted; the spaces' arrays grow as they fill). ` +
  `Feeding: the real path. This process runs the attached program (BPF_PROG_TEST_RUN on a descriptor of it) on SYNs from ${count(SOURCES)} distinct sources: ` +
  `each source sends N - 1 SYNs, each to a distinct port (source i's j-th to port 1 + (i + j) mod 1024), the most distinct ports a source holds without being a scanner, ` +
  `so each is tracked at its largest (${PORT_THRESHOLDS.map((n) => `${n - 1} ports at N = ${n}`).join(', ')}); the population is fed a quarter at a time, each quarter in N - 1 rounds of one SYN a source, ` +
  `and the events go through the ring buffer, the probe and its Report stream to the policy's detector. ` +
  `It stays at most 16,384 SYNs ahead of what the policy has received (its GetStatus eventsReceived), so nothing is lost. ` +
  `Populations: at N = 3 ${POPULATIONS.map((r) => r.label).join(', ')} (IPv4 addresses below 2^31 and above it: a key that holds an IPv4 address as a number can cost more above); ` +
  `at N = 16 and 64 ${populationsAt(64).map((r) => r.label).join(' and ')} (the IPv4 range above 2^31 differs in its keys only, which N does not change, and a population at N = 64 is 63,000,000 SYNs, about 10 minutes). ` +
  `The frames are one synFrame() each, patched in place (address, port, checksums; checked byte for byte against synFrame()). ` +
  `RSS = VmRSS of /proc/<pid>/status after a full garbage collection: SIGUSR1 opens Node's own inspector in the policy (nothing was added to the product for it) and HeapProfiler.collectGarbage runs twice. ` +
  `It is measured before the first source (2 s after start) and after each quarter of the population; bytes/source = (RSS after all - RSS before) / sources, ` +
  `slope = least-squares bytes per source over the five points (the marginal cost, without one-off growth), before GC = the same difference read just before the last collection (garbage included: what the process holds between collections). ` +
  `GetStatus after the feed gives trackedSources, evictions and events lost. ` +
  `The breakdown measures the parts in a separate Node process (--expose-gc, heapUsed + arrayBuffers after full collections) for the same population: ` +
  `services/policy/dist/detector.js's Detector at the row's N (its index holds each source's address in typed arrays, so no key is held apart), fed as the stack is (N - 1 ports a source, in rounds), ` +
  `with the fleet rule at the policy's default F (PW_FLEET_PORT_THRESHOLD, read from services/policy/dist/config.js, raised to N as the policy does; each source on one of 8 probe numbers) ` +
  `(its index of sources, slot arrays and probation ring); of which the fleet rule = that detector minus one built without the fleet rule; rest = RSS bytes/source - detector.`;

const METHOD_FLOOD =
  `Probe + policy as deployed, as above, with the default settings (N = 3 in 60 s, in-kernel detection on). ` +
  `\`bpftool batch file -\` runs the attached program at ${count(FLOOD_RATE)} SYN/s for ${FLOOD_SECONDS} s (@packetwatch/test-support's drive(): \`prog run ... repeat n\` lines every 10 ms) ` +
  `on 74-byte IPv4 SYNs from ${FLOOD_SOURCES} sources (198.18.${SLOT}.1-${FLOOD_SOURCES}), each to port 80 only, so no source becomes a scanner and the flood runs the whole time. ` +
  `VmRSS of probe and policy sampled every second; the flat-memory figures use the samples after the first ${WARMUP_SECONDS} s (warm-up): max dev = the largest |sample - median| / median.`;

function section(m: Machine, date: string, load: number, rows: readonly PerSource[], f: Flood): string {
  return [
    SECTION_HEADING,
    '',
    "How much memory the policy spends per tracked source, and whether the probe's memory stays flat under a SYN flood.",
    '',
    ...sectionFacts('memory', date, m, load),
    `- Method (per source): ${METHOD_SOURCES}`,
    `- Method (flood): ${METHOD_FLOOD}`,
    '',
    '### Policy RSS per tracked source',
    '',
    '```text',
    perSourceTable(rows),
    '```',
    '',
    'Policy RSS after a full GC as the population grows:',
    '',
    '```text',
    checkpointTable(rows),
    '```',
    '',
    'Where the bytes of a source go (heap bytes per source, measured apart):',
    '',
    '```text',
    breakdownTable(rows),
    '```',
    '',
    '### Probe RSS across a SYN flood',
    '',
    '```text',
    floodTable(f),
    '```',
    '',
    floodSummary(f, m.cpus),
    '',
    '```text',
    seriesTable(f),
    '```',
    '',
    `Targets: policy <= ${TARGET_BYTES} bytes per tracked source: ${rows.map((r) => `N = ${r.n} ${r.range.label} ${r.perSource.toFixed(0)} bytes, ${perSourceMet(r) ? 'met' : 'MISSED'}`).join('; ')}; ` +
      `probe RSS within ±${TARGET_FLAT}% across the flood: max deviation ${floodStats(f, (s) => s.probe).devPct.toFixed(1)}%, ${floodStats(f, (s) => s.probe).devPct <= TARGET_FLAT ? 'met' : 'MISSED'}.`,
    '',
    '_This section is rewritten by `make bench-memory`._',
    '',
  ].join('\n');
}

function results(rows: readonly PerSource[], f: Flood): ResultEntry[] {
  const out: ResultEntry[] = rows.map((r) => ({
    name: `policy RSS per tracked source, ${count(r.sources)} sources from ${r.range.label}, N = ${r.n}, ${r.ports} ports each`,
    value: Math.round(r.perSource),
    unit: 'bytes',
    comparison: 'target bytes per source',
    comparisonValue: TARGET_BYTES,
    ratio: round2(r.perSource / TARGET_BYTES),
    target: `<= ${TARGET_BYTES} bytes`,
    met: perSourceMet(r),
    portThreshold: r.n,
    portsPerSource: r.ports,
    sources: r.sources,
    trackedSources: r.tracked,
    evictions: r.evictions,
    eventsLost: r.policyLost + r.probeLost,
    rssBeforeBytes: r.rss[0]!,
    rssAfterBytes: r.rss[r.rss.length - 1]!,
    slopeBytesPerSource: Math.round(r.slope),
    beforeGcBytesPerSource: Math.round((r.rssBeforeGc - r.rss[0]!) / r.sources),
    keyStringBytes: Math.round(r.breakdown.key),
    mapEntryBytes: Math.round(r.breakdown.map),
    detectorBytesPerSource: Math.round(r.breakdown.detector),
    fleetRuleBytesPerSource: Math.round(r.breakdown.fleet),
  }));
  const p = floodStats(f, (s) => s.probe);
  const q = floodStats(f, (s) => s.policy);
  out.push({
    name: `probe RSS max deviation from its median across a ${FLOOD_SECONDS} s flood`,
    value: round2(p.devPct),
    unit: '%',
    comparison: 'target deviation',
    comparisonValue: TARGET_FLAT,
    ratio: round2(p.devPct / TARGET_FLAT),
    target: `<= ${TARGET_FLAT} %`,
    met: p.devPct <= TARGET_FLAT,
    offeredSynPerSecond: Math.round(f.offered),
    probeIdleBytes: f.idleProbe,
    probeFirstAfterWarmupBytes: p.first,
    probeMinBytes: p.min,
    probeMaxBytes: p.max,
    probeLastBytes: p.last,
    probeEventsLost: f.probeLost,
  });
  out.push({
    name: `policy RSS max deviation from its median across the same flood`,
    value: round2(q.devPct),
    unit: '%',
    comparison: null,
    comparisonValue: null,
    ratio: null,
    target: null,
    met: null,
    policyIdleBytes: f.idlePolicy,
    policyMinBytes: q.min,
    policyMaxBytes: q.max,
    policyLastBytes: q.last,
  });
  return out;
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench(NAME);
  const libs = await loadLibs();
  const { rows, f } = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const net = libs.stack.namespaces(SLOT, cleanup);
    const rows: PerSource[] = [];
    for (const n of PORT_THRESHOLDS) {
      for (const range of populationsAt(n)) {
        console.log(`policy RSS per source at N = ${n}: ${count(SOURCES)} sources from ${range.label} (${sourceAddress(range, 0)} ...), ${n - 1} ports each`);
        rows.push(await perSource(libs, net, range, n, cleanup));
      }
    }
    console.log(`probe RSS across a ${FLOOD_SECONDS} s flood at ${count(FLOOD_RATE)} SYN/s`);
    const f = await flood(libs, net, dir, cleanup);
    return { rows, f };
  });
  for (const r of rows) {
    if (r.tracked !== r.sources) throw new BenchError(`the policy tracks ${count(r.tracked)} sources of the ${count(r.sources)} fed from ${r.range.label} (evictions ${r.evictions})`);
  }
  const date = today();
  console.log('');
  console.log(`Memory, ${date}: ${machineText(m)}; load average ${load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}`);
  console.log('');
  console.log(perSourceTable(rows));
  console.log('');
  console.log(checkpointTable(rows));
  console.log('');
  console.log(breakdownTable(rows));
  console.log('');
  console.log(floodTable(f));
  console.log(floodSummary(f, m.cpus));
  console.log('');
  console.log(seriesTable(f));
  publish(NAME, SECTION_HEADING, () => results(rows, f), () => section(m, date, load, rows, f), `${count(SOURCES)} sources, ${FLOOD_SECONDS} s flood`);
}

await runBench('memory', main);
