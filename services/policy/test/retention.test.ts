// Retention (PW_DECISION_RETENTION): ended and expired decisions older
// than it are pruned, except what reconcile still needs to keep an unblock
// in force. The reconcile cases play the probe that was away for longer
// than the retention and comes back still holding a block an operator
// ended: it must be lifted, not adopted.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@packetwatch/common';
import { BlockReason } from '@packetwatch/proto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import { ProbeRegistry } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { PRUNE_BATCH, Retention } from '../src/retention.js';
import { type DecisionRecord, DecisionStore, type Origin } from '../src/store.js';
import { appendDecision } from './records.js';
import { FakeProbe } from './fake-probe.js';

const DAY = 86_400_000;
const RETENTION_S = 30 * 86_400;
const log = createLogger('test', 'silent');

let dir: string;
let store: DecisionStore;
let metrics: PolicyMetrics;
/** "Now" of each test: the prune's clock, and the age every record is given from. */
let now: number;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pw-retention-'));
  store = DecisionStore.open(dir).store;
  metrics = new PolicyMetrics();
  now = Date.now();
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A decision created `ageDays` ago, lasting `ttlDays` (undefined: permanent), ended `endedDaysAgo` ago if given. */
function decision(ip: string, o: { ageDays: number; ttlDays?: number; endedDaysAgo?: number; origin?: Origin }): DecisionRecord {
  const createdMs = now - o.ageDays * DAY;
  const d = appendDecision(store, { ip, reason: 'test', origin: o.origin ?? 'detector', createdMs, expiresMs: o.ttlDays === undefined ? undefined : createdMs + o.ttlDays * DAY });
  if (o.endedDaysAgo === undefined) return d;
  store.end(d.id, now - o.endedDaysAgo * DAY);
  return { ...d, endedMs: Math.round(now - o.endedDaysAgo * DAY) };
}

const ids = () => store.page(0, 1_000_000).map((d) => d.id);
const prune = (retentionSeconds = RETENTION_S) => new Retention(store, retentionSeconds, metrics, log).prune(now);

describe('retention: what goes', () => {
  it('prunes a decision that expired longer ago than the retention, and counts it', async () => {
    decision('192.0.2.1', { ageDays: 100, ttlDays: 1 });
    const recent = decision('192.0.2.2', { ageDays: 20, ttlDays: 1 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 1, left: [recent.id] });
    expect(metrics.counts.decisionsPruned).toBe(1);
  });

  it('prunes an ended decision whose block has expired everywhere: its own expiry is past the retention too', async () => {
    decision('192.0.2.1', { ageDays: 100, ttlDays: 10, endedDaysAgo: 95 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 1, left: [] });
    expect(store.lastEnded('192.0.2.1')).toBeUndefined();
  });

  it('keeps active decisions of any age, permanent or not yet expired', async () => {
    const permanent = decision('192.0.2.1', { ageDays: 1000 });
    const long = decision('192.0.2.2', { ageDays: 1000, ttlDays: 2000 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 0, left: [permanent.id, long.id] });
  });

  it('keeps what ended or expired within the retention', async () => {
    const a = decision('192.0.2.1', { ageDays: 40, ttlDays: 11 }); // expired 29 days ago
    const b = decision('192.0.2.2', { ageDays: 40, ttlDays: 5, endedDaysAgo: 29 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 0, left: [a.id, b.id] });
  });

  it('keeps everything with a retention of 0', async () => {
    decision('192.0.2.1', { ageDays: 4000, ttlDays: 1 });
    decision('192.0.2.2', { ageDays: 4000, ttlDays: 1, endedDaysAgo: 3999 });
    expect(await prune(0)).toBe(0);
    expect(ids()).toHaveLength(2);
    expect(metrics.counts.decisionsPruned).toBe(0);
  });

  it(`prunes a long history in batches of ${PRUNE_BATCH}, all of it`, async () => {
    const keep = decision('198.51.100.1', { ageDays: 1 });
    for (let i = 0; i < 2 * PRUNE_BATCH + 500; i++) decision(`2001:db8::${i.toString(16)}`, { ageDays: 100, ttlDays: 1 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 2 * PRUNE_BATCH + 500, left: [keep.id] });
    expect(metrics.counts.decisionsPruned).toBe(2 * PRUNE_BATCH + 500);
  });

  it('prunes at start, through start()', async () => {
    decision('192.0.2.1', { ageDays: 100, ttlDays: 1 });
    const stop = new Retention(store, RETENTION_S, metrics, log).start();
    try {
      // The first batch runs before start() returns.
      expect(ids()).toEqual([]);
      expect(metrics.counts.decisionsPruned).toBe(1);
    } finally {
      stop();
    }
  });
});

