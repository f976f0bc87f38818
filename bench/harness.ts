// What a bench that runs the real thing checks before it starts: root, the
// build outputs and the commands it calls. What it uses while it runs (waits,
// cleanup, CPU accounting, the bpftool driver) is @packetwatch/test-support.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Cleanup } from '@packetwatch/test-support';
import { BenchError, type Machine, REPO_ROOT, commandError, machine, rel, roundRate, table } from './report.js';

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

/** The checks of a bench that runs the real stack: root, the build, STACK_COMMANDS and any other commands it calls. */
export function requireStack(command: string, others: readonly (readonly [string, readonly string[]])[] = []): void {
  requireRoot('run probe + policy in network namespaces and BPF_PROG_TEST_RUN', command);
  requireBuild(STACK_BUILD_OUTPUTS);
  requireCommands([...others, ...STACK_COMMANDS]);
}

/** The start of a bench that runs the real stack (`make bench-<name>`): its checks, the machine, the load average now, and its Cleanup. */
export function startStackBench(name: string, others: readonly (readonly [string, readonly string[]])[] = []): { m: Machine; load: number; cleanup: Cleanup } {
  requireStack(`make bench-${name}`, others);
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

/** The run that carried the highest rate, if any. */
export function bestRun<R extends RateRun>(runs: readonly R[]): R | undefined {
  return runs.filter((r) => r.keptUp).sort((a, b) => b.offered - a.offered)[0];
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
    const fail = runs.filter((r) => !r.keptUp && (!pass || r.rate > pass.rate)).sort((a, b) => a.rate - b.rate)[0];
    if (!pass || !fail) break;
    const mid = roundRate(Math.sqrt(pass.rate * fail.rate));
    if (mid <= pass.rate || mid >= fail.rate || runs.some((r) => r.rate === mid)) break;
    runs.push(await run(mid));
  }
  return runs.sort((a, b) => a.rate - b.rate);
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
