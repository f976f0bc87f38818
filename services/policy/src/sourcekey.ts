// One key per source for the policy's hot path: the detector's table, the
// blocked check and the own-address check look a source up by it, so an
// event costs one key and no formatted string. A source is an address's
// prefix (PW_IPV6_PREFIX, PW_IPV4_PREFIX; @packetwatch/common sourcePrefix):
// an IPv4(-mapped) source is its 32 bits, masked, as a signed 32-bit
// integer, which V8 keeps inline (a Smi: no allocation, nothing on the heap
// per Map entry; an unsigned value from 128.0.0.0 up would be a heap number,
// about 30 bytes more per tracked source); any other IPv6 source is its 16
// bytes, masked, as a latin1 string. The two never collide (a number is not
// a string).
import { type Prefix, type SourcePrefixes, WHOLE_ADDRESSES, formatSource, parsePrefix, sourceLengthFor, sourcePrefix } from '@packetwatch/common';

export type SourceKey = number | string;

/** Whether the 16 bytes at buf[at] are IPv4-mapped (::ffff:a.b.c.d). */
function mappedAt(buf: Uint8Array, at: number): boolean {
  return (
    buf[at] === 0 && buf[at + 1] === 0 && buf[at + 2] === 0 && buf[at + 3] === 0 &&
    buf[at + 4] === 0 && buf[at + 5] === 0 && buf[at + 6] === 0 && buf[at + 7] === 0 &&
    buf[at + 8] === 0 && buf[at + 9] === 0 && buf[at + 10] === 0xff && buf[at + 11] === 0xff
  );
}

/** An IPv6 source's marker for the address-level checks (allowlist): they read its bytes. */
export const V6 = '';

/**
 * The address at buf[at] for the address-level checks (allowlist, own
 * addresses): an IPv4(-mapped) address's 32 bits as an int32 (x & mask works
 * on it as on the unsigned value), V6 for any other (those checks read its
 * bytes). Allocates nothing.
 */
export function addressAt(buf: Uint8Array, at: number): number | typeof V6 {
  if (!mappedAt(buf, at)) return V6;
  return (buf[at + 12]! << 24) | (buf[at + 13]! << 16) | (buf[at + 14]! << 8) | buf[at + 15]!;
}

/** The key of the whole 16-byte address at buf[at] (each address its own source). */
export function sourceKey(buf: Uint8Array, at: number): SourceKey {
  const v4 = addressAt(buf, at);
  if (v4 !== V6) return v4;
  return Buffer.from(buf.buffer, buf.byteOffset + at, 16).toString('latin1');
}

/** The key of a parsed 16-byte address (parseAddress), whole. */
export function addressKey(addr: Buffer): SourceKey {
  return sourceKey(addr, 0);
}

/**
 * Source keys under the configured prefix lengths: the address an event
 * carries becomes its prefix's key by masking, a number for IPv4 (no
 * allocation) and one latin1 string for IPv6 (masked in a scratch buffer,
 * never in the record, which the feed and the allowlist read whole).
 */
export class SourceKeys {
  readonly lengths: Readonly<SourcePrefixes>;
  /** The IPv4 mask as an int32 (-1 for /32). */
  readonly #v4Mask: number;
  /** Whole bytes an IPv6 prefix keeps, and the mask of the byte after them. */
  readonly #v6Bytes: number;
  readonly #v6Rest: number;
  readonly #scratch = Buffer.alloc(16);

  constructor(lengths: Readonly<SourcePrefixes> = WHOLE_ADDRESSES) {
    this.lengths = Object.freeze({ ipv6: lengths.ipv6, ipv4: lengths.ipv4 });
    this.#v4Mask = lengths.ipv4 >= 32 ? -1 : (0xffffffff << (32 - lengths.ipv4)) | 0;
    this.#v6Bytes = lengths.ipv6 >> 3;
    this.#v6Rest = (0xff << (8 - (lengths.ipv6 & 7))) & 0xff;
  }

  /** The key of the source that the address at buf[at] counts as; v4: addressAt(buf, at), passed in as the pipeline has it already. */
  at(buf: Uint8Array, at: number, v4: number | typeof V6 = addressAt(buf, at)): SourceKey {
    if (v4 !== V6) return v4 & this.#v4Mask;
    const s = this.#scratch;
    const full = this.#v6Bytes;
    let i = 0;
    for (; i < full; i++) s[i] = buf[at + i]!;
    if (i < 16) {
      s[i] = buf[at + i]! & this.#v6Rest;
      for (i++; i < 16; i++) s[i] = 0;
    }
    return s.toString('latin1', 0, 16);
  }

  /** The key of the source a 16-byte address counts as. */
  of(addr: Buffer): SourceKey {
    return this.at(addr, 0);
  }

  /** The source (prefix) a 16-byte address counts as. */
  prefixOf(addr: Buffer): Prefix {
    return sourcePrefix(addr, this.lengths);
  }

  /** The source's text ("2001:db8:1:2::/64", or the address at whole length) of the address at buf[at]. */
  textAt(buf: Uint8Array, at: number): string {
    return formatSource(sourcePrefix(Buffer.from(buf.buffer, buf.byteOffset + at, 16), this.lengths));
  }

  /** The configured length (of the 16-byte form: IPv4's /32 is 128) for the family of a prefix. */
  lengthFor(p: Prefix): number {
    return sourceLengthFor(p, this.lengths);
  }

  /** The key of a source written as text (a decision's ip: formatSource's form, or any address or prefix in it). */
  ofText(text: string): SourceKey {
    return this.of(parsePrefix(text).addr);
  }
}

