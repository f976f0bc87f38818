// Escalation and evidence where decisions are made (decisions.ts): the TTL
// of a repeat offence, on a probe's BlockIp (a real gRPC server standing in
// for the probe) and in the store; the offence count across a restart; the
// evidence kept with each decision, bounded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAddress } from '@packetwatch/common';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { EVIDENCE_PROBES } from '../src/evidence.js';
import { Feed } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import { ProbeRegistry, type ProbeSession } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { SourceKeys, addressKey } from '../src/sourcekey.js';
import { DecisionStore } from '../src/store.js';
import { FakeProbe } from './fake-probe.js';
import { captureLog } from './store-faults.js';

const SCANNER = '192.0.2.66';
const KEY = addressKey(parseAddress(SCANNER));

let dir: string;
let store: DecisionStore;
let recorder: Recorder;
let probe: FakeProbe;
let session: ProbeSession;
let feed: Feed;
let probes: ProbeRegistry;

function makeDecisions(portThreshold = 3): Decisions {
  const { log } = captureLog();
  const metrics = new PolicyMetrics();
  const detector = new Detector({ portThreshold, windowSeconds: 60, maxSources: 1000 });
  return new Decisions({
    recorder,
    probes,
    allowlist: new Allowlist([]),
    detector,
    feed,
    metrics,
    log,
    keys: new SourceKeys(),
    detectorTtlSeconds: 60,
    ttlFactor: 2,
    ttlMaxSeconds: 300,
    maxBlocksPerMinute: 0,
    rule: { portThreshold, windowSeconds: 60, fleetThreshold: 0 },
  });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pw-escalation-'));
  store = DecisionStore.open(dir).store;
  recorder = new Recorder(store, new PolicyMetrics(), captureLog().log);
  probe = new FakeProbe();
  await probe.start();
  probes = new ProbeRegistry();
  session = probe.session('test/veth0');
  probes.add(session);
  feed = new Feed();
});

