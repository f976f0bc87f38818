// packetwatch.v1.Policy over gRPC: the Report streams from probes (events
// in, detections out) and the operator's API (status, decisions, block,
// unblock, watch).
import * as grpc from '@grpc/grpc-js';
import {
  AddressError,
  GrpcStatus,
  type MethodRoles,
  PageList,
  ServerError,
  type TlsFiles,
  VERSION,
  fitPage,
  pageCursor,
  pageSize,
  pageToken,
  type Prefix,
  parsePrefix,
  unary,
} from '@packetwatch/common';
import {
  type AddAllowRequest,
  type AddAllowResponse,
  type AllowEntry,
  AllowSource,
  type BlockRequest,
  type BlockResponse,
  Decision,
  DecisionOrigin,
  type Duration,
  type EventBatch,
  type GetPolicyStatusRequest,
  type GetPolicyStatusResponse,
  type ListAllowRequest,
  type ListAllowResponse,
  type ListDecisionsRequest,
  type ListDecisionsResponse,
  type PolicyMessage,
  type ProbeConfig,
  type PolicyServer,
  type ProbeMessage,
  type RemoveAllowRequest,
  type RemoveAllowResponse,
  type UnblockRequest,
  type UnblockResponse,
  type WatchEvent,
  WatchEventKind,
  type WatchRequest,
} from '@packetwatch/proto';
import type { ExplainRequest, ExplainResponse } from '@packetwatch/proto';
import { canonicalPrefix, covers } from './allowlist.js';
import { explain } from './explain.js';
import type { FeedEvent, FeedKind } from './feed.js';
import { saturatingAdd } from './metrics.js';
import { checkBatch, checkHello, checkOwnAddresses, quote } from './peer.js';
import { type Admitted, type PipelineContext, admitBatch, processRecords } from './pipeline.js';
import { ProbeSession, type ProbeRegistry } from './probes.js';
import type { Recorder } from './recorder.js';
import type { DecisionRecord, Origin } from './store.js';

const MAX_REASON = 256;
/** Feed events a Watch stream may have waiting for its client before it skips new ones. */
const WATCH_BUFFER = 10_000;
/**
 * Watch streams at once. Each is handed every feed event as it is published,
 * on the path that processes SYN events: beyond a few dozen, watchers would
 * slow detection for everyone (500 idle ones cut throughput eightfold).
 */
export const MAX_WATCHERS = 64;
/** Report streams at once: probes, and whatever else opens one; each holds a callback connection. */
export const MAX_REPORT_STREAMS = 1024;

/** The pipeline's parts (detector, decisions, allowlist, feed, metrics, log, window), and what the API serves besides. */
export interface PolicyContext extends PipelineContext {
  probes: ProbeRegistry;
  tls: TlsFiles | undefined;
  whitelistSelf: boolean;
  portThreshold: number;
  blockTtlSeconds: number;
  /** The scan configuration every probe is given (PolicyMessage.config). */
  probeConfig: ProbeConfig;
  started: Date;
  recorder: Recorder;
  /** A probe said hello (for the banner). */
  onProbe: (s: ProbeSession) => void;
}

const ORIGIN: Record<Origin, DecisionOrigin> = {
  detector: DecisionOrigin.DECISION_ORIGIN_DETECTOR,
  manual: DecisionOrigin.DECISION_ORIGIN_MANUAL,
  kernel: DecisionOrigin.DECISION_ORIGIN_KERNEL,
};

const KIND: Record<FeedKind, WatchEventKind> = {
  connection: WatchEventKind.WATCH_EVENT_KIND_CONNECTION,
  whitelist: WatchEventKind.WATCH_EVENT_KIND_WHITELIST,
  blacklist: WatchEventKind.WATCH_EVENT_KIND_BLACKLIST,
  unblock: WatchEventKind.WATCH_EVENT_KIND_UNBLOCK,
};

/** A Duration of s seconds, negative too (seconds and nanos share the sign). */
const seconds = (s: number): Duration => ({ seconds: BigInt(Math.trunc(s)), nanos: Math.trunc((s - Math.trunc(s)) * 1e9) });

