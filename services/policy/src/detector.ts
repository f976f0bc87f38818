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
 *   applies the second hit to that history as to any other (one or two
 *   entries, written in place); a crossing there (N = 2) is detected straight from
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
 * Time. The clock, each source's most recent hit (`last`) and probation's
 * hits are kept exact (ms, doubles); the entries of a protected source's
 * ports (and pairs) in ticks of tickUs microseconds: 1 µs for a window up to
 * 2^30 µs (17.9 minutes), else the smallest whole number of microseconds
 * from ceil(T / 2^30 µs) up that divides T (80 µs at the largest
 * PW_PORTSCAN_TIME_THRESHOLD, 86,400 s; with a T of no whole µs, that
 * ceiling). A stamp's tick is floor(tsMs * 1000 / tickUs), a monotonic map,
 * and whether an entry is within T of last is decided on ticks, against
 * floor(T in ticks): so two stamps less than T apart can count as T apart
 * only when they are within one tick of T apart (two, for a T of no whole
 * tick), and stamps T or more apart never count as within T, since
 * floor(a) - floor(b) >= floor(a - b). Stamps on
 * whole microseconds (the test clock and the differential test use whole
 * milliseconds) decide exactly as before; the kernel and the policy already
 * differ by microseconds at T (docs/detection.md, "Time representation"). A
 * Detection's lastMs is exact; its firstMs (N = 1 and N = 2 included), and
 * held()'s times of protected sources, are ticks back in ms (floored to the
 * tick, so at most one tick early: a window from firstMs still holds the
 * first hit).
 *
 * Layout (the hot path allocates nothing per event, no per-source objects):
 * a SourceIndex (sourceindex.ts: typed-array hash tables, no Map entry and
 * no key kept per source) from source key to slot number (a protected slot
 * s as s, a probation slot p as ~p, a negative number), the probation ring
 * as three arrays (the handle of its index entry as Int32Array, NONE when
 * empty, pairs as Uint32Array: the probe's number in the high 16 bits, the
 * port in the low 16, and times as Float64Array: 16 bytes a slot), and for
 * the protected space a struct-of-arrays pool of slots: last (Float64Array,
 * the time of the most recent hit), prev and next (Int32Array, the recency
 * list; next also chains the free slots), the handle of the slot's index
 * entry (Int32Array, to remove it on release), and each slot's ports in
 * an EntrySets: a source holds only the entries it has (k distinct ports
 * hold k entries, not N), in chunks of min(N, 8) entries from a shared pool
 * (a port as Uint16, its tick as the low 32 bits of the tick in a
 * Uint32Array, a chunk's link to the next as Int32: 52 bytes a chunk of 8),
 * with a first chunk (Int32) and a count (Uint8) per slot. An entry's tick
 * is read back as its age, (low 32 bits of the source's last - entry) mod
 * 2^32, exact while the age is below 2^32 ticks: hits T or more older than
 * the source's last can never count again (with events in order, a
 * detection needs its N ports within T of last, which only grows), so they
 * are ignored, and when last crosses a multiple of 2^30 ticks the entries T
 * or more old are dropped, which keeps every age below 2^30 + 2T <= 2^32.
 * The fleet rule's pairs (Uint32: the probe's number in the high 16 bits,
 * the port in the low 16) take a second EntrySets of chunks of min(F, 8),
 * but only for a source seen by two probes or more: while all of a source's
 * hits came from one probe (kept per slot as Uint16), its pairs are its
 * ports on that probe, and the per-host rule (N <= F) detects it before the
 * fleet rule could; its first hit from another probe copies its unexpired
 * ports in as pairs (all of its unexpired pairs: fewer than N, else it would
 * have been detected). The arrays of each space grow by doubling, from 4096
 * slots (chunks) up to exactly its size, so a large cap costs nothing up
 * front. A protected source costs 25 bytes (32 with the fleet rule on) plus
 * its chunks: with 2 ports (a client of two services) one chunk, of 3 at
 * N = 3 (22 bytes), of 8 from N = 8 up (52); the worst case, N - 1 ports:
 * at N = 16 two chunks of 8 (104), at N = 64 eight (416). A probation slot
 * costs 16 bytes; a source in either space adds its index entry (11 to 21
 * bytes for an IPv4 source, 27 to 53 for an IPv6 one, with the tables' room
 * to grow). Measured on the heap at 10^6 sources, IPv4 / IPv6: one port 33 /
 * 59; 2 ports 90 / 115 at N = 3, 121 / 147 at N = 16 and 64; N - 1 ports
 * 176 / 201 at N = 16, 503 / 529 at N = 64 (docs/detection.md, "Memory").
 * Only a detection allocates (its result); a promotion writes its one or
 * two entries in place.
 */

