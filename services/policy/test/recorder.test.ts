import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GrpcStatus } from '@packetwatch/common';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PolicyMetrics } from '../src/metrics.js';
import { RETRY_MS, Recorder, STORE_OPS, type StoreOp } from '../src/recorder.js';
import { type DecisionRecord, DecisionStore } from '../src/store.js';
import { LEVEL, type LogLine, captureLog, damageIndexWhileOpen, holdWriteLock } from './store-faults.js';

const T0 = Date.UTC(2026, 0, 1);
const BUSY = 'insert: database is locked (SQLITE_BUSY)';

let dir: string;
let store: DecisionStore;
let metrics: PolicyMetrics;
let lines: LogLine[];
let recorder: Recorder;
/** What onHealth was told, in order. */
let health: boolean[];

function start(maxHeld?: number): void {
  const captured = captureLog();
  lines = captured.lines;
  metrics = new PolicyMetrics();
  recorder = new Recorder(store, metrics, captured.log, maxHeld);
  health = [];
  recorder.onHealth((serving) => health.push(serving));
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pw-recorder-'));
  store = DecisionStore.open(dir).store;
  start();
});

afterEach(() => {
  vi.useRealTimers();
  recorder.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function decision(ip: string, o: Partial<DecisionRecord> = {}): DecisionRecord {
  return { id: recorder.newId(), ip, reason: `blocked ${ip}`, origin: 'detector', createdMs: T0, expiresMs: undefined, endedMs: undefined, shadow: false, ...o };
}

/** storeErrors with every operation, zeros included. */
const errors = (o: Partial<Record<StoreOp, number>>) => ({ ...Object.fromEntries(STORE_OPS.map((op) => [op, 0])), ...o });
const errorLines = () => lines.filter((l) => l.level === LEVEL.error).map((l) => l.msg);

describe('Recorder: a store that takes every write', () => {
  it('records at once, gives ids after the highest recorded, and stays serving', () => {
    store.insert({ id: 7, ip: '192.0.2.7', reason: 'earlier', origin: 'manual', createdMs: T0, expiresMs: undefined, endedMs: undefined, shadow: false });
    start();
    const d = decision('192.0.2.1');
    expect(d.id).toBe(8);
    recorder.insert(d);
    recorder.end({ ...d, endedMs: T0 + 5 });
    recorder.addAllow('10.0.0.0/8', 'lab', T0);
    expect(store.all().map((x) => [x.id, x.endedMs])).toEqual([
      [7, undefined],
      [8, T0 + 5],
    ]);
    expect(store.allowEntries()).toEqual([{ prefix: '10.0.0.0/8', note: 'lab', addedMs: T0 }]);
    expect(recorder.state).toEqual({ held: 0, failure: undefined });
    expect(recorder.serving).toBe(true);
    expect(health).toEqual([]);
    expect(metrics.counts.storeErrors).toEqual(errors({}));
    expect(lines).toEqual([]);
  });
});

describe('Recorder: a store that refuses writes (another connection holds its lock)', () => {
  it('holds what it refuses, counts each failed statement, says NOT serving once and logs once', () => {
    const release = holdWriteLock(dir);
    const [a, b] = [decision('192.0.2.1'), decision('192.0.2.2')];
    recorder.insert(a);
    recorder.insert(b);
    // b waits behind a; trying b's write tried a again.
    expect(recorder.state).toEqual({ held: 2, failure: BUSY });
    expect(recorder.serving).toBe(false);
    expect([recorder.unrecorded(a.id), recorder.unrecorded(b.id)]).toEqual([true, true]);
    expect(metrics.counts.storeErrors).toEqual(errors({ insert: 2 }));
    expect(health).toEqual([false]);
    expect(errorLines()).toEqual(['decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried']);
    expect(lines[0]).toMatchObject({ op: 'insert', code: 'SQLITE_BUSY', failure: BUSY });
    release();
  });

  it('records the held writes in order with the next write once the store takes them, and serves again', () => {
    const release = holdWriteLock(dir);
    const a = decision('192.0.2.1');
    recorder.insert(a);
    recorder.addAllow('10.0.0.0/8', 'lab', T0);
    recorder.end({ ...a, endedMs: T0 + 9 });
    release();
    const b = decision('192.0.2.2');
    recorder.insert(b);
    expect(store.all()).toEqual([{ ...a, endedMs: T0 + 9 }, b]);
    expect(store.allowEntries()).toEqual([{ prefix: '10.0.0.0/8', note: 'lab', addedMs: T0 }]);
    expect(recorder.state).toEqual({ held: 0, failure: undefined });
    expect(recorder.unrecorded(a.id)).toBe(false);
    expect(health).toEqual([false, true]);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [LEVEL.error, 'decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried'],
      [LEVEL.warn, 'decision store takes writes again, every held write recorded: health SERVING'],
    ]);
  });

  it('tries the held writes again every RETRY_MS when no write comes', () => {
    vi.useFakeTimers();
    const release = holdWriteLock(dir);
    const a = decision('192.0.2.1');
    recorder.insert(a);
    vi.advanceTimersByTime(RETRY_MS);
    expect(metrics.counts.storeErrors).toEqual(errors({ insert: 2 }));
    release();
    vi.advanceTimersByTime(RETRY_MS - 1);
    expect(recorder.state.held).toBe(1);
    vi.advanceTimersByTime(1);
    expect(store.all()).toEqual([a]);
    expect(recorder.state).toEqual({ held: 0, failure: undefined });
    expect(health).toEqual([false, true]);
    // Nothing held, nothing more to try.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('knows the end of a decision it holds before the store does: lastEnded answers from memory', () => {
    const ended = decision('192.0.2.1');
    recorder.insert(ended);
    const release = holdWriteLock(dir);
    const done = { ...ended, endedMs: T0 + 3 };
    recorder.end(done);
    expect(store.lastEnded('192.0.2.1')).toBeUndefined();
    expect(recorder.lastEnded('192.0.2.1')).toEqual(done);
    expect(recorder.unrecorded(ended.id)).toBe(true);
    release();
    recorder.flush();
    expect(store.lastEnded('192.0.2.1')).toEqual(done);
  });

  it('holds allowlist writes like decisions, and logs another kind of failure once more', () => {
    const release = holdWriteLock(dir);
    recorder.addAllow('10.0.0.0/8', 'lab', T0);
    recorder.removeAllow('10.0.0.0/8');
    recorder.insert(decision('192.0.2.1'));
    expect(recorder.state).toEqual({ held: 3, failure: 'allow_add: database is locked (SQLITE_BUSY)' });
    expect(metrics.counts.storeErrors).toEqual(errors({ allow_add: 3 }));
    release();
    recorder.flush();
    expect(store.allowEntries()).toEqual([]);
    expect(store.all().map((d) => d.ip)).toEqual(['192.0.2.1']);
    expect(errorLines()).toHaveLength(1);
  });

  it('holds at most maxHeld writes: beyond, a write is not kept, counted and logged once; enforcement is not its business', () => {
    start(2);
    const release = holdWriteLock(dir);
    const ds = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'].map((ip) => decision(ip));
    for (const d of ds) recorder.insert(d);
    expect(recorder.state.held).toBe(2);
    expect(metrics.counts.storeWritesDropped).toBe(2);
    expect(errorLines()).toEqual([
      'decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried',
      'decision store: as many writes held as kept at most; further ones are not kept (enforcement is unaffected)',
    ]);
    release();
    recorder.flush();
    expect(store.all()).toEqual(ds.slice(0, 2));
  });

  it('says what is lost when it stops with writes still held', () => {
    const release = holdWriteLock(dir);
    recorder.insert(decision('192.0.2.1'));
    recorder.close();
    expect(lines.at(-1)).toMatchObject({
      level: LEVEL.error,
      msg: 'stopping with writes the decision store never took: they are lost (enforcement is not: the probes keep their blocks)',
      held: 1,
      failure: BUSY,
    });
    release();
  });
});

