// What a bench that runs the real thing checks before it starts: root, the
// build outputs and the commands it calls; and the rate benches' (bench-probe,
// bench-pipeline) measurement, search and report. What the benches use while
// they run (waits, cleanup, CPU accounting, the bpftool driver, the services)
// is @packetwatch/test-support.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { GetStatusResponse } from '@packetwatch/proto';
import { Cleanup, type CpuShares, cpuShares, cpuSnapshot, waitFor } from '@packetwatch/test-support';
import {
  BenchError, type Machine, REPO_ROOT, type ResultEntry, SMOKE, commandError, count, machine, machineText, publish, rateLabel, rel, round2, roundRate,
  sectionFacts, sectionText, table, today,
} from './report.js';

/** Fails unless running as root: `why` says what needs it, `command` how to run the bench. */
export function requireRoot(why: string, command: string): void {
  if (process.getuid?.() !== 0) throw new BenchError(`needs root to ${why}; run: sudo ${command}`);
}

/** What the benches that run the real probe and policy need built, as [path, what it is]. */
export const STACK_BUILD_OUTPUTS: readonly (readonly [string, string])[] = [
  [join(REPO_ROOT, 'bpf/build/packetwatch.bpf.o'), 'the XDP object'],
  [join(REPO_ROOT, 'packages/libbpf-ts/build/Release/bpf_ts.node'), 'the libbpf-ts addon'],
  [join(REPO_ROOT, 'packages/libbpf-ts/dist/index.js'), 'libbpf-ts'],
  [join(REPO_ROOT, 'packages/common/dist/index.js'), '@packetwatch/common'],
  [join(REPO_ROOT, 'bpf/dist/index.js'), '@packetwatch/bpf'],
  [join(REPO_ROOT, 'proto/dist/src/index.js'), '@packetwatch/proto'],
  [join(REPO_ROOT, 'services/probe/dist/main.js'), 'the probe'],
  [join(REPO_ROOT, 'services/policy/dist/main.js'), 'the policy'],
];

/** Fails naming every missing build output ([path, what it is]). */
export function requireBuild(outputs: readonly (readonly [string, string])[]): void {
  const missing = outputs.filter(([path]) => !existsSync(path));
  if (missing.length > 0) {
    throw new BenchError(`the build is missing ${missing.map(([p, what]) => `${what} (${rel(p)})`).join(', ')}: run make build first`);
  }
}

/** The start of a bench that runs the real stack (`make bench-<name>`): its checks, the machine, the load average now, and its Cleanup. */
export function startStackBench(name: string, others: readonly (readonly [string, readonly string[]])[] = []): { m: Machine; load: number; cleanup: Cleanup } {
  requireRoot('run probe + policy in network namespaces and BPF_PROG_TEST_RUN', `make bench-${name}`);
  requireBuild(STACK_BUILD_OUTPUTS);
  // Each command with arguments that only print a version: the first that does not run is named.
  const commands = [...others, ['bpftool', ['version']], ['ip', ['-V']], ['setpriv', ['--version']], ['id', ['-u', 'packetwatch']]] as const;
  for (const [cmd, args] of commands) {
    try {
      execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw commandError(`${cmd} ${args.join(' ')} failed`, e);
    }
  }
  return { m: machine(), load: os.loadavg()[0] ?? 0, cleanup: new Cleanup(name) };
}

/** The modules of the benches that run the stack, imported once startStackBench has checked the build (a failure says to run make build). */
export async function loadStack() {
  try {
    const [grpc, bpf, libbpf, proto, stack, services, policyStub] = await Promise.all([
      import('@grpc/grpc-js'),
      import('@packetwatch/bpf'),
      import('libbpf-ts'),
      import('@packetwatch/proto'),
      import('@packetwatch/test-support/stack'),
      import('@packetwatch/test-support/services'),
      import('@packetwatch/test-support/policy-stub'),
    ]);
    return { grpc, bpf, libbpf, proto, stack, services, policyStub };
  } catch (e) {
    throw new BenchError(`loading the build failed (${(e as Error).message}): run make build`);
  }
}

export type StackLibs = Awaited<ReturnType<typeof loadStack>>;

/** The books of an event flow at one moment, as running totals; a bench may add counters of its own, which a run gets moved. */
export interface FlowCounts {
  /** The program's: SYNs it saw, events it wrote to the ring buffer, events it could not (ring buffer full). */
  syn: number;
  events: number;
  ringbufFull: number;
  /** Events the probe dropped (its GetStatus eventsLost). */
  probeLost: number;
  /** The policy end of the Report stream: events received, events it was told were lost, sequence numbers skipped. */
  received: number;
  policyLost: number;
  gaps: number;
}

