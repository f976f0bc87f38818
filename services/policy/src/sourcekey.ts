// One key per source address for the policy's hot path: the detector's table,
// the blocked check and the allowlist all look a source up by it, so an event
// costs one key and no formatted string. An IPv4(-mapped) address is its
// 32 bits as a signed 32-bit integer, which V8 keeps inline (a Smi: no
// allocation, nothing on the heap per Map entry; an unsigned value from
// 128.0.0.0 up would be a heap number, about 30 bytes more per tracked
// source); any other IPv6 address is its 16 bytes as a latin1 string. The two
// never collide (a number is not a string).

export type SourceKey = number | string;

/** The key of the 16-byte address at buf[at] (IPv4 as IPv4-mapped ::ffff:a.b.c.d): for IPv4 the address as an int32 (x & mask works on it as on the unsigned value). */
export function sourceKey(buf: Uint8Array, at: number): SourceKey {
  if (
    buf[at] === 0 && buf[at + 1] === 0 && buf[at + 2] === 0 && buf[at + 3] === 0 &&
    buf[at + 4] === 0 && buf[at + 5] === 0 && buf[at + 6] === 0 && buf[at + 7] === 0 &&
    buf[at + 8] === 0 && buf[at + 9] === 0 && buf[at + 10] === 0xff && buf[at + 11] === 0xff
  ) {
    return (buf[at + 12]! << 24) | (buf[at + 13]! << 16) | (buf[at + 14]! << 8) | buf[at + 15]!;
  }
  return Buffer.from(buf.buffer, buf.byteOffset + at, 16).toString('latin1');
}

/** The key of a parsed 16-byte address (parseAddress). */
export function addressKey(addr: Buffer): SourceKey {
  return sourceKey(addr, 0);
}
