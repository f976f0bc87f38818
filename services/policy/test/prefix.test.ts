// Sources by prefix (PW_IPV6_PREFIX, PW_IPV4_PREFIX) through the policy:
// the pipeline keys the detector (per-host and fleet rule) by the source's
// prefix, decisions are on the prefix as formatSource writes it and BlockIp
// carries it, the allowlist and the probes' own addresses go by the address
// itself, operators name a source by an address or a prefix, and decisions
// and kernel views written under other lengths are brought to today's.
import { GrpcStatus, type SourcePrefixes, WHOLE_ADDRESSES, parsePrefix } from '@packetwatch/common';
import { BlockReason, EventBatch } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import type { PipelineContext } from '../src/pipeline.js';
import { type ProbeSession } from '../src/probes.js';
import { SourceKeys } from '../src/sourcekey.js';
import { overlaps } from '../src/service.js';
import { DecisionStore } from '../src/store.js';
import { appendDecision } from './records.js';
import { connectedProbes, runBatch, synBatch } from './pipeline-parts.js';
import { FakeProbe } from './fake-probe.js';

const PROBE_IDS = ['web1/eth0', 'web2/eth0'];
const BY_64: SourcePrefixes = { ipv6: 64, ipv4: 32 };

interface Setup {
  ctx: PipelineContext;
  sessions: ProbeSession[];
  probe: FakeProbe;
  store: DecisionStore;
  /** The policy's parts again over the same store, as a restart with other lengths makes them. */
  restart(lengths: SourcePrefixes): Decisions;
}

/** The policy's parts at N = 3 (F as given) under the given lengths, with two probes connected; closed when the test ends. */
async function policy(lengths: SourcePrefixes, o: { allow?: string[]; pairThreshold?: number; seed?: (s: DecisionStore) => void } = {}): Promise<Setup> {
  const { store, log, metrics, recorder, probe, probes, sessions } = await connectedProbes(PROBE_IDS, o.seed);
  const make = (l: SourcePrefixes) => {
    const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000, pairThreshold: o.pairThreshold ?? 0 });
    const allowlist = new Allowlist(o.allow ?? [], new SourceKeys(l));
    const feed = new Feed();
    const decisions = new Decisions({ recorder, probes, allowlist, detector, feed, metrics, log, detectorTtlSeconds: 0 });
    return { detector, decisions, allowlist, feed, metrics, log, windowSeconds: 60 };
  };
  return { ctx: make(lengths), sessions, probe, store, restart: (l) => make(l).decisions };
}

const start = Date.now() - 1000;

/** A batch of SYN records of (source, port), the i-th at start + i ms. */
const batch = (syns: [source: string, port: number, i: number][]): EventBatch => synBatch(syns, start);

const run = runBatch;

/** Three addresses of 2001:db8:1:2::/64, one new port each. */
const ROTATING: [string, number, number][] = [
  ['2001:db8:1:2::a1', 8081, 0],
  ['2001:db8:1:2::a2', 8082, 1],
  ['2001:db8:1:2::a3', 8083, 2],
];