/** The program's and the probe's side of the books, from the probe's GetStatus. */
export function probeCounts(s: GetStatusResponse): Pick<FlowCounts, 'syn' | 'events' | 'ringbufFull' | 'probeLost'> {
  const c = (name: 'syn' | 'events' | 'ringbufFull') => Number(s.counters?.[name] ?? 0n);
  return { syn: c('syn'), events: c('events'), ringbufFull: c('ringbufFull'), probeLost: Number(s.eventsLost) };
}

/** A run of bench-probe or bench-pipeline at a target rate: its counts moved, what was offered and arrived, and where the CPU went. */
export type FlowRun<K extends string, C extends FlowCounts = FlowCounts> = C & {
  rate: number;
  seconds: number;
  offered: number;
  delivered: number;
  lagMs: number;
  unaccounted: number;
  /** Whether every event was received or reported lost before the drain timed out. */
  closed: boolean;
  zeroLoss: boolean;
  /** Zero loss, and at its end the receiver at most MAX_LAG_MS behind the driver. */
  keptUp: boolean;
  /** Average CPUs used over the run and its drain, `wall` seconds (1 = one CPU busy); children: the driver. */
  cpu: CpuShares<K>;
  wall: number;
  /** CPU seconds of each service per million events received. */
  perM: Record<K, number>;
};

type AnyRun = FlowRun<string>;

/** A run keeps up when, at its end, the receiver is at most this far behind the driver. */
export const MAX_LAG_MS = 100;

/**
 * Runs `body` (which drives SYNs and returns its wall seconds) between two
 * readings of the books, the second once every SYN the program saw was
 * received or reported lost, or after `drainMs` (a result: events
 * unaccounted for); a service that died (`alive`) is an error.
 */
export async function measureFlow<K extends string, C extends FlowCounts>(
  rate: number, read: () => Promise<C>, pids: Record<K, number | undefined>, alive: () => boolean, drainMs: number, body: () => Promise<number>,
): Promise<FlowRun<K, C>> {
  const b0 = await read();
  const c0 = cpuSnapshot(pids);
  const seconds = await body();
  const end = await read();
  let closed = true;
  try {
    await waitFor('every event to be accounted for', async () => {
      const b = await read();
      return b.received - b0.received + b.policyLost - b0.policyLost >= end.syn - b0.syn ? true : undefined;
    }, drainMs);
  } catch (e) {
    if (!(e instanceof BenchError) || !alive()) throw e;
    closed = false;
  }
  const c1 = cpuSnapshot(pids);
  const b1 = await read();
  const d = Object.fromEntries(Object.entries(b1).map(([k, v]) => [k, v - Number(b0[k as keyof C])])) as unknown as C;
  const inRun = end.received - b0.received;
  const offered = d.syn / seconds;
  const lagMs = offered > 0 ? (Math.max(0, d.events - inRun) / offered) * 1000 : 0;
  const lost = d.ringbufFull + d.probeLost + d.policyLost + d.gaps;
  const zeroLoss = closed && d.events > 0 && d.events === d.syn && d.received === d.events && lost === 0;
  const cpu = cpuShares(c0, c1);
  const wall = (c1.at - c0.at) / 1000;
  const millions = d.received > 0 ? d.received / 1e6 : NaN;
  const perM = Object.fromEntries(Object.keys(pids).map((k) => [k, (cpu[k as K] * wall) / millions])) as Record<K, number>;
  const unaccounted = d.syn - d.received - d.policyLost;
  const keptUp = zeroLoss && lagMs <= MAX_LAG_MS;
  return { ...d, rate, seconds, offered, delivered: inRun / seconds, lagMs, unaccounted, closed, zeroLoss, keptUp, cpu, wall, perM };
}

/** The run that carried the highest rate, if any. */
export function bestRun<R extends AnyRun>(runs: readonly R[]): R | undefined {
  return runs.filter((r) => r.keptUp).sort((a, b) => b.offered - a.offered)[0];
}

/** The lowest rate above the best run's that was not carried. */
function firstFail<R extends AnyRun>(runs: readonly R[]): R | undefined {
  const pass = bestRun(runs);
  return runs.filter((r) => !r.keptUp && (!pass || r.rate > pass.rate)).sort((a, b) => a.rate - b.rate)[0];
}

/**
 * Runs each of `rates` in turn (lower ones warm the services up), then up to
 * `steps` geometric bisections between the highest rate carried and the
 * lowest above it that was not; returns the runs in order of rate.
 */
