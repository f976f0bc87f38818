import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/prng.js';
import { type Detection, Detector, probationSpace } from '../src/detector.js';

/** Timestamps on the epoch, as the service passes them: seconds after a fixed instant. */
const T0 = Date.UTC(2025, 0, 1);
const at = (seconds: number): number => T0 + seconds * 1000;

/** A source key as the service makes it: the 16-byte (IPv4-mapped) address as latin1. */
function addr(i: number): string {
  const b = Buffer.alloc(16);
  b[10] = 0xff;
  b[11] = 0xff;
  b.writeUInt32BE((0x0a000000 + i) >>> 0, 12);
  return b.toString('latin1');
}

const A = addr(1);
const B = addr(2);
const C = addr(3);

/** Room for 1000 sources in each space unless told. */
function detector(portThreshold = 3, windowSeconds = 60, maxSources = 2000, probationSources = maxSources / 2): Detector {
  return new Detector({ portThreshold, windowSeconds, maxSources, probationSources });
}

/** Feeds [port, tsMs] hits of one source; returns what each observe() returned. */
function feed(d: Detector, source: string, hits: [number, number][]): (Detection | undefined)[] {
  return hits.map(([port, ts]) => d.observe(source, port, ts));
}

describe('Detector: the threshold', () => {
  it('detects on exactly the Nth distinct port within T, describing the N ports', () => {
    const d = detector(3, 60);
    expect(d.observe(A, 22, at(0))).toBeUndefined();
    expect(d.observe(A, 80, at(10))).toBeUndefined();
    expect(d.tracked).toBe(1);
    expect(d.observe(A, 443, at(20))).toEqual({
      source: A,
      port: 443,
      tsMs: at(20),
      ports: [22, 80, 443],
      firstMs: at(0),
      lastMs: at(20),
    });
  });

  it('does not detect ports hit exactly T apart, and detects them just under T', () => {
    const exact = detector(3, 60);
    expect(feed(exact, A, [[1, at(0)], [2, at(30)], [3, at(60)]])).toEqual([undefined, undefined, undefined]);
    expect(exact.tracked).toBe(1);

    const under = detector(3, 60);
    const got = feed(under, A, [[1, at(0)], [2, at(30)], [3, at(0) + 59_999.5]]);
    expect(got.slice(0, 2)).toEqual([undefined, undefined]);
    expect(got[2]).toMatchObject({ ports: [1, 2, 3], firstMs: at(0), lastMs: at(0) + 59_999.5 });

    const pairExact = detector(2, 60);
    expect(feed(pairExact, A, [[1, at(0)], [2, at(60)]])).toEqual([undefined, undefined]);
    const pairUnder = detector(2, 60);
    expect(feed(pairUnder, A, [[1, at(0)], [2, at(0) + 59_999]])[1]).toMatchObject({ ports: [1, 2] });
  });

  it('never detects a source hammering one port', () => {
    const d = detector(2, 60);
    for (let i = 0; i < 10_000; i++) expect(d.observe(A, 80, at(0) + i)).toBeUndefined();
    expect(d.tracked).toBe(1);
  });

  it('counts a repeated port once, at the later of its hits', () => {
    // 22 moves from 0 s to 50 s, so 22 and 80 are 50 s apart: a scan (at 0 s they would not be).
    const d = detector(2, 60);
    const got = feed(d, A, [[22, at(0)], [22, at(50)], [80, at(100)]]);
    expect(got.slice(0, 2)).toEqual([undefined, undefined]);
    expect(got[2]).toEqual({ source: A, port: 80, tsMs: at(100), ports: [22, 80], firstMs: at(50), lastMs: at(100) });
  });

  it('detects when refreshing a port brings the N kept ports within T', () => {
    // 1@0 2@10 3@65 span 65 s; 1@66 leaves 2@10 3@65 1@66, span 56 s: a scan with no new port.
    const d = detector(3, 60);
    const got = feed(d, A, [[1, at(0)], [2, at(10)], [3, at(65)], [1, at(66)]]);
    expect(got.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    expect(got[3]).toEqual({ source: A, port: 1, tsMs: at(66), ports: [2, 3, 1], firstMs: at(10), lastMs: at(66) });
  });

  it('works A@0 B@10 C@70, A@71, B@72 with T = 60 s: only B@72 detects (C, A, B)', () => {
    // C@70 comes 60 s after the last hit (B@10): the source was idle for T and starts afresh
    // with C@70 (it is no scan either way, 0..70 spans 70 s). A@71 makes 2 ports; B@72 the third.
    const d = detector(3, 60);
    const got = feed(d, A, [[1, at(0)], [2, at(10)], [3, at(70)], [1, at(71)], [2, at(72)]]);
    expect(got.slice(0, 4)).toEqual([undefined, undefined, undefined, undefined]);
    expect(got[4]).toEqual({ source: A, port: 2, tsMs: at(72), ports: [3, 1, 2], firstMs: at(70), lastMs: at(72) });
    expect(d.expired).toBe(1);
  });

  it('detects the first SYN of any source with N = 1, every time, and tracks nothing', () => {
    const d = detector(1, 60);
    expect(d.observe(A, 22, at(1))).toEqual({ source: A, port: 22, tsMs: at(1), ports: [22], firstMs: at(1), lastMs: at(1) });
    expect(d.observe(A, 22, at(2))).toEqual({ source: A, port: 22, tsMs: at(2), ports: [22], firstMs: at(2), lastMs: at(2) });
    expect(d.observe(B, 0, at(0))).toMatchObject({ source: B, port: 0, ports: [0] });
    expect(d.tracked).toBe(0);
  });

  it('detects the 255 ports of N = 255 on the 255th', () => {
    const d = detector(255, 60);
    for (let p = 0; p < 254; p++) expect(d.observe(A, p, at(0) + p)).toBeUndefined();
    const det = d.observe(A, 254, at(0) + 254);
    expect(det?.ports).toEqual(Array.from({ length: 255 }, (_, p) => p));
    expect(det).toMatchObject({ firstMs: at(0), lastMs: at(0) + 254 });
  });

  it('never detects a slow scan whose hits are more than T apart', () => {
    const d = detector(3, 60);
    for (let i = 0; i < 1000; i++) expect(d.observe(A, 1000 + i, at(61 * i))).toBeUndefined();
    expect(d.tracked).toBe(1);
    expect(d.expired).toBe(999);
  });

  it('never detects a slow scan spreading N ports over exactly T; one ms faster is detected on the Nth port', () => {
    const slow = detector(3, 60);
    for (let i = 0; i < 1000; i++) expect(slow.observe(A, 1000 + i, at(30 * i))).toBeUndefined();
    expect(slow.tracked).toBe(1);

    const faster = detector(3, 60);
    const got = feed(faster, A, [[1000, at(0)], [1001, at(30) - 0.5], [1002, at(60) - 1]]);
    expect(got.slice(0, 2)).toEqual([undefined, undefined]);
    expect(got[2]).toMatchObject({ ports: [1000, 1001, 1002], firstMs: at(0), lastMs: at(60) - 1 });
  });
});

describe('Detector: out-of-order timestamps', () => {
  const batch: [number, number][] = [
    [22, at(1)],
    [80, at(2)],
    [443, at(3)],
  ];
  const orders = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
  ];

  it.each(orders)('detects a batch delivered in order %i,%i,%i like in order, on its last event', (...order) => {
    const d = detector(3, 60);
    const hits = order.map((i) => batch[i]!);
    const got = feed(d, A, hits);
    expect(got.slice(0, 2)).toEqual([undefined, undefined]);
    const [port, ts] = hits[2]!;
    expect(got[2]).toEqual({ source: A, port, tsMs: ts, ports: [22, 80, 443], firstMs: at(1), lastMs: at(3) });
    expect(d.tracked).toBe(0);
  });

  it('does not move a port back to an older, late hit', () => {
    // 22 stays at 100 s: with 80@155 that is a scan (55 s); at 30 s it would not be (125 s).
    const d = detector(2, 60);
    const got = feed(d, A, [[22, at(100)], [22, at(30)], [80, at(155)]]);
    expect(got.slice(0, 2)).toEqual([undefined, undefined]);
    expect(got[2]).toEqual({ source: A, port: 80, tsMs: at(155), ports: [22, 80], firstMs: at(100), lastMs: at(155) });
  });

  it('ignores a new port older than all N kept ports', () => {
    const d = detector(3, 60);
    expect(feed(d, A, [[1, at(100)], [2, at(150)], [3, at(200)]])).toEqual([undefined, undefined, undefined]);
    expect(d.observe(A, 4, at(90))).toBeUndefined();
    expect(d.tracked).toBe(1);
    // 5@205 replaces the oldest kept port (1@100); port 4 was never kept.
    expect(d.observe(A, 5, at(205))).toEqual({ source: A, port: 5, tsMs: at(205), ports: [2, 3, 5], firstMs: at(150), lastMs: at(205) });
  });

  it('takes a late new port that is newer than the oldest kept one in its place', () => {
    const d = detector(3, 60);
    expect(feed(d, A, [[1, at(100)], [2, at(150)], [3, at(200)]])).toEqual([undefined, undefined, undefined]);
    // 4@160 replaces 1@100: 2@150 3@200 4@160 span 50 s.
    expect(d.observe(A, 4, at(160))).toEqual({ source: A, port: 4, tsMs: at(160), ports: [2, 4, 3], firstMs: at(150), lastMs: at(200) });
  });
});

