// `make bench-datapath`: what each path through the Packetwatch XDP program
// costs per packet, next to an empty XDP program measured in the same run.
//
// Bare nanoseconds mean little across machines; the ratio to a program that
// only returns XDP_PASS is what the targets are written against, so both are
// measured in one process, interleaved, and reported side by side. The kernel
// times the runs (BPF_PROG_TEST_RUN), so the syscall is not in the figures.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  COUNTER_NAMES,
  type CounterName,
  type Counters,
  Datapath,
  OBJECT_PATH,
  SYN_EVENT_SIZE,
  TCP_FLAGS,
  formatAddress,
  ipFrame,
  synEventCodec,
  synFrame,
  zeroCounters,
} from '@packetwatch/bpf';
import { type Collection, ObjectSpec, type Program, type RingBufferReader } from 'libbpf-ts';
import {
  BENCHMARKS_FILE,
  BENCH_DIR,
  BenchError,
  type Machine,
  commandError,
  machine,
  machineText,
  median,
  rel,
  round2,
  runBench,
  table as textTable,
  today,
  updateBenchmarks,
  writeResults,
} from './report.js';

const FLOOR_SOURCE = join(BENCH_DIR, 'fixtures', 'xdp_pass.bpf.c');
const FLOOR_PROGRAM = 'xdp_pass';
const SECTION_HEADING = '## Datapath cost';

const XDP_DROP = 1;
const XDP_PASS = 2;
const VERDICT_NAMES = ['aborted', 'drop', 'pass', 'tx', 'redirect'];

// Several rounds, each measuring every program once, so that a burst of noise
// (another tenant, a timer) lands on all of them rather than on one.
const ROUNDS = 7;
const PACKETS_PER_MEASUREMENT = 1_000_000;
// The event paths write one ring record per packet. A call must not outrun the
// ring: once it is full the program takes the cheaper "ring full" branch and
// the figure would describe a path production should never be on. The ring is
// drained between calls, as the probe does between wake-ups.
const PACKETS_PER_CALL = 50_000;
const RING_BUFFER_BYTES = 4 << 20;
const RING_RECORD_BYTES = 8 + Math.ceil(SYN_EVENT_SIZE / 8) * 8; // 8-byte record header, 8-byte aligned

const TARGETS: readonly { path: string; maxRatio: number }[] = [
  { path: 'drop', maxRatio: 2 },
  { path: 'new-connection', maxRatio: 3 },
];

// Documentation ranges (RFC 5737): nothing here is ever a real peer.
const VICTIM = '198.51.100.1';
const CLIENT = '192.0.2.10';
const SCANNER = '192.0.2.66';
const PARTNER = '192.0.2.99';
const SSH = 22;

interface Path {
  /** Name in the table and in datapath.json. */
  name: string;
  frame: string;
  program: Program;
  data: Buffer;
  verdict: number;
  /** Source the SYN event must name; undefined on paths that report nothing. */
  eventSource?: string;
  /** How one packet moves each Packetwatch counter; undefined for the floor. */
  counts?: Partial<Record<CounterName, bigint>>;
}

interface Result {
  path: Path;
  samples: number[];
  median: number;
  ratio: number;
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
  if (PACKETS_PER_CALL * RING_RECORD_BYTES > RING_BUFFER_BYTES) {
    throw new BenchError(`${PACKETS_PER_CALL} events per call do not fit a ${RING_BUFFER_BYTES}-byte ring buffer`);
  }
  if (PACKETS_PER_MEASUREMENT % PACKETS_PER_CALL !== 0) {
    throw new BenchError('PACKETS_PER_MEASUREMENT must be a multiple of PACKETS_PER_CALL');
  }
}

