// `make bench-detection`: detection-to-block latency, from the kernel time of
// the SYN that crosses the threshold to the block in the kernel map, with the
// in-kernel detector and with the policy alone, at idle and under a background
// load of SYN events, probe + policy as deployed (@packetwatch/test-support/stack).
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
// Types only (erased): the modules themselves are imported once the build is checked.
import type { BlockEntry } from '@packetwatch/bpf';
import type { Program, TypedMap } from 'libbpf-ts';
import { Cleanup, type CpuShares, type NamespacePair, SLICE_MS, XDP_PASS, cpuShares, cpuSnapshot, drive, runOnce, sleep, waitFor } from '@packetwatch/test-support';
import type { DetectionMode, Setup, Stack } from '@packetwatch/test-support/stack';
import { loadBuilt, startStackBench } from './harness.js';
import {
  BenchError,
  type Machine,
  type ResultEntry,
  count,
  machineText,
  percentile,
  round2,
  runBench,
  table,
  today,
  SMOKE,
  publish,
  sectionFacts,
} from './report.js';

const SECTION_HEADING = '## Detection to block';

const DETECTIONS = SMOKE ? 20 : 1000;
/** Detections before each measurement, off the books: both services' JIT, the store, the channel. */
const WARMUP = SMOKE ? 5 : 100;
/** Detections are started on a schedule (open loop), not one after the other's block. */
const DETECTION_RATE = 100;
const LOAD_RATE = 500_000;
// Detections start once the policy has caught up with the load (the steady state).
const LOAD_SETTLE_MS = SMOKE ? 500 : 6000;
/** Longest the load may run (it is stopped once every block is in). */
const LOAD_MAX_MS = 180_000;
/** After the last detection, how long the blocks of the others may take to appear before they count as missed. */
const BLOCK_WAIT_MS = 30_000;
/** p99 targets in ms: the in-kernel detector's, at every N, and the policy's alone. */
const TARGET_MS: Record<DetectionMode, Record<Background, number>> = {
  'in-kernel': { idle: 1, load: 2 },
  'policy alone': { idle: 2, load: 10 },
};

// Benchmarking addresses (RFC 2544): each phase of each setup has a block of 2,048 sources, none used twice.
const SOURCES_PER_BLOCK = 2048;
const source = (block: number, i: number) => {
  const a = block * SOURCES_PER_BLOCK + i;
  return `198.${18 + (a >> 16)}.${(a >> 8) & 255}.${a & 255}`;
};
/** The ports of a scan at N: 8001 up. */
const scanPorts = (n: number) => Array.from({ length: n }, (_, i) => 8001 + i);
/** The background load: one source, one port, never a scanner (documentation range, RFC 5737). */
const BACKGROUND_SOURCE = '192.0.2.10';
const BACKGROUND_PORT = 8080;
const SLOT = 240;

interface Libs {
  bpf: typeof import('@packetwatch/bpf');
  libbpf: typeof import('libbpf-ts');
  stack: typeof import('@packetwatch/test-support/stack');
}
type Blocklist = TypedMap<Buffer, BlockEntry>;

type Background = 'idle' | 'load';

interface Sample {
  source: string;
  key: Buffer;
  /** CLOCK_BOOTTIME just before and just after the crossing SYN's run. */
  t0: bigint;
  t1: bigint;
  /** How far the program's coarse clock may trail t0 (two ticks: clock.coarseLagNs). */
  lagNs: bigint;
}

interface LoadStats {
  /** Events the policy had not yet received, in ms of the load, at the first detection and after the last block. */
  backlogStartMs: number;
  backlogEndMs: number;
  seconds: number;
  /** SYNs the program counted per second over the measured window (the load and the detections). */
  offered: number;
  /** Events the policy received per second over the window. */
  policyReceived: number;
  probeLost: number;
  ringbufFull: number;
}

