// Real faults of a real decision store, made the way they happen: another
// connection holding SQLite's write lock (an operator's sqlite3 shell in the
// middle of a transaction), and an index page overwritten with garbage (a
// failing disk), found by the store's connection at its next read.
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { type Logger, pino } from 'pino';

export const storePath = (stateDir: string) => join(stateDir, 'decisions.db');

/** Takes the store's write lock from another connection until the returned function is called: writes fail with SQLITE_BUSY, reads go on. */
export function holdWriteLock(stateDir: string): () => void {
  const other = new Database(storePath(stateDir));
  other.exec('BEGIN IMMEDIATE');
  return () => {
    other.exec('ROLLBACK');
    other.close();
  };
}

/** Writes garbage over the page holding the root of an index, as a failing disk would. */
export function damageIndexPage(stateDir: string, index: string): void {
  const db = new Database(storePath(stateDir), { readonly: true });
  const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE type = 'index' AND name = ?").get(index) as { rootpage: number };
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.close();
  const fd = openSync(storePath(stateDir), 'r+');
  writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (rootpage - 1) * pageSize);
  closeSync(fd);
}

/**
 * Damages an index page of a store that is open: another connection moves
 * every page the WAL holds into the main file, the page is overwritten
 * there, and that connection's write elsewhere (the allowlist) makes the
 * store's connection drop its page cache and meet the damage at its next
 * use of that index.
 */
export function damageIndexWhileOpen(stateDir: string, index: string): void {
  const other = new Database(storePath(stateDir));
  other.pragma('wal_checkpoint(TRUNCATE)');
  damageIndexPage(stateDir, index);
  other.prepare('INSERT OR REPLACE INTO allowlist (prefix, note, added_ms) VALUES (?, ?, ?)').run('198.51.100.0/24', 'written by another connection', 0);
  other.close();
}

/**
 * Fills the file system holding `dir` with one file until the kernel says
 * ENOSPC, as a disk fills up; returns the file, whose removal frees the space.
 */
export function fillFileSystem(dir: string): string {
  const filler = join(dir, 'filler');
  const fd = openSync(filler, 'w');
  const chunk = Buffer.alloc(4096);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  return filler;
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A logger whose lines are kept, parsed. */
export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

/** pino's numbers for the levels tests look at. */
export const LEVEL = { info: 30, warn: 40, error: 50 } as const;
