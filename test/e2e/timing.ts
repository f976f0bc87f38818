// Time as the detectors see it, for tests that must let a detection window
// pass: there is no event to poll for the passage of time itself.
import { clock } from 'libbpf-ts';

/**
 * Waits until `windowSeconds` have passed since `sinceNs` (CLOCK_MONOTONIC)
 * as the detectors see it. Both take the XDP program's coarse timestamps,
 * which trail the precise clock by up to clock.coarseLagNs() (two ticks): a
 * SYN sent after this returns is stamped at least the window after any SYN
 * sent before `sinceNs`.
 */
export async function windowAfter(sinceNs: bigint, windowSeconds: number): Promise<void> {
  const needNs = BigInt(Math.ceil(windowSeconds * 1e9)) + clock.coarseLagNs();
  for (;;) {
    const leftNs = needNs - (clock.monotonicNs() - sinceNs);
    if (leftNs < 0n) return;
    await new Promise((r) => setTimeout(r, Number(leftNs / 1_000_000n) + 1));
  }
}
