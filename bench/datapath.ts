// `make bench-datapath`: what each path through the Packetwatch XDP program
// costs per packet, next to an empty XDP program (the floor the targets are
// written against) and to xdp-filter (Debian's libxdp1), all in one process,
// interleaved, timed by the kernel (BPF_PROG_TEST_RUN). Variant builds of the
// same source (PW_VARIANT_*) and the program at PREVIOUS_REV run beside it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import {
  COUNTER_NAMES,
  type CounterName,
  type Counters,
  Datapath,
  type DatapathOptions,
  OBJECT_PATH,
  PROGRAM_NAME,
  SYN_EVENT_SIZE,
  TEST_CLOCK_OBJECT_PATH,
  TCP_FLAGS,
  formatAddress,
  ipFrame,
  encodeScanHistory,
  blockCodec,
  BlockReason,
  parseAddress,
  scanStateSize,
  synEventCodec,
  synFrame,
  zeroCounters,
} from '@packetwatch/bpf';
import { Cleanup, XDP_PASS } from '@packetwatch/test-support';
import { type Collection, ObjectSpec, type Program, RingBufferReader, clock, encode, mountBpffs, u32, u64 } from 'libbpf-ts';
import { requireBuild, requireRoot } from './harness.js';
import {
  BENCH_DIR,
  BenchError,
  type Machine,
  REPO_ROOT,
  type ResultEntry,
  SMOKE,
  commandError,
  count,
  machine,
  machineText,
  median,
  publish,
  rel,
  round2,
  runBench,
  sectionFacts,
  table as textTable,
  today,
} from './report.js';

const FLOOR_SOURCE = join(BENCH_DIR, 'fixtures', 'xdp_pass.bpf.c');
const FLOOR_PROGRAM = 'xdp_pass';
const PW_SOURCE = join(REPO_ROOT, 'bpf', 'packetwatch.bpf.c');
const SECTION_HEADING = '## Datapath cost';
const FLOOR_COMPARISON = 'xdp_pass floor, same run';

/** The program before fail-closed parsing, stealth and fragment probes and prefix keys, built from git and run beside the deployed one. */
const PREVIOUS_REV = 'df3bb8b';
const PREVIOUS = 'previous';
/** The deployed program in an object of its own running the compared paths only, as the previous one does. */
const BESIDE = 'beside-previous';
const COMPARED = ['pass', 'new-connection', 'drop'];
/** Its record size: 56-byte events then. */
const PREVIOUS_EVENT_SIZE = 56;
/** No path may cost more than this times the previous program's. */
const PREVIOUS_MAX_RATIO = 1.1;
/** Objects of each program in that comparison (where an object lands moves a path by a ns or two): each side is the median over them. */
const OBJECTS_EACH = SMOKE ? 1 : 5;

// xdp-filter's programs as libxdp1 ships them: xdpfilt_alw_ip (`xdp-filter
// load`'s default) drops the sources its maps list; xdpfilt_dny_ip (its deny
// policy) passes only them. A filter_ipv4 value is a per-CPU u64 of match flags.
const XDP_FILTER_DIR = `/usr/lib/${os.machine()}-linux-gnu/bpf`;
const XDP_FILTER_DENYLIST = 'xdpfilt_alw_ip';
const XDP_FILTER_ALLOWLIST = 'xdpfilt_dny_ip';
const XDP_FILTER_MAPS = ['filter_ipv4', 'filter_ipv6', 'xdp_stats_map'];
const MAP_FLAG_SRC = 1n;

const XDP_DROP = 1;
const VERDICT_NAMES = ['aborted', 'drop', 'pass', 'tx', 'redirect'];

const ROUNDS = SMOKE ? 2 : 7;
const PACKETS_PER_MEASUREMENT = SMOKE ? 2_000 : 1_000_000;
// A call must not outrun the ring (a full ring takes the cheaper "ring full" branch): it is drained between calls.
const PACKETS_PER_CALL = SMOKE ? 1_000 : 50_000;
const RING_BUFFER_BYTES = 4 << 20;
/** One-packet calls with the ring drained before each SYN, so that every SYN wakes the reader. */
const WAKEUP_CALLS = SMOKE ? 20 : 2_000;
const RING_RECORD_BYTES = 8 + Math.ceil(SYN_EVENT_SIZE / 8) * 8; // 8-byte record header, 8-byte aligned

// The probe's defaults: PW_KERNEL_DETECTION on, PW_PORTSCAN_PORT_THRESHOLD 3, PW_PORTSCAN_TIME_THRESHOLD 60, PW_BLOCK_TTL 0.
const DEPLOYED: DatapathOptions = { scanPorts: 3, scanWindowSeconds: 60, scanBlockSeconds: 0, ringBufferBytes: RING_BUFFER_BYTES };
const DEPLOYED_N = DEPLOYED.scanPorts ?? 0;
/** N of the detector for the N column: the deployed 3, then larger ones up to the most the program takes. */
const BY_N = [DEPLOYED_N, 16, 64];
/** One-packet calls of each path whose state each packet moves on. */
const EVICTION_CALLS = SMOKE ? 20 : 10_000;
/** One-packet calls between two drains of the ring buffers (well within what they hold). */
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

/** A source's history in the detector (bpf/src/records.ts): N ports from base, the first `old` hit two windows ago, the others a second ago. */
function writeHistory(dp: Datapath, n: number, source: string, base: number, old: number): void {
  const now = clock.boottimeNs();
  const oldNs = now - 2n * BigInt((DEPLOYED.scanWindowSeconds ?? 60) * 1e9);
  const recentNs = now - 1_000_000_000n;
  const entries = Array.from({ length: n }, (_, i): [number, bigint] => [base + i, i < old ? oldNs : recentNs]);
  dp.collection.map('scanners').update(parseAddress(source), encodeScanHistory(n, entries));
}

