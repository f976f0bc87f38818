// The Report stream's request decoder. The generated one copies every event
// batch's records (up to 57 KB) into a fresh Buffer: at a million events a
// second that is a thousand large allocations a second for the garbage
// collector, for bytes the policy only reads once. Here an event batch keeps
// its records as a view of the received message (gRPC hands each message
// its own buffer). Anything else, or a batch with a field this does not
// know, goes to the generated decoder, so nothing is dropped.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { EventBatch, ProbeMessage } from '@packetwatch/proto';

// packetwatch.v1.ProbeMessage.events (field 2, length-delimited) and the
// fields of EventBatch (common.proto): count 1, record_size 2, records 3,
// lost_events 4, first_sequence 5, sent_unix_ns 6.
const EVENTS_KEY = (2 << 3) | WireType.LengthDelimited;

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

/** A requestDeserialize for Policy.Report: event batches without a copy, the rest by `generated`. */
export function deserializeProbeMessage(generated: (b: Buffer) => ProbeMessage): (b: Buffer) => ProbeMessage {
  return (b) => {
    const batch = b[0] === EVENTS_KEY ? leanBatch(b) : undefined;
    return batch ? { message: { $case: 'events', value: batch } } : generated(b);
  };
}
