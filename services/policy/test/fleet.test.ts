// The fleet rule (docs/fleet.md): a source's distinct (probe, port) pairs
// within T, over every probe, at the edges of its definition, beside the
// per-host rule it shares the detector's slots with; and the probes' numbers
// the pairs are kept by.
import { describe, expect, it } from 'vitest';
import { type Detection, Detector } from '../src/detector.js';
import { PROBE_NUMBERS, ProbeNumbers } from '../src/probes.js';

const T0 = Date.UTC(2025, 0, 1);
const at = (seconds: number): number => T0 + seconds * 1000;

/** Source keys as the policy makes them for IPv4: the address as an int32. */
const A = 0x0a000001;
const B = 0x0a000002;
const C = 0x0a000003;

function detector(portThreshold: number, pairThreshold: number, windowSeconds = 60, maxSources = 1000): Detector {
  return new Detector({ portThreshold, pairThreshold, windowSeconds, maxSources });
}

type Hit = [probe: number, port: number, seconds: number];

/** A small LCG: the same traffic every run. */
function lcg(seed: number): () => number {
  let x = seed;
  return () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

/** Feeds one source's [probe, port, seconds] hits; returns what each observe() returned. */
function feed(d: Detector, source: number, hits: Hit[]): (Detection | undefined)[] {
  return hits.map(([probe, port, s]) => d.observe(source, port, at(s), probe));
}

/** 2 ports on each of 5 probes, one a second: under N = 3 on every probe. */
const SPREAD: Hit[] = [0, 1, 2, 3, 4].flatMap((probe) => [
  [probe, 8086, probe * 2],
  [probe, 8087, probe * 2 + 1],
]);

describe('the fleet rule: the threshold', () => {
  it('detects on exactly the F-th distinct pair within T, describing the F pairs oldest first', () => {
    const d = detector(3, 10);
    const got = feed(d, A, SPREAD);
    expect(got.slice(0, 9)).toEqual(Array(9).fill(undefined));
    expect(got[9]).toEqual({
      source: A,
      port: 8087,
      tsMs: at(9),
      ports: [8086, 8087, 8086, 8087, 8086, 8087, 8086, 8087, 8086, 8087],
      firstMs: at(0),
      lastMs: at(9),
      pairs: SPREAD.map(([probe, port]) => ({ probe, port })),
    });
    expect(d.tracked).toBe(0);
  });

  it('does not detect F - 1 pairs, however often they are hit', () => {
    const d = detector(3, 10);
    const nine = SPREAD.slice(0, 9);
    const got = [0, 10, 20, 30].flatMap((offset) => feed(d, A, nine.map(([p, port, s]) => [p, port, s + offset])));
    expect(got).toEqual(Array(36).fill(undefined));
    expect(d.tracked).toBe(1);
  });

  it('does not detect pairs hit exactly T apart, and detects them just under T', () => {
    const pairs: Hit[] = [
      [0, 80, 0],
      [0, 81, 20],
      [1, 80, 40],
    ];
    expect(feed(detector(3, 4), A, [...pairs, [1, 81, 60]])).toEqual([undefined, undefined, undefined, undefined]);
    const under = feed(detector(3, 4), A, [...pairs, [1, 81, 59.9995]]);
    expect(under.slice(0, 3)).toEqual([undefined, undefined, undefined]);
    expect(under[3]).toMatchObject({ ports: [80, 81, 80, 81], firstMs: at(0), lastMs: at(59.9995) });
  });

  it('counts the same port on different probes once per probe; without the fleet rule it is one port', () => {
    const sweep: Hit[] = [0, 1, 2, 3, 4].map((probe) => [probe, 22, probe]);
    const got = feed(detector(3, 5), A, sweep);
    expect(got.slice(0, 4)).toEqual([undefined, undefined, undefined, undefined]);
    expect(got[4]).toMatchObject({ ports: [22, 22, 22, 22, 22], pairs: sweep.map(([probe, port]) => ({ probe, port })) });
    expect(feed(detector(3, 0), A, sweep)).toEqual(Array(5).fill(undefined));
  });

  it('counts a repeated pair once, at its later hit', () => {
    // Three distinct pairs, one of them hit twice: not four.
    expect(feed(detector(3, 4), A, [[0, 80, 0], [0, 80, 1], [0, 81, 2], [1, 80, 3]])).toEqual([undefined, undefined, undefined, undefined]);
    // (0, 80) at 0 s is too old for (1, 81) at 61 s; hit again at 50 s, it is within T.
    const stale: Hit[] = [[0, 80, 0], [0, 81, 30], [1, 80, 40]];
    expect(feed(detector(3, 4), A, [...stale, [1, 81, 61]])[3]).toBeUndefined();
    const refreshed = feed(detector(3, 4), A, [...stale, [0, 80, 50], [1, 81, 61]]);
    expect(refreshed[4]).toMatchObject({ pairs: [{ probe: 0, port: 81 }, { probe: 1, port: 80 }, { probe: 0, port: 80 }, { probe: 1, port: 81 }], firstMs: at(30), lastMs: at(61) });
  });
});

describe('the fleet rule beside the per-host rule', () => {
  it('checks the per-host rule first: an event that completes both is a per-host detection', () => {
    const d = detector(3, 3);
    expect(feed(d, A, [[0, 80, 0], [1, 81, 1], [2, 82, 2]])).toEqual([
      undefined,
      undefined,
      { source: A, port: 82, tsMs: at(2), ports: [80, 81, 82], firstMs: at(0), lastMs: at(2) },
    ]);
  });

  it('with F = N, detects N pairs on one port before the per-host rule can', () => {
    expect(feed(detector(3, 3), A, [[0, 80, 0], [1, 80, 1], [2, 80, 2]])[2]).toMatchObject({ ports: [80, 80, 80], pairs: [{ probe: 0, port: 80 }, { probe: 1, port: 80 }, { probe: 2, port: 80 }] });
  });

  it("drops the source's history for both rules on a detection by either", () => {
    const d = detector(3, 4);
    expect(feed(d, A, [[0, 80, 0], [0, 81, 1], [1, 80, 2], [1, 81, 3]])[3]).toMatchObject({ ports: [80, 81, 80, 81] });
    // Kept, ports 80 and 81 would make 82 the third port within T.
    expect(feed(d, A, [[2, 82, 4], [2, 83, 5]])).toEqual([undefined, undefined]);
    expect(d.observe(A, 84, at(6), 2)).toMatchObject({ ports: [82, 83, 84] });
  });

  it('forgets an idle source for both rules', () => {
    const d = detector(3, 4);
    expect(feed(d, A, [[0, 80, 0], [0, 81, 1], [1, 80, 2], [1, 81, 62], [2, 80, 63]])).toEqual(Array(5).fill(undefined));
    expect(d.expired).toBe(1);
  });

  it('detects the per-host rule exactly as without the fleet rule, on random traffic over 5 probes', () => {
    const random = lcg(7);
    const events: [number, number, number, number][] = [];
    let ts = at(0);
    for (let i = 0; i < 20_000; i++) {
      ts += random() < 0.99 ? random() * 5000 : random() * 200_000;
      events.push([A + Math.floor(random() * 20), Math.floor(random() * 10), ts, Math.floor(random() * 5)]);
    }
    const plain = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 100 });
    // 10 ports on 5 probes are 50 pairs: F = 255 never fires.
    const withFleet = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 100, pairThreshold: 255 });
    const expected = events.map(([s, port, t]) => plain.observe(s, port, t));
    expect(expected.filter((x) => x !== undefined).length).toBeGreaterThan(100);
    expect(events.map(([s, port, t, probe]) => withFleet.observe(s, port, t, probe))).toEqual(expected);
  });

  it('matches the definition of both rules on random in-order traffic', () => {
    const n = 3;
    const f = 6;
    const windowMs = 10_000;
    /** All hits of a source since its last detection; per-host first, then the fleet rule, each on the hits less than T old. */
    const history = new Map<number, { probe: number; port: number; ts: number }[]>();
    const floorUs = (ms: number) => Math.floor(ms * 1000) / 1000;
    const reference = (source: number, port: number, ts: number, probe: number): Detection | undefined => {
      const list = history.get(source) ?? [];
      list.push({ probe, port, ts });
      history.set(source, list);
      const recent = list.filter((h) => ts - h.ts < windowMs);
      const latest = (key: (h: { probe: number; port: number }) => number) => {
        const m = new Map<number, number>();
        for (const h of recent) m.set(key(h), Math.max(h.ts, m.get(key(h)) ?? -Infinity));
        return [...m].sort((x, y) => x[1] - y[1] || x[0] - y[0]);
      };
      const ports = latest((h) => h.port);
      if (ports.length >= n) {
        history.delete(source);
        // firstMs as the detector keeps the entries' times: floored to its tick, 1 µs at this window.
        return { source, port, tsMs: ts, ports: ports.map((p) => p[0]), firstMs: floorUs(ports[0]![1]), lastMs: ts };
      }
      const pairs = latest((h) => h.probe * 0x10000 + h.port);
      if (pairs.length < f) return undefined;
      history.delete(source);
      return {
        source,
        port,
        tsMs: ts,
        ports: pairs.map((p) => p[0] & 0xffff),
        firstMs: floorUs(pairs[0]![1]),
        lastMs: ts,
        pairs: pairs.map((p) => ({ probe: Math.floor(p[0] / 0x10000), port: p[0] & 0xffff })),
      };
    };
    const random = lcg(11);
    const d = detector(n, f, windowMs / 1000, 100);
    const got: (Detection | undefined)[] = [];
    const want: (Detection | undefined)[] = [];
    let ts = at(0);
    for (let i = 0; i < 20_000; i++) {
      ts += random() < 0.98 ? random() * 1000 : random() * 30_000;
      // Two ports (never a per-host scan alone) on 8 probes, and now and then a third port.
      const event = [A + Math.floor(random() * 10), random() < 0.05 ? 3 : Math.floor(random() * 2), ts, Math.floor(random() * 8)] as const;
      got.push(d.observe(...event));
      want.push(reference(...event));
    }
    expect(want.filter((x) => x?.pairs !== undefined).length).toBeGreaterThan(100);
    expect(want.filter((x) => x !== undefined && x.pairs === undefined).length).toBeGreaterThan(10);
    expect(got).toEqual(want);
  });
});

