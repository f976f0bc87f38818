// `make bench-datapath`: what each path through the Packetwatch XDP program costs per packet, next to an empty XDP program
// (the floor) and to xdp-filter (Debian's libxdp1), interleaved in one process, timed by the kernel (BPF_PROG_TEST_RUN);
// variant builds of the same source (PW_VARIANT_*) and the program at PREVIOUS_REV run beside it.
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import {
  BlockReason, COUNTER_NAMES, type CounterName, Datapath, type DatapathOptions, OBJECT_PATH, PROGRAM_NAME, TCP_FLAGS,
  TEST_CLOCK_OBJECT_PATH, blockCodec, encodeScanHistory, formatAddress, ipFrame, parseAddress, scanStateSize, synEventCodec, synFrame, zeroCounters,
} from '@packetwatch/bpf';
import { Cleanup, XDP_PASS } from '@packetwatch/test-support';
import { ObjectSpec, type Program, RingBufferReader, clock, encode, mountBpffs, u32, u64 } from 'libbpf-ts';
import { requireBuild, requireRoot, tableBlocks } from './harness.js';
import {
  BENCH_DIR, BenchError, type Machine, REPO_ROOT, type ResultEntry, SMOKE, commandError, count, entry, machine, median, publish, rel, round2, runBench,
  sectionFacts, sectionText, table as textTable, today,
} from './report.js';

const SECTION_HEADING = '## Datapath cost';
const FLOOR_PROGRAM = 'xdp_pass';
const FLOOR_COMPARISON = 'xdp_pass floor, same run';

/** The program before fail-closed parsing, stealth and fragment probes and prefix keys, built from git and run beside the deployed one. */
const PREVIOUS_REV = 'df3bb8b';
const PREVIOUS = 'previous';
/** The deployed program in objects of its own running the compared paths only, as the previous one does. */
const BESIDE = 'beside-previous';
const COMPARED = ['pass', 'new-connection', 'drop'];
/** No path may cost more than this times the previous program's. */
const PREVIOUS_MAX_RATIO = 1.1;
/** Objects of each program in that comparison (where an object lands moves a path by a ns or two): each side is the median over them. */
const OBJECTS_EACH = SMOKE ? 1 : 5;

// xdp-filter's programs: xdpfilt_alw_ip (`xdp-filter load`'s default) drops the sources its maps list; xdpfilt_dny_ip passes only them.
const XDP_FILTER_DIR = `/usr/lib/${os.machine()}-linux-gnu/bpf`;
const XDP_FILTER_DENYLIST = 'xdpfilt_alw_ip';
const XDP_FILTER_ALLOWLIST = 'xdpfilt_dny_ip';

const XDP_DROP = 1;
const VERDICT_NAMES = ['aborted', 'drop', 'pass', 'tx', 'redirect'];
const verdictName = (retval: number) => VERDICT_NAMES[retval] ?? `verdict ${retval}`;

const ROUNDS = SMOKE ? 2 : 7;
const PACKETS_PER_MEASUREMENT = SMOKE ? 2_000 : 1_000_000;
// A call must not outrun the ring (a full ring takes the cheaper "ring full" branch, which checkBooks catches): it is drained between calls.
const PACKETS_PER_CALL = SMOKE ? 1_000 : 50_000;
const RING_BUFFER_BYTES = 4 << 20;
/** One-packet calls with the ring drained before each SYN, so that every SYN wakes the reader. */
const WAKEUP_CALLS = SMOKE ? 20 : 2_000;

// The probe's defaults: PW_KERNEL_DETECTION on, PW_PORTSCAN_PORT_THRESHOLD 3, PW_PORTSCAN_TIME_THRESHOLD 60, PW_BLOCK_TTL 0.
const DEPLOYED_N = 3;
const WINDOW_NS = 60_000_000_000n;
const DEPLOYED: DatapathOptions = { scanPorts: DEPLOYED_N, scanWindowSeconds: 60, scanBlockSeconds: 0, ringBufferBytes: RING_BUFFER_BYTES };
/** N of the detector for the N column: the deployed 3, then larger ones up to the most the program takes. */
const BY_N = [DEPLOYED_N, 16, 64];
const MAX_N = Math.max(...BY_N);
/** One-packet calls of each path whose state each packet moves on, and between two drains of the ring buffers. */
const EVICTION_CALLS = SMOKE ? 20 : 10_000;
const RING_DRAIN_CALLS = 1_000;

