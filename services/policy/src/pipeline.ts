// The policy's event pipeline: a probe's batch of SYN records, decoded in
// place, through the allowlist, the detector (per-host and fleet rules) and
// the decisions, and into the live feed. Plain calls with no I/O of their
// own: service.ts adapts a Report stream to them (flow control, scheduling)
// and tests call them directly. A SYN goes one way: records → detection →
// decision; nothing here calls back into the adapter.
import { SYN_EVENT_OFFSET, SYN_EVENT_SIZE, ScanVerdict } from '@packetwatch/bpf/records';
import type { Logger } from '@packetwatch/common';
import type { EventBatch } from '@packetwatch/proto';
import type { Allowlist } from './allowlist.js';
import type { Decisions, KernelBlock } from './decisions.js';
import type { Detector } from './detector.js';
import type { Feed } from './feed.js';
import { type PolicyMetrics, saturatingAdd } from './metrics.js';
import { countsTowardRules } from './portstate.js';
import type { ProbeSession } from './probes.js';
import { addressAt } from './sourcekey.js';

// Offsets in struct pw_syn_event (bpf/packetwatch.h), read in place on the hot path.
const { tsNs: OFF_TS, saddr: OFF_SADDR, dport: OFF_DPORT, scan: OFF_SCAN, kind: OFF_KIND, tcpFlags: OFF_FLAGS, portState: OFF_PORT_STATE } = SYN_EVENT_OFFSET;

/** What the pipeline works with (the policy's context has it all). */
export interface PipelineContext {
  detector: Detector;
  decisions: Decisions;
  allowlist: Allowlist;
  feed: Feed;
  metrics: PolicyMetrics;
  log: Logger;
  /** T, which bounds how far an event time may be off the policy's clock. */
  windowSeconds: number;
}

/** A batch's records, and the shift that puts their times on the policy's clock (clockShift). */
export interface Admitted {
  records: Buffer;
  shiftMs: number;
}

/**
 * How far an event time may be off the policy's clock: 2 s for hosts' clock
 * skew, and never half the window or more, so that an event stamped at the
 * limit cannot make a current one stale (the detector's clock is the newest
 * event time it has seen).
 */
function eventTimeTolerance(windowSeconds: number): number {
  return Math.min(2000, (windowSeconds * 1000) / 2 - 1);
}

/**
 * What to add to a batch's event times to put them on the policy's clock:
 * the probe's clock is measured at each batch (the policy's time of receipt
 * minus the probe's time of sending); within the tolerance nothing, beyond
 * it the whole difference. A probe whose clock lags by more than T would
 * otherwise have every event taken as stale, and detection of the sources
 * only it sees would stop; one ahead would have its events counted out of
 * range. The delay in transit (and in the probe's queue) is kept: an event
 * keeps its age.
 */
function clockShift(ctx: PipelineContext, session: ProbeSession, batch: EventBatch): number {
  if (batch.sentUnixNs === 0n) return 0;
  const skewMs = Date.now() - Number(batch.sentUnixNs) / 1e6;
  session.clockSkewMs = skewMs;
  const corrected = Math.abs(skewMs) > eventTimeTolerance(ctx.windowSeconds);
  if (corrected !== session.clockCorrected) {
    session.clockCorrected = corrected;
    if (corrected) ctx.log.warn({ probe: session.id, skewMs: Math.round(skewMs) }, "the probe's clock is off the policy's: its event times are corrected");
    else ctx.log.info({ probe: session.id, skewMs: Math.round(skewMs) }, "the probe's clock agrees with the policy's again");
  }
  if (!corrected) return 0;
  ctx.metrics.counts.eventsClockCorrected += batch.count;
  return skewMs;
}

/**
 * A batch checkBatch() accepted, as it arrives: its events and losses are
 * counted (the probe's and the policy's totals), and its records come back
 * with their clock shift for processRecords(), or undefined when it holds
 * none (a batch may carry only a count of lost events).
 */
export function admitBatch(ctx: PipelineContext, session: ProbeSession, batch: EventBatch): Admitted | undefined {
  const lost = Number(batch.lostEvents);
  if (lost > 0) {
    session.eventsLost = saturatingAdd(session.eventsLost, lost);
    ctx.metrics.counts.eventsLost = saturatingAdd(ctx.metrics.counts.eventsLost, lost);
  }
  if (batch.count === 0) return undefined;
  const buf = Buffer.isBuffer(batch.records) ? batch.records : Buffer.from(batch.records);
  session.eventsReceived += batch.count;
  ctx.metrics.counts.eventsReceived += batch.count;
  return { records: buf.subarray(0, batch.count * SYN_EVENT_SIZE), shiftMs: clockShift(ctx, session, batch) };
}

