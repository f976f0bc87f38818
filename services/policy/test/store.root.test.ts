// The decision store on a file system of its own (a small tmpfs, so root):
// a disk that fills up while the policy runs, and stores that cannot be
// opened for writing (a full disk, a read-only mount). Real ENOSPC and EROFS,
// met by real SQLite.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PolicyMetrics } from '../src/metrics.js';
import { Recorder } from '../src/recorder.js';
import { type DecisionRecord, DecisionStore } from '../src/store.js';
import { captureLog, fillFileSystem, storePath } from './store-faults.js';

const T0 = Date.UTC(2026, 0, 1);

let mnt: string;
let stateDir: string;
const open: DecisionStore[] = [];

const decision = (id: number, ip: string): DecisionRecord => ({ id, ip, reason: `blocked ${ip}`, origin: 'detector', createdMs: T0, expiresMs: undefined, endedMs: undefined, shadow: false });

beforeEach(() => {
  mnt = mkdtempSync(join(tmpdir(), 'pw-store-fs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  stateDir = join(mnt, 'state');
});

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  execFileSync('umount', [mnt]);
  rmSync(mnt, { recursive: true, force: true });
});

describe('a disk that fills up under the policy', () => {
  it('an insert on the full disk is held (SQLITE_FULL), and recorded once space is freed', () => {
    const { store } = DecisionStore.open(stateDir);
    open.push(store);
    const metrics = new PolicyMetrics();
    const recorder = new Recorder(store, metrics, captureLog().log);
    const first = decision(recorder.newId(), '192.0.2.1');
    recorder.insert(first);
    const filler = fillFileSystem(mnt);

    const second = decision(recorder.newId(), '192.0.2.2');
    recorder.insert(second);
    expect(recorder.state).toEqual({ held: 1, failure: 'insert: database or disk is full (SQLITE_FULL)' });
    expect(store.all()).toEqual([first]);
    expect(metrics.counts.storeErrors.insert).toBe(1);

    rmSync(filler);
    recorder.flush();
    expect(store.all()).toEqual([first, second]);
    expect(recorder.state).toEqual({ held: 0, failure: undefined });
    recorder.close();
  });
});

describe('a store that cannot be written at open is left alone', () => {
  /** A store of one decision, closed cleanly (no -wal, no -shm left). */
  const storeOfOne = () => {
    const { store } = DecisionStore.open(stateDir);
    store.insert(decision(1, '192.0.2.1'));
    store.close();
  };
  const asideFiles = () => readdirSync(stateDir).filter((f) => f.includes('.unreadable-'));
  const reopened = () => {
    const { store, movedAside } = DecisionStore.open(stateDir);
    open.push(store);
    return { all: store.all(), movedAside };
  };

  it('on a full disk: refused, naming the file; nothing moved, and it opens whole once there is space', () => {
    storeOfOne();
    const filler = fillFileSystem(mnt);
    expect(() => DecisionStore.open(stateDir)).toThrow(
      expect.objectContaining({
        name: 'StoreOpenError',
        path: storePath(stateDir),
        code: 'SQLITE_IOERR_SHMSIZE',
        message: `cannot open the decision store ${storePath(stateDir)}: disk I/O error (SQLITE_IOERR_SHMSIZE); nothing was moved or changed`,
      }),
    );
    expect(asideFiles()).toEqual([]);
    rmSync(filler);
    expect(reopened()).toEqual({ all: [decision(1, '192.0.2.1')], movedAside: undefined });
  });

  it('on a read-only mount: refused, naming the file; nothing moved', () => {
    storeOfOne();
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    expect(() => DecisionStore.open(stateDir)).toThrow(
      expect.objectContaining({ name: 'StoreOpenError', path: storePath(stateDir), code: 'SQLITE_CANTOPEN' }),
    );
    execFileSync('mount', ['-o', 'remount,rw', mnt]);
    expect(asideFiles()).toEqual([]);
    expect(reopened().all).toEqual([decision(1, '192.0.2.1')]);
  });

  it('on a read-only mount with the -wal and -shm a crash left: SQLite would open it read-only; refused at open (SQLITE_READONLY), not at the first decision', () => {
    // The three files as a policy killed mid-run leaves them.
    const elsewhere = mkdtempSync(join(tmpdir(), 'pw-store-crashed-'));
    try {
      const { store } = DecisionStore.open(elsewhere);
      store.insert(decision(1, '192.0.2.1'));
      mkdirSync(stateDir);
      for (const suffix of ['', '-wal', '-shm']) copyFileSync(storePath(elsewhere) + suffix, storePath(stateDir) + suffix);
      store.close();
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    expect(() => DecisionStore.open(stateDir)).toThrow(
      expect.objectContaining({
        name: 'StoreOpenError',
        code: 'SQLITE_READONLY',
        message: `cannot open the decision store ${storePath(stateDir)}: attempt to write a readonly database (SQLITE_READONLY); nothing was moved or changed`,
      }),
    );
    execFileSync('mount', ['-o', 'remount,rw', mnt]);
    expect(asideFiles()).toEqual([]);
    expect(reopened().all).toEqual([decision(1, '192.0.2.1')]);
  });
});
