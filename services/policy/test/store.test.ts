import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DecisionRecord, DecisionStore, isActive } from '../src/store.js';

const T0 = Date.UTC(2026, 0, 1);

let dir: string;
const open: DecisionStore[] = [];

/** Opens the store in the test's state dir and closes it after the test. */
function openStore(stateDir = dir) {
  const opened = DecisionStore.open(stateDir);
  open.push(opened.store);
  return opened;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pw-store-'));
});

afterEach(() => {
  for (const s of open.splice(0)) {
    try {
      s.close();
    } catch {
      // already closed by the test
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('DecisionStore: insert, active, all, end', () => {
  it('returns the inserted decision with an id and no end', () => {
    const { store, movedAside } = openStore();
    expect(movedAside).toBeUndefined();
    const d = store.insert({ ip: '192.0.2.7', reason: 'scanned 3 ports', origin: 'detector', createdMs: T0, expiresMs: undefined });
    expect(d).toEqual({
      id: 1,
      ip: '192.0.2.7',
      reason: 'scanned 3 ports',
      origin: 'detector',
      createdMs: T0,
      expiresMs: undefined,
      endedMs: undefined,
    });
  });

  it('numbers decisions in insertion order and lists them all by id', () => {
    const { store } = openStore();
    const a = store.insert({ ip: '192.0.2.1', reason: 'a', origin: 'detector', createdMs: T0, expiresMs: undefined });
    const b = store.insert({ ip: '2001:db8::1', reason: 'b', origin: 'manual', createdMs: T0 + 1, expiresMs: T0 + 60_000 });
    const c = store.insert({ ip: '198.51.100.9', reason: 'c', origin: 'kernel', createdMs: T0 + 2, expiresMs: undefined });
    expect([a.id, b.id, c.id]).toEqual([1, 2, 3]);
    expect(store.all()).toEqual([a, b, c]);
  });

  it('rounds fractional times to whole milliseconds', () => {
    const { store } = openStore();
    const d = store.insert({ ip: '192.0.2.1', reason: 'r', origin: 'manual', createdMs: T0 + 0.6, expiresMs: T0 + 1000.4 });
    expect(d.createdMs).toBe(T0 + 1);
    expect(d.expiresMs).toBe(T0 + 1000);
  });

  it('lists as active only decisions that are neither ended nor expired', () => {
    const { store } = openStore();
    const permanent = store.insert({ ip: '192.0.2.1', reason: 'p', origin: 'detector', createdMs: T0, expiresMs: undefined });
    const expiring = store.insert({ ip: '192.0.2.2', reason: 'e', origin: 'detector', createdMs: T0, expiresMs: T0 + 60_000 });
    const ended = store.insert({ ip: '192.0.2.3', reason: 'x', origin: 'manual', createdMs: T0, expiresMs: undefined });
    expect(store.end(ended.id, T0 + 10)).toBe(true);

    expect(store.active(T0 + 59_999)).toEqual([permanent, expiring]);
    // Expiry is exclusive: at expiresMs the decision is over.
    expect(store.active(T0 + 60_000)).toEqual([permanent]);
    expect(store.all().map((d) => d.id)).toEqual([permanent.id, expiring.id, ended.id]);
  });

  it('records the end time, and ends a decision only once', () => {
    const { store } = openStore();
    const d = store.insert({ ip: '192.0.2.1', reason: 'r', origin: 'manual', createdMs: T0, expiresMs: undefined });
    expect(store.end(d.id, T0 + 500)).toBe(true);
    expect(store.end(d.id, T0 + 900)).toBe(false);
    expect(store.all()).toEqual([{ ...d, endedMs: T0 + 500 }]);
    expect(store.active(T0 + 1000)).toEqual([]);
  });

  it('reports false when ending an id that does not exist', () => {
    const { store } = openStore();
    expect(store.end(42, T0)).toBe(false);
  });
});

describe('isActive', () => {
  const base: DecisionRecord = {
    id: 1,
    ip: '192.0.2.1',
    reason: 'r',
    origin: 'detector',
    createdMs: T0,
    expiresMs: undefined,
    endedMs: undefined,
  };

  it('is true for a permanent decision that has not ended', () => {
    expect(isActive(base, T0 + 365 * 86_400_000)).toBe(true);
  });

  it('is true before the expiry and false from the expiry on', () => {
    const d = { ...base, expiresMs: T0 + 1000 };
    expect(isActive(d, T0 + 999)).toBe(true);
    expect(isActive(d, T0 + 1000)).toBe(false);
    expect(isActive(d, T0 + 5000)).toBe(false);
  });

  it('is false once ended, even before the expiry', () => {
    expect(isActive({ ...base, endedMs: T0 + 1 }, T0 + 2)).toBe(false);
    expect(isActive({ ...base, expiresMs: T0 + 10_000, endedMs: T0 + 1 }, T0 + 2)).toBe(false);
  });
});

describe('DecisionStore: persistence', () => {
  it('keeps decisions, their ends and the id sequence across close and reopen', () => {
    const first = openStore().store;
    const kept = first.insert({ ip: '192.0.2.1', reason: 'kept', origin: 'detector', createdMs: T0, expiresMs: T0 + 3_600_000 });
    const ended = first.insert({ ip: '2001:db8::5', reason: 'ended', origin: 'manual', createdMs: T0, expiresMs: undefined });
    first.end(ended.id, T0 + 100);
    first.close();

    const { store, movedAside } = openStore();
    expect(movedAside).toBeUndefined();
    expect(store.all()).toEqual([kept, { ...ended, endedMs: T0 + 100 }]);
    expect(store.active(T0 + 1)).toEqual([kept]);
    const next = store.insert({ ip: '192.0.2.9', reason: 'next', origin: 'kernel', createdMs: T0 + 2, expiresMs: undefined });
    expect(next.id).toBe(3);
  });

  it('creates the state directory when it does not exist', () => {
    const nested = join(dir, 'a', 'b');
    const { store } = openStore(nested);
    expect(existsSync(join(nested, 'decisions.db'))).toBe(true);
    expect(store.all()).toEqual([]);
  });
});

describe('DecisionStore: a store that cannot be read', () => {
  it('moves a damaged file aside, says why, and starts empty and usable', () => {
    const path = join(dir, 'decisions.db');
    const garbage = Buffer.alloc(8192, 0xa5);
    garbage.write('this is not an SQLite database', 0);
    writeFileSync(path, garbage);

    const { store, movedAside } = openStore();
    expect(movedAside).toBeDefined();
    expect(movedAside!.path.startsWith(`${path}.unreadable-`)).toBe(true);
    expect(existsSync(movedAside!.path)).toBe(true);
    expect(movedAside!.reason).toMatch(/not a database/);

    expect(store.all()).toEqual([]);
    const d = store.insert({ ip: '192.0.2.1', reason: 'after recovery', origin: 'manual', createdMs: T0, expiresMs: undefined });
    expect(d.id).toBe(1);
    expect(store.active(T0)).toEqual([d]);
  });

  it('moves the damaged bytes aside unchanged, as the only moved-aside file', () => {
    const path = join(dir, 'decisions.db');
    const garbage = Buffer.alloc(4096, 0x5a);
    writeFileSync(path, garbage);

    const { movedAside } = openStore();
    const aside = readdirSync(dir).filter((f) => f.startsWith('decisions.db.unreadable-') && !f.endsWith('-wal') && !f.endsWith('-shm'));
    expect(aside.map((f) => join(dir, f))).toEqual([movedAside!.path]);
    expect(readFileSync(movedAside!.path).equals(garbage)).toBe(true);
  });

  it('holds no file descriptor on the moved-aside file', () => {
    writeFileSync(join(dir, 'decisions.db'), Buffer.alloc(4096, 0x5a));
    const { movedAside } = openStore();
    const fds = readdirSync('/proc/self/fd').map((fd) => {
      try {
        return readlinkSync(join('/proc/self/fd', fd));
      } catch {
        return '';
      }
    });
    expect(fds.filter((target) => target.startsWith(movedAside!.path))).toEqual([]);
  });

  it('refuses a store whose schema is newer than it supports, leaving the file in place', () => {
    const path = join(dir, 'decisions.db');
    const newer = new Database(path);
    newer.exec('CREATE TABLE decisions (id INTEGER PRIMARY KEY, future TEXT)');
    newer.pragma('user_version = 99');
    newer.close();

    expect(() => DecisionStore.open(dir)).toThrow('decision store has schema 99, newer than this policy understands (1)');
    // Not moved aside: a newer policy's decisions must not be abandoned by a downgrade.
    expect(readdirSync(dir).filter((f) => f.includes('unreadable'))).toEqual([]);
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(99);
    check.close();
  });
});
