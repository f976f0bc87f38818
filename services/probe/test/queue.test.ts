import { describe, expect, it } from 'vitest';
import { EventQueue, type OutgoingBatch } from '../src/queue.js';

const RECORD = 4;

/** `count` records of RECORD bytes, each holding its number (first + i) as a u32. */
function records(first: number, count: number): Buffer {
  const b = Buffer.alloc(count * RECORD);
  for (let i = 0; i < count; i++) b.writeUInt32LE(first + i, i * RECORD);
  return b;
}

/** The record numbers in a batch's bytes. */
function numbers(b: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off < b.length; off += RECORD) out.push(b.readUInt32LE(off));
  return out;
}

/** A batch's records as one buffer (they come as one or two views of the queue's array). */
const bytesOf = (b: OutgoingBatch): Buffer => Buffer.concat(b.parts);

const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);

describe('EventQueue: capacity', () => {
  it('starts empty, with nothing to take', () => {
    const q = new EventQueue(10, 4, RECORD);
    expect(q.depth).toBe(0);
    expect(q.lostTotal).toBe(0);
    expect(q.take()).toBeUndefined();
  });

  it('accepts events up to the capacity and counts the rest lost', () => {
    const q = new EventQueue(5, 100, RECORD);
    expect(q.push(records(0, 3), 3)).toBe(3);
    expect(q.push(records(3, 4), 4)).toBe(2);
    expect(q.depth).toBe(5);
    expect(q.lostTotal).toBe(2);
    expect(q.push(records(7, 1), 1)).toBe(0);
    expect(q.depth).toBe(5);
    expect(q.lostTotal).toBe(3);

    const batch = q.take()!;
    expect(numbers(bytesOf(batch))).toEqual([0, 1, 2, 3, 4]);
    expect(batch.count).toBe(5);
    expect(batch.lost).toBe(3);
    expect(q.depth).toBe(0);
  });

  it('keeps the first records of a push that does not fit', () => {
    const q = new EventQueue(3, 100, RECORD);
    expect(q.push(records(10, 5), 5)).toBe(3);
    const batch = q.take()!;
    expect(numbers(bytesOf(batch))).toEqual([10, 11, 12]);
    expect(bytesOf(batch).length).toBe(3 * RECORD);
  });

  it('makes room again as events are taken', () => {
    const q = new EventQueue(4, 2, RECORD);
    q.push(records(0, 4), 4);
    q.take();
    expect(q.depth).toBe(2);
    expect(q.push(records(4, 3), 3)).toBe(2);
    expect(q.depth).toBe(4);
    expect(q.lostTotal).toBe(1);
  });

  it('accepts an empty push without effect', () => {
    const q = new EventQueue(4, 2, RECORD);
    expect(q.push(Buffer.alloc(0), 0)).toBe(0);
    expect(q.depth).toBe(0);
    expect(q.lostTotal).toBe(0);
    expect(q.take()).toBeUndefined();
  });
});

describe('EventQueue: lost events', () => {
  it('counts losses reported with addLost in lostTotal and in the next batch', () => {
    const q = new EventQueue(10, 10, RECORD);
    q.addLost(7);
    q.push(records(0, 2), 2);
    q.addLost(1);
    const batch = q.take()!;
    expect(batch.count).toBe(2);
    expect(batch.lost).toBe(8);
    expect(q.lostTotal).toBe(8);
  });

  it('reports losses once: the following batch starts again from zero', () => {
    const q = new EventQueue(10, 10, RECORD);
    q.addLost(3);
    q.push(records(0, 1), 1);
    expect(q.take()!.lost).toBe(3);
    q.push(records(1, 1), 1);
    expect(q.take()!.lost).toBe(0);
    expect(q.lostTotal).toBe(3);
  });

  it('returns a batch of no events carrying the losses when only losses are pending', () => {
    const q = new EventQueue(10, 10, RECORD);
    q.push(records(0, 2), 2);
    q.take();
    q.addLost(4);
    const batch = q.take()!;
    expect(batch.count).toBe(0);
    expect(bytesOf(batch).length).toBe(0);
    expect(batch.lost).toBe(4);
    expect(batch.firstSequence).toBe(2n);
    expect(q.take()).toBeUndefined();
  });

  it('reports losses of a push beyond capacity with the first batch that follows', () => {
    const q = new EventQueue(2, 1, RECORD);
    q.push(records(0, 5), 5);
    expect(q.take()).toMatchObject({ count: 1, lost: 3 });
    expect(q.take()).toMatchObject({ count: 1, lost: 0 });
    expect(q.take()).toBeUndefined();
    expect(q.lostTotal).toBe(3);
  });
});

