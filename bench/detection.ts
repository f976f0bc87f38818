// `make bench-detection`: detection-to-block latency, from the kernel time of the SYN that crosses the threshold to the
// block in the kernel map, with the in-kernel detector and with the policy alone, at idle and under a background load of
// SYN events, probe + policy as deployed (@packetwatch/test-support/stack).
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
// Types only (erased): the modules themselves are imported once the build is checked.
import type { BlockEntry } from '@packetwatch/bpf';
import { type Cleanup, type NamespacePair, SLICE_MS, XDP_PASS, cpuShares, cpuSnapshot, drive, sleep, waitFor } from '@packetwatch/test-support';
import type { DetectionMode, Setup, Stack } from '@packetwatch/test-support/stack';
import { type Column, type StackLibs, columnTable, loadStack, pct, startStackBench, tableBlocks, thousands } from './harness.js';
import { sourceAddress } from './population.js';
import { BenchError, type Machine, type ResultEntry, SMOKE, count, entry, percentile, publish, round2, runBench, sectionFacts, sectionText, today } from './report.js';

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
type Background = 'idle' | 'load';
/** p99 targets in ms: the in-kernel detector's, at every N, and the policy's alone. */
const TARGET_MS: Record<DetectionMode, Record<Background, number>> = { 'in-kernel': { idle: 1, load: 2 }, 'policy alone': { idle: 2, load: 10 } };

// Benchmarking addresses (RFC 2544): each phase of each setup has a block of 2,048 sources, none used twice.
const SOURCES = { family: 4, base: 0xc6120000, size: 1 << 17, label: 'IPv4 198.18.0.0/15' } as const;
const source = (block: number, i: number) => sourceAddress(SOURCES, block * 2048 + i);
/** The background load: one source, one port, never a scanner (documentation range, RFC 5737). */
const BACKGROUND_SOURCE = '192.0.2.10';
const BACKGROUND_PORT = 8080;
const SLOT = 240;

/** A detection: its source; t0, t1: CLOCK_BOOTTIME just before and after the crossing SYN's run; lagNs: how far the program's coarse clock may trail t0. */
type Sample = { source: string; key: Buffer; t0: bigint; t1: bigint; lagNs: bigint };

/** Whether a block's created_ns falls within the crossing SYN's run, allowing the program's coarse clock its lag (two ticks). */
const duringRun = (e: BlockEntry, s: Sample) => e.createdNs >= s.t0 - s.lagNs && e.createdNs <= s.t1;