describe('the pipeline keys sources by prefix', () => {
  it('detects three addresses of one /64 touching one port each as one scanner, decided and blocked as the /64 on every probe', async () => {
    const { ctx, sessions, probe } = await policy(BY_64);
    expect(run(ctx, sessions[0]!, batch(ROTATING))).toBe(3);
    await expect.poll(() => ctx.decisions.enforcedBy('2001:db8:1:2::/64')).toEqual(PROBE_IDS);
    expect(ctx.decisions.active()).toMatchObject([{ ip: '2001:db8:1:2::/64', origin: 'detector', reason: 'port scan: 3 ports (8081, 8082, 8083) within 0.002s' }]);
    expect(probe.blocked).toEqual(PROBE_IDS.map(() => ({ ip: '2001:db8:1:2::/64', reason: BlockReason.BLOCK_REASON_PORTSCAN })));
    // A fresh address of the /64 is blocked already: not tracked, no second decision.
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::a4', 9000, 3], ['2001:db8:1:2::a4', 9001, 4], ['2001:db8:1:2::a4', 9002, 5]]));
    expect(ctx.detector.tracked).toBe(0);
    expect(ctx.decisions.active()).toHaveLength(1);
    expect(ctx.decisions.isBlocked('2001:db8:1:2::/64')).toBe(true);
  });

  it('keeps the three addresses apart under PW_IPV6_PREFIX=128: three sources of one port each, nothing detected', async () => {
    const { ctx, sessions, probe } = await policy(WHOLE_ADDRESSES);
    expect(run(ctx, sessions[0]!, batch(ROTATING))).toBe(3);
    expect(ctx.detector.tracked).toBe(3);
    expect(ctx.decisions.active()).toEqual([]);
    expect(probe.blocked).toEqual([]);
  });

  it('keeps /64s apart: three addresses of three /64s are three sources', async () => {
    const { ctx, sessions } = await policy(BY_64);
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::1', 1, 0], ['2001:db8:1:3::1', 2, 1], ['2001:db8:1:4::1', 3, 2]]));
    expect(ctx.detector.tracked).toBe(3);
    expect(ctx.decisions.active()).toEqual([]);
  });

  it('keys IPv4 by its prefix too (PW_IPV4_PREFIX=24): a decision on the /24', async () => {
    const { ctx, sessions, probe } = await policy({ ipv6: 64, ipv4: 24 });
    run(ctx, sessions[0]!, batch([['198.51.100.7', 22, 0], ['198.51.100.8', 80, 1], ['198.51.100.200', 443, 2]]));
    await expect.poll(() => ctx.decisions.enforcedBy('198.51.100.0/24')).toEqual(PROBE_IDS);
    expect(probe.blocked.map((b) => b.ip)).toEqual(['198.51.100.0/24', '198.51.100.0/24']);
  });

  it('runs the fleet rule by prefix: addresses of one /64 spread over the probes are one source', async () => {
    const { ctx, sessions } = await policy(BY_64, { pairThreshold: 4 });
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::1', 80, 0], ['2001:db8:1:2::2', 443, 1]]));
    run(ctx, sessions[1]!, batch([['2001:db8:1:2::3', 80, 2], ['2001:db8:1:2::4', 443, 3]]));
    await expect.poll(() => ctx.decisions.active().map((d) => d.ip)).toEqual(['2001:db8:1:2::/64']);
    expect(ctx.decisions.active()[0]!.reason).toMatch(/^port scan across the fleet: 4 \(probe, port\) pairs on 2 probes/);
  });

  it("never blocks a prefix for an allowlisted address's own scan; another address of the prefix does, and the decision stands", async () => {
    const { ctx, sessions } = await policy(BY_64, { allow: ['2001:db8:1:2::a1'] });
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::a1', 1, 0], ['2001:db8:1:2::a1', 2, 1], ['2001:db8:1:2::a1', 3, 2], ['2001:db8:1:2::a1', 4, 3]]));
    expect(ctx.decisions.active()).toEqual([]);
    expect(ctx.detector.tracked).toBe(0);
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::a2', 1, 4], ['2001:db8:1:2::a3', 2, 5], ['2001:db8:1:2::a2', 3, 6]]));
    await expect.poll(() => ctx.decisions.active().map((d) => d.ip)).toEqual(['2001:db8:1:2::/64']);
  });

  it("shields a probe's own address on that probe, while a scan from another address of its /64 blocks the /64 on every probe, its own included", async () => {
    const { ctx, sessions, probe } = await policy(BY_64);
    ctx.allowlist.setOwn(PROBE_IDS[0]!, ['2001:db8:1:2::1']);
    // The probe's own address, on that probe: never tracked.
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::1', 1, 0], ['2001:db8:1:2::1', 2, 1], ['2001:db8:1:2::1', 3, 2]]));
    expect(ctx.detector.tracked).toBe(0);
    run(ctx, sessions[0]!, batch([['2001:db8:1:2::9', 1, 3], ['2001:db8:1:2::a', 2, 4], ['2001:db8:1:2::b', 3, 5]]));
    await expect.poll(() => ctx.decisions.enforcedBy('2001:db8:1:2::/64')).toEqual(PROBE_IDS);
    expect(probe.blocked.map((b) => b.ip)).toEqual(['2001:db8:1:2::/64', '2001:db8:1:2::/64']);
    expect(ctx.decisions.missingOn('2001:db8:1:2::/64')).toEqual([]);
  });

  it('refuses an own address of every probe named alone, and blocks the /64 holding it when the /64 is named', async () => {
    const { ctx, probe } = await policy(BY_64);
    for (const id of PROBE_IDS) ctx.allowlist.setOwn(id, ['2001:db8:1:2::1']);
    await expect(ctx.decisions.manualBlock('2001:db8:1:2::1', 0, '')).rejects.toMatchObject({
      code: GrpcStatus.FAILED_PRECONDITION,
      details: '2001:db8:1:2::1 is an own address of every connected probe (web1/eth0, web2/eth0): none would block it',
    });
    expect((await ctx.decisions.manualBlock('2001:db8:1:2::/64', 0, '')).decision.ip).toBe('2001:db8:1:2::/64');
    expect(probe.blocked.map((b) => b.ip)).toEqual(['2001:db8:1:2::/64', '2001:db8:1:2::/64']);
  });

  it("under whole addresses, still never sends a probe the block of its own address", async () => {
    const { ctx, probe } = await policy(WHOLE_ADDRESSES);
    ctx.allowlist.setOwn(PROBE_IDS[0]!, ['2001:db8:1:2::1']);
    await ctx.decisions.manualBlock('2001:db8:1:2::1', 0, '');
    expect(probe.blocked.map((b) => b.ip)).toEqual(['2001:db8:1:2::1']);
    expect(ctx.decisions.missingOn('2001:db8:1:2::1')).toEqual([]);
  });
});

