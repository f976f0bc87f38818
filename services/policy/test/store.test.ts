import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DecisionRecord, DecisionStore, StoreOpenError, isActive } from '../src/store.js';
import { damageIndexPage, damageIndexWhileOpen, holdWriteLock } from './store-faults.js';

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

/** A decision as the policy makes it: id given, active. */
function decision(id: number, ip: string, o: Partial<DecisionRecord> = {}): DecisionRecord {
  return { id, ip, reason: `reason ${id}`, origin: 'detector', createdMs: T0, expiresMs: undefined, endedMs: undefined, shadow: false, ...o };
}

describe('DecisionStore: insert, active, all, end', () => {
  it('records a decision under the id the policy gave it', () => {
    const { store, movedAside } = openStore();
    expect(movedAside).toBeUndefined();
    const d = decision(1, '192.0.2.7', { reason: 'scanned 3 ports' });
    store.insert(d);
    expect(store.all()).toEqual([d]);
  });

  it('lists decisions by id, and says the highest id recorded (0 for none)', () => {
    const { store } = openStore();
    expect(store.lastId()).toBe(0);
    const c = decision(3, '198.51.100.9', { origin: 'kernel', createdMs: T0 + 2 });
    const a = decision(1, '192.0.2.1');
    const b = decision(2, '2001:db8::1', { origin: 'manual', createdMs: T0 + 1, expiresMs: T0 + 60_000 });
    for (const d of [c, a, b]) store.insert(d);
    expect(store.all()).toEqual([a, b, c]);
    expect(store.lastId()).toBe(3);
  });

  it('never gives an id again, even once retention has pruned every decision', () => {
    const { store } = openStore();
    for (const id of [1, 2, 3]) store.insert(decision(id, `192.0.2.${id}`, { expiresMs: T0 + 1 }));
    expect(store.prune(T0 + 2, 0, 1000)).toEqual([1, 2, 3]);
    expect(store.all()).toEqual([]);
    expect(store.lastId()).toBe(3);
  });

  it('records a decision that ended before the store took it with its end', () => {
    const { store } = openStore();
    const d = decision(1, '192.0.2.1', { endedMs: T0 + 5 });
    store.insert(d);
    expect(store.all()).toEqual([d]);
    expect(store.active(T0 + 1)).toEqual([]);
    expect(store.lastEnded('192.0.2.1')).toEqual(d);
  });

  it('refuses a second decision under an id already recorded', () => {
    const { store } = openStore();
    store.insert(decision(1, '192.0.2.1'));
    expect(() => store.insert(decision(1, '192.0.2.2'))).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }));
    expect(store.all().map((d) => d.ip)).toEqual(['192.0.2.1']);
  });

  it('rounds fractional times to whole milliseconds', () => {
    const { store } = openStore();
    store.insert(decision(1, '192.0.2.1', { createdMs: T0 + 0.6, expiresMs: T0 + 1000.4 }));
    const [d] = store.all();
    expect(d!.createdMs).toBe(T0 + 1);
    expect(d!.expiresMs).toBe(T0 + 1000);
  });

  it('lists as active only decisions that are neither ended nor expired', () => {
    const { store } = openStore();
    const permanent = decision(1, '192.0.2.1');
    const expiring = decision(2, '192.0.2.2', { expiresMs: T0 + 60_000 });
    const ended = decision(3, '192.0.2.3', { origin: 'manual' });
    for (const d of [permanent, expiring, ended]) store.insert(d);
    expect(store.end(ended.id, T0 + 10)).toBe(true);

    expect(store.active(T0 + 59_999)).toEqual([permanent, expiring]);
    // Expiry is exclusive: at expiresMs the decision is over.
    expect(store.active(T0 + 60_000)).toEqual([permanent]);
    expect(store.all().map((d) => d.id)).toEqual([permanent.id, expiring.id, ended.id]);
  });

  it('records the end time, and ends a decision only once', () => {
    const { store } = openStore();
    const d = decision(1, '192.0.2.1', { origin: 'manual' });
    store.insert(d);
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
    shadow: false,
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
  it('keeps decisions, their ends and the highest id across close and reopen', () => {
    const first = openStore().store;
    const kept = decision(1, '192.0.2.1', { reason: 'kept', expiresMs: T0 + 3_600_000 });
    const ended = decision(2, '2001:db8::5', { reason: 'ended', origin: 'manual' });
    first.insert(kept);
    first.insert(ended);
    first.end(ended.id, T0 + 100);
    first.close();

    const { store, movedAside } = openStore();
    expect(movedAside).toBeUndefined();
    expect(store.all()).toEqual([kept, { ...ended, endedMs: T0 + 100 }]);
    expect(store.active(T0 + 1)).toEqual([kept]);
    expect(store.lastId()).toBe(2);
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
    expect(store.lastId()).toBe(0);
    const d = decision(1, '192.0.2.1', { reason: 'after recovery', origin: 'manual' });
    store.insert(d);
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

    expect(() => DecisionStore.open(dir)).toThrow(
      expect.objectContaining({
        name: 'StoreOpenError',
        message: `cannot open the decision store ${path}: decision store has schema 99, newer than this policy understands (2); run the newer version or move the file away; nothing was moved or changed`,
      }),
    );
    // Not moved aside: a newer policy's decisions must not be abandoned by a downgrade.
    expect(readdirSync(dir).filter((f) => f.includes('unreadable'))).toEqual([]);
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(99);
    check.close();
  });
});

