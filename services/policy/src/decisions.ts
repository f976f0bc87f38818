// Decisions: who is blocked, why, since when, until when, and where it is
// enforced. A decision is made in memory and applied to every connected
// probe (the probe that saw a scan first), and recorded in the store as
// that starts: enforcement never waits on the store, nor fails with it
// (recorder.ts holds what the store refuses). A probe that connects later
// gets every active decision on reconcile, which also adopts blocks found
// only in its kernel and re-applies those missing from it (drift repair).
//
// A decision is on a source: an address's prefix under PW_IPV6_PREFIX and
// PW_IPV4_PREFIX (its ip is formatSource's text, "2001:db8:1:2::/64", or the
// bare address at whole length), and so is every BlockIp it makes. The
// allowlist and the probes' own addresses are checked by address: an
// allowlisted address never gets its prefix blocked by its own scan (the
// pipeline never detects it), but another address of the prefix does, and
// the kernel keeps passing the allowlisted one inside the block.
import * as grpc from '@grpc/grpc-js';
import { GrpcStatus, type Logger, type NamedSource, type Prefix, ServerError, formatSource, isV4Prefix, namedSource, parsePrefix } from '@packetwatch/common';
import { DEFAULT_CAPPED_BLOCK_SECONDS } from '@packetwatch/bpf/records';
import { BlockReason } from '@packetwatch/proto';
import type { Allowlist } from './allowlist.js';
import { BlockBudget, type BlockTerms, cappedTtl, offenceBlock } from './blockrule.js';
import type { Detection, Detector } from './detector.js';
import { type Escalation, type Step, nextStep } from './escalation.js';
import { type Engine, type Evidence, type Rule, detectionProbes } from './evidence.js';
import type { Feed } from './feed.js';
import type { PolicyMetrics } from './metrics.js';
import type { ProbeRegistry, ProbeSession } from './probes.js';
import type { Recorder } from './recorder.js';
import type { SourceKey, SourceKeys } from './sourcekey.js';
import { type DecisionRecord, type Origin, isActive } from './store.js';

const KERNEL_REASON: Record<Origin, BlockReason> = {
  detector: BlockReason.BLOCK_REASON_PORTSCAN,
  manual: BlockReason.BLOCK_REASON_MANUAL,
  kernel: BlockReason.BLOCK_REASON_UNSPECIFIED,
};

export interface DecisionsOptions {
  recorder: Recorder;
  probes: ProbeRegistry;
  allowlist: Allowlist;
  /** Forgets an unblocked source's history. */
  detector: Detector;
  feed: Feed;
  metrics: PolicyMetrics;
  log: Logger;
  /** How sources are keyed (the prefix lengths); the allowlist's by default. */
  keys?: SourceKeys;
  /** How long a detector's block lasts, in seconds; 0: permanent (PW_BLOCK_TTL). */
  detectorTtlSeconds: number;
  /** Detector blocks a minute at full length, and kernel-block adoptions a minute; 0 (the default): no cap (PW_MAX_BLOCKS_PER_MINUTE). */
  maxBlocksPerMinute?: number;
  /** How long a block beyond that budget lasts, in seconds (PW_CAPPED_BLOCK_TTL; default DEFAULT_CAPPED_BLOCK_SECONDS). */
  cappedTtlSeconds?: number;
  /**
   * Shadow mode (PW_ENFORCE=False; default false): every decision made is
   * marked shadow. Decisions are made, recorded and applied (BlockIp) as
   * ever; the probes, told by the policy's configuration, drop nothing for
   * them.
   */
  shadow?: boolean;
  /**
   * Enforcing (shadow false), what becomes at start of the active decisions
   * an earlier run made in shadow mode: blocks (true, the default) or ended
   * (false) (PW_ENFORCE_SHADOW_DECISIONS).
   */
  enforceShadowDecisions?: boolean;
  /** PW_BLOCK_TTL_FACTOR and PW_BLOCK_TTL_MAX (escalation.ts); default 1 and none: no escalation. */
  ttlFactor?: number;
  ttlMaxSeconds?: number;
  /** The rule in force, kept with each decision's evidence (evidence.ts). */
  rule?: Rule;
}