/** CPUs used on average over a measured window (1 = one CPU busy); driver: bpftool, which also pays for the XDP program on the load (test runs execute in its context). */
type Cpu = CpuShares<'probe' | 'policy' | 'driver'>;

function cpuSample(stack: Stack, driverPid: number | undefined) {
  return cpuSnapshot({ probe: stack.svc.probe?.pid, policy: stack.svc.policy?.pid, driver: driverPid });
}

interface Row {
  mode: DetectionMode;
  /** N of both detectors. */
  n: number;
  background: Background;
  detections: number;
  /** created_ns - CLOCK_BOOTTIME before the crossing SYN, ms, ascending; Infinity for a block that never came. */
  sortedMs: number[];
  missed: number;
  /** Width of the clock reads around the crossing SYN's run, µs, ascending: the uncertainty of each figure. */
  bracketUs: number[];
  /** The policy's own detectionToBlockMs for these sources, ascending. */
  policyLoggedMs: number[];
  /** Blocks the program wrote itself (flag kernelDetected). */
  kernelWritten: number;
  /** Blocks whose created_ns falls within the crossing SYN's run. */
  inRun: number;
  target: number;
  load: LoadStats | undefined;
  cpu: Cpu;
}

async function loadLibs(): Promise<Libs> {
  const [bpf, libbpf, stack] = await loadBuilt(() =>
    Promise.all([import('@packetwatch/bpf'), import('libbpf-ts'), import('@packetwatch/test-support/stack')]),
  );
  return { bpf, libbpf, stack };
}

class Detections {
  constructor(
    private readonly libs: Libs,
    private readonly stack: Stack,
    private readonly prog: Program,
    private readonly blocklist: Blocklist,
    /** N: each detection is a scan of N ports. */
    private readonly n: number,
  ) {}

  /** Runs `count` detections from the sources of `block` on a schedule of DETECTION_RATE a second. */
  async run(block: number, count: number): Promise<Sample[]> {
    const { bpf, libbpf } = this.libs;
    if (count > SOURCES_PER_BLOCK) throw new BenchError(`${count} detections do not fit a block of ${SOURCES_PER_BLOCK} sources`);
    const victim = this.stack.net.victimAddr;
    const planned = Array.from({ length: count }, (_, i) => {
      const src = source(block, i);
      return { src, key: bpf.parseAddress(src), frames: scanPorts(this.n).map((port) => bpf.synFrame(src, victim, 40_000 + (i % 20_000), port)) };
    });
    const samples: Sample[] = [];
    const start = performance.now();
    for (const [i, p] of planned.entries()) {
      const wait = start + (i * 1000) / DETECTION_RATE - performance.now();
      if (wait > 0) await sleep(wait);
      const crossing = p.frames.at(-1)!;
      for (const frame of p.frames.slice(0, -1)) this.#pass(p.src, this.prog.testRun({ data: frame }).retval);
      if (this.blocklist.get(p.key)) throw new BenchError(`${p.src} was blocked before its ${this.n}th port: the detectors are not at N = ${this.n}`);
      const t0 = libbpf.clock.boottimeNs();
      const r = this.prog.testRun({ data: crossing });
      const t1 = libbpf.clock.boottimeNs();
      this.#pass(p.src, r.retval);
      samples.push({ source: p.src, key: p.key, t0, t1, lagNs: libbpf.clock.coarseLagNs() });
    }
    return samples;
  }