/**
 * Runs records [from, end) of an admitted batch through the allowlist, the
 * decisions, the detector and the feed, and returns where it stopped: the
 * end, or just past a detection, so that the caller lets the BlockIp call
 * leave now rather than after thousands more records (every millisecond
 * here is SYNs a fast scanner gets through). The allowlist and the own
 * addresses go by the address itself; the decisions and the detector by the
 * source it counts as, its prefix (PW_IPV6_PREFIX, PW_IPV4_PREFIX). Per
 * record it allocates nothing for IPv4 (the address and its source are
 * numbers) and one key string for IPv6; the source's text is made only for
 * a detection, and the feed keeps the record raw unless someone watches.
 */
export function processRecords(ctx: PipelineContext, session: ProbeSession, batch: Admitted, from = 0): number {
  const { feed, allowlist, decisions, detector } = ctx;
  const keys = decisions.keys;
  const { records: buf, shiftMs } = batch;
  const end = buf.length;
  const probeId = session.id;
  const probe = session.number;
  // The newest event time the detector takes (eventTimeTolerance).
  const newestMs = Date.now() + eventTimeTolerance(ctx.windowSeconds);
  for (let off = from; off < end; off += SYN_EVENT_SIZE) {
    const t = off + OFF_TS;
    const lo = (buf[t]! | (buf[t + 1]! << 8) | (buf[t + 2]! << 16) | (buf[t + 3]! << 24)) >>> 0;
    const hi = (buf[t + 4]! | (buf[t + 5]! << 8) | (buf[t + 6]! << 16) | (buf[t + 7]! << 24)) >>> 0;
    // hi * 2^32 is exact and the sum rounds once: the same double as Number(readBigUInt64LE).
    const tsMs = (hi * 4294967296 + lo) / 1e6 + shiftMs;
    const port = buf[off + OFF_DPORT]! | (buf[off + OFF_DPORT + 1]! << 8);
    const at = off + OFF_SADDR;
    const portState = buf[off + OFF_PORT_STATE]!;
    feed.publishConnection(tsMs, buf, at, port, probeId, buf[off + OFF_KIND], buf[off + OFF_FLAGS], portState);
    if (!countsTowardRules(portState)) {
      // Closed mode: the probe's host accepts the port (a socket, or
      // PW_OPEN_PORTS). Neither rule counts it, as the kernel does not
      // (docs/detection.md, "Closed mode"); it is shown, marked.
      ctx.metrics.counts.eventsOpenPort++;
      continue;
    }
    const addr = addressAt(buf, at);
    const scan = buf[off + OFF_SCAN];
    const kernel: KernelBlock = scan === ScanVerdict.Blocked ? 'blocked' : scan === ScanVerdict.Capped ? 'capped' : 'none';
    const kernelBlocked = kernel !== 'none';
    if (!(tsMs <= newestMs) && !kernelBlocked) {
      // Stamped in the future: taken, it would move the detector's clock
      // ahead and make every real event after it stale.
      ctx.metrics.counts.eventsOutOfRange++;
      continue;
    }
    const key = keys.at(buf, at, addr);
    if (allowlist.hasSource(addr, buf, at)) {
      // The kernel knows only the probe's allowlist; the policy's own
      // entries (PW_ALLOWLIST, operators) win over its detector: an
      // allowlisted address never gets its prefix blocked by its own scan
      // (a decision on the prefix, made by another address's, stands).
      if (kernelBlocked && !decisions.isBlockedKey(key)) decisions.liftKernelBlock(keys.textAt(buf, at), session, 'allowlisted by the policy');
      continue;
    }
    // The probe's own address, on that probe (its kernel never blocks it
    // either); another address of its prefix is tracked like any source.
    if (allowlist.isOwn(probeId, key, buf, at)) continue;
    if (decisions.isBlockedKey(key)) continue;
    let det = detector.observe(key, port, tsMs, probe);
    if (!det && !kernelBlocked) continue;
    if (!det) {
      // The kernel saw the whole scan; the policy may have missed part of it
      // (events lost while it was away).
      detector.forget(key);
      det = { source: key, port, tsMs, ports: [port], firstMs: tsMs, lastMs: tsMs };
    }
    const source = keys.textAt(buf, at);
    decisions.detected(det, source, session, kernel).catch((err: unknown) => ctx.log.error({ err, ip: source }, 'applying a detection failed'));
    return off + SYN_EVENT_SIZE;
  }
  return end;
}
