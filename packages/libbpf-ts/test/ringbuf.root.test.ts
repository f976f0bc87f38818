// RingBufferReader: records written by the fixture's XDP programs during
// BPF_PROG_TEST_RUN, read synchronously (consume) and through the event loop
// (start/next), in fixed-size and variable-size modes.
import { BpfError, type Collection, ObjectSpec, RecordBatch, RingBufferReader, bytes, struct, u32 } from 'libbpf-ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CompiledFixtures, compileFixtures, packet } from './helpers.js';

// struct record { __u32 len; __u32 seq; __u8 head[8]; }
const record = struct<{ len: number; seq: number; head: Buffer }>(16, {
  len: { offset: 0, codec: u32 },
  seq: { offset: 4, codec: u32 },
  head: { offset: 8, codec: bytes(8) },
});

let fx: CompiledFixtures;
let col: Collection;
const readers: RingBufferReader[] = [];

beforeAll(() => {
  fx = compileFixtures('maps');
  col = ObjectSpec.open(fx.path('maps')).load();
});
afterEach(() => {
  for (const r of readers.splice(0)) r.close();
});
afterAll(() => {
  col?.close();
  fx?.cleanup();
});

/** A reader on the fixture's ring buffer, emptied first (the ring is shared by the tests). */
function reader(opts: ConstructorParameters<typeof RingBufferReader>[1] = {}): RingBufferReader {
  const r = new RingBufferReader(col.map('events'), opts);
  readers.push(r);
  r.consume();
  return r;
}

/** The sequence number the next record will carry (.bss `seq`). */
function nextSeq(): number {
  return col.map('maps.bss').lookup(Buffer.alloc(4))?.readUInt32LE(0) ?? -1;
}

function run(prog: 'xdp_record' | 'xdp_record_var', data: Buffer, repeat = 1): void {
  col.program(prog).testRun({ data, repeat });
}

