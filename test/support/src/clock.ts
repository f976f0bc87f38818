// What a wall-clock event time can be expected to be, for the benches and
// the tests: shared so that the tolerance is written once, from documented
// resolutions rather than from one machine's speed.

/**
 * The probe turns the program's boot-time stamps into wall-clock time with an
 * offset it re-reads once a second; NTP slews the wall clock by at most
 * 500 ppm (the kernel's MAXFREQ), so the offset is off by at most 0.5 ms.
 */
export const WALL_OFFSET_SLACK_NS = 500_000n;

/**
 * Whether an event's wall-clock time (`tsNs`) fits a SYN sent between t0 and
 * t1 (CLOCK_REALTIME ns read around the send). The program stamps with the
 * coarse clock, which trails the precise clock by up to `lagNs`
 * (libbpf-ts clock.coarseLagNs(): two ticks).
 */
export function withinRun(tsNs: bigint, t0: bigint, t1: bigint, lagNs: bigint): boolean {
  return tsNs >= t0 - lagNs - WALL_OFFSET_SLACK_NS && tsNs <= t1 + WALL_OFFSET_SLACK_NS;
}