import { SourceIndex } from './sourceindex.js';
import type { SourceKey } from './sourcekey.js';

export interface DetectorOptions {
  /** N: distinct destination ports that make a scan, 1..255. */
  portThreshold: number;
  /** T: the window in seconds, > 0 (fractional allowed). */
  windowSeconds: number;
  /** Hard cap on tracked sources, 2..16,777,216, both spaces together. */
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
  /** The earliest of the N ports' times, floored to the detector's tick (1 µs for T up to 17.9 minutes; the comment on time). */
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

/** The cap on sources (slot numbers and their complements fit in the index's values; it was V8's limit for a Map). */
const MAX_SOURCES = 1 << 24;
const FIRST_CHUNK = 4096;
const NONE = -1;
/** A pair is probe * PAIR_PROBE + port: probe numbers and ports are 16 bits each. */
const PAIR_PROBE = 0x10000;
/** T is at most this many ticks; last crossing a multiple of it drops the entries T or more old. */
const PURGE_TICKS = 2 ** 30;
/** Entries per chunk at most. */
const CHUNK_ENTRIES = 8;

/** The default share of probation in maxSources: all but an eighth (at least one slot each). */
export function probationSpace(maxSources: number): number {
  return maxSources - Math.max(1, Math.floor(maxSources / 8));
}

/** A source's hits, by time then target, for a Detection. */
type Hit = { target: number; ms: number };

/**
 * Per protected slot, a set of at most k (target, tick) entries, in chunks of
 * `chunk` entries from a shared pool, linked from the slot's first chunk.
 * A tick is kept as its low 32 bits and read back as an age against a
 * reference tick (the source's last, or the hit's tick when later): see the
 * detector's comment for why every age is below 2^32.
 */
class EntrySets<A extends Uint16Array | Uint32Array> {
  /** Per chunk: `chunk` targets and ticks (low 32 bits), and the next chunk (NONE: the last; free chunks chain here too). */
  targets: A;
  ticks = new Uint32Array(0);
  link = new Int32Array(0);
  /** Per slot: its first chunk (NONE: none) and its number of entries. */
  first = new Int32Array(0);
  count = new Uint8Array(0);
  private chunks = 0;
  private usedChunks = 0;
  private freeChunk = NONE;

  constructor(
    readonly k: number,
    readonly chunk: number,
    empty: A,
  ) {
    this.targets = empty;
  }

  /** Room for `slots` slots. */
  growSlots(slots: number): void {
    const old = this.first.length;
    this.first = enlarged(this.first, slots);
    this.first.fill(NONE, old);
    this.count = enlarged(this.count, slots);
  }

  private allocChunk(): number {
    let c = this.freeChunk;
    if (c !== NONE) {
      this.freeChunk = this.link[c]!;
    } else {
      if (this.usedChunks === this.chunks) {
        const cap = Math.max(FIRST_CHUNK, this.chunks * 2);
        this.targets = enlarged(this.targets, cap * this.chunk);
        this.ticks = enlarged(this.ticks, cap * this.chunk);
        this.link = enlarged(this.link, cap);
        this.chunks = cap;
      }
      c = this.usedChunks++;
    }
    this.link[c] = NONE;
    return c;
  }