  #pass(src: string, verdict: number): void {
    // The crossing SYN passes too: the source is blocked from the next one on.
    if (verdict !== XDP_PASS) throw new BenchError(`the program returned ${verdict} for a SYN of ${src}, expected XDP_PASS (${XDP_PASS})`);
  }

  /** Waits for every sample's block (or BLOCK_WAIT_MS), then reads them: missing ones are undefined. */
  async blocks(samples: readonly Sample[]): Promise<(BlockEntry | undefined)[]> {
    const found: (BlockEntry | undefined)[] = samples.map(() => undefined);
    let pending = samples.map((_, i) => i);
    const deadline = Date.now() + BLOCK_WAIT_MS;
    while (pending.length > 0 && Date.now() < deadline) {
      if (!this.stack.running) throw new BenchError(`a service died while detections were pending:\n${this.stack.tail()}`);
      pending = pending.filter((i) => {
        const s = samples[i];
        const e = s ? this.blocklist.get(s.key) : undefined;
        if (e) found[i] = e;
        return !e;
      });
      if (pending.length > 0) await sleep(5);
    }
    return found;
  }

  /** The policy's detectionToBlockMs for these sources ("block in force" log lines), once it has logged them all or after 5 s. */
  async policyLogged(samples: readonly Sample[]): Promise<number[]> {
    const wanted = new Set(samples.map((s) => s.source));
    const read = () => {
      const out: number[] = [];
      for (const rec of this.stack.policyLog('block in force')) {
        if (typeof rec.ip === 'string' && wanted.has(rec.ip) && typeof rec.detectionToBlockMs === 'number') out.push(rec.detectionToBlockMs);
      }
      return out;
    };
    try {
      await waitFor('the policy to log every block', () => (read().length >= wanted.size ? true : undefined), 5000);
    } catch {
      // reported as fewer logged than detections
    }
    return read().sort((a, b) => a - b);
  }
}

function summarize(
  { mode, n }: Setup,
  background: Background,
  samples: readonly Sample[],
  entries: readonly (BlockEntry | undefined)[],
  policyLoggedMs: number[],
  kernelFlag: number,
  load: LoadStats | undefined,
  cpu: Cpu,
): Row {
  const ms: number[] = [];
  let kernelWritten = 0;
  let inRun = 0;
  samples.forEach((s, i) => {
    const e = entries[i];
    if (!e) {
      ms.push(Infinity);
      return;
    }
    // An in-kernel block is written during the crossing SYN's own run: its latency is at most that run's bracket.
    ms.push(Number((mode === 'in-kernel' ? s.t1 : e.createdNs) - s.t0) / 1e6);
    if (e.flags & kernelFlag) kernelWritten++;
    if (duringRun(e, s)) inRun++;
  });
  return {
    mode,
    n,
    background,
    detections: samples.length,
    sortedMs: ms.sort((a, b) => a - b),
    missed: entries.filter((e) => !e).length,
    bracketUs: samples.map((s) => Number(s.t1 - s.t0) / 1000).sort((a, b) => a - b),
    policyLoggedMs,
    kernelWritten,
    inRun,
    target: TARGET_MS[mode][background],
    load,
    cpu,
  };
}

/** Whether a block's created_ns falls within the crossing SYN's run, allowing the program's coarse clock its lag (two ticks). */
function duringRun(e: BlockEntry, s: Sample): boolean {
  return e.createdNs >= s.t0 - s.lagNs && e.createdNs <= s.t1;
}

/** The warm-up detections double as the check that the mode is what it says. */
function checkMode(mode: DetectionMode, samples: readonly Sample[], entries: readonly (BlockEntry | undefined)[], kernelFlag: number): void {
  const missing = entries.filter((e) => !e).length;
  if (missing > 0) throw new BenchError(`setup check (${mode}): ${missing} of ${samples.length} warm-up detections were never blocked`);
  samples.forEach((s, i) => {
    const e = entries[i];
    if (!e) return;
    const kernel = (e.flags & kernelFlag) !== 0;
    if (mode === 'in-kernel' && (!kernel || !duringRun(e, s))) {
      throw new BenchError(`setup check (in-kernel): the block of ${s.source} was not written by the program during the crossing SYN (flags ${e.flags})`);
    }
    // The policy's block is stamped at BlockIp, after the run began (it may beat the read of t1): only the start bounds it.
    if (mode === 'policy alone' && (kernel || e.createdNs < s.t0)) {
      throw new BenchError(`setup check (policy alone): the block of ${s.source} was written by the program (flags ${e.flags}): in-kernel detection is on`);
    }
  });
}

