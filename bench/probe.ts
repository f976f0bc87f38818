// `make bench-probe`: the probe as deployed, a real process in a victim
// namespace (@packetwatch/test-support/services). 1. The Probe API round trip
// over its Unix socket, timed by the client. 2. How many SYN events per second
// the probe carries from the ring buffer through its Report stream, without
// losing one, to a receiver in this process that only counts; bpftool drives
// the attached program.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpcTypes from '@grpc/grpc-js';
import type { EventBatch, GetStatusResponse, ProbeClient } from '@packetwatch/proto';
import type { PolicyStub } from '@packetwatch/test-support/policy-stub';
import { type NamespacePair, SLICE_MS, TEST_BPFFS, XDP_PASS, drive, runOnce, sleep, waitFor } from '@packetwatch/test-support';
import type { ServiceProcess } from '@packetwatch/test-support/services';
import * as harness from './harness.js';
import { BenchError, type Machine, type ResultEntry, SMOKE, count, entry, percentile, rateLabel, round2, runBench } from './report.js';

const SECTION_HEADING = '## Probe';
const SLOT = 236;
/** The probe's /metrics, on the victim namespace's loopback. */
const METRICS_PORT = 9090;

// Part 1. Every call is awaited before the next: one caller, no queueing, so
// the figure is a round trip and not a throughput.
const LATENCY_CALLS = SMOKE ? 100 : 1000;
const LATENCY_ROUND = 100;
const WARMUP_CALLS = SMOKE ? 20 : 200;
/** RFC 2544 benchmarking range: never a real peer. */
const blockTarget = (i: number) => `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`;
const warmupTarget = (i: number) => `198.19.${(i + 1) >> 8}.${(i + 1) & 255}`;

// Part 2.
const RATES = SMOKE ? [100_000] : [100_000, 250_000, 500_000, 1_000_000, 2_000_000];
const RUN_SECONDS = SMOKE ? 2 : 10;
/** Geometric bisections between the highest passing and the lowest failing rate, 10 s each. */
const REFINE_STEPS = SMOKE ? 0 : 2;
const DRAIN_TIMEOUT_MS = 10_000;

const SPORT = 40_000;
const DPORT = 8080;
const SERVING = Buffer.from([0x08, 0x01]);

type Libs = harness.StackLibs;

/** A kind of call and its round trips in microseconds, ascending. */
type LatencyRow = { name: string; sorted: number[] };

/** The books, with the Report stream's messages. */
type Counts = harness.FlowCounts & { messages: number };

type RateResult = harness.FlowRun<'probe', Counts> & {
  eventsPerMessage: number;
  /** The probe's garbage collection pauses, as a share of one CPU (perf_hooks 'gc' entries, via its metrics). */
  gc: number;
  /** Longest event-loop stall of the probe during the run (its nodejs_eventloop_lag_max_seconds). */
  maxStallMs: number;
};

/** The policy end of the Report stream, reduced to counting (no record is decoded, the last batch's are kept). */
class Receiver {
  last: Uint8Array = new Uint8Array();
  readonly stub: PolicyStub;
  /** Running totals; gaps: sequence numbers skipped, events the probe queued that never arrived. */
  readonly counts = { received: 0, policyLost: 0, messages: 0, gaps: 0 };
  #nextSequence: number | undefined;

  constructor(socketPath: string, libs: Libs) {
    this.stub = new libs.policyStub.PolicyStub(socketPath, (b) => this.#onBatch(b), 'bench-probe');
  }

  #onBatch(b: EventBatch): void {
    const [c, first] = [this.counts, Number(b.firstSequence)];
    c.messages++;
    c.received += b.count;
    c.policyLost += Number(b.lostEvents);
    if (b.count > 0) {
      if (this.#nextSequence !== undefined && first > this.#nextSequence) c.gaps += first - this.#nextSequence;
      this.#nextSequence = first + b.count;
      this.last = b.records;
    }
  }
}

/** The Probe API, promisified, every call with a deadline so that a stuck probe fails the bench instead of hanging it. */
class Api {
  constructor(
    readonly client: ProbeClient,
    readonly libs: Libs,
    readonly probe: ServiceProcess,
  ) {}

