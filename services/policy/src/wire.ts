// The Report stream's request decoder. The generated one copies every event
// batch's records (up to 57 KB) into a fresh Buffer: at a million events a
// second that is a thousand large allocations a second for the garbage
// collector, for bytes the policy only reads once. Here an event batch keeps
// its records as a view of the received message (gRPC hands each message
// its own buffer). Anything else, or a batch with a field this does not
// know, goes to the generated decoder, so nothing is dropped.
import type { EventBatch, ProbeMessage } from '@packetwatch/proto';

// packetwatch.v1.ProbeMessage.events (field 2, length-delimited) and the
// fields of EventBatch (common.proto): count 1, record_size 2, records 3,
// lost_events 4, first_sequence 5.
const EVENTS_KEY = (2 << 3) | 2;
const VARINT = 0;
const LENGTH_DELIMITED = 2;

/** A varint at b[at] as [value, next]; undefined if it runs past end or beyond 2^53. */
function varint(b: Buffer, at: number, end: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let pos = at; pos < end && scale <= 2 ** 49; pos++) {
    const byte = b[pos]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos + 1];
    scale *= 128;
  }
  return undefined;
}

function leanBatch(b: Buffer): EventBatch | undefined {
  const len = varint(b, 1, b.length);
  if (!len || len[1] + len[0] !== b.length) return undefined;
  const batch: EventBatch = { count: 0, recordSize: 0, records: b.subarray(0, 0), lostEvents: 0n, firstSequence: 0n };
  let pos = len[1];
  while (pos < b.length) {
    const key = varint(b, pos, b.length);
    if (!key) return undefined;
    const field = key[0] >>> 3;
    const wire = key[0] & 7;
    const v = varint(b, key[1], b.length);
    if (!v) return undefined;
    if (wire === LENGTH_DELIMITED && field === 3) {
      const end = v[1] + v[0];
      if (end > b.length) return undefined;
      batch.records = b.subarray(v[1], end);
      pos = end;
      continue;
    }
    if (wire !== VARINT) return undefined;
    if (field === 1) batch.count = v[0];
    else if (field === 2) batch.recordSize = v[0];
    else if (field === 4) batch.lostEvents = BigInt(v[0]);
    else if (field === 5) batch.firstSequence = BigInt(v[0]);
    else return undefined;
    pos = v[1];
  }
  return batch;
}

/** A requestDeserialize for Policy.Report: event batches without a copy, the rest by `generated`. */
export function deserializeProbeMessage(generated: (b: Buffer) => ProbeMessage): (b: Buffer) => ProbeMessage {
  return (b) => {
    const batch = b[0] === EVENTS_KEY ? leanBatch(b) : undefined;
    return batch ? { message: { $case: 'events', value: batch } } : generated(b);
  };
}