describe('Recorder: writes that can never succeed', () => {
  it('drops a decision whose id the store holds already (counted, logged), and records the writes behind it', () => {
    const release = holdWriteLock(dir);
    const taken = decision('192.0.2.1');
    const next = decision('192.0.2.2');
    recorder.insert(taken);
    recorder.insert(next);
    release();
    // Someone else recorded a decision under that id meanwhile.
    store.insert({ ...taken, ip: '198.51.100.1' });
    recorder.flush();
    expect(store.all().map((d) => d.ip)).toEqual(['198.51.100.1', '192.0.2.2']);
    expect(recorder.state).toEqual({ held: 0, failure: undefined });
    expect(metrics.counts.storeWritesDropped).toBe(1);
    expect(lines.find((l) => l.msg === 'the decision store refused a write that cannot succeed as it is: not kept')).toMatchObject({
      op: 'insert',
      failure: 'insert: UNIQUE constraint failed: decisions.id (SQLITE_CONSTRAINT_PRIMARYKEY)',
    });
  });

  it('stays NOT serving after such a refusal until a later write succeeds', () => {
    const taken = decision('192.0.2.1');
    store.insert(taken);
    recorder.insert(taken);
    expect(recorder.state).toEqual({ held: 0, failure: 'insert: UNIQUE constraint failed: decisions.id (SQLITE_CONSTRAINT_PRIMARYKEY)' });
    expect(health).toEqual([false]);
    recorder.insert(decision('192.0.2.2'));
    expect(health).toEqual([false, true]);
  });
});