/** What the probe's XDP program did at the SYN that made the detection (the event's scan verdict). */
export type KernelBlock = 'none' | 'blocked' | 'capped';

export class Decisions {
  /** Active decisions by canonical address. */
  readonly #active = new Map<string, DecisionRecord>();
  /** The same decisions by source key (sourcekey.ts), for the per-event check. */
  readonly #activeByKey = new Map<SourceKey, DecisionRecord>();
  /** Probes whose kernel holds each address's block, as last seen. */
  readonly #enforcedBy = new Map<string, Set<string>>();
  /** The blocks-per-minute budget, on the wall clock. */
  readonly #budget: BlockBudget;
  readonly #terms: BlockTerms;
  /** Reconciles scheduled for probes seen keying sources at other lengths than the policy's, by probe. */
  readonly #rekeying = new WeakMap<ProbeSession, number>();

  private readonly recorder: Recorder;
  private readonly probes: ProbeRegistry;
  private readonly allowlist: Allowlist;
  private readonly detector: Detector;
  private readonly feed: Feed;
  private readonly metrics: PolicyMetrics;
  private readonly log: Logger;
  /** How sources are keyed and written (the prefix lengths). */
  readonly keys: SourceKeys;
  private readonly detectorTtlSeconds: number;
  private readonly maxBlocksPerMinute: number;
  private readonly cappedTtlSeconds: number;
  /** Shadow mode: see DecisionsOptions.shadow. */
  readonly shadow: boolean;
  private readonly enforceShadowDecisions: boolean;
  readonly escalation: Escalation;
  readonly rule: Rule;

  constructor(o: DecisionsOptions) {
    this.recorder = o.recorder;
    this.probes = o.probes;
    this.allowlist = o.allowlist;
    this.detector = o.detector;
    this.feed = o.feed;
    this.metrics = o.metrics;
    this.log = o.log;
    this.keys = o.keys ?? o.allowlist.keys;
    this.detectorTtlSeconds = o.detectorTtlSeconds;
    this.maxBlocksPerMinute = o.maxBlocksPerMinute ?? 0;
    this.cappedTtlSeconds = o.cappedTtlSeconds ?? DEFAULT_CAPPED_BLOCK_SECONDS;
    this.shadow = o.shadow ?? false;
    this.enforceShadowDecisions = o.enforceShadowDecisions ?? true;
    this.escalation = { baseSeconds: o.detectorTtlSeconds, factor: o.ttlFactor ?? 1, maxSeconds: o.ttlMaxSeconds ?? 0 };
    // The seed's defaults (3 ports within 60 s), for a caller that does not say.
    this.rule = o.rule ?? { portThreshold: 3, windowSeconds: 60, fleetThreshold: 0 };
    this.#budget = new BlockBudget(this.maxBlocksPerMinute);
    this.#terms = { ttlSeconds: this.detectorTtlSeconds, cappedTtlSeconds: this.cappedTtlSeconds };
    this.#restore(this.recorder.read((s) => s.active(Date.now())));
  }