/** One setup's services, its detections (scans of N ports run through the attached program) and their blocks. */
async function measureSetup({ bpf, libbpf, stack: st }: StackLibs, net: NamespacePair, setup: Setup, dir: string, cleanup: Cleanup, index: number) {
  const { mode, n } = setup;
  const label = st.setupText(setup);
  const kernelFlag = bpf.BLOCK_FLAGS.kernelDetected;
  const stack = await st.Stack.start(net, mode, cleanup, st.setupEnv(setup));
  const programId = (await stack.probeStatus()).programId;
  const prog = stack.openProgram(programId, cleanup);
  const blocklist = stack.openBlocklist(cleanup);
  // Every SYN of a detection passes, the crossing one too: the source is blocked from the next one on.
  const pass = (src: string, data: Buffer) => {
    const { retval } = prog.testRun({ data });
    if (retval !== XDP_PASS) throw new BenchError(`the program returned ${retval} for a SYN of ${src}, expected XDP_PASS (${XDP_PASS})`);
  };

  /** `total` detections from the sources of block `phase` of this setup, DETECTION_RATE a second. */
  const detect = async (phase: number, total: number): Promise<Sample[]> => {
    const samples: Sample[] = [];
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const src = source(index * 3 + phase, i);
      const frames = Array.from({ length: n }, (_, k) => bpf.synFrame(src, net.victimAddr, 40_000 + (i % 20_000), 8001 + k));
      const key = bpf.parseAddress(src);
      const wait = start + (i * 1000) / DETECTION_RATE - performance.now();
      if (wait > 0) await sleep(wait);
      for (const data of frames.slice(0, -1)) pass(src, data);
      if (blocklist.get(key)) throw new BenchError(`${src} was blocked before its ${n}th port: the detectors are not at N = ${n}`);
      const t0 = libbpf.clock.boottimeNs();
      pass(src, frames.at(-1)!);
      samples.push({ source: src, key, t0, t1: libbpf.clock.boottimeNs(), lagNs: libbpf.clock.coarseLagNs() });
    }
    return samples;
  };

  /** Each sample's block once all are in or after BLOCK_WAIT_MS: missing ones are undefined. */
  const blocks = async (samples: readonly Sample[]): Promise<(BlockEntry | undefined)[]> => {
    const found: (BlockEntry | undefined)[] = samples.map(() => undefined);
    const deadline = Date.now() + BLOCK_WAIT_MS;
    while (found.includes(undefined) && Date.now() < deadline) {
      if (!stack.running) throw new BenchError(`a service died while detections were pending:\n${stack.tail()}`);
      samples.forEach((s, i) => (found[i] ??= blocklist.get(s.key)));
      if (found.includes(undefined)) await sleep(5);
    }
    return found;
  };

  /** The policy's detectionToBlockMs for these sources ("block in force" log lines), once it has logged them all or after 5 s. */
  const policyLogged = async (samples: readonly Sample[]): Promise<number[]> => {
    const wanted = new Set(samples.map((s) => s.source));
    const read = () =>
      stack.policyLog('block in force').flatMap((rec) => (typeof rec.ip === 'string' && wanted.has(rec.ip) && typeof rec.detectionToBlockMs === 'number' ? [rec.detectionToBlockMs] : []));
    await waitFor('the policy to log every block', () => (read().length >= wanted.size ? true : undefined), 5000).catch(() => undefined); // reported as fewer logged
    return read().sort((a, b) => a - b);
  };

  // Both services' status; backlogMs: events the program passed that the policy has not received yet, in ms of the load
  // (the policy read first: it can only overstate).
  const statuses = async () => {
    const q = await stack.policyStatus();
    const p = await stack.probeStatus();
    return { p, q, at: performance.now(), backlogMs: (Number((p.counters?.events ?? 0n) - q.eventsReceived) / LOAD_RATE) * 1000 };
  };
  type Statuses = Awaited<ReturnType<typeof statuses>>;
  /** The load over a window: its backlog at the start and the end; SYNs offered and events received per second. */
  const loadStats = (s1: Statuses, s2: Statuses) => {
    const seconds = (s2.at - s1.at) / 1000;
    return {
      backlogStartMs: s1.backlogMs,
      backlogEndMs: s2.backlogMs,
      seconds,
      offered: st.counterDelta(s1.p, s2.p, 'syn') / seconds,
      policyReceived: Number(s2.q.eventsReceived - s1.q.eventsReceived) / seconds,
      probeLost: Number(s2.p.eventsLost - s1.p.eventsLost),
      ringbufFull: st.counterDelta(s1.p, s2.p, 'ringbufFull'),
    };
  };

  let driver: ChildProcess | undefined;
  const cpu = () => cpuSnapshot({ probe: stack.svc.probe?.pid, policy: stack.svc.policy?.pid, driver: driver?.pid });
  /** A measured window: DETECTIONS detections, their blocks and where the CPU went meanwhile. */
  const measure = async (background: Background, phase: number, loadStart?: Statuses) => {
    const c0 = cpu();
    const samples = await detect(phase, DETECTIONS);
    const entries = await blocks(samples);
    const shares = cpuShares(c0, cpu());
    // sortedMs: created_ns - CLOCK_BOOTTIME before the crossing SYN, ms, ascending (Infinity: never blocked); bracketUs: the
    // width of the clock reads around that SYN's run (each figure's uncertainty); policyLoggedMs: the policy's own
    // detectionToBlockMs; kernelWritten: blocks with the program's flag; inRun: those created during the crossing SYN's run;
    // cpu: CPUs used on average over the window (driver: bpftool, which also pays for the XDP program on the load).
    const row = {
      setup,
      label,
      background,
      detections: samples.length,
      // An in-kernel block is written during the crossing SYN's own run: its latency is at most that run's bracket.
      sortedMs: samples.map((s, i) => (entries[i] ? Number((mode === 'in-kernel' ? s.t1 : entries[i].createdNs) - s.t0) / 1e6 : Infinity)).sort((a, b) => a - b),
      missed: entries.filter((e) => !e).length,
      bracketUs: samples.map((s) => Number(s.t1 - s.t0) / 1000).sort((a, b) => a - b),
      kernelWritten: entries.filter((e) => e && e.flags & kernelFlag).length,
      inRun: entries.filter((e, i) => e && duringRun(e, samples[i]!)).length,
      target: TARGET_MS[mode][background],
      load: loadStart && loadStats(loadStart, await statuses()),
      policyLoggedMs: await policyLogged(samples),
      cpu: shares,
    };
    console.log(`${label}, ${backgroundText(background)}: p50 ${ms(percentile(row.sortedMs, 50))} ms, p99 ${ms(percentile(row.sortedMs, 99))} ms, missed ${row.missed}`);
    return row;
  };

  // The warm-up detections double as the check that the mode is what it says.
  const warm = await detect(0, WARMUP);
  const warmBlocks = await blocks(warm);
  for (const [i, s] of warm.entries()) {
    const e = warmBlocks[i];
    // The policy's block is stamped at BlockIp, after the run began (it may beat the read of t1): only the start bounds it.
    const right = e && (mode === 'in-kernel' ? e.flags & kernelFlag && duringRun(e, s) : !(e.flags & kernelFlag) && e.createdNs >= s.t0);
    const what = mode === 'in-kernel' ? 'written by the program during the crossing SYN' : 'written by the policy (in-kernel detection is off)';
    if (!right) throw new BenchError(`setup check (${mode}): the block of ${s.source} was ${e ? `not ${what} (flags ${e.flags})` : 'never made'}`);
  }
  console.log(`${label}: probe + policy up (program ${programId}), ${WARMUP} warm-up detections checked`);
  const idle = await measure('idle', 1);

  // The background SYN must pass (drive() fails on any other verdict: a blocked source's would be a drop).
  const frameFile = join(dir, `background-${index}.bin`);
  writeFileSync(frameFile, bpf.synFrame(BACKGROUND_SOURCE, net.victimAddr, 40_000, BACKGROUND_PORT));
  cleanup.add('stop the load', () => driver?.kill('SIGKILL'));
  const stop = new AbortController();
  const driving = drive(programId, frameFile, LOAD_RATE, LOAD_MAX_MS, (c) => (driver = c), stop.signal);
  driving.catch(() => {}); // awaited once the load is stopped
  await sleep(LOAD_SETTLE_MS);
  const loaded = await measure('load', 2, await statuses());
  stop.abort();
  await driving;

  const { blockFailures } = await stack.policyStatus();
  if (blockFailures > 0n) console.log(`${label}: note: the policy counted ${blockFailures} failed BlockIp calls`);
  await stack.stop(); // the program and the blocklist are closed with the cleanup
  return [idle, loaded];
}