describe("operators name a source by an address or a prefix", () => {
  it('blocks the /64 of an address, and of a longer prefix; the same /64 again is already blocked', async () => {
    const { ctx, probe } = await policy(BY_64);
    const first = await ctx.decisions.manualBlock('2001:DB8:1:2::7', 0, 'by hand');
    expect(first).toMatchObject({ alreadyBlocked: false, decision: { ip: '2001:db8:1:2::/64', origin: 'manual' } });
    expect(probe.blocked).toEqual(PROBE_IDS.map(() => ({ ip: '2001:db8:1:2::/64', reason: BlockReason.BLOCK_REASON_MANUAL })));
    expect((await ctx.decisions.manualBlock('2001:db8:1:2:0:1::/96', 0, '')).alreadyBlocked).toBe(true);
    expect((await ctx.decisions.manualBlock('2001:db8:1:2::/64', 0, '')).alreadyBlocked).toBe(true);
    expect(ctx.decisions.source('2001:db8:1:2:0:1::/96')).toMatchObject({ text: '2001:db8:1:2::/64', widened: true, address: undefined });
    expect(ctx.decisions.source('2001:db8:1:2::/64')).toMatchObject({ text: '2001:db8:1:2::/64', widened: false });
  });

  it('refuses a prefix shorter than the length sources are keyed by, naming it, for either family', async () => {
    const { ctx } = await policy({ ipv6: 64, ipv4: 24 });
    await expect(ctx.decisions.manualBlock('2001:db8:1::/48', 0, '')).rejects.toMatchObject({
      code: GrpcStatus.INVALID_ARGUMENT,
      details: '2001:db8:1::/48 is shorter than the /64 IPv6 sources are blocked by (PW_IPV6_PREFIX): give a /64 or longer, or an address',
    });
    await expect(ctx.decisions.manualBlock('198.51.0.0/16', 0, '')).rejects.toMatchObject({
      code: GrpcStatus.INVALID_ARGUMENT,
      details: '198.51.0.0/16 is shorter than the /24 IPv4 sources are blocked by (PW_IPV4_PREFIX): give a /24 or longer, or an address',
    });
    await expect(ctx.decisions.manualBlock('2001:db8::/129', 0, '')).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT });
    expect(ctx.decisions.active()).toEqual([]);
  });

  it('refuses an allowlisted address, and a prefix the allowlist covers whole, but blocks a prefix holding an allowlisted address', async () => {
    const { ctx, probe } = await policy(BY_64, { allow: ['2001:db8:1:2::7', '2001:db8:9::/48'] });
    await expect(ctx.decisions.manualBlock('2001:db8:1:2::7', 0, '')).rejects.toMatchObject({ code: GrpcStatus.FAILED_PRECONDITION });
    await expect(ctx.decisions.manualBlock('2001:db8:9:1::/64', 0, '')).rejects.toMatchObject({ code: GrpcStatus.FAILED_PRECONDITION });
    const { decision } = await ctx.decisions.manualBlock('2001:db8:1:2::/64', 0, '');
    expect(decision.ip).toBe('2001:db8:1:2::/64');
    expect(probe.blocked.map((b) => b.ip)).toEqual(['2001:db8:1:2::/64', '2001:db8:1:2::/64']);
  });

  it('unblocks the decision on the /64 by any address in it, on every probe, and forgets its history', async () => {
    const { ctx, sessions, probe } = await policy(BY_64);
    run(ctx, sessions[0]!, batch(ROTATING));
    await expect.poll(() => ctx.decisions.active().length).toBe(1);
    const ended = await ctx.decisions.unblock('2001:db8:1:2::ffff');
    expect(ended.map((d) => d.ip)).toEqual(['2001:db8:1:2::/64']);
    expect(probe.unblocked).toEqual(['2001:db8:1:2::/64', '2001:db8:1:2::/64']);
    expect(ctx.decisions.isBlocked('2001:db8:1:2::/64')).toBe(false);
  });
});