// Documentation ranges (RFC 5737): nothing here is ever a real peer.
const VICTIM = '198.51.100.1';
const CLIENT = '192.0.2.10';
const SCANNER = '192.0.2.66';
const EXPIRING = '192.0.2.77';
const PARTNER = '192.0.2.99';
/** A source with N ports kept, the oldest out of the window, hitting the last one the search reaches. */
const KEPT = '192.0.2.20';
/** A source with N ports kept hitting a new one: it replaces the oldest. */
const EVICTING = '192.0.2.21';
const SSH = 22;
/** Closed mode's socket lookup runs in this namespace: the bench listens on LISTENER:SSH (open), so nothing holds SSH on the wildcard. */
const LISTENER = '127.0.0.2';

const ACK = ipFrame({ src: CLIENT, dst: VICTIM, tcp: { sport: 40000, dport: SSH, flags: TCP_FLAGS.ACK } });
const CLIENT_SYN = synFrame(CLIENT, VICTIM, 40001, SSH);
const SCANNER_SYN = synFrame(SCANNER, VICTIM, 40002, SSH);

type Counts = Partial<Record<CounterName, bigint>>;
const PASS_COUNTS: Counts = { frames: 1n };
const EVENT_COUNTS: Counts = { frames: 1n, syn: 1n, events: 1n };
const DROP_COUNTS: Counts = { frames: 1n, syn: 1n, synDropped: 1n };

/** One Packetwatch object in the kernel, N of its detector (0: off), its ring buffer reader and the counters it should show. */
class Subject {
  readonly reader: RingBufferReader;
  readonly expected = zeroCounters();
  eventsRead = 0;
  /** Events the calls since the last drain() wrote. */
  pending = 0;

  constructor(readonly label: string, readonly dp: Datapath, readonly n: number) {
    this.reader = dp.reader();
    // Permanent blocks, as by default (the drop path reads no clock); one that expires, for the path that does.
    dp.block(SCANNER);
    dp.block(EXPIRING, { ttlSeconds: 3600 });
    dp.block(PARTNER);
    dp.allow(PARTNER);
  }

  /** The detector's state the paths measure, set again before each measurement (a round can outlast the window). */
  prime(): void {
    if (this.n <= 1) return;
    // KEPT's history (bpf/src/records.ts): N ports from 1000, the first N - 1 hit two windows ago, the last a second ago.
    const now = clock.boottimeNs();
    const history = Array.from({ length: this.n }, (_, i): [number, bigint] => [1000 + i, i < this.n - 1 ? now - 2n * WINDOW_NS : now - 1_000_000_000n]);
    this.dp.collection.map('scanners').update(parseAddress(KEPT), encodeScanHistory(this.n, history));
    // The client and the partner are kept with one port (in probation): their admitting first SYN is taken here.
    for (const data of [CLIENT_SYN, synFrame(PARTNER, VICTIM, 40003, SSH)]) this.dp.program.testRun({ data });
    this.settle();
  }

  /** Takes what was sent outside the measured calls as expected: its events read, the counters as they are. */
  settle(): void {
    this.eventsRead += this.reader.consume().count;
    Object.assign(this.expected, this.dp.counters());
  }

  /** Reads the ring buffer: it must hold the events pending, the first one (fixed-size records, at offset 0) from `source`. */
  drain(source?: string): void {
    const { buffer, count } = this.reader.consume();
    this.eventsRead += count;
    const from = count ? formatAddress(synEventCodec.read(buffer, 0).saddr) : source;
    const got = `${count} events from ${from}`;
    if (count !== this.pending || from !== source) throw new BenchError(`${this.label}: ${got}, expected ${this.pending} from ${source}`);
    this.pending = 0;
  }

  /** The counters must equal what was sent: in particular no event lost to a full ring. */
  checkBooks(): void {
    const actual = this.dp.counters();
    const c = COUNTER_NAMES.find((name) => actual[name] !== this.expected[name]);
    const why = c === 'ringbufFull' ? ' (the ring buffer filled up: the event paths were measured on the ring-full branch)' : '';
    if (c) throw new BenchError(`${this.label}: counter ${c} is ${actual[c]}, expected ${this.expected[c]}${why}`);
  }

  close(): void {
    this.reader.close();
    this.dp.close();
  }
}

// A path: its name in the table and in datapath.json, what the row says, the program and frame it runs, the verdict it must give;
// a Packetwatch object's: the object, its N, the source its event names (none: no event), how one packet moves each counter.
// next: the frame of the next call, for paths whose state each packet moves on; drain: reads the events of another program.
interface Path {
  name: string;
  frame: string;
  program: Program;
  data: Buffer;
  verdict: number;
  subject?: Subject;
  n?: number;
  eventSource?: string;
  counts?: Counts;
  next?: () => Buffer;
  drain?: () => number;
}

/** A path's measurements: the rounds' and their median. */
type Result = { path: Path; samples: number[]; median: number };

/** Closes x with the bench's other cleanup steps; returns it. */
type Keep = <T extends { close(): void }>(what: string, x: T) => T;

