// One key per source address for the policy's hot path: the detector's table,
// the blocked check and the allowlist all look a source up by it, so an event
// costs one key and no formatted string. An IPv4(-mapped) address is its
// 32-bit value as a number (no allocation); any other IPv6 address is its 16
// bytes as a latin1 string. The two never collide (a number is not a string).

export type SourceKey = number | string;

/** The key of the 16-byte address at buf[at] (IPv4 as IPv4-mapped ::ffff:a.b.c.d). */
export function sourceKey(buf: Uint8Array, at: number): SourceKey {
  if (
    buf[at] === 0 && buf[at + 1] === 0 && buf[at + 2] === 0 && buf[at + 3] === 0 &&
    buf[at + 4] === 0 && buf[at + 5] === 0 && buf[at + 6] === 0 && buf[at + 7] === 0 &&
    buf[at + 8] === 0 && buf[at + 9] === 0 && buf[at + 10] === 0xff && buf[at + 11] === 0xff
  ) {
    return buf[at + 12]! * 0x1000000 + ((buf[at + 13]! << 16) | (buf[at + 14]! << 8) | buf[at + 15]!);
  }
  return Buffer.from(buf.buffer, buf.byteOffset + at, 16).toString('latin1');
}

/** The key of a parsed 16-byte address (parseAddress). */
export function addressKey(addr: Buffer): SourceKey {
  return sourceKey(addr, 0);
}