  /** Frees a slot's chunks. */
  clear(slot: number): void {
    let c = this.first[slot]!;
    while (c !== NONE) {
      const nx = this.link[c]!;
      this.link[c] = this.freeChunk;
      this.freeChunk = c;
      c = nx;
    }
    this.first[slot] = NONE;
    this.count[slot] = 0;
  }

  /** Appends an entry (the set holds fewer than k). */
  append(slot: number, target: number, tick: number): void {
    const n = this.count[slot]!;
    const C = this.chunk;
    let c = this.first[slot]!;
    if (n === 0) {
      c = this.allocChunk();
      this.first[slot] = c;
    } else {
      for (let j = C; j <= n - 1; j += C) c = this.link[c]!;
      if (n % C === 0) {
        const d = this.allocChunk();
        this.link[c] = d;
        c = d;
      }
    }
    const at = c * C + (n % C);
    this.targets[at] = target;
    this.ticks[at] = tick >>> 0;
    this.count[slot] = n + 1;
  }

  /**
   * A hit on `target` at tick t (ref - t ticks before ref, the source's most
   * recent hit with this one). Returns whether the set holds k targets and
   * took the hit: then the caller checks the window.
   */
  record(slot: number, target: number, t: number, ref: number): boolean {
    const n = this.count[slot]!;
    const k = this.k;
    const C = this.chunk;
    const { targets, ticks, link } = this;
    const refLow = ref >>> 0;
    const age = ref - t;
    let oldest = NONE;
    let oldestAge = -1;
    for (let c = this.first[slot]!, j = 0; j < n; c = link[c]!) {
      const end = Math.min(n - j, C);
      for (let i = c * C, e = i + end; i < e; i++) {
        const a = (refLow - ticks[i]!) >>> 0;
        if (targets[i] === target) {
          // A repeated target: its time moves to the later hit, it does not count twice.
          if (age >= a) return false;
          ticks[i] = t >>> 0;
          return n === k;
        }
        if (a > oldestAge) {
          oldestAge = a;
          oldest = i;
        }
      }
      j += end;
    }
    if (n < k) {
      this.append(slot, target, t);
      return n + 1 === k;
    }
    // k kept: the new target replaces the least recent one, unless it is
    // older than all of them (then it cannot be among the k most recent).
    if (age > oldestAge) return false;
    targets[oldest] = target;
    ticks[oldest] = t >>> 0;
    return true;
  }

  /** The age of the set's oldest entry against ref. */
  maxAge(slot: number, ref: number): number {
    const n = this.count[slot]!;
    const C = this.chunk;
    const refLow = ref >>> 0;
    let max = 0;
    for (let c = this.first[slot]!, j = 0; j < n; c = this.link[c]!) {
      const end = Math.min(n - j, C);
      for (let i = c * C, e = i + end; i < e; i++) {
        const a = (refLow - this.ticks[i]!) >>> 0;
        if (a > max) max = a;
      }
      j += end;
    }
    return max;
  }

  /** Drops the entries windowT or more older than ref, keeping the others' order; frees chunks left empty. */
  dropExpired(slot: number, ref: number, windowT: number): void {
    const n = this.count[slot]!;
    const C = this.chunk;
    const { targets, ticks, link } = this;
    const refLow = ref >>> 0;
    let w = 0;
    let wc = this.first[slot]!;
    for (let c = wc, j = 0; j < n; c = link[c]!) {
      const end = Math.min(n - j, C);
      for (let i = c * C, e = i + end; i < e; i++) {
        if (((refLow - ticks[i]!) >>> 0) >= windowT) continue;
        if (w > 0 && w % C === 0) wc = link[wc]!;
        const at = wc * C + (w % C);
        targets[at] = targets[i]!;
        ticks[at] = ticks[i]!;
        w++;
      }
      j += end;
    }
    if (w === n) return;
    if (w === 0) {
      this.clear(slot);
      return;
    }
    // Free the chunks after the last one written.
    let rest = link[wc]!;
    link[wc] = NONE;
    while (rest !== NONE) {
      const nx = link[rest]!;
      link[rest] = this.freeChunk;
      this.freeChunk = rest;
      rest = nx;
    }
    this.count[slot] = w;
  }

