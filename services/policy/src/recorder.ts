// Writes to the decision store, made so that enforcement never waits on
// them. A write the store refuses (a full disk, a damaged page, someone
// else's lock) is held in memory, with every write after it, in order, and
// retried on the next write and every RETRY_MS until the store takes them.
// From a failed statement until a later write succeeds with nothing held,
// the policy says so: health NOT_SERVING (onHealth), a counter per
// operation, one log line per kind of failure, and GetStatus.
import { GrpcStatus, type Logger, ServerError } from '@packetwatch/common';
import type { PolicyMetrics } from './metrics.js';
import { type DecisionRecord, type DecisionStore, errorCode, whatFailed } from './store.js';

/** What the store was asked to do, as the store-errors counter labels it. */
export const STORE_OPS = ['insert', 'end', 'enforce', 'allow_add', 'allow_remove', 'read'] as const;
export type StoreOp = (typeof STORE_OPS)[number];

type Write =
  | { op: 'insert'; decision: DecisionRecord }
  /** decision.endedMs is set. */
  | { op: 'end'; decision: DecisionRecord }
  /** A shadow decision made a block. */
  | { op: 'enforce'; decision: DecisionRecord }
  | { op: 'allow_add'; prefix: string; note: string; addedMs: number }
  | { op: 'allow_remove'; prefix: string };

/** How often held writes are tried again when no new write comes. */
export const RETRY_MS = 5000;
/**
 * Writes held at most (about 200 bytes each). Detections and adoptions
 * share the blocks-per-minute cap, so this is hours of them; beyond, a write
 * is not kept (counted, logged) and enforcement is unaffected.
 */
export const MAX_HELD_WRITES = 100_000;

/** A write that cannot succeed as it is: retried, it would hold back every write after it for good. */
const cannotSucceed = (code: string | undefined) => /^SQLITE_(CONSTRAINT|TOOBIG|MISMATCH)/.test(code ?? '');

export interface StoreState {
  /** Writes held in memory for the store. */
  held: number;
  /** The store's latest failure ("insert: database or disk is full (SQLITE_FULL)"), until a later write succeeds with nothing held. */
  failure: string | undefined;
}

export class Recorder {
  /** Writes the store has not taken yet, oldest first from #head. */
  #held: Write[] = [];
  #head = 0;
  /** How many held writes there are of each decision, by id. */
  readonly #heldIds = new Map<number, number>();
  /** Held ends by address: the newest, and how many there are. */
  readonly #heldEnds = new Map<string, { newest: DecisionRecord; n: number }>();
  #nextId: number;
  #failure: string | undefined;
  /** Kinds of failure (operation and code) logged since the store last recovered. */
  readonly #logged = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<(serving: boolean) => void>();

  constructor(
    private readonly store: DecisionStore,
    private readonly metrics: PolicyMetrics,
    private readonly log: Logger,
    private readonly maxHeld = MAX_HELD_WRITES,
  ) {
    this.#nextId = store.lastId() + 1;
  }

  /** The id of a new decision: given now, so that a decision has one before (and whether or not) the store takes it. */
  newId(): number {
    return this.#nextId++;
  }

  insert(d: DecisionRecord): void {
    this.#write({ op: 'insert', decision: d });
  }

  /** Records the end of a decision (d.endedMs set). */
  end(d: DecisionRecord): void {
    this.#write({ op: 'end', decision: d });
  }

  /** Records that a shadow decision is a block now. */
  enforce(d: DecisionRecord): void {
    this.#write({ op: 'enforce', decision: d });
  }

  addAllow(prefix: string, note: string, addedMs: number): void {
    this.#write({ op: 'allow_add', prefix, note, addedMs });
  }

  removeAllow(prefix: string): void {
    this.#write({ op: 'allow_remove', prefix });
  }

  /**
   * A read of the store. A failure counts and logs like a write's and is
   * refused with UNAVAILABLE: there is no answer to give without the store.
   */
  read<T>(fn: (store: DecisionStore) => T): T {
    try {
      return fn(this.store);
    } catch (e) {
      throw new ServerError(GrpcStatus.UNAVAILABLE, `the decision store cannot be read: ${this.#failed('read', e)}`);
    }
  }

  /** The decision on an address that an unblock ended last, held ends included (they are the newest). */
  lastEnded(ip: string): DecisionRecord | undefined {
    return this.#heldEnds.get(ip)?.newest ?? this.read((s) => s.lastEnded(ip));
  }

  /** Whether a change to this decision (its creation or its end) is held, not yet in the store. */
  unrecorded(id: number): boolean {
    return this.#heldIds.has(id);
  }