async function measureSetup(libs: Libs, net: NamespacePair, setup: Setup, dir: string, cleanup: Cleanup, modeIndex: number): Promise<Row[]> {
  const { stack: st, bpf } = libs;
  const { mode } = setup;
  const label = st.setupText(setup);
  const kernelFlag = bpf.BLOCK_FLAGS.kernelDetected;
  const stack = await st.Stack.start(net, mode, cleanup, st.setupEnv(setup));
  const programId = (await stack.probeStatus()).programId;
  const prog = stack.openProgram(programId, cleanup);
  const blocklist = stack.openBlocklist(cleanup);
  const d = new Detections(libs, stack, prog, blocklist, setup.n);

  // Setup check: the background SYN passes, reaches the policy as one event, and blocks nothing.
  const frameFile = join(dir, `background-${modeIndex}.bin`);
  writeFileSync(frameFile, bpf.synFrame(BACKGROUND_SOURCE, net.victimAddr, 40_000, BACKGROUND_PORT));
  const received0 = (await stack.policyStatus()).eventsReceived;
  const verdict = runOnce(programId, frameFile);
  if (verdict !== XDP_PASS) throw new BenchError(`setup check (${label}): the background SYN got verdict ${verdict}, expected XDP_PASS`);
  await waitFor(`the background SYN at the policy (${label})`, async () => ((await stack.policyStatus()).eventsReceived > received0 ? true : undefined), 5000);
  if (blocklist.get(bpf.parseAddress(BACKGROUND_SOURCE))) throw new BenchError(`setup check (${label}): the background source was blocked`);

  const block = (phase: number) => modeIndex * 3 + phase;
  const warm = await d.run(block(0), WARMUP);
  checkMode(mode, warm, await d.blocks(warm), kernelFlag);
  console.log(`${label}: probe + policy up (program ${programId}), ${WARMUP} warm-up detections checked`);

  const rows: Row[] = [];
  const detections0 = (await stack.policyStatus()).detections;

  const c0 = cpuSample(stack, undefined);
  const idle = await d.run(block(1), DETECTIONS);
  const idleBlocks = await d.blocks(idle);
  const idleCpu = cpuShares(c0, cpuSample(stack, undefined));
  rows.push(summarize(setup, 'idle', idle, idleBlocks, await d.policyLogged(idle), kernelFlag, undefined, idleCpu));
  report(rows.at(-1));

  let driver: ChildProcess | undefined;
  cleanup.add('stop the load', () => driver?.kill('SIGKILL'));
  const stop = new AbortController();
  let driverError: unknown;
  const driving = drive(programId, frameFile, LOAD_RATE, LOAD_MAX_MS, (c) => (driver = c), stop.signal).catch((e: unknown) => {
    driverError = e;
    return undefined;
  });
  await sleep(LOAD_SETTLE_MS);
  const backlogStartMs = await backlog(stack);
  const p1 = await stack.probeStatus();
  const q1 = await stack.policyStatus();
  const w1 = performance.now();
  const c1 = cpuSample(stack, driver?.pid);
  const loaded = await d.run(block(2), DETECTIONS);
  const loadedBlocks = await d.blocks(loaded);
  const loadCpu = cpuShares(c1, cpuSample(stack, driver?.pid));
  const backlogEndMs = await backlog(stack);
  const p2 = await stack.probeStatus();
  const q2 = await stack.policyStatus();
  const seconds = (performance.now() - w1) / 1000;
  stop.abort();
  if (!(await driving)) throw driverError instanceof Error ? driverError : new BenchError(String(driverError));
  const load: LoadStats = {
    backlogStartMs,
    backlogEndMs,
    seconds,
    offered: st.counterDelta(p1, p2, 'syn') / seconds,
    policyReceived: Number(q2.eventsReceived - q1.eventsReceived) / seconds,
    probeLost: Number(p2.eventsLost - p1.eventsLost),
    ringbufFull: st.counterDelta(p1, p2, 'ringbufFull'),
  };
  rows.push(summarize(setup, 'load', loaded, loadedBlocks, await d.policyLogged(loaded), kernelFlag, load, loadCpu));
  report(rows.at(-1));

  const q3 = await stack.policyStatus();
  const counted = Number(q3.detections - detections0);
  const expected = rows.reduce((n, r) => n + r.detections - r.missed, 0);
  if (counted < expected) console.log(`${label}: note: the policy counted ${counted} detections, ${expected} blocks were found`);
  if (q3.blockFailures > 0n) console.log(`${label}: note: the policy counted ${q3.blockFailures} failed BlockIp calls`);

  prog.close();
  blocklist.map.close();
  await stack.stop();
  return rows;
}