function toDecision(d: DecisionRecord, ctx: PolicyContext): Decision {
  const enforcedBy = ctx.decisions.enforcedBy(d.ip);
  const active = d.endedMs === undefined && (d.expiresMs === undefined || d.expiresMs > Date.now());
  return {
    id: BigInt(d.id),
    ip: d.ip,
    reason: d.reason,
    origin: ORIGIN[d.origin],
    created: new Date(d.createdMs),
    expires: d.expiresMs === undefined ? undefined : new Date(d.expiresMs),
    ended: d.endedMs === undefined ? undefined : new Date(d.endedMs),
    enforcedBy: active ? enforcedBy : [],
    missingOn: active ? ctx.decisions.missingOn(d.ip) : [],
    unrecorded: ctx.recorder.unrecorded(d.id),
    shadow: d.shadow,
    offence: d.offence ?? 0,
  };
}

/** A ListDecisions cursor: the last id listed, 8 bytes big-endian. */
function idCursor(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(id);
  return b;
}

/** The id after which a ListDecisions page starts (0: the first page). */
function decisionCursor(token: string, list: PageList): number {
  const cursor = pageCursor(token, list, 8);
  if (cursor === undefined) return 0;
  const id = cursor.readBigUInt64BE();
  // Ids are SQLite rowids counted from 1; one beyond 2^53 was never issued.
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, 'invalid page_token: not a token of this service');
  return Number(id);
}

function toWatchEvent(e: FeedEvent): WatchEvent {
  return { time: new Date(e.timeMs), kind: KIND[e.kind], source: e.source, port: e.port, probeId: e.probeId, message: e.message, shadow: e.shadow === true };
}

function prefixArg(text: string): string {
  if (text.length > 64) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid prefix: ${text.length} characters is not an address or CIDR`);
  try {
    return canonicalPrefix(text);
  } catch (e) {
    if (e instanceof AddressError) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, e.message);
    throw e;
  }
}

/** Watch's source: an address or a prefix. */
function watchedSource(text: string): Prefix {
  if (text.length > 64) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid source: ${text.length} characters is not an address or prefix`);
  try {
    return parsePrefix(text);
  } catch (e) {
    if (e instanceof AddressError) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, e.message);
    throw e;
  }
}

/**
 * Whether a feed event's source (an address, a source prefix or an
 * allowlist entry, as text) overlaps the watched one: one holds the other.
 * Watching an address shows the block of its /64; watching a /64, the
 * connections of its addresses.
 */
export function overlaps(watched: Prefix, text: string): boolean {
  let p: Prefix;
  try {
    p = parsePrefix(text);
  } catch {
    return false;
  }
  return p.prefixLen >= watched.prefixLen ? covers(watched, p.addr) : covers(p, watched.addr);
}

function ttlOf(ttl: Duration | undefined, fallback: number): number {
  if (!ttl) return fallback;
  const s = Number(ttl.seconds) + ttl.nanos / 1e9;
  if (s < 0) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${s}s: must be zero (permanent) or positive`);
  if (s > 10 * 365 * 86400) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${s}s: at most ten years; use 0 for permanent`);
  return s;
}

/** Batches received but not yet processed, per probe stream, before the stream is paused (gRPC flow control then holds the probe back). */
const MAX_PENDING_BATCHES = 8;
/** Longest run of processing before the event loop gets a turn (I/O, timers, other probes' streams). */
const SLICE_MS = 5;

/**
 * The events of one probe's Report stream, processed apart from their
 * arrival (pipeline.ts): the 'data' handler only queues a batch, so that gRPC reads (and
 * grants flow-control window for) the next one while this one is processed.
 * Processed inline, a batch held the stream until it was done, and the
 * probe's next batch could not even be sent meanwhile: the policy sat idle
 * half the time at 600k events/s while the probe's queue overflowed (make
 * bench-pipeline). The queue is bounded: beyond MAX_PENDING_BATCHES the
 * stream is paused.
 */
class EventStream {
  readonly #pending: Admitted[] = [];
  /** Where processing of the first pending batch resumes. */
  #offset = 0;
  #scheduled = false;
  #paused = false;

  constructor(
    private readonly ctx: PolicyContext,
    private readonly session: ProbeSession,
    private readonly call: grpc.ServerDuplexStream<ProbeMessage, PolicyMessage>,
  ) {}