  get state(): StoreState {
    return { held: this.#held.length - this.#head, failure: this.#failure };
  }

  /** Whether the store is taking writes; see the header. */
  get serving(): boolean {
    return this.#failure === undefined;
  }

  /** Calls fn(serving) whenever that changes. */
  onHealth(fn: (serving: boolean) => void): void {
    this.#listeners.add(fn);
  }

  /** Tries the held writes, oldest first, until the store refuses one. */
  flush(): void {
    let made = false;
    while (this.#head < this.#held.length) {
      const w = this.#held[this.#head]!;
      const outcome = this.#make(w);
      if (outcome === 'refused') {
        // Drop what was taken, now and then, not at every write.
        if (this.#head > 1024 && this.#head * 2 > this.#held.length) {
          this.#held = this.#held.slice(this.#head);
          this.#head = 0;
        }
        return;
      }
      made ||= outcome === 'made';
      this.#release(w);
    }
    this.#held = [];
    this.#head = 0;
    this.#stopRetrying();
    if (made) this.#succeeded();
  }

  /** Stops retrying after one last try; says what is lost if the store still refuses. */
  close(): void {
    this.flush();
    this.#stopRetrying();
    const { held } = this.state;
    if (held > 0) this.log.error({ held, failure: this.#failure }, 'stopping with writes the decision store never took: they are lost (enforcement is not: the probes keep their blocks)');
  }

  #write(w: Write): void {
    if (this.#head < this.#held.length) {
      this.#hold(w);
      this.flush();
      return;
    }
    const outcome = this.#make(w);
    if (outcome === 'made') this.#succeeded();
    if (outcome !== 'refused') return;
    this.#hold(w);
    this.#timer ??= setInterval(() => this.flush(), RETRY_MS);
    this.#timer.unref();
  }

  /** Makes one write: made, refused (to be tried again), or dropped (it cannot succeed). */
  #make(w: Write): 'made' | 'refused' | 'dropped' {
    try {
      const s = this.store;
      if (w.op === 'insert') s.insert(w.decision);
      else if (w.op === 'end') s.end(w.decision.id, w.decision.endedMs!);
      else if (w.op === 'enforce') s.enforce(w.decision.id);
      else if (w.op === 'allow_add') s.addAllow(w.prefix, w.note, w.addedMs);
      else s.removeAllow(w.prefix);
      return 'made';
    } catch (e) {
      const failure = this.#failed(w.op, e);
      if (!cannotSucceed(errorCode(e))) return 'refused';
      this.metrics.counts.storeWritesDropped++;
      this.log.error({ op: w.op, failure, write: w }, 'the decision store refused a write that cannot succeed as it is: not kept');
      return 'dropped';
    }
  }

  #hold(w: Write): void {
    if (this.#held.length - this.#head >= this.maxHeld) {
      this.metrics.counts.storeWritesDropped++;
      this.#once('dropped', () => this.log.error({ held: this.maxHeld }, 'decision store: as many writes held as kept at most; further ones are not kept (enforcement is unaffected)'));
      return;
    }
    this.#held.push(w);
    if (!('decision' in w)) return;
    const { id, ip } = w.decision;
    this.#heldIds.set(id, (this.#heldIds.get(id) ?? 0) + 1);
    // Ends are held in the order they were made: the last one is the newest.
    if (w.op === 'end') this.#heldEnds.set(ip, { newest: w.decision, n: (this.#heldEnds.get(ip)?.n ?? 0) + 1 });
  }

  #release(w: Write): void {
    this.#head++;
    if (!('decision' in w)) return;
    const { id, ip } = w.decision;
    const n = this.#heldIds.get(id)! - 1;
    if (n === 0) this.#heldIds.delete(id);
    else this.#heldIds.set(id, n);
    if (w.op !== 'end') return;
    const ends = this.#heldEnds.get(ip)!;
    if (--ends.n === 0) this.#heldEnds.delete(ip);
  }

  /** Counts and logs a failed statement; returns what went wrong, for status and callers. */
  #failed(op: StoreOp, e: unknown): string {
    const code = errorCode(e);
    const failure = `${op}: ${whatFailed(e)}`;
    this.metrics.counts.storeErrors[op]++;
    const first = this.#failure === undefined;
    this.#failure = failure;
    this.#once(`${op} ${code}`, () =>
      this.log.error(
        { op, code, failure },
        first
          ? 'decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried'
          : 'decision store failed in another way',
      ),
    );
    if (first) for (const fn of this.#listeners) fn(false);
    return failure;
  }

  /** A write succeeded and nothing is held: the store is serving again. */
  #succeeded(): void {
    if (this.#failure === undefined) return;
    this.log.warn({ failure: this.#failure }, 'decision store takes writes again, every held write recorded: health SERVING');
    this.#failure = undefined;
    this.#logged.clear();
    for (const fn of this.#listeners) fn(true);
  }

  #once(kind: string, logIt: () => void): void {
    if (this.#logged.has(kind)) return;
    this.#logged.add(kind);
    logIt();
  }

  #stopRetrying(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
