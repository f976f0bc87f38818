// What a frame is to Packetwatch, in TypeScript: the rule of the XDP
// program's parsing (docs/detection.md, "What the XDP program drops"), read
// from the rules, not from the program's code paths. `packetwatchctl
// replay` classifies a capture's frames with it, and the fuzz test
// (bpf/test/fuzz.root.test.ts, through bpf/test/model.ts) holds the kernel's
// answer for every frame to it: the program in C and this module are two
// implementations of one rule, checked against each other.
//
// Allocation-free: a frame is read in place (buf[off, end)) into a reused
// Classified, so that a replay classifies millions of frames a second.

/** What a frame is, by the rules: parsing only, no lists. */
export type FrameClass =
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

/** Every FrameClass, for counting by class. */
export const FRAME_CLASSES: readonly FrameClass[] = [
  'malformed', 'nonIp', 'bogus', 'longChain', 'tiny', 'tinyProbe', 'bad', 'fragment', 'nonTcp', 'established', 'rst', 'syn', 'stealth',
];

/** The classes that are probes, counted by the scan detector by their destination port. */
export function isProbe(cls: FrameClass): boolean {
  return cls === 'syn' || cls === 'stealth' || cls === 'tinyProbe';
}

/** A frame's classification, filled in place by classifyEthernet / classifyIp. */
export interface Classified {
  cls: FrameClass;
  /** The IP version (4 or 6) once the IP header was read, else 0. */
  version: number;
  /** Offsets in the frame's buffer of the source and destination addresses (4 bytes for IPv4, 16 for IPv6), when version is set. */
  src: number;
  dst: number;
  /** Set for syn, stealth, established, rst and tinyProbe (its flags 0: they are not there). */
  sport: number;
  dport: number;
  flags: number;
  /** A first fragment (offset 0, more to come). */
  firstFragment: boolean;
}

export function newClassified(): Classified {
  return { cls: 'malformed', version: 0, src: 0, dst: 0, sport: 0, dport: 0, flags: 0, firstFragment: false };
}

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
const TCP = 6;
const FRAGMENT_HEADER = 44;
const AH = 51;
/** The most IPv6 extension headers walked (RFC 9098). */
const EXT_MAX = 8;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

/** IPv6 extension headers the walk steps over (the fragment header aside). */
function extension(next: number): boolean {
  return next === 0 || next === 43 || next === 60 || next === AH;
}

/** An Ethernet frame in buf[off, end), with up to two 802.1Q / 802.1ad tags. Returns out.cls. */
export function classifyEthernet(buf: Uint8Array, off: number, end: number, out: Classified): FrameClass {
  out.version = 0;
  out.firstFragment = false;
  if (end - off < 14) return (out.cls = 'malformed');
  let at = off + 14;
  let proto = u16(buf, off + 12);
  for (let i = 0; i < 2 && (proto === ETH_P_8021Q || proto === ETH_P_8021AD); i++) {
    if (at + 4 > end) return (out.cls = 'malformed');
    proto = u16(buf, at + 2);
    at += 4;
  }
  return classifyIp(buf, at, end, proto, out);
}

/** classifyIp's EtherType for a packet of either family, told by its version (a raw-IP capture). */
export const BY_VERSION = -1;

/**
 * The IP packet in buf[off, end) by its EtherType (0x0800, 0x86dd; any
 * other is nonIp; BY_VERSION takes the family from the packet's version).
 * Returns out.cls.
 */