afterEach(() => {
  session.close();
  probe.stop();
  recorder.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The source's probes on the feed (as the pipeline publishes them) and the detector's verdict on them. */
function scan(ports: number[], kinds: { kind: number; flags: number; portState?: number }[] = []) {
  const now = Date.now();
  const addr = Buffer.alloc(16);
  parseAddress(SCANNER).copy(addr);
  const times = ports.map((_, i) => now - (ports.length - 1 - i));
  ports.forEach((port, i) => feed.publishConnection(times[i]!, addr, 0, port, 'test/veth0', kinds[i]?.kind ?? 0, kinds[i]?.flags ?? 0, kinds[i]?.portState ?? 0));
  return { source: KEY, port: ports[ports.length - 1]!, tsMs: now, ports, firstMs: times[0]!, lastMs: now };
}

/** Ends the source's active decision as its expiry would: lapsed, not ended. */
function lapse(d: Decisions): void {
  const [active] = d.active();
  // Its expiry a second ago, written by a second connection to the store (WAL: the policy's sees it at once).
  const db = new Database(join(dir, 'decisions.db'));
  db.prepare('UPDATE decisions SET expires_ms = ? WHERE id = ?').run(Date.now() - 1000, active!.id);
  db.close();
}

describe('escalating blocks in the decisions', () => {
  it('blocks a repeat offender for the previous TTL times the factor, up to the maximum, across a restart', async () => {
    const ttls: number[] = [];
    const offences: (number | undefined)[] = [];
    for (let round = 0; round < 4; round++) {
      // Each round is a restart: a policy opening the same store.
      recorder.close();
      store.close();
      store = DecisionStore.open(dir).store;
      recorder = new Recorder(store, new PolicyMetrics(), captureLog().log);
      const d = makeDecisions();
      await d.detected(scan([8086, 8087, 8088]), SCANNER, session);
      const [active] = d.active();
      offences.push(active!.offence);
      ttls.push(Math.round((active!.expiresMs! - active!.createdMs) / 1000));
      lapse(d);
    }
    expect(offences).toEqual([1, 2, 3, 4]);
    expect(ttls).toEqual([60, 120, 240, 300]);
    expect(probe.blockTtls).toEqual([60, 120, 240, 300]);
  });

  it("writes an escalated block again on the probe whose kernel made it (the kernel's is PW_BLOCK_TTL)", async () => {
    const d = makeDecisions();
    await d.detected(scan([1, 2, 3]), SCANNER, session, 'blocked');
    // Offence 1: the kernel's block stands as it made it.
    expect(probe.blockTtls).toEqual([]);
    lapse(d);
    const again = makeDecisions();
    await again.detected(scan([4, 5, 6]), SCANNER, session, 'blocked');
    expect(probe.blockTtls).toEqual([120]);
    expect(again.active()[0]!.offence).toBe(2);
  });

  it('escalates a fleet detection the same way, and keeps its pairs by probe', async () => {
    const d = makeDecisions();
    await d.detected(scan([1, 2, 3]), SCANNER, session);
    lapse(d);
    const again = makeDecisions();
    const probe = session.number;
    const det = { ...scan([7, 8]), pairs: [{ probe, port: 7 }, { probe, port: 8 }] };
    await again.detected(det, SCANNER, session);
    expect(again.active()[0]).toMatchObject({ offence: 2, expiresMs: again.active()[0]!.createdMs + 120_000 });
    expect(store.latestOn(SCANNER)!.evidence).toMatchObject({ engine: 'fleet', offence: 2, ttlSeconds: 120, probes: [{ port: 7, probeId: 'test/veth0', kind: 'SYN' }, { port: 8, probeId: 'test/veth0', kind: 'SYN' }] });
  });

  it('starts over after an operator ended the block, and counts no offence for an operator block', async () => {
    const d = makeDecisions();
    await d.detected(scan([1, 2, 3]), SCANNER, session);
    await d.unblock(SCANNER);
    await d.detected(scan([4, 5, 6]), SCANNER, session);
    expect(d.active()[0]!.offence).toBe(1);
    await d.unblock(SCANNER);
    const { decision } = await d.manualBlock(SCANNER, 10, 'by hand');
    expect(decision.offence).toBeUndefined();
    expect(store.latestOn(SCANNER)?.evidence).toMatchObject({ engine: 'operator', offence: 0, ttlSeconds: 10, probes: [] });
  });
});

describe('evidence kept with a decision', () => {
  it('holds each counted probe: time, port, kind, probe, address, the engine and the rule', async () => {
    const d = makeDecisions();
    const det = scan([22, 80, 443], [{ kind: 0, flags: 0x02 }, { kind: 1, flags: 0x01 }, { kind: 1, flags: 0x29 }]);
    await d.detected(det, SCANNER, session, 'blocked');
    const ev = store.latestOn(SCANNER)!.evidence!;
    expect(ev).toEqual({
      engine: 'kernel',
      portThreshold: 3,
      windowSeconds: 60,
      fleetThreshold: 0,
      capped: false,
      ttlSeconds: 60,
      offence: 1,
      probes: [
        { timeMs: det.firstMs, port: 22, kind: 'SYN', probeId: 'test/veth0', address: SCANNER, portState: 'unknown' },
        { timeMs: det.firstMs + 1, port: 80, kind: 'FIN', probeId: 'test/veth0', address: SCANNER, portState: 'unknown' },
        { timeMs: det.lastMs, port: 443, kind: 'XMAS', probeId: 'test/veth0', address: SCANNER, portState: 'unknown' },
      ],
    });
    // Not in memory with the active decision.
    expect(d.active()[0]!.evidence).toBeUndefined();
  });

  it('says the port state the kernel gave each probe in closed mode, and leaves open ports out of a kernel detection', async () => {
    const d = makeDecisions();
    // The kernel's detection: the policy saw the crossing probe only; the feed holds an open port's SYN between the closed ones.
    const det = scan([22, 8086, 80, 443], [{ kind: 0, flags: 0x02, portState: 1 }, { kind: 0, flags: 0x02, portState: 2 }, { kind: 0, flags: 0x02, portState: 1 }, { kind: 1, flags: 0x01 }]);
    await d.detected({ ...det, ports: [443], firstMs: det.tsMs }, SCANNER, session, 'blocked');
    expect(store.latestOn(SCANNER)!.evidence!.probes.map((p) => [p.port, p.kind, p.portState])).toEqual([
      [22, 'SYN', 'closed'],
      [80, 'SYN', 'closed'],
      [443, 'FIN', 'unknown'],
    ]);
  });

  it(`keeps the last ${EVIDENCE_PROBES} probes of a longer rule`, async () => {
    const d = makeDecisions(40);
    const ports = Array.from({ length: 40 }, (_, i) => 1000 + i);
    await d.detected(scan(ports), SCANNER, session);
    const ev = store.latestOn(SCANNER)!.evidence!;
    expect(ev.engine).toBe('policy');
    expect(ev.probes.map((p) => p.port)).toEqual(ports.slice(-EVIDENCE_PROBES));
  });

  it('keeps a probe the feed no longer holds by its port alone', async () => {
    const d = makeDecisions();
    const now = Date.now();
    await d.detected({ source: KEY, port: 3, tsMs: now, ports: [1, 2, 3], firstMs: now - 2, lastMs: now }, SCANNER, session);
    expect(store.latestOn(SCANNER)!.evidence!.probes).toEqual(
      [1, 2, 3].map((port) => ({ timeMs: undefined, port, kind: 'unknown', probeId: '', address: '', portState: 'unknown' })),
    );
  });
});