describe('Detector: sources', () => {
  it('tracks many interleaved sources independently', () => {
    const d = detector(3, 60);
    const sources = Array.from({ length: 1000 }, (_, i) => addr(i));
    const detections: Detection[] = [];
    for (let round = 0; round < 3; round++) {
      sources.forEach((s, i) => {
        // Even sources hit 3 distinct ports, odd ones 2 (a port twice).
        const port = i % 2 === 0 ? 1000 + round : 1000 + (round % 2);
        const det = d.observe(s, port, at(round) + i);
        if (det !== undefined) {
          expect(round).toBe(2);
          detections.push(det);
        }
      });
    }
    expect(detections.map((x) => x.source)).toEqual(sources.filter((_, i) => i % 2 === 0));
    detections.forEach((x, k) => {
      expect(x).toEqual({
        source: sources[2 * k],
        port: 1002,
        tsMs: at(2) + 2 * k,
        ports: [1000, 1001, 1002],
        firstMs: at(0) + 2 * k,
        lastMs: at(2) + 2 * k,
      });
    });
    expect(d.tracked).toBe(500);
  });

  it('drops the state of a detected source: it takes N new ports to detect it again', () => {
    const d = detector(3, 60);
    expect(feed(d, A, [[1, at(0)], [2, at(1)], [3, at(2)]])[2]).toMatchObject({ ports: [1, 2, 3] });
    expect(d.tracked).toBe(0);
    expect(d.observe(A, 3, at(3))).toBeUndefined();
    expect(d.observe(A, 4, at(4))).toBeUndefined();
    expect(d.observe(A, 5, at(5))).toEqual({ source: A, port: 5, tsMs: at(5), ports: [3, 4, 5], firstMs: at(3), lastMs: at(5) });
  });

  it('forget() resets a source and says whether it was tracked', () => {
    const d = detector(3, 60);
    feed(d, A, [[1, at(0)], [2, at(1)]]);
    feed(d, B, [[1, at(0)]]);
    expect(d.forget(A)).toBe(true);
    expect(d.forget(A)).toBe(false);
    expect(d.forget(C)).toBe(false);
    expect(d.tracked).toBe(1);
    expect(d.observe(A, 3, at(2))).toBeUndefined();
    expect(d.observe(A, 4, at(3))).toBeUndefined();
    expect(d.observe(A, 5, at(4))).toMatchObject({ ports: [3, 4, 5], firstMs: at(2) });
    expect(d.tracked).toBe(1);
  });
});

