// The policy's rule on recorded probes (`packetwatchctl replay`): each probe
// goes the way processRecords (pipeline.ts) takes an event, through the
// same parts: the allowlist and the host's own addresses by address, the decisions by source (the
// address's prefix, SourceKeys), the detector, and what a detection becomes
// (blockrule.ts: reason, budget, TTL). The clock is the probes' own
// timestamps, never the wall clock: a block expires, and the budget's
// minute slides, on the capture's time.
import type { ConfigOf } from '@packetwatch/common';
import { Allowlist } from './allowlist.js';
import { BlockBudget, type BlockTerms, detectorBlock } from './blockrule.js';
import { allowPrefixesOf, fleetThresholdOf, policySettings } from './config.js';
import { Detector } from './detector.js';
import { type SourceKey, SourceKeys, addressAt } from './sourcekey.js';

/** The policy's settings that decide what a capture's probes come to: its variables, flags and defaults. */
export const replaySettings = {
  timeThreshold: policySettings.timeThreshold,
  portThreshold: policySettings.portThreshold,
  fleetThreshold: policySettings.fleetThreshold,
  ipv6Prefix: policySettings.ipv6Prefix,
  ipv4Prefix: policySettings.ipv4Prefix,
  allowlist: policySettings.allowlist,
  whitelistSelf: policySettings.whitelistSelf,
  blockTtl: policySettings.blockTtl,
  maxBlocksPerMinute: policySettings.maxBlocksPerMinute,
  cappedBlockTtl: policySettings.cappedBlockTtl,
  maxSources: policySettings.maxSources,
};

export type ReplayConfig = ConfigOf<typeof replaySettings>;

/** A decision the policy would have made. */
export interface ReplayDecision {
  /** The source (formatSource: an address, or a prefix under PW_IPV6_PREFIX / PW_IPV4_PREFIX). */
  source: string;
  reason: string;
  /** The crossing probe's time, ms since the epoch. */
  createdMs: number;
  /** Undefined: permanent. */
  expiresMs: number | undefined;
  /** The N ports, oldest first, and the crossing probe's. */
  ports: number[];
  port: number;
  /** Beyond the blocks-per-minute budget: blocked for the short TTL. */
  capped: boolean;
}

export interface ReplayCounts {
  /** Probes taken. */
  probes: number;
  /** From allowlisted addresses (PW_ALLOWLIST): not counted by the detector. */
  allowlisted: number;
  /** From the host's own addresses (with PW_WHITELIST_SELF): not counted by the detector. */
  own: number;
  /** From sources under a decision at their time: the probe would have dropped them. */
  fromBlocked: number;
}

/** The one probe a capture is the view of. */
const PROBE = 'replay';

export class ReplayRule {
  readonly keys: SourceKeys;
  readonly detector: Detector;
  readonly decisions: ReplayDecision[] = [];
  readonly counts: ReplayCounts = { probes: 0, allowlisted: 0, own: 0, fromBlocked: 0 };
  readonly #allowlist: Allowlist;
  readonly #budget: BlockBudget;
  readonly #terms: BlockTerms;
  /** Sources under a decision: the time it ends (Infinity: permanent). */
  readonly #blocked = new Map<SourceKey, number>();

  /**
   * ownAddresses: the host's, as a probe tells the policy its own (with
   * PW_WHITELIST_SELF, their probes are not counted). Throws ConfigError
   * naming PW_ALLOWLIST for an entry that is not an address or CIDR, and
   * AddressError for an own address that is not one.
   */
  constructor(c: ReplayConfig, ownAddresses: readonly string[] = []) {
    this.keys = new SourceKeys({ ipv6: c.ipv6Prefix, ipv4: c.ipv4Prefix });
    this.#allowlist = new Allowlist(allowPrefixesOf(c.allowlist), this.keys);
    if (c.whitelistSelf) this.#allowlist.setOwn(PROBE, ownAddresses);
    this.detector = new Detector({ portThreshold: c.portThreshold, windowSeconds: c.timeThreshold, maxSources: c.maxSources, pairThreshold: fleetThresholdOf(c) });
    this.#budget = new BlockBudget(c.maxBlocksPerMinute);
    this.#terms = { ttlSeconds: c.blockTtl, cappedTtlSeconds: c.cappedBlockTtl };
  }

  /**
   * One probe: the 16-byte source address at buf[at] (IPv4 as
   * ::ffff:a.b.c.d), its destination port, its time. Returns the decision
   * it makes, if any. Allocates nothing for an IPv4 source but at a
   * decision.
   */
  probe(buf: Uint8Array, at: number, port: number, tsMs: number): ReplayDecision | undefined {
    this.counts.probes++;
    const addr = addressAt(buf, at);
    const key = this.keys.at(buf, at, addr);
    if (this.#allowlist.hasSource(addr, buf, at)) {
      this.counts.allowlisted++;
      return undefined;
    }
    if (this.#allowlist.isOwn(PROBE, key, buf, at)) {
      this.counts.own++;
      return undefined;
    }
    const until = this.#blocked.get(key);
    if (until !== undefined) {
      if (until > tsMs) {
        this.counts.fromBlocked++;
        return undefined;
      }
      this.#blocked.delete(key);
    }
    const det = this.detector.observe(key, port, tsMs);
    if (!det) return undefined;
    const short = !this.#budget.take(tsMs);
    const { reason, ttlSeconds } = detectorBlock(det, short, this.#terms, () => 'replay');
    const expiresMs = ttlSeconds > 0 ? tsMs + ttlSeconds * 1000 : undefined;
    this.#blocked.set(key, expiresMs ?? Infinity);
    const d: ReplayDecision = { source: this.keys.textAt(buf, at), reason, createdMs: tsMs, expiresMs, ports: det.ports, port, capped: short };
    this.decisions.push(d);
    return d;
  }
}
