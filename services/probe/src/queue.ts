// The bounded queue between the ring buffer and the policy stream. It holds
// at most `capacity` events; what does not fit is counted as lost and
// reported with the next batch, never buffered without bound.

export interface OutgoingBatch {
  records: Buffer;
  count: number;
  /** Events lost since the previous batch. */
  lost: number;
  firstSequence: bigint;
}

interface Segment {
  records: Buffer;
  count: number;
  firstSequence: bigint;
}

export class EventQueue {
  #segments: Segment[] = [];
  #head = 0;
  #depth = 0;
  #nextSequence = 0n;
  #lostSinceTake = 0;
  #lostTotal = 0;

  constructor(
    readonly capacity: number,
    readonly batchEvents: number,
    readonly recordSize: number,
  ) {}

  get depth(): number {
    return this.#depth;
  }

  get lostTotal(): number {
    return this.#lostTotal;
  }

  /** Adds records (back to back); returns how many were accepted. */
  push(records: Buffer, count: number): number {
    const room = this.capacity - this.#depth;
    const accepted = Math.min(room, count);
    if (accepted < count) this.addLost(count - accepted);
    if (accepted === 0) return 0;
    const bytes = accepted === count ? records : records.subarray(0, accepted * this.recordSize);
    this.#segments.push({ records: bytes, count: accepted, firstSequence: this.#nextSequence });
    this.#nextSequence += BigInt(accepted);
    this.#depth += accepted;
    return accepted;
  }

  /** Counts events lost before they reached the queue (e.g. a full ring buffer). */
  addLost(n: number): void {
    this.#lostSinceTake += n;
    this.#lostTotal += n;
  }

  /** Up to batchEvents events as one batch, merging small segments; undefined when empty and nothing was lost. */
  take(): OutgoingBatch | undefined {
    if (this.#depth === 0) {
      if (this.#lostSinceTake === 0) return undefined;
      const lost = this.#lostSinceTake;
      this.#lostSinceTake = 0;
      return { records: Buffer.alloc(0), count: 0, lost, firstSequence: this.#nextSequence };
    }
    const parts: Buffer[] = [];
    let count = 0;
    let firstSequence: bigint | undefined;
    while (count < this.batchEvents && this.#head < this.#segments.length) {
      const seg = this.#segments[this.#head]!;
      firstSequence ??= seg.firstSequence;
      const n = Math.min(seg.count, this.batchEvents - count);
      if (n === seg.count) {
        parts.push(seg.records);
        this.#head++;
      } else {
        parts.push(seg.records.subarray(0, n * this.recordSize));
        this.#segments[this.#head] = {
          records: seg.records.subarray(n * this.recordSize),
          count: seg.count - n,
          firstSequence: seg.firstSequence + BigInt(n),
        };
      }
      count += n;
    }
    // Compact the consumed prefix now and then rather than shifting per take.
    if (this.#head > 1024 || this.#head === this.#segments.length) {
      this.#segments = this.#segments.slice(this.#head);
      this.#head = 0;
    }
    this.#depth -= count;
    const lost = this.#lostSinceTake;
    this.#lostSinceTake = 0;
    return {
      records: parts.length === 1 ? parts[0]! : Buffer.concat(parts),
      count,
      lost,
      firstSequence: firstSequence ?? this.#nextSequence,
    };
  }
}