describe('Detector: idle expiry', () => {
  it('sweep() forgets sources idle for T or more before the newest timestamp seen, or before nowMs', () => {
    const d = detector(3, 60);
    d.observe(A, 1, at(0));
    d.observe(B, 1, at(30));
    d.observe(C, 1, at(60));
    expect(d.sweep()).toBe(1); // A: 60 s idle
    expect(d.tracked).toBe(2);
    expect(d.forget(A)).toBe(false);
    expect(d.sweep()).toBe(0);
    expect(d.sweep(at(89))).toBe(0);
    expect(d.sweep(at(90))).toBe(1); // B: 60 s idle at 90 s
    expect(d.tracked).toBe(1);
    expect(d.expired).toBe(2);
    expect(d.evictions).toBe(0);
  });

  it('sweeps nothing before any event', () => {
    expect(detector().sweep()).toBe(0);
  });

  it('treats an idle source that comes back as fresh, with or without a sweep in between', () => {
    // A hits 1@10 and 2@20; Z moves the clock to 80 s, so A has been idle for 60 s.
    // A late 3@25 would make 10..25 a scan, but A's history has expired: A starts afresh.
    const run = (sweep: boolean): (Detection | undefined)[] => {
      const d = detector(3, 60);
      const got = [d.observe(A, 1, at(10)), d.observe(A, 2, at(20)), d.observe(C, 1, at(80))];
      if (sweep) expect(d.sweep()).toBe(1);
      got.push(d.observe(A, 3, at(25)), d.observe(A, 4, at(26)), d.observe(A, 5, at(27)));
      expect(d.expired).toBe(1);
      expect(d.tracked).toBe(1);
      return got;
    };
    const expected = [undefined, undefined, undefined, undefined, undefined, { source: A, port: 5, tsMs: at(27), ports: [3, 4, 5], firstMs: at(25), lastMs: at(27) }];
    expect(run(false)).toEqual(expected);
    expect(run(true)).toEqual(expected);
  });

  it('does not start a history with an event already T older than the newest timestamp seen', () => {
    const d = detector(3, 60);
    d.observe(A, 1, at(100));
    expect(d.observe(B, 1, at(40))).toBeUndefined();
    expect(d.tracked).toBe(1);
    // 59 s before the newest: that one does start a history.
    expect(d.observe(B, 2, at(41))).toBeUndefined();
    expect(d.tracked).toBe(2);
  });

  it('forgets an idle source that comes back with an event already T older than the newest', () => {
    const d = detector(3, 60);
    d.observe(A, 1, at(0));
    d.observe(B, 1, at(100));
    expect(d.observe(A, 2, at(30))).toBeUndefined();
    expect(d.tracked).toBe(1);
    expect(d.expired).toBe(1);
    expect(d.forget(A)).toBe(false);
  });
});