export async function rateSearch<R extends AnyRun>(rates: readonly number[], steps: number, run: (rate: number) => Promise<R>): Promise<R[]> {
  const runs: R[] = [];
  for (const rate of rates) runs.push(await run(rate));
  for (let i = 0; i < steps; i++) {
    const pass = bestRun(runs);
    const fail = firstFail(runs);
    if (!pass || !fail) break;
    const mid = roundRate(Math.sqrt(pass.rate * fail.rate));
    if (mid <= pass.rate || mid >= fail.rate || runs.some((r) => r.rate === mid)) break;
    runs.push(await run(mid));
  }
  return runs.sort((a, b) => a.rate - b.rate);
}

/** The fields of a run's results entry that both rate benches write; each service's CPU and CPU seconds per million events by its name. */
export function flowFields(r: AnyRun) {
  const services = Object.keys(r.perM).flatMap((k) => [[`${k}Cpu`, round2(r.cpu[k] ?? NaN)], [`${k}CpuSecondsPerMillionEvents`, round2(r.perM[k] ?? NaN)]]);
  return {
    seconds: round2(r.seconds),
    lagMs: round2(r.lagMs),
    ringbufFull: r.ringbufFull,
    probeEventsLost: r.probeLost,
    policyLostEvents: r.policyLost,
    unaccounted: r.unaccounted,
    zeroLoss: r.zeroLoss,
    keptUp: r.keptUp,
    driverCpu: round2(r.cpu.children),
    otherCpu: round2(r.cpu.others),
    idleCpu: round2(r.cpu.idle),
    ...Object.fromEntries(services),
  };
}

/** Prints a run's progress line (`label`: its rate): what it offered, what arrived, what was lost, and each service's CPU. */
export function printRun(label: string, r: AnyRun, extra = ''): void {
  const services = Object.keys(r.perM).map((k) => `${k} ${pct(r.cpu[k] ?? NaN)} (${(r.perM[k] ?? NaN).toFixed(2)} s/M)`);
  console.log(
    `${label}/s: offered ${count(Math.round(r.offered))}/s, delivered ${count(Math.round(r.delivered))}/s, lag ${r.lagMs.toFixed(0)} ms, ` +
      `ringbufFull ${count(r.ringbufFull)}, probe lost ${count(r.probeLost)}, policy lost ${count(r.policyLost)}, ` +
      `unaccounted ${count(r.unaccounted)}; CPU ${services.join(', ')}${extra}, idle ${pct(r.cpu.idle)} -> ${resultText(r)}`,
  );
}

export const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
/** A rate to the nearest thousand, as the tables print it. */
export const thousands = (x: number) => count(Math.round(x / 1000) * 1000);

export function resultText(r: AnyRun): string {
  if (r.keptUp) return 'ok';
  if (!r.closed) return 'LOSS (unaccounted)';
  return r.zeroLoss ? `LAG > ${MAX_LAG_MS} ms` : 'LOSS';
}

/** What a rate table's columns and result mean, for a rate bench's method; drainMs: how long its runs drain. */
export const flowTerms = (drainMs: number): string =>
  'offered/s = SYNs the program counted / run time; delivered/s = events received / run time; lag = events not yet received when ' +
  'the driver stopped, in ms of the offered rate; ringbufFull, probe lost and policy lost overlap; unaccounted = offered - received - ' +
  `reported lost, after draining up to ${drainMs / 1000} s. ok: no loss, lag <= ${MAX_LAG_MS} ms. CPU over the run and its drain from /proc ` +
  '(100% = one CPU); CPU s/M = CPU seconds per million events received.';

/** The columns of a rate table: target to unaccounted, the bench's `extra`, and the result. */
export function flowColumns<R extends AnyRun>(extra: readonly Column<R>[] = []): Column<R>[] {
  return [
    ['target/s', false, (r) => rateLabel(r.rate)],
    ['offered/s', true, (r) => thousands(r.offered)],
    ['delivered/s', true, (r) => thousands(r.delivered)],
    ['lag ms', true, (r) => r.lagMs.toFixed(0)],
    ['ringbufFull', true, (r) => count(r.ringbufFull)],
    ['probe lost', true, (r) => count(r.probeLost)],
    ['policy lost', true, (r) => count(r.policyLost)],
    ['unaccounted', true, (r) => count(r.unaccounted)],
    ...extra,
    ['result', false, resultText],
  ];
}

