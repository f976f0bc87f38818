// The Report stream's event-batch codec, written once for every end of the
// stream: the probe's serializer, the policy's deserializer and the bench's
// receiver. A batch carries up to ~57 KB of records; the generated ts-proto
// code copies them several times per message (its encoder grows a buffer by
// doubling, then copies the message twice more; its decoder copies the
// records into a fresh Buffer), which at a million events a second made
// garbage collection a large share of both services' CPU. Here a batch's
// records are copied once when sent and never when received. Everything else
// goes through the generated code, so a field added to EventBatch is not
// dropped; the tests compare both directions against it.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { EventBatch } from '../gen/packetwatch/v1/common.js';
import { ProbeMessage } from '../gen/packetwatch/v1/policy.js';

// packetwatch.v1.ProbeMessage.events (field 2) and the fields of EventBatch
// (common.proto): count 1, record_size 2, records 3, lost_events 4,
// first_sequence 5, sent_unix_ns 6.
const PROBE_MESSAGE_EVENTS = 2;
const EVENTS_KEY = (PROBE_MESSAGE_EVENTS << 3) | WireType.LengthDelimited;
const RECORDS_KEY = (3 << 3) | WireType.LengthDelimited;
const NO_RECORDS = Buffer.alloc(0);

function varintSize(n: number): number {
  let size = 1;
  for (; n >= 0x80; n = Math.floor(n / 0x80)) size++;
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  for (; n >= 0x80; n = Math.floor(n / 0x80)) buf[pos++] = (n % 0x80) | 0x80;
  buf[pos++] = n;
  return pos;
}

/** An encoded ProbeMessage whose event batch's records are left for the caller to write. */
export interface ReservedEventBatch {
  /** The whole message, ready to send once the records are in place. */
  message: Buffer;
  /** message.subarray(recordsOffset) is where the records go (recordBytes of them, to the end). */
  recordsOffset: number;
}

/**
 * Encodes a ProbeMessage carrying `batch` with room for `recordBytes` bytes of
 * records at its end, which the caller fills (e.g. straight from its queue):
 * the records are copied once, into the buffer that is sent. The bytes are
 * those serializeProbeMessage makes for the same batch and records; with
 * recordBytes 0 the records field is left out, as proto3 does. With `into`
 * (large enough: eventBatchMessageSize) the message is written at its start
 * and returned as a view of it, so that a sender can reuse its buffers
 * instead of allocating one per message.
 */
export function reserveEventBatch(batch: Omit<EventBatch, 'records'>, recordBytes: number, into?: Buffer): ReservedEventBatch {
  if (!Number.isSafeInteger(recordBytes) || recordBytes < 0) throw new RangeError(`recordBytes must be a non-negative integer, got ${recordBytes}`);
  if (recordBytes === 0) {
    const message = Buffer.from(ProbeMessage.encode({ message: { $case: 'events', value: { ...batch, records: NO_RECORDS } } }).finish());
    return { message, recordsOffset: message.length };
  }
  const head = EventBatch.encode({ ...batch, records: NO_RECORDS }).finish();
  const batchSize = head.length + 1 + varintSize(recordBytes) + recordBytes;
  const size = 1 + varintSize(batchSize) + batchSize;
  if (into && into.length < size) throw new RangeError(`the message needs ${size} bytes, the buffer has ${into.length}`);
  const message = into ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  let pos = 0;
  message[pos++] = EVENTS_KEY;
  pos = writeVarint(message, pos, batchSize);
  message.set(head, pos);
  pos += head.length;
  message[pos++] = RECORDS_KEY;
  pos = writeVarint(message, pos, recordBytes);
  return { message, recordsOffset: pos };
}

/** The most bytes EventBatch's fields but the records take: two 32-bit varints and three 64-bit ones, each after a one-byte key. */
const MAX_HEAD = (1 + 5) * 2 + (1 + 10) * 3;

/** The most bytes reserveEventBatch needs for a batch with recordBytes of records, whatever its other fields. */
export function eventBatchMessageSize(recordBytes: number): number {
  const batchSize = MAX_HEAD + 1 + varintSize(recordBytes) + recordBytes;
  return 1 + varintSize(batchSize) + batchSize;
}

/**
 * Encodes a ProbeMessage as the generated encoder does, except that an event
 * batch's records are copied once, into a buffer of the exact size. Records
 * are written last, which protobuf parsers accept (fields may come in any
 * order).
 */
export function serializeProbeMessage(msg: ProbeMessage): Buffer {
  if (msg.message?.$case !== 'events' || msg.message.value.records.length === 0) return Buffer.from(ProbeMessage.encode(msg).finish());
  const { records, ...rest } = msg.message.value;
  const { message, recordsOffset } = reserveEventBatch(rest, records.length);
  message.set(records, recordsOffset);
  return message;
}

function leanBatch(b: Buffer): EventBatch | undefined {
  const r = new BinaryReader(b);
  try {
    r.uint32(); // EVENTS_KEY
    if (r.uint32() !== b.length - r.pos) return undefined;
    const batch: EventBatch = { count: 0, recordSize: 0, records: b.subarray(0, 0), lostEvents: 0n, firstSequence: 0n, sentUnixNs: 0n };
    while (r.pos < r.len) {
      const [field, wire] = r.tag();
      // bytes() is a view of b (a Buffer's subarray is a Buffer): no copy.
      if (field === 3 && wire === WireType.LengthDelimited) batch.records = r.bytes() as Buffer;
      else if (wire !== WireType.Varint) return undefined;
      else if (field === 1) batch.count = r.uint32();
      else if (field === 2) batch.recordSize = r.uint32();
      else if (field === 4) batch.lostEvents = r.uint64() as bigint;
      else if (field === 5) batch.firstSequence = r.uint64() as bigint;
      else if (field === 6) batch.sentUnixNs = r.uint64() as bigint;
      else return undefined;
    }
    return batch;
  } catch {
    return undefined; // malformed: the generated decoder says why
  }
}

/**
 * Decodes a ProbeMessage as the generated decoder does, except that an event
 * batch's records stay a view of the received message (gRPC hands each
 * message its own buffer). Anything else, or a batch with a field this does
 * not know, goes to the generated decoder.
 */
export function deserializeProbeMessage(b: Buffer): ProbeMessage {
  const batch = b[0] === EVENTS_KEY ? leanBatch(b) : undefined;
  return batch ? { message: { $case: 'events', value: batch } } : ProbeMessage.decode(b);
}