/** Files in the state dir named as moved aside. */
const movedAsideFiles = () => readdirSync(dir).filter((f) => f.includes('.unreadable-'));

/** A store of three decisions, closed (so that every page is in the main file, none in the WAL). */
function storeOfThree(): DecisionRecord[] {
  const { store } = openStore();
  const ds = [decision(1, '192.0.2.1'), decision(2, '192.0.2.2', { endedMs: T0 + 1 }), decision(3, '2001:db8::3')];
  for (const d of ds) store.insert(d);
  store.close();
  return ds;
}

describe('DecisionStore: damage found at open', () => {
  it('moves a store with a damaged index page aside, though its table still reads, and starts empty', () => {
    storeOfThree();
    const path = join(dir, 'decisions.db');
    damageIndexPage(dir, 'decisions_open');
    const damaged = readFileSync(path);
    // The damage is where a plain read does not look: only the integrity check finds it.
    const peek = new Database(path, { readonly: true });
    expect(peek.prepare('SELECT count(*) AS n FROM decisions').get()).toEqual({ n: 3 });
    peek.close();

    const { store, movedAside } = openStore();
    expect(movedAside!.reason).toBe('integrity check failed: database disk image is malformed');
    expect(movedAsideFiles()).toEqual([basename(movedAside!.path)]);
    expect(readFileSync(movedAside!.path).equals(damaged)).toBe(true);
    expect(store.all()).toEqual([]);
    expect(store.lastId()).toBe(0);
  });
});

describe('DecisionStore: a store that cannot be opened now is left alone', () => {
  it('a store another connection holds locked (SQLITE_BUSY): refused at once, naming the file; nothing moved, every decision there once the lock goes', () => {
    const ds = storeOfThree();
    const path = join(dir, 'decisions.db');
    const holder = new Database(path);
    holder.pragma('locking_mode = EXCLUSIVE');
    holder.prepare('UPDATE decisions SET reason = reason WHERE id = 1').run();

    let refusal: unknown;
    try {
      DecisionStore.open(dir);
    } catch (e) {
      refusal = e;
    }
    expect(refusal).toBeInstanceOf(StoreOpenError);
    expect(refusal).toMatchObject({
      path,
      code: 'SQLITE_BUSY',
      message: `cannot open the decision store ${path}: database is locked (SQLITE_BUSY); nothing was moved or changed`,
    });
    expect(movedAsideFiles()).toEqual([]);

    holder.close();
    expect(openStore().store.all()).toEqual(ds);
  });

  it('a directory where the store file should be (SQLITE_CANTOPEN): refused, naming the file; the directory is not moved', () => {
    const path = join(dir, 'decisions.db');
    mkdirSync(path);
    expect(() => DecisionStore.open(dir)).toThrow(
      expect.objectContaining({
        name: 'StoreOpenError',
        code: 'SQLITE_CANTOPEN',
        message: `cannot open the decision store ${path}: unable to open database file (SQLITE_CANTOPEN); nothing was moved or changed`,
      }),
    );
    expect(statSync(path).isDirectory()).toBe(true);
    expect(readdirSync(dir)).toEqual(['decisions.db']);
  });

  it('a state directory that is a file: refused, naming the store file; the file is untouched', () => {
    const stateDir = join(dir, 'state');
    writeFileSync(stateDir, 'not a directory');
    expect(() => DecisionStore.open(stateDir)).toThrow(expect.objectContaining({ name: 'StoreOpenError', path: join(stateDir, 'decisions.db'), code: 'EEXIST' }));
    expect(readFileSync(stateDir, 'utf8')).toBe('not a directory');
  });
});

