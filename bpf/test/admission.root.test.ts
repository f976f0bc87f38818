// The in-kernel detector's admission (docs/detection.md, "Memory"), run by
// the kernel (BPF_PROG_TEST_RUN) on crafted frames, on the test clock: a
// source seen on one port waits in probation, first in first out; its
// second distinct port promotes it to the protected space, which single-hit
// sources never enter. Small spaces, so that a few hundred frames churn them.
import { type Counters, Datapath, ScanVerdict, TEST_CLOCK_OBJECT_PATH, parseAddress, probationCodec, synEventCodec, synFrame } from '@packetwatch/bpf';
import { type RingBufferReader, u32, u64 } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';

const XDP_DROP = 1;
const XDP_PASS = 2;
const VICTIM = '198.51.100.1';
const S = 1_000_000_000n;
/** Probation slots and protected slots of every test here. */
const PROBATION = 64;
const PROTECTED = 8;

/** The i-th forged source: 10.0.0.0/8, one address each. */
const forged = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

type Space = Pick<Counters, 'scanAdmitted' | 'scanPromoted' | 'probationEvicted' | 'protectedEvicted' | 'scanBlocked'>;

class Kernel {
  readonly dp: Datapath;
  readonly #reader: RingBufferReader;
  readonly #clock;

  constructor(opts: { ports: number; windowSeconds: number }) {
    this.dp = Datapath.load({
      objectPath: TEST_CLOCK_OBJECT_PATH,
      scanPorts: opts.ports,
      scanWindowSeconds: opts.windowSeconds,
      scanProbationSize: PROBATION,
      scanTableSize: PROTECTED,
    });
    this.#reader = this.dp.reader();
    this.#clock = this.dp.collection.map('test_clock').typed(u32, u64);
  }

