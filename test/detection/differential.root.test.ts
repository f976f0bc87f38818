// One rule, two engines (docs/detection.md): the same SYN sequences through
// the XDP program (BPF_PROG_TEST_RUN) and through the policy's Detector, as
// the policy feeds it, and the same decision required of both at every SYN:
// pass, block (the crossing SYN: it passes, its source is blocked) or drop.
//
// Time. The rule compares the SYNs' stamps, so the edges (ports exactly T
// apart, ties, probes minutes apart, late probes) need stamps the test
// chooses. The program takes them from the real coarse clock, which a test
// cannot steer to a chosen nanosecond, and at test speed every SYN would fall
// in the same tick. Three ways were open:
//   - feed the detector the times the program recorded: exact, but only for
//     the times the clock happens to give (used below for the deployed object,
//     where it shows that that object decides as the detector does);
//   - a test-only load-time constant: one time per load, not one per SYN;
//   - a build variant whose clock is a map the test writes before each SYN
//     (PW_VARIANT_TEST_CLOCK, built by `make bpf` as
//     bpf/build/packetwatch-test-clock.bpf.o). Taken for the edge cases and
//     the generated sequences: the variant differs from the deployed program
//     in one place, pw_now(), under an #ifdef, so the detector under test is
//     the deployed source and the deployed object pays nothing for it (it has
//     no test_clock map and no branch).
// Stamps are whole milliseconds, so that the detector's doubles (tsMs =
// ns / 1e6, as the policy computes them) are exact; how the engines' time
// representations differ in production is written in docs/detection.md.
import {
  Datapath,
  type DatapathOptions,
  OBJECT_PATH,
  PortState,
  ScanVerdict,
  TEST_CLOCK_OBJECT_PATH,
  parseAddress,
  synEventCodec,
  synFrame,
} from '@packetwatch/bpf';
import { type RingBufferReader, type TypedMap, clock, u32, u64 } from 'libbpf-ts';
import { afterAll, describe, expect, it } from 'vitest';
import { Detector } from '../../services/policy/src/detector.js';
import { type SourceKey, addressKey } from '../../services/policy/src/sourcekey.js';
import { prng } from '../prng.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const VICTIM = '198.51.100.1';
/** Kernel allowlist and the policy's allowlist in these tests. */
const ALLOWED_PREFIX = '3fff:a11::/32';
const allowed = (src: string) => src.startsWith('3fff:a11:');

type Decision = 'pass' | 'block' | 'drop';

interface Syn {
  src: string;
  port: number;
  /** The stamp, whole milliseconds (the test clock's engines only). */
  ms: number;
}

interface Rule {
  n: number;
  windowMs: number;
  /** Closed mode (PW_PORTSCAN_COUNT=closed) with these ports declared open (PW_OPEN_PORTS); all mode when absent. */
  openPorts?: [number, number][];
}

/** The policy's side, as its event path drives the detector (services/policy/src/service.ts, processRecords). */
class PolicyEngine {
  readonly detector: Detector;
  readonly #blocked = new Set<SourceKey>();

  constructor(rule: Rule) {
    this.detector = new Detector({ portThreshold: rule.n, windowSeconds: rule.windowMs / 1000, maxSources: 1 << 20 });
  }

  /**
   * tsMs undefined: the kernel dropped the SYN, so the policy never sees it; it says what it would have done without a time.
   * portState: as the kernel marked the SYN's event (closed mode); an open port's SYN is not counted (processRecords).
   */
  syn(src: string, port: number, tsMs: number | undefined, portState: number = PortState.Unknown): Decision {
    const key = addressKey(parseAddress(src));
    // The kernel drops a blocked source's SYNs before the ring buffer; the policy skips allowlisted ones.
    if (this.#blocked.has(key)) return 'drop';
    if (allowed(src) || tsMs === undefined || portState === PortState.Open) return 'pass';
    if (!this.detector.observe(key, port, tsMs)) return 'pass';
    this.#blocked.add(key);
    return 'block';
  }
}

/** The XDP program's side: one loaded object, its verdict and its event per SYN. */
class KernelEngine {
  readonly dp: Datapath;
  readonly #reader: RingBufferReader;
  readonly #clock: TypedMap<number, bigint> | undefined;
  #sport = 1024;