/** Lets the event loop turn n times (poll phase included), without waiting on a clock. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('consume', () => {
  it('returns exactly the records written, in order, with a fixed record size', () => {
    const r = reader({ recordSize: 16 });
    const seq = nextSeq();
    run('xdp_record', packet(64), 3);
    const batch = r.consume();
    expect(batch).toBeInstanceOf(RecordBatch);
    expect(batch.count).toBe(3);
    expect(batch.recordSize).toBe(16);
    expect(batch.buffer.length).toBe(48);
    const head = packet(8);
    expect([...batch].map((b) => record.read(b, 0))).toEqual([
      { len: 64, seq, head },
      { len: 64, seq: seq + 1, head },
      { len: 64, seq: seq + 2, head },
    ]);
    expect(r.stats()).toEqual({ records: 3, batches: 1, wrongSize: 0 });
  });

  it('returns an empty batch when nothing is waiting', () => {
    const r = reader({ recordSize: 16 });
    const batch = r.consume();
    expect(batch.count).toBe(0);
    expect(batch.buffer.length).toBe(0);
    expect([...batch]).toEqual([]);
    expect(r.stats()).toEqual({ records: 0, batches: 0, wrongSize: 0 });
  });

  it('skips records of another size and counts them in stats().wrongSize', () => {
    const r = reader({ recordSize: 16 });
    const seq = nextSeq();
    run('xdp_record_var', packet(40, 0)); // 8 bytes
    run('xdp_record_var', packet(41, 8)); // 16 bytes
    run('xdp_record_var', packet(42, 20)); // 28 bytes
    const batch = r.consume();
    expect(batch.count).toBe(1);
    const [only] = [...batch];
    expect(only?.length).toBe(16);
    expect(only?.readUInt32LE(0)).toBe(41);
    expect(only?.readUInt32LE(4)).toBe(seq + 1);
    expect(only?.subarray(8)).toEqual(Buffer.from([0, 1, 2, 3, 4, 5, 6, 7]));
    expect(r.stats()).toEqual({ records: 1, batches: 1, wrongSize: 2 });
  });

  it('iterates records of different lengths in variable-size mode', () => {
    const r = reader({ recordSize: 0 });
    const seq = nextSeq();
    const extras = [0, 5, 56, 200]; // the program caps the tail at 56 bytes
    extras.forEach((extra, i) => run('xdp_record_var', packet(60 + i, extra)));
    const batch = r.consume();
    expect(batch.count).toBe(4);
    expect(batch.recordSize).toBe(0);
    const records = [...batch];
    expect(records.map((b) => b.length)).toEqual([8, 13, 64, 64]);
    records.forEach((b, i) => {
      const tail = Math.min(extras[i] ?? 0, 56);
      expect(b.readUInt32LE(0)).toBe(60 + i);
      expect(b.readUInt32LE(4)).toBe(seq + i);
      expect(b.subarray(8)).toEqual(Buffer.from(Array.from({ length: tail }, (_, j) => j)));
    });
  });

  it('reads fixed-size records as variable-size ones of that length', () => {
    const r = reader();
    expect(r.recordSize).toBe(0);
    run('xdp_record', packet(64), 2);
    expect([...r.consume()].map((b) => b.length)).toEqual([16, 16]);
  });
});

describe('event loop', () => {
  it('delivers records written after start() through next()', async () => {
    const r = reader({ recordSize: 16 }).start();
    const seq = nextSeq();
    const pending = r.next(2000);
    run('xdp_record', packet(64), 2);
    const batch = await pending;
    // Both records were in the ring when the loop woke: one batch holds both.
    expect(batch.count).toBe(2);
    expect([...batch].map((b) => record.read(b, 0).seq)).toEqual([seq, seq + 1]);
    expect(r.stats()).toEqual({ records: 2, batches: 1, wrongSize: 0 });
  });

  it('hands each batch to onBatch as well', async () => {
    const seen: RecordBatch[] = [];
    const r = reader({ recordSize: 16, onBatch: (b) => seen.push(b) }).start();
    const pending = r.next(2000);
    run('xdp_record', packet(64));
    const batch = await pending;
    expect(seen).toEqual([batch]);
    expect(seen[0]).toBe(batch);
  });

  it('delivers records that were waiting when start() was called', async () => {
    const r = reader({ recordSize: 16 });
    run('xdp_record', packet(64), 3);
    r.start();
    expect((await r.next(2000)).count).toBe(3);
  });

  it('leaves records in the ring after stop() until consume()', async () => {
    const r = reader({ recordSize: 16 }).start();
    r.stop();
    run('xdp_record', packet(64), 2);
    await turns(20);
    expect(r.stats().batches).toBe(0);
    expect(r.consume().count).toBe(2);
  });

  /** Delivers one record, then two more with event-loop turns between them; returns the batch sizes. */
  async function oneThenTwo(r: RingBufferReader): Promise<number[]> {
    const counts: number[] = [];
    const first = r.next(2000);
    run('xdp_record', packet(64));
    counts.push((await first).count);
    const second = r.next(3000);
    run('xdp_record', packet(64));
    await turns(20);
    run('xdp_record', packet(64));
    counts.push((await second).count);
    return counts;
  }

  it('without coalescing, delivers a record at the wake-up it causes', async () => {
    const r = reader({ recordSize: 16 }).start();
    expect(await oneThenTwo(r)).toEqual([1, 1]);
    expect((await r.next(2000)).count).toBe(1);
  });

  it('with coalesceMs, delivers the first record at once and gathers those that follow a delivery', async () => {
    const r = reader({ recordSize: 16, coalesceMs: 1000 }).start();
    const seq = nextSeq();
    expect(await oneThenTwo(r)).toEqual([1, 2]);
    // Records keep being delivered once the stream goes quiet again, in order.
    const third = r.next(5000);
    run('xdp_record', packet(64));
    const batch = await third;
    expect([...batch].map((b) => record.read(b, 0).seq)).toEqual([seq + 3]);
    expect(r.stats()).toEqual({ records: 4, batches: 3, wrongSize: 0 });
  });

  it('refuses a coalesceMs that is not an integer in 0..1000', () => {
    for (const coalesceMs of [-1, 1.5, 1001, Number.NaN]) {
      expect(() => new RingBufferReader(col.map('events'), { coalesceMs })).toThrow(RangeError);
    }
  });

  it('rejects next() when nothing arrives within its timeout', async () => {
    const r = reader({ recordSize: 16 }).start();
    await expect(r.next(20)).rejects.toThrow('no ring-buffer records within 20 ms');
  });
});

describe('close', () => {
  it('rejects a pending next()', async () => {
    const r = reader({ recordSize: 16 }).start();
    const pending = r.next();
    r.close();
    await expect(pending).rejects.toThrow('ring-buffer reader closed');
  });

  it('clears the timer of a pending next()', async () => {
    const timers = (): number => process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length;
    const r = reader({ recordSize: 16 }).start();
    const before = timers();
    const outcome = r.next(60_000).then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    expect(timers()).toBe(before + 1);
    r.close();
    expect(timers()).toBe(before);
    expect(await outcome).toBe('ring-buffer reader closed');
  });

  it('makes a later next() reject with BpfError EBADF at once', async () => {
    const r = reader({ recordSize: 16 }).start();
    r.close();
    // The timeout only bounds the test should next() wait instead.
    await expect(r.next(1000)).rejects.toMatchObject({ name: 'BpfError', code: 'EBADF' });
  });

  it('makes consume() and start() throw BpfError EBADF', () => {
    const r = reader({ recordSize: 16 });
    r.close();
    for (const call of [() => r.consume(), () => r.start()]) {
      let err: unknown;
      try {
        call();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BpfError);
      expect(err).toMatchObject({ code: 'EBADF' });
    }
    // Closing or stopping again is harmless.
    r.close();
    r.stop();
  });
});