/** One Packetwatch object in the kernel, with its ring buffer reader and the counters it should show. */
class Subject {
  readonly reader: RingBufferReader;
  readonly expected: Counters = zeroCounters();
  eventsRead = 0;

  constructor(
    readonly label: string,
    readonly dp: Datapath,
    /** N of its detector (0: off). */
    readonly n: number,
  ) {
    this.reader = dp.reader();
    // Permanent blocks, as by default (the drop path reads no clock); one that expires, for the path that does.
    dp.block(SCANNER);
    dp.block(EXPIRING, { ttlSeconds: 3600 });
    dp.block(PARTNER);
    dp.allow(PARTNER);
  }

  /** The detector's state the paths measure, set again before each measurement (a round can outlast the window). */
  prime(): void {
    const dp = this.dp;
    if (this.n > 1) {
      writeHistory(dp, this.n, KEPT, 1000, this.n - 1);
      // The client and the partner are kept with one port (in probation): their admitting first SYN is taken here.
      for (const data of [CLIENT_SYN, synFrame(PARTNER, VICTIM, 40003, SSH)]) dp.program.testRun({ data });
      this.eventsRead += [...this.reader.consume()].length;
      Object.assign(this.expected, dp.counters());
    }
  }

  /** The counters must equal what was sent: in particular no event lost to a full ring. */
  checkBooks(): void {
    const actual = this.dp.counters();
    for (const n of COUNTER_NAMES) {
      if (actual[n] !== this.expected[n]) {
        const why = n === 'ringbufFull' ? ' (the ring buffer filled up: the event paths were measured on the ring-full branch)' : '';
        throw new BenchError(`${this.label}: counter ${n} is ${actual[n]}, expected ${this.expected[n]}${why}`);
      }
    }
  }

  close(): void {
    this.reader.close();
    this.dp.close();
  }
}

interface Path {
  /** Name in the table and in datapath.json. */
  name: string;
  frame: string;
  program: Program;
  data: Buffer;
  verdict: number;
  /** The Packetwatch object behind the program; undefined for the floor and xdp-filter. */
  subject?: Subject;
  /** Source the SYN event must name; undefined on paths that report nothing. */
  eventSource?: string;
  /** How one packet moves each Packetwatch counter. */
  counts?: Partial<Record<CounterName, bigint>>;
  /** N of the Packetwatch object's detector (0: off); undefined for the floor and xdp-filter. */
  n?: number;
  /** The frame of the next call, set up for it (one-packet paths whose state each packet moves on); else `data`. */
  next?: () => Buffer;
  /** For a program without a Subject that writes events: empties its ring buffer, returning the records read. */
  drain?: () => number;
}

interface Result {
  path: Path;
  samples: number[];
  median: number;
  ratio: number;
}

function libxdpVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libxdp1'], { encoding: 'utf8' }).trim();
  } catch {
    return '(version unknown)';
  }
}

function verdictName(retval: number): string {
  return VERDICT_NAMES[retval] ?? `verdict ${retval}`;
}

function checkPreconditions(): void {
  requireRoot('load and run XDP programs (BPF_PROG_TEST_RUN)', 'make bench-datapath');
  requireBuild([
    [OBJECT_PATH, 'the XDP object'],
    ...[XDP_FILTER_DENYLIST, XDP_FILTER_ALLOWLIST].map((name): [string, string] => [join(XDP_FILTER_DIR, `${name}.o`), "Debian's libxdp1 (make deps)"]),
  ]);
  if (PACKETS_PER_CALL * RING_RECORD_BYTES > RING_BUFFER_BYTES || PACKETS_PER_MEASUREMENT % PACKETS_PER_CALL !== 0) {
    throw new BenchError(`${PACKETS_PER_CALL} events per call must fit a ${RING_BUFFER_BYTES}-byte ring and divide ${PACKETS_PER_MEASUREMENT}`);
  }
}