  /** A batch checkBatch() accepted. */
  push(batch: EventBatch): void {
    const admitted = admitBatch(this.ctx, this.session, batch);
    if (!admitted) return;
    this.#pending.push(admitted);
    if (this.#pending.length >= MAX_PENDING_BATCHES && !this.#paused) {
      this.#paused = true;
      this.call.pause();
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#run();
    });
  }

  #run(): void {
    const until = performance.now() + SLICE_MS;
    for (;;) {
      const batch = this.#pending[0];
      if (!batch) break;
      const stop = processRecords(this.ctx, this.session, batch, this.#offset);
      if (stop < batch.records.length) {
        // A detection: its BlockIp leaves now, the rest waits for the next turn.
        this.#offset = stop;
        this.#schedule();
        break;
      }
      this.#pending.shift();
      this.#offset = 0;
      if (performance.now() >= until) {
        if (this.#pending.length > 0) this.#schedule();
        break;
      }
    }
    if (this.#paused && this.#pending.length < MAX_PENDING_BATCHES / 2) {
      this.#paused = false;
      this.call.resume();
    }
  }
}

function report(ctx: PolicyContext): grpc.handleBidiStreamingCall<ProbeMessage, PolicyMessage> {
  return (call) => {
    if (ctx.metrics.reportStreams >= MAX_REPORT_STREAMS) {
      ctx.metrics.counts.reportsRefused++;
      endWith(call, grpc.status.RESOURCE_EXHAUSTED, `${MAX_REPORT_STREAMS} Report streams are open already, the most this policy serves`);
      return;
    }
    ctx.metrics.reportStreams++;
    let counted = true;
    const uncount = () => {
      if (counted) ctx.metrics.reportStreams--;
      counted = false;
    };
    call.on('close', uncount);
    call.on('cancelled', uncount);
    call.on('error', uncount);
    call.on('finish', uncount);
    let session: ProbeSession | undefined;
    let events: EventStream | undefined;
    let refused = false;
    /** Ends this stream with a status; the policy and every other stream carry on. */
    const refuse = (code: grpc.status, details: string) => {
      if (refused) return;
      refused = true;
      ctx.metrics.counts.reportsRefused++;
      ctx.log.warn({ probe: session?.id, code: grpc.status[code], details }, 'Report stream refused');
      gone();
      endWith(call, code, details);
    };
    const setOwn = (s: ProbeSession, addresses: string[]) => {
      s.ownAddresses = addresses;
      if (!ctx.whitelistSelf) return;
      for (const a of ctx.allowlist.setOwn(s.id, addresses)) {
        ctx.feed.publish({ timeMs: Date.now(), kind: 'whitelist', source: a, port: 0, probeId: s.id, message: 'own address of the probe' });
      }
    };
    const onMessage = (msg: ProbeMessage) => {
      const m = msg.message;
      if (!session) {
        if (m?.$case !== 'hello') {
          refuse(grpc.status.FAILED_PRECONDITION, 'the first message of Report must be a hello');
          return;
        }
        const hello = checkHello(m.value);
        if (!hello.ok) {
          refuse(grpc.status.INVALID_ARGUMENT, `hello: ${hello.reason}`);
          return;
        }
        if (ctx.probes.get(m.value.probeId)) {
          // The live session keeps its id: a newcomer cannot take over its BlockIp calls.
          refuse(grpc.status.ALREADY_EXISTS, `probe_id ${quote(m.value.probeId)} is connected already`);
          return;
        }
        try {
          session = new ProbeSession({ ...m.value, ownAddresses: hello.value.ownAddresses }, ctx.tls, ctx.log);
        } catch (e) {
          // A TCP callback this policy may not call (no CA, no explicit insecure flag).
          refuse(grpc.status.FAILED_PRECONDITION, `callback_endpoint: ${(e as Error).message}`);
          return;
        }
        const s = session;
        events = new EventStream(ctx, s, call);
        ctx.probes.add(s);
        ctx.log.info({ probe: s.id, interface: s.hello.interface, callback: s.hello.callbackEndpoint, version: s.hello.version }, 'probe connected');
        ctx.onProbe(s);
        setOwn(s, hello.value.ownAddresses);
        call.write({ message: { $case: 'hello', value: { version: VERSION } } });
        s.toProbe = (msg) => call.write(msg);
        sendAllowlist(ctx, [s]);
        // The probe's in-kernel detector runs with the policy's settings.
        s.toProbe({ message: { $case: 'config', value: ctx.probeConfig } });
        s.shadow = ctx.probeConfig.shadow;
        ctx.decisions
          .reconcile(s)
          .then((repairs) => ctx.log.info({ probe: s.id, repairs }, 'reconciled decisions with the kernel blocklist'))
          .catch((e: Partial<grpc.ServiceError> & Error) =>
            ctx.log.error({ probe: s.id, code: e.code === undefined ? undefined : grpc.status[e.code], details: e.details ?? e.message }, 'reconcile failed'),
          );
        return;
      }
      if (m?.$case === 'events') {
        const batch = checkBatch(m.value);
        if (batch.ok) events?.push(batch.value);
        else refuse(grpc.status.INVALID_ARGUMENT, `events: ${batch.reason}`);
      } else if (m?.$case === 'ownAddresses') {
        const own = checkOwnAddresses(m.value.addresses);
        if (own.ok) setOwn(session, own.value);
        else refuse(grpc.status.INVALID_ARGUMENT, `own_addresses: ${own.reason}`);
      } else {
        refuse(grpc.status.INVALID_ARGUMENT, 'a Report message with no known content');
      }
    };
    call.on('data', (msg: ProbeMessage) => {
      if (refused) return;
      try {
        onMessage(msg);
      } catch (err) {
        // A check missed something: this stream ends, the policy does not.
        ctx.log.error({ err, probe: session?.id }, 'a Report message could not be handled');
        refuse(grpc.status.INTERNAL, 'the message could not be handled');
      }
    });
    const gone = () => {
      if (!session) return;
      const s = session;
      session = undefined;
      if (ctx.probes.remove(s)) {
        ctx.allowlist.dropOwn(s.id);
        ctx.log.warn({ probe: s.id }, 'probe disconnected');
      }
      s.close();
    };
    call.on('end', () => {
      gone();
      call.end();
    });
    call.on('error', gone);
    call.on('cancelled', gone);
  };
}

