import { ProbeMessage, deserializeProbeMessage } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';

const generated = (b: Buffer) => ProbeMessage.decode(b);
const decode = deserializeProbeMessage;
const encode = (m: ProbeMessage) => Buffer.from(ProbeMessage.encode(m).finish());

const records = Buffer.from(Array.from({ length: 56 * 3 }, (_, i) => i & 0xff));
const batch = (over: Partial<{ count: number; recordSize: number; records: Buffer; lostEvents: bigint; firstSequence: bigint; sentUnixNs: bigint }> = {}): ProbeMessage => ({
  message: { $case: 'events', value: { count: 3, recordSize: 56, records, lostEvents: 7n, firstSequence: 1234567890123n, sentUnixNs: 1_764_500_000_123_456_789n, ...over } },
});

describe('deserializeProbeMessage', () => {
  it('decodes an event batch as the generated decoder does, its records a view of the message', () => {
    const wire = encode(batch());
    const got = decode(wire);
    expect(got).toEqual(generated(wire));
    const value = got.message?.$case === 'events' ? got.message.value : undefined;
    expect(value?.records.buffer).toBe(wire.buffer);
    expect(value?.records.equals(records)).toBe(true);
  });

  it('agrees with the generated decoder on empty batches, zero fields and large sequence numbers', () => {
    for (const m of [
      batch({ count: 0, records: Buffer.alloc(0), lostEvents: 0n }),
      batch({ lostEvents: 0n, firstSequence: 0n, sentUnixNs: 0n }),
      batch({ firstSequence: 2n ** 53n - 1n }),
      batch({ lostEvents: 2n ** 63n }), // beyond 2^53: handed to the generated decoder
    ]) {
      const wire = encode(m);
      expect(decode(wire)).toEqual(generated(wire));
    }
  });

  it('hands anything that is not an event batch to the generated decoder', () => {
    const hello: ProbeMessage = { message: { $case: 'ownAddresses', value: { addresses: ['192.0.2.1', '2001:db8::1'] } } };
    const wire = encode(hello);
    expect(decode(wire)).toEqual(hello);
  });

  it('hands a truncated batch to the generated decoder, which rejects it', () => {
    const wire = encode(batch());
    expect(() => decode(wire.subarray(0, wire.length - 10))).toThrow();
  });
});