describe('the fleet rule: the cap on sources', () => {
  it('evicts the least recently hit protected source, pairs and all, and counts it; a second pair on the same port promotes', () => {
    const d = new Detector({ portThreshold: 3, pairThreshold: 4, windowSeconds: 60, maxSources: 4, probationSources: 2 });
    expect(feed(d, A, [[0, 80, 0], [0, 81, 1], [1, 80, 2]])).toEqual([undefined, undefined, undefined]);
    // One port on two probes: two pairs, promoted.
    expect(feed(d, B, [[0, 80, 3], [1, 80, 4]])).toEqual([undefined, undefined]);
    expect({ promoted: d.promoted, spaces: d.spaces }).toEqual({ promoted: 2, spaces: { probation: 0, protected: 2 } });
    // C's promotion finds the protected space full: A, the least recently hit, goes.
    expect(feed(d, C, [[0, 80, 5], [0, 81, 6]])).toEqual([undefined, undefined]);
    expect({ tracked: d.tracked, evictions: d.evictions, protectedEvictions: d.protectedEvictions }).toEqual({ tracked: 2, evictions: 1, protectedEvictions: 1 });
    // B kept its pairs: two more make four.
    expect(feed(d, B, [[0, 81, 7], [1, 81, 8]])).toEqual([undefined, expect.objectContaining({ source: B, firstMs: at(3), lastMs: at(8) })]);
    // A's fourth pair, which would have made a scan with its first three, is its first again.
    expect(d.observe(A, 81, at(9), 1)).toBeUndefined();
    expect({ tracked: d.tracked, spaces: d.spaces, evictions: d.evictions }).toEqual({ tracked: 2, spaces: { probation: 1, protected: 1 }, evictions: 1 });
  });
});