  /** Calls f(target, age against ref) for each entry. */
  forEach(slot: number, ref: number, f: (target: number, age: number) => void): void {
    const n = this.count[slot]!;
    const C = this.chunk;
    const refLow = ref >>> 0;
    for (let c = this.first[slot]!, j = 0; j < n; c = this.link[c]!) {
      const end = Math.min(n - j, C);
      for (let i = c * C, e = i + end; i < e; i++) f(this.targets[i]!, (refLow - this.ticks[i]!) >>> 0);
      j += end;
    }
  }
}

export class Detector {
  private readonly n: number;
  /** F, 0 when the fleet rule is off. */
  private readonly f: number;
  private readonly windowMs: number;
  /** The tick in µs, and T in ticks. */
  private readonly tickUs: number;
  private readonly windowT: number;
  /** The protected space's size, and probation's. */
  private readonly maxProtected: number;
  private readonly maxProbation: number;

  /** Source key to slot (s, or ~p in probation); each slot's handle of its entry there, NONE when free. */
  private readonly index: SourceIndex;
  private slotHandle = new Int32Array(0);
  /** The per-host rule's ports, k = N. */
  private readonly hostSets: EntrySets<Uint16Array>;
  /** The fleet rule's pairs, k = F (a source's only once two probes saw it; undefined when the rule is off). */
  private readonly pairSets: EntrySets<Uint32Array> | undefined;
  /** The fleet rule: the one probe that saw a source whose pairs are not kept apart. */
  private soleProbe = new Uint16Array(0);
  /** The time (ms) of each protected source's most recent hit. */
  private last = new Float64Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private capacity = 0;
  /** Slots ever handed out (the high-water mark); free ones are chained through `next` from freeSlot. */
  private used = 0;
  private freeSlot = NONE;
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

  /** Probation: a ring of slots, each a source's one hit (its index handle, pair, time); NONE handle = empty. */
  private pHandle = new Int32Array(0);
  private pPairs = new Uint32Array(0);
  private pTimes = new Float64Array(0);
  private pCapacity = 0;
  /** The slot of the next admission. */
  private pHead = 0;

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
    this.index = new SourceIndex((value, handle) => {
      if (value >= 0) this.slotHandle[value] = handle;
      else this.pHandle[~value] = handle;
    });
    const windowMs = windowSeconds * 1000;
    this.windowMs = windowMs;
    // The tick: a whole number of µs that makes T at most PURGE_TICKS ticks, and a divisor of T where one is near.
    const windowUs = windowMs * 1000;
    const minTick = Math.max(1, Math.ceil(windowUs / PURGE_TICKS));
    let tickUs = minTick;
    if (Number.isInteger(windowUs)) {
      for (let d = minTick; d < 2 * minTick; d++) {
        if (windowUs % d === 0) {
          tickUs = d;
          break;
        }
      }
    }
    this.tickUs = tickUs;
    this.windowT = Math.floor(windowUs / tickUs);
    this.maxProbation = probation;
    this.maxProtected = maxSources - probation;
    this.hostSets = new EntrySets(portThreshold, Math.min(portThreshold, CHUNK_ENTRIES), new Uint16Array(0));
    this.pairSets = pairThreshold > 0 ? new EntrySets(pairThreshold, Math.min(pairThreshold, CHUNK_ENTRIES), new Uint32Array(0)) : undefined;
  }

  /** A stamp in ms as a tick. */
  private tick(ms: number): number {
    return Math.floor((ms * 1000) / this.tickUs);
  }