describe('EventQueue: batches', () => {
  it('merges small segments into one batch of at most batchEvents', () => {
    const q = new EventQueue(100, 5, RECORD);
    q.push(records(0, 2), 2);
    q.push(records(2, 2), 2);
    q.push(records(4, 2), 2);

    const first = q.take()!;
    expect(first.count).toBe(5);
    expect(numbers(bytesOf(first))).toEqual([0, 1, 2, 3, 4]);
    expect(first.firstSequence).toBe(0n);

    const second = q.take()!;
    expect(second.count).toBe(1);
    expect(numbers(bytesOf(second))).toEqual([5]);
    expect(second.firstSequence).toBe(5n);
    expect(q.take()).toBeUndefined();
  });

  it('splits a segment larger than batchEvents over several batches', () => {
    const q = new EventQueue(100, 4, RECORD);
    q.push(records(0, 10), 10);
    const batches = [q.take()!, q.take()!, q.take()!];
    expect(batches.map((b) => b.count)).toEqual([4, 4, 2]);
    expect(batches.map((b) => numbers(bytesOf(b)))).toEqual([range(0, 4), range(4, 4), range(8, 2)]);
    expect(batches.map((b) => b.firstSequence)).toEqual([0n, 4n, 8n]);
    expect(q.take()).toBeUndefined();
    expect(q.depth).toBe(0);
  });

  it('takes one segment whole when it fills the batch exactly', () => {
    const q = new EventQueue(100, 3, RECORD);
    q.push(records(0, 3), 3);
    q.push(records(3, 3), 3);
    expect(numbers(bytesOf(q.take()!))).toEqual([0, 1, 2]);
    expect(numbers(bytesOf(q.take()!))).toEqual([3, 4, 5]);
  });

  it('numbers events continuously across pushes, splits and merges', () => {
    const q = new EventQueue(1000, 7, RECORD);
    let next = 0;
    for (const n of [3, 1, 9, 2, 15, 4]) {
      q.push(records(next, n), n);
      next += n;
    }
    const seen: number[] = [];
    let expectedSequence = 0n;
    for (let b = q.take(); b; b = q.take()) {
      expect(b.firstSequence).toBe(expectedSequence);
      expect(b.count).toBeLessThanOrEqual(7);
      expect(bytesOf(b).length).toBe(b.count * RECORD);
      expect(numbers(bytesOf(b))[0]).toBe(Number(b.firstSequence));
      seen.push(...numbers(bytesOf(b)));
      expectedSequence += BigInt(b.count);
    }
    expect(seen).toEqual(range(0, next));
    expect(expectedSequence).toBe(BigInt(next));
  });

  it('continues the sequence after the queue ran empty', () => {
    const q = new EventQueue(10, 10, RECORD);
    q.push(records(0, 3), 3);
    expect(q.take()!.firstSequence).toBe(0n);
    q.push(records(3, 2), 2);
    expect(q.take()!.firstSequence).toBe(3n);
  });

  it('gives sequence numbers only to accepted events', () => {
    const q = new EventQueue(2, 10, RECORD);
    q.push(records(0, 5), 5);
    expect(q.take()).toMatchObject({ count: 2, firstSequence: 0n, lost: 3 });
    q.push(records(5, 1), 1);
    expect(q.take()).toMatchObject({ count: 1, firstSequence: 2n, lost: 0 });
  });

  it('keeps order and counts across many small segments', () => {
    const q = new EventQueue(5000, 1000, RECORD);
    for (let i = 0; i < 3000; i++) q.push(records(i, 1), 1);
    const batches = [q.take()!, q.take()!, q.take()!];
    expect(batches.map((b) => b.count)).toEqual([1000, 1000, 1000]);
    expect(batches.map((b) => b.firstSequence)).toEqual([0n, 1000n, 2000n]);
    expect(batches.flatMap((b) => numbers(bytesOf(b)))).toEqual(range(0, 3000));
    expect(q.take()).toBeUndefined();
    q.push(records(3000, 2), 2);
    expect(q.take()).toMatchObject({ count: 2, firstSequence: 3000n });
  });
});