export function classifyIp(buf: Uint8Array, off: number, end: number, ethertype: number, out: Classified): FrameClass {
  out.version = 0;
  out.firstFragment = false;
  if (ethertype === BY_VERSION) {
    if (off >= end) return (out.cls = 'malformed');
    const v = buf[off]! >> 4;
    ethertype = v === 4 ? ETH_P_IP : v === 6 ? ETH_P_IPV6 : -1;
    if (ethertype < 0) return (out.cls = 'malformed');
  }
  let l4: number;
  /** L4 bytes the IP length fields admit (IPv4 total length; IPv6: the frame decides). */
  let room = Infinity;
  let firstFragment = false;
  if (ethertype === ETH_P_IP) {
    if (off + 20 > end) return (out.cls = 'malformed');
    const vihl = buf[off]!;
    const hl = (vihl & 0x0f) * 4;
    const totLen = u16(buf, off + 2);
    if (vihl >> 4 !== 4 || hl < 20 || off + hl > end || totLen < hl) return (out.cls = 'malformed');
    out.version = 4;
    out.src = off + 12;
    out.dst = off + 16;
    l4 = buf[off + 9]!;
    const fragField = u16(buf, off + 6);
    const fragOffset = fragField & 0x1fff;
    if (fragOffset === 1 && l4 === TCP) return (out.cls = 'tiny');
    if (fragOffset !== 0) return (out.cls = 'fragment');
    firstFragment = (fragField & 0x2000) !== 0;
    room = totLen - hl;
    off += hl;
  } else if (ethertype === ETH_P_IPV6) {
    if (off + 40 > end) return (out.cls = 'malformed');
    if (buf[off]! >> 4 !== 6) return (out.cls = 'malformed');
    out.version = 6;
    out.src = off + 8;
    out.dst = off + 24;
    const s = off + 8;
    let zero64 = true;
    for (let i = 0; i < 8; i++) if (buf[s + i] !== 0) zero64 = false;
    if (zero64) {
      const word2 = ((buf[s + 8]! << 24) | (buf[s + 9]! << 16) | u16(buf, s + 10)) >>> 0;
      const word3 = ((buf[s + 12]! << 24) | (buf[s + 13]! << 16) | u16(buf, s + 14)) >>> 0;
      if (word2 === 0xffff || (word2 === 0 && word3 > 1)) return (out.cls = 'bogus');
    }
    l4 = buf[off + 6]!;
    off += 40;
    let walked = 0;
    for (;;) {
      if (!extension(l4) && l4 !== FRAGMENT_HEADER) break;
      if (walked === EXT_MAX) return (out.cls = 'longChain');
      walked++;
      if (l4 === FRAGMENT_HEADER) {
        if (off + 8 > end) return cut(out, firstFragment);
        const field = u16(buf, off + 2);
        l4 = buf[off]!;
        off += 8;
        if (field & 0xfff8) return (out.cls = 'fragment');
        if (field & 1) firstFragment = true;
      } else {
        if (off + 2 > end) return cut(out, firstFragment);
        const len = l4 === AH ? (buf[off + 1]! + 2) * 4 : (buf[off + 1]! + 1) * 8;
        if (off + len > end) return cut(out, firstFragment);
        l4 = buf[off]!;
        off += len;
      }
    }
  } else {
    return (out.cls = 'nonIp');
  }
  out.firstFragment = firstFragment;
  if (l4 !== TCP) return (out.cls = 'nonTcp');
  const have = Math.min(room, end - off);
  if (have < 20) {
    if (!firstFragment) return (out.cls = 'bad');
    if (have < 4) return (out.cls = 'tiny');
    out.sport = u16(buf, off);
    out.dport = u16(buf, off + 2);
    out.flags = 0;
    return (out.cls = 'tinyProbe');
  }
  const doff = (buf[off + 12]! >> 4) * 4;
  if (doff < 20 || off + doff > end) return (out.cls = 'bad');
  const flags = buf[off + 13]!;
  out.sport = u16(buf, off);
  out.dport = u16(buf, off + 2);
  out.flags = flags;
  if (flags & ACK) return (out.cls = 'established');
  const which = flags & (SYN | FIN | RST);
  if (which === SYN) return (out.cls = 'syn');
  if (which === RST) return (out.cls = 'rst');
  return (out.cls = 'stealth');
}

/** An IPv6 header chain cut short: a first fragment's is tiny (RFC 7112), any other's bad. */
function cut(out: Classified, firstFragment: boolean): FrameClass {
  out.firstFragment = firstFragment;
  return (out.cls = firstFragment ? 'tiny' : 'bad');
}
