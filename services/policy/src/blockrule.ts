// What a detection becomes: its reason, and how long its block lasts under
// the blocks-per-minute budget (PW_BLOCK_TTL, PW_MAX_BLOCKS_PER_MINUTE,
// PW_CAPPED_BLOCK_TTL). Pure, on a clock the caller gives: the policy's
// decisions run it on the wall clock, `packetwatchctl replay` on a
// capture's own timestamps.
import type { Detection } from './detector.js';
import type { Step } from './escalation.js';

/**
 * What a detection is recorded and shown as: the N ports of the per-host
 * rule, or the F pairs of the fleet rule by probe (probeId names a probe by
 * its number), with the time they span.
 */
export function scanReason(det: Detection, probeId: (n: number) => string): string {
  const windowS = ((det.lastMs - det.firstMs) / 1000).toFixed(3);
  if (det.pairs) {
    const byProbe = new Map<string, number[]>();
    for (const p of det.pairs) {
      const id = probeId(p.probe);
      const ports = byProbe.get(id);
      if (ports) ports.push(p.port);
      else byProbe.set(id, [p.port]);
    }
    const list = [...byProbe].map(([id, ports]) => `${id}: ${ports.join(', ')}`).join('; ');
    return `port scan across the fleet: ${det.pairs.length} (probe, port) pairs on ${byProbe.size} probes within ${windowS}s (${list})`;
  }
  return det.ports.length > 1 ? `port scan: ${det.ports.length} ports (${det.ports.join(', ')}) within ${windowS}s` : `port scan: detected in the kernel at port ${det.port}`;
}

/** How long detector blocks last, in seconds (0: permanent). */
export interface BlockTerms {
  /** PW_BLOCK_TTL. */
  ttlSeconds: number;
  /** PW_CAPPED_BLOCK_TTL. */
  cappedTtlSeconds: number;
}

/** A block beyond the budget: the short TTL, or the block TTL when that is shorter still. */
export function cappedTtl(t: BlockTerms): number {
  return t.ttlSeconds > 0 ? Math.min(t.ttlSeconds, t.cappedTtlSeconds) : t.cappedTtlSeconds;
}

/** A detector's block: its reason and length, short (capped) when beyond the budget. */
export function detectorBlock(det: Detection, short: boolean, t: BlockTerms, probeId: (n: number) => string): { reason: string; ttlSeconds: number } {
  const reason = scanReason(det, probeId);
  if (!short) return { reason, ttlSeconds: t.ttlSeconds };
  const ttl = cappedTtl(t);
  return { reason: `${reason}; beyond the blocks-per-minute budget: ${ttl}s`, ttlSeconds: ttl };
}

/**
 * A detector's block at its offence's escalation step (escalation.ts): at
 * full length the step's TTL; beyond the budget the short TTL, as ever (the
 * offence counts all the same). The policy's decisions and replay both make
 * their blocks here.
 */
export function offenceBlock(det: Detection, short: boolean, t: BlockTerms, step: Step, probeId: (n: number) => string): { reason: string; ttlSeconds: number } {
  return detectorBlock(det, short, short ? t : { ...t, ttlSeconds: step.ttlSeconds }, probeId);
}

/**
 * The blocks-per-minute budget: a sliding 60-second window of the blocks
 * made at full length (and adoptions of kernel blocks). Spoofed sources are
 * free for an attacker, and so are forged kernel views: without a cap, a
 * flood of forged scans (or one fake probe's ListBlocks) could make us block
 * the whole internet, fill the kernel blocklist, and lock out legitimate
 * peers.
 */
export class BlockBudget {
  #recent: number[] = [];

  /** perMinute: 0 means no cap. */
  constructor(readonly perMinute: number) {}

  /** Whether one more block may be made at nowMs at full length; if so, counts it. */
  take(nowMs: number): boolean {
    if (this.perMinute <= 0) return true;
    this.#recent = this.#recent.filter((t) => t > nowMs - 60_000);
    if (this.#recent.length >= this.perMinute) return false;
    this.#recent.push(nowMs);
    return true;
  }
}
