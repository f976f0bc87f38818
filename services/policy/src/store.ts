// Decisions survive restarts in an embedded SQLite store (better-sqlite3)
// under PW_STATE_DIR. At open, SQLite's integrity check reads every page: a
// store that is damaged (not a database, or failing the check) is moved
// aside, not deleted, and the policy starts empty and rebuilds from the
// probes' kernel view. Any other failure to open (a lock, permissions, a
// read-only or full file system, a newer schema) leaves the file untouched
// and is the caller's to report: moving a healthy store aside over a
// passing condition would throw its history away.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { type Evidence, decodeEvidence, encodeEvidence } from './evidence.js';

export type Origin = 'detector' | 'manual' | 'kernel';

export interface DecisionRecord {
  id: number;
  ip: string;
  reason: string;
  origin: Origin;
  createdMs: number;
  /** undefined: permanent. */
  expiresMs: number | undefined;
  /** undefined while active. */
  endedMs: number | undefined;
  /** Made in shadow mode (PW_ENFORCE=False): no probe drops anything for it (until a start enforcing makes it a block). */
  shadow: boolean;
  /** The source's offence count at this block (escalation.ts); 0 or unset: not an offence (an operator's block). */
  offence?: number;
  /** Why (evidence.ts): written with the decision, read back by evidenceOf(); not kept with active decisions in memory. */
  evidence?: Evidence;
}

interface Row {
  id: number;
  ip: string;
  reason: string;
  origin: Origin;
  created_ms: number;
  expires_ms: number | null;
  ended_ms: number | null;
  shadow: number;
  offence: number;
}

/** 2: the shadow, offence and evidence columns, added to a store of schema 1 at open (its decisions were all made enforcing, none an offence). */
const SCHEMA_VERSION = 2;

/** The store was written by a newer Packetwatch: refuse it rather than lose its decisions. */
export class NewerSchemaError extends Error {
  constructor(readonly version: number) {
    super(`decision store has schema ${version}, newer than this policy understands (${SCHEMA_VERSION}); run the newer version or move the file away`);
    this.name = 'NewerSchemaError';
  }
}

/**
 * The store could not be opened for a reason other than damage: nothing was
 * moved or changed. `code` is SQLite's or the system's ("SQLITE_BUSY",
 * "EACCES"), when there is one.
 */