/** The verdict of a rate search: the highest rate carried for `seconds` with zero loss (`who`: what carried it), and the next that was not. */
export function carriedText(runs: readonly AnyRun[], seconds: number, who: string): string {
  const b = bestRun(runs);
  if (!b) return `no rate was carried for ${seconds} s with zero loss (lowest tried: ${count(Math.min(...runs.map((r) => r.rate)))}/s)`;
  const above = firstFail(runs);
  const bound = above ? `${count(Math.round(above.offered))}/s was not` : 'the highest rate tried';
  return `highest rate carried for ${seconds} s with zero loss${who}: ${count(Math.round(b.offered))} events/s (${bound})`;
}

/** What a rate bench reports, printed to the console and as its BENCHMARKS.md section. */
export interface RateReport<R extends AnyRun> {
  name: string;
  heading: string;
  intro: string;
  m: Machine;
  load: number;
  methods: readonly string[];
  /** Its tables, [caption, table], before the CPU table: `cpu` (the first columns), then other processes, idle and the result. */
  tables: readonly (readonly [caption: string, table: string])[];
  cpu: readonly Column<R>[];
  result: string;
  /** Its runs, for the CPU table and the notes. */
  runs: readonly R[];
}

/** Other processes busier than this (CPUs) during a run make its result a lower bound: the services competed for CPU. */
const BUSY_OTHERS = 0.5;

/** The notes under the result: where the CPU went at the lowest failing target rate, and a warning if other processes were busy. */
function notes<R extends AnyRun>(r: RateReport<R>): string[] {
  const out: string[] = [];
  const fail = firstFail(r.runs.filter((x) => !Number.isNaN(x.rate)));
  if (fail) {
    const used = Object.keys(fail.perM).map((name) => `the ${name} ${pct(fail.cpu[name] ?? NaN)}`);
    out.push(
      `At ${count(Math.round(fail.offered))}/s, the lowest failing rate, ${used.join(', ')}, the driver ${pct(fail.cpu.children)}, ` +
        `the bench ${pct(fail.cpu.bench)}, other processes ${pct(fail.cpu.others)}, and ${pct(fail.cpu.idle)} of ${r.m.cpus * 100}% was idle.`,
    );
  }
  const most = Math.max(...r.runs.map((x) => x.cpu.others));
  if (most > BUSY_OTHERS) {
    out.push(
      `Warning: other processes used up to ${pct(most)} of ${r.m.cpus * 100}% CPU during these runs, so the services, their ` +
        `driver and receiver competed for CPU with them: the rates above are a lower bound. Rerun on a quiet machine.`,
    );
  }
  return out;
}

/** Prints the report's tables, result and notes, then publishes its results entries and its section. */
export function publishReport<R extends AnyRun>(r: RateReport<R>, entries: () => readonly ResultEntry[], smokeSize: string): void {
  console.log(`\n${r.heading.slice(3)}, ${today()}: ${machineText(r.m)}; load average ${r.load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}\n`);
  for (const [, text] of tables(r)) console.log(`${text}\n`);
  console.log(`result: ${r.result}`);
  for (const note of notes(r)) console.log(note);
  publish(r.name, r.heading, entries, () => reportSection(r), smokeSize);
}

function tables<R extends AnyRun>(r: RateReport<R>): (readonly [string, string])[] {
  const cpu: Column<R>[] = [
    ...r.cpu,
    ['other processes', true, (x) => pct(x.cpu.others)],
    ['idle', true, (x) => `${pct(x.cpu.idle)} of ${r.m.cpus * 100}%`],
    ['result', false, resultText],
  ];
  return [...r.tables, ['Where the CPU went (100% = one CPU):', columnTable(r.runs, cpu)]];
}

function reportSection<R extends AnyRun>(r: RateReport<R>): string {
  const facts = [...sectionFacts(r.name, today(), r.m, r.load), ...r.methods.map((m) => `- ${m}`)];
  return sectionText(r.heading, r.name, r.intro, facts, [...tableBlocks(tables(r)), `Result: ${r.result}.`, '', ...notes(r).flatMap((n) => [n, ''])]);
}

/** A column of a table of rows R: its header, whether it is numeric (right-aligned), and a row's cell. */
export type Column<R> = readonly [header: string, numeric: boolean, cell: (r: R) => string];

/** The rows as a table() of the columns. */
export function columnTable<R>(rows: readonly R[], columns: readonly Column<R>[]): string {
  return table(
    columns.map((c) => c[0]),
    rows.map((r) => columns.map((c) => c[2](r))),
    columns.map((c) => c[1]),
  );
}

/** Tables as a BENCHMARKS.md section shows them: each one's caption line (if any), then the table in a text code block. */
export function tableBlocks(tables: readonly (readonly [caption: string, table: string])[]): string[] {
  return tables.flatMap(([caption, text]) => [...(caption ? [caption, ''] : []), '```text', text, '```', '']);
}
