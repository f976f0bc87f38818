// Kernel clocks as BigInt nanoseconds. BPF programs timestamp with
// bpf_ktime_get_ns (CLOCK_MONOTONIC) or bpf_ktime_get_boot_ns (CLOCK_BOOTTIME);
// converting those to wall-clock time needs the same clocks read here.
import { native } from './native.js';

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_BOOTTIME = 7;

export const clock = {
  realtimeNs: (): bigint => native.clockNs(CLOCK_REALTIME),
  monotonicNs: (): bigint => native.clockNs(CLOCK_MONOTONIC),
  boottimeNs: (): bigint => native.clockNs(CLOCK_BOOTTIME),
};

/** Number of possible CPUs: the multiplier of per-CPU map values. */
export function possibleCpus(): number {
  return native.possibleCpus();
}