describe('retention: what stays, so that an unblock stays in force', () => {
  it('keeps an address’s latest ended decision when it was permanent, and prunes the older ones', async () => {
    decision('192.0.2.1', { ageDays: 400, endedDaysAgo: 390 });
    const latest = decision('192.0.2.1', { ageDays: 380, endedDaysAgo: 370 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 1, left: [latest.id] });
    expect(store.lastEnded('192.0.2.1')).toEqual({ ...latest, endedMs: Math.round(now - 370 * DAY) });
  });

  it('keeps an ended decision whose block may outlive the retention, and the address’s latest end with it', async () => {
    // Ended early, but its block (on a probe that missed the unblock) lasts a year.
    const long = decision('192.0.2.1', { ageDays: 100, ttlDays: 365, endedDaysAgo: 99 });
    const short = decision('192.0.2.1', { ageDays: 90, ttlDays: 1, endedDaysAgo: 89.5 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 0, left: [long.id, short.id] });
    expect(store.lastEnded('192.0.2.1')?.id).toBe(short.id);
  });

  it('keeps the latest permanent end as well as the latest end, so a later short block cannot let the permanent one back', async () => {
    // Permanent block P ended; later a one-day block S, ended too; both long ago.
    decision('192.0.2.1', { ageDays: 500, endedDaysAgo: 490 });
    const p2 = decision('192.0.2.1', { ageDays: 480, endedDaysAgo: 470 });
    const s = decision('192.0.2.1', { ageDays: 300, ttlDays: 1, endedDaysAgo: 299.9 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 1, left: [p2.id, s.id] });
    // Another pass, a year on: still both.
    now += 365 * DAY;
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 0, left: [p2.id, s.id] });
    expect(store.lastEnded('192.0.2.1')?.id).toBe(s.id);
  });

  it('lets the last row of an address go once none of its blocks can remain', async () => {
    decision('192.0.2.1', { ageDays: 200, ttlDays: 30, endedDaysAgo: 190 });
    decision('192.0.2.1', { ageDays: 150, ttlDays: 1, endedDaysAgo: 149.5 });
    expect({ pruned: await prune(), left: ids() }).toEqual({ pruned: 2, left: [] });
  });
});

describe('retention and reconcile: a probe back after longer than the retention', () => {
  const probe = new FakeProbe();
  beforeAll(() => probe.start());
  afterAll(() => probe.stop());

  function decisions(): Decisions {
    return new Decisions({
      recorder: new Recorder(store, metrics, log),
      probes: new ProbeRegistry(),
      allowlist: new Allowlist([]),
      detector: new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000 }),
      feed: new Feed(),
      metrics,
      log,
      detectorTtlSeconds: 0,
      maxBlocksPerMinute: 120,
    });
  }

  it('lifts a permanent kernel block an operator ended a year ago, after pruning, rather than adopting it', async () => {
    // Blocked permanently 400 days ago, on a probe that then went away; unblocked 365 days ago.
    const d = decision('192.0.2.66', { ageDays: 400, endedDaysAgo: 365 });
    // Older history of the same address, pruned.
    decision('192.0.2.66', { ageDays: 500, ttlDays: 1, endedDaysAgo: 499.5 });
    expect(await prune()).toBe(1);
    probe.blocks = [{ ip: '192.0.2.66', reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(d.createdMs), expires: undefined, expired: false }];
    probe.unblocked.length = 0;
    const s = probe.session();
    try {
      const dec = decisions();
      expect(await dec.reconcile(s)).toBe(1);
      await expect.poll(() => probe.unblocked).toEqual(['192.0.2.66']);
      expect(metrics.counts.kernelBlocksAdopted).toBe(0);
      expect(dec.active()).toEqual([]);
    } finally {
      s.close();
    }
  });

  it('adopts a block made after the last end, as before retention', async () => {
    decision('192.0.2.67', { ageDays: 400, endedDaysAgo: 365 });
    probe.blocks = [{ ip: '192.0.2.67', reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(now - 10 * DAY), expires: undefined, expired: false }];
    probe.unblocked.length = 0;
    const s = probe.session();
    try {
      const dec = decisions();
      expect(await dec.reconcile(s)).toBe(1);
      expect(metrics.counts.kernelBlocksAdopted).toBe(1);
      expect(dec.active().map((x) => [x.ip, x.origin])).toEqual([['192.0.2.67', 'kernel']]);
      expect(probe.unblocked).toEqual([]);
    } finally {
      s.close();
    }
  });
});