/** A measured window's row; LoadRow: one under the load. */
type Row = Awaited<ReturnType<typeof measureSetup>>[number];
type LoadRow = Row & { load: NonNullable<Row['load']> };

const backgroundText = (b: Background) => (b === 'idle' ? 'idle' : `${count(LOAD_RATE / 1000)}k SYN/s`);
const ms = (x: number) => (!Number.isFinite(x) ? 'never' : x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(2) : x.toFixed(0));
const met = (r: Row) => r.missed === 0 && percentile(r.sortedMs, 99) <= r.target;
const pLogged = (r: Row, p: number) => (r.policyLoggedMs.length ? ms(percentile(r.policyLoggedMs, p)) : '-');
/** The percentiles the tables and the results give ('max' is the 100th, nearest-rank). */
const PERCENTILES = [['p50', 50], ['p99', 99], ['max', 100]] as const;

const DETECTION: Column<Row> = ['detection', false, (r) => r.label];
const BACKGROUND: Column<Row> = ['background', false, (r) => backgroundText(r.background)];
const LATENCY: Column<Row>[] = [
  DETECTION,
  BACKGROUND,
  ['detections', true, (r) => count(r.detections)],
  ...PERCENTILES.map(([h, p]): Column<Row> => [`${h} ms`, true, (r) => ms(percentile(r.sortedMs, p))]),
  ['never blocked', true, (r) => count(r.missed)],
  ['policy log p50 ms', true, (r) => pLogged(r, 50)],
  ['policy log p99 ms', true, (r) => pLogged(r, 99)],
  ['target p99', true, (r) => `<= ${r.target} ms`],
  ['result', false, (r) => (met(r) ? 'met' : 'MISSED')],
];
const CHECKS: Column<Row>[] = [
  DETECTION,
  BACKGROUND,
  ['written by the program', true, (r) => count(r.kernelWritten)],
  ['created during the crossing SYN', true, (r) => count(r.inRun)],
  ...PERCENTILES.map(([h, p], i): Column<Row> => [`${i ? '' : 'SYN clock bracket '}${h} µs`, true, (r) => percentile(r.bracketUs, p).toFixed(1)]),
  ['policy logged', true, (r) => count(r.policyLoggedMs.length)],
];
const LOAD: Column<LoadRow>[] = [
  DETECTION,
  ['window s', true, (r) => r.load.seconds.toFixed(1)],
  ['offered SYN/s', true, (r) => thousands(r.load.offered)],
  ['policy received/s', true, (r) => thousands(r.load.policyReceived)],
  ['backlog at start ms', true, (r) => r.load.backlogStartMs.toFixed(0)],
  ['at end ms', true, (r) => r.load.backlogEndMs.toFixed(0)],
  ['probe events lost', true, (r) => count(r.load.probeLost)],
  ['ringbufFull', true, (r) => count(r.load.ringbufFull)],
];
const cpuColumns = (cpus: number): Column<Row>[] => [
  DETECTION,
  BACKGROUND,
  ['probe', true, (r) => pct(r.cpu.probe)],
  ['policy', true, (r) => pct(r.cpu.policy)],
  ['driver (bpftool + XDP)', true, (r) => (r.background === 'load' ? pct(r.cpu.driver) : '-')],
  ['detections (this process)', true, (r) => pct(r.cpu.bench)],
  ['other processes', true, (r) => pct(r.cpu.others)],
  ['idle', true, (r) => `${pct(r.cpu.idle)} of ${cpus * 100}%`],
];

