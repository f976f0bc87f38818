// A reference model of the XDP program's parsing and verdict, written from
// the rules (issue 15, docs/detection.md "What the XDP program drops"), not
// from the program's code paths: the fuzz test checks the kernel's answer
// for every frame against it. It shares no code with what it checks: it
// masks sources and matches prefixes itself, on plain bytes.
import { TCP_FLAGS } from '@packetwatch/bpf';

export type ModelClass =
  /** Before the source is known: passes. */
  | 'malformed'
  | 'nonIp'
  /** IPv6 from an IPv4-mapped or IPv4-compatible source: dropped, before anything else. */
  | 'bogus'
  /** More than 8 IPv6 extension headers: dropped, whoever sends it. */
  | 'longChain'
  /** A TCP fragment with no port to read (cut short, offset 1, an IPv6 first fragment's chain cut short): dropped. */
  | 'tiny'
  /** A TCP first fragment without the whole TCP header but with its ports: dropped, a probe. */
  | 'tinyProbe'
  /** The source is known, the rest is unparsable (IPv6 chain, TCP header). */
  | 'bad'
  /** A non-first fragment. */
  | 'fragment'
  | 'nonTcp'
  /** TCP with ACK set. */
  | 'established'
  /** TCP, ACK clear, only RST of SYN/FIN/RST. */
  | 'rst'
  | 'syn'
  | 'stealth';

export interface ModelResult {
  cls: ModelClass;
  /** 16-byte source, when the IP header was read. */
  saddr?: Buffer;
  daddr?: Buffer;
  sport?: number;
  dport?: number;
  flags?: number;
  /** A first fragment (offset 0, more to come). */
  firstFragment?: boolean;
}

const V4_MAPPED = Buffer.from('00000000000000000000ffff', 'hex');
/** IPv6 extension headers the walk steps over (fragment aside). */
const EXT = new Set([0, 43, 60, 51]);
const FRAGMENT_HEADER = 44;
const EXT_MAX = 8;
const TCP = 6;

/** What the frame is, by the rules: parsing only, no lists. */
export function model(f: Buffer): ModelResult {
  if (f.length < 14) return { cls: 'malformed' };
  let off = 14;
  let proto = f.readUInt16BE(12);
  for (let i = 0; i < 2 && (proto === 0x8100 || proto === 0x88a8); i++) {
    if (off + 4 > f.length) return { cls: 'malformed' };
    proto = f.readUInt16BE(off + 2);
    off += 4;
  }
  let l4: number;
  let saddr: Buffer;
  let daddr: Buffer;
  let firstFragment = false;
  /** L4 bytes the IP length fields admit (IPv4 total length; IPv6: the frame decides). */
  let room = Infinity;
  if (proto === 0x0800) {
    if (off + 20 > f.length) return { cls: 'malformed' };
    const vihl = f[off]!;
    const hl = (vihl & 0x0f) * 4;
    const totLen = f.readUInt16BE(off + 2);
    if (vihl >> 4 !== 4 || hl < 20 || off + hl > f.length || totLen < hl) return { cls: 'malformed' };
    saddr = Buffer.concat([V4_MAPPED, f.subarray(off + 12, off + 16)]);
    daddr = Buffer.concat([V4_MAPPED, f.subarray(off + 16, off + 20)]);
    l4 = f[off + 9]!;
    const fragField = f.readUInt16BE(off + 6);
    const fragOffset = fragField & 0x1fff;
    const known = { saddr, daddr };
    if (fragOffset === 1 && l4 === TCP) return { cls: 'tiny', ...known };
    if (fragOffset !== 0) return { cls: 'fragment', ...known };
    firstFragment = (fragField & 0x2000) !== 0;
    room = totLen - hl;
    off += hl;
  } else if (proto === 0x86dd) {
    if (off + 40 > f.length) return { cls: 'malformed' };
    if (f[off]! >> 4 !== 6) return { cls: 'malformed' };
    saddr = Buffer.from(f.subarray(off + 8, off + 24));
    daddr = Buffer.from(f.subarray(off + 24, off + 40));
    const known = { saddr, daddr };
    const zero64 = saddr.readBigUInt64BE(0) === 0n;
    const word2 = saddr.readUInt32BE(8);
    const word3 = saddr.readUInt32BE(12);
    if (zero64 && (word2 === 0xffff || (word2 === 0 && word3 > 1))) return { cls: 'bogus', ...known };
    l4 = f[off + 6]!;
    off += 40;
    const cut = (): ModelResult => ({ cls: firstFragment ? 'tiny' : 'bad', ...known, firstFragment });
    let walked = 0;
    for (;;) {
      const ext = EXT.has(l4) || l4 === FRAGMENT_HEADER;
      if (!ext) break;
      if (walked === EXT_MAX) return { cls: 'longChain', ...known };
      walked++;
      if (l4 === FRAGMENT_HEADER) {
        if (off + 8 > f.length) return cut();
        const field = f.readUInt16BE(off + 2);
        l4 = f[off]!;
        off += 8;
        if (field & 0xfff8) return { cls: 'fragment', ...known };
        if (field & 1) firstFragment = true;
      } else {
        if (off + 2 > f.length) return cut();
        const len = l4 === 51 ? (f[off + 1]! + 2) * 4 : (f[off + 1]! + 1) * 8;
        if (off + len > f.length) return cut();
        l4 = f[off]!;
        off += len;
      }
    }
  } else {
    return { cls: 'nonIp' };
  }
  const known = { saddr, daddr, firstFragment };
  if (l4 !== TCP) return { cls: 'nonTcp', ...known };
  const have = Math.min(room, f.length - off);
  if (have < 20) {
    if (!firstFragment) return { cls: 'bad', ...known };
    if (have < 4) return { cls: 'tiny', ...known };
    return { cls: 'tinyProbe', ...known, sport: f.readUInt16BE(off), dport: f.readUInt16BE(off + 2), flags: 0 };
  }
  const doff = (f[off + 12]! >> 4) * 4;
  if (doff < 20 || off + doff > f.length) return { cls: 'bad', ...known };
  const flags = f[off + 13]!;
  const ports = { sport: f.readUInt16BE(off), dport: f.readUInt16BE(off + 2), flags };
  if (flags & TCP_FLAGS.ACK) return { cls: 'established', ...known, ...ports };
  const which = flags & (TCP_FLAGS.SYN | TCP_FLAGS.FIN | TCP_FLAGS.RST);
  if (which === TCP_FLAGS.SYN) return { cls: 'syn', ...known, ...ports };
  if (which === TCP_FLAGS.RST) return { cls: 'rst', ...known, ...ports };
  return { cls: 'stealth', ...known, ...ports };
}

