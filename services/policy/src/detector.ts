/**
 * The port-scan detector: pure, synchronous, no I/O, no wall clock.
 *
 * It runs the scan rule of docs/detection.md, which is written there once
 * (what a probe is, "N distinct ports within T" at its edges, idle expiry,
 * late events, N = 1) and which the XDP program runs too; the differential
 * test (test/detection/differential.root.test.ts) holds the two to the same
 * decision at the same SYN. The window slides on the events' own timestamps
 * (tsMs), never on the clock of the process: the detector's clock is the
 * newest event timestamp it has seen.
 *
 * State. For each source the detector keeps at most N = portThreshold
 * (port, time) entries: the N most recently hit distinct ports, each with
 * the time of its most recent hit. With events in timestamp order this is
 * exact with O(N) memory: if any N distinct ports were hit within T, the N
 * most recently hit ports were too (their oldest time can only be later), so
 * observe() detects on exactly the first event at which a scan exists. Which
 * of two ports hit at the same time is dropped first does not change any
 * decision: every decision depends only on the times kept (so the XDP
 * program may keep its entries in another order, and does).
 *
 * What observe() does beyond the rule:
 * - A detection returns {source, port, tsMs} of the crossing event, the N
 *   ports oldest first, firstMs/lastMs their earliest and latest times, and
 *   drops the source's state. The caller blocks the source; if more events of
 *   it arrive they start afresh (it takes N new ports to detect it again).
 * - Idle expiry: sweep() forgets expired sources (call it periodically);
 *   observe() treats an expired source that comes back as fresh whether or not
 *   a sweep has run yet, so detections do not depend on when sweeps happen.
 *   With events in order, expiry loses no detection: every later hit is at
 *   least T after every forgotten one.
 * - Admission (docs/detection.md, "Memory"): the cap (maxSources) is split
 *   into two spaces. A new source waits in probation, which keeps its one
 *   hit (the port, the pair for the fleet rule, the time); its second
 *   distinct port (or pair) promotes it to the protected space, which keeps
 *   the full history below. Probation is a ring of probationSources slots,
 *   first in first out: the k-th admission takes slot k mod probationSources
 *   and forgets the source admitted there probationSources admissions
 *   earlier, if it is still there (counted in `probationEvictions`, or in
 *   `expired` when its hit had expired anyway). So a flood of single-hit
 *   sources (forged ones) forgets a source's first hit only after
 *   probationSources newer admissions, and never touches the protected
 *   space: a scanner is detected whenever fewer than probationSources other
 *   sources are admitted between its first two distinct ports. A source
 *   promoted at the cap of the protected space (maxSources -
 *   probationSources) first reclaims expired sources; if none is expired,
 *   the least recently hit protected source (never the new one) is evicted
 *   and counted in `protectedEvictions`. Protected sources are kept on a
 *   recency list, so both steps are O(1): with events in order the expired
 *   sources are exactly the head of the list. (A source moved to the tail
 *   by a late event can hide an expired one behind it; the next sweep()
 *   finds it.) An evicted source loses its history. Nothing here changes a
 *   decision while nothing is evicted: a source in probation holds exactly
 *   the history of one entry it would hold in a slot, and its promotion
 *   builds that history (in a scratch slot) and applies the second hit to it
 *   as to any other; a crossing there (N = 2) is detected straight from
 *   probation, which is not counted as a promotion. A source whose history
 *   expires goes back to probation with its new hit (an admission). The XDP
 *   program runs the same design (bpf/packetwatch.bpf.c, pw_track_scan).
 * - forget(source) drops a source's history (an operator unblocked it).
 * - `expired` counts sources forgotten for idleness, whoever noticed it:
 *   sweep(), the reclaim at the cap, or observe() when an idle source came
 *   back before a sweep forgot it.
 *
 * The fleet rule (pairThreshold F > 0; docs/fleet.md). The same rule, on
 * what the policy sees and a host cannot: a source is also a scanner once it
 * has hit F distinct (probe, port) pairs within T, across the probes that
 * report to this policy (the same port on two probes is two pairs). A
 * source's slot keeps its F most recent pairs beside its N most recent ports,
 * and everything above holds for them word for word with "pair" for "port":
 * within T strictly, a repeated pair moves to its later hit, late hits,
 * expiry, the cap and eviction (one slot, one recency list, one `last`). Each
 * event is checked against the per-host rule first, so its results are the
 * same with the fleet rule on or off, but for one thing: a detection by
 * either rule drops the source's whole slot (it is blocked, and if more of
 * its events arrive, both rules start afresh, as after an unblock). F is 0
 * or at least N: on one probe the pairs are the ports, and an F below N
 * would be a lower per-host threshold in disguise.
 *
 * Layout (the hot path allocates nothing per event, no per-source objects):
 * a Map from source key to slot number (a protected slot s as s, a
 * probation slot p as ~p, a negative number), the probation ring as three
 * arrays (keys, pairs as Uint32Array: the probe's number in the high 16
 * bits, the port in the low 16, and times as Float64Array: 12 bytes a slot
 * besides its key), and for the protected space a struct-of-arrays pool of slots:
 * ports (Uint16Array, N per slot), times (Float64Array, N per slot), counts
 * (Uint8Array, 0 = free slot), last (Float64Array, most recent hit), prev and
 * next (Int32Array, the recency list), a free-slot stack and the slots' keys
 * (to delete the Map entry on release). Keys are SourceKeys: an IPv4 source
 * is an int32 (inline in the Map), so its hit allocates nothing. The arrays
 * of each space grow by doubling, from 4096 slots up to exactly its size, so
 * a large cap costs nothing up front.
 * With N = 3 that is 59 bytes per protected slot and 20 per probation slot
 * (its key's reference included), plus the Map entry and the key string the
 * caller made: measured on the heap with IPv4 keys, about 92 and 52 bytes a
 * source. The fleet rule adds, per protected slot, F pairs
 * (Uint32Array: the probe's number in the high 16 bits, the port in the low
 * 16), their times (Float64Array) and a count: 12 F + 1 bytes, 121 with
 * F = 10 (nothing when it is off). Only a detection allocates (its result);
 * a promotion copies the scratch slot into its protected slot in place.
 */

