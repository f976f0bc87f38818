// `packetwatchctl explain <ip|prefix>`: why a source is, is not, or was
// blocked, from the policy's Explain: the rule in force, the latest decision
// on the source with its evidence (the counted probes, the engine, the TTL
// and escalation step) and the kernels holding it.
import { type Duration, ExplainEngine, ExplainPortState, type ExplainProbe, type ExplainResponse, type ExplainRule } from '@packetwatch/proto';
import { type BlockRow, decisionRow, expiresText } from './blocks.js';
import { type KeyValue, humanDuration, iso, keyValues, relative, table } from './format.js';

export type EngineName = 'kernel' | 'policy' | 'fleet' | 'operator' | 'adopted';

export interface RuleJson {
  portThreshold: number;
  windowSeconds: number;
  /** 0: the fleet rule is off. */
  fleetPortThreshold: number;
  /** 0: permanent. */
  blockTtlSeconds: number;
  blockTtlFactor: number;
  /** null: up to 3650 days. */
  blockTtlMaxSeconds: number | null;
  maxBlocksPerMinute: number;
  cappedBlockTtlSeconds: number;
}

export interface ProbeJson {
  time: string | null;
  port: number;
  kind: string;
  probeId: string;
  address: string;
  portState: 'unknown' | 'open' | 'closed';
}

export interface ExplainJson {
  source: string;
  blocked: boolean;
  rule: RuleJson | null;
  decision: BlockRow | null;
  engine: EngineName | null;
  decidedUnder: RuleJson | null;
  capped: boolean;
  offence: number;
  /** The TTL the decision was given; 0 permanent, null without a decision. */
  ttlSeconds: number | null;
  probes: ProbeJson[];
  next: { offence: number; ttlSeconds: number };
  /** Each connected probe's kernel blocklist on the source, read as the policy answered. */
  kernel: { probeId: string; blocked: boolean; created: string | null; expires: string | null; error: string | null }[];
  /** What the policy's detector holds for the source now (port, time, and the probe under the fleet rule). */
  tracked: ProbeJson[];
}

const ENGINE: Partial<Record<ExplainEngine, EngineName>> = {
  [ExplainEngine.EXPLAIN_ENGINE_KERNEL]: 'kernel',
  [ExplainEngine.EXPLAIN_ENGINE_POLICY]: 'policy',
  [ExplainEngine.EXPLAIN_ENGINE_FLEET]: 'fleet',
  [ExplainEngine.EXPLAIN_ENGINE_OPERATOR]: 'operator',
  [ExplainEngine.EXPLAIN_ENGINE_ADOPTED]: 'adopted',
};

const ENGINE_TEXT: Record<EngineName, string> = {
  kernel: "the kernel (the XDP program's rule, at the crossing probe)",
  policy: "the policy (the per-host rule)",
  fleet: "the policy's fleet rule (across probes)",
  operator: 'an operator (packetwatchctl block)',
  adopted: "adopted from a probe's kernel blocklist (no evidence)",
};

const secondsOf = (d: Duration | undefined): number => (d === undefined ? 0 : Number(d.seconds) + d.nanos / 1e9);

function ruleJson(r: ExplainRule | undefined): RuleJson | null {
  if (!r) return null;
  return {
    portThreshold: r.portThreshold,
    windowSeconds: secondsOf(r.window),
    fleetPortThreshold: r.fleetPortThreshold,
    blockTtlSeconds: secondsOf(r.blockTtl),
    blockTtlFactor: r.blockTtlFactor,
    blockTtlMaxSeconds: r.blockTtlMax === undefined ? null : secondsOf(r.blockTtlMax),
    maxBlocksPerMinute: r.maxBlocksPerMinute,
    cappedBlockTtlSeconds: secondsOf(r.cappedBlockTtl),
  };
}

const PORT_STATE: Record<ExplainPortState, ProbeJson['portState']> = {
  [ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED]: 'unknown',
  [ExplainPortState.EXPLAIN_PORT_STATE_OPEN]: 'open',
  [ExplainPortState.EXPLAIN_PORT_STATE_CLOSED]: 'closed',
  [ExplainPortState.UNRECOGNIZED]: 'unknown',
};

const probeJson = (p: ExplainProbe): ProbeJson => ({
  time: iso(p.time),
  port: p.port,
  kind: p.kind,
  probeId: p.probeId,
  address: p.address,
  portState: PORT_STATE[p.portState] ?? 'unknown',
});

export function explainJson(res: ExplainResponse, nowMs: number): ExplainJson {
  return {
    source: res.source,
    blocked: res.blocked,
    rule: ruleJson(res.rule),
    decision: res.decision ? decisionRow(res.decision, nowMs) : null,
    engine: ENGINE[res.engine] ?? null,
    decidedUnder: ruleJson(res.decidedUnder),
    capped: res.capped,
    offence: res.offence,
    ttlSeconds: res.decision ? secondsOf(res.ttl) : null,
    probes: res.probes.map(probeJson),
    next: { offence: res.nextOffence, ttlSeconds: secondsOf(res.nextTtl) },
    kernel: res.kernel.map((k) => ({ probeId: k.probeId, blocked: k.blocked, created: iso(k.created), expires: iso(k.expires), error: k.error || null })),
    tracked: res.tracked.map(probeJson),
  };
}