/** Events the program passed that the policy has not received yet, in ms of the load. */
async function backlog(stack: Stack): Promise<number> {
  // The policy first: the kernel's count read after it can only overstate the backlog.
  const received = (await stack.policyStatus()).eventsReceived;
  const events = (await stack.probeStatus()).counters?.events ?? 0n;
  return (Number(events - received) / LOAD_RATE) * 1000;
}

function rowLabel(r: Row): string {
  return `${r.mode}, N = ${r.n}`;
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return 'never';
  return x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(0);
}

function met(r: Row): boolean {
  return r.missed === 0 && percentile(r.sortedMs, 99) <= r.target;
}

function backgroundText(b: Background): string {
  return b === 'idle' ? 'idle' : `${count(LOAD_RATE / 1000)}k SYN/s`;
}

function report(r: Row | undefined): void {
  if (!r) return;
  console.log(
    `${rowLabel(r)}, ${backgroundText(r.background)}: ${count(r.detections)} detections, p50 ${ms(percentile(r.sortedMs, 50))} ms, ` +
      `p99 ${ms(percentile(r.sortedMs, 99))} ms, max ${ms(r.sortedMs.at(-1) ?? NaN)} ms, missed ${r.missed}` +
      (r.load
        ? `; background ${count(Math.round(r.load.offered))} SYN/s offered, policy received ${count(Math.round(r.load.policyReceived))}/s, ` +
          `backlog ${r.load.backlogStartMs.toFixed(0)} -> ${r.load.backlogEndMs.toFixed(0)} ms, probe lost ${count(r.load.probeLost)}`
        : ''),
  );
}

function latencyTable(rows: readonly Row[]): string {
  return table(
    ['detection', 'background', 'detections', 'p50 ms', 'p99 ms', 'max ms', 'never blocked', 'policy log p50 ms', 'policy log p99 ms', 'target p99', 'result'],
    rows.map((r) => [
      rowLabel(r),
      backgroundText(r.background),
      count(r.detections),
      ms(percentile(r.sortedMs, 50)),
      ms(percentile(r.sortedMs, 99)),
      ms(r.sortedMs.at(-1) ?? NaN),
      count(r.missed),
      r.policyLoggedMs.length ? ms(percentile(r.policyLoggedMs, 50)) : '-',
      r.policyLoggedMs.length ? ms(percentile(r.policyLoggedMs, 99)) : '-',
      `<= ${r.target} ms`,
      met(r) ? 'met' : 'MISSED',
    ]),
    [false, false, true, true, true, true, true, true, true, true, false],
  );
}

function checksTable(rows: readonly Row[]): string {
  return table(
    ['detection', 'background', 'written by the program', 'created during the crossing SYN', 'SYN clock bracket p50 µs', 'p99 µs', 'max µs', 'policy logged'],
    rows.map((r) => [
      rowLabel(r),
      backgroundText(r.background),
      count(r.kernelWritten),
      count(r.inRun),
      percentile(r.bracketUs, 50).toFixed(1),
      percentile(r.bracketUs, 99).toFixed(1),
      (r.bracketUs.at(-1) ?? NaN).toFixed(1),
      count(r.policyLoggedMs.length),
    ]),
    [false, false, true, true, true, true, true, true],
  );
}

