// The policy's rule on recorded probes (`packetwatchctl replay`): each probe
// goes the way processRecords (pipeline.ts) takes an event, through the
// same parts: the allowlist and the host's own addresses by address, the decisions by source (the
// address's prefix, SourceKeys), closed mode's port state (portstate.ts),
// the detector, and what a detection becomes (blockrule.ts: reason, budget,
// TTL, at the source's escalation step of escalation.ts). The clock is the
// probes' own timestamps, never the wall clock: a block expires, and the
// budget's minute slides, on the capture's time.
import { PortState } from '@packetwatch/bpf/records';
import { type ConfigOf, type PortRange, WHOLE_ADDRESSES } from '@packetwatch/common';
import { Allowlist } from './allowlist.js';
import { BlockBudget, type BlockTerms, offenceBlock } from './blockrule.js';
import { allowPrefixesOf, escalationOf, fleetThresholdOf, policySettings } from './config.js';
import { Detector } from './detector.js';
import { type Escalation, nextStep } from './escalation.js';
import { countsTowardRules } from './portstate.js';
import { type SourceKey, SourceKeys, addressAt, sourceKey } from './sourcekey.js';

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
  portscanCount: policySettings.portscanCount,
  openPorts: policySettings.openPorts,
  blockTtlFactor: policySettings.blockTtlFactor,
  blockTtlMax: policySettings.blockTtlMax,
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
  /** The source's offence count (escalation.ts): 1, or one more than its previous block's when that lapsed within the capture. */
  offence: number;
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
  /** Closed mode: SYNs to a port the host accepts (ReplayPorts), not counted by the detector. */
  openPort: number;
}

/**
 * Closed mode (PW_PORTSCAN_COUNT=closed) on a capture: the port state the
 * XDP program would have written in each probe's event. A capture does not
 * say which sockets listened; it shows which ports the host answered: a
 * port is open at an address when the capture holds a SYN-ACK from that
 * address and port (answer(), from a first pass over the capture), or when
 * PW_OPEN_PORTS declares it. Any other port counts as closed, for the
 * whole capture.
 */
export class ReplayPorts {
  readonly closedMode: boolean;
  readonly declared: readonly PortRange[];
  /** Ports answered with a SYN-ACK, with the addresses (whole, sourceKey) that answered each, and their text. */
  readonly #answered = new Map<number, Map<SourceKey, string>>();
  readonly #text = new SourceKeys(WHOLE_ADDRESSES);

  constructor(c: { portscanCount: 'all' | 'closed'; openPorts: readonly PortRange[] }) {
    this.closedMode = c.portscanCount === 'closed';
    this.declared = c.openPorts;
  }