describe('decisions and kernel views of other lengths', () => {
  it('carries a stored decision on an address over to its /64, ends others of the same /64, and ends one on a shorter prefix', async () => {
    const now = Date.now();
    const { restart, store } = await policy(BY_64, {
      seed: (s) => {
        appendDecision(s, { ip: '2001:db8:1:2::7', reason: 'port scan: 3 ports', origin: 'detector', createdMs: now - 5000, expiresMs: now + 3_600_000 });
        appendDecision(s, { ip: '2001:db8:1:2::8', reason: 'port scan: 3 ports', origin: 'detector', createdMs: now - 4000, expiresMs: undefined });
        appendDecision(s, { ip: '2001:db8:5::/48', reason: 'by hand', origin: 'manual', createdMs: now - 3000, expiresMs: undefined });
        appendDecision(s, { ip: '192.0.2.7', reason: 'by hand', origin: 'manual', createdMs: now - 2000, expiresMs: undefined });
      },
    });
    const decisions = restart(BY_64);
    expect(decisions.active()).toMatchObject([
      { ip: '192.0.2.7', id: 4 },
      { ip: '2001:db8:1:2::/64', id: 5, origin: 'detector', reason: 'port scan: 3 ports (was on 2001:db8:1:2::7)', createdMs: now - 5000 },
    ]);
    expect(decisions.active()[1]!.expiresMs).toBeGreaterThan(now + 3_500_000);
    expect(store.active(Date.now()).map((d) => d.ip).sort()).toEqual(['192.0.2.7', '2001:db8:1:2::/64']);
  });

  it('ends a stored /64 decision when sources become whole addresses (nothing could enforce it)', async () => {
    const { restart, store } = await policy(WHOLE_ADDRESSES, {
      seed: (s) => void appendDecision(s, { ip: '2001:db8:1:2::/64', reason: 'r', origin: 'detector', createdMs: Date.now(), expiresMs: undefined }),
    });
    expect(restart(WHOLE_ADDRESSES).active()).toEqual([]);
    expect(store.active(Date.now())).toEqual([]);
  });

  it('reconciles a kernel view by source: its /64 enforces the decision; an address it lists counts as its /64; a shorter prefix is not adopted', async () => {
    const { ctx, sessions, probe } = await policy(BY_64);
    await ctx.decisions.manualBlock('2001:db8:1:2::/64', 0, '');
    probe.blocked.length = 0;
    probe.blocks = [
      { ip: '2001:db8:1:2::/64', reason: BlockReason.BLOCK_REASON_MANUAL, created: new Date(), expires: undefined, expired: false },
      { ip: '2001:db8:7:7::9', reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(), expires: undefined, expired: false },
      { ip: '2001:db8:8::/48', reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(), expires: undefined, expired: false },
    ];
    await ctx.decisions.reconcile(sessions[0]!);
    expect(ctx.decisions.active().map((d) => d.ip)).toEqual(['2001:db8:1:2::/64', '2001:db8:7:7::/64']);
    expect(ctx.metrics.counts.kernelBlocksNotAdopted).toBe(1);
    expect(probe.blocked).toEqual([]);
    expect(ctx.decisions.enforcedBy('2001:db8:1:2::/64')).toEqual(PROBE_IDS);
  });

  it('reconciles a probe again when its kernel is keyed at other lengths (it has not taken the configuration yet), and re-applies what its re-keying removed', async () => {
    const { ctx, sessions, probe } = await policy(BY_64);
    await ctx.decisions.manualBlock('2001:db8:1:2::/64', 0, '');
    probe.blocked.length = 0;
    // Still keyed by address: its listing shows an address of the /64.
    probe.blocks = [{ ip: '2001:db8:1:2::7', reason: BlockReason.BLOCK_REASON_MANUAL, created: new Date(), expires: undefined, expired: false }];
    await ctx.decisions.reconcile(sessions[0]!);
    expect(probe.listRequests).toHaveLength(1);
    // It takes the configuration: the old key is gone, and the decision is missing from its kernel.
    probe.blocks = [];
    await expect.poll(() => probe.blocked.map((b) => b.ip), { timeout: 5000 }).toEqual(['2001:db8:1:2::/64']);
    expect(probe.listRequests).toHaveLength(2);
  });
});