// Compiled at run time: the floor and the variants from the same clang and flags as the object under test.
function compile(source: string, out: string, defines: readonly string[] = [], include = join(REPO_ROOT, 'bpf')): string {
  const args = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I', include, `-I/usr/include/${os.machine()}-linux-gnu`];
  try {
    execFileSync('clang', [...args, ...defines.map((d) => `-D${d}`), '-c', source, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw commandError(`compiling ${rel(source)} ${defines.join(' ')} failed`, e);
  }
  return out;
}

/** xdp-filter's object with `address` in filter_ipv4 as a source; its maps pinned in a directory of their own, not a real xdp-filter's. */
function loadXdpFilter(name: string, pinDir: string, address: string): Collection {
  const spec = ObjectSpec.open(join(XDP_FILTER_DIR, `${name}.o`));
  try {
    for (const m of XDP_FILTER_MAPS) spec.pinMap(m, join(pinDir, `${name}-${m}`));
    const col = spec.load();
    const map = col.map('filter_ipv4');
    const perCpu = Buffer.alloc(map.valueBufferSize);
    for (let off = 0; off < perCpu.length; off += 8) perCpu.writeBigUInt64LE(MAP_FLAG_SRC, off);
    map.update(parseAddress(address).subarray(12), perCpu); // IPv4-mapped: the last 4 bytes, network order
    return col;
  } catch (e) {
    spec.close();
    throw e;
  }
}

/** The program at PREVIOUS_REV from git, loaded as the probe loaded it then; its records are only counted (its codecs are not today's). */
function compilePrevious(tmp: string): string {
  const dir = join(tmp, PREVIOUS);
  mkdirSync(dir);
  for (const file of ['packetwatch.bpf.c', 'packetwatch.h']) {
    try {
      writeFileSync(join(dir, file), execFileSync('git', ['-C', REPO_ROOT, 'show', `${PREVIOUS_REV}:bpf/${file}`]));
    } catch (e) {
      throw commandError(`reading bpf/${file} at ${PREVIOUS_REV} from git failed (a clone with its history is needed)`, e);
    }
  }
  return compile(join(dir, 'packetwatch.bpf.c'), join(dir, 'packetwatch.bpf.o'), [], dir);
}

function loadPrevious(object: string): { collection: Collection; reader: RingBufferReader } {
  const spec = ObjectSpec.open(object);
  let collection: Collection;
  try {
    spec.setConstant('scan_ports', DEPLOYED_N);
    spec.setConstant('scan_window_ns', BigInt((DEPLOYED.scanWindowSeconds ?? 60) * 1e9));
    spec.setValueSize('scanners', scanStateSize(DEPLOYED_N));
    spec.setMaxEntries('events', RING_BUFFER_BYTES);
    collection = spec.load();
  } catch (e) {
    spec.close();
    throw e;
  }
  const now = clock.boottimeNs();
  collection.map('blocklist').update(parseAddress(SCANNER), encode(blockCodec, { expiresNs: 0n, createdNs: now, reason: BlockReason.Manual, flags: 0 }));
  collection.map('list_gen').typed(u32, u64).set(0, now);
  return { collection, reader: new RingBufferReader(collection.map('events'), { recordSize: PREVIOUS_EVENT_SIZE }) };
}

/** The compared paths on the previous program and on an object of the deployed one running these only (like for like). */
function previousPaths(program: Program, reader: RingBufferReader, beside: Subject, k: number): Path[] {
  const drain = () => reader.consume().count;
  const current = deployedPaths(beside)
    .filter((p) => COMPARED.includes(p.name))
    .map((p) => ({ ...p, name: `${p.name}:${BESIDE}#${k}`, frame: `${p.frame} (an object running these three only)` }));
  return [
    ...current,
    { name: `pass:${PREVIOUS}#${k}`, frame: `ACK, unblocked source (program at ${PREVIOUS_REV})`, program, data: ACK, verdict: XDP_PASS, drain },
    { name: `new-connection:${PREVIOUS}#${k}`, frame: `SYN, unblocked source -> event (program at ${PREVIOUS_REV})`, program, data: CLIENT_SYN, verdict: XDP_PASS, eventSource: CLIENT, drain },
    { name: `drop:${PREVIOUS}#${k}`, frame: `SYN, blocked source (program at ${PREVIOUS_REV})`, program, data: SCANNER_SYN, verdict: XDP_DROP, drain },
  ].map((p) => ({ ...p, n: DEPLOYED_N }));
}

/** A path's figure on each object of one side of the comparison (`${path}:${side}#k`), in load order. */
function perObject(results: readonly Result[], path: string, side: string): number[] {
  return Array.from({ length: OBJECTS_EACH }, (_, k) => results.find((r) => r.path.name === `${path}:${side}#${k + 1}`)?.median ?? NaN);
}

/** The comparison with the previous program: each path's median over the objects of each side. */
function previousTable(results: readonly Result[]): string {
  const header = ['path', `${PREVIOUS_REV} ns (per object)`, 'now ns (per object)', `${PREVIOUS_REV} median`, 'now median', 'ratio'];
  const rows = COMPARED.map((p) => {
    const before = perObject(results, p, PREVIOUS);
    const now = perObject(results, p, BESIDE);
    return [p, before.map((x) => x.toFixed(1)).join(' '), now.map((x) => x.toFixed(1)).join(' '), median(before).toFixed(1), median(now).toFixed(1), `${(median(now) / median(before)).toFixed(2)}x`];
  });
  return textTable(header, rows, [false, false, false, true, true, true]);
}

/** Runs one call of `packets` runs of the path; fails on another verdict than the path's. */
function testRun(path: Path, packets = 1): number {
  const { retval, durationNs } = path.program.testRun({ data: path.next?.() ?? path.data, repeat: packets });
  if (retval !== path.verdict) throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
  return durationNs;
}

/** Runs the programs and keeps the books: every packet sent to Packetwatch is expected to show up in its counters. */
class Bench {
  /** One kernel loop of `packets` runs; returns the kernel's mean ns per run. */
  #call(path: Path, packets: number): number {
    const durationNs = testRun(path, packets);
    const got = path.drain?.() ?? path.subject?.reader.consume().count;
    const wanted = path.eventSource === undefined ? 0 : packets;
    if (got !== undefined && got !== wanted) throw new BenchError(`${path.name}: ${got} events from ${packets} packets, expected ${wanted}`);
    const s = path.subject;
    if (s) {
      s.eventsRead += got ?? 0;
      for (const n of COUNTER_NAMES) s.expected[n] += (path.counts?.[n] ?? 0n) * BigInt(packets);
    }
    return durationNs;
  }

  /** One packet, checked for verdict, event source and counters, so a broken setup cannot print plausible numbers. */
  verify(path: Path): void {
    const s = path.subject;
    if (!s) {
      path.drain?.();
      this.#call(path, 1);
      return;
    }
    s.reader.consume();
    const before = s.dp.counters();
    testRun(path);
    const records = [...s.reader.consume()];
    const first = records[0];
    const source = first ? formatAddress(synEventCodec.read(first, 0).saddr) : undefined;
    if (records.length !== (path.eventSource === undefined ? 0 : 1) || source !== path.eventSource) {
      throw new BenchError(`${path.name}: expected ${path.eventSource === undefined ? 'no event' : `one event from ${path.eventSource}`}, got ${records.length} (${source ?? 'none'})`);
    }
    s.eventsRead += records.length;
    const after = s.dp.counters();
    for (const n of COUNTER_NAMES) {
      const want = path.counts?.[n] ?? 0n;
      if (after[n] - before[n] !== want) throw new BenchError(`${path.name}: counter ${n} moved by ${after[n] - before[n]}, expected ${want}`);
      s.expected[n] += want;
    }
  }

  warmUp(path: Path): void {
    this.#call(path, PACKETS_PER_CALL);
  }

  /** The kernel's time for one packet, in `calls` calls of one packet each (the ring drained after each). */
  single(path: Path, calls: number): number[] {
    return Array.from({ length: calls }, () => this.#call(path, 1));
  }

  /** Mean ns per packet over PACKETS_PER_MEASUREMENT packets. */
  measure(path: Path): number {
    let totalNs = 0;
    for (let sent = 0; sent < PACKETS_PER_MEASUREMENT; sent += PACKETS_PER_CALL) totalNs += this.#call(path, PACKETS_PER_CALL) * PACKETS_PER_CALL;
    return totalNs / PACKETS_PER_MEASUREMENT;
  }
}

const ACK = ipFrame({ src: CLIENT, dst: VICTIM, tcp: { sport: 40000, dport: SSH, flags: TCP_FLAGS.ACK } });
const CLIENT_SYN = synFrame(CLIENT, VICTIM, 40001, SSH);
/** Closed mode's socket lookup runs in this namespace: the bench listens on LISTENER:SSH (open), so nothing holds SSH on the wildcard (VICTIM:SSH closed). */
const LISTENER = '127.0.0.2';
const LISTENER_SYN = synFrame(CLIENT, LISTENER, 40001, SSH);
const SCANNER_SYN = synFrame(SCANNER, VICTIM, 40002, SSH);

const PASS_COUNTS = { frames: 1n };
const NEW_CONNECTION_COUNTS = { frames: 1n, syn: 1n, events: 1n };
const DROP_COUNTS = { frames: 1n, syn: 1n, synDropped: 1n };

/** A path of a Packetwatch object: the counters an event path moves unless `counts` says otherwise. */
function on(s: Subject, name: string, frame: string, data: Buffer, verdict: number, eventSource?: string, counts?: Partial<Record<CounterName, bigint>>): Path {
  return { name, frame, program: s.dp.program, data, verdict, subject: s, eventSource, counts: counts ?? (eventSource ? NEW_CONNECTION_COUNTS : PASS_COUNTS), n: s.n };
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
  const windowNs = BigInt((DEPLOYED.scanWindowSeconds ?? 60) * 1e9);
  const step = windowNs / BigInt(s.n - 1) + 1n;
  const frames = Array.from({ length: 2 * s.n }, (_, k) => synFrame(EVICTING, VICTIM, 40006, 3000 + k));
  let now = clock.boottimeNs();
  let k = 0;
  // The source's first 2N SYNs (its admission and promotion), taken here.
  for (; k < 2 * s.n; k++) {
    now += step;
    testClock.set(0, now);
    s.dp.program.testRun({ data: frames[k]! });
  }
  s.eventsRead += [...s.reader.consume()].length;
  Object.assign(s.expected, s.dp.counters());
  const path = on(s, `new-port-full:N=${s.n}`, 'SYN, new port of a source with N ports kept: replaces the oldest -> event', frames[0]!, XDP_PASS, EVICTING);
  return {
    ...path,
    next: () => {
      now += step;
      testClock.set(0, now);
      return frames[k++ % frames.length]!;
    },
  };
}

/** The paths of the program as deployed. */
function deployedPaths(s: Subject): Path[] {
  return [
    on(s, 'pass', 'ACK, unblocked source', ACK, XDP_PASS),
    on(s, 'new-connection', 'SYN, unblocked source -> event', CLIENT_SYN, XDP_PASS, CLIENT),
    on(s, 'drop', 'SYN, blocked source', SCANNER_SYN, XDP_DROP, undefined, DROP_COUNTS),
    on(s, 'drop-expiring', 'SYN, source blocked for 1 h (reads the clock)', synFrame(EXPIRING, VICTIM, 40004, SSH), XDP_DROP, undefined, DROP_COUNTS),
    on(s, 'allowlisted', 'SYN, blocked + allowlisted -> event', synFrame(PARTNER, VICTIM, 40003, SSH), XDP_PASS, PARTNER, { frames: 1n, syn: 1n, allowlisted: 1n, events: 1n }),
  ];
}

/** Variant builds: the same source with one design choice undone or one step left out. */
interface Variant {
  label: string;
  defines: string[];
  opts: DatapathOptions;
  /** Which of the deployed paths to measure on it, and what the row says. */
  paths: Partial<Record<string, string>>;
  /** What the build's paths do differently from the deployed ones. */
  adjust?: (p: Path) => Path;
}

const CLOSED = { ...DEPLOYED, countClosed: true };
const VARIANTS: readonly Variant[] = [
  { label: 'detector off', defines: [], opts: { ...DEPLOYED, scanPorts: 0 }, paths: { 'new-connection': 'new-connection, detector off (PW_KERNEL_DETECTION=false)' } },
  {
    label: 'precise clock',
    defines: ['PW_VARIANT_PRECISE_CLOCK'],
    opts: DEPLOYED,
    paths: { 'new-connection': 'new-connection, before: bpf_ktime_get_boot_ns per SYN', 'drop-expiring': 'drop-expiring, before: bpf_ktime_get_boot_ns per hit' },
  },
  {
    label: 'no drop cache',
    defines: ['PW_VARIANT_NO_DROP_CACHE'],
    opts: DEPLOYED,
    paths: { drop: 'drop, before: blocklist hash + allowlist LPM on every hit', 'new-connection': 'new-connection without the drop cache (what its miss costs)' },
  },
  { label: 'closed mode', defines: [], opts: CLOSED, paths: { 'new-connection': 'new-connection, closed mode (PW_PORTSCAN_COUNT=closed), no socket: looked up, closed, tracked -> event' } },
  {
    label: 'closed mode, listener',
    defines: [],
    opts: CLOSED,
    paths: { 'new-connection': 'new-connection, closed mode, a listener on the port: looked up, open, not tracked -> event' },
    adjust: (p) => ({ ...p, data: LISTENER_SYN, counts: { frames: 1n, syn: 1n, events: 1n, openPortSyn: 1n } }),
  },
  {
    label: 'no event',
    defines: ['PW_VARIANT_NO_EVENT'],
    opts: DEPLOYED,
    paths: { 'new-connection': 'new-connection without the ring buffer write (what the event costs)' },
    adjust: (p) => ({ ...p, eventSource: undefined, counts: { frames: 1n, syn: 1n } }),
  },
];

function xdpFilterPaths(denylist: Program, allowlist: Program): Path[] {
  return [
    { name: `${XDP_FILTER_DENYLIST}:pass`, frame: 'ACK, unlisted source', program: denylist, data: ACK, verdict: XDP_PASS },
    { name: `${XDP_FILTER_DENYLIST}:drop`, frame: 'SYN, listed source (deny list)', program: denylist, data: SCANNER_SYN, verdict: XDP_DROP },
    { name: `${XDP_FILTER_ALLOWLIST}:pass`, frame: 'SYN, listed source (allow list)', program: allowlist, data: SCANNER_SYN, verdict: XDP_PASS },
    { name: `${XDP_FILTER_ALLOWLIST}:drop`, frame: 'SYN, unlisted source', program: allowlist, data: CLIENT_SYN, verdict: XDP_DROP },
  ];
}

const nText = (p: Path): string => (p.n === undefined ? '-' : p.n === 0 ? 'off' : String(p.n));

function table(results: readonly Result[]): string {
  const header = ['path', 'N', 'frame', 'verdict', 'ns/packet', 'min-max', 'x floor'];
  const rows = results.filter((r) => !r.path.name.includes('#')).map((r) => [
    r.path.name,
    nText(r.path),
    r.path.frame,
    verdictName(r.path.verdict),
    r.median.toFixed(1),
    `${Math.min(...r.samples).toFixed(1)}-${Math.max(...r.samples).toFixed(1)}`,
    r.ratio.toFixed(1),
  ]);
  return textTable(header, rows, [false, true, false, false, true, true, true]);
}

/** Medians of one-packet calls: the floor's and each path's, interleaved. */
interface OnePerCall {
  floor: number;
  rows: { path: Path; median: number }[];
}

/** Interleaved one-packet calls of the floor and of each path; the rings drained every RING_DRAIN_CALLS calls, so that a SYN rarely wakes the reader. */
function measureOnePerCall(floor: Path, paths: readonly Path[]): OnePerCall {
  const f: number[] = [];
  const per = paths.map((): number[] => []);
  const pending = new Map<Subject, number>();
  const drain = () => {
    for (const [s, n] of pending) {
      const got = s.reader.consume().count;
      if (got !== n) throw new BenchError(`${s.label}: ${got} events from ${n} one-packet calls`);
      s.eventsRead += got;
    }
    pending.clear();
  };
  const run = (p: Path): number => {
    const durationNs = testRun(p);
    const s = p.subject;
    if (s) {
      for (const n of COUNTER_NAMES) s.expected[n] += p.counts?.[n] ?? 0n;
      if (p.eventSource !== undefined) pending.set(s, (pending.get(s) ?? 0) + 1);
    }
    return durationNs;
  };
  for (let i = 0; i < EVICTION_CALLS; i++) {
    f.push(run(floor));
    paths.forEach((p, j) => per[j]!.push(run(p)));
    if ((i + 1) % RING_DRAIN_CALLS === 0) drain();
  }
  drain();
  return { floor: median(f), rows: paths.map((path, j) => ({ path, median: median(per[j]!) })) };
}

/** ns of a path at N, and at the deployed N: from the table, or from the one-packet calls less their floor. */
function costsByN(results: readonly Result[], eviction: OnePerCall) {
  const ns = (name: string) => results.find((r) => r.path.name === name)?.median ?? NaN;
  const name = (base: string, n: number) => `${base}:N=${n}`;
  const ns3 = BY_N;
  const evict = (n: number) => eviction.rows.find((r) => r.path.n === n)?.median ?? NaN;
  return [
    { path: 'new-connection', frame: 'SYN from a source with one port kept, the same port', ns: ns3.map((n) => ns(name('new-connection', n))) },
    { path: 'new-connection-full', frame: 'SYN from a source with N ports kept, the last searched', ns: ns3.map((n) => ns(name('new-connection-full', n))) },
    {
      path: 'new-port-full',
      frame: `SYN, new port of a source with N ports kept (test-clock build, one packet per call, less the floor's ${eviction.floor.toFixed(0)} ns)`,
      ns: ns3.map((n) => evict(n) - eviction.floor),
    },
  ];
}

function byNTable(results: readonly Result[], eviction: OnePerCall): string {
  const ns3 = BY_N;
  const last = ns3.length - 1;
  const header = ['path', 'frame', ...ns3.map((n) => `N=${n} ns`), `N=${ns3[last]} / N=${ns3[0]}`];
  const rows = costsByN(results, eviction).map((c) => [c.path, c.frame, ...c.ns.map((x) => x.toFixed(1)), `${(c.ns[last]! / c.ns[0]!).toFixed(2)}x`]);
  return textTable(header, rows, [false, false, ...ns3.map(() => true), true]);
}

interface Target {
  name: string;
  path: string;
  value: number;
  comparison: string;
  comparisonValue: number;
  ratio: number;
  target: string;
  met: boolean;
}

function targets(results: readonly Result[], eviction: OnePerCall): Target[] {
  const ns = (name: string): number => {
    const r = results.find((x) => x.path.name === name);
    if (!r) throw new BenchError(`path ${name} was not measured`);
    return r.median;
  };
  const floor = ns(FLOOR_PROGRAM);
  const t = (name: string, path: string, comparison: string, comparisonValue: number, target: string, maxRatio: number, strict: boolean): Target => {
    const value = ns(path);
    const ratio = value / comparisonValue;
    return { name, path, value, comparison, comparisonValue, ratio, target, met: strict ? ratio < maxRatio : ratio <= maxRatio };
  };
  const previous = (path: string): Target => {
    const value = median(perObject(results, path, BESIDE));
    const comparisonValue = median(perObject(results, path, PREVIOUS));
    const ratio = value / comparisonValue;
    return {
      name: `${path} vs the previous program`,
      path,
      value,
      comparison: `${path} of the program at ${PREVIOUS_REV}, same run, median over ${OBJECTS_EACH} objects of each`,
      comparisonValue,
      ratio,
      target: `<= ${PREVIOUS_MAX_RATIO}x previous`,
      met: ratio <= PREVIOUS_MAX_RATIO,
    };
  };
  return [
    ...COMPARED.map(previous),
    t('drop vs floor', 'drop', FLOOR_COMPARISON, floor, '<= 2x floor', 2, false),
    t('drop vs xdp-filter', 'drop', `xdp-filter ${XDP_FILTER_DENYLIST}.o drop (listed source), same run`, ns(`${XDP_FILTER_DENYLIST}:drop`), '< xdp-filter drop', 1, true),
    t('drop vs xdp-filter deny policy', 'drop', `xdp-filter ${XDP_FILTER_ALLOWLIST}.o drop (unlisted source), same run`, ns(`${XDP_FILTER_ALLOWLIST}:drop`), '< xdp-filter drop', 1, true),
    t('new-connection vs floor', 'new-connection', FLOOR_COMPARISON, floor, '<= 3x floor', 3, false),
    ...[Math.max(...BY_N)].flatMap((n) => [
      t(`new-connection at N = ${n} vs N = ${BY_N[0]}`, `new-connection:N=${n}`, `new-connection at N = ${BY_N[0]}, same run`, ns(`new-connection:N=${BY_N[0]}`), `<= 1.5x N = ${BY_N[0]}`, 1.5, false),
      t(`new-connection-full at N = ${n} vs N = ${BY_N[0]}`, `new-connection-full:N=${n}`, `new-connection-full at N = ${BY_N[0]}, same run`, ns(`new-connection-full:N=${BY_N[0]}`), `<= 1.5x N = ${BY_N[0]}`, 1.5, false),
      oneCallTarget(eviction, n),
    ]),
  ];
}

/** The new-port path at N against N = 3, both one packet per call less the empty program's one-packet call. */
function oneCallTarget(eviction: OnePerCall, n: number): Target {
  const at = (k: number) => (eviction.rows.find((r) => r.path.n === k)?.median ?? NaN) - eviction.floor;
  const value = at(n);
  const comparisonValue = at(BY_N[0]!);
  const ratio = value / comparisonValue;
  return {
    name: `new-port-full at N = ${n} vs N = ${BY_N[0]} (one packet per call, less the floor)`,
    path: `new-port-full:N=${n}`,
    value,
    comparison: `new-port-full at N = ${BY_N[0]}, one packet per call less the floor, same run`,
    comparisonValue,
    ratio,
    target: `<= 1.5x N = ${BY_N[0]}`,
    met: ratio <= 1.5,
  };
}

function targetLine(t: Target): string {
  return `${t.path} ${t.target.replace('xdp-filter drop', `${t.comparison.split(' ')[1]} drop`)}: ${t.met ? 'met' : 'MISSED'} (${t.ratio.toFixed(2)}x)`;
}

function methodText(): string {
  const calls = PACKETS_PER_MEASUREMENT / PACKETS_PER_CALL;
  return (
    `BPF_PROG_TEST_RUN on one frame per path, timed by the kernel: ${count(PACKETS_PER_MEASUREMENT)} packets a ` +
    `measurement in ${calls} calls of ${count(PACKETS_PER_CALL)}, the ring buffer drained between calls; ${ROUNDS} rounds ` +
    `interleave every program; the figure is the median round, min-max the spread. The kernel truncates each call's mean ` +
    `to whole ns. Packetwatch is loaded as the probe deploys it (in-kernel detection, 3 ports in 60 s, permanent blocks); ` +
    `the :N=${BY_N.join(', :N=')} rows are one object per N running those paths only; "before" rows are PW_VARIANT_* builds ` +
    `of the same source. new-connection-full: the source's history holds N ports, the SYN hits the last one searched.`
  );
}

interface WakeUp {
  floor: number;
  syn: number;
}

/** Interleaved one-packet calls of the floor and of the new-connection path, with the ring drained before each SYN. */
function measureWakeUp(bench: Bench, floor: Path, syn: Path): WakeUp {
  const f: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < WAKEUP_CALLS; i++) {
    f.push(...bench.single(floor, 1));
    s.push(...bench.single(syn, 1));
  }
  return { floor: median(f), syn: median(s) };
}

function wakeUpText(w: WakeUp, results: readonly Result[]): string[] {
  const ns = (name: string) => results.find((r) => r.path.name === name)?.median ?? NaN;
  const wake = w.syn - w.floor - (ns('new-connection') - ns(FLOOR_PROGRAM));
  return [
    `Reader caught up: ${count(WAKEUP_CALLS)} one-packet calls, interleaved, the ring drained before every SYN, so that ` +
      `each SYN wakes the reader. Median kernel time of one run: xdp_pass ${w.floor.toFixed(0)} ns, new-connection ` +
      `${w.syn.toFixed(0)} ns; the wake-up costs about ${wake.toFixed(0)} ns a SYN (in the table above, once per call of ${count(PACKETS_PER_CALL)}).`,
  ];
}

function byNText(eviction: OnePerCall): string[] {
  return [
    `The detector by N: the same object at each N. new-port-full runs on the test-clock build (PW_VARIANT_TEST_CLOCK), one ` +
      `packet per call, the source cycling through 2N ports stamped W / (N - 1) apart, so that every SYN is a new port; ` +
      `medians of ${count(EVICTION_CALLS)} calls interleaved with the empty program's, whose ${eviction.floor.toFixed(0)} ns ` +
      `are taken off; the ring is drained every ${count(RING_DRAIN_CALLS)} calls.`,
  ];
}

function section(results: readonly Result[], tgts: readonly Target[], w: WakeUp, eviction: OnePerCall, m: Machine, date: string, eventsRead: number): string {
  return [
    SECTION_HEADING,
    '',
    'Cost per packet of each path through the XDP program, next to an empty `return XDP_PASS` ' +
      'program (the floor: what the test-run loop and the XDP hook charge any program) and to xdp-filter ' +
      `(Debian's libxdp1 ${libxdpVersion()}: ${XDP_FILTER_DENYLIST}.o is \`xdp-filter load\`'s default, dropping the ` +
      `sources its map lists; ${XDP_FILTER_ALLOWLIST}.o is its deny policy, where listed sources pass and all others ` +
      'are dropped), all measured in the same run.',
    '',
    ...sectionFacts('datapath', date, m),
    `- Method: ${methodText()}`,
    '',
    '```text',
    table(results),
    '```',
    '',
    `Against the program at ${PREVIOUS_REV}, like for like: ${OBJECTS_EACH} objects of each program running only these ` +
      'three paths, in the same rounds; each side is the median over its objects.',
    '',
    '```text',
    previousTable(results),
    '```',
    '',
    ...byNText(eviction),
    '',
    '```text',
    byNTable(results, eviction),
    '```',
    '',
    `Targets: ${tgts.map(targetLine).join('; ')}.`,
    '',
    `Ring buffer: ${eventsRead.toLocaleString('en-US')} events read, none lost (counter ringbufFull stayed 0).`,
    '',
    ...wakeUpText(w, results),
    '',
    '_This section is rewritten by `make bench-datapath`._',
    '',
  ].join('\n');
}

/** A ns/packet entry of datapath.json against a comparison. */
function nsEntry(name: string, value: number, comparison: string | null, comparisonValue: number | null, more: Partial<ResultEntry> = {}): ResultEntry {
  const versus = comparisonValue === null ? null : round2(comparisonValue);
  return { name, value: round2(value), unit: 'ns/packet', comparison, comparisonValue: versus, ratio: comparisonValue === null ? null : round2(value / comparisonValue), target: null, met: null, ...more };
}

function entries(results: readonly Result[], tgts: readonly Target[], w: WakeUp, eviction: OnePerCall): ResultEntry[] {
  const floor = results.find((r) => r.path.name === FLOOR_PROGRAM)?.median ?? NaN;
  const perPath = results.map((r) => {
    const t = tgts.find((x) => x.path === r.path.name && x.comparison === FLOOR_COMPARISON);
    const isFloor = r.path.name === FLOOR_PROGRAM;
    return nsEntry(r.path.name, r.median, isFloor ? null : FLOOR_COMPARISON, isFloor ? null : floor, {
      ratio: isFloor ? null : round2(r.ratio),
      target: t?.target ?? null,
      met: t ? t.met : null,
      frame: r.path.frame,
      n: r.path.n ?? null,
    });
  });
  const onePerCall = eviction.rows.map((r) =>
    nsEntry(`${r.path.name}, one packet per call`, r.median, `${FLOOR_PROGRAM}, one packet per call, same run`, eviction.floor, { frame: r.path.frame, n: r.path.n ?? null }),
  );
  const versus = tgts
    .filter((t) => t.comparison !== FLOOR_COMPARISON)
    .map((t) => nsEntry(t.name, t.value, t.comparison, t.comparisonValue, { ratio: round2(t.ratio), target: t.target, met: t.met }));
  return [...perPath, ...onePerCall, ...versus, nsEntry('new-connection, reader caught up (wake-up per SYN)', w.syn, 'xdp_pass, one packet per call, same run', w.floor)];
}

async function main(): Promise<void> {
  checkPreconditions();
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
    const subject = (label: string, opts: DatapathOptions, n: number): Subject => {
      const s = keep(label, new Subject(label, Datapath.load(opts), n));
      subjects.push(s);
      return s;
    };
    const floor = keep('the floor', ObjectSpec.open(compile(FLOOR_SOURCE, join(tmp, 'xdp_pass.bpf.o'))).load());
    const filterDeny = keep(XDP_FILTER_DENYLIST, loadXdpFilter(XDP_FILTER_DENYLIST, pinDir, SCANNER));
    const filterAllow = keep(XDP_FILTER_ALLOWLIST, loadXdpFilter(XDP_FILTER_ALLOWLIST, pinDir, SCANNER));
    const listener = keep('the listener', createServer());
    await new Promise<void>((res, rej) => listener.once('error', (e) => rej(new BenchError(`closed mode's rows listen on ${LISTENER}:${SSH}, which failed (${e.message})`))).listen({ host: LISTENER, port: SSH }, res));

    const deployed = subject('deployed', DEPLOYED, DEPLOYED_N);
    const byN = BY_N.map((n) => subject(`N = ${n}`, { ...DEPLOYED, scanPorts: n }, n));
    const all: Path[] = [
      { name: FLOOR_PROGRAM, frame: 'ACK (empty program: the floor)', program: floor.program(FLOOR_PROGRAM), data: ACK, verdict: XDP_PASS },
      ...deployedPaths(deployed),
      ...byN.flatMap(detectorPaths),
    ];
    for (const v of VARIANTS) {
      const objectPath = v.defines.length ? compile(PW_SOURCE, join(tmp, `${v.defines.join('-')}.o`), v.defines) : OBJECT_PATH;
      const s = subject(v.label, { ...v.opts, objectPath }, v.opts.scanPorts ?? 0);
      for (const p of deployedPaths(s)) {
        const frame = v.paths[p.name];
        if (frame) all.push({ ...(v.adjust ? v.adjust(p) : p), name: `${p.name}:${v.label}`, frame });
      }
    }
    all.push(...xdpFilterPaths(filterDeny.program(XDP_FILTER_DENYLIST), filterAllow.program(XDP_FILTER_ALLOWLIST)));
    const previousObject = compilePrevious(tmp);
    for (let k = 1; k <= OBJECTS_EACH; k++) {
      const previous = loadPrevious(previousObject);
      keep(`${PREVIOUS} #${k}`, previous.collection);
      keep(`${PREVIOUS} #${k}'s reader`, previous.reader);
      const beside = subject(`${BESIDE} #${k}`, DEPLOYED, DEPLOYED_N);
      all.push(...previousPaths(previous.collection.program(PROGRAM_NAME), previous.reader, beside, k));
    }
    const evictions = BY_N.map((n) => subject(`test clock, N = ${n}`, { ...DEPLOYED, scanPorts: n, objectPath: TEST_CLOCK_OBJECT_PATH }, n));
    for (const s of subjects) s.prime();
    const evictionPaths = evictions.map(evictionPath);
    const singleFloor: Path = { ...all[0]!, name: `${FLOOR_PROGRAM}, one packet per call` };

    const bench = new Bench();
    for (const p of [...all, ...evictionPaths]) bench.verify(p);
    // The first calls after load pay for cold caches and first touches of the ring's pages.
    for (const p of all) bench.warmUp(p);

    const samples = new Map<Path, number[]>(all.map((p) => [p, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotating the order keeps any one program from always following the same neighbour.
      for (let i = 0; i < all.length; i++) {
        const p = all[(round + i) % all.length];
        p?.subject?.prime(); // untimed: a round can outlast the window
        if (p) samples.get(p)?.push(bench.measure(p));
      }
    }
    const floorPath = all[0];
    const synPath = all.find((p) => p.name === 'new-connection');
    if (!floorPath || !synPath) throw new BenchError('the floor or the new-connection path is missing');
    synPath.subject?.prime();
    const wakeUp = measureWakeUp(bench, floorPath, synPath);
    const eviction = measureOnePerCall(singleFloor, evictionPaths);
    for (const s of subjects) s.checkBooks();
    const eventsRead = subjects.reduce((n, s) => n + s.eventsRead, 0);

    const medians = all.map((p) => ({ path: p, samples: samples.get(p) ?? [], median: median(samples.get(p) ?? []) }));
    const floorMedian = medians.find((r) => r.path.name === FLOOR_PROGRAM)?.median ?? NaN;
    const results: Result[] = medians.map((r) => ({ ...r, ratio: r.median / floorMedian }));
    const tgts = targets(results, eviction);

    const date = today();
    console.log(`Datapath cost, ${date}: ${machineText(m)}`);
    console.log('');
    console.log(table(results));
    console.log('');
    console.log(previousTable(results));
    console.log('');
    console.log(byNTable(results, eviction));
    console.log('');
    for (const t of tgts) console.log(`target: ${targetLine(t)}`);
    for (const line of wakeUpText(wakeUp, results)) console.log(line);
    console.log(`ring buffer: ${count(eventsRead)} events read, none lost`);
    console.log(`method: ${methodText()}`);

    publish(
      'datapath',
      SECTION_HEADING,
      () => entries(results, tgts, wakeUp, eviction),
      () => section(results, tgts, wakeUp, eviction, m, date, eventsRead),
      `${count(PACKETS_PER_MEASUREMENT)} packets a measurement, ${ROUNDS} rounds`,
    );
  });
}

await runBench('datapath', main);