import type { SourceKey } from './sourcekey.js';

export interface DetectorOptions {
  /** N: distinct destination ports that make a scan, 1..255. */
  portThreshold: number;
  /** T: the window in seconds, > 0 (fractional allowed). */
  windowSeconds: number;
  /** Hard cap on tracked sources, 2..16,777,216 (V8's limit for a Map), both spaces together. */
  maxSources: number;
  /** Of them, sources in probation (seen on one port): 1..maxSources - 1; default probationSpace(maxSources). */
  probationSources?: number;
  /** F: distinct (probe, port) pairs that make a scan across the fleet, 0 (off, the default) or N..255. */
  pairThreshold?: number;
}

/** A (probe, port) pair of the fleet rule: the probe by its number (observe()'s `probe`). */
export interface Pair {
  probe: number;
  port: number;
}

export interface Detection {
  /** The source key as passed to observe(). */
  source: SourceKey;
  /** The port of the event that crossed the threshold. */
  port: number;
  /** The timestamp of that event (with late events it may be < lastMs). */
  tsMs: number;
  /** The N ports, by the time of their most recent hit, oldest first. */
  ports: number[];
  /** The earliest of the N ports' times. */
  firstMs: number;
  /** The latest of the N ports' times; lastMs - firstMs < T. */
  lastMs: number;
  /**
   * Set when the fleet rule detected it: the F pairs, by the time of their
   * most recent hit, oldest first; `ports` then holds their ports, in the
   * same order (a port once per probe), and firstMs/lastMs are the pairs'.
   */
  pairs?: Pair[];
}

/** A source's history as held() reads it. */
export interface Held {
  ports: { port: number; ms: number }[];
  /** The fleet rule's pairs (empty when it is off). */
  pairs: { probe: number; port: number; ms: number }[];
}

/** V8 refuses to grow a Map beyond 2^24 entries. */
const MAX_SOURCES = 1 << 24;
const FIRST_CHUNK = 4096;
const NONE = -1;
/** A pair is probe * PAIR_PROBE + port: probe numbers and ports are 16 bits each. */
const PAIR_PROBE = 0x10000;

