// Escalating blocks (PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX): a source
// detected again after its previous block lapsed is blocked for the previous
// TTL times the factor, up to the maximum. The arithmetic lives here once;
// decisions.ts asks it for every detector block (kernel-detected, policy-
// detected per host or across the fleet alike).
import { MAX_TTL_SECONDS } from '@packetwatch/common';

export interface Escalation {
  /** PW_BLOCK_TTL: the first offence's TTL in seconds; 0 permanent (never escalates). */
  baseSeconds: number;
  /** PW_BLOCK_TTL_FACTOR: at least 1 (1: no escalation). */
  factor: number;
  /** PW_BLOCK_TTL_MAX in seconds; 0: up to the longest TTL (3650 days). */
  maxSeconds: number;
}

/** A detection's offence count and TTL: offence 1 is PW_BLOCK_TTL. */
export interface Step {
  offence: number;
  /** Seconds; 0 permanent. */
  ttlSeconds: number;
}

/** The most any block lasts: the maximum, else the longest TTL a setting takes. */
export function ceilingOf(e: Escalation): number {
  return e.maxSeconds > 0 ? e.maxSeconds : MAX_TTL_SECONDS;
}

/**
 * The TTL of a source's offence-th block (offence ≥ 1): PW_BLOCK_TTL ×
 * factor^(offence - 1), at most the ceiling, in whole seconds (rounded
 * down, never below PW_BLOCK_TTL). That is the previous offence's TTL times
 * the factor, up to the maximum. Permanent stays permanent.
 */
export function ttlForOffence(e: Escalation, offence: number): number {
  if (e.baseSeconds === 0) return 0;
  const ceiling = ceilingOf(e);
  let ttl = e.baseSeconds;
  // Step by step, stopping at the ceiling: no power overflows, and factor 1 costs one comparison.
  for (let k = 1; k < offence && ttl < ceiling && e.factor > 1; k++) ttl *= e.factor;
  return Math.max(e.baseSeconds, Math.floor(Math.min(ttl, ceiling)));
}

/**
 * The step of a new detection of a source, from its previous offence (the
 * latest detector or kernel decision on it, if the store still holds it):
 * one more than that, when that block lapsed (expired); 1 after none, or
 * after one an operator (or the allowlist) ended: ending a block forgives.
 */
export function nextStep(e: Escalation, previous: { offence?: number | undefined; endedMs: number | undefined } | undefined): Step {
  const last = previous?.offence ?? 0;
  const offence = last > 0 && previous!.endedMs === undefined ? last + 1 : 1;
  return { offence, ttlSeconds: ttlForOffence(e, offence) };
}
