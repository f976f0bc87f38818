// What a bench that runs the real thing checks before it starts: root, the
// build outputs and the commands it calls. What it uses while it runs (waits,
// cleanup, CPU accounting, the bpftool driver) is @packetwatch/test-support.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Cleanup, waitFor } from '@packetwatch/test-support';
import {
  BenchError,
  type Machine,
  REPO_ROOT,
  type ResultEntry,
  SMOKE,
  commandError,
  count,
  machine,
  machineText,
  publish,
  rateLabel,
  rel,
  round2,
  roundRate,
  sectionFacts,
  sectionText,
  table,
  today,
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

/** What the benches that run the real probe and policy call, as [command, arguments that only print a version]. */
export const STACK_COMMANDS: readonly (readonly [string, readonly string[]])[] = [
  ['bpftool', ['version']],
  ['ip', ['-V']],
  ['setpriv', ['--version']],
  ['id', ['-u', 'packetwatch']],
];

/** The start of a bench that runs the real stack (`make bench-<name>`): its checks, the machine, the load average now, and its Cleanup. */
export function startStackBench(name: string, others: readonly (readonly [string, readonly string[]])[] = []): { m: Machine; load: number; cleanup: Cleanup } {
  requireRoot('run probe + policy in network namespaces and BPF_PROG_TEST_RUN', `make bench-${name}`);
  requireBuild(STACK_BUILD_OUTPUTS);
  requireCommands([...others, ...STACK_COMMANDS]);
  return { m: machine(), load: os.loadavg()[0] ?? 0, cleanup: new Cleanup(name) };
}

/** Fails naming the first command that does not run ([command, arguments that only print a version]). */
export function requireCommands(commands: readonly (readonly [string, readonly string[]])[]): void {
  for (const [cmd, args] of commands) {
    try {
      execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw commandError(`${cmd} ${args.join(' ')} failed`, e);
    }
  }
}

/** The build's modules, imported once requireBuild has named any missing output: a failure to load them says to run make build. */
export async function loadBuilt<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    throw new BenchError(`loading the build failed (${(e as Error).message}): run make build`);
  }
}

/** The modules of the benches that attack the stack (bench-detection, bench-leak), imported once startStackBench has checked the build. */
export async function loadStack() {
  const [grpc, bpf, libbpf, proto, stack, services] = await loadBuilt(() =>
    Promise.all([
      import('@grpc/grpc-js'),
      import('@packetwatch/bpf'),
      import('libbpf-ts'),
      import('@packetwatch/proto'),
      import('@packetwatch/test-support/stack'),
      import('@packetwatch/test-support/services'),
    ]),
  );
  return { grpc, bpf, libbpf, proto, stack, services };
}

export type StackLibs = Awaited<ReturnType<typeof loadStack>>;

/** A run at an offered rate: whether it carried it (zero loss, kept up). */
export interface RateRun {
  rate: number;
  offered: number;
  keptUp: boolean;
}

/** A run of bench-probe or bench-pipeline: what it offered, what arrived, what was lost, and where the CPU went. */
export interface FlowRun extends RateRun {
  delivered: number;
  lagMs: number;
  ringbufFull: number;
  probeLost: number;
  policyLost: number;
  unaccounted: number;
  /** Whether every event was received or reported lost before the drain timed out. */
  closed: boolean;
  zeroLoss: boolean;
  cpu: { children: number; bench: number; others: number; idle: number };
}

/** A run keeps up when, at its end, the receiver is at most this far behind the driver. */
export const MAX_LAG_MS = 100;

/** The run that carried the highest rate, if any. */
export function bestRun<R extends RateRun>(runs: readonly R[]): R | undefined {
  return runs.filter((r) => r.keptUp).sort((a, b) => b.offered - a.offered)[0];
}

/** The lowest rate above the best run's that was not carried. */
function firstFail<R extends RateRun>(runs: readonly R[]): R | undefined {
  const pass = bestRun(runs);
  return runs.filter((r) => !r.keptUp && (!pass || r.rate > pass.rate)).sort((a, b) => a.rate - b.rate)[0];
}

/**
 * Runs each of `rates` in turn (lower ones warm the services up), then up to
 * `steps` geometric bisections between the highest rate carried and the
 * lowest above it that was not; returns the runs in order of rate.
 */