/** A path of a Packetwatch object: the counters an event path moves unless `counts` says otherwise. */
function on(s: Subject, name: string, frame: string, data: Buffer, verdict: number, eventSource?: string, counts?: Counts): Path {
  return { name, frame, program: s.dp.program, data, verdict, subject: s, eventSource, counts: counts ?? (eventSource ? EVENT_COUNTS : PASS_COUNTS), n: s.n };
}

function deployedPaths(s: Subject): Path[] {
  return [
    on(s, 'pass', 'ACK, unblocked source', ACK, XDP_PASS),
    on(s, 'new-connection', 'SYN, unblocked source -> event', CLIENT_SYN, XDP_PASS, CLIENT),
    on(s, 'drop', 'SYN, blocked source', SCANNER_SYN, XDP_DROP, undefined, DROP_COUNTS),
    on(s, 'drop-expiring', 'SYN, source blocked for 1 h (reads the clock)', synFrame(EXPIRING, VICTIM, 40004, SSH), XDP_DROP, undefined, DROP_COUNTS),
    on(s, 'allowlisted', 'SYN, blocked + allowlisted -> event', synFrame(PARTNER, VICTIM, 40003, SSH), XDP_PASS, PARTNER, { ...EVENT_COUNTS, allowlisted: 1n }),
  ];
}

/** The detector's paths at the subject's N (an object of its own per N, running these only). */
function detectorPaths(s: Subject): Path[] {
  return [
    on(s, `new-connection:N=${s.n}`, 'SYN, unblocked source -> event', CLIENT_SYN, XDP_PASS, CLIENT),
    on(s, `new-connection-full:N=${s.n}`, 'SYN, source with N ports kept, the last one searched -> event', synFrame(KEPT, VICTIM, 40005, 1000 + s.n - 1), XDP_PASS, KEPT),
  ];
}

/** A new port from a source with N ports kept, every packet (test-clock build): 2N ports in turn, each SYN W / (N - 1) after the one before. */
function evictionPath(s: Subject): Path {
  const testClock = s.dp.collection.map('test_clock').typed(u32, u64);
  const step = WINDOW_NS / BigInt(s.n - 1) + 1n;
  const frames = Array.from({ length: 2 * s.n }, (_, k) => synFrame(EVICTING, VICTIM, 40006, 3000 + k));
  let now = clock.boottimeNs();
  let k = 0;
  const next = () => {
    now += step;
    testClock.set(0, now);
    return frames[k++ % frames.length]!;
  };
  // The source's first 2N SYNs (its admission and promotion), taken here.
  while (k < 2 * s.n) s.dp.program.testRun({ data: next() });
  s.settle();
  const frame = 'SYN, new port of a source with N ports kept: replaces the oldest -> event';
  return { ...on(s, `new-port-full:N=${s.n}`, frame, frames[0]!, XDP_PASS, EVICTING), next };
}

// Variant builds (the same source with one design choice undone or one step left out), a row per path measured on one:
// [its label, PW_VARIANT_* defines, options, the deployed path, what the row says, what the build's path does differently].
type Variant = readonly [label: string, defines: string[], opts: DatapathOptions, path: string, frame: string, adjust?: (p: Path) => Path];
const CLOSED = { ...DEPLOYED, countClosed: true };
const LISTENING = (p: Path): Path => ({ ...p, data: synFrame(CLIENT, LISTENER, 40001, SSH), counts: { ...EVENT_COUNTS, openPortSyn: 1n } });
const NO_EVENT = (p: Path): Path => ({ ...p, eventSource: undefined, counts: { frames: 1n, syn: 1n } });
const VARIANTS: readonly Variant[] = [
  ['detector off', [], { ...DEPLOYED, scanPorts: 0 }, 'new-connection', 'new-connection, detector off (PW_KERNEL_DETECTION=false)'],
  ['precise clock', ['PW_VARIANT_PRECISE_CLOCK'], DEPLOYED, 'new-connection', 'new-connection, before: bpf_ktime_get_boot_ns per SYN'],
  ['precise clock', ['PW_VARIANT_PRECISE_CLOCK'], DEPLOYED, 'drop-expiring', 'drop-expiring, before: bpf_ktime_get_boot_ns per hit'],
  ['no drop cache', ['PW_VARIANT_NO_DROP_CACHE'], DEPLOYED, 'new-connection', 'new-connection without the drop cache (what its miss costs)'],
  ['no drop cache', ['PW_VARIANT_NO_DROP_CACHE'], DEPLOYED, 'drop', 'drop, before: blocklist hash + allowlist LPM on every hit'],
  ['closed mode', [], CLOSED, 'new-connection', 'new-connection, closed mode (PW_PORTSCAN_COUNT=closed), no socket: looked up, closed, tracked -> event'],
  ['closed mode, listener', [], CLOSED, 'new-connection', 'new-connection, closed mode, a listener on the port: looked up, open, not tracked -> event', LISTENING],
  ['no event', ['PW_VARIANT_NO_EVENT'], DEPLOYED, 'new-connection', 'new-connection without the ring buffer write (what the event costs)', NO_EVENT],
];