/** The default share of probation in maxSources: all but an eighth (at least one slot each). */
export function probationSpace(maxSources: number): number {
  return maxSources - Math.max(1, Math.floor(maxSources / 8));
}

/** A source's hits, by time then target, for a Detection. */
type Hit = { target: number; ms: number };

export class Detector {
  private readonly n: number;
  /** F, 0 when the fleet rule is off. */
  private readonly f: number;
  private readonly windowMs: number;
  /** The protected space's size, and probation's. */
  private readonly maxProtected: number;
  private readonly maxProbation: number;

  private readonly index = new Map<SourceKey, number>();
  private readonly keys: (SourceKey | undefined)[] = [];
  private ports = new Uint16Array(0);
  private times = new Float64Array(0);
  private counts = new Uint8Array(0);
  /** The fleet rule's pairs, their times and counts, F per slot (empty when it is off). */
  private pairs = new Uint32Array(0);
  private pairTimes = new Float64Array(0);
  private pairCounts = new Uint8Array(0);
  private last = new Float64Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private free = new Int32Array(0);
  private capacity = 0;
  /** Slots ever handed out (the high-water mark); free ones are on `free`. */
  private used = 0;
  private freeTop = 0;
  /** The recency list: head is the least recently hit source. */
  private head = NONE;
  private tail = NONE;
  /** The newest event timestamp seen. */
  private clock = -Infinity;
  private expiredTotal = 0;
  private admittedTotal = 0;
  private promotedTotal = 0;
  private probationEvictedTotal = 0;
  private protectedEvictedTotal = 0;
  /** Sources in the protected space. */
  private protectedCount = 0;

  /** Probation: a ring of slots, each a source's one hit (its key, pair, time); undefined key = empty. */
  private readonly pKeys: (SourceKey | undefined)[] = [];
  private pPairs = new Uint32Array(0);
  private pTimes = new Float64Array(0);
  private pCapacity = 0;
  /** The slot of the next admission. */
  private pHead = 0;

  /** A scratch slot where a promotion's history is put together: pool layout, slot 0. */
  private readonly sPorts: Uint16Array;
  private readonly sTimes: Float64Array;
  private readonly sPairs: Uint32Array;
  private readonly sPairTimes: Float64Array;
  private readonly sCounts = new Uint8Array(1);
  private readonly sPairCounts = new Uint8Array(1);

  constructor(opts: DetectorOptions) {
    const { portThreshold, windowSeconds, maxSources, pairThreshold = 0 } = opts;
    if (!Number.isInteger(portThreshold) || portThreshold < 1 || portThreshold > 255) {
      throw new RangeError(`portThreshold must be an integer in 1..255, got ${portThreshold}`);
    }
    if (!Number.isInteger(pairThreshold) || (pairThreshold !== 0 && (pairThreshold < portThreshold || pairThreshold > 255))) {
      throw new RangeError(`pairThreshold must be 0 or an integer in ${portThreshold}..255 (portThreshold..255), got ${pairThreshold}`);
    }
    if (!Number.isFinite(windowSeconds) || windowSeconds <= 0) {
      throw new RangeError(`windowSeconds must be a finite number > 0, got ${windowSeconds}`);
    }
    if (!Number.isInteger(maxSources) || maxSources < 2 || maxSources > MAX_SOURCES) {
      throw new RangeError(`maxSources must be an integer in 2..${MAX_SOURCES}, got ${maxSources}`);
    }
    const probation = opts.probationSources ?? probationSpace(maxSources);
    if (!Number.isInteger(probation) || probation < 1 || probation >= maxSources) {
      throw new RangeError(`probationSources must be an integer in 1..${maxSources - 1} (below maxSources), got ${probation}`);
    }
    this.n = portThreshold;
    this.f = pairThreshold;
    this.windowMs = windowSeconds * 1000;
    this.maxProbation = probation;
    this.maxProtected = maxSources - probation;
    this.sPorts = new Uint16Array(portThreshold);
    this.sTimes = new Float64Array(portThreshold);
    this.sPairs = new Uint32Array(pairThreshold);
    this.sPairTimes = new Float64Array(pairThreshold);
  }