  /** A tick as a stamp in ms (its start). */
  private ms(tick: number): number {
    return (tick * this.tickUs) / 1000;
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
    if (n === 1) return { source, port, tsMs, ports: [port], firstMs: this.ms(this.tick(tsMs)), lastMs: tsMs };

    const windowMs = this.windowMs;
    const stale = this.clock - tsMs >= windowMs;
    const pair = probe * PAIR_PROBE + port;
    const handle = this.index.find(source);
    if (handle < 0) {
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }
    const slot = this.index.value(handle);
    if (slot < 0) return this.probationHit(~slot, handle, source, port, pair, tsMs, stale);
    const last = this.last;
    const was = last[slot]!;
    if (this.clock - was >= windowMs) {
      // Idle for T or more: its history is expired, the source starts afresh, in probation.
      this.expiredTotal++;
      this.release(slot);
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }
    // A hit T or more older than the source's last can never count (see the comment on time).
    if (was - tsMs >= windowMs) return undefined;
    const t = this.tick(tsMs);
    const wasT = this.tick(was);
    const ref = t > wasT ? t : wasT;
    const windowT = this.windowT;
    const host = this.hostSets;
    const fleet = this.pairSets;
    if (t > wasT && Math.floor(t / PURGE_TICKS) !== Math.floor(wasT / PURGE_TICKS)) {
      host.dropExpired(slot, t, windowT);
      if (fleet !== undefined && fleet.count[slot]! > 0) fleet.dropExpired(slot, t, windowT);
    }
    // The fleet rule: a second probe's first hit keeps the pairs apart from here on, from the ports (before this hit).
    if (fleet !== undefined && fleet.count[slot] === 0 && probe !== this.soleProbe[slot]) this.splitPairs(slot, ref);
    const hostFull = host.record(slot, port, t, ref);
    const fleetFull = fleet !== undefined && fleet.count[slot]! > 0 && fleet.record(slot, pair, t, ref);
    if (tsMs > was) this.touch(slot, tsMs);
    if (hostFull && host.maxAge(slot, ref) < windowT) return this.detect(host, slot, ref, source, port, tsMs, false);
    if (fleetFull && fleet.maxAge(slot, ref) < windowT) return this.detect(fleet, slot, ref, source, port, tsMs, true);
    return undefined;
  }

  /** Keeps the pairs of a source seen by one probe so far apart: its unexpired ports on that probe. */
  private splitPairs(slot: number, ref: number): void {
    const fleet = this.pairSets!;
    const probeBase = this.soleProbe[slot]! * PAIR_PROBE;
    const windowT = this.windowT;
    this.hostSets.forEach(slot, ref, (port, age) => {
      if (age < windowT) fleet.append(slot, probeBase + port, ref - age);
    });
  }

  /**
   * A hit of a source in probation slot p: expiry as for any source, a
   * repeated port (or pair) moves the hit's time, a second distinct one
   * promotes it (or detects it, with N = 2).
   */
  private probationHit(p: number, handle: number, source: SourceKey, port: number, pair: number, tsMs: number, stale: boolean): Detection | undefined {
    const t0 = this.pTimes[p]!;
    const windowMs = this.windowMs;
    if (this.clock - t0 >= windowMs) {
      this.expiredTotal++;
      this.releaseProbation(p);
      if (!stale) this.admit(source, pair, tsMs);
      return undefined;
    }
    const f = this.f;
    const pair0 = this.pPairs[p]!;
    const port0 = pair0 & 0xffff;
    if (port0 === port && (f === 0 || pair0 === pair)) {
      if (tsMs > t0) this.pTimes[p] = tsMs;
      return undefined;
    }
    // The history of one entry the source stands for, and the hit applied to it: with N = 2 (and
    // so F = 2 if the fleet rule is on) two distinct ports, or pairs, within T are a scan.
    const lastMs = tsMs > t0 ? tsMs : t0;
    const live = lastMs - tsMs < windowMs;
    // The source leaves probation; its index entry stays, for its slot, unless it is detected.
    this.pHandle[p] = NONE;
    if (this.n === 2 && live && (port !== port0 || f === 2)) {
      this.index.remove(handle);
      // Their times as a protected source's (floored to the tick).
      const ms0 = this.ms(this.tick(t0));
      const ms = this.ms(this.tick(tsMs));
      if (port !== port0) return this.detection(source, port, tsMs, [{ target: port0, ms: ms0 }, { target: port, ms }], lastMs, false);
      return this.detection(source, port, tsMs, [{ target: pair0, ms: ms0 }, { target: pair, ms }], lastMs, true);
    }
    const slot = this.allocate(handle);
    const t = this.tick(tsMs);
    const ref = this.tick(lastMs);
    const host = this.hostSets;
    // A hit T or more older than the other never counts: it is not kept (t0 is never one: it would have expired).
    if (port === port0) {
      host.append(slot, port0, ref);
    } else {
      host.append(slot, port0, this.tick(t0));
      if (live) host.append(slot, port, t);
    }
    const fleet = this.pairSets;
    if (fleet !== undefined) {
      const probe0 = Math.floor(pair0 / PAIR_PROBE);
      this.soleProbe[slot] = probe0;
      if (pair - port !== pair0 - port0) {
        // Seen by two probes: its pairs are kept apart.
        fleet.append(slot, pair0, this.tick(t0));
        if (live) fleet.append(slot, pair, t);
      }
    }
    this.touch(slot, lastMs);
    this.promotedTotal++;
    return undefined;
  }