describe('Detector: admission and the cap on sources', () => {
  /** The i-th forged source: single hits from distinct addresses, as in a flood. */
  const forged = (i: number): string => addr(0x10000 + i);
  const flood = (d: Detector, first: number, count: number, ms: number): void => {
    for (let i = first; i < first + count; i++) expect(d.observe(forged(i), 80, ms)).toBeUndefined();
  };
  const counters = (d: Detector) => ({
    admitted: d.admitted,
    promoted: d.promoted,
    probationEvictions: d.probationEvictions,
    protectedEvictions: d.protectedEvictions,
    expired: d.expired,
    spaces: d.spaces,
  });

  it('splits maxSources: an eighth (at least one) protected, the rest probation', () => {
    expect(probationSpace(1_000_000)).toBe(875_000);
    expect(probationSpace(2)).toBe(1);
    expect(new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1_250_000 }).sizes).toEqual({ probation: 1_093_750, protected: 156_250 });
    expect(new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 10, probationSources: 3 }).sizes).toEqual({ probation: 3, protected: 7 });
  });

  it('keeps a first hit across probationSources - 1 newer admissions, and forgets it at probationSources (counted)', () => {
    const d = detector(3, 60, 20, 16);
    d.observe(A, 1, at(0));
    flood(d, 0, 15, at(1));
    expect(counters(d)).toEqual({ admitted: 16, promoted: 0, probationEvictions: 0, protectedEvictions: 0, expired: 0, spaces: { probation: 16, protected: 0 } });
    expect(d.observe(A, 2, at(15))).toBeUndefined();
    expect(counters(d)).toMatchObject({ promoted: 1, spaces: { probation: 15, protected: 1 } });
    expect(d.observe(A, 3, at(30))).toMatchObject({ source: A, ports: [1, 2, 3] });

    const e = detector(3, 60, 20, 16);
    e.observe(A, 1, at(0));
    flood(e, 0, 16, at(1));
    expect(counters(e)).toMatchObject({ admitted: 17, probationEvictions: 1, spaces: { probation: 16, protected: 0 } });
    expect(e.forget(A)).toBe(false);
  });

  it('never evicts a protected source for single-hit sources: a flood of ten times probation, then the scanner is detected; counters exact', () => {
    const d = detector(3, 60, 20, 16);
    d.observe(A, 1, at(0));
    flood(d, 0, 15, at(1));
    d.observe(A, 2, at(15));
    flood(d, 15, 160, at(20));
    // 160 admissions into 16 slots: each forgets the one 16 before it, but for
    // the first to come round to A's slot, which its promotion left empty.
    expect(counters(d)).toEqual({ admitted: 176, promoted: 1, probationEvictions: 159, protectedEvictions: 0, expired: 0, spaces: { probation: 16, protected: 1 } });
    expect(d.evictions).toBe(159);
    expect(d.observe(A, 3, at(30))).toEqual({ source: A, port: 3, tsMs: at(30), ports: [1, 2, 3], firstMs: at(0), lastMs: at(30) });
    expect(counters(d)).toMatchObject({ promoted: 1, protectedEvictions: 0, spaces: { probation: 16, protected: 0 } });
  });

  it('counts a forgotten hit that had expired as expired, not evicted', () => {
    const d = detector(3, 60, 8, 4);
    flood(d, 0, 4, at(0));
    flood(d, 4, 4, at(60));
    expect(counters(d)).toMatchObject({ admitted: 8, probationEvictions: 0, expired: 4 });
    flood(d, 8, 1, at(61));
    expect(counters(d)).toMatchObject({ admitted: 9, probationEvictions: 1, expired: 4 });
  });

  it('evicts the least recently hit protected source (never the new one) when a promotion finds the space full, and counts it', () => {
    const d = detector(4, 60, 6, 4);
    feed(d, A, [[1, at(0)], [2, at(1)]]);
    feed(d, B, [[1, at(2)], [2, at(3)]]);
    d.observe(A, 3, at(4));
    feed(d, C, [[1, at(5)], [2, at(6)]]); // full: B is the least recently hit
    expect(counters(d)).toEqual({ admitted: 3, promoted: 3, probationEvictions: 0, protectedEvictions: 1, expired: 0, spaces: { probation: 0, protected: 2 } });
    expect(d.forget(B)).toBe(false);
    // A kept its history; B lost its own (and starts in probation).
    expect(d.observe(A, 4, at(7))).toMatchObject({ source: A, ports: [1, 2, 3, 4] });
    expect(d.observe(B, 3, at(8))).toBeUndefined();
    expect(counters(d)).toMatchObject({ admitted: 4, spaces: { probation: 1, protected: 1 } });
  });

  it('reclaims expired protected sources before evicting any', () => {
    const d = detector(3, 60, 6, 4);
    feed(d, A, [[1, at(0)], [2, at(1)]]);
    feed(d, B, [[1, at(50)], [2, at(51)]]);
    feed(d, C, [[1, at(70)], [2, at(71)]]); // A has been idle for 70 s
    expect(counters(d)).toMatchObject({ promoted: 3, protectedEvictions: 0, expired: 1, spaces: { probation: 0, protected: 2 } });
    expect(d.forget(A)).toBe(false);
    expect(d.forget(B)).toBe(true);
  });

  it('N = 2 crosses at the second distinct port straight from probation (not a promotion); a repeated port stays in probation', () => {
    const d = detector(2, 60, 4, 2);
    expect(feed(d, A, [[1, at(0)], [1, at(5)], [2, at(64)]])).toEqual([undefined, undefined, expect.objectContaining({ ports: [1, 2], firstMs: at(5), lastMs: at(64) })]);
    expect(counters(d)).toEqual({ admitted: 1, promoted: 0, probationEvictions: 0, protectedEvictions: 0, expired: 0, spaces: { probation: 0, protected: 0 } });
  });

  it('sends a protected source whose history expired back to probation, as an admission', () => {
    const d = detector(3, 60, 4, 2);
    feed(d, A, [[1, at(0)], [2, at(1)]]);
    d.observe(A, 3, at(61));
    expect(counters(d)).toEqual({ admitted: 2, promoted: 1, probationEvictions: 0, protectedEvictions: 0, expired: 1, spaces: { probation: 1, protected: 0 } });
  });

  it('works with the smallest spaces (maxSources = 2: one slot each)', () => {
    const d = detector(2, 60, 2, 1);
    d.observe(A, 1, at(0));
    d.observe(B, 1, at(1));
    expect(d.evictions).toBe(1);
    expect(d.observe(A, 2, at(2))).toBeUndefined();
    expect(d.observe(A, 3, at(3))).toMatchObject({ ports: [2, 3] });
    expect(d.evictions).toBe(2);
  });

  it('observes 1,000,000 distinct sources with 1,000,000 probation slots', () => {
    const d = detector(3, 60, 1_000_001, 1_000_000);
    const key = Buffer.alloc(16);
    for (let i = 0; i < 1_000_000; i++) {
      key.writeUInt32BE(i, 12);
      d.observe(key.toString('latin1'), i & 0xffff, at(0) + i / 100);
    }
    expect(d.tracked).toBe(1_000_000);
    expect(d.evictions).toBe(0);
    d.observe(addr(0xfffff), 1, at(10) + 1);
    expect(d.tracked).toBe(1_000_000);
    expect(d.probationEvictions).toBe(1);
    expect(d.sweep(at(100_000))).toBe(1_000_000);
    expect(d.tracked).toBe(0);
  });
});