function loadTable(rows: readonly Row[]): string {
  const k = (x: number) => count(Math.round(x / 1000) * 1000);
  return table(
    ['detection', 'window s', 'offered SYN/s', 'policy received/s', 'backlog at start ms', 'at end ms', 'probe events lost', 'ringbufFull'],
    rows
      .filter((r) => r.load)
      .map((r) => {
        const l = r.load as LoadStats;
        return [rowLabel(r), l.seconds.toFixed(1), k(l.offered), k(l.policyReceived), l.backlogStartMs.toFixed(0), l.backlogEndMs.toFixed(0), count(l.probeLost), count(l.ringbufFull)];
      }),
    [false, true, true, true, true, true, true, true],
  );
}

function cpuTable(rows: readonly Row[], cpus: number): string {
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  return table(
    ['detection', 'background', 'probe', 'policy', 'driver (bpftool + XDP)', 'detections (this process)', 'other processes', 'idle'],
    rows.map((r) => [
      rowLabel(r),
      backgroundText(r.background),
      pct(r.cpu.probe),
      pct(r.cpu.policy),
      r.background === 'load' ? pct(r.cpu.driver) : '-',
      pct(r.cpu.bench),
      pct(r.cpu.others),
      `${pct(r.cpu.idle)} of ${cpus * 100}%`,
    ]),
    [false, false, true, true, true, true, true, true],
  );
}

function verdictText(rows: readonly Row[]): string {
  return rows
    .map((r) => `${rowLabel(r)} ${r.background === 'idle' ? 'at idle' : 'under load'}: p99 ${ms(percentile(r.sortedMs, 99))} ms vs <= ${r.target} ms, ${met(r) ? 'met' : 'MISSED'}`)
    .join('; ');
}

function nText(setups: readonly Setup[], mode: DetectionMode): string {
  const ns = setups.filter((s) => s.mode === mode).map((s) => s.n);
  return ns.length > 1 ? `${ns.slice(0, -1).join(', ')} and ${ns.at(-1)}` : String(ns[0]);
}

const methodText = (setups: readonly Setup[]) =>
  `Probe and policy as deployed (\`make run\`) in a victim namespace, N ports within 60 s for both detectors (N = ` +
  `${nText(setups, 'in-kernel')} with in-kernel detection on, N = ${nText(setups, 'policy alone')} with it off), no block cap, ` +
  `each setup with services of its own. A detection is a new source (198.18.0.0/15) sending SYNs to N ports: this process runs ` +
  `the attached program on them (BPF_PROG_TEST_RUN), ${DETECTION_RATE} detections a second on a fixed schedule, after ` +
  `${count(WARMUP)} warm-up detections that also check the mode (who wrote the block, when). Policy alone: the block's ` +
  `created_ns (pinned blocklist) minus CLOCK_BOOTTIME read before the crossing SYN's run, an upper bound off by at most the ` +
  `bracket shown. In-kernel: the block is written during that run, so the figure is the run's bracket. "policy log" is the ` +
  `policy's own detectionToBlockMs. A block missing ${BLOCK_WAIT_MS / 1000} s after the last detection counts as never ` +
  `blocked. Load: \`bpftool batch file -\` runs the program on a SYN from ${BACKGROUND_SOURCE} to one port every ` +
  `${SLICE_MS} ms, ${count(LOAD_RATE)} a second; detections start ${LOAD_SETTLE_MS / 1000} s after it. Backlog = events the ` +
  `policy had not received, in ms of the load. Percentiles are nearest-rank.`;