  #call<T>(fn: (md: grpcTypes.Metadata, opts: Partial<grpcTypes.CallOptions>, cb: (err: grpcTypes.ServiceError | null, res?: T) => void) => void): Promise<T> {
    return this.libs.services.call<T>((cb) => fn(new this.libs.grpc.Metadata(), { deadline: Date.now() + 5000 }, cb)).catch((err: grpcTypes.ServiceError) => {
      const { exitCode, stdout, stderr } = this.probe;
      if (exitCode === undefined) throw new BenchError(`a Probe API call failed: ${this.libs.grpc.status[err.code]} ${err.details}`);
      throw new BenchError(`the probe died (exit ${exitCode}); its last output:\n${[...stdout, ...stderr].slice(-10).join('\n')}`);
    });
  }

  /**
   * grpc.health.v1.Health/Check for the whole server, over the same channel:
   * a round trip whose handler does nothing, the floor under the Probe calls.
   * The request (service "") encodes to no bytes; SERVING is field 1 = 1.
   */
  async health(): Promise<void> {
    const res = await this.#call<Buffer>((md, o, cb) =>
      this.client.makeUnaryRequest('/grpc.health.v1.Health/Check', () => Buffer.alloc(0), (b: Buffer) => b, {}, md, o, cb),
    );
    if (!res.equals(SERVING)) throw new BenchError(`Health/Check answered ${res.toString('hex')}, not SERVING`);
  }

  status(): Promise<GetStatusResponse> {
    return this.#call((md, o, cb) => this.client.getStatus({}, md, o, cb));
  }

  block(ip: string): Promise<unknown> {
    const reason = this.libs.proto.BlockReason.BLOCK_REASON_MANUAL;
    return this.#call((md, o, cb) => this.client.blockIp({ ip, ttl: { seconds: 0n, nanos: 0 }, reason }, md, o, cb));
  }

  unblock(ip: string): Promise<{ removed: boolean }> {
    return this.#call((md, o, cb) => this.client.unblockIp({ ip }, md, o, cb));
  }

  /** Blocks in the kernel (every page of ListBlocks). */
  async blockCount(): Promise<number> {
    return (await this.libs.services.listAllBlocks(this.client)).length;
  }

  /** The books now: the probe's counters and the receiver's. */
  async counts(receiver: Receiver): Promise<Counts> {
    return { ...harness.probeCounts(await this.status()), ...receiver.counts };
  }
}

/**
 * The probe's own view of its pauses, from its /metrics (prom-client's default Node.js metrics). loopLagMaxSeconds
 * is since the previous scrape: prom-client resets the event-loop histogram when it is collected.
 */