const nText = (setups: readonly Setup[], mode: DetectionMode) => setups.flatMap((s) => (s.mode === mode ? [s.n] : [])).join(', ');
const methodText = (setups: readonly Setup[]) =>
  `Probe and policy as deployed (\`make run\`) in a victim namespace, N ports within 60 s for both detectors (N = ${nText(setups, 'in-kernel')} ` +
  `with in-kernel detection on, N = ${nText(setups, 'policy alone')} with it off), no block cap, each setup with services of its own. A ` +
  'detection is a new source (198.18.0.0/15) sending SYNs to N ports: this process runs the attached program on them (BPF_PROG_TEST_RUN), ' +
  `${DETECTION_RATE} detections a second on a fixed schedule, after ${count(WARMUP)} warm-up detections that also check the mode. Policy ` +
  "alone: the block's created_ns minus CLOCK_BOOTTIME read before the crossing SYN's run (an upper bound, off by at most the bracket shown); " +
  `in-kernel: the run's bracket. "policy log": the policy's own detectionToBlockMs. Never blocked: no block ${BLOCK_WAIT_MS / 1000} s after ` +
  `the last detection. Load: \`bpftool batch file -\` runs the program on a SYN from ${BACKGROUND_SOURCE} to one port every ${SLICE_MS} ms, ` +
  `${count(LOAD_RATE)} a second, from ${LOAD_SETTLE_MS / 1000} s before the detections; backlog: events the policy had not received, in ms ` +
  'of the load. Percentiles are nearest-rank.';

