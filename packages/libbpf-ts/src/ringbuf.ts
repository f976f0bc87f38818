// Ring-buffer reader: the ring buffer's epoll descriptor is watched by the
// event loop; when records are waiting they are all consumed at once and
// handed over as one RecordBatch (one JS call per wake-up, not per record).
import { BpfError, native as call } from './errors.js';
import type { BpfMap } from './map.js';
import { MapType } from './map.js';
import { type NativeRingBuffer, native } from './native.js';

export class RecordBatch {
  /**
   * @param buffer records back to back (fixed size), or each prefixed by its
   *   u32 length and padded to 8 bytes (variable size)
   */
  constructor(
    readonly buffer: Buffer,
    readonly count: number,
    readonly recordSize: number,
  ) {}

  /** The records as views into the batch's buffer (no copies). */
  *[Symbol.iterator](): IterableIterator<Buffer> {
    if (this.recordSize > 0) {
      for (let off = 0; off < this.count * this.recordSize; off += this.recordSize) {
        yield this.buffer.subarray(off, off + this.recordSize);
      }
      return;
    }
    let off = 0;
    for (let i = 0; i < this.count; i++) {
      const len = this.buffer.readUInt32LE(off);
      yield this.buffer.subarray(off + 4, off + 4 + len);
      off += (4 + len + 7) & ~7;
    }
  }
}

/**
 * Where a reader writes records instead of handing over a Buffer per
 * wake-up: a circular array of `capacity` records of the reader's fixed size
 * (record i at byte ((i mod capacity) * recordSize) of `buffer`), which its
 * owner (a queue) reads from. Before every drain the reader reads `cursor`:
 * cursor[0] is the slot the next record goes to, cursor[1] how many slots are
 * free; the owner keeps both current. Records beyond the free slots are
 * consumed from the ring and counted as dropped, never overwrite a slot.
 */
export interface RecordSink {
  readonly buffer: Buffer;
  readonly capacity: number;
  readonly cursor: Uint32Array;
  /**
   * Called after each drain by the event loop that found records: `written`
   * records now fill the slots from cursor[0] on (mod capacity), `dropped`
   * more did not fit. The owner advances the cursor.
   */
  onRecords(written: number, dropped: number): void;
}

export interface RingBufferReaderOptions {
  /** Size of every record; records of another size are skipped and counted. 0: variable. */
  recordSize?: number;
  /** Called once per wake-up with every record that was waiting. */
  onBatch?: (batch: RecordBatch) => void;
  /** Called when polling fails; without it the error is thrown on the event loop. */
  onError?: (err: BpfError) => void;
  /**
   * Milliseconds to gather records after a wake-up that delivered some, while
   * they keep coming (0, the default: deliver at every wake-up). The first
   * record after a quiet spell is still delivered at once; a steady stream is
   * delivered once per interval, in fewer and larger batches, with fewer
   * wake-ups of this process and of the kernel's ring buffer.
   */
  coalesceMs?: number;
  /**
   * Records read by the event loop go into this sink (fixed record size
   * only), copied once from the ring, with no Buffer per wake-up; onBatch and
   * next() then see nothing from the event loop. consume() still returns a
   * RecordBatch.
   */
  sink?: RecordSink;
}

export interface RingBufferStats {
  /** Records handed over so far. */
  records: number;
  /** Batches handed over so far. */
  batches: number;
  /** Records skipped because their size was not recordSize. */
  wrongSize: number;
}

export class RingBufferReader {
  readonly #rb: NativeRingBuffer;
  readonly recordSize: number;
  readonly coalesceMs: number;
  #onBatch?: (batch: RecordBatch) => void;
  #closed = false;
  #waiters: { resolve: (b: RecordBatch) => void; reject: (e: Error) => void }[] = [];

  constructor(map: BpfMap, opts: RingBufferReaderOptions = {}) {
    if (map.type !== MapType.RingBuf) throw new TypeError(`map ${map.name} is not a ring buffer`);
    this.recordSize = opts.recordSize ?? 0;
    this.coalesceMs = opts.coalesceMs ?? 0;
    if (!Number.isInteger(this.coalesceMs) || this.coalesceMs < 0 || this.coalesceMs > 1000) {
      throw new RangeError(`coalesceMs must be an integer in 0..1000, got ${opts.coalesceMs}`);
    }
    const sink = opts.sink;
    if (sink) {
      if (this.recordSize === 0) throw new TypeError('a ring-buffer sink needs a fixed recordSize');
      if (!Number.isInteger(sink.capacity) || sink.capacity < 1 || sink.capacity > 0xffff_ffff || sink.buffer.length < sink.capacity * this.recordSize) {
        throw new RangeError(`sink capacity must be an integer from 1 to its buffer's length / ${this.recordSize}, got ${sink.capacity}`);
      }
      if (sink.cursor.length < 2) throw new RangeError('sink cursor must have 2 elements');
    }
    this.#onBatch = opts.onBatch;
    const onError =
      opts.onError ??
      ((e: BpfError) => {
        throw e;
      });
    this.#rb = call(
      () =>
        new native.RingBuffer(map.fd, this.recordSize, (err, buf, count, dropped) => {
          if (err) {
            const typed = call(() => {
              throw err;
            });
            onError(typed);
            return;
          }
          if (buf) this.#deliver(new RecordBatch(buf, count, this.recordSize));
          else if (sink) sink.onRecords(count, dropped ?? 0);
        }),
    );
    if (sink) call(() => this.#rb.setSink(sink.buffer, sink.capacity, sink.cursor));
  }

  /** Starts watching the ring buffer on the event loop. */
  start(): this {
    this.#live();
    call(() => this.#rb.start(this.coalesceMs));
    return this;
  }

  /** Stops watching; records stay in the ring until the next start() or consume(). */
  stop(): void {
    if (!this.#closed) this.#rb.stop();
  }

  /** Reads whatever is waiting, synchronously, without the event loop. */
  consume(): RecordBatch {
    this.#live();
    const r = call(() => this.#rb.consume());
    return new RecordBatch(r.buffer, r.count, this.recordSize);
  }

  /**
   * The next batch delivered by the event loop (start() must have been called).
   * Rejects after timeoutMs when given.
   */
  next(timeoutMs?: number): Promise<RecordBatch> {
    return new Promise((resolve, reject) => {
      // A closed reader delivers nothing more: a waiter would never settle.
      if (this.#closed) {
        reject(closedError());
        return;
      }
      const waiter = { resolve, reject };
      this.#waiters.push(waiter);
      if (timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new Error(`no ring-buffer records within ${timeoutMs} ms`));
        }, timeoutMs);
        const settle = waiter.resolve;
        waiter.resolve = (b) => {
          clearTimeout(timer);
          settle(b);
        };
        // close() rejects the waiter: the timer must not outlive it and keep
        // the process alive for up to timeoutMs.
        const fail = waiter.reject;
        waiter.reject = (e) => {
          clearTimeout(timer);
          fail(e);
        };
      }
    });
  }

  /** Lets the process exit while the reader is still watching. */
  unref(): void {
    this.#rb.unref();
  }

  ref(): void {
    this.#rb.ref();
  }

  stats(): RingBufferStats {
    return this.#rb.stats();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rb.close();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(new Error('ring-buffer reader closed'));
  }

  #deliver(batch: RecordBatch): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve(batch);
    this.#onBatch?.(batch);
  }

  #live(): void {
    if (this.#closed) throw closedError();
  }
}

function closedError(): BpfError {
  return new BpfError('ring-buffer reader is closed', { errno: 9, code: 'EBADF', op: 'ring buffer' });
}