  /** One SYN from source to port at time ns on the test clock: its verdict and the detector's. */
  syn(source: string, port: number, ns: bigint): { verdict: number; scan: number } {
    this.#clock.set(0, ns);
    const { retval } = this.dp.program.testRun({ data: synFrame(source, VICTIM, 40000, port) });
    const scans = [...this.#reader.consume()].map((r) => synEventCodec.read(r, 0).scan);
    return { verdict: retval, scan: scans[0] ?? -1 };
  }

  /** count forged single-SYN sources from first on, at time ns: every one passes, none is a scan. */
  flood(first: number, count: number, ns: bigint): void {
    for (let i = first; i < first + count; i++) expect(this.syn(forged(i), 80, ns)).toEqual({ verdict: XDP_PASS, scan: ScanVerdict.None });
  }

  spaces(): Space {
    const c = this.dp.counters();
    return { scanAdmitted: c.scanAdmitted, scanPromoted: c.scanPromoted, probationEvicted: c.probationEvicted, protectedEvicted: c.protectedEvicted, scanBlocked: c.scanBlocked };
  }

  /** Waiting in probation: an entry there that is not a promoted source's stub. */
  inProbation(source: string): boolean {
    const v = this.dp.collection.map('scan_probation').lookup(parseAddress(source));
    return v !== undefined && probationCodec.read(v, 0).promoted === 0;
  }

  inProtected(source: string): boolean {
    return this.dp.collection.map('scanners').lookup(parseAddress(source)) !== undefined;
  }

  close(): void {
    this.#reader.close();
    this.dp.close();
  }
}

function withKernel(opts: { ports: number; windowSeconds: number }, body: (k: Kernel) => void): void {
  const k = new Kernel(opts);
  try {
    body(k);
  } finally {
    k.close();
  }
}

const T0 = 1000n * S;

describe('in-kernel admission: probation and the protected space', () => {
  it('sizes the spaces as set: rings and hashes of their size', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      const info = (name: string) => k.dp.collection.map(name).info();
      expect(info('probation_ring').maxEntries).toBe(PROBATION);
      expect(info('protected_ring').maxEntries).toBe(PROTECTED);
      expect(info('scan_probation').maxEntries).toBe(PROBATION);
      expect(info('scan_probation').valueSize).toBe(probationCodec.size);
      expect(info('scanners').maxEntries).toBe(PROTECTED);
    });
  });

  it('keeps a first hit across PROBATION - 1 newer admissions; a flood of 10 x PROBATION then never evicts the promoted scanner, which is blocked at its third port', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      const scanner = '192.0.2.7';
      expect(k.syn(scanner, 1, T0)).toEqual({ verdict: XDP_PASS, scan: ScanVerdict.None });
      k.flood(0, PROBATION - 1, T0 + 1n * S);
      expect(k.spaces()).toEqual({ scanAdmitted: BigInt(PROBATION), scanPromoted: 0n, probationEvicted: 0n, protectedEvicted: 0n, scanBlocked: 0n });
      expect(k.inProbation(scanner)).toBe(true);
      // Its second distinct port: promoted, out of probation (a stub there sends lookups on).
      expect(k.syn(scanner, 2, T0 + 15n * S)).toEqual({ verdict: XDP_PASS, scan: ScanVerdict.None });
      expect({ probation: k.inProbation(scanner), protected: k.inProtected(scanner) }).toEqual({ probation: false, protected: true });
      // Ten times probation's size of single-hit sources: every admission
      // forgets the one PROBATION before it, but for the first to come round
      // to the scanner's slot, which holds its stub: forgotten, nothing lost.
      k.flood(PROBATION, 10 * PROBATION, T0 + 20n * S);
      expect(k.spaces()).toEqual({
        scanAdmitted: BigInt(PROBATION + 10 * PROBATION),
        scanPromoted: 1n,
        probationEvicted: BigInt(10 * PROBATION - 1),
        protectedEvicted: 0n,
        scanBlocked: 0n,
      });
      expect(k.inProtected(scanner)).toBe(true);
      expect(k.syn(scanner, 3, T0 + 30n * S)).toEqual({ verdict: XDP_PASS, scan: ScanVerdict.Blocked });
      expect(k.syn(scanner, 4, T0 + 31n * S).verdict).toBe(XDP_DROP);
      expect(k.spaces()).toMatchObject({ scanPromoted: 1n, protectedEvicted: 0n, scanBlocked: 1n });
      expect(k.dp.blocklist.get(parseAddress(scanner))).toMatchObject({ flags: 1 });
    });
  });

  it('forgets a first hit after PROBATION newer admissions (the bound is exact): the second port starts afresh', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      const scanner = '192.0.2.8';
      k.syn(scanner, 1, T0);
      k.flood(0, PROBATION, T0 + 1n * S);
      expect(k.inProbation(scanner)).toBe(false);
      expect(k.spaces()).toMatchObject({ scanAdmitted: BigInt(PROBATION + 1), probationEvicted: 1n });
      // Ports 2 and 3 within T of port 1: a scan, but port 1 is forgotten;
      // port 2 is an admission (which forgets the oldest forged source), port 3 promotes.
      expect(k.syn(scanner, 2, T0 + 15n * S).scan).toBe(ScanVerdict.None);
      expect(k.spaces()).toMatchObject({ scanAdmitted: BigInt(PROBATION + 2), probationEvicted: 2n });
      expect(k.syn(scanner, 3, T0 + 30n * S).scan).toBe(ScanVerdict.None);
      expect(k.spaces()).toEqual({ scanAdmitted: BigInt(PROBATION + 2), scanPromoted: 1n, probationEvicted: 2n, protectedEvicted: 0n, scanBlocked: 0n });
      // Tracked again from port 2: port 4 is its third port within T.
      expect(k.syn(scanner, 4, T0 + 31n * S).scan).toBe(ScanVerdict.Blocked);
    });
  });

  it('does not count a forgotten hit that had expired as an eviction', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      k.flood(0, PROBATION, T0);
      k.flood(PROBATION, PROBATION, T0 + 60n * S);
      expect(k.spaces()).toMatchObject({ scanAdmitted: BigInt(2 * PROBATION), probationEvicted: 0n });
      k.flood(2 * PROBATION, 1, T0 + 61n * S);
      expect(k.spaces()).toMatchObject({ scanAdmitted: BigInt(2 * PROBATION + 1), probationEvicted: 1n });
    });
  });

  it('evicts from the protected space only for promotions, first promoted first, and counts it', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      const two = (i: number, ns: bigint) => {
        expect(k.syn(forged(i), 1, ns).scan).toBe(ScanVerdict.None);
        expect(k.syn(forged(i), 2, ns + 1n).scan).toBe(ScanVerdict.None);
      };
      for (let i = 0; i < PROTECTED; i++) two(i, T0 + BigInt(i) * S);
      expect(k.spaces()).toMatchObject({ scanAdmitted: BigInt(PROTECTED), scanPromoted: BigInt(PROTECTED), protectedEvicted: 0n });
      two(PROTECTED, T0 + 20n * S);
      expect(k.spaces()).toMatchObject({ scanPromoted: BigInt(PROTECTED + 1), protectedEvicted: 1n });
      expect(k.inProtected(forged(0))).toBe(false);
      // The others keep their histories: a third port blocks them.
      for (let i = 1; i <= PROTECTED; i++) expect(k.syn(forged(i), 3, T0 + 21n * S).scan).toBe(ScanVerdict.Blocked);
      expect(k.syn(forged(0), 3, T0 + 21n * S).scan).toBe(ScanVerdict.None);
      expect(k.spaces()).toMatchObject({ scanBlocked: BigInt(PROTECTED), protectedEvicted: 1n });
    });
  });

  it('N = 2: the second distinct port crosses straight from probation (no promotion); N = 1: the first SYN crosses, nothing is admitted', () => {
    withKernel({ ports: 2, windowSeconds: 60 }, (k) => {
      expect(k.syn('192.0.2.9', 1, T0).scan).toBe(ScanVerdict.None);
      expect(k.syn('192.0.2.9', 1, T0 + 1n * S).scan).toBe(ScanVerdict.None);
      expect(k.syn('192.0.2.9', 2, T0 + 2n * S).scan).toBe(ScanVerdict.Blocked);
      expect(k.spaces()).toEqual({ scanAdmitted: 1n, scanPromoted: 0n, probationEvicted: 0n, protectedEvicted: 0n, scanBlocked: 1n });
      expect({ probation: k.inProbation('192.0.2.9'), protected: k.inProtected('192.0.2.9') }).toEqual({ probation: false, protected: false });
    });
    withKernel({ ports: 1, windowSeconds: 60 }, (k) => {
      expect(k.syn('192.0.2.9', 1, T0).scan).toBe(ScanVerdict.Blocked);
      expect(k.spaces()).toMatchObject({ scanAdmitted: 0n, scanBlocked: 1n });
    });
  });

  it('sends a protected source whose history expired back to probation with its new hit', () => {
    withKernel({ ports: 3, windowSeconds: 60 }, (k) => {
      k.syn('192.0.2.10', 1, T0);
      k.syn('192.0.2.10', 2, T0 + 1n * S);
      expect(k.inProtected('192.0.2.10')).toBe(true);
      k.syn('192.0.2.10', 3, T0 + 61n * S);
      expect({ probation: k.inProbation('192.0.2.10'), protected: k.inProtected('192.0.2.10') }).toEqual({ probation: true, protected: false });
      expect(k.spaces()).toMatchObject({ scanAdmitted: 2n, scanPromoted: 1n, protectedEvicted: 0n });
    });
  });
});