/** A TTL as people read it: "permanent", "2m", "1h 30m". */
export const ttlText = (s: number): string => (s === 0 ? 'permanent' : humanDuration(s));

/** "3 ports within 1m", with the fleet rule when it is on. */
function thresholdsText(r: RuleJson): string {
  const host = `${r.portThreshold} ports within ${humanDuration(r.windowSeconds)}`;
  return r.fleetPortThreshold > 0 ? `${host}, or ${r.fleetPortThreshold} (probe, port) pairs across the fleet` : host;
}

/** "1m, ×2 a repeat offence up to 1h"; "permanent"; "1m, no escalation" (explain, status). */
export function ttlRuleText(r: Pick<RuleJson, 'blockTtlSeconds' | 'blockTtlFactor' | 'blockTtlMaxSeconds'>): string {
  if (r.blockTtlSeconds === 0) return 'permanent';
  if (r.blockTtlFactor === 1) return `${ttlText(r.blockTtlSeconds)}, no escalation`;
  return `${ttlText(r.blockTtlSeconds)}, ×${r.blockTtlFactor} a repeat offence up to ${r.blockTtlMaxSeconds === null ? '3650d' : ttlText(r.blockTtlMaxSeconds)}`;
}

export const PROBE_HEADERS = ['TIME', 'PORT', 'KIND', 'STATE', 'PROBE', 'ADDRESS'] as const;

export function explainText(doc: ExplainJson, nowMs: number): string {
  const rows: KeyValue[] = [['source', doc.source]];
  const d = doc.decision;
  if (d === null) rows.push(['status', 'not blocked: no decision on this source']);
  else if (doc.blocked && d.shadow) rows.push(['status', `SHADOW: would be blocked (decision ${d.decisionId}, made in shadow mode: nothing is dropped for it), expires ${expiresText(d, nowMs)}`]);
  else if (doc.blocked) rows.push(['status', `blocked (decision ${d.decisionId}), expires ${expiresText(d, nowMs)}`]);
  else rows.push(['status', `not blocked: decision ${d.decisionId} ${expiresText(d, nowMs)}`]);
  if (doc.rule) {
    rows.push(['rule', thresholdsText(doc.rule)]);
    rows.push(['block ttl', ttlRuleText(doc.rule)]);
    rows.push(['budget', `${doc.rule.maxBlocksPerMinute} blocks a minute, beyond them ${ttlText(doc.rule.cappedBlockTtlSeconds)}`]);
  }
  if (d !== null) {
    rows.push(['reason', d.reason]);
    rows.push(['decided by', doc.engine ? ENGINE_TEXT[doc.engine] : d.origin ?? 'unknown']);
    if (doc.decidedUnder) rows.push(['under', thresholdsText(doc.decidedUnder)]);
    const ttl = doc.ttlSeconds === null ? 'unknown' : ttlText(doc.ttlSeconds);
    rows.push(['ttl', doc.capped ? `${ttl} (beyond the blocks-per-minute budget)` : ttl]);
    rows.push(['offence', doc.offence > 0 ? String(doc.offence) : '- (an operator\'s block is no offence)']);
    if (d.active) rows.push(['enforced by', d.enforcedBy.length ? d.enforcedBy.join(', ') : '-']);
    if (d.active && d.missingOn.length) rows.push(['missing on', d.missingOn.join(', ')]);
  }
  rows.push(['next offence', `${doc.next.offence}, ${doc.next.ttlSeconds === 0 ? 'blocked permanently' : `blocked for ${ttlText(doc.next.ttlSeconds)}`}`]);
  for (const [i, k] of doc.kernel.entries()) {
    const state = k.error !== null ? `unknown (${k.error})` : k.blocked ? `blocked, expires ${k.expires === null ? 'never' : relative(new Date(k.expires), nowMs)}` : 'not blocked';
    rows.push([i === 0 ? 'kernel' : '', `${k.probeId}: ${state}`]);
  }
  rows.push([
    'tracking',
    doc.tracked.length === 0
      ? 'nothing (no probe of it within the window)'
      : doc.tracked.map((t) => `${t.probeId ? `${t.probeId} ` : ''}${t.port} ${t.time === null ? '' : relative(new Date(t.time), nowMs)}`.trimEnd()).join(', '),
  ]);
  const parts = [keyValues(rows, '')];
  if (doc.probes.length > 0) {
    parts.push(table(PROBE_HEADERS, doc.probes.map((p) => [p.time ?? 'unknown', String(p.port), p.kind, p.portState, p.probeId || '-', p.address || '-'])));
  } else if (d !== null) {
    parts.push('No probes were counted for this decision.');
  }
  return parts.join('\n\n');
}