  /** A source enters probation with one hit, in the ring's next slot, whose occupant (if any) it forgets. */
  private admit(source: SourceKey, pair: number, tsMs: number): void {
    let p = this.pHead;
    if (p === this.pCapacity) this.growProbation();
    const old = this.pHandle[p]!;
    if (old !== NONE) {
      this.index.remove(old);
      if (this.clock - this.pTimes[p]! >= this.windowMs) this.expiredTotal++;
      else this.probationEvictedTotal++;
    }
    this.pPairs[p] = pair;
    this.pTimes[p] = tsMs;
    this.pHandle[p] = this.index.add(source, ~p);
    this.admittedTotal++;
    p++;
    this.pHead = p === this.maxProbation ? 0 : p;
  }

  private releaseProbation(p: number): void {
    this.index.remove(this.pHandle[p]!);
    this.pHandle[p] = NONE;
  }

  private growProbation(): void {
    const cap = Math.min(this.maxProbation, Math.max(FIRST_CHUNK, this.pCapacity * 2));
    this.pPairs = enlarged(this.pPairs, cap);
    this.pTimes = enlarged(this.pTimes, cap);
    this.pHandle = enlarged(this.pHandle, cap);
    this.pHandle.fill(NONE, this.pCapacity);
    this.pCapacity = cap;
  }

  /**
   * What the detector holds for a source now, for explain: its kept ports
   * (and, with the fleet rule, pairs), each with the time of its latest hit,
   * oldest first (ports T or more older than its latest hit, which can never
   * count again, may be gone; see the comment on time); undefined when it is
   * not tracked or its history has expired. Reads only: nothing moves,
   * nothing is counted.
   */
  held(source: SourceKey): Held | undefined {
    const handle = this.index.find(source);
    if (handle < 0) return undefined;
    const slot = this.index.value(handle);
    const byTime = (a: { ms: number }, b: { ms: number }) => a.ms - b.ms;
    if (slot < 0) {
      const pair = this.pPairs[~slot]!;
      const ms = this.pTimes[~slot]!;
      if (this.clock - ms >= this.windowMs) return undefined;
      return { ports: [{ port: pair & 0xffff, ms }], pairs: this.f > 0 ? [{ probe: Math.floor(pair / PAIR_PROBE), port: pair & 0xffff, ms }] : [] };
    }
    const lastMs = this.last[slot]!;
    if (this.clock - lastMs >= this.windowMs) return undefined;
    const ref = this.tick(lastMs);
    const ports: Held['ports'] = [];
    this.hostSets.forEach(slot, ref, (port, age) => ports.push({ port, ms: this.ms(ref - age) }));
    const pairs: Held['pairs'] = [];
    const fleet = this.pairSets;
    if (fleet !== undefined) {
      if (fleet.count[slot] === 0) {
        const probe = this.soleProbe[slot]!;
        for (const p of ports) pairs.push({ probe, port: p.port, ms: p.ms });
      } else {
        fleet.forEach(slot, ref, (t, age) => pairs.push({ probe: Math.floor(t / PAIR_PROBE), port: t & 0xffff, ms: this.ms(ref - age) }));
      }
    }
    return { ports: ports.sort(byTime), pairs: pairs.sort(byTime) };
  }

