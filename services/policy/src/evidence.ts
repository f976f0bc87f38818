// The evidence kept with each decision: why it was made, for `packetwatchctl
// explain`. Collected once, when the decision is made, from what is already
// held (the detection's ports or pairs and their span, the feed's recent
// connections for each probe's time, kind and address): nothing is added to
// the detector per tracked source. Kept in the store with the decision
// (store.ts, column `evidence`), never in memory with the active decisions.
//
// Bounded: at most EVIDENCE_PROBES probes a decision, the most recent.
//
// The ports (or pairs) are always the detector's; a probe's time, kind and
// address come from the feed, which keeps the last 5,000 connections of all
// sources: on a host taking more than that between a slow scanner's first
// counted probe and its detection, the earlier ones are kept by port (and
// probe) alone, kind "unknown". Exact kinds for those would cost a byte per
// kept port in the detector.
import { PortState as KernelPortState } from '@packetwatch/bpf/records';
import { OPEN_PORT_MARK } from '@packetwatch/common/table';
import type { Detection } from './detector.js';
import type { Feed, FeedEvent } from './feed.js';
import { countsTowardRules } from './portstate.js';
import type { ProbeRegistry } from './probes.js';
import type { SourceKey, SourceKeys } from './sourcekey.js';

/**
 * K, the probes kept with a decision: the last 32 that made it. The default
 * rules (N = 3 ports, F = 10 pairs) fit whole; a longer rule (N or F up to
 * 255) keeps its latest 32, which show the scan (its ports, kinds and probes)
 * while a decision's evidence stays near 3 kB in the store (about 90 bytes of
 * JSON a probe) and nothing in memory.
 */
export const EVIDENCE_PROBES = 32;

/** Which engine decided: the kernel's rule, the policy's per-host rule, its fleet rule, an operator, or a kernel block adopted at reconcile. */
export type Engine = 'kernel' | 'policy' | 'fleet' | 'operator' | 'adopted';

/** The probed port's state, as the kernel's event said (closed mode, PW_PORTSCAN_COUNT=closed); unknown in all mode and for probes that are not SYNs. */
export type PortState = 'unknown' | 'open' | 'closed';

export interface ProbeEvidence {
  /** The probe's time (the kernel's stamp on the policy's clock), ms; undefined when the feed no longer held it. */
  timeMs: number | undefined;
  port: number;
  /** "SYN", or probeLabel's "FIN", "NULL", "XMAS", "SYN+FIN", "fragment"; "unknown" when the feed no longer held it. */
  kind: string;
  /** The probe (host) that saw it; "" when unknown. */
  probeId: string;
  /** The address that sent it (inside the source's prefix); "" when unknown. */
  address: string;
  portState: PortState;
}

export interface Evidence {
  engine: Engine;
  /** The rule in force when it was decided. */
  portThreshold: number;
  windowSeconds: number;
  fleetThreshold: number;
  /** Beyond the blocks-per-minute budget: the short TTL. */
  capped: boolean;
  /** The TTL granted, seconds (0 permanent), and the escalation step (offence) it was computed for; 0 for an operator's block. */
  ttlSeconds: number;
  offence: number;
  /** The counted probes, oldest first, at most EVIDENCE_PROBES. */
  probes: ProbeEvidence[];
}

export interface Rule {
  portThreshold: number;
  windowSeconds: number;
  fleetThreshold: number;
}

/** The kind of a probe as the feed shows it: its label, "SYN" for a SYN. */
/** An open port's SYN is marked OPEN_PORT_MARK in the feed: still a SYN. */
const kindOf = (e: FeedEvent): string => (e.message && e.message !== OPEN_PORT_MARK ? e.message : 'SYN');

const portStateOf = (e: FeedEvent): PortState => (e.portState === KernelPortState.Open ? 'open' : e.portState === KernelPortState.Closed ? 'closed' : 'unknown');

/** A feed connection as evidence, with its port's state as the kernel's event said (closed mode; 'unknown' otherwise). */
const probeOf = (e: FeedEvent): ProbeEvidence => ({ timeMs: e.timeMs, port: e.port, kind: kindOf(e), probeId: e.probeId, address: e.source, portState: portStateOf(e) });

/**
 * The probes of a detection: its ports (or fleet pairs), each matched with
 * its latest hit among the feed's recent connections of the source within
 * the detection's span; a target the feed no longer holds keeps its port
 * (and probe) only. A detection the kernel made alone (the policy saw only
 * the crossing probe) takes the source's distinct ports from the feed,
 * within the window before it.
 */
export function detectionProbes(det: Detection, key: SourceKey, keys: SourceKeys, feed: Feed, probes: ProbeRegistry, rule: Rule): ProbeEvidence[] {
  const kernelAlone = !det.pairs && det.ports.length === 1 && rule.portThreshold > 1;
  const from = kernelAlone ? det.tsMs - rule.windowSeconds * 1000 : det.firstMs;
  const to = Math.max(det.lastMs, det.tsMs);
  // An open port's SYN (closed mode) counted for neither engine: never evidence.
  // Newest first, so that the walk of the feed stops as soon as every
  // target has its latest hit (a detection is made at its newest probe).
  function* seen(): Generator<FeedEvent> {
    for (const e of feed.connections(from, (addrs, at) => keys.at(addrs, at) === key)) {
      // An open port's SYN (closed mode) counted for neither engine: never evidence.
      if (e.timeMs <= to && countsTowardRules(e.portState ?? KernelPortState.Unknown)) yield e;
    }
  }
  if (kernelAlone) {
    // The latest hit of each distinct port, the last N of them.
    const latest = new Map<number, FeedEvent>();
    for (const e of seen()) {
      if (!latest.has(e.port)) latest.set(e.port, e);
      if (latest.size === rule.portThreshold) break;
    }
    const out = [...latest.values()].reverse().map(probeOf);
    return out.length ? bound(out) : [{ timeMs: det.tsMs, port: det.port, kind: 'unknown', probeId: '', address: '', portState: 'unknown' }];
  }
  const targets = det.pairs ? det.pairs.map((p) => ({ port: p.port, probeId: probes.numbers.idOf(p.probe) })) : det.ports.map((port) => ({ port, probeId: undefined as string | undefined }));
  const hits: (FeedEvent | undefined)[] = targets.map(() => undefined);
  let missing = targets.length;
  for (const e of seen()) {
    targets.forEach((t, i) => {
      if (hits[i] === undefined && e.port === t.port && (t.probeId === undefined || e.probeId === t.probeId)) {
        hits[i] = e;
        missing--;
      }
    });
    if (missing === 0) break;
  }
  return bound(
    targets.map((t, i) => {
      const hit = hits[i];
      return hit ? probeOf(hit) : { timeMs: undefined, port: t.port, kind: 'unknown', probeId: t.probeId ?? '', address: '', portState: 'unknown' as const };
    }),
  );
}

/** The last EVIDENCE_PROBES of a list, oldest first. */
export function bound<T>(list: T[]): T[] {
  return list.length > EVIDENCE_PROBES ? list.slice(-EVIDENCE_PROBES) : list;
}

/** Evidence as stored (JSON), and back; a malformed text reads as none. */
export function encodeEvidence(e: Evidence): string {
  return JSON.stringify({ ...e, probes: bound(e.probes) });
}

export function decodeEvidence(text: string | null | undefined): Evidence | undefined {
  if (!text) return undefined;
  try {
    const e = JSON.parse(text) as Evidence;
    return typeof e === 'object' && e !== null && Array.isArray(e.probes) ? e : undefined;
  } catch {
    return undefined;
  }
}