export class StoreOpenError extends Error {
  readonly code: string | undefined;

  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot open the decision store ${path}: ${whatFailed(cause)}; nothing was moved or changed`, { cause });
    this.name = 'StoreOpenError';
    this.code = errorCode(cause);
  }
}

/** SQLite's extended result code ("SQLITE_FULL") or the system's errno name ("EACCES") carried by an error. */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What an error says, with its code: "database or disk is full (SQLITE_FULL)". */
export function whatFailed(e: unknown): string {
  const code = errorCode(e);
  return `${e instanceof Error ? e.message : String(e)}${code ? ` (${code})` : ''}`;
}

/** The pages SQLite's integrity check found wrong (a few of them). */
class DamagedStoreError extends Error {
  readonly code = 'SQLITE_CORRUPT';
}

/** Damage, as opposed to a condition that may pass (a lock, permissions, space). */
const isDamage = (e: unknown): boolean => /^SQLITE_(CORRUPT|NOTADB)/.test(errorCode(e) ?? '');

/** Problems the integrity check lists at most: enough to say what is wrong. */
const INTEGRITY_PROBLEMS = 5;

/** SQLite's integrity check: ['ok'], or what it found (it stops at some damage with an error instead of a list). */
function integrityProblems(db: Database.Database): string[] {
  try {
    return (db.pragma(`integrity_check(${INTEGRITY_PROBLEMS})`) as { integrity_check: string }[]).map((r) => r.integrity_check);
  } catch (e) {
    if (isDamage(e)) return [(e as Error).message];
    throw e;
  }
}

const toRecord = (r: Row): DecisionRecord => ({
  id: r.id,
  ip: r.ip,
  reason: r.reason,
  origin: r.origin,
  createdMs: r.created_ms,
  expiresMs: r.expires_ms ?? undefined,
  endedMs: r.ended_ms ?? undefined,
  shadow: r.shadow === 1,
  // Only an offence is marked: an operator's block reads as before.
  ...(r.offence > 0 ? { offence: r.offence } : {}),
});

export function isActive(d: DecisionRecord, nowMs: number): boolean {
  return d.endedMs === undefined && (d.expiresMs === undefined || d.expiresMs > nowMs);
}

export interface OpenedStore {
  store: DecisionStore;
  /** Set when an unreadable store was moved aside: where to, and why. */
  movedAside?: { path: string; reason: string };
}

export class DecisionStore {
  readonly #db: Database.Database;
  readonly #insert: Database.Statement<[number, string, string, string, number, number | null, number | null, number, number, string | null]>;
  readonly #end: Database.Statement<[number, number]>;
  readonly #enforce: Database.Statement<[number]>;
  readonly #activeStmt: Database.Statement<[number], Row>;
  readonly #allStmt: Database.Statement<[], Row>;
  readonly #lastEndedStmt: Database.Statement<[string], Row>;

  private constructor(db: Database.Database) {
    this.#db = db;
    // Check the version before anything writes to the file.
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new NewerSchemaError(version);
    // Every page, the indexes against their tables too: a damaged page found
    // now moves the store aside; found later, it would fail writes at run time.
    const problems = integrityProblems(db);
    if (problems.join() !== 'ok') throw new DamagedStoreError(`integrity check failed: ${problems.join('; ')}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec(`
      CREATE TABLE IF NOT EXISTS decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ip TEXT NOT NULL,
        reason TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('detector', 'manual', 'kernel')),
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        ended_ms INTEGER,
        shadow INTEGER NOT NULL DEFAULT 0,
        offence INTEGER NOT NULL DEFAULT 0,
        evidence TEXT
      );
      CREATE INDEX IF NOT EXISTS decisions_open ON decisions (ip) WHERE ended_ms IS NULL;
      CREATE INDEX IF NOT EXISTS decisions_ended ON decisions (ip, ended_ms) WHERE ended_ms IS NOT NULL;
      CREATE TABLE IF NOT EXISTS allowlist (
        prefix TEXT PRIMARY KEY,
        note TEXT NOT NULL,
        added_ms INTEGER NOT NULL
      );
    `);
    // A store of schema 1: its decisions were all made enforcing; the
    // escalation's offence count and the evidence (explain) are new.
    const columns = new Set((db.pragma('table_info(decisions)') as { name: string }[]).map((c) => c.name));
    if (!columns.has('shadow')) db.exec('ALTER TABLE decisions ADD COLUMN shadow INTEGER NOT NULL DEFAULT 0');
    if (!columns.has('offence')) db.exec('ALTER TABLE decisions ADD COLUMN offence INTEGER NOT NULL DEFAULT 0');
    if (!columns.has('evidence')) db.exec('ALTER TABLE decisions ADD COLUMN evidence TEXT');
    db.exec('CREATE INDEX IF NOT EXISTS decisions_offences ON decisions (ip, id) WHERE offence > 0');
    // A write every open: it also proves the store writable now. SQLite opens
    // a file it may not write (a read-only mount, another owner) read-only
    // without a word; that must stop the start, not fail every decision.
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    this.#insert = db.prepare('INSERT INTO decisions (id, ip, reason, origin, created_ms, expires_ms, ended_ms, shadow, offence, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    this.#end = db.prepare('UPDATE decisions SET ended_ms = ? WHERE id = ? AND ended_ms IS NULL');
    this.#enforce = db.prepare('UPDATE decisions SET shadow = 0 WHERE id = ?');
    this.#activeStmt = db.prepare('SELECT * FROM decisions WHERE ended_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?) ORDER BY id');
    this.#allStmt = db.prepare('SELECT id, ip, reason, origin, created_ms, expires_ms, ended_ms, shadow, offence FROM decisions ORDER BY id');
    this.#lastEndedStmt = db.prepare('SELECT * FROM decisions WHERE ip = ? AND ended_ms IS NOT NULL ORDER BY ended_ms DESC LIMIT 1');
  }

  /**
   * Opens (creating it if need be) the store in stateDir. Throws
   * StoreOpenError, having changed nothing, unless the store is damaged.
   */
  static open(stateDir: string): OpenedStore {
    const path = join(stateDir, 'decisions.db');
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o750 });
      return { store: DecisionStore.#openFile(path) };
    } catch (e) {
      if (!isDamage(e)) throw new StoreOpenError(path, e);
      try {
        const aside = `${path}.unreadable-${Date.now()}`;
        renameSync(path, aside);
        for (const suffix of ['-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
        return { store: DecisionStore.#openFile(path), movedAside: { path: aside, reason: (e as Error).message } };
      } catch (e2) {
        throw new StoreOpenError(path, e2);
      }
    }
  }

  static #openFile(path: string): DecisionStore {
    // No waiting for a lock: the policy is the store's only writer, and a
    // write held up by someone else's lock would hold up every SYN event
    // behind it. The write fails at once and is retried (recorder.ts).
    const db = new Database(path, { timeout: 0 });
    try {
      return new DecisionStore(db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** Records a decision under the id the policy gave it. */
  insert(d: DecisionRecord): void {
    this.#insert.run(
      d.id,
      d.ip,
      d.reason,
      d.origin,
      Math.round(d.createdMs),
      d.expiresMs === undefined ? null : Math.round(d.expiresMs),
      d.endedMs === undefined ? null : Math.round(d.endedMs),
      d.shadow ? 1 : 0,
      d.offence ?? 0,
      d.evidence ? encodeEvidence(d.evidence) : null,
    );
  }

  /** The latest offence on a source (a decision with an offence count), if the store still holds one (retention prunes them). */
  lastOffence(ip: string): DecisionRecord | undefined {
    const row = this.#db.prepare<[string], Row>('SELECT * FROM decisions WHERE ip = ? AND offence > 0 ORDER BY id DESC LIMIT 1').get(ip);
    return row ? toRecord(row) : undefined;
  }

  /** The latest decision on a source, with its evidence (explain). */
  latestOn(ip: string): DecisionRecord | undefined {
    const row = this.#db.prepare<[string], Row & { evidence: string | null }>('SELECT * FROM decisions WHERE ip = ? ORDER BY id DESC LIMIT 1').get(ip);
    if (!row) return undefined;
    const evidence = decodeEvidence(row.evidence);
    return evidence ? { ...toRecord(row), evidence } : toRecord(row);
  }

  /** The highest decision id recorded (0 for none): ids go on from there. */
  lastId(): number {
    // The AUTOINCREMENT high-water mark too: decisions pruned by retention
    // (even all of them) never make an id come round again, which would
    // put a new decision behind a ListDecisions page token.
    return (
      this.#db
        .prepare("SELECT max(coalesce((SELECT max(id) FROM decisions), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0)) AS id")
        .get() as { id: number }
    ).id;
  }

  end(id: number, endedMs: number): boolean {
    return this.#end.run(Math.round(endedMs), id).changes === 1;
  }

  /** A shadow decision becomes a block (a start with PW_ENFORCE=True and PW_ENFORCE_SHADOW_DECISIONS=True). */
  enforce(id: number): boolean {
    return this.#enforce.run(id).changes === 1;
  }

  active(nowMs: number): DecisionRecord[] {
    return this.#activeStmt.all(Math.round(nowMs)).map(toRecord);
  }

  all(): DecisionRecord[] {
    return this.#allStmt.all().map(toRecord);
  }

  /**
   * Keyset pagination (ListDecisions): up to `limit` decisions with ids
   * above `afterId`, by id; with activeAtMs, only those active then.
   */
  page(afterId: number, limit: number, activeAtMs?: number): DecisionRecord[] {
    const rows =
      activeAtMs === undefined
        ? this.#db.prepare<[number, number], Row>('SELECT * FROM decisions WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit)
        : this.#db
            .prepare<[number, number, number], Row>(
              'SELECT * FROM decisions WHERE id > ? AND ended_ms IS NULL AND (expires_ms IS NULL OR expires_ms > ?) ORDER BY id LIMIT ?',
            )
            .all(afterId, Math.round(activeAtMs), limit);
    return rows.map(toRecord);
  }

  /**
   * Retention (PW_DECISION_RETENTION): deletes up to `limit` decisions that
   * ended, or expired, before `beforeMs`, of those with ids above
   * `afterId`; returns the ids deleted, ascending.
   *
   * An ended decision is also what lastEnded() finds at reconcile to lift,
   * rather than adopt, a block its unblock did not reach (a probe away for
   * months keeps a permanent block). Pruning must not bring such a block
   * back, so these are kept, whatever their age:
   *  - an ended decision whose block may still be in a kernel: permanent,
   *    or expiring after `beforeMs` (a block the policy made for it expires
   *    with it, give or take a BlockIp call, far less than the smallest
   *    retention) -- of permanent ones only an address's latest, which
   *    says as much as all of them;
   *  - an address's latest ended decision (what lastEnded returns), as long
   *    as the address keeps one of those: its end outranks every block
   *    created before it.
   * So an address whose blocks were all ended keeps at most two rows for as
   * long as one of its blocks may exist (forever, once a permanent one was
   * ended), and everything else goes.
   */
  prune(beforeMs: number, afterId: number, limit: number): number[] {
    const rows = this.#db
      .prepare<{ before: number; after: number; limit: number }, { id: number }>(
        `DELETE FROM decisions WHERE id IN (
          SELECT d.id FROM decisions AS d
          WHERE d.id > @after AND COALESCE(d.ended_ms, d.expires_ms) < @before
            AND NOT (d.ended_ms IS NOT NULL AND (
              ((d.expires_ms IS NULL OR d.expires_ms >= @before)
                AND NOT (d.expires_ms IS NULL AND EXISTS (
                  SELECT 1 FROM decisions AS p WHERE p.ip = d.ip AND p.ended_ms IS NOT NULL AND p.expires_ms IS NULL
                    AND (p.ended_ms, p.id) > (d.ended_ms, d.id))))
              OR (NOT EXISTS (
                  SELECT 1 FROM decisions AS l WHERE l.ip = d.ip AND l.ended_ms IS NOT NULL AND (l.ended_ms, l.id) > (d.ended_ms, d.id))
                AND EXISTS (
                  SELECT 1 FROM decisions AS s WHERE s.ip = d.ip AND s.ended_ms IS NOT NULL AND (s.expires_ms IS NULL OR s.expires_ms >= @before)))))
          ORDER BY d.id LIMIT @limit)
        RETURNING id`,
      )
      .all({ before: Math.round(beforeMs), after: afterId, limit });
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  /** The decision on an address that an unblock ended last, if any. */
  lastEnded(ip: string): DecisionRecord | undefined {
    const row = this.#lastEndedStmt.get(ip);
    return row ? toRecord(row) : undefined;
  }

  /** Operator allowlist entries. */
  allowEntries(): { prefix: string; note: string; addedMs: number }[] {
    return (this.#db.prepare('SELECT prefix, note, added_ms FROM allowlist ORDER BY added_ms').all() as { prefix: string; note: string; added_ms: number }[]).map(
      (r) => ({ prefix: r.prefix, note: r.note, addedMs: r.added_ms }),
    );
  }

  addAllow(prefix: string, note: string, addedMs: number): boolean {
    return this.#db.prepare('INSERT OR IGNORE INTO allowlist (prefix, note, added_ms) VALUES (?, ?, ?)').run(prefix, note, Math.round(addedMs)).changes === 1;
  }

  removeAllow(prefix: string): boolean {
    return this.#db.prepare('DELETE FROM allowlist WHERE prefix = ?').run(prefix).changes === 1;
  }

  close(): void {
    this.#db.close();
  }
}