  /**
   * The store's active decisions, made under the prefix lengths of an
   * earlier run. One on a source of today's length stands. One on a longer
   * one (an address, when sources are now /64s) is carried over to the
   * source it falls in now: ended, and a decision on that source made in
   * its place with its reason, origin, creation and expiry (several
   * collapsing into one source: the first stands, the others end). One on
   * a shorter prefix cannot be enforced (a probe looks a source up at one
   * length) and ends, logged.
   */
  #restore(stored: DecisionRecord[]): void {
    const now = Date.now();
    const records = this.shadow ? stored : this.#leaveShadow(stored, now);
    for (const d of records) {
      let p: Prefix;
      try {
        p = parsePrefix(d.ip);
      } catch {
        this.log.warn({ ip: d.ip, decision: d.id }, 'a stored decision is not on an address or prefix; ignored');
        continue;
      }
      const len = this.keys.lengthFor(p);
      if (p.prefixLen === len) {
        this.#setActive(d);
        continue;
      }
      this.recorder.end({ ...d, endedMs: now });
      if (p.prefixLen < len) {
        const v4 = isV4Prefix(p);
        this.log.warn({ ip: d.ip, decision: d.id, length: v4 ? len - 96 : len }, `decision ended: ${v4 ? 'IPv4' : 'IPv6'} sources are now blocked by a longer prefix, which cannot enforce it`);
        continue;
      }
      const text = formatSource(this.keys.prefixOf(p.addr));
      if (this.#active.has(text)) {
        this.log.info({ ip: d.ip, decision: d.id, source: text }, 'decision ended: its source is now the prefix of another decision');
        continue;
      }
      const moved = this.#decide({
        ip: text,
        reason: `${d.reason} (was on ${d.ip})`,
        origin: d.origin,
        ttlSeconds: d.expiresMs === undefined ? 0 : Math.max(1, (d.expiresMs - now) / 1000),
        createdMs: d.createdMs,
        shadow: d.shadow,
        offence: d.offence,
      });
      this.recorder.insert(moved);
      this.log.warn({ ip: d.ip, decision: d.id, source: text, now: moved.id }, 'decision carried over to the prefix its source falls in now');
    }
  }

  /**
   * A start enforcing: the active decisions an earlier run made in shadow
   * mode become blocks (PW_ENFORCE_SHADOW_DECISIONS=True: the mark is
   * cleared, the decision kept as it was) or end, now
   * (PW_ENFORCE_SHADOW_DECISIONS=False). Their kernel blocks were written
   * in shadow mode too: a block is enforced as soon as the probe runs the
   * enforcing program; an ended one is lifted by the probe's reconcile (an
   * end outranks every kernel block created before it).
   */
  #leaveShadow(records: DecisionRecord[], now: number): DecisionRecord[] {
    const kept: DecisionRecord[] = [];
    let enforced = 0;
    let ended = 0;
    for (const d of records) {
      if (!d.shadow) {
        kept.push(d);
      } else if (this.enforceShadowDecisions) {
        const block = { ...d, shadow: false };
        this.recorder.enforce(block);
        kept.push(block);
        enforced++;
      } else {
        this.recorder.end({ ...d, endedMs: now });
        ended++;
      }
    }
    if (enforced > 0) this.log.warn({ decisions: enforced }, 'enforcing: the active decisions made in shadow mode are blocks now (PW_ENFORCE_SHADOW_DECISIONS=True)');
    if (ended > 0) this.log.warn({ decisions: ended }, 'enforcing: the active decisions made in shadow mode ended, not enforced (PW_ENFORCE_SHADOW_DECISIONS=False)');
    return kept;
  }

  /** The source an operator's address or prefix names (namedSource). */
  source(text: string): NamedSource {
    return namedSource(text, this.keys.lengths);
  }

  /** Whether a source (its text, formatSource's) is under an active decision. */
  isBlocked(ip: string): boolean {
    return this.#inForce(this.#active.get(ip));
  }

  /** isBlocked() by source key (sourcekey.ts): the per-event check, no address text needed. */
  isBlockedKey(key: SourceKey): boolean {
    return this.#inForce(this.#activeByKey.get(key));
  }

  /** Whether a decision found in the active maps is still in force; an expired one is dropped from them. */
  #inForce(d: DecisionRecord | undefined): boolean {
    if (!d) return false;
    if (isActive(d, Date.now())) return true;
    this.#dropActive(d.ip);
    return false;
  }

  #setActive(d: DecisionRecord): void {
    this.#active.set(d.ip, d);
    this.#activeByKey.set(this.keys.ofText(d.ip), d);
  }

  #dropActive(ip: string): void {
    this.#active.delete(ip);
    this.#activeByKey.delete(this.keys.ofText(ip));
    this.#enforcedBy.delete(ip);
  }

  active(): DecisionRecord[] {
    const now = Date.now();
    return [...this.#active.values()].filter((d) => isActive(d, now));
  }

  /** Every recorded decision (held ones are in active() only until the store takes them). */
  all(): DecisionRecord[] {
    return this.recorder.read((s) => s.all());
  }

  /**
   * ListDecisions' page: up to `limit` decisions with ids above `afterId`,
   * by id. The active ones come from memory, so a decision the store has not
   * taken yet (held by the recorder) is listed with them; `all` reads the
   * store's history, which has it once the store takes it.
   */
  page(afterId: number, limit: number, all: boolean): DecisionRecord[] {
    if (all) return this.recorder.read((s) => s.page(afterId, limit));
    return this.active()
      .filter((d) => d.id > afterId)
      .sort((a, b) => a.id - b.id)
      .slice(0, limit);
  }

  enforcedBy(ip: string): string[] {
    return [...(this.#enforcedBy.get(ip) ?? [])].sort();
  }

  /** Connected probes that should hold the block on a source and do not (a probe never blocks its own address; a prefix holding it, it does). */
  missingOn(ip: string): string[] {
    const by = this.#enforcedBy.get(ip);
    return this.probes
      .all()
      .filter((p) => !by?.has(p.id) && !this.#isOwn(p, ip))
      .map((p) => p.id);
  }

  /**
   * A detection from a probe's events (by either rule: docs/fleet.md): record, then block on that probe
   * first, then the others. kernelBlocked: the probe's XDP program detected it
   * too and already blocked the source, at the crossing SYN.
   */
  async detected(det: Detection, source: string, session: ProbeSession, kernel: KernelBlock = 'none'): Promise<void> {
    if (this.isBlocked(source)) return;
    // The budget decides how long a block lasts, never whether there is one:
    // forged sources beyond it get a short block, and a real scanner among
    // them is blocked all the same. A block the kernel made stands as it made
    // it (its own budget, per probe, spoke): the cap never lifts one.
    const withinBudget = this.#takeBlock();
    // The escalation step: one place for every detector block (kernel, per host, fleet).
    const step = this.#nextStep(source);
    const short = kernel === 'capped' || (kernel === 'none' && !withinBudget);
    const kernelBlocked = kernel !== 'none';
    if (short) {
      this.metrics.counts.detectionsCapped++;
      this.log.warn(
        { ip: source, probe: session.id, cap: this.maxBlocksPerMinute, ttlSeconds: this.#cappedTtl() },
        'port scanner detected beyond the blocks-per-minute budget: blocked for the short TTL',
      );
    }
    // At full length, the offence's step of PW_BLOCK_TTL (escalation.ts).
    const d = this.#decide({ ip: source, ...offenceBlock(det, short, this.#terms, step, (n) => this.probes.numbers.idOf(n)), origin: 'detector', offence: step.offence });
    // The probe's XDP program blocked it at the crossing SYN itself (for
    // PW_BLOCK_TTL, or the short TTL), or BlockIp leaves now; an escalated
    // block is written again on that probe with its own TTL.
    const escalated = kernelBlocked && !short && step.ttlSeconds !== this.detectorTtlSeconds;
    const applied = kernelBlocked ? undefined : this.#apply(d, session);
    const rewritten = escalated ? this.#apply(d, session) : undefined;
    const engine: Engine = kernelBlocked ? 'kernel' : det.pairs ? 'fleet' : 'policy';
    this.recorder.insert({
      ...d,
      evidence: this.#evidence(engine, short, d, step.offence, detectionProbes(det, this.keys.ofText(source), this.keys, this.feed, this.probes, this.rule)),
    });
    this.metrics.counts.detections++;
    this.feed.publish({ timeMs: Date.now(), kind: 'blacklist', source, port: 0, probeId: session.id, message: d.reason, shadow: d.shadow });
    this.log.info({ ip: source, probe: session.id, reason: d.reason, decision: d.id, shadow: d.shadow }, d.shadow ? 'port scanner detected (shadow mode: not blocked)' : 'port scanner detected');
    if (!applied) {
      this.#enforced(d.ip, session.id, true);
      this.metrics.detectionToBlock.observe(0);
      this.log.info({ ip: source, probe: session.id, detectionToBlockMs: 0 }, 'block in force (in-kernel detection)');
    } else if (await applied) {
      const seconds = Math.max(0, (Date.now() - det.tsMs) / 1000);
      this.metrics.detectionToBlock.observe(seconds);
      this.log.info({ ip: source, probe: session.id, detectionToBlockMs: Math.round(seconds * 1e4) / 10 }, 'block in force');
    }
    if (rewritten) await rewritten;
    await Promise.all(this.probes.all().filter((p) => p !== session).map((p) => this.#apply(d, p)));
  }

  /** The step of a new detection of a source, from its latest offence in the store; the first step when the store cannot say. */
  #nextStep(ip: string): Step {
    try {
      return nextStep(this.escalation, this.recorder.read((s) => s.lastOffence(ip)));
    } catch {
      return nextStep(this.escalation, undefined);
    }
  }

  /** A decision's evidence (evidence.ts), with the rule in force. */
  #evidence(engine: Engine, capped: boolean, d: DecisionRecord, offence: number, probes: Evidence['probes']): Evidence {
    const ttlSeconds = d.expiresMs === undefined ? 0 : Math.round((d.expiresMs - d.createdMs) / 1000);
    return { engine, ...this.rule, capped, ttlSeconds, offence, probes };
  }

  /** The latest offence on a source (explain: the step a next detection gets); none when the store cannot say. */
  lastOffence(ip: string): DecisionRecord | undefined {
    return this.recorder.read((s) => s.lastOffence(ip));
  }

  /** The latest decision on a source, from the store, with its evidence (explain); an active one still held in memory otherwise. */
  latestOn(ip: string): DecisionRecord | undefined {
    const stored = this.recorder.read((s) => s.latestOn(ip));
    const active = this.#active.get(ip);
    return active && (!stored || stored.id < active.id) ? active : stored;
  }

  /** A block beyond the budget (blockrule.ts). */
  #cappedTtl(): number {
    return cappedTtl(this.#terms);
  }

  /** Whether one more block may be made now at full length (or adopted), and if so counts it: detections and adoptions share the budget (blockrule.ts). */
  #takeBlock(): boolean {
    return this.#budget.take(Date.now());
  }

  /** Ends, without unblocking anywhere, every active decision the allowlist now covers (an entry may postdate it). */
  #endAllowlisted(): void {
    const now = Date.now();
    for (const d of this.active()) {
      if (!this.allowlist.coversWhole(parsePrefix(d.ip))) continue;
      this.recorder.end({ ...d, endedMs: now });
      this.#dropActive(d.ip);
      this.log.warn({ ip: d.ip, decision: d.id }, 'decision ended: the source is allowlisted');
    }
  }

  /** Undoes a block the probe's in-kernel detector made that the policy does not uphold. */
  liftKernelBlock(ip: string, session: ProbeSession, why: string): void {
    this.log.warn({ ip, probe: session.id, why }, 'lifting a block made by the in-kernel detector');
    session.unblockIp(ip).catch((e: grpc.ServiceError) => {
      this.log.error({ probe: session.id, ip, code: grpc.status[e.code], details: e.details }, 'UnblockIp failed');
    });
  }

  /** An operator's block of an address or prefix: the source it falls in (namedSource), on every probe. */
  async manualBlock(ip: string, ttlSeconds: number, reason: string): Promise<{ decision: DecisionRecord; alreadyBlocked: boolean }> {
    const { text, prefix, address } = this.source(ip);
    if (address && this.allowlist.has(address)) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${ip} is allowlisted (PW_ALLOWLIST or an operator's entry) and cannot be blocked`);
    }
    if (this.allowlist.coversWhole(prefix)) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${text} is allowlisted (PW_ALLOWLIST or an operator's entry) and cannot be blocked`);
    }
    // An own address named alone is refused as an allowlisted one is (no
    // probe would block it); a prefix holding one is blocked, the own
    // address passing inside it on its probe.
    const probes = this.probes.all();
    const own = address ?? (prefix.prefixLen === 128 ? prefix.addr : undefined);
    if (own && probes.length > 0 && probes.every((p) => this.allowlist.isOwnAddress(p.id, own))) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${ip} is an own address of every connected probe (${probes.map((p) => p.id).join(', ')}): none would block it`);
    }
    const existing = this.#active.get(text);
    if (existing && isActive(existing, Date.now())) return { decision: existing, alreadyBlocked: true };
    const d = this.#decide({ ip: text, reason: reason || 'blocked by an operator', origin: 'manual', ttlSeconds });
    const applied = Promise.all(this.probes.all().map((p) => this.#apply(d, p)));
    this.recorder.insert({ ...d, evidence: this.#evidence('operator', false, d, 0, []) });
    this.feed.publish({ timeMs: Date.now(), kind: 'blacklist', source: text, port: 0, probeId: '', message: d.reason, shadow: d.shadow });
    this.log.info({ ip: text, reason: d.reason, ttlSeconds, decision: d.id, shadow: d.shadow }, d.shadow ? 'blocked by an operator (shadow mode: not enforced)' : 'blocked by an operator');
    await applied;
    return { decision: d, alreadyBlocked: false };
  }

  /** Ends the decision on a source, named by an address or prefix in it (or all): every probe unblocks it and the detector forgets it. */
  async unblock(ip: string | undefined): Promise<DecisionRecord[]> {
    const named = ip === undefined ? undefined : this.source(ip).text;
    const targets = named === undefined ? this.active() : this.#active.has(named) ? [this.#active.get(named)!] : [];
    const now = Date.now();
    const ended: DecisionRecord[] = [];
    for (const d of targets) {
      const done = { ...d, endedMs: now };
      this.recorder.end(done);
      this.#dropActive(d.ip);
      this.detector.forget(this.keys.ofText(d.ip));
      ended.push(done);
      this.feed.publish({ timeMs: now, kind: 'unblock', source: d.ip, port: 0, probeId: '', message: 'unblocked' });
      this.log.info({ ip: d.ip, decision: d.id }, 'unblocked');
    }
    // Unblock on every probe even without a decision: the kernel may hold a block the policy lost.
    const ips = named === undefined ? ended.map((d) => d.ip) : [named];
    await Promise.all(
      this.probes.all().flatMap((p) =>
        ips.map((addr) =>
          p.unblockIp(addr).catch((e: grpc.ServiceError) => {
            this.log.warn({ probe: p.id, ip: addr, code: grpc.status[e.code], details: e.details }, 'UnblockIp failed');
          }),
        ),
      ),
    );
    return ended;
  }

  /**
   * Makes a probe's kernel view and the decisions agree: active decisions
   * missing from the kernel are applied, kernel blocks without a decision are
   * adopted (so a lost store is rebuilt from the kernel). Returns repairs made.
   */
  async reconcile(session: ProbeSession): Promise<number> {
    // The allowlist is authoritative, whatever came first: no decision it
    // covers is re-applied, no kernel block it covers is adopted or kept.
    this.#endAllowlisted();
    const kernel = (await session.listBlocks()).filter((b) => !b.expired);
    /** The kernel's blocks as the sources they fall in (a probe may list an address or a longer prefix). */
    const inKernel = new Set<string>();
    let repairs = 0;
    /** A kernel block keyed at other lengths than the policy's: the probe has not taken the policy's configuration yet. */
    let otherLengths: string | undefined;
    for (const b of kernel) {
      let p: Prefix;
      try {
        p = parsePrefix(b.ip);
      } catch {
        this.metrics.counts.kernelBlocksNotAdopted++;
        this.log.warn({ probe: session.id, ip: b.ip }, 'kernel view: not an address or prefix; ignored');
        continue;
      }
      if (p.prefixLen !== this.keys.lengthFor(p)) otherLengths ??= b.ip;
      if (p.prefixLen < this.keys.lengthFor(p)) {
        // Keyed at a shorter length than the policy's: that probe runs
        // another configuration, and the policy cannot decide on it.
        this.metrics.counts.kernelBlocksNotAdopted++;
        this.log.warn({ probe: session.id, ip: b.ip }, 'kernel view: a prefix shorter than the policy keys sources by; ignored');
        continue;
      }
      const prefix = this.keys.prefixOf(p.addr);
      const ip = formatSource(prefix);
      inKernel.add(ip);
      if (this.allowlist.coversWhole(prefix)) {
        this.liftKernelBlock(ip, session, 'allowlisted by the policy');
        repairs++;
        continue;
      }
      if (this.isBlocked(ip)) {
        this.#enforced(ip, session.id, true);
        continue;
      }
      let ended: DecisionRecord | undefined;
      try {
        ended = this.recorder.lastEnded(ip);
      } catch {
        // The store cannot say whether an operator ended it (counted and
        // logged): neither lifted nor adopted until a reconcile that can.
        continue;
      }
      if (ended?.endedMs !== undefined && (b.created === undefined || ended.endedMs >= b.created.getTime())) {
        // An unblock that did not reach this probe (it was away, the call
        // failed, the policy was killed in between): the ended decision wins.
        this.log.warn({ ip, probe: session.id, decision: ended.id }, 'drift: kernel block of an ended decision; unblocking');
        this.liftKernelBlock(ip, session, 'its decision was ended');
        repairs++;
        continue;
      }
      this.#enforced(ip, session.id, true);
      if (!this.#takeBlock()) {
        // A forged kernel view must not become decisions for every probe.
        this.metrics.counts.kernelBlocksNotAdopted++;
        this.log.warn({ ip, probe: session.id, cap: this.maxBlocksPerMinute }, 'drift: kernel block without a decision NOT adopted: blocks-per-minute cap reached');
        continue;
      }
      const ttlSeconds = b.expires ? Math.max(1, (b.expires.getTime() - Date.now()) / 1000) : 0;
      const d = this.#decide({
        ip,
        reason: `found in the kernel blocklist of ${session.id}`,
        origin: 'kernel',
        ttlSeconds,
        createdMs: b.created?.getTime(),
        offence: this.#nextStep(ip).offence,
      });
      this.recorder.insert({ ...d, evidence: this.#evidence('adopted', false, d, d.offence ?? 0, []) });
      this.metrics.counts.kernelBlocksAdopted++;
      this.log.warn({ ip, probe: session.id, decision: d.id }, 'drift: kernel block without a decision; adopted');
      repairs++;
    }
    for (const d of this.active()) {
      if (inKernel.has(d.ip) || this.#isOwn(session, d.ip)) continue;
      this.log.warn({ ip: d.ip, probe: session.id, decision: d.id }, 'drift: decision missing from the kernel; re-applying');
      if (await this.#apply(d, session)) repairs++;
    }
    this.metrics.counts.driftRepairs += repairs;
    if (otherLengths !== undefined) this.#reconcileSoon(session, `its kernel lists ${otherLengths}`);
    else this.#rekeying.delete(session);
    return repairs;
  }

  /**
   * Reconciles a probe again in a second, a few times at most: it keys
   * sources at other prefix lengths than the policy's, so it has not taken
   * the policy's configuration yet (sent on its Report stream as this
   * reconcile started) and will re-key its blocklist when it does, removing
   * keys shorter than the new length; decisions applied before that must be
   * applied again. The periodic reconcile is the backstop.
   */
  #reconcileSoon(session: ProbeSession, why: string): void {
    const n = this.#rekeying.get(session) ?? 0;
    if (n >= 5) return;
    this.#rekeying.set(session, n + 1);
    this.log.info({ probe: session.id, why }, "the probe keys sources at other prefix lengths than the policy's: reconciling again once it has the policy's");
    const timer = setTimeout(() => {
      if (this.probes.get(session.id) !== session) return;
      this.reconcile(session).catch((e: Error) => this.log.warn({ probe: session.id, err: e.message }, 'reconcile failed'));
    }, 1000);
    timer.unref();
  }

  /** A new decision, active from now; the caller records it once its enforcement has started. */
  #decide(o: { ip: string; reason: string; origin: Origin; ttlSeconds: number; createdMs?: number | undefined; shadow?: boolean; offence?: number | undefined }): DecisionRecord {
    const now = Date.now();
    // Whole milliseconds, as the store keeps them: the decision in memory is the one recorded.
    const d: DecisionRecord = {
      id: this.recorder.newId(),
      ip: o.ip,
      reason: o.reason,
      origin: o.origin,
      createdMs: Math.round(o.createdMs ?? now),
      expiresMs: o.ttlSeconds > 0 ? Math.round(now + o.ttlSeconds * 1000) : undefined,
      endedMs: undefined,
      shadow: o.shadow ?? this.shadow,
      ...(o.offence ? { offence: o.offence } : {}),
    };
    if (d.shadow) this.metrics.counts.shadowDecisions++;
    this.#setActive(d);
    return d;
  }

  #enforced(ip: string, probeId: string, yes: boolean): void {
    let set = this.#enforcedBy.get(ip);
    if (!set) this.#enforcedBy.set(ip, (set = new Set()));
    if (yes) set.add(probeId);
    else set.delete(probeId);
  }

  /**
   * Whether a source (its text) is the probe's own address: that probe never
   * blocks it, the others do. A prefix holding the probe's own address is
   * blocked on it too: its kernel's allowlist passes the address itself.
   */
  #isOwn(p: ProbeSession, ip: string): boolean {
    const prefix = parsePrefix(ip);
    return prefix.prefixLen === 128 && this.allowlist.isOwnAddress(p.id, prefix.addr);
  }

  /** BlockIp on one probe for the rest of the decision's life (not on a probe whose own address it is). */
  async #apply(d: DecisionRecord, p: ProbeSession): Promise<boolean> {
    if (this.#isOwn(p, d.ip)) return false;
    const ttlSeconds = d.expiresMs === undefined ? 0 : (d.expiresMs - Date.now()) / 1000;
    if (d.expiresMs !== undefined && ttlSeconds <= 0) return false;
    try {
      const res = await p.blockIp(d.ip, ttlSeconds, KERNEL_REASON[d.origin]);
      this.#enforced(d.ip, p.id, true);
      // The probe keyed it at other lengths: it has not taken the policy's yet, and re-keys its blocklist when it does.
      if (res.block && res.block.ip !== d.ip) this.#reconcileSoon(p, `BlockIp of ${d.ip} made ${res.block.ip}`);
      return true;
    } catch (e) {
      const err = e as grpc.ServiceError;
      this.metrics.counts.blockFailures++;
      this.#enforced(d.ip, p.id, false);
      this.log.error({ probe: p.id, ip: d.ip, code: grpc.status[err.code], details: err.details }, 'BlockIp failed');
      return false;
    }
  }
}