  /**
   * One new-connection SYN. source: an opaque key (the service passes the
   * address's sourceKey: a number for IPv4, a latin1 string for IPv6); port: the destination port; tsMs:
   * the event time in ms since the epoch (fractional allowed); probe: the
   * number of the probe that saw it, 0..65535, for the fleet rule (ignored
   * when it is off). Returns the detection if this event makes the source a
   * scanner, else undefined. Throws RangeError for a port or probe outside
   * 0..65535 or a non-finite tsMs.
   */
  observe(source: SourceKey, port: number, tsMs: number, probe = 0): Detection | undefined {
    if ((port & 0xffff) !== port) throw new RangeError(`port must be an integer in 0..65535, got ${port}`);
    if ((probe & 0xffff) !== probe) throw new RangeError(`probe must be an integer in 0..65535, got ${probe}`);
    if (tsMs - tsMs !== 0) throw new RangeError(`tsMs must be a finite number, got ${tsMs}`);
    if (tsMs > this.clock) this.clock = tsMs;
    const n = this.n;
    if (n === 1) return { source, port, tsMs, ports: [port], firstMs: tsMs, lastMs: tsMs };

    const windowMs = this.windowMs;
    const stale = this.clock - tsMs >= windowMs;
    const pair = probe * PAIR_PROBE + port;
    const f = this.f;
    const slot = this.index.get(source);
    if (slot === undefined) {
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }
    if (slot < 0) return this.probationHit(~slot, source, port, pair, tsMs, stale);
    const last = this.last;
    if (this.clock - last[slot]! >= windowMs) {
      // Idle for T or more: its history is expired, the source starts afresh, in probation.
      this.expiredTotal++;
      this.release(slot);
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }

    const hostFull = this.record(this.ports, this.times, this.counts, n, slot, port, tsMs);
    const fleetFull = f > 0 && this.record(this.pairs, this.pairTimes, this.pairCounts, f, slot, pair, tsMs);
    if (tsMs > last[slot]!) this.touch(slot, tsMs);
    const lastMs = last[slot]!;
    if (hostFull && this.within(this.times, n, slot, lastMs)) return this.detect(this.ports, this.times, n, slot, source, port, tsMs, false, slot);
    if (fleetFull && this.within(this.pairTimes, f, slot, lastMs)) return this.detect(this.pairs, this.pairTimes, f, slot, source, port, tsMs, true, slot);
    return undefined;
  }

  /**
   * A hit of a source in probation slot p: expiry as for any source, a
   * repeated port (or pair) moves the hit's time, a second distinct one
   * promotes it (or detects it, with N = 2).
   */
  private probationHit(p: number, source: SourceKey, port: number, pair: number, tsMs: number, stale: boolean): Detection | undefined {
    const t0 = this.pTimes[p]!;
    if (this.clock - t0 >= this.windowMs) {
      this.expiredTotal++;
      this.releaseProbation(p);
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }
    const n = this.n;
    const f = this.f;
    const pair0 = this.pPairs[p]!;
    const port0 = pair0 & 0xffff;
    if (port0 === port && (f === 0 || pair0 === pair)) {
      if (tsMs > t0) this.pTimes[p] = tsMs;
      return undefined;
    }
    // The history of one entry the source stands for, in the scratch slot, and the hit applied to it.
    const { sPorts, sTimes, sPairs, sPairTimes, sCounts, sPairCounts } = this;
    sPorts[0] = port0;
    sTimes[0] = t0;
    sCounts[0] = 1;
    if (f > 0) {
      sPairs[0] = pair0;
      sPairTimes[0] = t0;
      sPairCounts[0] = 1;
    }
    const hostFull = this.record(sPorts, sTimes, sCounts, n, 0, port, tsMs);
    const fleetFull = f > 0 && this.record(sPairs, sPairTimes, sPairCounts, f, 0, pair, tsMs);
    const lastMs = tsMs > t0 ? tsMs : t0;
    this.releaseProbation(p);
    if (hostFull && this.within(sTimes, n, 0, lastMs)) return this.detect(sPorts, sTimes, n, 0, source, port, tsMs, false, NONE);
    if (fleetFull && this.within(sPairTimes, f, 0, lastMs)) return this.detect(sPairs, sPairTimes, f, 0, source, port, tsMs, true, NONE);
    const slot = this.allocate(source);
    // Copied entry by entry: a subarray() view would be an allocation.
    const c = sCounts[0]!;
    const { ports, times } = this;
    for (let j = 0, at = slot * n; j < c; j++, at++) {
      ports[at] = sPorts[j]!;
      times[at] = sTimes[j]!;
    }
    this.counts[slot] = c;
    if (f > 0) {
      const pc = sPairCounts[0]!;
      const { pairs, pairTimes } = this;
      for (let j = 0, at = slot * f; j < pc; j++, at++) {
        pairs[at] = sPairs[j]!;
        pairTimes[at] = sPairTimes[j]!;
      }
      this.pairCounts[slot] = pc;
    }
    this.touch(slot, lastMs);
    this.promotedTotal++;
    return undefined;
  }

