// What the benches that run the real thing share: waiting with a deadline,
// undoing their setup even when they fail or are interrupted, and offering
// SYN events at a paced rate by running the attached program with bpftool.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { BenchError, type Machine, REPO_ROOT, commandError, machine, rel } from './report.js';

/** The verdict of a frame the program lets through. */
export const XDP_PASS = 2;
/** The driver hands bpftool one `prog run` per slice, for the events owed since the start. */
export const SLICE_MS = 10;
// A stall of this process must not turn into one burst larger than the ring
// holds (65,536 records at the default 4 MiB): events owed beyond a few slices
// are dropped from the schedule, and the row shows the rate actually offered.
export const MAX_SLICES_OWED = 3;
/** With several frame files, each slice runs at most this many of them (one `prog run` line each). */
export const FRAMES_PER_SLICE = 8;

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

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until check returns a value other than undefined; a BenchError after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new BenchError(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Undo steps, run once in reverse order; synchronous so that they also run from process 'exit'. */
export class Cleanup {
  readonly #steps: { what: string; step: () => void }[] = [];

  /** bench: the name in `bench-<name>: cleanup (...) failed`. */
  constructor(private readonly bench: string) {}

  add(what: string, step: () => void): void {
    this.#steps.push({ what, step });
  }

  /** A fresh temporary directory (packetwatch-bench-<name>-*), removed with the other steps. */
  tempDir(): string {
    const dir = mkdtempSync(join(os.tmpdir(), `packetwatch-bench-${this.bench}-`));
    this.add('remove the temp dir', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  run(): void {
    for (let s = this.#steps.pop(); s; s = this.#steps.pop()) {
      try {
        s.step();
      } catch (e) {
        console.error(`bench-${this.bench}: cleanup (${s.what}) failed: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Runs body with the steps run afterwards, whatever happens: also when the
   * process exits meanwhile, and on Ctrl-C or a kill, which must not leave
   * services, namespaces or pins behind.
   */
  async around<T>(body: () => Promise<T>): Promise<T> {
    const onExit = () => this.run();
    const onSignal = (signal: NodeJS.Signals) => {
      console.error(`bench-${this.bench}: ${signal}, cleaning up`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await body();
    } finally {
      this.run();
      process.off('exit', onExit);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds of a process from /proc/<pid>/stat: its own (utime + stime) and its reaped children's (cutime + cstime). */
export function processCpu(pid: string): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, utime 14 ... cstime 17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { own: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS, children: (Number(f[13]) + Number(f[14])) / CLOCK_TICKS };
}

/** CPU seconds (utime + stime) of a process so far; 0 once it is gone or when there is none. */
export function ownCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return processCpu(String(pid)).own;
  } catch {
    return 0;
  }
}

/** CPU seconds the whole machine spent busy and idle so far, over all CPUs (/proc/stat). */
export function machineCpu(): { busy: number; idle: number } {
  // cpu  user nice system idle iowait irq softirq steal ...: steal is time the hypervisor gave to someone else.
  const f = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').split(/\s+/).map(Number);
  const at = (i: number) => f[i] ?? 0;
  return { busy: (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / CLOCK_TICKS, idle: (at(3) + at(4)) / CLOCK_TICKS };
}

/** Where the machine's CPU time went so far, in CPU seconds: the named processes, this process, its reaped children, the machine. */
export interface CpuSnapshot<K extends string> {
  at: number;
  procs: Record<K, number>;
  bench: number;
  children: number;
  busy: number;
  idle: number;
}

/** CPUs used on average between two snapshots (1 = one CPU busy): each named process, and the rest. */
export type CpuShares<K extends string> = Record<K, number> & {
  /** This process's reaped children (a driver such as bpftool or hping3). */
  children: number;
  /** This process. */
  bench: number;
  /** Every other process on the machine, and steal time on a VM. */
  others: number;
  idle: number;
};

export function cpuSnapshot<K extends string>(pids: Record<K, number | undefined>): CpuSnapshot<K> {
  const self = processCpu('self');
  const procs = {} as Record<K, number>;
  for (const k of Object.keys(pids) as K[]) procs[k] = ownCpu(pids[k]);
  return { at: performance.now(), procs, bench: self.own, children: self.children, ...machineCpu() };
}

export function cpuShares<K extends string>(a: CpuSnapshot<K>, b: CpuSnapshot<K>): CpuShares<K> {
  const wall = (b.at - a.at) / 1000;
  const out = {} as Record<K, number>;
  let known = 0;
  for (const k of Object.keys(a.procs) as K[]) {
    out[k] = (b.procs[k] - a.procs[k]) / wall;
    known += out[k];
  }
  const children = (b.children - a.children) / wall;
  const bench = (b.bench - a.bench) / wall;
  known += children + bench;
  return Object.assign(out, { children, bench, others: Math.max(0, (b.busy - a.busy) / wall - known), idle: (b.idle - a.idle) / wall });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs `bpftool prog run` on the frame file, once; returns the program's verdict. */
export function runOnce(programId: number, frameFile: string): number {
  let out: string;
  try {
    out = execFileSync('bpftool', ['prog', 'run', 'id', String(programId), 'data_in', frameFile, 'repeat', '1'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    throw commandError(`bpftool prog run id ${programId} failed`, e);
  }
  const m = /Return value: (\d+)/.exec(out);
  if (!m) throw new BenchError(`bpftool prog run printed no verdict:\n${out}`);
  return Number(m[1]);
}

/**
 * Offers `rate` events/s for `ms` (or until `stop` is aborted) through one
 * long-lived `bpftool batch file -`: a process per 10 ms slice would cost more
 * than the events it makes (spawning bpftool takes about 12 ms here), whereas
 * a batch reads one `prog run ... repeat N` line per slice from its stdin and
 * runs it at once. Each slice asks for the events owed since the start, so
 * timer jitter evens out instead of accumulating.
 *
 * frames: one frame file, or several: then each slice's events are split
 * over up to FRAMES_PER_SLICE consecutive files of the list, and the next
 * slice goes on where this one stopped, so that over a second every file is
 * run about equally often (many sources and ports rather than one, as the
 * benches that feed the policy need).
 *
 * Descriptors: bpftool 7.1's batch mode keeps every data_in file it opens
 * open, one per line: a run of ms milliseconds needs about
 * ms / SLICE_MS * min(files, FRAMES_PER_SLICE) of them (8,000 for 10 s over
 * several files), more than a default soft limit of 1,024, so bpftool runs
 * under prlimit with room for that many (within the hard limit).
 */
export async function drive(
  programId: number,
  frames: string | readonly string[],
  rate: number,
  ms: number,
  onChild: (c: ChildProcess | undefined) => void,
  stop?: AbortSignal,
): Promise<{ issued: number; seconds: number }> {
  const perSlice = typeof frames === 'string' ? 1 : Math.min(frames.length, FRAMES_PER_SLICE);
  const hardLimit = Number(/^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1024);
  const nofile = Math.min(hardLimit, Math.ceil((ms / SLICE_MS) * perSlice * 1.5) + 1024);
  // prlimit sets the limit (up to the hard one: raising that needs CAP_SYS_RESOURCE) and execs bpftool in place: the child's pid is bpftool's.
  const child = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, 'bpftool', 'batch', 'file', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  onChild(child);
  let verdicts = 0;
  let wrong: string | undefined;
  let partial = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^Return value: (\d+)/.exec(l);
      if (!m) continue;
      verdicts++;
      if (Number(m[1]) !== XDP_PASS) wrong ??= l;
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  // 'close', not 'exit': by then its stdout has been read to the end, every verdict counted.
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => resolve(code));
    child.on('error', (e) => {
      stderr += e.message;
      resolve(null);
    });
  });
  child.stdin.on('error', () => {}); // a bpftool that died is reported by its exit code

  const files = typeof frames === 'string' ? [frames] : frames;
  if (files.length === 0) throw new BenchError('drive() needs at least one frame file');
  let nextFile = 0;
  const start = performance.now();
  let issued = 0;
  let forgiven = 0;
  let lines = 0;
  const cap = Math.max(1, Math.round((rate * SLICE_MS * MAX_SLICES_OWED) / 1000));
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = Math.min(performance.now() - start, ms);
      let owed = Math.floor((rate * elapsed) / 1000) - forgiven - issued;
      // Owed events beyond the cap are forgiven, not carried: see MAX_SLICES_OWED.
      if (owed > cap) {
        forgiven += owed - cap;
        owed = cap;
      }
      if (owed > 0) {
        const parts = Math.min(files.length, FRAMES_PER_SLICE, owed);
        let text = '';
        for (let p = 0; p < parts; p++) {
          // The first parts take the remainder: the slice runs exactly `owed` events.
          const n = Math.floor(owed / parts) + (p < owed % parts ? 1 : 0);
          text += `prog run id ${programId} data_in ${files[nextFile]} repeat ${n}\n`;
          nextFile = (nextFile + 1) % files.length;
          lines++;
        }
        child.stdin.write(text);
        issued += owed;
      }
      if (elapsed >= ms || stop?.aborted) resolve();
      else setTimeout(tick, SLICE_MS);
    };
    tick();
  });
  child.stdin.end();
  const code = await exited;
  const seconds = (performance.now() - start) / 1000;
  onChild(undefined);
  if (code !== 0) throw new BenchError(`bpftool batch exited with ${code}:\n${stderr.trim()}`);
  if (wrong) throw new BenchError(`the program returned another verdict than XDP_PASS: ${wrong}`);
  if (verdicts !== lines) throw new BenchError(`bpftool ran ${verdicts} of ${lines} prog run commands:\n${stderr.trim()}`);
  return { issued, seconds };
}