/** Ends a server stream with a status (grpc-js sends it when the stream emits an error). */
function endWith(call: { emit(event: 'error', status: Partial<grpc.StatusObject>): boolean; end(): void }, code: grpc.status, details: string): void {
  call.emit('error', { code, details });
  call.end();
}

function watch(ctx: PolicyContext): grpc.handleServerStreamingCall<WatchRequest, WatchEvent> {
  return (call) => {
    let source: Prefix | undefined;
    try {
      source = call.request.source ? watchedSource(call.request.source) : undefined;
    } catch (e) {
      endWith(call, grpc.status.INVALID_ARGUMENT, e instanceof ServerError ? e.details : 'invalid source');
      return;
    }
    if (ctx.metrics.watchers >= MAX_WATCHERS) {
      endWith(call, grpc.status.RESOURCE_EXHAUSTED, `${MAX_WATCHERS} Watch streams are open already, the most this policy serves`);
      return;
    }
    ctx.metrics.watchers++;
    let writable = true;
    let skipped = 0;
    // Events waiting for the stream to drain: a burst is delivered whole, up
    // to WATCH_BUFFER events behind; beyond that a watcher that cannot keep
    // up misses the newest rows (the first ones of a scan are kept) rather
    // than growing memory.
    let backlog: FeedEvent[] = [];
    let head = 0;
    const send = (e: FeedEvent) => {
      if (source !== undefined && !overlaps(source, e.source)) return;
      if (writable && head === backlog.length) {
        writable = call.write(toWatchEvent(e));
        return;
      }
      if (backlog.length - head >= WATCH_BUFFER) {
        skipped++;
        return;
      }
      backlog.push(e);
    };
    call.on('drain', () => {
      writable = true;
      while (writable && head < backlog.length) writable = call.write(toWatchEvent(backlog[head++]!));
      if (head === backlog.length) {
        backlog = [];
        head = 0;
      } else if (head >= 4096) {
        backlog = backlog.slice(head);
        head = 0;
      }
      if (skipped > 0) {
        ctx.metrics.counts.watchEventsMissed = saturatingAdd(ctx.metrics.counts.watchEventsMissed, skipped);
        ctx.log.warn({ skipped }, 'slow watcher missed feed events');
      }
      skipped = 0;
    });
    if (call.request.since) for (const e of ctx.feed.since(call.request.since.getTime())) send(e);
    const stop = ctx.feed.subscribe(send);
    let subscribed = true;
    const unsubscribe = () => {
      if (!subscribed) return;
      subscribed = false;
      ctx.metrics.watchers--;
      stop();
    };
    call.on('cancelled', unsubscribe);
    call.on('close', unsubscribe);
    call.on('error', unsubscribe);
  };
}