// Compiled at run time rather than by make so that the floor always comes from
// the same clang, with the same flags, as the run's report says.
function compileFloor(dir: string): string {
  const out = join(dir, 'xdp_pass.bpf.o');
  const args = ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', `-I/usr/include/${os.machine()}-linux-gnu`];
  try {
    execFileSync('clang', [...args, '-c', FLOOR_SOURCE, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw commandError(`compiling ${rel(FLOOR_SOURCE)} failed`, e);
  }
  return out;
}

/** Runs the programs and keeps the books: every packet sent is expected to show up in the counters. */
class Bench {
  readonly #expected: Counters = zeroCounters();
  #eventsRead = 0;

  constructor(
    readonly dp: Datapath,
    readonly reader: RingBufferReader,
  ) {}

  get eventsRead(): number {
    return this.#eventsRead;
  }

  /** One kernel loop of `packets` runs; returns the kernel's mean ns per run. */
  #call(path: Path, packets: number): number {
    const { retval, durationNs } = path.program.testRun({ data: path.data, repeat: packets });
    if (retval !== path.verdict) {
      throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
    }
    // Drained after every call, the floor's included, so every program pays the same harness.
    const batch = this.reader.consume();
    this.#eventsRead += batch.count;
    const wanted = path.eventSource === undefined ? 0 : packets;
    if (batch.count !== wanted) {
      throw new BenchError(`${path.name}: ${batch.count} events from ${packets} packets, expected ${wanted}`);
    }
    if (path.counts) for (const n of COUNTER_NAMES) this.#expected[n] += (path.counts[n] ?? 0n) * BigInt(packets);
    return durationNs;
  }

  /** One packet, checked for verdict, event and counters, so a broken setup cannot print plausible numbers. */
  verify(path: Path): void {
    this.reader.consume();
    const before = this.dp.counters();
    const { retval } = path.program.testRun({ data: path.data });
    if (retval !== path.verdict) {
      throw new BenchError(`${path.name}: the program said ${verdictName(retval)}, expected ${verdictName(path.verdict)}`);
    }
    const records = [...this.reader.consume()];
    if (path.eventSource === undefined) {
      if (records.length !== 0) throw new BenchError(`${path.name}: ${records.length} events, expected none`);
    } else {
      const first = records[0];
      const source = first ? formatAddress(synEventCodec.read(first, 0).saddr) : undefined;
      if (records.length !== 1 || source !== path.eventSource) {
        throw new BenchError(`${path.name}: expected one event from ${path.eventSource}, got ${records.length} (${source ?? 'none'})`);
      }
    }
    this.#eventsRead += records.length;
    if (!path.counts) return;
    const after = this.dp.counters();
    for (const n of COUNTER_NAMES) {
      const moved = after[n] - before[n];
      const want = path.counts[n] ?? 0n;
      if (moved !== want) throw new BenchError(`${path.name}: counter ${n} moved by ${moved}, expected ${want}`);
      this.#expected[n] += want;
    }
  }

  warmUp(path: Path): void {
    this.#call(path, PACKETS_PER_CALL);
  }

  /** Mean ns per packet over PACKETS_PER_MEASUREMENT packets. */
  measure(path: Path): number {
    let totalNs = 0;
    for (let sent = 0; sent < PACKETS_PER_MEASUREMENT; sent += PACKETS_PER_CALL) {
      totalNs += this.#call(path, PACKETS_PER_CALL) * PACKETS_PER_CALL;
    }
    return totalNs / PACKETS_PER_MEASUREMENT;
  }

  /** The counters must equal what was sent: in particular no event lost to a full ring. */
  checkBooks(): Counters {
    const actual = this.dp.counters();
    for (const n of COUNTER_NAMES) {
      if (actual[n] !== this.#expected[n]) {
        const why = n === 'ringbufFull' ? ' (the ring buffer filled up: the event paths were measured on the ring-full branch)' : '';
        throw new BenchError(`counter ${n} is ${actual[n]}, expected ${this.#expected[n]}${why}`);
      }
    }
    return actual;
  }
}

function table(results: readonly Result[]): string {
  const header = ['path', 'frame', 'verdict', 'ns/packet', 'min-max', 'x floor'];
  const rows = results.map((r) => [
    r.path.name,
    r.path.frame,
    verdictName(r.path.verdict),
    r.median.toFixed(1),
    `${Math.min(...r.samples).toFixed(1)}-${Math.max(...r.samples).toFixed(1)}`,
    r.ratio.toFixed(1),
  ]);
  return textTable(header, rows, [false, false, false, true, true, true]);
}

function targetLines(results: readonly Result[]): string[] {
  return TARGETS.map(({ path, maxRatio }) => {
    const r = results.find((x) => x.path.name === path);
    if (!r) return `${path} <= ${maxRatio}x floor: not measured`;
    return `${path} <= ${maxRatio}x floor: ${r.ratio <= maxRatio ? 'met' : 'MISSED'} (${r.ratio.toFixed(1)}x)`;
  });
}

function methodText(): string {
  const calls = PACKETS_PER_MEASUREMENT / PACKETS_PER_CALL;
  return (
    `BPF_PROG_TEST_RUN on one frame per path, timed by the kernel. Each measurement is ` +
    `${PACKETS_PER_MEASUREMENT.toLocaleString('en-US')} packets in ${calls} calls of ` +
    `${PACKETS_PER_CALL.toLocaleString('en-US')} (the ring buffer is drained between calls, so no event is lost); ` +
    `${ROUNDS} rounds interleave every program round-robin; the figure is the median round, ` +
    `min-max the spread of rounds. The kernel reports each call's mean in whole ns, truncated, ` +
    `so figures may read up to 1 ns low, and ratios to a floor of a few ns carry that uncertainty.`
  );
}

function section(results: readonly Result[], m: Machine, date: string, eventsRead: number): string {
  return [
    SECTION_HEADING,
    '',
    'Cost per packet of each path through the XDP program, next to an empty `return XDP_PASS` ' +
      'program (the floor: what the test-run loop and the XDP hook charge any program) measured in the same run.',
    '',
    '- Command: `make bench-datapath` (as root, after `make build`)',
    `- Date: ${date}`,
    `- Machine: ${machineText(m)}`,
    `- Method: ${methodText()}`,
    '',
    '```text',
    table(results),
    '```',
    '',
    `Targets: ${targetLines(results).join('; ')}.`,
    '',
    `Ring buffer: ${eventsRead.toLocaleString('en-US')} events read, none lost (counter ringbufFull stayed 0).`,
    '',
    '_This section is rewritten by `make bench-datapath`._',
    '',
  ].join('\n');
}

function paths(floor: Program, dp: Datapath): Path[] {
  const ack = ipFrame({ src: CLIENT, dst: VICTIM, tcp: { sport: 40000, dport: SSH, flags: TCP_FLAGS.ACK } });
  return [
    { name: FLOOR_PROGRAM, frame: 'ACK (empty program: the floor)', program: floor, data: ack, verdict: XDP_PASS },
    { name: 'pass', frame: 'ACK, unblocked source', program: dp.program, data: ack, verdict: XDP_PASS, counts: { frames: 1n } },
    {
      name: 'new-connection',
      frame: 'SYN, unblocked source -> event',
      program: dp.program,
      data: synFrame(CLIENT, VICTIM, 40001, SSH),
      verdict: XDP_PASS,
      eventSource: CLIENT,
      counts: { frames: 1n, syn: 1n, events: 1n },
    },
    {
      name: 'drop',
      frame: 'SYN, blocked source',
      program: dp.program,
      data: synFrame(SCANNER, VICTIM, 40002, SSH),
      verdict: XDP_DROP,
      counts: { frames: 1n, syn: 1n, synDropped: 1n },
    },
    {
      name: 'allowlisted',
      frame: 'SYN, blocked + allowlisted -> event',
      program: dp.program,
      data: synFrame(PARTNER, VICTIM, 40003, SSH),
      verdict: XDP_PASS,
      eventSource: PARTNER,
      counts: { frames: 1n, syn: 1n, allowlisted: 1n, events: 1n },
    },
  ];
}

function main(): void {
  checkPreconditions();
  const m = machine();
  const tmp = mkdtempSync(join(os.tmpdir(), 'packetwatch-bench-'));
  let floorObject: Collection | undefined;
  let dp: Datapath | undefined;
  let reader: RingBufferReader | undefined;
  try {
    floorObject = ObjectSpec.open(compileFloor(tmp)).load();
    dp = Datapath.load({ ringBufferBytes: RING_BUFFER_BYTES });
    // Blocks without expiry: the drop path then reads no clock, as for manual blocks.
    dp.block(SCANNER);
    dp.block(PARTNER);
    dp.allow(PARTNER);
    reader = dp.reader();
    const bench = new Bench(dp, reader);
    const all = paths(floorObject.program(FLOOR_PROGRAM), dp);

    for (const p of all) bench.verify(p);
    // The first calls after load pay for cold caches and first touches of the ring's pages.
    for (const p of all) bench.warmUp(p);

    const samples = new Map<Path, number[]>(all.map((p) => [p, []]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotating the order keeps any one program from always following the same neighbour.
      for (let i = 0; i < all.length; i++) {
        const p = all[(round + i) % all.length];
        if (p) samples.get(p)?.push(bench.measure(p));
      }
    }
    const counters = bench.checkBooks();

    const medians = all.map((p) => ({ path: p, samples: samples.get(p) ?? [], median: median(samples.get(p) ?? []) }));
    const floorMedian = medians.find((r) => r.path.name === FLOOR_PROGRAM)?.median ?? NaN;
    const results: Result[] = medians.map((r) => ({ ...r, ratio: r.median / floorMedian }));

    const date = today();
    console.log(`Datapath cost, ${date}: ${machineText(m)}`);
    console.log('');
    console.log(table(results));
    console.log('');
    for (const t of targetLines(results)) console.log(`target: ${t}`);
    console.log(`ring buffer: ${bench.eventsRead.toLocaleString('en-US')} events read, ringbufFull ${counters.ringbufFull}`);
    console.log(`method: ${methodText()}`);

    const json = results.map((r) => ({
      name: r.path.name,
      value: round2(r.median),
      unit: 'ns/packet',
      baseline: FLOOR_PROGRAM,
      ratio: round2(r.ratio),
    }));
    const resultsFile = writeResults('datapath', json);
    updateBenchmarks(SECTION_HEADING, section(results, m, date, bench.eventsRead));
    console.log(`wrote ${rel(resultsFile)} and the "${SECTION_HEADING.slice(3)}" section of ${rel(BENCHMARKS_FILE)}`);
  } finally {
    reader?.close();
    dp?.close();
    floorObject?.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await runBench('datapath', main);