describe('DecisionStore: failures at run time', () => {
  it('an index page damaged while the store is open fails the statements that use it (SQLITE_CORRUPT), not the others', () => {
    storeOfThree();
    const { store } = openStore();
    damageIndexWhileOpen(dir, 'decisions_open');
    // A new decision is an open one: its insert updates the damaged index.
    expect(() => store.insert(decision(4, '192.0.2.4'))).toThrow(expect.objectContaining({ code: 'SQLITE_CORRUPT', message: 'database disk image is malformed' }));
    expect(store.lastEnded('192.0.2.2')).toEqual(decision(2, '192.0.2.2', { endedMs: T0 + 1 }));
    expect(store.all().map((d) => d.id)).toEqual([1, 2, 3]);
  });

  it('an insert while another connection holds the write lock fails at once (SQLITE_BUSY) and changes nothing; the same insert succeeds once it is released', () => {
    const { store } = openStore();
    store.insert(decision(1, '192.0.2.1'));
    const release = holdWriteLock(dir);
    const d = decision(2, '192.0.2.2');
    expect(() => store.insert(d)).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY', message: 'database is locked' }));
    expect(store.all().map((x) => x.id)).toEqual([1]);
    release();
    store.insert(d);
    expect(store.all().map((x) => x.id)).toEqual([1, 2]);
  });
});

describe('DecisionStore: offences and evidence (schema 2)', () => {
  it('adds the offence and evidence columns to a store of schema 1, keeping its decisions', () => {
    const old = new Database(join(dir, 'decisions.db'));
    old.exec(`CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, ip TEXT NOT NULL, reason TEXT NOT NULL,
      origin TEXT NOT NULL CHECK (origin IN ('detector', 'manual', 'kernel')), created_ms INTEGER NOT NULL, expires_ms INTEGER, ended_ms INTEGER)`);
    old.prepare("INSERT INTO decisions VALUES (4, '192.0.2.4', 'old', 'detector', ?, NULL, NULL)").run(T0);
    old.pragma('user_version = 1');
    old.close();
    const { store } = openStore();
    expect(store.all()).toEqual([decision(4, '192.0.2.4', { reason: 'old' })]);
    expect(store.lastOffence('192.0.2.4')).toBeUndefined();
    store.insert(decision(5, '192.0.2.4', { offence: 2, expiresMs: T0 + 1000 }));
    expect(store.lastOffence('192.0.2.4')).toMatchObject({ id: 5, offence: 2 });
  });

  it('keeps a decision’s evidence in the store, bounded, and reads it back with the latest decision on a source', () => {
    const { store } = openStore();
    const probes = Array.from({ length: 40 }, (_, i) => ({ timeMs: T0 + i, port: i + 1, kind: 'SYN', probeId: 'h/eth0', address: '192.0.2.9', portState: 'unknown' as const }));
    const evidence = { engine: 'policy' as const, portThreshold: 40, windowSeconds: 60, fleetThreshold: 0, capped: false, ttlSeconds: 0, offence: 1, probes };
    store.insert(decision(1, '192.0.2.9', { offence: 1, evidence }));
    const got = store.latestOn('192.0.2.9')!;
    expect(got.evidence!.probes).toEqual(probes.slice(-32));
    // Not in the lists (they are what the policy holds in memory).
    expect(store.all()[0]!.evidence).toBeUndefined();
  });
});