describe('Detector: against a brute-force reference', () => {
  /**
   * The definition itself, for events in timestamp order: all hits of the source since its
   * last detection; a detection when the hits less than T before this one cover N ports.
   */
  function reference(n: number, windowMs: number) {
    const hits = new Map<string, { port: number; ts: number }[]>();
    return (source: string, port: number, ts: number): Detection | undefined => {
      const list = hits.get(source) ?? [];
      list.push({ port, ts });
      hits.set(source, list);
      const latest = new Map<number, number>();
      for (const h of list) if (ts - h.ts < windowMs) latest.set(h.port, Math.max(h.ts, latest.get(h.port) ?? -Infinity));
      if (latest.size < n) return undefined;
      expect(latest.size).toBe(n);
      hits.delete(source);
      const kept = [...latest].sort((x, y) => x[1] - y[1] || x[0] - y[0]);
      // firstMs as the detector keeps the entries' times: floored to its tick, 1 µs at these windows.
      return { source, port, tsMs: ts, ports: kept.map((k) => k[0]), firstMs: Math.floor(kept[0]![1] * 1000) / 1000, lastMs: ts };
    };
  }

  it.each([
    [3, 1, 1],
    [2, 1, 2],
    [5, 2, 3],
    [1, 1, 4],
  ])('matches the definition on random in-order traffic (N = %i, T = %i s, seed %i), with or without sweeps', (n, t, seed) => {
    const random = prng(seed);
    const sources = Array.from({ length: 20 }, (_, i) => addr(i));
    const events: [string, number, number][] = [];
    let ts = at(0);
    for (let i = 0; i < 20_000; i++) {
      // Ties, small (fractional) steps, and now and then a gap of up to 2 T.
      const r = random();
      ts += r < 0.2 ? 0 : r < 0.99 ? random() * 20 * t : random() * 2000 * t;
      events.push([sources[Math.floor(random() * sources.length)]!, Math.floor(random() * 10), ts]);
    }
    const ref = reference(n, t * 1000);
    const expected = events.map(([s, p, x]) => ref(s, p, x));
    const plain = new Detector({ portThreshold: n, windowSeconds: t, maxSources: 2000, probationSources: 1000 });
    const swept = new Detector({ portThreshold: n, windowSeconds: t, maxSources: 2000, probationSources: 1000 });
    const got = events.map(([s, p, x]) => plain.observe(s, p, x));
    const gotSwept = events.map(([s, p, x], i) => {
      if (i % 97 === 0) swept.sweep();
      return swept.observe(s, p, x);
    });
    expect(expected.filter((x) => x !== undefined).length).toBeGreaterThan(100);
    expect(got).toEqual(expected);
    expect(gotSwept).toEqual(expected);
  });

  it.each([
    [16, 5, 24, 5],
    [64, 30, 70, 6],
  ])(
    'matches the definition over 50 minutes (N = %i, T = %i s, %i ports, seed %i): chained chunks, and entries read back across 2^32 µs',
    (n, t, ports, seed) => {
      const random = prng(seed);
      const sources = [A, B, C];
      const events: [string, number, number][] = [];
      let ts = at(0);
      // A hit every 50 ms on average for 60,000 hits: 3,000 s, past 2^32 µs (4,295 s is not needed:
      // the entries are read back as ages below 2^32, each against its source's latest hit).
      for (let i = 0; i < 60_000; i++) {
        ts += Math.floor(random() * 100);
        events.push([sources[Math.floor(random() * sources.length)]!, Math.floor(random() * ports), ts]);
      }
      const ref = reference(n, t * 1000);
      const expected = events.map(([s, p, x]) => ref(s, p, x));
      const d = new Detector({ portThreshold: n, windowSeconds: t, maxSources: 20, probationSources: 10 });
      expect(expected.filter((x) => x !== undefined).length).toBeGreaterThan(50);
      expect(events.map(([s, p, x]) => d.observe(s, p, x))).toEqual(expected);
    },
  );
});