  /** A source enters probation with one hit, in the ring's next slot, whose occupant (if any) it forgets. */
  private admit(source: SourceKey, pair: number, tsMs: number): void {
    let p = this.pHead;
    if (p === this.pCapacity) this.growProbation();
    const old = this.pKeys[p];
    if (old !== undefined) {
      this.index.delete(old);
      if (this.clock - this.pTimes[p]! >= this.windowMs) this.expiredTotal++;
      else this.probationEvictedTotal++;
    }
    this.pKeys[p] = source;
    this.pPairs[p] = pair;
    this.pTimes[p] = tsMs;
    this.index.set(source, ~p);
    this.admittedTotal++;
    p++;
    this.pHead = p === this.maxProbation ? 0 : p;
  }

  private releaseProbation(p: number): void {
    this.index.delete(this.pKeys[p]!);
    this.pKeys[p] = undefined;
  }

  private growProbation(): void {
    const cap = Math.min(this.maxProbation, Math.max(FIRST_CHUNK, this.pCapacity * 2));
    this.pPairs = enlarged(this.pPairs, cap);
    this.pTimes = enlarged(this.pTimes, cap);
    this.pCapacity = cap;
  }

  /**
   * What the detector holds for a source now, for explain: its kept ports
   * (and, with the fleet rule, pairs), each with the time of its latest hit,
   * oldest first; undefined when it is not tracked or its history has
   * expired. Reads only: nothing moves, nothing is counted.
   */
  held(source: SourceKey): Held | undefined {
    const slot = this.index.get(source);
    if (slot === undefined) return undefined;
    const byTime = (a: { ms: number }, b: { ms: number }) => a.ms - b.ms;
    if (slot < 0) {
      const pair = this.pPairs[~slot]!;
      const ms = this.pTimes[~slot]!;
      if (this.clock - ms >= this.windowMs) return undefined;
      return { ports: [{ port: pair & 0xffff, ms }], pairs: this.f > 0 ? [{ probe: Math.floor(pair / PAIR_PROBE), port: pair & 0xffff, ms }] : [] };
    }
    if (this.clock - this.last[slot]! >= this.windowMs) return undefined;
    const ports: Held['ports'] = [];
    for (let j = slot * this.n; j < slot * this.n + this.counts[slot]!; j++) ports.push({ port: this.ports[j]!, ms: this.times[j]! });
    const pairs: Held['pairs'] = [];
    if (this.f > 0) {
      for (let j = slot * this.f; j < slot * this.f + this.pairCounts[slot]!; j++) {
        const t = this.pairs[j]!;
        pairs.push({ probe: Math.floor(t / PAIR_PROBE), port: t & 0xffff, ms: this.pairTimes[j]! });
      }
    }
    return { ports: ports.sort(byTime), pairs: pairs.sort(byTime) };
  }

  /** Drops a source's history; true if it was tracked. */
  forget(source: SourceKey): boolean {
    const slot = this.index.get(source);
    if (slot === undefined) return false;
    if (slot < 0) this.releaseProbation(~slot);
    else this.release(slot);
    return true;
  }

