// Enforcement does not depend on the decision store: with the store
// refusing writes for real (another connection's lock, an index page
// damaged under it), detections, operators' blocks and unblocks reach a
// probe (a real gRPC server standing in for one) and the policy's memory,
// and what could not be recorded is recorded once the store takes writes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAddress } from '@packetwatch/common';
import { BlockReason } from '@packetwatch/proto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import { ProbeRegistry, type ProbeSession } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { addressKey } from '../src/sourcekey.js';
import { DecisionStore } from '../src/store.js';
import { FakeProbe } from './fake-probe.js';
import { captureLog, damageIndexWhileOpen, holdWriteLock } from './store-faults.js';

const SCANNER = '192.0.2.66';

let dir: string;
let store: DecisionStore;
let recorder: Recorder;
let metrics: PolicyMetrics;
let probe: FakeProbe;
let session: ProbeSession;
let decisions: Decisions;
/** What the store's health was said to be, in order. */
let health: boolean[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pw-decisions-'));
  store = DecisionStore.open(dir).store;
  const { log } = captureLog();
  metrics = new PolicyMetrics();
  recorder = new Recorder(store, metrics, log);
  health = [];
  recorder.onHealth((serving) => health.push(serving));
  probe = new FakeProbe();
  await probe.start();
  const probes = new ProbeRegistry();
  session = probe.session('test/veth0', log);
  probes.add(session);
  const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000 });
  decisions = new Decisions({ recorder, probes, allowlist: new Allowlist([]), detector, feed: new Feed(), metrics, log, detectorTtlSeconds: 0, maxBlocksPerMinute: 0 });
});

