// Where CPU time went: a process's own and its reaped children's, the machine's
// busy and idle time, and the shares of each between two snapshots.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
