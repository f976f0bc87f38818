// `make bench-datapath`: what each path through the Packetwatch XDP program
// costs per packet, next to an empty XDP program and to xdp-filter (xdp-tools'
// address filter, from Debian's libxdp1), all measured in the same run.
//
// Bare nanoseconds mean little across machines; the ratio to a program that
// only returns XDP_PASS is what the targets are written against, so every
// program is measured in one process, interleaved, and reported side by side.
// The kernel times the runs (BPF_PROG_TEST_RUN), so the syscall is not in the
// figures. The program is loaded as the probe deploys it: in-kernel scan
// detection on with the probe's defaults (3 ports in 60 s, permanent blocks).
//
// Variant builds of the same source (PW_VARIANT_* in bpf/packetwatch.bpf.c)
// show, in the same run, what the design choices buy and where the remaining
// nanoseconds go.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:net';
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
import { type Collection, ObjectSpec, type Program, RingBufferReader, clock, encode, mountBpffs, u32, u64 } from 'libbpf-ts';
import {
  BENCH_DIR,
  BenchError,
  type Machine,
  REPO_ROOT,
  type ResultEntry,
  SMOKE,
  commandError,
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

/**
 * The program before fail-closed parsing, stealth and fragment probes and
 * prefix keys: built from git at this commit and run beside the deployed
 * one, so that what those rules cost each path is measured in one run.
 */
const PREVIOUS_REV = 'df3bb8b';
const PREVIOUS = 'previous';
/** The deployed program in an object of its own running the compared paths only, as the previous one does. */
const BESIDE = 'beside-previous';
const COMPARED = ['pass', 'new-connection', 'drop'];
/** Its record size: 56-byte events then. */
const PREVIOUS_EVENT_SIZE = 56;
/** No path may cost more than this times the previous program's. */
const PREVIOUS_MAX_RATIO = 1.1;
/**
 * Objects of each program in that comparison: where an object's maps, ring
 * and JIT image land moves a path by a nanosecond or two between two loads
 * of the same object, a tenth of the drop path, so each side is the median
 * over several objects.
 */
const OBJECTS_EACH = SMOKE ? 1 : 5;

// xdp-filter's programs as Debian's libxdp1 ships them. xdpfilt_alw_ip is the
// one `xdp-filter load` uses by default (policy "allow": everything passes
// except what the maps list, so a listed source is dropped: a deny list by
// source address). xdpfilt_dny_ip is the "deny" policy: only what the maps
// list passes, so there a listed source passes and every other is dropped.
const XDP_FILTER_DIR = `/usr/lib/${os.machine()}-linux-gnu/bpf`;
const XDP_FILTER_DENYLIST = 'xdpfilt_alw_ip';
const XDP_FILTER_ALLOWLIST = 'xdpfilt_dny_ip';
const XDP_FILTER_MAPS = ['filter_ipv4', 'filter_ipv6', 'xdp_stats_map'];
// xdp-filter/common_kern_user.h: a filter_ipv4 value is a u64 per CPU whose
// low bits say which header field the entry matches.
const MAP_FLAG_SRC = 1n;

const XDP_DROP = 1;
const XDP_PASS = 2;
const VERDICT_NAMES = ['aborted', 'drop', 'pass', 'tx', 'redirect'];

// Several rounds, each measuring every program once, so that a burst of noise
// (another tenant, a timer) lands on all of them rather than on one.
const ROUNDS = SMOKE ? 2 : 7;
const PACKETS_PER_MEASUREMENT = SMOKE ? 2_000 : 1_000_000;
// The event paths write one ring record per packet. A call must not outrun the
// ring: once it is full the program takes the cheaper "ring full" branch and
// the figure would describe a path production should never be on. The ring is
// drained between calls, as the probe does between wake-ups.
const PACKETS_PER_CALL = SMOKE ? 1_000 : 50_000;
const RING_BUFFER_BYTES = 4 << 20;
// A reader that keeps up drains the ring after every record, so every SYN is
// the first one waiting and wakes it: measured one packet per call, the ring
// drained between calls.
const WAKEUP_CALLS = SMOKE ? 20 : 2_000;
const RING_RECORD_BYTES = 8 + Math.ceil(SYN_EVENT_SIZE / 8) * 8; // 8-byte record header, 8-byte aligned

// The probe's defaults (services/probe/src/config.ts): PW_KERNEL_DETECTION on,
// PW_PORTSCAN_PORT_THRESHOLD 3, PW_PORTSCAN_TIME_THRESHOLD 60, PW_BLOCK_TTL 0.
const DEPLOYED: DatapathOptions = { scanPorts: 3, scanWindowSeconds: 60, scanBlockSeconds: 0, ringBufferBytes: RING_BUFFER_BYTES };
/** N of the detector for the N column: the deployed 3, then larger ones up to the most the program takes. */
const DEPLOYED_N = DEPLOYED.scanPorts ?? 0;
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

/**
 * A source's history in the detector, written as bpf/src/records.ts lays it
 * out: N ports (base, base + 1, ...) of which the first `old` were hit two
 * windows ago and the others a second ago, so that the N are not within the
 * window and stay so when one of them is hit again or the oldest is replaced.
 */
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
    // Blocks without expiry, as the detector and the policy write by default:
    // the drop path then reads no clock. One block expires, for the path that does.
    dp.block(SCANNER);
    dp.block(EXPIRING, { ttlSeconds: 3600 });
    dp.block(PARTNER);
    dp.allow(PARTNER);
  }

  /**
   * The detector's state the paths measure, set up once every object is
   * loaded, and again before each measurement of one of its paths: loading
   * them all, or a round on a loaded machine, can outlast the window (T =
   * 60 s), and a source whose hit expired would be measured being admitted
   * again. Idempotent otherwise: the sources' hits move to now.
   */
  prime(): void {
    const dp = this.dp;
    if (this.n > 1) writeHistory(dp, this.n, KEPT, 1000, this.n - 1);
    if (this.n > 1) {
      // The client and the partner are sources the detector keeps with one
      // port (in probation), as the paths measure them: their first SYN,
      // which admits them, is taken here.
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
  if (process.getuid?.() !== 0) {
    throw new BenchError('needs root to load and run XDP programs (BPF_PROG_TEST_RUN); run: sudo make bench-datapath');
  }
  if (!existsSync(OBJECT_PATH)) {
    throw new BenchError(`${rel(OBJECT_PATH)} is missing: run make build first`);
  }
  for (const name of [XDP_FILTER_DENYLIST, XDP_FILTER_ALLOWLIST]) {
    const file = join(XDP_FILTER_DIR, `${name}.o`);
    if (!existsSync(file)) throw new BenchError(`${file} is missing: install Debian's libxdp1 (make deps)`);
  }
  if (PACKETS_PER_CALL * RING_RECORD_BYTES > RING_BUFFER_BYTES) {
    throw new BenchError(`${PACKETS_PER_CALL} events per call do not fit a ${RING_BUFFER_BYTES}-byte ring buffer`);
  }
  if (PACKETS_PER_MEASUREMENT % PACKETS_PER_CALL !== 0) {
    throw new BenchError('PACKETS_PER_MEASUREMENT must be a multiple of PACKETS_PER_CALL');
  }
}

// Compiled at run time rather than by make so that the floor and the variants
// always come from the same clang, with the same flags, as the object under test.
function compile(source: string, out: string, defines: readonly string[] = [], include = join(REPO_ROOT, 'bpf')): string {
  const args = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', '-I', include, `-I/usr/include/${os.machine()}-linux-gnu`];
  try {
    execFileSync('clang', [...args, ...defines.map((d) => `-D${d}`), '-c', source, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw commandError(`compiling ${rel(source)} ${defines.join(' ')} failed`, e);
  }
  return out;
}

/**
 * xdp-filter's object with `address` in filter_ipv4, matching as a source.
 * Its maps ask libbpf to pin them by name; they are pinned in a directory of
 * their own, removed afterwards, so nothing of a real xdp-filter is touched.
 */
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

/**
 * The previous program (PREVIOUS_REV), compiled from git with its own header
 * and loaded as the probe loaded it then: the deployed detector settings, a
 * permanent block of SCANNER, the lists' generation set. Its codecs are not
 * today's, so it is driven by hand: the verdicts are checked, and its ring
 * buffer is read for the count of records only.
 */
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

/**
 * The deployed program's pass, new-connection and drop paths on the
 * previous program, and on an object of the deployed one that runs these
 * only: like for like (an object running every path keeps more of the
 * cache busy).
 */
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

/** Runs the programs and keeps the books: every packet sent to Packetwatch is expected to show up in its counters. */
class Bench {
  /** One kernel loop of `packets` runs; returns the kernel's mean ns per run. */
  #call(path: Path, packets: number): number {
    const { retval, durationNs } = path.program.testRun({ data: path.next?.() ?? path.data, repeat: packets });
    if (retval !== path.verdict) {
      throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
    }
    this.#drained(path, packets);
    const s = path.subject;
    if (s) {
      const batch = s.reader.consume();
      s.eventsRead += batch.count;
      const wanted = path.eventSource === undefined ? 0 : packets;
      if (batch.count !== wanted) {
        throw new BenchError(`${path.name}: ${batch.count} events from ${packets} packets, expected ${wanted}`);
      }
      for (const n of COUNTER_NAMES) s.expected[n] += (path.counts?.[n] ?? 0n) * BigInt(packets);
    }
    return durationNs;
  }

  /** Every packet of an event path wrote one record, and no other path wrote any. */
  #drained(path: Path, packets: number): void {
    if (!path.drain) return;
    const got = path.drain();
    const wanted = path.eventSource === undefined ? 0 : packets;
    if (got !== wanted) throw new BenchError(`${path.name}: ${got} events from ${packets} packets, expected ${wanted}`);
  }

  /** One packet, checked for verdict, event and counters, so a broken setup cannot print plausible numbers. */
  verify(path: Path): void {
    const s = path.subject;
    if (!s) {
      path.drain?.();
      const { retval } = path.program.testRun({ data: path.data });
      if (retval !== path.verdict) {
        throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
      }
      this.#drained(path, 1);
      return;
    }
    s.reader.consume();
    const before = s.dp.counters();
    const { retval } = path.program.testRun({ data: path.next?.() ?? path.data });
    if (retval !== path.verdict) {
      throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
    }
    const records = [...s.reader.consume()];
    if (path.eventSource === undefined) {
      if (records.length !== 0) throw new BenchError(`${path.name}: ${records.length} events, expected none`);
    } else {
      const first = records[0];
      const source = first ? formatAddress(synEventCodec.read(first, 0).saddr) : undefined;
      if (records.length !== 1 || source !== path.eventSource) {
        throw new BenchError(`${path.name}: expected one event from ${path.eventSource}, got ${records.length} (${source ?? 'none'})`);
      }
    }
    s.eventsRead += records.length;
    const after = s.dp.counters();
    for (const n of COUNTER_NAMES) {
      const moved = after[n] - before[n];
      const want = path.counts?.[n] ?? 0n;
      if (moved !== want) throw new BenchError(`${path.name}: counter ${n} moved by ${moved}, expected ${want}`);
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
    for (let sent = 0; sent < PACKETS_PER_MEASUREMENT; sent += PACKETS_PER_CALL) {
      totalNs += this.#call(path, PACKETS_PER_CALL) * PACKETS_PER_CALL;
    }
    return totalNs / PACKETS_PER_MEASUREMENT;
  }
}

const ACK = ipFrame({ src: CLIENT, dst: VICTIM, tcp: { sport: 40000, dport: SSH, flags: TCP_FLAGS.ACK } });
const CLIENT_SYN = synFrame(CLIENT, VICTIM, 40001, SSH);
/**
 * Closed mode's socket lookup runs in this process's network namespace
 * (BPF_PROG_TEST_RUN's frames arrive on its loopback device). The bench
 * listens on LISTENER:SSH while it runs: a SYN there finds that listener
 * (open), and no listener can hold SSH on the wildcard address meanwhile,
 * so the client's SYN to VICTIM:SSH finds none (closed).
 */
const LISTENER = '127.0.0.2';
const LISTENER_SYN = synFrame(CLIENT, LISTENER, 40001, SSH);
const SCANNER_SYN = synFrame(SCANNER, VICTIM, 40002, SSH);

const PASS_COUNTS = { frames: 1n };
const NEW_CONNECTION_COUNTS = { frames: 1n, syn: 1n, events: 1n };
const DROP_COUNTS = { frames: 1n, syn: 1n, synDropped: 1n };

/**
 * The detector's paths at the subject's N, named with it. Each N has an
 * object of its own with these paths only, so that the rows compare like
 * with like (the deployed object also runs every other path).
 */
function detectorPaths(s: Subject): Path[] {
  const program = s.dp.program;
  const suffix = `:N=${s.n}`;
  return [
    { ...deployedPaths(s).find((p) => p.name === 'new-connection')!, name: `new-connection${suffix}` },
    {
      name: `new-connection-full${suffix}`,
      frame: `SYN, source with N ports kept, the last one searched -> event`,
      program,
      data: synFrame(KEPT, VICTIM, 40005, 1000 + s.n - 1),
      verdict: XDP_PASS,
      subject: s,
      eventSource: KEPT,
      counts: NEW_CONNECTION_COUNTS,
      n: s.n,
    },
  ];
}

/**
 * A new port from a source with N ports kept, every packet: on the
 * test-clock build (TEST_CLOCK_OBJECT_PATH), one packet per call, the source
 * cycling through 2N ports with each SYN stamped W / (N - 1) after the one
 * before, so that each port is new again when it comes round (the oldest is
 * replaced every time) and the N kept never fall within the window. The
 * history is the program's own, as warm as in the loop-mode rows.
 */
function evictionPath(s: Subject): Path {
  const testClock = s.dp.collection.map('test_clock').typed(u32, u64);
  const windowNs = BigInt((DEPLOYED.scanWindowSeconds ?? 60) * 1e9);
  const step = windowNs / BigInt(s.n - 1) + 1n;
  const frames = Array.from({ length: 2 * s.n }, (_, k) => synFrame(EVICTING, VICTIM, 40006, 3000 + k));
  let now = clock.boottimeNs();
  let k = 0;
  // The source's first 2N SYNs, taken here: its admission (into probation)
  // and its promotion (at its second port) are counted once, not per packet.
  for (; k < 2 * s.n; k++) {
    now += step;
    testClock.set(0, now);
    s.dp.program.testRun({ data: frames[k]! });
  }
  s.eventsRead += [...s.reader.consume()].length;
  Object.assign(s.expected, s.dp.counters());
  return {
    name: `new-port-full:N=${s.n}`,
    frame: 'SYN, new port of a source with N ports kept: replaces the oldest -> event',
    program: s.dp.program,
    data: frames[0]!,
    verdict: XDP_PASS,
    subject: s,
    eventSource: EVICTING,
    counts: NEW_CONNECTION_COUNTS,
    n: s.n,
    next: () => {
      now += step;
      testClock.set(0, now);
      return frames[k++ % frames.length]!;
    },
  };
}

/** The paths of the program as deployed. */
function deployedPaths(s: Subject): Path[] {
  const program = s.dp.program;
  const paths: Path[] = [
    { name: 'pass', frame: 'ACK, unblocked source', program, data: ACK, verdict: XDP_PASS, subject: s, counts: PASS_COUNTS },
    {
      name: 'new-connection',
      frame: 'SYN, unblocked source -> event',
      program,
      data: CLIENT_SYN,
      verdict: XDP_PASS,
      subject: s,
      eventSource: CLIENT,
      counts: NEW_CONNECTION_COUNTS,
    },
    { name: 'drop', frame: 'SYN, blocked source', program, data: SCANNER_SYN, verdict: XDP_DROP, subject: s, counts: DROP_COUNTS },
    {
      name: 'drop-expiring',
      frame: 'SYN, source blocked for 1 h (reads the clock)',
      program,
      data: synFrame(EXPIRING, VICTIM, 40004, SSH),
      verdict: XDP_DROP,
      subject: s,
      counts: DROP_COUNTS,
    },
    {
      name: 'allowlisted',
      frame: 'SYN, blocked + allowlisted -> event',
      program,
      data: synFrame(PARTNER, VICTIM, 40003, SSH),
      verdict: XDP_PASS,
      subject: s,
      eventSource: PARTNER,
      counts: { frames: 1n, syn: 1n, allowlisted: 1n, events: 1n },
    },
  ];
  return paths.map((p) => ({ ...p, n: s.n }));
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

const VARIANTS: readonly Variant[] = [
  {
    label: 'detector off',
    defines: [],
    opts: { ...DEPLOYED, scanPorts: 0 },
    paths: { 'new-connection': 'new-connection, detector off (PW_KERNEL_DETECTION=false)' },
  },
  {
    label: 'precise clock',
    defines: ['PW_VARIANT_PRECISE_CLOCK'],
    opts: DEPLOYED,
    paths: {
      'new-connection': 'new-connection, before: bpf_ktime_get_boot_ns per SYN',
      'drop-expiring': 'drop-expiring, before: bpf_ktime_get_boot_ns per hit',
    },
  },
  {
    label: 'no drop cache',
    defines: ['PW_VARIANT_NO_DROP_CACHE'],
    opts: DEPLOYED,
    paths: {
      drop: 'drop, before: blocklist hash + allowlist LPM on every hit',
      'new-connection': 'new-connection without the drop cache (what its miss costs)',
    },
  },
  {
    label: 'closed mode',
    defines: [],
    opts: { ...DEPLOYED, countClosed: true },
    paths: { 'new-connection': 'new-connection, closed mode (PW_PORTSCAN_COUNT=closed), no socket: looked up, closed, tracked -> event' },
  },
  {
    label: 'closed mode, listener',
    defines: [],
    opts: { ...DEPLOYED, countClosed: true },
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

/**
 * Interleaved one-packet calls of the floor and of each path (each path's
 * `next` run ahead of every call, untimed). The ring buffers are drained
 * only every RING_DRAIN_CALLS calls, so that a SYN does not find its reader
 * caught up and wake it (the wake-up, microseconds on this VM, would swamp
 * the path: see the reader-caught-up figure); the medians leave out the one
 * call in each stretch that does.
 */
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
    const { retval, durationNs } = p.program.testRun({ data: p.next?.() ?? p.data });
    if (retval !== p.verdict) throw new BenchError(`${p.name}: the program said ${verdictName(retval)}, expected ${verdictName(p.verdict)}`);
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

/**
 * The new-port path at N against N = 3, both one packet per call, each less
 * the empty program's one-packet call (the clock reads and set-up of a
 * single run, some 60 ns, which would otherwise dilute the ratio).
 */
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
    `BPF_PROG_TEST_RUN on one frame per path, timed by the kernel. Each measurement is ` +
    `${PACKETS_PER_MEASUREMENT.toLocaleString('en-US')} packets in ${calls} calls of ` +
    `${PACKETS_PER_CALL.toLocaleString('en-US')} (the ring buffer is drained between calls, so no event is lost); ` +
    `${ROUNDS} rounds interleave every program round-robin; the figure is the median round, ` +
    `min-max the spread of rounds. The kernel reports each call's mean in whole ns, truncated, ` +
    `so figures may read up to 1 ns low, and ratios to a floor of a few ns carry that uncertainty. ` +
    `Packetwatch is loaded as the probe deploys it: in-kernel detection on (3 ports in 60 s), permanent blocks; ` +
    `the new-connection SYN comes from one source to one port, so the detector finds a known source and a known port. ` +
    `The N column is the detector's N; the rows named :N=${BY_N.join(', :N=')} are the same object loaded with that N, ` +
    `one object per N running those paths only. ` +
    `new-connection-full: before the run, the source's history is written into the detector's map (bpf/src/records.ts ` +
    `layout) with N ports, N - 1 of them hit two windows ago and the last one the search reaches a second ago; the SYN ` +
    `hits that last one, so every packet searches all N ports and none is a scan.`
  );
}

function missCost(ns: number): string {
  return ns < 1
    ? `a miss adds nothing measurable to new-connection (${ns.toFixed(1)} ns)`
    : `a miss costs new-connection ${ns.toFixed(1)} ns`;
}

// What was tried, with what each change bought, from this run's variant rows
// where the bench measures it, and from development runs where it does not.
function triedText(results: readonly Result[]): string[] {
  const ns = (name: string) => results.find((r) => r.path.name === name)?.median ?? NaN;
  const diff = (before: string, after: string) => (ns(before) - ns(after)).toFixed(1);
  return [
    'What was tried (the "before" rows are variant builds of bpf/packetwatch.bpf.c, PW_VARIANT_*, measured in this run):',
    '',
    `- Coarse clock. bpf_ktime_get_boot_ns reads the clock source, about 25 ns on this kvm-clock VM. The program now ` +
      `reads bpf_ktime_get_coarse_ns (the last tick's CLOCK_MONOTONIC) plus BOOTTIME - MONOTONIC, measured with the ` +
      `precise clocks at most once a second: times stay CLOCK_BOOTTIME (what the probe writes and converts), at tick ` +
      `resolution (4 ms at HZ=250). Bought ${diff('new-connection:precise clock', 'new-connection')} ns on ` +
      `new-connection and ${diff('drop-expiring:precise clock', 'drop-expiring')} ns on a drop of an expiring block. ` +
      'A permanent block reads no clock at all (as before). The price: event times and block expiry at tick ' +
      'resolution (a block lapses up to two ticks late, an event time is up to two ticks early: the coarse time advances in whole ticks, at a tick).',
    `- Drop cache. A block hit looked the source up in the blocklist hash and then in the allowlist LPM trie, ` +
      `every time. Now a per-CPU, direct-mapped array of 4,096 slots remembers sources found blocked and not ` +
      `allowlisted, each slot stamped with the lists' generation (a pinned counter Datapath moves after every ` +
      `blocklist write and every allowlist insertion, so an unblock or a new allowlist entry takes effect at once). ` +
      `A repeated drop then costs a multiplicative hash, an inlined array lookup and a 16-byte compare. ` +
      `Bought ${diff('drop:no drop cache', 'drop')} ns on drop; ${missCost(ns('new-connection') - ns('new-connection:no drop cache'))}. ` +
      'A first step, stamping the generation into the ' +
      'blocklist value to skip only the LPM lookup, bought about 5 ns (development run) and changed the pinned ' +
      "blocklist's layout; the cache replaced it and leaves the layout as it was. The guarantees hold: an " +
      'allowlisted source is never dropped, an unblock or an expiry is never undone by the cache ' +
      '(bpf/test/datapath.root.test.ts), as long as the lists are written through Datapath (the probe does).',
    '- IPv4 blocklist keyed by 4 bytes instead of the 16-byte mapped address (a second map): about 1 ns on the ' +
      'full drop path (development run). Not taken: two maps for every reader and writer of the blocklist.',
    '- Order of lookups: the drop cache, then the blocklist, only for SYNs (or every frame in drop-all mode); the ' +
      'allowlist only on a block hit the cache did not vouch for; the detector only for SYNs that were not dropped. ' +
      'Caching "not blocked" too would spare new-connection its blocklist miss, but a cache that can say "pass" fails ' +
      'open (the detector adds blocks from every CPU) for a gain that leaves the target far off. Not done.',
    '- Per-CPU counters: one inlined per-CPU array lookup per frame; a build without any counter update measured the ' +
      'same as with them (16 vs 16 ns on drop, development run 2026-11-25). Kept.',
    '- Smaller steps on the drop path, each within the noise (0.5 ns or less, development run): the generation in ' +
      '.bss instead of a one-entry array map, no zeroing of the parsed-header struct, no SYN counter update. Not taken.',
    '- bpf_ringbuf_output (one helper call, copy from the stack) instead of reserve + submit: 1-3 ns slower ' +
      '(development run). Not taken.',
    '- Ring buffer wake-ups. The default (no flag) already wakes the reader only when it had drained the ring ' +
      '(the record is the first one waiting), which is what sparse traffic needs; BPF_RB_NO_WAKEUP measured the same ' +
      'here (51 vs 52 ns), because the bench drains between calls of 50,000. A wake-up is expensive on this VM: ' +
      'BPF_RB_FORCE_WAKEUP on every record cost about 5,100 ns per SYN (an interrupt through the hypervisor), so ' +
      'fewer wake-ups matter when the reader keeps up with a steady stream. The program keeps the default; the ' +
      'probe\'s reader coalesces instead (PW_EVENT_COALESCE_MS, 1 ms): after a read that found events it drains ' +
      'the ring again a millisecond later rather than on the next wake-up, so a steady stream keeps the ring ' +
      'non-empty and raises about one wake-up per millisecond, while the first SYN after a quiet spell still wakes ' +
      'it at once (what this bought under hping3 --flood: see Event pipeline).',
  ];
}

function missedText(results: readonly Result[]): string[] {
  const ns = (name: string) => results.find((r) => r.path.name === name)?.median ?? NaN;
  const f = (x: number) => x.toFixed(1);
  const floor = ns(FLOOR_PROGRAM);
  const parse = ns('pass') - floor;
  const lookup = ns('drop') - ns('pass');
  const dropGap = ns('drop') - 2 * floor;
  const event = ns('new-connection') - ns('new-connection:no event');
  const detector = ns('new-connection') - ns('new-connection:detector off');
  return [
    'Where the nanoseconds go (differences between rows of this run):',
    '',
    `- drop = floor ${f(floor)} + parsing to the TCP flags ${f(parse)} (pass - floor) + the drop cache and the ` +
      `counters ${f(lookup)} (drop - pass: the generation, a per-CPU slot, a 16-byte compare, two counter updates). ` +
      `2x the floor leaves ${f(floor)} ns for parsing and the check together` +
      (dropGap > 0 ? `, so the target is missed by ${f(dropGap)} ns (the kernel truncates each figure by up to 1 ns)` : ', and they fit') +
      `; without the cache the ` +
      `check is a 16-byte-key hash lookup and an LPM lookup, ${f(ns('drop:no drop cache') - ns('pass'))} ns. ` +
      `xdp-filter's drop path (parsing to the IP header, two lookups of a 4-byte key, its statistics) is ` +
      `${f(ns(`${XDP_FILTER_DENYLIST}:drop`) - floor)} ns over the floor; ours ${f(ns('drop') - floor)}.`,
    `- new-connection = parsing, a drop cache miss and a blocklist miss, plus the in-kernel detector ${f(detector)} (hash ` +
      `lookups of the source, in the protected space then in probation, where a source with one port is; vs detector off) plus the event ${f(event)} (ring buffer reserve + ` +
      `submit: a spin lock with interrupts off and an atomic commit; vs the no-event build) plus the coarse clock. The ring buffer write alone ` +
      `is ${f(event / floor)}x the floor` +
      (event > 3 * floor ? ', so 3x the floor cannot be met while every new connection is reported.' : '.'),
    `- Against the program at ${PREVIOUS_REV} (before fail-closed parsing, stealth and fragment probes, prefix keys and ` +
      `admission; each in an object running only these three paths): ` +
      COMPARED.map((p) => `${p} ${signed(median(perObject(results, p, BESIDE)) - median(perObject(results, p, PREVIOUS)))} ns`).join(', ') +
      `. Added: every IPv4 packet keeps its total length's room for the TCP header and its first-fragment flag (the ` +
      `tiny-fragment rule), and an ACK passes only after its header is checked against both; a SYN is told from a ` +
      `stealth probe or a bare RST by FIN and RST as well as SYN and ACK. Saved: a SYN consults the blocklist on a path ` +
      `of its own, before anything is kept for its event (the other probe kinds share one consultation after them; the ` +
      `IPv6 walk ends at a bounded offset from the frame's start, so that the verifier goes on from one state and the ` +
      `program stays within its budget at N = 64); the parsers set every field instead of clearing the parsed-header ` +
      `struct per frame; ` +
      `the addresses are read from the IP header only where they are used (the source at the blocklist consultation, the ` +
      `destination and TTL for the event), so established traffic copies none; the blocklist key (the source masked to ` +
      `its prefix) is made only past the drop cache. A new connection from a source with one port finds it in probation ` +
      `with one lookup (a promoted source leaves a stub there that sends the lookup on to the protected space), and its ` +
      `event carries its kind in the 56 bytes events had (a record is still one 64-byte line of the ring).`,
    `- Closed mode (PW_PORTSCAN_COUNT=closed, docs/detection.md): a SYN to a port nothing listens on costs ` +
      `${f(ns('new-connection:closed mode') - ns('new-connection'))} ns more than in all mode (the declared-open bitmap, an ` +
      `inlined array lookup, then bpf_skc_lookup_tcp missing in the established and listening hashes, and the detector as ` +
      `ever); a SYN to a listening port ${f(ns('new-connection:closed mode, listener') - ns('new-connection:detector off'))} ns ` +
      `more than one with the detector off (the lookup's hit and the socket's release stand in for the detector, which does ` +
      `not run). All mode pays nothing: the mode is a load-time constant, and the verifier drops the lookup.`,
  ];
}

/** A difference with its sign. */
function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
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
    `Reader caught up: ${WAKEUP_CALLS.toLocaleString('en-US')} calls of one packet each, interleaved, the ring drained ` +
      `before every SYN, so that every SYN is the first record waiting and wakes the reader (as when the probe keeps ` +
      `up with sparse traffic). Median kernel time of one run: xdp_pass ${w.floor.toFixed(0)} ns, new-connection ` +
      `${w.syn.toFixed(0)} ns (both include the kernel's own clock reads around a single run). The wake-up ` +
      `(irq_work: an interrupt through the hypervisor here) costs about ${wake.toFixed(0)} ns a SYN; in the table ` +
      `above it is paid once per call of ${PACKETS_PER_CALL.toLocaleString('en-US')}.`,
  ];
}

function byNText(results: readonly Result[], eviction: OnePerCall): string[] {
  const c = costsByN(results, eviction);
  const last = BY_N.length - 1;
  const more = (i: number) => {
    const d = c[i]!.ns[last]! - c[i]!.ns[0]!;
    return d >= 0 ? `${d.toFixed(1)} ns more` : `${(-d).toFixed(1)} ns less`;
  };
  const [nMin, nMax] = [BY_N[0]!, BY_N[last]!];
  return [
    `The detector by N (docs/detection.md; the same object at each N, loaded as deployed but for N). ` +
      `Every SYN of a tracked source searches its kept ports four to a 64-bit word and checks the window on the newest ` +
      `and oldest times kept, so a hit costs what the search costs: at N = ${nMax}, a source with all ${nMax} ports kept ` +
      `(new-connection-full) costs ${more(1)} than one with ${nMin} (${Math.ceil(nMax / 4)} words searched ` +
      `instead of 1), and a source with one port (new-connection, the common case) ${more(0)}. A new port once N are ` +
      `kept (new-port-full) also replaces the oldest and finds the next oldest in its group of 8 entries and among the ` +
      `groups' oldest: ${more(2)} at N = ${nMax}. The same work follows a hit on the oldest port. The coarse clock ` +
      `bounds how often a hit on a kept port does it: a port hit again within the same tick changes nothing. ` +
      `new-port-full runs on the test-clock build (PW_VARIANT_TEST_CLOCK, which reads its clock ` +
      `from a map instead of the coarse clock: the only difference), one packet per call, the source cycling through 2N ` +
      `ports with each SYN stamped W / (N - 1) after the one before, so that every SYN is a new port and the N kept never ` +
      `fall within the window; the figures are medians of ${EVICTION_CALLS.toLocaleString('en-US')} calls each, ` +
      `interleaved with the empty program's, whose ${eviction.floor.toFixed(0)} ns (the kernel's clock reads around a single ` +
      `run) are taken off; the ring buffer is drained every ${RING_DRAIN_CALLS.toLocaleString('en-US')} calls, so that a ` +
      `SYN does not wake a reader that has caught up. Where the work does not depend on N (new-connection: one port kept), ` +
      `the objects still differ by several ns, not in N's order: where an object's maps land in memory moves its figures ` +
      `(development run, the same N = 3 object: 61.9 ns loaded before the N = 16 and 64 ones, 53.9 ns after them).`,
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
    `Against the program at ${PREVIOUS_REV} (before fail-closed parsing, stealth and fragment probes, prefix keys and ` +
      `admission), like for like: ${OBJECTS_EACH} objects of each program, each running only these three paths, ` +
      'measured in the same rounds as the rest; each side is the median over its objects (two loads of one object ' +
      'differ by a nanosecond or two).',
    '',
    '```text',
    previousTable(results),
    '```',
    '',
    ...byNText(results, eviction),
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
    ...triedText(results),
    '',
    ...missedText(results),
    '',
    '_This section is rewritten by `make bench-datapath`._',
    '',
  ].join('\n');
}

function entries(results: readonly Result[], tgts: readonly Target[], w: WakeUp, eviction: OnePerCall): ResultEntry[] {
  const floor = results.find((r) => r.path.name === FLOOR_PROGRAM)?.median ?? NaN;
  const byPath = (name: string) => tgts.find((t) => t.path === name && t.comparison === FLOOR_COMPARISON);
  const perPath: ResultEntry[] = results.map((r) => {
    const t = byPath(r.path.name);
    return {
      name: r.path.name,
      value: round2(r.median),
      unit: 'ns/packet',
      comparison: r.path.name === FLOOR_PROGRAM ? null : FLOOR_COMPARISON,
      comparisonValue: r.path.name === FLOOR_PROGRAM ? null : round2(floor),
      ratio: r.path.name === FLOOR_PROGRAM ? null : round2(r.ratio),
      target: t?.target ?? null,
      met: t ? t.met : null,
      frame: r.path.frame,
      n: r.path.n ?? null,
    };
  });
  const onePerCall: ResultEntry[] = eviction.rows.map((r) => ({
    name: `${r.path.name}, one packet per call`,
    value: round2(r.median),
    unit: 'ns/packet',
    comparison: `${FLOOR_PROGRAM}, one packet per call, same run`,
    comparisonValue: round2(eviction.floor),
    ratio: round2(r.median / eviction.floor),
    target: null,
    met: null,
    frame: r.path.frame,
    n: r.path.n ?? null,
  }));
  const versus: ResultEntry[] = tgts
    .filter((t) => t.comparison !== FLOOR_COMPARISON)
    .map((t) => ({
      name: t.name,
      value: round2(t.value),
      unit: 'ns/packet',
      comparison: t.comparison,
      comparisonValue: round2(t.comparisonValue),
      ratio: round2(t.ratio),
      target: t.target,
      met: t.met,
    }));
  const wakeUp: ResultEntry = {
    name: 'new-connection, reader caught up (wake-up per SYN)',
    value: round2(w.syn),
    unit: 'ns/packet',
    comparison: 'xdp_pass, one packet per call, same run',
    comparisonValue: round2(w.floor),
    ratio: round2(w.syn / w.floor),
    target: null,
    met: null,
  };
  return [...perPath, ...onePerCall, ...versus, wakeUp];
}

async function main(): Promise<void> {
  checkPreconditions();
  const m = machine();
  const tmp = mkdtempSync(join(os.tmpdir(), 'packetwatch-bench-'));
  mountBpffs();
  const pinDir = mkdtempSync('/sys/fs/bpf/packetwatch-bench-');
  const collections: Collection[] = [];
  const subjects: Subject[] = [];
  const readers: RingBufferReader[] = [];
  const servers: Server[] = [];
  try {
    const floor = ObjectSpec.open(compile(FLOOR_SOURCE, join(tmp, 'xdp_pass.bpf.o'))).load();
    collections.push(floor);
    const filterDeny = loadXdpFilter(XDP_FILTER_DENYLIST, pinDir, SCANNER);
    collections.push(filterDeny);
    const filterAllow = loadXdpFilter(XDP_FILTER_ALLOWLIST, pinDir, SCANNER);
    collections.push(filterAllow);

    const listener = createServer();
    servers.push(listener);
    await new Promise<void>((res, rej) => listener.once('error', (e) => rej(new BenchError(`closed mode's rows listen on ${LISTENER}:${SSH}, which failed (${e.message})`))).listen({ host: LISTENER, port: SSH }, res));
    const deployed = new Subject('deployed', Datapath.load(DEPLOYED), DEPLOYED_N);
    subjects.push(deployed);
    const byN = BY_N.map((n) => {
      const s = new Subject(`N = ${n}`, Datapath.load({ ...DEPLOYED, scanPorts: n }), n);
      subjects.push(s);
      return s;
    });
    const all: Path[] = [
      { name: FLOOR_PROGRAM, frame: 'ACK (empty program: the floor)', program: floor.program(FLOOR_PROGRAM), data: ACK, verdict: XDP_PASS },
      ...deployedPaths(deployed),
      ...byN.flatMap(detectorPaths),
    ];
    for (const v of VARIANTS) {
      const objectPath = v.defines.length ? compile(PW_SOURCE, join(tmp, `${v.defines.join('-')}.o`), v.defines) : OBJECT_PATH;
      const s = new Subject(v.label, Datapath.load({ ...v.opts, objectPath }), v.opts.scanPorts ?? 0);
      subjects.push(s);
      for (const p of deployedPaths(s)) {
        const frame = v.paths[p.name];
        if (frame) all.push({ ...(v.adjust ? v.adjust(p) : p), name: `${p.name}:${v.label}`, frame });
      }
    }
    all.push(...xdpFilterPaths(filterDeny.program(XDP_FILTER_DENYLIST), filterAllow.program(XDP_FILTER_ALLOWLIST)));
    const previousObject = compilePrevious(tmp);
    for (let k = 1; k <= OBJECTS_EACH; k++) {
      const previous = loadPrevious(previousObject);
      collections.push(previous.collection);
      readers.push(previous.reader);
      const beside = new Subject(`${BESIDE} #${k}`, Datapath.load(DEPLOYED), DEPLOYED_N);
      subjects.push(beside);
      all.push(...previousPaths(previous.collection.program(PROGRAM_NAME), previous.reader, beside, k));
    }

    const evictions = BY_N.map((n) => {
      const s = new Subject(`test clock, N = ${n}`, Datapath.load({ ...DEPLOYED, scanPorts: n, objectPath: TEST_CLOCK_OBJECT_PATH }), n);
      subjects.push(s);
      return s;
    });
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
        // Primed again, untimed: on a loaded machine a round can outlast
        // the window, and the sources would be measured being admitted again.
        p?.subject?.prime();
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
    console.log(`ring buffer: ${eventsRead.toLocaleString('en-US')} events read, none lost`);
    for (const line of missedText(results)) if (line) console.log(line);
    console.log(`method: ${methodText()}`);

    publish(
      'datapath',
      SECTION_HEADING,
      () => entries(results, tgts, wakeUp, eviction),
      () => section(results, tgts, wakeUp, eviction, m, date, eventsRead),
      `${PACKETS_PER_MEASUREMENT.toLocaleString('en-US')} packets a measurement, ${ROUNDS} rounds`,
    );
  } finally {
    for (const s of subjects) s.close();
    for (const r of readers) r.close();
    for (const c of collections) c.close();
    for (const srv of servers) srv.close();
    rmSync(pinDir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}

await runBench('datapath', main);