describe('EventQueue: its array', () => {
  it('keeps events in one array, wrapping around its end, and hands them out as one view or two', () => {
    const q = new EventQueue(5, 3, RECORD);
    q.push(records(0, 4), 4);
    const first = q.take()!;
    expect(first.parts).toHaveLength(1);
    expect(first.parts[0]!.buffer).toBe(q.buffer.buffer);
    expect(numbers(bytesOf(first))).toEqual([0, 1, 2]);
    // Slots 4, 0, 1, 2 now: the push wraps.
    expect(q.push(records(4, 4), 4)).toBe(4);
    expect(q.depth).toBe(5);
    const second = q.take()!;
    expect(second.parts.map((p) => p.length / RECORD)).toEqual([2, 1]);
    expect(numbers(bytesOf(second))).toEqual([3, 4, 5]);
    expect(second.firstSequence).toBe(3n);
    expect(numbers(bytesOf(q.take()!))).toEqual([6, 7]);
    expect(q.take()).toBeUndefined();
  });

  it('shows the reader where to write and how much room there is, through the cursor', () => {
    const q = new EventQueue(4, 3, RECORD);
    expect([...q.cursor]).toEqual([0, 4]);
    q.push(records(0, 3), 3);
    expect([...q.cursor]).toEqual([3, 1]);
    q.take();
    expect([...q.cursor]).toEqual([3, 4]);
    q.push(records(3, 2), 2);
    expect([...q.cursor]).toEqual([1, 2]);
  });

  it('takes events a reader wrote at the cursor (onRecords), and counts those it dropped as lost', () => {
    const q = new EventQueue(4, 10, RECORD);
    q.push(records(0, 3), 3);
    q.take();
    // As the ring-buffer reader does: write from cursor[0] (mod capacity) into at most cursor[1] slots.
    const [tail, free] = q.cursor;
    const incoming = records(100, 6);
    for (let i = 0; i < free!; i++) incoming.copy(q.buffer, ((tail! + i) % q.capacity) * RECORD, i * RECORD, (i + 1) * RECORD);
    q.onRecords(free!, 6 - free!);
    const batch = q.take()!;
    expect(numbers(bytesOf(batch))).toEqual([100, 101, 102, 103]);
    expect(batch).toMatchObject({ count: 4, lost: 2, firstSequence: 3n });
  });

  it('shows each added event to onAdded before it can be taken, in place, and sends what it rewrote', () => {
    const seen: number[][] = [];
    const q = new EventQueue(4, 10, RECORD, (recs, count) => {
      seen.push(numbers(recs));
      expect(recs.length).toBe(count * RECORD);
      for (let off = 0; off < recs.length; off += RECORD) recs.writeUInt32LE(recs.readUInt32LE(off) + 1000, off);
    });
    q.push(records(0, 3), 3);
    q.take();
    q.push(records(3, 3), 3);
    expect(seen).toEqual([[0, 1, 2], [3], [4, 5]]);
    expect(numbers(bytesOf(q.take()!))).toEqual([1003, 1004, 1005]);
  });
});