describe('the fleet rule: validation', () => {
  it.each([
    [{ portThreshold: 3, pairThreshold: 2 }],
    [{ portThreshold: 3, pairThreshold: 1 }],
    [{ portThreshold: 3, pairThreshold: 256 }],
    [{ portThreshold: 3, pairThreshold: -1 }],
    [{ portThreshold: 3, pairThreshold: 4.5 }],
    [{ portThreshold: 3, pairThreshold: Number.NaN }],
  ])('rejects %o with a RangeError', (opts) => {
    expect(() => new Detector({ ...opts, windowSeconds: 60, maxSources: 10 })).toThrow(RangeError);
  });

  it('accepts 0 (off), N and 255', () => {
    for (const pairThreshold of [0, 3, 255]) expect(new Detector({ portThreshold: 3, pairThreshold, windowSeconds: 60, maxSources: 10 }).tracked).toBe(0);
  });

  it('rejects a probe number outside 0..65535, changing nothing', () => {
    const d = detector(3, 4);
    for (const probe of [-1, 65_536, 1.5, Number.NaN]) expect(() => d.observe(A, 80, at(0), probe)).toThrow(RangeError);
    expect(d.tracked).toBe(0);
    expect(feed(d, A, [[0, 80, 0], [65_535, 80, 1], [0, 81, 2], [65_535, 81, 3]])[3]).toMatchObject({
      pairs: [{ probe: 0, port: 80 }, { probe: 65_535, port: 80 }, { probe: 0, port: 81 }, { probe: 65_535, port: 81 }],
    });
  });
});

describe("the probes' numbers", () => {
  it('numbers probes in the order they first connect, and names them back', () => {
    const numbers = new ProbeNumbers();
    expect(['a', 'b', 'c'].map((id) => numbers.connect(id))).toEqual([0, 1, 2]);
    expect([numbers.idOf(1), numbers.idOf(3)]).toEqual(['b', '']);
  });

  it('gives a probe that reconnects its own number again', () => {
    const numbers = new ProbeNumbers();
    numbers.connect('a');
    numbers.connect('b');
    numbers.disconnect('a');
    expect(numbers.connect('c')).toBe(2);
    expect(numbers.connect('a')).toBe(0);
  });

  it(`beyond ${PROBE_NUMBERS} ids, gives a newcomer the number of the probe that left longest ago, never a connected one`, () => {
    const numbers = new ProbeNumbers();
    for (let i = 0; i < PROBE_NUMBERS; i++) numbers.connect(`p${i}`);
    numbers.disconnect('p5');
    numbers.disconnect('p3');
    numbers.disconnect('p9');
    // p9 came back: it holds its number, and is no longer a candidate.
    expect(numbers.connect('p9')).toBe(9);
    expect(numbers.connect('new1')).toBe(5);
    expect(numbers.connect('new2')).toBe(3);
    expect([numbers.idOf(5), numbers.idOf(3)]).toEqual(['new1', 'new2']);
    expect(() => numbers.connect('p5')).toThrow(`${PROBE_NUMBERS} probes are connected: no probe number is free`);
  });
});