describe('Detector: time in ticks, and a source holds only the ports it has', () => {
  it('decides on microsecond ticks: stamps less than T apart by less than a tick of T count as T apart; a tick less is within T', () => {
    const d = detector(3, 60);
    // Exactly, 59,999.9997 ms apart: within T; floored to the µs, 60,000 ms apart: not.
    expect(feed(d, A, [[1, at(0) + 0.0004], [2, at(30)], [3, at(60) + 0.0001]])).toEqual([undefined, undefined, undefined]);
    expect(feed(d, B, [[1, at(0) + 0.0004], [2, at(30)], [3, at(60) - 0.0009]])[2]).toEqual({
      source: B,
      port: 3,
      tsMs: at(60) - 0.0009,
      ports: [1, 2, 3],
      // firstMs floored to the tick; lastMs exact.
      firstMs: at(0),
      lastMs: at(60) - 0.0009,
    });
  });

  it('with T = 86,400 s (a tick of 80 µs) ports exactly T apart are not within T, one ms less is', () => {
    const d = detector(3, 86_400);
    expect(feed(d, A, [[1, at(0)], [2, at(100)], [3, at(86_400)]])).toEqual([undefined, undefined, undefined]);
    expect(feed(detector(3, 86_400), B, [[1, at(0)], [2, at(100)], [3, at(86_400) - 1]])[2]).toMatchObject({ ports: [1, 2, 3], firstMs: at(0), lastMs: at(86_400) - 1 });
  });

  it('a source hitting 40 ports of N = 64 holds those 40 (5 chunks of 8), each at its latest hit; the 64th distinct port detects', () => {
    const d = detector(64, 60);
    for (let p = 0; p < 40; p++) d.observe(A, 1000 + p, at(p));
    d.observe(A, 1000, at(41));
    const held = d.held(A)!;
    expect(held.ports).toEqual([...Array.from({ length: 39 }, (_, k) => ({ port: 1001 + k, ms: at(k + 1) })), { port: 1000, ms: at(41) }]);
    for (let p = 40; p < 63; p++) expect(d.observe(A, 1000 + p, at(42))).toBeUndefined();
    expect(d.observe(A, 1063, at(43))).toMatchObject({ ports: [...Array.from({ length: 39 }, (_, k) => 1001 + k), 1000, ...Array.from({ length: 23 }, (_, k) => 1040 + k), 1063], firstMs: at(1), lastMs: at(43) });
    expect(d.tracked).toBe(0);
  });

  it('a port hit 2^32 µs (71.6 min) ago, its source kept alive all along, does not come back as just hit', () => {
    // The entries keep the low 32 bits of their tick: without the drop of old entries, port 7's would read as 0 µs old.
    const d = detector(3, 1);
    d.observe(A, 7, at(0));
    const end = at(0) + 2 ** 32 / 1000;
    let ts = at(0);
    for (; ts + 500 < end; ts += 500) expect(d.observe(A, 8, ts + 500)).toBeUndefined();
    expect(d.observe(A, 9, end)).toBeUndefined();
    expect(d.held(A)?.ports.map((p) => p.port)).toEqual([8, 9]);
    // Two new ports within T still detect it.
    expect(d.observe(A, 10, end + 1)).toMatchObject({ ports: [8, 9, 10] });
  });

  it('drops the ports T or more old when its last crosses a multiple of 2^30 µs, keeping the others in order across chunks', () => {
    const d = detector(64, 10);
    // The first multiple of 2^30 µs after at(0), in ms.
    const boundary = (Math.ceil((at(0) * 1000) / 2 ** 30) * 2 ** 30) / 1000;
    const base = boundary - 9_500;
    for (let p = 0; p < 20; p++) expect(d.observe(A, p, base + p * 10)).toBeUndefined();
    for (let p = 0; p < 20; p++) expect(d.observe(A, 100 + p, boundary - 5_000 + p * 10)).toBeUndefined();
    // Past the boundary: ports 0-19 are over 10 s old and dropped; 100-119 (5 chunks in, 3 chunks of 8) stay.
    expect(d.observe(A, 200, boundary + 1_000)).toBeUndefined();
    expect(d.held(A)?.ports.map((h) => h.port)).toEqual([...Array.from({ length: 20 }, (_, k) => 100 + k), 200]);
    for (let p = 0; p < 42; p++) expect(d.observe(A, 300 + p, boundary + 1_001 + p)).toBeUndefined();
    expect(d.observe(A, 342, boundary + 1_043)).toMatchObject({
      ports: [...Array.from({ length: 20 }, (_, k) => 100 + k), 200, ...Array.from({ length: 43 }, (_, k) => 300 + k)],
      lastMs: boundary + 1_043,
    });
  });

  it('the fleet rule keeps a source’s pairs apart once a second probe sees it, from its unexpired ports on the first', () => {
    const d = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 100, pairThreshold: 4 });
    d.observe(A, 2, at(0), 1);
    d.observe(A, 1, at(30), 1);
    d.observe(A, 1, at(61), 1);
    // Port 2 expired at 60: probe 1's pairs are port 1 only.
    expect(d.observe(A, 1, at(62), 2)).toBeUndefined();
    expect(d.held(A)).toEqual({
      ports: [{ port: 2, ms: at(0) }, { port: 1, ms: at(62) }],
      pairs: [{ probe: 1, port: 1, ms: at(61) }, { probe: 2, port: 1, ms: at(62) }],
    });
    expect(d.observe(A, 2, at(63), 2)).toBeUndefined();
    // Two ports, four pairs: the fleet rule.
    expect(d.observe(A, 2, at(64), 1)).toEqual({
      source: A,
      port: 2,
      tsMs: at(64),
      ports: [1, 1, 2, 2],
      firstMs: at(61),
      lastMs: at(64),
      pairs: [
        { probe: 1, port: 1 },
        { probe: 2, port: 1 },
        { probe: 2, port: 2 },
        { probe: 1, port: 2 },
      ],
    });
  });
});

