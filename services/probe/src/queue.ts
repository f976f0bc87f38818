// The bounded queue between the ring buffer and the policy stream. It holds
// at most `capacity` events; what does not fit is counted as lost and
// reported with the next batch, never buffered without bound.
//
// The events live in one circular array of `capacity` records, allocated
// once: the ring-buffer reader writes them straight into it (the queue is its
// RecordSink) and the reporter copies them from it into the outgoing message,
// so no Buffer is made per wake-up or per event. The array's pages are
// touched as they are first used: a queue that never fills costs what it
// held, up to capacity * recordSize bytes.
import type { RecordSink } from 'libbpf-ts';

export interface OutgoingBatch {
  /**
   * The records, back to back, as one view of the queue's array or two where
   * they wrap around its end. Views, not copies: they stay valid until events
   * are added again, so copy them out first (the reader adds events from the
   * event loop, never while a caller runs).
   */
  parts: Buffer[];
  count: number;
  /** Events lost since the previous batch. */
  lost: number;
  firstSequence: bigint;
}

const NO_PARTS: Buffer[] = [];

export class EventQueue implements RecordSink {
  readonly buffer: Buffer;
  /** [slot of the next event, free slots], as the ring-buffer reader reads them. */
  readonly cursor = new Uint32Array(2);
  #head = 0;
  #depth = 0;
  #nextSequence = 0n;
  #lostSinceTake = 0;
  #lostTotal = 0;

  /**
   * @param onAdded called with the events just added, as one or two views of
   *   the array (where they wrap), before they can be taken: the place to
   *   rewrite them in place
   */
  constructor(
    readonly capacity: number,
    readonly batchEvents: number,
    readonly recordSize: number,
    private readonly onAdded?: (records: Buffer, count: number) => void,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0xffff_ffff) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.buffer = Buffer.allocUnsafeSlow(capacity * recordSize);
    this.#sync();
  }

  get depth(): number {
    return this.#depth;
  }

  get lostTotal(): number {
    return this.#lostTotal;
  }

  /** Adds records (back to back) by copying them in; returns how many were accepted. */
  push(records: Buffer, count: number): number {
    const accepted = Math.min(this.capacity - this.#depth, count);
    let from = 0;
    for (const slots of this.#slots(this.cursor[0]!, accepted)) from += records.copy(slots, 0, from);
    this.onRecords(accepted, count - accepted);
    return accepted;
  }

  /**
   * RecordSink: `written` events were put in the slots from cursor[0] on (the
   * ring-buffer reader, or push), `dropped` more did not fit and are lost.
   */
  onRecords(written: number, dropped: number): void {
    if (dropped > 0) this.addLost(dropped);
    if (written === 0) return;
    if (this.onAdded) for (const slots of this.#slots(this.cursor[0]!, written)) this.onAdded(slots, slots.length / this.recordSize);
    this.#depth += written;
    this.#nextSequence += BigInt(written);
    this.#sync();
  }

  /** Counts events lost before they reached the queue (e.g. a full ring buffer). */
  addLost(n: number): void {
    this.#lostSinceTake += n;
    this.#lostTotal += n;
  }

  /** Up to batchEvents events as one batch; undefined when empty and nothing was lost. */
  take(): OutgoingBatch | undefined {
    const lost = this.#lostSinceTake;
    if (this.#depth === 0 && lost === 0) return undefined;
    this.#lostSinceTake = 0;
    const count = Math.min(this.#depth, this.batchEvents);
    const firstSequence = this.#nextSequence - BigInt(this.#depth);
    let parts = NO_PARTS;
    if (count > 0) {
      parts = this.#slots(this.#head, count);
      this.#head = (this.#head + count) % this.capacity;
      this.#depth -= count;
      this.#sync();
    }
    return { parts, count, lost, firstSequence };
  }

  /** The `count` slots from slot `start` on, as one view of the array or two where they wrap around its end. */
  #slots(start: number, count: number): Buffer[] {
    const size = this.recordSize;
    const first = Math.min(count, this.capacity - start);
    const views = [this.buffer.subarray(start * size, (start + first) * size)];
    if (count > first) views.push(this.buffer.subarray(0, (count - first) * size));
    return views;
  }

  #sync(): void {
    this.cursor[0] = (this.#head + this.#depth) % this.capacity;
    this.cursor[1] = this.capacity - this.#depth;
  }
}