async function scrapeMetrics(net: NamespacePair): Promise<{ gcSeconds: number; loopLagMaxSeconds: number }> {
  const url = `http://127.0.0.1:${METRICS_PORT}/metrics`;
  const res = await net.inVictim('curl', ['-sSf', '--max-time', '5', url]);
  if (res.code !== 0) throw new BenchError(`the probe's ${url} did not answer: ${res.stderr.trim()}`);
  // The GC histogram has a sum per kind of collection ({kind="minor"} ...): they add up.
  const gcSeconds = [...res.stdout.matchAll(/^nodejs_gc_duration_seconds_sum\S* (\S+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  return { gcSeconds, loopLagMaxSeconds: Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(res.stdout)?.[1] ?? NaN) };
}

/** Client-side round trip of each call, in µs, appended to `into`. */
async function timeCalls(into: number[], n: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    into.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}

async function measureLatency(api: Api): Promise<LatencyRow[]> {
  // GetStatus first: the ratio column and the comparison in probe.json are against it.
  let removed = 0;
  const kinds = (target: (i: number) => string): [string, (i: number) => Promise<unknown>][] => [
    ['GetStatus (no blocks)', () => api.status()],
    ['Health/Check (empty round trip)', () => api.health()],
    ['BlockIp (distinct addresses)', (i) => api.block(target(i))],
    ['UnblockIp', async (i) => (removed += Number((await api.unblock(target(i))).removed))],
  ];
  // Both ends' JIT, the socket and the map's first buckets warm up here, off the books.
  for (const [, call] of kinds(warmupTarget)) await timeCalls([], WARMUP_CALLS, call);
  if ((await api.blockCount()) !== 0) throw new BenchError('blocks were left after the warm-up');

  // Rounds of each kind in turn, so that a burst of load from elsewhere lands
  // on every kind rather than on one. Each round unblocks what it blocked:
  // GetStatus counts the blocks (it walks the blocklist), so it is timed on an
  // empty one here and with the blocks in place below.
  removed = 0;
  const rows = kinds(blockTarget).map(([name]): LatencyRow => ({ name, sorted: [] }));
  for (let first = 0; first < LATENCY_CALLS; first += LATENCY_ROUND) {
    const round = kinds((i) => blockTarget(first + i));
    for (const [k, row] of rows.entries()) await timeCalls(row.sorted, Math.min(LATENCY_ROUND, LATENCY_CALLS - first), round[k]![1]);
  }
  if (removed !== LATENCY_CALLS) throw new BenchError(`UnblockIp removed ${removed} of ${LATENCY_CALLS} blocks`);

  for (let i = 0; i < LATENCY_CALLS; i++) await api.block(blockTarget(i));
  const held = await api.blockCount();
  if (held !== LATENCY_CALLS) throw new BenchError(`ListBlocks shows ${held} blocks after ${LATENCY_CALLS} BlockIp calls`);
  const full: LatencyRow = { name: `GetStatus (${count(LATENCY_CALLS)} blocks)`, sorted: [] };
  rows.push(full);
  await timeCalls(full.sorted, LATENCY_CALLS, () => api.status());
  for (let i = 0; i < LATENCY_CALLS; i++) await api.unblock(blockTarget(i));
  if ((await api.blockCount()) !== 0) throw new BenchError('blocks were left after the latency measurement');
  for (const r of rows) r.sorted.sort((x, y) => x - y);
  return rows;
}

/**
 * One frame, driven through the attached program, must arrive at the receiver as one event from the frame's source,
 * moving the program's syn and events counters by one and no loss counter (the event's fields are the probe suites' to check).
 */
async function checkSetup(libs: Libs, api: Api, receiver: Receiver, net: NamespacePair, programId: number, frameFile: string): Promise<void> {
  const hello = await waitFor('the probe to connect to the receiver', () => receiver.stub.hellos[0], 10_000);
  if (hello.programId !== programId) throw new BenchError(`the probe announced program ${hello.programId}, GetStatus says ${programId}`);
  await waitFor('policyConnected', async () => ((await api.status()).policyConnected ? true : undefined), 10_000);

  const before = await api.counts(receiver);
  const verdict = runOnce(programId, frameFile);
  if (verdict !== XDP_PASS) throw new BenchError(`the program returned ${verdict} for the SYN frame, expected XDP_PASS (${XDP_PASS})`);
  await waitFor('the test event at the receiver', () => (receiver.counts.received > before.received ? true : undefined), 5000);
  await sleep(200); // a second, unexpected event would arrive by now
  const after = await api.counts(receiver);
  const records = Buffer.from(receiver.last);
  const from = records.length === libs.bpf.SYN_EVENT_SIZE ? libs.bpf.formatAddress(libs.bpf.synEventCodec.read(records, 0).saddr) : 'none';
  const moved = (['received', 'syn', 'events', 'ringbufFull', 'probeLost'] as const).map((k) => `${k} ${after[k] - before[k]}`).join(', ');
  if (from !== net.attackerAddr || moved !== 'received 1, syn 1, events 1, ringbufFull 0, probeLost 0') {
    throw new BenchError(`one SYN from ${net.attackerAddr} gave: an event from ${from}; ${moved}`);
  }
}

/** A run at `rate`, printed. */
async function measureRate(
  rate: number, api: Api, receiver: Receiver, programId: number, frameFile: string, net: NamespacePair, onDriver: (c?: ChildProcess) => void,
): Promise<RateResult> {
  const m0 = await scrapeMetrics(net);
  let issued = 0;
  const alive = () => api.probe.exitCode === undefined;
  const r = await harness.measureFlow(rate, () => api.counts(receiver), { probe: api.probe.pid }, alive, DRAIN_TIMEOUT_MS, async () => {
    const d = await drive(programId, frameFile, rate, RUN_SECONDS * 1000, onDriver);
    issued = d.issued;
    return d.seconds;
  });
  const m1 = await scrapeMetrics(net);
  if (r.syn !== issued) {
    throw new BenchError(`the program saw ${count(r.syn)} SYNs while the driver issued ${count(issued)}: something else runs it, or runs were lost`);
  }
  const eventsPerMessage = r.messages > 0 ? r.received / r.messages : 0;
  const run = { ...r, eventsPerMessage, gc: (m1.gcSeconds - m0.gcSeconds) / r.wall, maxStallMs: m1.loopLagMaxSeconds * 1000 };
  harness.printRun(rateLabel(rate).padStart(6), run, `, GC ${harness.pct(run.gc)}, max stall ${run.maxStallMs.toFixed(0)} ms`);
  return run;
}

function latencyTable(rows: readonly LatencyRow[]): string {
  const p50 = (r: LatencyRow) => percentile(r.sorted, 50);
  return harness.columnTable(rows, [
    ['call', false, (r) => r.name],
    ['calls', true, (r) => count(r.sorted.length)],
    ['p50 µs', true, (r) => p50(r).toFixed(0)],
    ['p99 µs', true, (r) => percentile(r.sorted, 99).toFixed(0)],
    ['max µs', true, (r) => (r.sorted.at(-1) ?? NaN).toFixed(0)],
    ['x GetStatus p50', true, (r) => (p50(r) / (rows[0] ? p50(rows[0]) : NaN)).toFixed(2)],
  ]);
}

const RATE_COLUMNS: harness.Column<RateResult>[] = [['events/msg', true, (r) => r.eventsPerMessage.toFixed(0)]];

const CPU_COLUMNS: harness.Column<RateResult>[] = [
  ['target/s', false, (r) => rateLabel(r.rate)],
  ['probe', true, (r) => harness.pct(r.cpu.probe)],
  ['probe CPU s/M events', true, (r) => r.perM.probe.toFixed(2)],
  ['probe GC', true, (r) => harness.pct(r.gc)],
  ['probe max stall ms', true, (r) => r.maxStallMs.toFixed(0)],
  ['driver (bpftool + XDP)', true, (r) => harness.pct(r.cpu.children)],
  ['receiver + pacing', true, (r) => harness.pct(r.cpu.bench)],
];

const METHOD_LATENCY =
  `${count(LATENCY_CALLS)} sequential calls of each kind from one @grpc/grpc-js client over the probe's Unix socket, ` +
  `each timed around the call after ${WARMUP_CALLS} warm-up calls; the kinds take turns in rounds of ${LATENCY_ROUND}. ` +
  `BlockIp blocks distinct addresses and each round unblocks its own; GetStatus, which walks the blocklist, is timed ` +
  `again with ${count(LATENCY_CALLS)} blocks in place. Health/Check is a round trip whose handler does nothing. Percentiles are nearest-rank.`;

const METHOD_RATE =
  `The probe with its defaults in a victim namespace reports to a receiver in this process that counts records, lost_events and ` +
  `sequence gaps (a gap is a loss). \`bpftool batch file -\` runs the attached program on a 74-byte IPv4 SYN every ${SLICE_MS} ms for ` +
  `the events owed so far, at ${RATES.map(rateLabel).join(', ')} for ${RUN_SECONDS} s each, then up to ${REFINE_STEPS} geometric ` +
  `bisections, after one SYN is checked end to end. ${harness.flowTerms(DRAIN_TIMEOUT_MS)} GC and max stall from the probe's /metrics.`;

function results(latency: readonly LatencyRow[], rates: readonly RateResult[]): ResultEntry[] {
  const status = latency[0];
  const out: ResultEntry[] = [];
  for (const row of latency) {
    for (const [label, p] of [['p50', 50], ['p99', 99], ['max', 100]] as const) {
      const vs = status && row !== status ? ([`${status.name} ${label}`, percentile(status.sorted, p)] as const) : null;
      out.push(entry(`${row.name} ${label}`, round2(percentile(row.sorted, p)), 'us', vs, null, { calls: row.sorted.length }));
    }
  }
  for (const r of rates) {
    out.push(
      entry(`events at ${rateLabel(r.rate)}/s offered`, Math.round(r.delivered), 'events/s delivered', ['offered', Math.round(r.offered)], null, {
        ...harness.flowFields(r),
        sequenceGaps: r.gaps,
        eventsPerMessage: round2(r.eventsPerMessage),
        probeGcCpu: round2(r.gc),
        probeMaxStallMs: round2(r.maxStallMs),
        receiverCpu: round2(r.cpu.bench),
      }),
    );
  }
  const b = harness.bestRun(rates);
  const tried = Math.max(...rates.map((r) => r.rate));
  out.push(entry('highest zero-loss event rate', b ? Math.round(b.offered) : 0, 'events/s', ['highest rate tried', tried], null, { seconds: RUN_SECONDS }));
  return out;
}

function report(m: Machine, load: number, latency: readonly LatencyRow[], rates: readonly RateResult[]): harness.RateReport<RateResult> {
  return {
    name: 'probe',
    heading: SECTION_HEADING,
    intro:
      'The probe as a process: what one Probe API call costs a caller, and how many SYN events per second it ' +
      'carries from the ring buffer to a policy stream without losing any.',
    m,
    load,
    methods: [`Method (API): ${METHOD_LATENCY}`, `Method (events): ${METHOD_RATE}`],
    tables: [
      ['### Probe API round trip', latencyTable(latency)],
      ['### Event throughput, ring buffer to policy stream', harness.columnTable(rates, harness.flowColumns(RATE_COLUMNS))],
    ],
    cpu: CPU_COLUMNS,
    result: harness.carriedText(rates, RUN_SECONDS, ''),
    runs: rates,
  };
}

async function main(): Promise<void> {
  const { m, load, cleanup } = harness.startStackBench('probe');
  const libs = await harness.loadStack();
  await cleanup.around(async () => {
    const net = libs.stack.namespaces(SLOT, cleanup);
    libs.libbpf.mountBpffs(TEST_BPFFS); // for the pins of a service under `ip netns exec`
    // Its /metrics on, as deployed: the bench reads the probe's GC time and event-loop stalls from it.
    const env = { PW_LOG_LEVEL: 'info', PW_PROMETHEUS_PORT: String(METRICS_PORT), PW_METRICS_HOST: '127.0.0.1' };
    const svc = new libs.services.Services({ netns: net.victimNs, ifdev: net.victimIf, env });
    cleanup.add('kill the probe, detach, remove the pins', () => svc.destroySync());
    const receiver = new Receiver(svc.reportSocket, libs);
    cleanup.add('stop the receiver', () => receiver.stub.stop());
    await receiver.stub.start();
    const { programId } = await svc.startProbe();
    let driver: ChildProcess | undefined;
    cleanup.add('stop the driver', () => driver?.kill('SIGKILL'));
    // The API as the policy calls it: its control socket (BlockIp is the policy's role).
    const api = new Api(svc.controlClient, libs, svc.probe!);
    const frameFile = join(cleanup.tempDir(), 'syn.bin');
    writeFileSync(frameFile, libs.bpf.synFrame(net.attackerAddr, net.victimAddr, SPORT, DPORT));
    await checkSetup(libs, api, receiver, net, programId, frameFile);
    console.log(`setup: probe pid ${api.probe.pid} in ${net.victimNs}, program ${programId}; one SYN went end to end as one event`);

    const latency = await measureLatency(api);

    const rates = await harness.rateSearch(RATES, REFINE_STEPS, (rate) => measureRate(rate, api, receiver, programId, frameFile, net, (c) => (driver = c)));

    const smokeSize = `${LATENCY_CALLS} calls, ${RUN_SECONDS} s at ${rateLabel(RATES[0]!)}/s`;
    harness.publishReport(report(m, load, latency, rates), () => results(latency, rates), smokeSize);
    // A smoke run checks that the events all arrived, not how fast: under `make test` it shares the CPUs with the suites.
    if (SMOKE && !rates.every((r) => r.zeroLoss)) throw new BenchError(`smoke run: events were lost (${rates.map(harness.resultText).join(', ')})`);
  });
}

await runBench('probe', main);