function section(m: Machine, date: string, load: number, rows: readonly Row[], setups: readonly Setup[]): string {
  return [
    SECTION_HEADING,
    '',
    'How long a port scanner keeps its access after the SYN that makes it one: from the kernel time of the SYN that ' +
      'crosses the threshold to the block in the kernel map, with the in-kernel detector and with the policy alone.',
    '',
    ...sectionFacts('detection', date, m, load),
    `- Method: ${methodText(setups)}`,
    '',
    '```text',
    latencyTable(rows),
    '```',
    '',
    'Checks: who wrote the blocks, and how tightly the crossing SYN was timed:',
    '',
    '```text',
    checksTable(rows),
    '```',
    '',
    `Background load (target ${count(LOAD_RATE)} SYN/s) over each measured window:`,
    '',
    '```text',
    loadTable(rows),
    '```',
    '',
    'Where the CPU went over each measured window (100% = one CPU; /proc/<pid>/stat and /proc/stat):',
    '',
    '```text',
    cpuTable(rows, m.cpus),
    '```',
    '',
    `Targets (p99 at idle, under load): in-kernel <= ${TARGET_MS['in-kernel'].idle} ms, <= ${TARGET_MS['in-kernel'].load} ms at every N; ` +
      `policy alone <= ${TARGET_MS['policy alone'].idle} ms, <= ${TARGET_MS['policy alone'].load} ms. ${verdictText(rows)}.`,
    '',
    '_This section is rewritten by `make bench-detection`._',
    '',
  ].join('\n');
}

function results(rows: readonly Row[]): ResultEntry[] {
  const out: ResultEntry[] = [];
  for (const r of rows) {
    for (const [label, p] of [['p50', 50], ['p99', 99], ['max', 100]] as const) {
      const v = percentile(r.sortedMs, p);
      out.push({
        name: `detection to block, ${rowLabel(r)}, ${r.background === 'idle' ? 'idle' : `${LOAD_RATE} SYN/s`} ${label}`,
        value: Number.isFinite(v) ? Math.round(v * 1000) / 1000 : -1,
        unit: 'ms',
        comparison: label === 'p99' ? 'target p99' : null,
        comparisonValue: label === 'p99' ? r.target : null,
        target: label === 'p99' ? `p99 <= ${r.target} ms` : null,
        detections: r.detections,
        neverBlocked: r.missed,
        policyLoggedMs: r.policyLoggedMs.length ? round2(percentile(r.policyLoggedMs, p)) : null,
        bracketUs: round2(percentile(r.bracketUs, p)),
        writtenByProgram: r.kernelWritten,
        offeredSynPerSecond: r.load ? Math.round(r.load.offered) : null,
        backlogStartMs: r.load ? Math.round(r.load.backlogStartMs) : null,
        policyReceivedPerSecond: r.load ? Math.round(r.load.policyReceived) : null,
        probeEventsLost: r.load ? r.load.probeLost : null,
        probeCpu: round2(r.cpu.probe),
        policyCpu: round2(r.cpu.policy),
        otherCpu: round2(r.cpu.others),
        idleCpu: round2(r.cpu.idle),
        met: label === 'p99' ? met(r) : null,
      });
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench('detection');
  const libs = await loadLibs();
  const rows = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const net = libs.stack.namespaces(SLOT, cleanup);
    const out: Row[] = [];
    for (const [i, setup] of libs.stack.SETUPS.entries()) out.push(...(await measureSetup(libs, net, setup, dir, cleanup, i)));
    return out;
  });
  // In-kernel first, then the policy alone; idle before load within each.
  rows.sort((a, b) => (a.background === b.background ? 0 : a.background === 'idle' ? -1 : 1));

  const date = today();
  console.log('');
  console.log(`Detection to block, ${date}: ${machineText(m)}; load average ${load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}`);
  console.log('');
  console.log(latencyTable(rows));
  console.log('');
  console.log(checksTable(rows));
  console.log('');
  console.log(loadTable(rows));
  console.log('');
  console.log(cpuTable(rows, m.cpus));
  console.log('');
  console.log(`targets: ${verdictText(rows)}`);
  publish('detection', SECTION_HEADING, () => results(rows), () => section(m, date, load, rows, libs.stack.SETUPS), `${DETECTIONS} detections a row`);
}

await runBench('detection', main);