describe('Detector: validation', () => {
  it.each([
    [{ portThreshold: 0, windowSeconds: 60, maxSources: 10 }],
    [{ portThreshold: 256, windowSeconds: 60, maxSources: 10 }],
    [{ portThreshold: 2.5, windowSeconds: 60, maxSources: 10 }],
    [{ portThreshold: Number.NaN, windowSeconds: 60, maxSources: 10 }],
    [{ portThreshold: 3, windowSeconds: 0, maxSources: 10 }],
    [{ portThreshold: 3, windowSeconds: -1, maxSources: 10 }],
    [{ portThreshold: 3, windowSeconds: Number.NaN, maxSources: 10 }],
    [{ portThreshold: 3, windowSeconds: Number.POSITIVE_INFINITY, maxSources: 10 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 0 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 1.5 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 2 ** 24 + 1 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 1 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 10, probationSources: 10 }],
    [{ portThreshold: 3, windowSeconds: 60, maxSources: 10, probationSources: 0 }],
  ])('rejects %o with a RangeError', (opts) => {
    expect(() => new Detector(opts)).toThrow(RangeError);
  });

  it('accepts the bounds', () => {
    expect(new Detector({ portThreshold: 1, windowSeconds: 0.001, maxSources: 2 }).tracked).toBe(0);
    expect(new Detector({ portThreshold: 255, windowSeconds: 86_400, maxSources: 2 ** 24 }).tracked).toBe(0);
  });

  it('rejects a port outside 0..65535 or a non-finite timestamp, changing nothing', () => {
    const d = detector(2, 60);
    for (const port of [-1, 65_536, 1.5, Number.NaN]) expect(() => d.observe(A, port, at(0))).toThrow(RangeError);
    for (const ts of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) expect(() => d.observe(A, 1, ts)).toThrow(RangeError);
    expect(() => d.sweep(Number.NaN)).toThrow(RangeError);
    expect(d.tracked).toBe(0);
    expect(d.observe(A, 0, at(0))).toBeUndefined();
    expect(d.observe(A, 65_535, at(1))).toMatchObject({ ports: [0, 65_535] });
  });
});