describe('Watch by an address or a prefix (overlaps)', () => {
  it('shows the connections of the addresses in a watched prefix, and the blocks of the prefix a watched address falls in', () => {
    const net = parsePrefix('2001:db8:1:2::/64');
    expect(overlaps(net, '2001:db8:1:2::7')).toBe(true);
    expect(overlaps(net, '2001:db8:1:3::7')).toBe(false);
    expect(overlaps(net, '2001:db8:1:2::/64')).toBe(true);
    const addr = parsePrefix('2001:db8:1:2::7');
    expect(overlaps(addr, '2001:db8:1:2::/64')).toBe(true);
    expect(overlaps(addr, '2001:db8:1:2::7')).toBe(true);
    expect(overlaps(addr, '2001:db8:1:2::8')).toBe(false);
    expect(overlaps(parsePrefix('192.0.2.7'), '192.0.2.0/24')).toBe(true);
    expect(overlaps(parsePrefix('192.0.2.7'), '192.0.2.8')).toBe(false);
    expect(overlaps(addr, 'not an address')).toBe(false);
  });
});

describe('metrics: the prefix lengths sources are counted by', () => {
  it('exports packetwatch_policy_source_prefix_length by family', async () => {
    const m = new PolicyMetrics();
    m.sourcePrefixes({ ipv6: 64, ipv4: 32 });
    const text = await m.registry.getSingleMetricAsString('packetwatch_policy_source_prefix_length');
    expect(text.split('\n').filter((l) => !l.startsWith('#'))).toEqual([
      'packetwatch_policy_source_prefix_length{family="ipv6"} 64',
      'packetwatch_policy_source_prefix_length{family="ipv4"} 32',
    ]);
  });
});