/** Sends the fleet-wide allowlist to these probes, for their kernel allowlists (PolicyAllowlist). */
function sendAllowlist(ctx: PolicyContext, to: readonly ProbeSession[]): void {
  const prefixes = ctx.allowlist.fleet();
  for (const s of to) s.toProbe({ message: { $case: 'allowlist', value: { prefixes } } });
}

/** Who may call what over TLS: only a probe reports; everything else is the operators'. */
export const POLICY_ROLES: MethodRoles<PolicyServer> = {
  report: ['probe'],
  getStatus: ['operator'],
  listDecisions: ['operator'],
  block: ['operator'],
  unblock: ['operator'],
  watch: ['operator'],
  addAllow: ['operator'],
  removeAllow: ['operator'],
  listAllow: ['operator'],
  explain: ['operator'],
};

export function policyService(ctx: PolicyContext): PolicyServer {
  const { log } = ctx;
  return {
    report: report(ctx),
    watch: watch(ctx),
    getStatus: unary<GetPolicyStatusRequest, GetPolicyStatusResponse>(log, 'GetStatus', () => ({
      version: VERSION,
      portThreshold: ctx.portThreshold,
      window: seconds(ctx.windowSeconds),
      blockTtl: seconds(ctx.blockTtlSeconds),
      whitelistSelf: ctx.whitelistSelf,
      allowlist: ctx.allowlist.entries(),
      probes: ctx.probes.all().map((p) => ({
        probeId: p.id,
        interface: p.hello.interface,
        callbackEndpoint: p.hello.callbackEndpoint,
        ownAddresses: p.ownAddresses,
        attachMode: p.hello.attachMode,
        programId: p.hello.programId,
        connected: new Date(p.connectedAt),
        eventsReceived: BigInt(p.eventsReceived),
        eventsLost: BigInt(p.eventsLost),
        version: p.hello.version,
        clockSkew: seconds(p.clockSkewMs / 1000),
      })),
      trackedSources: BigInt(ctx.detector.tracked),
      activeDecisions: BigInt(ctx.decisions.active().length),
      eventsReceived: BigInt(ctx.probes.all().reduce((n, p) => n + p.eventsReceived, 0)),
      eventsLost: BigInt(ctx.probes.all().reduce((n, p) => n + p.eventsLost, 0)),
      detections: BigInt(ctx.metrics.counts.detections),
      evictions: BigInt(ctx.detector.evictions),
      driftRepairs: BigInt(ctx.metrics.counts.driftRepairs),
      blockFailures: BigInt(ctx.metrics.counts.blockFailures),
      started: ctx.started,
      storeErrors: BigInt(Object.values(ctx.metrics.counts.storeErrors).reduce((a, b) => a + b, 0)),
      storeWritesHeld: BigInt(ctx.recorder.state.held),
      storeFailure: ctx.recorder.state.failure ?? '',
      ipv6Prefix: ctx.decisions.keys.lengths.ipv6,
      ipv4Prefix: ctx.decisions.keys.lengths.ipv4,
      shadow: ctx.decisions.shadow,
      shadowProbes: ctx.probes
        .all()
        .filter((p) => p.shadow)
        .map((p) => p.id),
      blockTtlFactor: ctx.decisions.escalation.factor,
      blockTtlMax: ctx.decisions.escalation.maxSeconds > 0 ? seconds(ctx.decisions.escalation.maxSeconds) : undefined,
      probeConfig: ctx.probeConfig,
      eventsOpenPort: BigInt(ctx.metrics.counts.eventsOpenPort),
    })),
    explain: unary<ExplainRequest, ExplainResponse>(log, 'Explain', (req) =>
      explain(
        {
          decisions: ctx.decisions,
          detector: ctx.detector,
          probes: ctx.probes,
          maxBlocksPerMinute: ctx.probeConfig.maxBlocksPerMinute,
          cappedTtlSeconds: Number(ctx.probeConfig.cappedBlockTtl?.seconds ?? 0n) + (ctx.probeConfig.cappedBlockTtl?.nanos ?? 0) / 1e9,
          toDecision: (d) => toDecision(d, ctx),
        },
        req.source,
      ),
    ),
    listDecisions: unary<ListDecisionsRequest, ListDecisionsResponse>(log, 'ListDecisions', (req) => {
      const size = pageSize(req.pageSize);
      const list = req.all ? PageList.AllDecisions : PageList.ActiveDecisions;
      const records = ctx.decisions.page(decisionCursor(req.pageToken, list), size + 1, req.all);
      // A decision's size varies (its reason, the ids of the probes
      // enforcing it), so the page is cut by size (fitPage: decisions and
      // token within PAGE_BYTES, a quarter of grpc-js's 4 MiB receive limit,
      // unless one decision alone is larger: that one goes out alone) as well
      // as at `size`.
      const decisions = fitPage(
        records.slice(0, size).map((d) => toDecision(d, ctx)),
        (d) => Decision.encode(d).finish().length,
      );
      const more = records.length > decisions.length;
      return { decisions, nextPageToken: more ? pageToken(list, idCursor(decisions[decisions.length - 1]!.id)) : '' };
    }),
    block: unary<BlockRequest, BlockResponse>(log, 'Block', async (req) => {
      if (req.reason.length > MAX_REASON) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `reason is ${req.reason.length} characters; at most ${MAX_REASON}`);
      const { decision, alreadyBlocked } = await ctx.decisions.manualBlock(req.ip, ttlOf(req.ttl, ctx.blockTtlSeconds), req.reason);
      return { decision: toDecision(decision, ctx), alreadyBlocked };
    }),
    unblock: unary<UnblockRequest, UnblockResponse>(log, 'Unblock', async (req) => {
      if (!req.all && !req.ip) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, 'give an address or prefix, or all');
      if (req.all && req.ip) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, 'give an address or prefix, or all, not both');
      const ended = await ctx.decisions.unblock(req.all ? undefined : req.ip);
      return { ended: ended.map((d) => toDecision(d, ctx)) };
    }),
    addAllow: unary<AddAllowRequest, AddAllowResponse>(log, 'AddAllow', async (req) => {
      const prefix = prefixArg(req.prefix);
      if (req.note.length > MAX_REASON) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `note is ${req.note.length} characters; at most ${MAX_REASON}`);
      const now = Date.now();
      const added = ctx.allowlist.addOperator(prefix, now, req.note);
      if (added) {
        ctx.recorder.addAllow(prefix, req.note, now);
        ctx.feed.publish({ timeMs: now, kind: 'whitelist', source: prefix, port: 0, probeId: '', message: req.note || 'added by an operator' });
        log.info({ prefix, note: req.note }, 'allowlisted by an operator');
        sendAllowlist(ctx, ctx.probes.all());
      }
      const p = parsePrefix(prefix);
      // Decisions on sources it covers whole end; a decision on a /64 holding an allowlisted address stands (the address passes).
      const covered = ctx.decisions.active().filter((d) => {
        const dp = parsePrefix(d.ip);
        return p.prefixLen <= dp.prefixLen && covers(p, dp.addr);
      });
      const ended = (await Promise.all(covered.map((d) => ctx.decisions.unblock(d.ip)))).flat();
      const entry = ctx.allowlist.operator.find((e) => e.text === prefix)!;
      return {
        entry: { prefix, source: AllowSource.ALLOW_SOURCE_OPERATOR, probeId: '', added: new Date(entry.addedMs), note: entry.note },
        alreadyPresent: !added,
        ended: ended.map((d) => toDecision(d, ctx)),
      };
    }),
    removeAllow: unary<RemoveAllowRequest, RemoveAllowResponse>(log, 'RemoveAllow', (req) => {
      const prefix = prefixArg(req.prefix);
      const removed = ctx.allowlist.removeOperator(prefix);
      if (removed) {
        ctx.recorder.removeAllow(prefix);
        log.info({ prefix }, 'removed from the allowlist by an operator');
        sendAllowlist(ctx, ctx.probes.all());
      }
      return { removed };
    }),
    listAllow: unary<ListAllowRequest, ListAllowResponse>(log, 'ListAllow', () => {
      const entries: AllowEntry[] = [
        ...ctx.allowlist.configured.map((p) => ({ prefix: canonicalPrefix(p), source: AllowSource.ALLOW_SOURCE_CONFIGURED, probeId: '', added: ctx.started, note: 'PW_ALLOWLIST' })),
        ...ctx.allowlist.operator.map((e) => ({ prefix: e.text, source: AllowSource.ALLOW_SOURCE_OPERATOR, probeId: '', added: new Date(e.addedMs), note: e.note })),
        ...ctx.allowlist.own.flatMap(([probeId, addrs]) =>
          addrs.map((a) => ({ prefix: canonicalPrefix(a), source: AllowSource.ALLOW_SOURCE_OWN_ADDRESS, probeId, added: undefined, note: 'own address' })),
        ),
      ];
      return { entries };
    }),
  };
}