  /** Drops a source's history; true if it was tracked. */
  forget(source: SourceKey): boolean {
    const handle = this.index.find(source);
    if (handle < 0) return false;
    const slot = this.index.value(handle);
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
    const slotHandle = this.slotHandle;
    const last = this.last;
    let removed = 0;
    for (let s = 0; s < this.used; s++) {
      if (slotHandle[s] !== NONE && last[s]! <= cutoff) {
        this.release(s);
        removed++;
      }
    }
    const pHandle = this.pHandle;
    const pTimes = this.pTimes;
    for (let p = 0; p < this.pCapacity; p++) {
      if (pHandle[p] !== NONE && pTimes[p]! <= cutoff) {
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
   * F pairs (a set's entries, their ages against ref); drops the source's
   * protected slot.
   */
  private detect(set: EntrySets<Uint16Array> | EntrySets<Uint32Array>, slot: number, ref: number, source: SourceKey, port: number, tsMs: number, fleet: boolean): Detection {
    const hits: Hit[] = [];
    set.forEach(slot, ref, (target, age) => hits.push({ target, ms: this.ms(ref - age) }));
    const lastMs = this.last[slot]!;
    this.release(slot);
    return this.detection(source, port, tsMs, hits, lastMs, fleet);
  }

  /** A Detection of hits; lastMs, the latest hit's time, as the source's last (exact, where the hits are floored to the tick). */
  private detection(source: SourceKey, port: number, tsMs: number, hits: Hit[], lastMs: number, fleet: boolean): Detection {
    hits.sort((a, b) => a.ms - b.ms || a.target - b.target);
    const det: Detection = {
      source,
      port,
      tsMs,
      ports: hits.map((h) => h.target & 0xffff),
      firstMs: hits[0]!.ms,
      lastMs,
    };
    if (fleet) det.pairs = hits.map((h) => ({ probe: Math.floor(h.target / PAIR_PROBE), port: h.target & 0xffff }));
    return det;
  }

  /** A protected slot for a promoted source (its index entry's handle), linked (unlinked from nothing) and indexed. */
  private allocate(handle: number): number {
    if (this.protectedCount >= this.maxProtected) this.makeRoom();
    let slot = this.freeSlot;
    if (slot !== NONE) {
      this.freeSlot = this.next[slot]!;
    } else {
      if (this.used === this.capacity) this.grow();
      slot = this.used++;
    }
    this.prev[slot] = NONE;
    this.next[slot] = NONE;
    this.index.setValue(handle, slot);
    this.slotHandle[slot] = handle;
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
    this.index.remove(this.slotHandle[slot]!);
    this.slotHandle[slot] = NONE;
    this.hostSets.clear(slot);
    this.pairSets?.clear(slot);
    this.protectedCount--;
    const prev = this.prev;
    const next = this.next;
    const p = prev[slot]!;
    const q = next[slot]!;
    if (p !== NONE) next[p] = q;
    else this.head = q;
    if (q !== NONE) prev[q] = p;
    else this.tail = p;
    next[slot] = this.freeSlot;
    this.freeSlot = slot;
  }

  private grow(): void {
    const cap = Math.min(this.maxProtected, Math.max(FIRST_CHUNK, this.capacity * 2));
    this.hostSets.growSlots(cap);
    if (this.pairSets !== undefined) {
      this.pairSets.growSlots(cap);
      this.soleProbe = enlarged(this.soleProbe, cap);
    }
    this.slotHandle = enlarged(this.slotHandle, cap);
    this.slotHandle.fill(NONE, this.capacity);
    this.last = enlarged(this.last, cap);
    this.prev = enlarged(this.prev, cap);
    this.next = enlarged(this.next, cap);
    this.capacity = cap;
  }
}

/** A typed array of `length` elements of the same kind, starting with a's. */
function enlarged<A extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(a: A, length: number): A {
  const b = new (a.constructor as new (length: number) => A)(length);
  b.set(a);
  return b;
}