afterEach(() => {
  session.close();
  probe.stop();
  recorder.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The detector's verdict on a scan of three ports. */
const scan = (ip: string) => {
  const now = Date.now();
  return { source: addressKey(parseAddress(ip)), port: 8088, tsMs: now, ports: [8086, 8087, 8088], firstMs: now - 2, lastMs: now };
};

const FAULTS = [
  { fault: 'another connection holds its write lock', code: 'SQLITE_BUSY', make: () => holdWriteLock(dir) },
  {
    fault: 'the index of open decisions is damaged',
    code: 'SQLITE_CORRUPT',
    make: () => {
      damageIndexWhileOpen(dir, 'decisions_open');
      return undefined;
    },
  },
];

describe('Decisions while the store refuses writes', () => {
  it.each(FAULTS)('a detection reaches BlockIp and the blocked set when $fault ($code)', async ({ code, make }) => {
    make();
    await decisions.detected(scan(SCANNER), SCANNER, session);
    expect(probe.blocked).toEqual([{ ip: SCANNER, reason: BlockReason.BLOCK_REASON_PORTSCAN }]);
    expect(decisions.isBlocked(SCANNER)).toBe(true);
    const [d] = decisions.active();
    expect(d).toMatchObject({ id: 1, ip: SCANNER, origin: 'detector', endedMs: undefined });
    expect(decisions.enforcedBy(SCANNER)).toEqual(['test/veth0']);
    expect(recorder.unrecorded(d!.id)).toBe(true);
    expect(recorder.state.failure).toBe(`insert: ${code === 'SQLITE_BUSY' ? 'database is locked' : 'database disk image is malformed'} (${code})`);
    expect(metrics.counts.storeErrors.insert).toBe(1);
    expect(metrics.counts.detections).toBe(1);
    expect(health).toEqual([false]);
  });

  it('records the detection once the store takes writes again, and serves again', async () => {
    const release = holdWriteLock(dir);
    await decisions.detected(scan(SCANNER), SCANNER, session);
    release();
    recorder.flush();
    expect(store.all()).toEqual(decisions.active());
    expect(recorder.unrecorded(1)).toBe(false);
    expect(health).toEqual([false, true]);
  });

  it("an operator's block reaches every probe and comes back as the decision, unrecorded", async () => {
    const release = holdWriteLock(dir);
    const { decision, alreadyBlocked } = await decisions.manualBlock('2001:db8::7', 3600, 'by hand');
    expect(probe.blocked).toEqual([{ ip: '2001:db8::7', reason: BlockReason.BLOCK_REASON_MANUAL }]);
    expect(alreadyBlocked).toBe(false);
    expect(decision).toMatchObject({ id: 1, ip: '2001:db8::7', reason: 'by hand', origin: 'manual' });
    expect(recorder.unrecorded(decision.id)).toBe(true);
    expect(decisions.isBlocked('2001:db8::7')).toBe(true);
    release();
  });

  it('an unblock reaches the probe; a reconcile before the store has the end lifts a kernel block of it again instead of adopting it', async () => {
    await decisions.detected(scan(SCANNER), SCANNER, session);
    const release = holdWriteLock(dir);
    const [ended] = await decisions.unblock(SCANNER);
    expect(probe.unblocked).toEqual([SCANNER]);
    expect(decisions.isBlocked(SCANNER)).toBe(false);
    expect(recorder.unrecorded(ended!.id)).toBe(true);
    // The kernel still holds a block made before the unblock (an UnblockIp that did not arrive).
    probe.blocks = [{ ip: SCANNER, reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(ended!.createdMs), expires: undefined, expired: false }];
    await decisions.reconcile(session);
    await expect.poll(() => probe.unblocked).toEqual([SCANNER, SCANNER]);
    expect(decisions.active()).toEqual([]);
    expect(metrics.counts.kernelBlocksAdopted).toBe(0);
    release();
    recorder.flush();
    expect(store.lastEnded(SCANNER)).toEqual(ended);
  });

  it('a reconcile that cannot read whether a kernel block was unblocked neither adopts nor lifts it, and counts the failed read', async () => {
    damageIndexWhileOpen(dir, 'decisions_ended');
    probe.blocks = [{ ip: SCANNER, reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(), expires: undefined, expired: false }];
    expect(await decisions.reconcile(session)).toBe(0);
    expect(decisions.active()).toEqual([]);
    expect(probe.unblocked).toEqual([]);
    expect(metrics.counts.kernelBlocksAdopted).toBe(0);
    expect(metrics.counts.storeErrors.read).toBe(1);
    expect(health).toEqual([false]);
  });
});

describe('the blocks-per-minute budget: how long, never whether', () => {
  /** Decisions with a budget of two blocks a minute, blocks of an hour, and 30 s beyond the budget. */
  const budgeted = () => {
    const probes = new ProbeRegistry();
    probes.add(session);
    const { log } = captureLog();
    const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000 });
    return new Decisions({
      recorder, probes, allowlist: new Allowlist([]), detector, feed: new Feed(), metrics, log,
      detectorTtlSeconds: 3600, maxBlocksPerMinute: 2, cappedTtlSeconds: 30,
    });
  };
  const ttl = (d: { createdMs: number; expiresMs: number | undefined }) => Math.round((d.expiresMs! - d.createdMs) / 1000);

  it('blocks every scanner beyond the budget, for the short TTL, and counts them', async () => {
    const decisions = budgeted();
    const ips = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'];
    for (const ip of ips) await decisions.detected(scan(ip), ip, session);
    expect(probe.blocked.map((b) => b.ip)).toEqual(ips);
    expect(decisions.active().map((d) => [d.ip, ttl(d)])).toEqual([
      ['192.0.2.1', 3600],
      ['192.0.2.2', 3600],
      ['192.0.2.3', 30],
      ['192.0.2.4', 30],
    ]);
    expect(probe.blockTtls).toEqual([3600, 3600, 30, 30]);
    expect(metrics.counts.detectionsCapped).toBe(2);
  });

  it("keeps the kernel's block as the kernel made it: a full one stands beyond the budget, a capped one is short, none is lifted", async () => {
    const decisions = budgeted();
    for (const ip of ['192.0.2.1', '192.0.2.2']) await decisions.detected(scan(ip), ip, session);
    await decisions.detected(scan('192.0.2.3'), '192.0.2.3', session, 'blocked');
    await decisions.detected(scan('192.0.2.4'), '192.0.2.4', session, 'capped');
    const byIp = Object.fromEntries(decisions.active().map((d) => [d.ip, ttl(d)]));
    expect(byIp).toEqual({ '192.0.2.1': 3600, '192.0.2.2': 3600, '192.0.2.3': 3600, '192.0.2.4': 30 });
    // The kernel held those two already: no BlockIp for them, and no UnblockIp at all.
    expect(probe.blocked.map((b) => b.ip)).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(probe.unblocked).toEqual([]);
  });
});
