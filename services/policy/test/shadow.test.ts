// Shadow mode in the policy (PW_ENFORCE=False): decisions are made, applied
// to the probes (BlockIp: their programs drop nothing for them) and recorded,
// marked shadow; a restart enforcing makes the active shadow decisions blocks
// or ends them (PW_ENFORCE_SHADOW_DECISIONS). A real store, a real gRPC
// server standing in for a probe.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createLogger, parseAddress } from '@packetwatch/common';
import { Block, BlockReason } from '@packetwatch/proto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed, type FeedEvent } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import { ProbeRegistry, type ProbeSession } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { addressKey } from '../src/sourcekey.js';
import { DecisionStore } from '../src/store.js';
import { FakeProbe } from './fake-probe.js';

const SCANNER = '192.0.2.66';
const log = createLogger('test', 'silent');

let dir: string;
let store: DecisionStore;
let recorder: Recorder;
let metrics: PolicyMetrics;
let probe: FakeProbe;
let session: ProbeSession;
let feed: FeedEvent[];

/** The policy's decisions over the store, as a start with these settings makes them. */
function start(o: { shadow: boolean; enforceShadowDecisions?: boolean }): Decisions {
  metrics = new PolicyMetrics();
  recorder = new Recorder(store, metrics, log);
  const probes = new ProbeRegistry();
  probes.add(session);
  const f = new Feed();
  f.subscribe((e) => feed.push(e));
  const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000 });
  return new Decisions({ recorder, probes, allowlist: new Allowlist([]), detector, feed: f, metrics, log, detectorTtlSeconds: 0, maxBlocksPerMinute: 0, ...o });
}

const scan = (ip: string) => {
  const now = Date.now();
  return { source: addressKey(parseAddress(ip)), port: 8088, tsMs: now, ports: [8086, 8087, 8088], firstMs: now - 2, lastMs: now };
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pw-shadow-'));
  store = DecisionStore.open(dir).store;
  probe = new FakeProbe();
  await probe.start();
  session = probe.session('test/veth0', log);
  feed = [];
});

afterEach(() => {
  session.close();
  probe.stop();
  recorder.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('shadow mode: decisions', () => {
  it('makes, applies and records a detection as enforcing does, marked shadow: the feed says so, the shadow count moves', async () => {
    const decisions = start({ shadow: true });
    await decisions.detected(scan(SCANNER), SCANNER, session);
    expect(decisions.active()).toMatchObject([{ id: 1, ip: SCANNER, origin: 'detector', shadow: true }]);
    expect(store.active(Date.now())).toEqual(decisions.active());
    // The probe gets the block: its program, in shadow mode, drops nothing for it.
    expect(probe.blocked.map((b) => b.ip)).toEqual([SCANNER]);
    expect(feed.filter((e) => e.kind === 'blacklist')).toMatchObject([{ source: SCANNER, shadow: true }]);
    expect([metrics.counts.detections, metrics.counts.shadowDecisions]).toEqual([1, 1]);
  });

  it("marks an operator's block shadow too", async () => {
    const decisions = start({ shadow: true });
    const { decision } = await decisions.manualBlock('192.0.2.9', 0, 'by hand');
    expect(decision).toMatchObject({ ip: '192.0.2.9', origin: 'manual', shadow: true });
    expect(metrics.counts.shadowDecisions).toBe(1);
  });

  it('enforcing, marks nothing shadow', async () => {
    const decisions = start({ shadow: false });
    await decisions.detected(scan(SCANNER), SCANNER, session);
    expect(decisions.active()).toMatchObject([{ shadow: false }]);
    expect(feed.filter((e) => e.kind === 'blacklist')).toMatchObject([{ shadow: false }]);
    expect(metrics.counts.shadowDecisions).toBe(0);
  });
});

describe('shadow mode: a start enforcing', () => {
  /** A shadow decision on SCANNER and an enforcing one made earlier, in the store; the first run's recorder closed. */
  const shadowRun = async () => {
    const enforcing = start({ shadow: false });
    await enforcing.manualBlock('192.0.2.1', 0, 'before shadow mode');
    recorder.close();
    const shadow = start({ shadow: true });
    await shadow.detected(scan(SCANNER), SCANNER, session);
    recorder.close();
    return store.active(Date.now());
  };

  it('makes the active shadow decisions blocks by default: the same decisions, the mark cleared in memory and in the store', async () => {
    const before = await shadowRun();
    expect(before.map((d) => [d.ip, d.shadow])).toEqual([
      ['192.0.2.1', false],
      [SCANNER, true],
    ]);
    const decisions = start({ shadow: false });
    const after = before.map((d) => ({ ...d, shadow: false }));
    expect(decisions.active()).toEqual(after);
    expect(store.active(Date.now())).toEqual(after);
    expect(decisions.isBlocked(SCANNER)).toBe(true);
  });

  it('ends them with PW_ENFORCE_SHADOW_DECISIONS=False, and only them, and a reconcile lifts their kernel blocks', async () => {
    const before = await shadowRun();
    const decisions = start({ shadow: false, enforceShadowDecisions: false });
    expect(decisions.active()).toEqual([before[0]]);
    const ended = store.all().find((d) => d.ip === SCANNER)!;
    expect(ended).toMatchObject({ shadow: true });
    expect(ended.endedMs).toBeDefined();
    // The probe's kernel holds both blocks (BlockIp in both runs): the ended one is lifted, not adopted.
    probe.blocks = before.map((d) => Block.fromPartial({ ip: d.ip, reason: BlockReason.BLOCK_REASON_PORTSCAN, created: new Date(d.createdMs) }));
    await decisions.reconcile(session);
    // The lift is a call the reconcile does not wait for.
    for (const deadline = Date.now() + 5000; probe.unblocked.length === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    expect(probe.unblocked).toEqual([SCANNER]);
    expect(decisions.active()).toEqual([before[0]]);
  });

  it('leaves shadow decisions shadow while it runs in shadow mode', async () => {
    const before = await shadowRun();
    expect(start({ shadow: true }).active()).toEqual(before);
  });
});

describe('shadow mode: the store', () => {
  it('opens a store of schema 1 (no shadow column): every decision in it was enforcing, and the store is schema 2', () => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'pw-shadow-'));
    const old = new Database(join(dir, 'decisions.db'));
    old.exec(`CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, ip TEXT NOT NULL, reason TEXT NOT NULL,
      origin TEXT NOT NULL CHECK (origin IN ('detector', 'manual', 'kernel')), created_ms INTEGER NOT NULL, expires_ms INTEGER, ended_ms INTEGER);
      INSERT INTO decisions (ip, reason, origin, created_ms) VALUES ('192.0.2.7', 'scanned', 'detector', 1000);
      PRAGMA user_version = 1;`);
    old.close();
    store = DecisionStore.open(dir).store;
    expect(store.all()).toEqual([{ id: 1, ip: '192.0.2.7', reason: 'scanned', origin: 'detector', createdMs: 1000, expiresMs: undefined, endedMs: undefined, shadow: false }]);
    recorder = new Recorder(store, new PolicyMetrics(), log);
    const check = new Database(join(dir, 'decisions.db'), { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(2);
    check.close();
  });
});
