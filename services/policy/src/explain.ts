// Explain (packetwatchctl explain): why a source is, is not, or was
// blocked, from the latest decision on it and the evidence kept with it
// (evidence.ts), the rule in force, and the escalation a next detection of it
// would get (escalation.ts).
import { ServerError, GrpcStatus } from '@packetwatch/common';
import { type Decision, type Duration, ExplainEngine, ExplainPortState, type ExplainProbe, type ExplainResponse, type ExplainRule } from '@packetwatch/proto';
import type { Decisions } from './decisions.js';
import { nextStep } from './escalation.js';
import type { Engine, PortState, ProbeEvidence } from './evidence.js';
import type { DecisionRecord } from './store.js';

const ENGINE: Record<Engine, ExplainEngine> = {
  kernel: ExplainEngine.EXPLAIN_ENGINE_KERNEL,
  policy: ExplainEngine.EXPLAIN_ENGINE_POLICY,
  fleet: ExplainEngine.EXPLAIN_ENGINE_FLEET,
  operator: ExplainEngine.EXPLAIN_ENGINE_OPERATOR,
  adopted: ExplainEngine.EXPLAIN_ENGINE_ADOPTED,
};

const PORT_STATE: Record<PortState, ExplainPortState> = {
  unknown: ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED,
  open: ExplainPortState.EXPLAIN_PORT_STATE_OPEN,
  closed: ExplainPortState.EXPLAIN_PORT_STATE_CLOSED,
};

const duration = (s: number): Duration => ({ seconds: BigInt(Math.trunc(s)), nanos: Math.round((s - Math.trunc(s)) * 1e9) });

export interface ExplainContext {
  decisions: Decisions;
  /** The blocks-per-minute budget and the short TTL (PW_MAX_BLOCKS_PER_MINUTE, PW_CAPPED_BLOCK_TTL). */
  maxBlocksPerMinute: number;
  cappedTtlSeconds: number;
  toDecision: (d: DecisionRecord) => Decision;
}

const probeOf = (p: ProbeEvidence): ExplainProbe => ({
  time: p.timeMs === undefined ? undefined : new Date(p.timeMs),
  port: p.port,
  kind: p.kind,
  probeId: p.probeId,
  address: p.address,
  portState: PORT_STATE[p.portState] ?? ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED,
});

export function explain(ctx: ExplainContext, text: string): ExplainResponse {
  if (!text) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, 'source: give an address or prefix');
  const { decisions } = ctx;
  const source = decisions.source(text).text;
  const e = decisions.escalation;
  const rule = (r: { portThreshold: number; windowSeconds: number; fleetThreshold: number }): ExplainRule => ({
    portThreshold: r.portThreshold,
    window: duration(r.windowSeconds),
    fleetPortThreshold: r.fleetThreshold,
    blockTtl: duration(e.baseSeconds),
    blockTtlFactor: e.factor,
    blockTtlMax: e.maxSeconds > 0 ? duration(e.maxSeconds) : undefined,
    maxBlocksPerMinute: ctx.maxBlocksPerMinute,
    cappedBlockTtl: duration(ctx.cappedTtlSeconds),
  });
  const d = decisions.latestOn(source);
  const ev = d?.evidence;
  const next = nextStep(e, d && (d.offence ?? 0) > 0 ? d : decisions.lastOffence(source));
  return {
    source,
    rule: rule(decisions.rule),
    blocked: decisions.isBlocked(source),
    decision: d ? ctx.toDecision(d) : undefined,
    engine: ev ? ENGINE[ev.engine] : ExplainEngine.EXPLAIN_ENGINE_UNSPECIFIED,
    decidedUnder: ev ? rule(ev) : undefined,
    capped: ev?.capped ?? false,
    offence: d?.offence ?? 0,
    ttl: d ? duration(ev ? ev.ttlSeconds : d.expiresMs === undefined ? 0 : Math.round((d.expiresMs - d.createdMs) / 1000)) : undefined,
    probes: (ev?.probes ?? []).map(probeOf),
    nextOffence: next.offence,
    nextTtl: duration(next.ttlSeconds),
  };
}
