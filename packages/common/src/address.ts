// Addresses as the datapath stores them: 16 bytes, IPv4 IPv4-mapped
// (::ffff:a.b.c.d), so both families share one key type.
import { isIPv4, isIPv6 } from 'node:net';

export class AddressError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`invalid address '${input}': ${reason}`);
    this.name = 'AddressError';
  }
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function parseV4Into(text: string, out: Buffer, offset: number): void {
  const parts = text.split('.');
  for (let i = 0; i < 4; i++) out[offset + i] = Number(parts[i]);
}

function parseV6(text: string): Buffer {
  const out = Buffer.alloc(16);
  let body = text;
  let tailV4: Buffer | undefined;
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.', lastColon)) {
    tailV4 = Buffer.alloc(4);
    parseV4Into(body.slice(lastColon + 1), tailV4, 0);
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const [head, tail] = body.includes('::') ? body.split('::') : [body, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups =
    tail === undefined
      ? headGroups
      : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  if (tailV4) tailV4.copy(out, 12);
  return out;
}

/** Text address (IPv4 or IPv6) to the datapath's 16-byte form. */
export function parseAddress(text: string): Buffer {
  if (isIPv4(text)) {
    const out = Buffer.alloc(16);
    V4_MAPPED_PREFIX.copy(out, 0);
    parseV4Into(text, out, 12);
    return out;
  }
  if (isIPv6(text) && !text.includes('%')) return parseV6(text);
  throw new AddressError(text, 'not an IPv4 or IPv6 address');
}

export function isV4Mapped(addr: Buffer): boolean {
  return addr.length === 16 && addr.subarray(0, 12).equals(V4_MAPPED_PREFIX);
}

/** The 16-byte form back to text: dotted quad for IPv4-mapped, RFC 5952 for IPv6. */
export function formatAddress(addr: Buffer): string {
  if (addr.length !== 16) throw new RangeError(`address must be 16 bytes, got ${addr.length}`);
  if (isV4Mapped(addr)) return `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(addr.readUInt16BE(i * 2));
  // Longest run of two or more zero groups becomes '::' (first one on ties).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export interface Prefix {
  /** 16-byte address with the bits beyond prefixLen cleared. */
  addr: Buffer;
  /** Length in bits of the 16-byte form: an IPv4 /24 is 120. */
  prefixLen: number;
}

/** "192.0.2.0/24", "2001:db8::/32" or a bare address (a /32 or /128). */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const addr = parseAddress(addrText);
  const v4 = isIPv4(addrText);
  const max = v4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
      throw new AddressError(text, `prefix length must be 0 to ${max}`);
    }
    len = Number(lenText);
  }
  const prefixLen = v4 ? 96 + len : len;
  for (let bit = prefixLen; bit < 128; bit++) {
    const byte = bit >> 3;
    addr[byte] = (addr[byte] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return { addr, prefixLen };
}

export function formatPrefix(p: Prefix): string {
  const v4 = isV4Mapped(p.addr) && p.prefixLen >= 96;
  return `${formatAddress(p.addr)}/${v4 ? p.prefixLen - 96 : p.prefixLen}`;
}

/** The prefix lengths sources are tracked and blocked by (PW_IPV6_PREFIX, PW_IPV4_PREFIX). */
export interface SourcePrefixes {
  /** 1 to 128. */
  ipv6: number;
  /** 1 to 32. */
  ipv4: number;
}

/** Each address alone: the lengths that key a source by its whole address. */
export const WHOLE_ADDRESSES: Readonly<SourcePrefixes> = Object.freeze({ ipv6: 128, ipv4: 32 });

/**
 * The source a 16-byte address counts as: its family's prefix, the address
 * with the bits beyond it cleared (the kernel's blocklist and scanners key,
 * bpf/packetwatch.bpf.c source_key).
 */
export function sourcePrefix(addr: Buffer, lengths: SourcePrefixes): Prefix {
  const v4 = isV4Mapped(addr);
  const prefixLen = v4 ? 96 + lengths.ipv4 : lengths.ipv6;
  const out = Buffer.from(addr);
  for (let bit = prefixLen; bit < 128; bit++) out[bit >> 3] = out[bit >> 3]! & ~(0x80 >> (bit & 7));
  return { addr: out, prefixLen };
}

/** A source as people read it: the bare address for a whole address, else the prefix ("2001:db8:1:2::/64"). */
export function formatSource(p: Prefix): string {
  return p.prefixLen === 128 ? formatAddress(p.addr) : formatPrefix(p);
}