describe('held(): what the detector holds for a source (explain)', () => {
  it('reads a source in probation, then protected, oldest first, and nothing once detected or expired', () => {
    const d = detector(3, 60);
    expect(d.held(A)).toBeUndefined();
    d.observe(A, 80, at(1));
    expect(d.held(A)).toEqual({ ports: [{ port: 80, ms: at(1) }], pairs: [] });
    d.observe(A, 22, at(2));
    d.observe(A, 80, at(3));
    expect(d.held(A)).toEqual({ ports: [{ port: 22, ms: at(2) }, { port: 80, ms: at(3) }], pairs: [] });
    // Reading moves nothing: the third port still detects at once.
    expect(d.observe(A, 443, at(4))?.ports).toEqual([22, 80, 443]);
    expect(d.held(A)).toBeUndefined();
    d.observe(B, 1, at(10));
    d.observe(C, 1, at(71));
    expect(d.held(B)).toBeUndefined();
  });

  it('reads the fleet rule’s pairs with their probes', () => {
    const d = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 100, pairThreshold: 4 });
    d.observe(A, 80, at(1), 1);
    expect(d.held(A)?.pairs).toEqual([{ probe: 1, port: 80, ms: at(1) }]);
    d.observe(A, 80, at(2), 2);
    expect(d.held(A)).toEqual({ ports: [{ port: 80, ms: at(2) }], pairs: [{ probe: 1, port: 80, ms: at(1) }, { probe: 2, port: 80, ms: at(2) }] });
  });
});
