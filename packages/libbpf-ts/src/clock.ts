// Kernel clocks as BigInt nanoseconds. BPF programs timestamp with
// bpf_ktime_get_ns (CLOCK_MONOTONIC), bpf_ktime_get_boot_ns (CLOCK_BOOTTIME)
// or bpf_ktime_get_coarse_ns (the monotonic clock as of the last tick);
// converting those to wall-clock time needs the same clocks read here.
import { native } from './native.js';

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_MONOTONIC_COARSE = 6;
const CLOCK_BOOTTIME = 7;

export const clock = {
  realtimeNs: (): bigint => native.clockNs(CLOCK_REALTIME),
  monotonicNs: (): bigint => native.clockNs(CLOCK_MONOTONIC),
  boottimeNs: (): bigint => native.clockNs(CLOCK_BOOTTIME),
  /**
   * The resolution of the coarse clock, as the kernel reports it
   * (clock_getres(CLOCK_MONOTONIC_COARSE)): one tick, 1 s / CONFIG_HZ.
   */
  coarseTickNs: (): bigint => native.clockResolutionNs(CLOCK_MONOTONIC_COARSE),
  /**
   * How far a time read with bpf_ktime_get_coarse_ns may trail the precise
   * clock: two ticks. The coarse time moves only at a tick, and then only by
   * whole tick intervals (timekeeping_advance), so right after a tick it can
   * already be almost a tick behind, and it falls another tick behind before
   * the next one. (Measured at HZ=250: up to 6.8 ms, idle and loaded alike.)
   */
  coarseLagNs: (): bigint => 2n * native.clockResolutionNs(CLOCK_MONOTONIC_COARSE),
};

/** Number of possible CPUs: the multiplier of per-CPU map values. */
export function possibleCpus(): number {
  return native.possibleCpus();
}