describe('RingBufferReader', () => {
  it('throws TypeError for a map that is not a ring buffer', () => {
    expect(() => new RingBufferReader(col.map('hash'))).toThrow(TypeError);
  });
});

describe('sink', () => {
  /** A sink of `capacity` 16-byte slots, filled with 0xee, that records each onRecords call. */
  function sink(capacity: number, tail: number, free: number) {
    const calls: [number, number][] = [];
    const s = {
      buffer: Buffer.alloc(capacity * 16, 0xee),
      capacity,
      cursor: Uint32Array.of(tail, free),
      onRecords: (written: number, dropped: number) => calls.push([written, dropped]),
    };
    return { s, calls };
  }
  const seqAt = (buf: Buffer, slot: number) => record.read(buf, slot * 16).seq;

  it('writes records into the slots from cursor[0], wrapping around the end, without a batch', async () => {
    const { s, calls } = sink(4, 3, 4);
    const batches: RecordBatch[] = [];
    const r = reader({ recordSize: 16, sink: s, onBatch: (b) => batches.push(b) }).start();
    const seq = nextSeq();
    run('xdp_record', packet(64), 3);
    for (let i = 0; i < 200 && calls.length === 0; i++) await turns(1);
    expect(calls).toEqual([[3, 0]]);
    // Slot 3, then slots 0 and 1; slot 2 untouched.
    expect([seqAt(s.buffer, 3), seqAt(s.buffer, 0), seqAt(s.buffer, 1)]).toEqual([seq, seq + 1, seq + 2]);
    expect(s.buffer.subarray(32, 48)).toEqual(Buffer.alloc(16, 0xee));
    expect(record.read(s.buffer, 0)).toEqual({ len: 64, seq: seq + 1, head: packet(8) });
    expect(batches).toEqual([]);
    expect(r.stats()).toEqual({ records: 3, batches: 1, wrongSize: 0 });
  });

  it('consumes records beyond the free slots and counts them as dropped, overwriting nothing', async () => {
    const { s, calls } = sink(8, 6, 2);
    const r = reader({ recordSize: 16, sink: s }).start();
    const seq = nextSeq();
    run('xdp_record', packet(64), 5);
    for (let i = 0; i < 200 && calls.length === 0; i++) await turns(1);
    expect(calls).toEqual([[2, 3]]);
    expect([seqAt(s.buffer, 6), seqAt(s.buffer, 7)]).toEqual([seq, seq + 1]);
    expect(s.buffer.subarray(0, 6 * 16)).toEqual(Buffer.alloc(6 * 16, 0xee));
    // The ring is empty: the dropped records were consumed.
    expect(r.consume().count).toBe(0);
  });

  it('reads the cursor afresh at every drain', async () => {
    const { s, calls } = sink(4, 0, 4);
    reader({ recordSize: 16, sink: s }).start();
    const seq = nextSeq();
    run('xdp_record', packet(64), 1);
    for (let i = 0; i < 200 && calls.length < 1; i++) await turns(1);
    s.cursor[0] = 2;
    s.cursor[1] = 1;
    run('xdp_record', packet(64), 2);
    for (let i = 0; i < 200 && calls.length < 2; i++) await turns(1);
    expect(calls).toEqual([
      [1, 0],
      [1, 1],
    ]);
    expect([seqAt(s.buffer, 0), seqAt(s.buffer, 2)]).toEqual([seq, seq + 1]);
  });

  it('leaves consume() returning a copy', () => {
    const { s, calls } = sink(4, 0, 4);
    const r = reader({ recordSize: 16, sink: s });
    run('xdp_record', packet(64), 2);
    expect(r.consume().count).toBe(2);
    expect(calls).toEqual([]);
    expect(s.buffer).toEqual(Buffer.alloc(64, 0xee));
  });

  it('refuses a sink without a fixed record size, or larger than its buffer', () => {
    expect(() => new RingBufferReader(col.map('events'), { sink: sink(4, 0, 4).s })).toThrow(TypeError);
    const { s } = sink(4, 0, 4);
    expect(() => new RingBufferReader(col.map('events'), { recordSize: 16, sink: { ...s, capacity: 5 } })).toThrow(RangeError);
    expect(() => new RingBufferReader(col.map('events'), { recordSize: 16, sink: { ...s, cursor: new Uint32Array(1) } })).toThrow(RangeError);
  });
});