/** The lists and settings the program runs with, as plain data. */
export interface ModelWorld {
  dropAll: boolean;
  /** Prefix lengths sources are keyed by. */
  ipv6Prefix: number;
  ipv4Prefix: number;
  /** Blocked keys (16 bytes, already masked), hex. Permanent blocks only. */
  blockedKeys: ReadonlySet<string>;
  /** Allowlisted prefixes: 16 bytes and a length in bits of them. */
  allowed: readonly { addr: Buffer; bits: number }[];
}

function leadingBitsEqual(a: Buffer, b: Buffer, bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const mask = 0x80 >> (i % 8);
    if ((a[i >> 3]! & mask) !== (b[i >> 3]! & mask)) return false;
  }
  return true;
}

function keyOf(addr: Buffer, w: ModelWorld): string {
  const v4 = addr.subarray(0, 12).equals(V4_MAPPED);
  const bits = v4 ? 96 + w.ipv4Prefix : w.ipv6Prefix;
  const out = Buffer.alloc(16);
  for (let i = 0; i < bits; i++) if (addr[i >> 3]! & (0x80 >> (i % 8))) out[i >> 3] = out[i >> 3]! | (0x80 >> (i % 8));
  return out.toString('hex');
}

export type ProbeKindName = 'syn' | 'stealth' | 'fragment';

export interface ModelVerdict {
  drop: boolean;
  /** The probe event the frame produces, if any. */
  event?: { kind: ProbeKindName; sport: number; dport: number; flags: number };
  /** The counters the frame moves, by name, each by 1. */
  counters: string[];
}

/**
 * The rules of issue 15 items 1-5: what happens to a parsed frame given the
 * lists. A blocked source (key blocked, address not allowlisted) gets
 * nothing through but, in syn mode, whole ACK segments and unfragmented
 * non-TCP packets.
 */
export function verdict(m: ModelResult, w: ModelWorld): ModelVerdict {
  const counters = ['frames'];
  const count = (...names: string[]) => counters.push(...names);
  switch (m.cls) {
    case 'malformed':
      count('malformed');
      return { drop: false, counters };
    case 'nonIp':
      count('nonIp');
      return { drop: false, counters };
    case 'bogus':
      count('bogusSources');
      return { drop: true, counters };
    case 'longChain':
      count('longChains');
      return { drop: true, counters };
    case 'tiny':
      count('tinyFragments');
      return { drop: true, counters };
    default:
  }
  const saddr = m.saddr!;
  // Whether the block applies: null when the blocklist is not consulted.
  const isBlocked = (): boolean => {
    if (!w.blockedKeys.has(keyOf(saddr, w))) return false;
    if (w.allowed.some((p) => leadingBitsEqual(p.addr, saddr, p.bits))) {
      count('allowlisted');
      return false;
    }
    return true;
  };
  const maySpare = !m.firstFragment && !w.dropAll;
  let dropCounter = 'otherDropped';
  let probe: ProbeKindName | undefined;
  let dropAnyway = false;
  switch (m.cls) {
    case 'bad':
      count('malformed');
      break;
    case 'fragment':
      count('fragments');
      break;
    case 'nonTcp':
      count('nonTcp');
      if (maySpare) return { drop: false, counters };
      break;
    case 'established':
      if (maySpare) return { drop: false, counters };
      break;
    case 'rst':
      break;
    case 'syn':
      count('syn');
      dropCounter = 'synDropped';
      probe = 'syn';
      break;
    case 'stealth':
      count('stealth');
      dropCounter = 'probeDropped';
      probe = 'stealth';
      break;
    case 'tinyProbe':
      count('tinyFragments');
      dropCounter = 'probeDropped';
      probe = 'fragment';
      dropAnyway = true;
      break;
    default:
      throw new Error(`model: unhandled class ${m.cls}`);
  }
  if (isBlocked()) {
    count(dropCounter);
    return { drop: true, counters };
  }
  if (!probe) return { drop: dropAnyway, counters };
  count('events');
  return { drop: dropAnyway, counters, event: { kind: probe, sport: m.sport!, dport: m.dport!, flags: m.flags! } };
}
