// Explain (packetwatchctl explain): why a source is, is not, or was
// blocked, from the latest decision on it and the evidence kept with it
// (evidence.ts), the rule in force, and the escalation a next detection of it
// would get (escalation.ts).
import type * as grpc from '@grpc/grpc-js';
import { GrpcStatus, ServerError, parsePrefix } from '@packetwatch/common';
import { type Decision, type Duration, ExplainEngine, type ExplainKernel, ExplainPortState, type ExplainProbe, type ExplainResponse, type ExplainRule } from '@packetwatch/proto';
import type { Decisions } from './decisions.js';
import type { Detector } from './detector.js';
import { nextStep } from './escalation.js';
import type { Engine, PortState, ProbeEvidence } from './evidence.js';
import type { ProbeRegistry } from './probes.js';
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
  detector: Detector;
  probes: ProbeRegistry;
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

/**
 * Each connected probe's kernel blocklist on the source, read now (a whole
 * ListBlocks of each: explain is an operator's call, not a hot path).
 */
async function kernelState(ctx: ExplainContext, source: string): Promise<ExplainKernel[]> {
  const now = Date.now();
  const key = ctx.decisions.keys.ofText(source);
  return Promise.all(
    ctx.probes.all().map(async (p): Promise<ExplainKernel> => {
      try {
        // A probe lists a block at its own keying; the policy's source is the one it falls in.
        const b = (await p.listBlocks()).find((x) => {
          try {
            return ctx.decisions.keys.of(parsePrefix(x.ip).addr) === key;
          } catch {
            return false;
          }
        });
        const blocked = b !== undefined && !b.expired && (b.expires === undefined || b.expires.getTime() > now);
        return { probeId: p.id, blocked, created: blocked ? b.created : undefined, expires: blocked ? b.expires : undefined, error: '' };
      } catch (e) {
        const err = e as grpc.ServiceError;
        return { probeId: p.id, blocked: false, created: undefined, expires: undefined, error: err.details ?? err.message };
      }
    }),
  );
}

/** What the detector holds for the source now: its fleet pairs with the rule on, else its ports. */
function tracked(ctx: ExplainContext, source: string): ExplainProbe[] {
  const held = ctx.detector.held(ctx.decisions.keys.ofText(source));
  if (!held) return [];
  const hit = (h: { port: number; ms: number; probe?: number }): ExplainProbe => ({
    time: new Date(h.ms),
    port: h.port,
    kind: 'unknown',
    probeId: h.probe === undefined ? '' : ctx.probes.numbers.idOf(h.probe),
    address: '',
    portState: ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED,
  });
  return held.pairs.length > 0 ? held.pairs.map(hit) : held.ports.map(hit);
}

export async function explain(ctx: ExplainContext, text: string): Promise<ExplainResponse> {
  if (!text) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, 'source: give an address or prefix');
  const { decisions } = ctx;
  const source = decisions.source(text).text;
  const kernel = kernelState(ctx, source);
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
    kernel: await kernel,
    tracked: tracked(ctx, source),
  };
}