describe('Recorder: an index page damaged while running', () => {
  it('holds new decisions (SQLITE_CORRUPT) and refuses reads that meet the damage with UNAVAILABLE, counted as reads', () => {
    recorder.insert(decision('192.0.2.9', { endedMs: T0 + 1 }));
    damageIndexWhileOpen(dir, 'decisions_open');
    const d = decision('192.0.2.1');
    recorder.insert(d);
    expect(recorder.state).toEqual({ held: 1, failure: 'insert: database disk image is malformed (SQLITE_CORRUPT)' });
    expect(health).toEqual([false]);
    damageIndexWhileOpen(dir, 'decisions_ended');
    expect(() => recorder.lastEnded('192.0.2.9')).toThrow(
      expect.objectContaining({ code: GrpcStatus.UNAVAILABLE, details: 'the decision store cannot be read: read: database disk image is malformed (SQLITE_CORRUPT)' }),
    );
    expect(metrics.counts.storeErrors).toEqual(errors({ insert: 1, read: 1 }));
    expect(errorLines()).toEqual([
      'decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried',
      'decision store failed in another way',
    ]);
  });
});

describe('Recorder: metrics', () => {
  it('exports the store errors by operation and the writes held', async () => {
    metrics.observe({ trackedSources: () => 0, evictions: () => 0, admission: () => ({ admitted: 0, promoted: 0, probationEvictions: 0, protectedEvictions: 0, spaces: { probation: 0, protected: 0 } }), activeDecisions: () => 0, activeShadowDecisions: () => 0, probesConnected: () => 0, storeWritesHeld: () => recorder.state.held });
    const release = holdWriteLock(dir);
    recorder.insert(decision('192.0.2.1'));
    recorder.end({ ...decision('192.0.2.2'), endedMs: T0 });
    const text = await metrics.registry.metrics();
    const lines = text.split('\n').filter((l) => l.startsWith('packetwatch_policy_store_'));
    expect(lines).toEqual([
      'packetwatch_policy_store_writes_dropped_total 0',
      'packetwatch_policy_store_errors_total{op="insert"} 2',
      'packetwatch_policy_store_errors_total{op="end"} 0',
      'packetwatch_policy_store_errors_total{op="enforce"} 0',
      'packetwatch_policy_store_errors_total{op="allow_add"} 0',
      'packetwatch_policy_store_errors_total{op="allow_remove"} 0',
      'packetwatch_policy_store_errors_total{op="read"} 0',
      'packetwatch_policy_store_writes_held 2',
    ]);
    release();
  });
});