  /**
   * Forgets every source whose most recent hit is T or more older than nowMs
   * (default: the newest event timestamp seen; pass a time on the events'
   * clock). Returns how many were forgotten. O(slots in use).
   */
  sweep(nowMs?: number): number {
    let now = this.clock;
    if (nowMs !== undefined) {
      if (nowMs - nowMs !== 0) throw new RangeError(`nowMs must be a finite number, got ${nowMs}`);
      now = nowMs;
    }
    const cutoff = now - this.windowMs;
    const counts = this.counts;
    const last = this.last;
    let removed = 0;
    for (let s = 0; s < this.used; s++) {
      if (counts[s] !== 0 && last[s]! <= cutoff) {
        this.release(s);
        removed++;
      }
    }
    const pKeys = this.pKeys;
    const pTimes = this.pTimes;
    for (let p = 0; p < this.pCapacity; p++) {
      if (pKeys[p] !== undefined && pTimes[p]! <= cutoff) {
        this.releaseProbation(p);
        removed++;
      }
    }
    this.expiredTotal += removed;
    return removed;
  }

  /** Sources currently tracked. */
  get tracked(): number {
    return this.index.size;
  }

  /** Sources evicted at the cap, in total: from probation and from the protected space. */
  get evictions(): number {
    return this.probationEvictedTotal + this.protectedEvictedTotal;
  }

  /** Sources forgotten from probation to make room for a newer admission (their hit unexpired), in total. */
  get probationEvictions(): number {
    return this.probationEvictedTotal;
  }

  /** Sources evicted from the protected space to make room for a promotion, in total. */
  get protectedEvictions(): number {
    return this.protectedEvictedTotal;
  }

  /** Sources that entered probation (a first hit, or a first hit after their history expired), in total. */
  get admitted(): number {
    return this.admittedTotal;
  }

  /** Sources moved from probation to the protected space by a second distinct port (or pair), in total. */
  get promoted(): number {
    return this.promotedTotal;
  }

  /** Sources in probation and in the protected space now. */
  get spaces(): { probation: number; protected: number } {
    return { probation: this.index.size - this.protectedCount, protected: this.protectedCount };
  }

  /** The spaces' sizes. */
  get sizes(): { probation: number; protected: number } {
    return { probation: this.maxProbation, protected: this.maxProtected };
  }

  /** Sources forgotten for idleness, in total. */
  get expired(): number {
    return this.expiredTotal;
  }

  /**
   * A hit on `target` in one of a slot's two sets (its k most recent distinct
   * ports, or pairs, with their times). Returns whether the set holds k
   * targets and took the hit: then the caller checks the window.
   */
  private record(targets: Uint16Array | Uint32Array, times: Float64Array, counts: Uint8Array, k: number, slot: number, target: number, tsMs: number): boolean {
    const base = slot * k;
    const c = counts[slot]!;
    let i = 0;
    while (i < c && targets[base + i] !== target) i++;
    if (i < c) {
      // A repeated target: its time moves to the later hit, it does not count twice.
      if (tsMs <= times[base + i]!) return false;
      times[base + i] = tsMs;
      return c === k;
    }
    if (c < k) {
      targets[base + c] = target;
      times[base + c] = tsMs;
      counts[slot] = c + 1;
      return c + 1 === k;
    }
    // k kept: the new target replaces the least recent one, unless it is
    // older than all of them (then it cannot be among the k most recent).
    let oldest = base;
    let oldestMs = times[base]!;
    for (let j = base + 1; j < base + k; j++) {
      const t = times[j]!;
      if (t < oldestMs) {
        oldestMs = t;
        oldest = j;
      }
    }
    if (tsMs < oldestMs) return false;
    targets[oldest] = target;
    times[oldest] = tsMs;
    return true;
  }

  /** Whether a full set's k hits are within T of the source's most recent hit (lastMs): a scan. */
  private within(times: Float64Array, k: number, slot: number, lastMs: number): boolean {
    const base = slot * k;
    let minMs = times[base]!;
    for (let j = base + 1; j < base + k; j++) {
      const t = times[j]!;
      if (t < minMs) minMs = t;
    }
    return lastMs - minMs < this.windowMs;
  }