// Compiled at run time: the floor, the variants and the previous program from the same clang and flags as the object under test.
function compile(source: string, out: string, defines: readonly string[] = [], include = join(REPO_ROOT, 'bpf')): string {
  const args = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I', include, `-I/usr/include/${os.machine()}-linux-gnu`];
  try {
    execFileSync('clang', [...args, ...defines.map((d) => `-D${d}`), '-c', source, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw commandError(`compiling ${rel(source)} ${defines.join(' ')} failed`, e);
  }
  return out;
}

/** xdp-filter's object with SCANNER in filter_ipv4 as a source (a per-CPU u64 of match flags, 1: source); its maps pinned apart from a real xdp-filter's. */
function loadXdpFilter(name: string, pinDir: string, keep: Keep): Program {
  const spec = ObjectSpec.open(join(XDP_FILTER_DIR, `${name}.o`));
  for (const m of ['filter_ipv4', 'filter_ipv6', 'xdp_stats_map']) spec.pinMap(m, join(pinDir, `${name}-${m}`));
  const col = keep(name, spec.load());
  const map = col.map('filter_ipv4');
  const perCpu = Buffer.alloc(map.valueBufferSize);
  for (let off = 0; off < perCpu.length; off += 8) perCpu.writeBigUInt64LE(1n, off);
  map.update(parseAddress(SCANNER).subarray(12), perCpu); // IPv4-mapped: the last 4 bytes, network order
  return col.program(name);
}

function xdpFilterPaths(deny: Program, allow: Program): Path[] {
  return [
    { name: `${XDP_FILTER_DENYLIST}:pass`, frame: 'ACK, unlisted source', program: deny, data: ACK, verdict: XDP_PASS },
    { name: `${XDP_FILTER_DENYLIST}:drop`, frame: 'SYN, listed source (deny list)', program: deny, data: SCANNER_SYN, verdict: XDP_DROP },
    { name: `${XDP_FILTER_ALLOWLIST}:pass`, frame: 'SYN, listed source (allow list)', program: allow, data: SCANNER_SYN, verdict: XDP_PASS },
    { name: `${XDP_FILTER_ALLOWLIST}:drop`, frame: 'SYN, unlisted source', program: allow, data: CLIENT_SYN, verdict: XDP_DROP },
  ];
}

/** The program at PREVIOUS_REV from git (a clone with its history is needed), its sources unpacked in tmp/bpf. */
function compilePrevious(tmp: string): string {
  try {
    const sources = execFileSync('git', ['-C', REPO_ROOT, 'archive', PREVIOUS_REV, 'bpf/packetwatch.bpf.c', 'bpf/packetwatch.h']);
    execFileSync('tar', ['-x', '-C', tmp], { input: sources, stdio: ['pipe', 'ignore', 'pipe'] });
  } catch (e) {
    throw commandError(`reading bpf/ at ${PREVIOUS_REV} from git failed (a clone with its history is needed)`, e);
  }
  return compile(join(tmp, 'bpf', 'packetwatch.bpf.c'), join(tmp, 'bpf', 'packetwatch.bpf.o'), [], join(tmp, 'bpf'));
}

// Object k of the comparison: the compared paths on the previous program, loaded as the probe loaded it then (its 56-byte
// records only counted: its codecs are not today's), and on an object of the deployed one running these only (like for like).
function previousPaths(object: string, k: number, keep: Keep, beside: () => Subject): Path[] {
  const spec = ObjectSpec.open(object).setConstant('scan_ports', DEPLOYED_N).setConstant('scan_window_ns', WINDOW_NS);
  spec.setValueSize('scanners', scanStateSize(DEPLOYED_N)).setMaxEntries('events', RING_BUFFER_BYTES);
  const collection = keep(`${PREVIOUS} #${k}`, spec.load());
  const now = clock.boottimeNs();
  collection.map('blocklist').update(parseAddress(SCANNER), encode(blockCodec, { expiresNs: 0n, createdNs: now, reason: BlockReason.Manual, flags: 0 }));
  collection.map('list_gen').typed(u32, u64).set(0, now);
  const reader = keep(`${PREVIOUS} #${k}'s reader`, new RingBufferReader(collection.map('events'), { recordSize: 56 }));
  const program = collection.program(PROGRAM_NAME);
  const current = deployedPaths(beside()).filter((p) => COMPARED.includes(p.name));
  return [
    ...current.map((p) => ({ ...p, name: `${p.name}:${BESIDE}#${k}`, frame: `${p.frame} (an object running these three only)` })),
    ...current.map((p) => {
      const frame = `${p.frame} (program at ${PREVIOUS_REV})`;
      return { ...p, name: `${p.name}:${PREVIOUS}#${k}`, frame, program, subject: undefined, counts: undefined, drain: () => reader.consume().count };
    }),
  ];
}

function medianOf(results: readonly Result[], name: string): number {
  const r = results.find((x) => x.path.name === name);
  if (!r) throw new BenchError(`path ${name} was not measured`);
  return r.median;
}

/** A path's figure on each object of one side of the comparison (`${path}:${side}#k`), in load order. */
function perObject(results: readonly Result[], path: string, side: string): number[] {
  return Array.from({ length: OBJECTS_EACH }, (_, k) => results.find((r) => r.path.name === `${path}:${side}#${k + 1}`)?.median ?? NaN);
}

// Runs the programs and keeps the books, so that a broken setup cannot print plausible numbers: every call must give the
// path's verdict, every packet sent to Packetwatch show up in its counters, and every event in its ring buffer, from the
// path's source, read back after each call unless `drain` is false (the subject's drain() reads them later).

/** One kernel loop of `packets` runs of the path; returns the kernel's mean ns per run. */
function call(path: Path, packets: number, drain = true): number {
  const { retval, durationNs } = path.program.testRun({ data: path.next?.() ?? path.data, repeat: packets });
  if (retval !== path.verdict) throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
  const events = path.eventSource === undefined ? 0 : packets;
  const s = path.subject;
  if (s) {
    for (const c of COUNTER_NAMES) s.expected[c] += (path.counts?.[c] ?? 0n) * BigInt(packets);
    s.pending += events;
    if (drain) s.drain(path.eventSource);
  } else if ((path.drain?.() ?? events) !== events) throw new BenchError(`${path.name}: the events read are not the ${events} expected`);
  return durationNs;
}

function measure(path: Path): number {
  let totalNs = 0;
  for (let sent = 0; sent < PACKETS_PER_MEASUREMENT; sent += PACKETS_PER_CALL) totalNs += call(path, PACKETS_PER_CALL) * PACKETS_PER_CALL;
  return totalNs / PACKETS_PER_MEASUREMENT;
}

/** Medians of `calls` one-packet calls of each path, interleaved; events read every drainEvery calls, else after each (every SYN wakes the reader). */
function onePerCall(paths: readonly Path[], calls: number, drainEvery?: number): number[] {
  const samples = paths.map((): number[] => []);
  const drainAll = () => paths.forEach((p) => p.subject?.drain(p.eventSource));
  for (let i = 0; i < calls; i++) {
    paths.forEach((p, j) => samples[j]!.push(call(p, 1, drainEvery === undefined)));
    if ((i + 1) % (drainEvery ?? 1) === 0) drainAll();
  }
  drainAll();
  return samples.map(median);
}

/** A target: `path`'s figure against a comparison, met at a ratio under maxRatio (strict) or up to it. */
function target(name: string, path: string, value: number, comparison: string, comparisonValue: number, target: string, maxRatio: number, strict = false) {
  const ratio = value / comparisonValue;
  return { name, path, value, comparison, comparisonValue, ratio, target, met: strict ? ratio < maxRatio : ratio <= maxRatio };
}
type Target = ReturnType<typeof target>;
/** The new-port-full row: one packet per call at each N of BY_N, and the empty program's one-packet call. */
type Eviction = { floor: number; byN: number[] };
function targets(results: readonly Result[], eviction: Eviction): Target[] {
  const ns = (name: string) => medianOf(results, name);
  const floor = ns(FLOOR_PROGRAM);
  const xdpFilter = (name: string, what: string, listed: string) =>
    target(`drop vs xdp-filter${what}`, 'drop', ns('drop'), `xdp-filter ${name}.o drop (${listed} source), same run`, ns(`${name}:drop`), '< xdp-filter drop', 1, true);
  const [n0, n] = [BY_N[0]!, MAX_N];
  const byN = (path: string, at = (k: number) => ns(`${path}:N=${k}`), what = '', vs = `${path} at N = ${n0}, same run`) =>
    target(`${path} at N = ${n} vs N = ${n0}${what}`, `${path}:N=${n}`, at(n), vs, at(n0), `<= 1.5x N = ${n0}`, 1.5);
  const evicted = (k: number) => (eviction.byN[BY_N.indexOf(k)] ?? NaN) - eviction.floor;
  const onePerCall = `new-port-full at N = ${n0}, one packet per call less the floor, same run`;
  return [
    ...COMPARED.map((path) => {
      const comparison = `${path} of the program at ${PREVIOUS_REV}, same run, median over ${OBJECTS_EACH} objects of each`;
      const previous = median(perObject(results, path, PREVIOUS));
      return target(`${path} vs the previous program`, path, median(perObject(results, path, BESIDE)), comparison, previous, `<= ${PREVIOUS_MAX_RATIO}x previous`, PREVIOUS_MAX_RATIO);
    }),
    target('drop vs floor', 'drop', ns('drop'), FLOOR_COMPARISON, floor, '<= 2x floor', 2),
    xdpFilter(XDP_FILTER_DENYLIST, '', 'listed'),
    xdpFilter(XDP_FILTER_ALLOWLIST, ' deny policy', 'unlisted'),
    target('new-connection vs floor', 'new-connection', ns('new-connection'), FLOOR_COMPARISON, floor, '<= 3x floor', 3),
    byN('new-connection'),
    byN('new-connection-full'),
    byN('new-port-full', evicted, ' (one packet per call, less the floor)', onePerCall),
  ];
}

const nText = (p: Path): string => (p.n === undefined ? '-' : p.n === 0 ? 'off' : String(p.n));
const targetLine = (t: Target) =>
  `${t.path} ${t.target.replace('xdp-filter drop', `${t.comparison.split(' ')[1]} drop`)}: ${t.met ? 'met' : 'MISSED'} (${t.ratio.toFixed(2)}x)`;

const libxdpVersion = () => spawnSync('dpkg-query', ['-W', '-f=${Version}', 'libxdp1'], { encoding: 'utf8' }).stdout?.trim() || '(version unknown)';

/** What a run measured; wakeUp: the floor's and new-connection's one-packet calls with the ring drained before each SYN. */
type Run = { results: Result[]; tgts: Target[]; wakeUp: { floor: number; syn: number }; eviction: Eviction; eventsRead: number };

function section({ results, tgts, wakeUp, eviction, eventsRead }: Run, m: Machine, date: string): string {
  const ns = (name: string) => medianOf(results, name);
  const main = textTable(
    ['path', 'N', 'frame', 'verdict', 'ns/packet', 'min-max', 'x floor'],
    results
      .filter((r) => !r.path.name.includes('#'))
      .map((r) => {
        const [spread, ratio] = [`${Math.min(...r.samples).toFixed(1)}-${Math.max(...r.samples).toFixed(1)}`, r.median / ns(FLOOR_PROGRAM)];
        return [r.path.name, nText(r.path), r.path.frame, verdictName(r.path.verdict), r.median.toFixed(1), spread, ratio.toFixed(1)];
      }),
    [false, true, false, false, true, true, true],
  );
  const previous = textTable(
    ['path', `${PREVIOUS_REV} ns (per object)`, 'now ns (per object)', `${PREVIOUS_REV} median`, 'now median', 'ratio'],
    COMPARED.map((p) => {
      const [before, now] = [perObject(results, p, PREVIOUS), perObject(results, p, BESIDE)];
      const [b, n] = [median(before), median(now)];
      return [p, ...[before, now].map((xs) => xs.map((x) => x.toFixed(1)).join(' ')), b.toFixed(1), n.toFixed(1), `${(n / b).toFixed(2)}x`];
    }),
    [false, false, false, true, true, true],
  );
  const floor = eviction.floor.toFixed(0);
  const rows = [
    ['new-connection', 'SYN from a source with one port kept, the same port', BY_N.map((n) => ns(`new-connection:N=${n}`))],
    ['new-connection-full', 'SYN from a source with N ports kept, the last searched', BY_N.map((n) => ns(`new-connection-full:N=${n}`))],
    ['new-port-full', `SYN, new port of a source with N ports kept (test-clock build, one packet per call, less the floor's ${floor} ns)`, eviction.byN.map((x) => x - eviction.floor)],
  ] as const;
  const byN = textTable(
    ['path', 'frame', ...BY_N.map((n) => `N=${n} ns`), `N=${MAX_N} / N=${BY_N[0]}`],
    rows.map(([path, frame, xs]) => [path, frame, ...xs.map((x) => x.toFixed(1)), `${(xs.at(-1)! / xs[0]!).toFixed(2)}x`]),
    [false, false, ...BY_N.map(() => true), true],
  );
  const wake = wakeUp.syn - wakeUp.floor - (ns('new-connection') - ns(FLOOR_PROGRAM));
  return sectionText(
    SECTION_HEADING,
    'datapath',
    'Cost per packet of each path through the XDP program, next to an empty `return XDP_PASS` program (the floor: what the ' +
      `test-run loop and the XDP hook charge any program) and to xdp-filter (Debian's libxdp1 ${libxdpVersion()}: ${XDP_FILTER_DENYLIST}.o ` +
      `is \`xdp-filter load\`'s default, dropping the sources its map lists; ${XDP_FILTER_ALLOWLIST}.o is its deny policy, where ` +
      'listed sources pass and all others are dropped), all measured in the same run.',
    [
      ...sectionFacts('datapath', date, m),
      `- Method: BPF_PROG_TEST_RUN on one frame per path, timed by the kernel: ${count(PACKETS_PER_MEASUREMENT)} packets a measurement in ` +
        `${PACKETS_PER_MEASUREMENT / PACKETS_PER_CALL} calls of ${count(PACKETS_PER_CALL)}, the ring buffer drained between calls; ${ROUNDS} ` +
        "rounds interleave every program; the figure is the median round, min-max the spread. The kernel truncates each call's mean to " +
        'whole ns. Packetwatch is loaded as the probe deploys it (in-kernel detection, 3 ports in 60 s, permanent blocks); the ' +
        `:N=${BY_N.join(', :N=')} rows are one object per N running those paths only; "before" rows are PW_VARIANT_* builds of the same ` +
        "source. new-connection-full: the source's history holds N ports, the SYN hits the last one searched.",
    ],
    [
      ...tableBlocks([
        ['', main],
        [
          `Against the program at ${PREVIOUS_REV}, like for like: ${OBJECTS_EACH} objects of each program running only these ` +
            'three paths, in the same rounds; each side is the median over its objects.',
          previous,
        ],
        [
          'The detector by N: the same object at each N. new-port-full runs on the test-clock build (PW_VARIANT_TEST_CLOCK), one packet per ' +
            'call, the source cycling through 2N ports stamped W / (N - 1) apart, so that every SYN is a new port; medians of ' +
            `${count(EVICTION_CALLS)} calls interleaved with the empty program's, whose ${floor} ns are taken off; the ring is drained ` +
            `every ${count(RING_DRAIN_CALLS)} calls.`,
          byN,
        ],
      ]),
      `Targets: ${tgts.map(targetLine).join('; ')}.`,
      '',
      `Ring buffer: ${count(eventsRead)} events read, none lost (counter ringbufFull stayed 0).`,
      '',
      `Reader caught up: ${count(WAKEUP_CALLS)} one-packet calls, interleaved, the ring drained before every SYN, so that ` +
        `each SYN wakes the reader. Median kernel time of one run: xdp_pass ${wakeUp.floor.toFixed(0)} ns, new-connection ` +
        `${wakeUp.syn.toFixed(0)} ns; the wake-up costs about ${wake.toFixed(0)} ns a SYN (in the table above, once per call of ${count(PACKETS_PER_CALL)}).`,
      '',
    ],
  );
}

function entries({ results, tgts, wakeUp, eviction }: Run, evictionPaths: readonly Path[]): ResultEntry[] {
  const ns = (name: string, value: number, vs: [string, number] | null, t?: Target, details = {}) =>
    entry(name, round2(value), 'ns/packet', vs, t ? [t.target, t.met] : null, details);
  const floor = medianOf(results, FLOOR_PROGRAM);
  const perPath = results.map(({ path, median: value }) => {
    const t = tgts.find((x) => x.path === path.name && x.comparison === FLOOR_COMPARISON);
    return ns(path.name, value, path.name === FLOOR_PROGRAM ? null : [FLOOR_COMPARISON, floor], t, { frame: path.frame, n: path.n ?? null });
  });
  const onePerCall = evictionPaths.map((p, i) =>
    ns(`${p.name}, one packet per call`, eviction.byN[i]!, [`${FLOOR_PROGRAM}, one packet per call, same run`, eviction.floor], undefined, { frame: p.frame, n: p.n ?? null }),
  );
  const versus = tgts.filter((t) => t.comparison !== FLOOR_COMPARISON).map((t) => ns(t.name, t.value, [t.comparison, t.comparisonValue], t));
  return [...perPath, ...onePerCall, ...versus, ns('new-connection, reader caught up (wake-up per SYN)', wakeUp.syn, ['xdp_pass, one packet per call, same run', wakeUp.floor])];
}

async function main(): Promise<void> {
  requireRoot('load and run XDP programs (BPF_PROG_TEST_RUN)', 'make bench-datapath');
  const xdpFilterObject = (name: string): [string, string] => [join(XDP_FILTER_DIR, `${name}.o`), "Debian's libxdp1 (make deps)"];
  requireBuild([[OBJECT_PATH, 'the XDP object'], xdpFilterObject(XDP_FILTER_DENYLIST), xdpFilterObject(XDP_FILTER_ALLOWLIST)]);
  const m = machine();
  const cleanup = new Cleanup('datapath');
  await cleanup.around(async () => {
    const tmp = cleanup.tempDir();
    mountBpffs();
    const pinDir = mkdtempSync('/sys/fs/bpf/packetwatch-bench-');
    cleanup.add('remove the pins', () => rmSync(pinDir, { recursive: true, force: true }));
    const keep = <T extends { close(): void }>(what: string, x: T): T => {
      cleanup.add(`close ${what}`, () => x.close());
      return x;
    };
    const subjects: Subject[] = [];
    const subject = (label: string, opts: DatapathOptions): Subject => {
      const s = keep(label, new Subject(label, Datapath.load(opts), opts.scanPorts ?? 0));
      subjects.push(s);
      return s;
    };
    const floor = keep('the floor', ObjectSpec.open(compile(join(BENCH_DIR, 'fixtures', 'xdp_pass.bpf.c'), join(tmp, 'xdp_pass.bpf.o'))).load());
    const xdpFilter = xdpFilterPaths(loadXdpFilter(XDP_FILTER_DENYLIST, pinDir, keep), loadXdpFilter(XDP_FILTER_ALLOWLIST, pinDir, keep));
    const listener = keep('the listener', createServer().listen({ host: LISTENER, port: SSH }));
    await once(listener, 'listening').catch((e: Error) => {
      throw new BenchError(`closed mode's rows listen on ${LISTENER}:${SSH}, which failed (${e.message})`);
    });

    const floorPath: Path = { name: FLOOR_PROGRAM, frame: 'ACK (empty program: the floor)', program: floor.program(FLOOR_PROGRAM), data: ACK, verdict: XDP_PASS };
    const all: Path[] = [floorPath, ...deployedPaths(subject('deployed', DEPLOYED)), ...BY_N.flatMap((n) => detectorPaths(subject(`N = ${n}`, { ...DEPLOYED, scanPorts: n })))];
    const variants = new Map<string, Subject>();
    for (const [label, defines, opts, path, frame, adjust] of VARIANTS) {
      if (!variants.has(label)) {
        const objectPath = defines.length ? compile(join(REPO_ROOT, 'bpf', 'packetwatch.bpf.c'), join(tmp, `${defines.join('-')}.o`), defines) : OBJECT_PATH;
        variants.set(label, subject(label, { ...opts, objectPath }));
      }
      const p = deployedPaths(variants.get(label)!).find((x) => x.name === path)!;
      all.push({ ...(adjust ? adjust(p) : p), name: `${path}:${label}`, frame });
    }
    all.push(...xdpFilter);
    const previousObject = compilePrevious(tmp);
    for (let k = 1; k <= OBJECTS_EACH; k++) all.push(...previousPaths(previousObject, k, keep, () => subject(`${BESIDE} #${k}`, DEPLOYED)));
    const evictions = BY_N.map((n) => subject(`test clock, N = ${n}`, { ...DEPLOYED, scanPorts: n, objectPath: TEST_CLOCK_OBJECT_PATH }));
    for (const s of subjects) s.prime();
    const evictionPaths = evictions.map(evictionPath);

    // The first calls after load pay for cold caches and first touches of the ring's pages; their books are checked at once.
    for (const p of all) call(p, PACKETS_PER_CALL);
    for (const s of subjects) s.checkBooks();
    const samples = all.map((): number[] => []);
    for (let round = 0; round < ROUNDS; round++) {
      // Rotating the order keeps any one program from always following the same neighbour.
      for (let i = 0; i < all.length; i++) {
        const j = (round + i) % all.length;
        all[j]!.subject?.prime(); // untimed: a round can outlast the window
        samples[j]!.push(measure(all[j]!));
      }
    }
    const synPath = all.find((p) => p.name === 'new-connection')!;
    synPath.subject!.prime();
    const [wakeFloor, wakeSyn] = onePerCall([floorPath, synPath], WAKEUP_CALLS);
    const [evictionFloor, ...evicted] = onePerCall([{ ...floorPath, name: `${FLOOR_PROGRAM}, one packet per call` }, ...evictionPaths], EVICTION_CALLS, RING_DRAIN_CALLS);
    for (const s of subjects) s.checkBooks();

    const results = all.map((path, i): Result => ({ path, samples: samples[i]!, median: median(samples[i]!) }));
    const eviction = { floor: evictionFloor!, byN: evicted };
    const run: Run = { results, tgts: targets(results, eviction), wakeUp: { floor: wakeFloor!, syn: wakeSyn! }, eviction, eventsRead: subjects.reduce((n, s) => n + s.eventsRead, 0) };
    const text = section(run, m, today());
    console.log(text);
    publish('datapath', SECTION_HEADING, () => entries(run, evictionPaths), () => text, `${count(PACKETS_PER_MEASUREMENT)} packets a measurement, ${ROUNDS} rounds`);
  });
}

await runBench('datapath', main);