  /** A SYN-ACK from the 16-byte address at buf[at] (IPv4 as ::ffff:a.b.c.d), from `port`: the host accepts the port at that address. */
  answer(buf: Uint8Array, at: number, port: number): void {
    let by = this.#answered.get(port);
    if (!by) this.#answered.set(port, (by = new Map()));
    const key = sourceKey(buf, at);
    if (!by.has(key)) by.set(key, this.#text.textAt(buf, at));
  }

  /**
   * The port state of a probe to `port` at the 16-byte destination address
   * at buf[at]: Unknown in all mode and for a probe that is not a SYN
   * (stealth and fragment probes are not looked up: they always count);
   * Open for a declared port or one answered at that address; else Closed.
   */
  stateOf(syn: boolean, buf: Uint8Array, at: number, port: number): PortState {
    if (!this.closedMode || !syn) return PortState.Unknown;
    for (let i = 0; i < this.declared.length; i++) {
      const r = this.declared[i]!;
      if (port >= r[0] && port <= r[1]) return PortState.Open;
    }
    const by = this.#answered.get(port);
    return by?.has(sourceKey(buf, at)) ? PortState.Open : PortState.Closed;
  }

  /** The (address, port) pairs answered, by port then address text. */
  answered(): { address: string; port: number }[] {
    const out: { address: string; port: number }[] = [];
    for (const [port, by] of this.#answered) for (const address of by.values()) out.push({ address, port });
    return out.sort((a, b) => a.port - b.port || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }
}

/** The one probe a capture is the view of. */
const PROBE = 'replay';

export class ReplayRule {
  readonly keys: SourceKeys;
  readonly detector: Detector;
  readonly decisions: ReplayDecision[] = [];
  readonly counts: ReplayCounts = { probes: 0, allowlisted: 0, own: 0, fromBlocked: 0, openPort: 0 };
  readonly #allowlist: Allowlist;
  readonly #budget: BlockBudget;
  readonly #terms: BlockTerms;
  readonly #escalation: Escalation;
  /**
   * Sources decided on: the time their latest block ends (Infinity:
   * permanent) and its offence count. Kept after the block lapses: the
   * source's next detection is its next offence, as the policy's store
   * keeps it (a capture holds no operator's unblock, which would forgive).
   */
  readonly #blocked = new Map<SourceKey, { untilMs: number; offence: number }>();

  /**
   * ownAddresses: the host's, as a probe tells the policy its own (with
   * PW_WHITELIST_SELF, their probes are not counted). Throws ConfigError
   * naming PW_ALLOWLIST for an entry that is not an address or CIDR (or
   * PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX as the policy refuses them), and
   * AddressError for an own address that is not one.
   */
  constructor(c: ReplayConfig, ownAddresses: readonly string[] = []) {
    this.keys = new SourceKeys({ ipv6: c.ipv6Prefix, ipv4: c.ipv4Prefix });
    this.#allowlist = new Allowlist(allowPrefixesOf(c.allowlist), this.keys);
    if (c.whitelistSelf) this.#allowlist.setOwn(PROBE, ownAddresses);
    this.detector = new Detector({ portThreshold: c.portThreshold, windowSeconds: c.timeThreshold, maxSources: c.maxSources, pairThreshold: fleetThresholdOf(c) });
    this.#budget = new BlockBudget(c.maxBlocksPerMinute);
    this.#terms = { ttlSeconds: c.blockTtl, cappedTtlSeconds: c.cappedBlockTtl };
    this.#escalation = escalationOf(c);
  }

  /**
   * One probe: the 16-byte source address at buf[at] (IPv4 as
   * ::ffff:a.b.c.d), its destination port, its time, and its port state
   * (ReplayPorts.stateOf; Unknown in all mode). Returns the decision it
   * makes, if any. Allocates nothing for an IPv4 source but at a decision.
   */
  probe(buf: Uint8Array, at: number, port: number, tsMs: number, portState: number = PortState.Unknown): ReplayDecision | undefined {
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
    const previous = this.#blocked.get(key);
    if (previous !== undefined && previous.untilMs > tsMs) {
      this.counts.fromBlocked++;
      return undefined;
    }
    if (!countsTowardRules(portState)) {
      this.counts.openPort++;
      return undefined;
    }
    const det = this.detector.observe(key, port, tsMs);
    if (!det) return undefined;
    const short = !this.#budget.take(tsMs);
    // The previous block lapsed (it is behind this probe): the next offence.
    const step = nextStep(this.#escalation, previous && { offence: previous.offence, endedMs: undefined });
    const { reason, ttlSeconds } = offenceBlock(det, short, this.#terms, step, () => 'replay');
    const expiresMs = ttlSeconds > 0 ? tsMs + ttlSeconds * 1000 : undefined;
    this.#blocked.set(key, { untilMs: expiresMs ?? Infinity, offence: step.offence });
    const d: ReplayDecision = { source: this.keys.textAt(buf, at), reason, createdMs: tsMs, expiresMs, ports: det.ports, port, capped: short, offence: step.offence };
    this.decisions.push(d);
    return d;
  }
}