  /** Records the source's most recent hit and moves it to the list's tail. */
  private touch(slot: number, tsMs: number): void {
    this.last[slot] = tsMs;
    const tail = this.tail;
    if (slot === tail) return;
    const prev = this.prev;
    const next = this.next;
    const p = prev[slot]!;
    const q = next[slot]!;
    if (p !== NONE) next[p] = q;
    else if (this.head === slot) this.head = q;
    if (q !== NONE) prev[q] = p;
    prev[slot] = tail;
    next[slot] = NONE;
    if (tail !== NONE) next[tail] = slot;
    else this.head = slot;
    this.tail = slot;
  }

  /**
   * The detection of the per-host rule's N ports, or (fleet) the fleet rule's
   * F pairs (k of them, in a slot of targets and times); drops the source's
   * protected slot `owned` (NONE: it had none).
   */
  private detect(targets: Uint16Array | Uint32Array, times: Float64Array, k: number, slot: number, source: SourceKey, port: number, tsMs: number, fleet: boolean, owned: number): Detection {
    const base = slot * k;
    const hits: Hit[] = [];
    for (let j = base; j < base + k; j++) hits.push({ target: targets[j]!, ms: times[j]! });
    hits.sort((a, b) => a.ms - b.ms || a.target - b.target);
    if (owned !== NONE) this.release(owned);
    const det: Detection = {
      source,
      port,
      tsMs,
      ports: hits.map((h) => h.target & 0xffff),
      firstMs: hits[0]!.ms,
      lastMs: hits[k - 1]!.ms,
    };
    if (fleet) det.pairs = hits.map((h) => ({ probe: Math.floor(h.target / PAIR_PROBE), port: h.target & 0xffff }));
    return det;
  }

  /** A protected slot for a promoted source, linked (unlinked from nothing) and indexed. */
  private allocate(source: SourceKey): number {
    if (this.protectedCount >= this.maxProtected) this.makeRoom();
    let slot: number;
    if (this.freeTop > 0) {
      slot = this.free[--this.freeTop]!;
    } else {
      if (this.used === this.capacity) this.grow();
      slot = this.used++;
    }
    this.prev[slot] = NONE;
    this.next[slot] = NONE;
    this.index.set(source, slot);
    this.keys[slot] = source;
    this.protectedCount++;
    return slot;
  }

  /** The protected space full: reclaim the expired head of the recency list, else evict its head. */
  private makeRoom(): void {
    const cutoff = this.clock - this.windowMs;
    while (this.head !== NONE && this.last[this.head]! <= cutoff) {
      this.release(this.head);
      this.expiredTotal++;
    }
    if (this.protectedCount >= this.maxProtected) {
      this.release(this.head);
      this.protectedEvictedTotal++;
    }
  }

  private release(slot: number): void {
    this.index.delete(this.keys[slot]!);
    this.keys[slot] = undefined;
    this.counts[slot] = 0;
    this.protectedCount--;
    const prev = this.prev;
    const next = this.next;
    const p = prev[slot]!;
    const q = next[slot]!;
    if (p !== NONE) next[p] = q;
    else this.head = q;
    if (q !== NONE) prev[q] = p;
    else this.tail = p;
    this.free[this.freeTop++] = slot;
  }

  private grow(): void {
    const cap = Math.min(this.maxProtected, Math.max(FIRST_CHUNK, this.capacity * 2));
    const { n, f } = this;
    this.ports = enlarged(this.ports, cap * n);
    this.times = enlarged(this.times, cap * n);
    this.counts = enlarged(this.counts, cap);
    if (f > 0) {
      this.pairs = enlarged(this.pairs, cap * f);
      this.pairTimes = enlarged(this.pairTimes, cap * f);
      this.pairCounts = enlarged(this.pairCounts, cap);
    }
    this.last = enlarged(this.last, cap);
    this.prev = enlarged(this.prev, cap);
    this.next = enlarged(this.next, cap);
    this.free = enlarged(this.free, cap);
    this.capacity = cap;
  }

}

/** A typed array of `length` elements of the same kind, starting with a's. */
function enlarged<A extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(a: A, length: number): A {
  const b = new (a.constructor as new (length: number) => A)(length);
  b.set(a);
  return b;
}