function section(m: Machine, date: string, load: number, rows: readonly Row[], setups: readonly Setup[]): string {
  const { 'in-kernel': kernel, 'policy alone': policy } = TARGET_MS;
  const verdict = (r: Row) => `p99 ${ms(percentile(r.sortedMs, 99))} ms vs <= ${r.target} ms, ${met(r) ? 'met' : 'MISSED'}`;
  const verdicts = rows.map((r) => `${r.label} ${r.background === 'idle' ? 'at idle' : 'under load'}: ${verdict(r)}`).join('; ');
  return sectionText(
    SECTION_HEADING,
    'detection',
    'How long a port scanner keeps its access after the SYN that makes it one: from the kernel time of the SYN that ' +
      'crosses the threshold to the block in the kernel map, with the in-kernel detector and with the policy alone.',
    [...sectionFacts('detection', date, m, load), `- Method: ${methodText(setups)}`],
    [
      ...tableBlocks([
        ['', columnTable(rows, LATENCY)],
        ['Checks: who wrote the blocks, and how tightly the crossing SYN was timed:', columnTable(rows, CHECKS)],
        [`Background load (target ${count(LOAD_RATE)} SYN/s) over each measured window:`, columnTable(rows.filter((r): r is LoadRow => !!r.load), LOAD)],
        ['Where the CPU went over each measured window (100% = one CPU; /proc/<pid>/stat and /proc/stat):', columnTable(rows, cpuColumns(m.cpus))],
      ]),
      `Targets (p99 at idle, under load): in-kernel <= ${kernel.idle} ms, <= ${kernel.load} ms at every N; ` +
        `policy alone <= ${policy.idle} ms, <= ${policy.load} ms. ${verdicts}.`,
      '',
    ],
  );
}

function results(rows: readonly Row[]): ResultEntry[] {
  return rows.flatMap((r) =>
    PERCENTILES.map(([label, p]) => {
      const v = percentile(r.sortedMs, p);
      const p99 = label === 'p99';
      const name = `detection to block, ${r.label}, ${r.background === 'idle' ? 'idle' : `${LOAD_RATE} SYN/s`} ${label}`;
      const [vs, goal] = p99 ? [['target p99', r.target] as const, [`p99 <= ${r.target} ms`, met(r)] as const] : [null, null];
      return entry(name, Number.isFinite(v) ? Math.round(v * 1000) / 1000 : -1, 'ms', vs, goal, {
        detections: r.detections,
        neverBlocked: r.missed,
        policyLoggedMs: r.policyLoggedMs.length ? round2(percentile(r.policyLoggedMs, p)) : null,
        bracketUs: round2(percentile(r.bracketUs, p)),
        writtenByProgram: r.kernelWritten,
        offeredSynPerSecond: r.load ? Math.round(r.load.offered) : null,
        backlogStartMs: r.load ? Math.round(r.load.backlogStartMs) : null,
        policyReceivedPerSecond: r.load ? Math.round(r.load.policyReceived) : null,
        probeEventsLost: r.load ? r.load.probeLost : null,
        ...Object.fromEntries((['probe', 'policy', 'other', 'idle'] as const).map((k) => [`${k}Cpu`, round2(r.cpu[k === 'other' ? 'others' : k])])),
      });
    }),
  );
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench('detection');
  const libs = await loadStack();
  const rows = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const net = libs.stack.namespaces(SLOT, cleanup);
    const out: Row[] = [];
    for (const [i, setup] of libs.stack.SETUPS.entries()) out.push(...(await measureSetup(libs, net, setup, dir, cleanup, i)));
    return out;
  });
  // In-kernel first, then the policy alone; idle before load within each.
  rows.sort((a, b) => (a.background === b.background ? 0 : a.background === 'idle' ? -1 : 1));
  const text = section(m, today(), load, rows, libs.stack.SETUPS);
  console.log(`\n${text}`);
  publish('detection', SECTION_HEADING, () => results(rows), () => text, `${DETECTIONS} detections a row`);
}

await runBench('detection', main);