  constructor(rule: Rule, opts: { testClock: boolean; windowNs?: bigint }) {
    const window: DatapathOptions = { scanWindowSeconds: opts.windowNs !== undefined ? Number(opts.windowNs) / 1e9 : rule.windowMs / 1000 };
    this.dp = Datapath.load({
      objectPath: opts.testClock ? TEST_CLOCK_OBJECT_PATH : OBJECT_PATH,
      scanPorts: rule.n,
      scanBlockSeconds: 0,
      scanBlocksPerMinute: 0,
      countClosed: rule.openPorts !== undefined,
      openPorts: rule.openPorts,
      ...window,
    });
    this.#reader = this.dp.reader();
    this.#clock = opts.testClock ? this.dp.collection.map('test_clock').typed(u32, u64) : undefined;
    this.dp.allow(ALLOWED_PREFIX);
  }

  /** Runs one SYN (stamped tsNs with the test clock); the decision and the stamp the program gave it (none when dropped). */
  syn(src: string, port: number, tsNs?: bigint): { decision: Decision; tsNs: bigint | undefined; portState: number } {
    if (tsNs !== undefined) this.#clock!.set(0, tsNs);
    this.#sport = this.#sport === 65535 ? 1024 : this.#sport + 1;
    const { retval } = this.dp.program.testRun({ data: synFrame(src, VICTIM, this.#sport, port) });
    const events = [...this.#reader.consume()].map((r) => synEventCodec.read(r, 0));
    if (retval === XDP_DROP && events.length === 0) return { decision: 'drop', tsNs: undefined, portState: PortState.Unknown };
    const ev = events[0];
    if (retval !== XDP_PASS || events.length !== 1 || !ev || ev.dport !== port || (tsNs !== undefined && ev.tsNs !== tsNs)) {
      throw new Error(`SYN ${src} -> ${port}: verdict ${retval} with ${events.length} events (${JSON.stringify(events.map((e) => [e.dport, String(e.tsNs)]))})`);
    }
    // An allowlisted source's crossing is reported and blocks nothing.
    return { decision: ev.scan === ScanVerdict.Blocked ? 'block' : 'pass', tsNs: ev.tsNs, portState: ev.portState };
  }

  close(): void {
    this.#reader.close();
    this.dp.close();
  }
}

/** Both engines of one rule, on the test clock: every SYN stamped at base + ms. */
class Pair {
  readonly kernel: KernelEngine;
  readonly policy: PolicyEngine;

  constructor(readonly rule: Rule) {
    // The premise of exact doubles: the detector's window is windowSeconds * 1000.
    if ((rule.windowMs / 1000) * 1000 !== rule.windowMs) throw new Error(`window ${rule.windowMs} ms is not exact in seconds`);
    this.kernel = new KernelEngine(rule, { testClock: true });
    this.policy = new PolicyEngine(rule);
  }

  /** Each SYN's decision by each engine; the policy takes each SYN's port state from the kernel's event, as in production. */
  run(syns: readonly Syn[]): { kernel: Decision[]; policy: Decision[]; open: number } {
    const kernel: Decision[] = [];
    const policy: Decision[] = [];
    let open = 0;
    for (const s of syns) {
      const k = this.kernel.syn(s.src, s.port, BigInt(s.ms) * 1_000_000n);
      if (k.portState === PortState.Open) open++;
      kernel.push(k.decision);
      policy.push(this.policy.syn(s.src, s.port, s.ms, k.portState));
    }
    return { kernel, policy, open };
  }

  close(): void {
    this.kernel.close();
  }
}

/** Every source a test uses is new: sources never share history across cases or sequences. */
let sourceCount = 0;
function newSource(kind: 'v4' | 'v6' | 'allowed'): string {
  const i = ++sourceCount;
  if (kind === 'v4') return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  // Each IPv6 source in a /64 of its own (3fff::/20 is for documentation):
  // the engines take the addresses of one /64 as one source.
  return `${kind === 'v6' ? '3fff:5ca' : '3fff:a11'}:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`;
}

/** Each case's stamps start past everything before them (the engines' clocks carry over between cases). */
let epochMs = 1_000_000;

/** One source's hits [port, ms after the case's start]. */
function hits(src: string, list: [number, number][]): Syn[] {
  return list.map(([port, ms]) => ({ src, port, ms }));
}

describe('hand-written edge cases: both engines decide as docs/detection.md says, at the same SYN', () => {
  const pairs = new Map<string, Pair>();
  afterAll(() => {
    for (const p of pairs.values()) p.close();
  });
  const pair = (n: number, windowMs: number) => {
    const k = `${n}/${windowMs}`;
    let p = pairs.get(k);
    if (!p) pairs.set(k, (p = new Pair({ n, windowMs })));
    return p;
  };
  /** Runs the case on (N, T) and returns the one decision list both engines gave. */
  const decide = (n: number, windowMs: number, build: (src: () => string) => Syn[]): Decision[] => {
    const syns = build(() => newSource('v4')).map((s) => ({ ...s, ms: s.ms + epochMs }));
    epochMs = Math.max(...syns.map((s) => s.ms)) + 10 * windowMs;
    const { kernel, policy } = pair(n, windowMs).run(syns);
    expect(kernel).toEqual(policy);
    return kernel;
  };
  const S = 1000;

  it("the issue's example: N = 3, T = 60 s, ports 1 @ 0 s, 2 @ 10 s, 3 @ 65 s, 1 @ 66 s: the repeated port 1 crosses, the next SYN is dropped", () => {
    expect(decide(3, 60 * S, (src) => hits(src(), [[1, 0], [2, 10 * S], [3, 65 * S], [1, 66 * S], [4, 67 * S]]))).toEqual([
      'pass', 'pass', 'pass', 'block', 'drop',
    ]);
  });

  it('a repeated port refreshes its time and does not count twice', () => {
    expect(decide(2, 60 * S, (src) => hits(src(), [[80, 0], [80, 1], [80, 2 * S], [80, 59 * S]]))).toEqual(['pass', 'pass', 'pass', 'pass']);
    expect(decide(2, 60 * S, (src) => hits(src(), [[22, 0], [80, 70 * S], [22, 71 * S]]))).toEqual(['pass', 'pass', 'block']);
  });

  it('ports exactly T apart are not within T; one millisecond less is', () => {
    expect(decide(2, 60 * S, (src) => hits(src(), [[1, 0], [2, 60 * S]]))).toEqual(['pass', 'pass']);
    expect(decide(2, 60 * S, (src) => hits(src(), [[1, 0], [2, 60 * S - 1]]))).toEqual(['pass', 'block']);
    expect(decide(3, 1, (src) => hits(src(), [[1, 0], [2, 0], [3, 1], [4, 1], [5, 1]]))).toEqual(['pass', 'pass', 'pass', 'pass', 'block']);
  });

  it('a source idle for T starts afresh; idle for T - 1 ms it keeps its ports', () => {
    // Expired at 70 s (newest hit 10 s, 60 s before): 3 and 4 alone are two ports.
    expect(decide(3, 60 * S, (src) => hits(src(), [[1, 0], [2, 10 * S], [3, 70 * S], [4, 71 * S], [5, 72 * S]]))).toEqual([
      'pass', 'pass', 'pass', 'pass', 'block',
    ]);
    // Not expired at 69.999 s: 2 @ 10 s is still kept; with 3 and 4 at 69.999 s it is within T.
    expect(decide(3, 60 * S, (src) => hits(src(), [[1, 0], [2, 10 * S], [3, 70 * S - 1], [4, 70 * S - 1]]))).toEqual(['pass', 'pass', 'pass', 'block']);
  });

  it('N = 1: the first SYN crosses', () => {
    expect(decide(1, 60 * S, (src) => hits(src(), [[443, 0], [443, 1]]))).toEqual(['block', 'drop']);
  });

  it('N = 64: the 64th distinct port within T crosses; 63 ports hammered on do not', () => {
    const ports = Array.from({ length: 64 }, (_, i) => 1000 + i * 7);
    expect(decide(64, 60 * S, (src) => hits(src(), ports.map((p, i) => [p, i * 100])))).toEqual([...Array(63).fill('pass'), 'block']);
    const hammer: [number, number][] = [];
    for (let round = 0; round < 3; round++) for (const [i, p] of ports.slice(0, 63).entries()) hammer.push([p, round * 10 * S + i]);
    expect(decide(64, 60 * S, (src) => hits(src(), hammer))).toEqual(Array(189).fill('pass'));
  });

  it('N = 64: the oldest of 64 kept ports, refreshed, brings them within T (port 0 and 65535 among them)', () => {
    const ports = [0, 65535, ...Array.from({ length: 62 }, (_, i) => 2 + i)];
    const list: [number, number][] = [[ports[0]!, 0], ...ports.slice(1).map((p, i): [number, number] => [p, 61 * S + i])];
    expect(decide(64, 60 * S, (src) => hits(src(), [...list, [0, 62 * S]]))).toEqual([...Array(64).fill('pass'), 'block']);
  });

  it('a new port replaces the oldest once N are kept', () => {
    // 1 2 3 span 61 s; 4 replaces 1 (2 3 4: 61 s); 5 replaces 2 (3 4 5: 31 s).
    expect(decide(3, 60 * S, (src) => hits(src(), [[1, 0], [2, 30 * S], [3, 61 * S], [4, 91 * S], [5, 92 * S]]))).toEqual([
      'pass', 'pass', 'pass', 'pass', 'block',
    ]);
  });

  it('N ports within T in reverse order are detected at the SYN that completes them', () => {
    expect(decide(3, 60 * S, (src) => hits(src(), [[3, 20 * S], [2, 10 * S], [1, 0]]))).toEqual(['pass', 'pass', 'block']);
  });

  it('a late SYN: ignored when T older than the clock for a new source; on a repeated port it never moves the time back', () => {
    expect(
      decide(2, 60 * S, (src) => {
        const mover = src();
        const late = src();
        // The clock moves to 100 s; a SYN stamped 40 s is expired on arrival and starts nothing.
        return [...hits(mover, [[9, 100 * S]]), ...hits(late, [[1, 40 * S], [2, 100 * S]])];
      }),
    ).toEqual(['pass', 'pass', 'pass']);
    // 1 stays at 50 s (not 20 s), so 2 @ 105 s is 55 s after it: within T.
    expect(decide(2, 60 * S, (src) => hits(src(), [[1, 50 * S], [1, 20 * S], [2, 105 * S]]))).toEqual(['pass', 'pass', 'block']);
  });

  it('sources are counted apart, and an IPv6 source like an IPv4 one', () => {
    expect(
      decide(3, 60 * S, (src) => {
        const [a, b] = [src(), src()];
        return [...hits(a, [[1, 0], [2, 1]]), ...hits(b, [[3, 2], [4, 3]]), ...hits(a, [[2, 4]]), ...hits(b, [[5, 5]])];
      }),
    ).toEqual(['pass', 'pass', 'pass', 'pass', 'pass', 'block']);
    expect(decide(3, 60 * S, () => hits(newSource('v6'), [[1, 0], [2, 1], [3, 2], [4, 3]]))).toEqual(['pass', 'pass', 'block', 'drop']);
  });

  it('an allowlisted source is never blocked, however many ports it hits', () => {
    expect(decide(3, 60 * S, () => hits(newSource('allowed'), Array.from({ length: 10 }, (_, i): [number, number] => [i + 1, i])))).toEqual(Array(10).fill('pass'));
  });
});

/**
 * A generated sequence: one to three sources interleaved, ports from a pool
 * a little larger than N (so that ports repeat), and steps in time chosen
 * to land on the rule's edges (same millisecond, T - 1, T, T + 1, whole
 * windows of idleness); some sequences have late SYNs (up to 1.5 T before
 * the newest). Allowlisted sources are only in sequences without late SYNs:
 * the engines' clocks differ in scope (docs/detection.md), which only late
 * SYNs can show.
 */
function generate(rand: () => number, rule: Rule, startMs: number): { syns: Syn[]; late: number } {
  const { n, windowMs: t } = rule;
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const lateSyns = rand() < 0.4;
  const sources = Array.from({ length: int(1, 3) }, () => {
    const r = rand();
    return newSource(!lateSyns && r < 0.1 ? 'allowed' : r < 0.3 ? 'v6' : 'v4');
  });
  const pool = Array.from({ length: n + int(0, n + 2) }, () => (rand() < 0.05 ? pick([0, 65535]) : int(1, 65534)));
  const length = int(1, 2 * n + 10);
  const syns: Syn[] = [];
  let newest = startMs;
  let late = 0;
  for (let i = 0; i < length; i++) {
    const r = rand();
    let ms: number;
    if (lateSyns && r < 0.12) {
      ms = Math.max(1, newest - int(0, Math.ceil(1.5 * t)));
      if (ms < newest) late++;
    } else {
      const step =
        r < 0.3 ? 0 : r < 0.65 ? int(1, Math.max(1, Math.floor(t / n))) : r < 0.8 ? int(0, t) : r < 0.92 ? pick([t - 1, t, t + 1]) : int(t, 3 * t);
      ms = newest + Math.max(0, step);
      newest = ms;
    }
    const recent = syns.length > 0 && rand() < 0.3 ? syns[syns.length - 1 - Math.floor(rand() * Math.min(syns.length, n))]! : undefined;
    syns.push({ src: pick(sources), port: recent ? recent.port : pick(pool), ms });
  }
  return { syns, late };
}

const GENERATED_RULES: Rule[] = [1, 2, 3, 5, 8, 16, 64].flatMap((n) => [1, 500, 60_000].map((windowMs) => ({ n, windowMs })));
const SEQUENCES_PER_RULE = 200;
const SEED = 0x5ca9;

describe('generated sequences on the test clock', () => {
  it(`${GENERATED_RULES.length * SEQUENCES_PER_RULE} sequences over ${GENERATED_RULES.length} rules (N 1 to 64, T 1 ms to 60 s): the same decision at every SYN`, () => {
    const rand = prng(SEED);
    const totals = { sequences: 0, syns: 0, late: 0, blocks: 0, drops: 0, sequencesWithBlock: 0 };
    const mismatches: string[] = [];
    for (const rule of GENERATED_RULES) {
      const pair = new Pair(rule);
      try {
        for (let k = 0; k < SEQUENCES_PER_RULE; k++) {
          const { syns, late } = generate(rand, rule, epochMs);
          epochMs = Math.max(...syns.map((s) => s.ms)) + 3 * rule.windowMs + 1;
          const { kernel, policy } = pair.run(syns);
          const at = kernel.findIndex((d, i) => d !== policy[i]);
          if (at >= 0 && mismatches.length < 5) {
            mismatches.push(
              `N=${rule.n} T=${rule.windowMs}ms sequence ${k}, SYN ${at}: kernel ${kernel[at]}, policy ${policy[at]}; ` +
                JSON.stringify(syns.slice(0, at + 1).map((s) => [s.src, s.port, s.ms])),
            );
          }
          totals.sequences++;
          totals.syns += syns.length;
          totals.late += late;
          totals.blocks += policy.filter((d) => d === 'block').length;
          totals.drops += policy.filter((d) => d === 'drop').length;
          if (policy.includes('block')) totals.sequencesWithBlock++;
        }
      } finally {
        pair.close();
      }
    }
    expect(mismatches).toEqual([]);
    console.log(`differential, test clock: ${JSON.stringify(totals)}`);
    // The corpus itself, pinned (the seed makes it the same on every run).
    expect(totals).toEqual({ sequences: 4200, syns: 82_206, late: 3345, blocks: 1764, drops: 5065, sequencesWithBlock: 1205 });
  });
});

/** Closed mode's declared open ports in these tests: a SYN to one of them is open whatever listens. */
const DECLARED_OPEN: [number, number][] = [[100, 199]];
const CLOSED_RULES: Rule[] = [2, 3, 16, 64].flatMap((n) => [500, 60_000].map((windowMs) => ({ n, windowMs, openPorts: DECLARED_OPEN })));
const CLOSED_SEQUENCES_PER_RULE = 150;

describe('closed mode (PW_PORTSCAN_COUNT=closed): the policy counts what the kernel counts, by the port state of its events', () => {
  it('N = 3: open ports between the closed ones count for neither engine; the third closed port crosses', () => {
    const pair = new Pair({ n: 3, windowMs: 60_000, openPorts: DECLARED_OPEN });
    try {
      const src = newSource('v4');
      const syns = hits(src, [[100, 0], [1, 1], [101, 2], [2, 3], [102, 4], [103, 5], [3, 6], [104, 7]]).map((x) => ({ ...x, ms: x.ms + epochMs }));
      epochMs += 10 * 60_000;
      const { kernel, policy, open } = pair.run(syns);
      expect(kernel).toEqual(policy);
      expect(kernel).toEqual(['pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'block', 'drop']);
      expect(open).toBe(4);
    } finally {
      pair.close();
    }
  });

  it(`${CLOSED_RULES.length * CLOSED_SEQUENCES_PER_RULE} generated sequences, about half their SYNs to declared open ports: the same decision at every SYN`, () => {
    const rand = prng(SEED + 1);
    const totals = { syns: 0, open: 0, blocks: 0 };
    const mismatches: string[] = [];
    for (const rule of CLOSED_RULES) {
      const pair = new Pair(rule);
      try {
        for (let k = 0; k < CLOSED_SEQUENCES_PER_RULE; k++) {
          const { syns: generated } = generate(rand, rule, epochMs);
          // Half the pool's ports moved into the declared range.
          const syns = generated.map((x) => (x.port % 2 === 0 ? { ...x, port: 100 + (x.port % 100) } : x));
          epochMs = Math.max(...syns.map((x) => x.ms)) + 3 * rule.windowMs + 1;
          const { kernel, policy, open } = pair.run(syns);
          const at = kernel.findIndex((d, i) => d !== policy[i]);
          if (at >= 0 && mismatches.length < 5) {
            mismatches.push(`N=${rule.n} T=${rule.windowMs}ms sequence ${k}, SYN ${at}: kernel ${kernel[at]}, policy ${policy[at]}; ${JSON.stringify(syns.slice(0, at + 1).map((x) => [x.src, x.port, x.ms]))}`);
          }
          totals.syns += syns.length;
          totals.open += open;
          totals.blocks += policy.filter((d) => d === 'block').length;
        }
      } finally {
        pair.close();
      }
    }
    expect(mismatches).toEqual([]);
    console.log(`differential, closed mode: ${JSON.stringify(totals)}`);
    // Both kinds of SYN are there, and scans are found among them.
    expect(totals.open).toBeGreaterThan(totals.syns / 4);
    expect(totals.blocks).toBeGreaterThan(50);
  });
});

describe('the deployed object on the real clock', () => {
  // The detector is fed the stamps the program gave each SYN. T is 2.5 ticks
  // of the coarse clock, whose stamps are whole ticks apart (give or take the
  // boot-time offset's few nanoseconds): no two stamps are near exactly T
  // apart, where the detector's doubles and the kernel's integers could part.
  const tickNs = clock.coarseTickNs();
  const windowNs = (tickNs * 5n) / 2n;
  const RULES = [3, 16, 64];
  const SEQUENCES = 40;

  it(`${RULES.length * SEQUENCES} sequences with pauses of up to 3 T (T = 2.5 ticks): the same decision at every SYN`, async () => {
    const rand = prng(SEED + 1);
    const totals = { sequences: 0, syns: 0, blocks: 0 };
    const mismatches: string[] = [];
    for (const n of RULES) {
      const rule = { n, windowMs: Number(windowNs) / 1e6 };
      const kernel = new KernelEngine(rule, { testClock: false, windowNs });
      const policy = new PolicyEngine(rule);
      try {
        for (let k = 0; k < SEQUENCES; k++) {
          const { syns } = generate(rand, { n, windowMs: 10 }, 0);
          const got: [Decision, Decision][] = [];
          let prevMs = 0;
          for (const s of syns) {
            // The generated steps, in units of T / 10, become real pauses.
            const pauseNs = (BigInt(s.ms - prevMs) * windowNs) / 10n;
            prevMs = Math.max(prevMs, s.ms);
            if (pauseNs > 0n) {
              const until = clock.boottimeNs() + pauseNs;
              while (clock.boottimeNs() < until) await new Promise((r) => setTimeout(r, 1));
            }
            const k = kernel.syn(s.src, s.port);
            const p = policy.syn(s.src, s.port, k.tsNs === undefined ? undefined : Number(k.tsNs) / 1e6);
            got.push([k.decision, p]);
          }
          const at = got.findIndex(([a, b]) => a !== b);
          if (at >= 0 && mismatches.length < 5) mismatches.push(`N=${n} sequence ${k}, SYN ${at}: ${JSON.stringify(got.slice(0, at + 1))}`);
          totals.sequences++;
          totals.syns += syns.length;
          totals.blocks += got.filter(([, p]) => p === 'block').length;
        }
      } finally {
        kernel.close();
      }
    }
    console.log(`differential, real clock: ${JSON.stringify(totals)}`);
    expect(mismatches).toEqual([]);
    expect(totals.sequences).toBe(RULES.length * SEQUENCES);
    expect(totals.blocks).toBeGreaterThan(0);
  });
});