export async function rateSearch<R extends RateRun>(rates: readonly number[], steps: number, run: (rate: number) => Promise<R>): Promise<R[]> {
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

/**
 * Waits for `done` (the books of a run to close) up to `timeoutMs`: false on a
 * timeout, which is a result (events unaccounted for); a dead service (`alive`) is not.
 */
export async function drain(what: string, done: () => boolean | Promise<boolean>, alive: () => boolean, timeoutMs: number): Promise<boolean> {
  try {
    await waitFor(what, async () => ((await done()) ? true : undefined), timeoutMs);
    return true;
  } catch (e) {
    if (!(e instanceof BenchError) || !alive()) throw e;
    return false;
  }
}

/** The fields of a run's results entry that both rate benches write. */
export function flowFields(r: FlowRun) {
  return {
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
  };
}

/** A run's progress line: what it offered, what arrived, what was lost. */
export function flowLine(r: FlowRun): string {
  return (
    `offered ${count(Math.round(r.offered))}/s, delivered ${count(Math.round(r.delivered))}/s, lag ${r.lagMs.toFixed(0)} ms, ` +
    `ringbufFull ${count(r.ringbufFull)}, probe lost ${count(r.probeLost)}, policy lost ${count(r.policyLost)}, unaccounted ${count(r.unaccounted)}`
  );
}

export const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
const thousands = (x: number) => count(Math.round(x / 1000) * 1000);

export function resultText(r: FlowRun): string {
  if (r.keptUp) return 'ok';
  if (!r.closed) return 'LOSS (unaccounted)';
  return r.zeroLoss ? `LAG > ${MAX_LAG_MS} ms` : 'LOSS';
}

/** The columns of a rate table: target to unaccounted. */
export function flowColumns<R extends FlowRun>(): Column<R>[] {
  return [
    ['target/s', false, (r) => rateLabel(r.rate)],
    ['offered/s', true, (r) => thousands(r.offered)],
    ['delivered/s', true, (r) => thousands(r.delivered)],
    ['lag ms', true, (r) => r.lagMs.toFixed(0)],
    ['ringbufFull', true, (r) => count(r.ringbufFull)],
    ['probe lost', true, (r) => count(r.probeLost)],
    ['policy lost', true, (r) => count(r.policyLost)],
    ['unaccounted', true, (r) => count(r.unaccounted)],
  ];
}

/** The last columns of a CPU table: other processes, idle and the result. */
export function cpuTailColumns<R extends FlowRun>(cpus: number): Column<R>[] {
  return [
    ['other processes', true, (r) => pct(r.cpu.others)],
    ['idle', true, (r) => `${pct(r.cpu.idle)} of ${cpus * 100}%`],
    ['result', false, resultText],
  ];
}

/** The verdict of a rate search: the highest rate carried for `seconds` with zero loss (`who`: what carried it), and the next that was not. */
export function carriedText(runs: readonly FlowRun[], seconds: number, who: string): string {
  const b = bestRun(runs);
  if (!b) return `no rate was carried for ${seconds} s with zero loss (lowest tried: ${count(Math.min(...runs.map((r) => r.rate)))}/s)`;
  const above = firstFail(runs);
  const bound = above ? `${count(Math.round(above.offered))}/s was not` : 'the highest rate tried';
  return `highest rate carried for ${seconds} s with zero loss${who}: ${count(Math.round(b.offered))} events/s (${bound})`;
}

/** Where the CPU went at the lowest failing rate (`services`: [name, share] of the services), or '' if none failed. */
function limitText<R extends FlowRun>(runs: readonly R[], cpus: number, services: (r: R) => [string, number][]): string {
  const fail = firstFail(runs);
  if (!fail) return '';
  const used = services(fail).map(([name, share]) => `the ${name} ${pct(share)}`);
  return (
    `At ${count(Math.round(fail.offered))}/s, the lowest failing rate, ${used.join(', ')}, the driver ${pct(fail.cpu.children)}, ` +
    `the bench ${pct(fail.cpu.bench)}, other processes ${pct(fail.cpu.others)}, and ${pct(fail.cpu.idle)} of ${cpus * 100}% was idle.`
  );
}

/** Other processes busier than this (CPUs) during a run make its result a lower bound: the services competed for CPU. */
const BUSY_OTHERS = 0.5;

function busyText(runs: readonly FlowRun[], cpus: number): string {
  const most = Math.max(...runs.map((r) => r.cpu.others));
  if (!(most > BUSY_OTHERS)) return '';
  return (
    `Warning: other processes used up to ${pct(most)} of ${cpus * 100}% CPU during these runs, so the services, their ` +
    `driver and receiver competed for CPU with them: the rates above are a lower bound. Rerun on a quiet machine.`
  );
}

/** What a rate bench reports, printed to the console and as its BENCHMARKS.md section. */
export interface RateReport<R extends FlowRun> {
  name: string;
  heading: string;
  title: string;
  intro: string;
  m: Machine;
  load: number;
  methods: readonly string[];
  tables: readonly (readonly [caption: string, table: string])[];
  result: string;
  /** For the notes: where the CPU went at the lowest failing target rate (`services`: each service's share), and how busy other processes were. */
  runs: readonly R[];
  services: (r: R) => [string, number][];
}

function notes<R extends FlowRun>(r: RateReport<R>): string[] {
  const searched = r.runs.filter((x) => !Number.isNaN(x.rate));
  return [limitText(searched, r.m.cpus, r.services), busyText(r.runs, r.m.cpus)].filter((t) => t);
}

/** Prints the report's tables, result and notes, then publishes its results entries and its section. */
export function publishReport<R extends FlowRun>(r: RateReport<R>, entries: () => readonly ResultEntry[], smokeSize: string): void {
  console.log(`\n${r.title}, ${today()}: ${machineText(r.m)}; load average ${r.load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}\n`);
  for (const [, text] of r.tables) console.log(`${text}\n`);
  console.log(`result: ${r.result}`);
  for (const note of notes(r)) console.log(note);
  publish(r.name, r.heading, entries, () => reportSection(r), smokeSize);
}

function reportSection<R extends FlowRun>(r: RateReport<R>): string {
  const facts = [...sectionFacts(r.name, today(), r.m, r.load), ...r.methods.map((m) => `- ${m}`)];
  return sectionText(r.heading, r.name, r.intro, facts, [...tableBlocks(r.tables), `Result: ${r.result}.`, '', ...notes(r).flatMap((n) => [n, ''])]);
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
