// Builds Ethernet frames for tests, fuzzing and benchmarks: IPv4 (with
// options and fragments) or IPv6 (with extension headers, fragment headers,
// chains of any length), up to any number of VLAN tags, carrying TCP (any
// flags), UDP or ICMP, whole or cut to a fragment's share; and ARP. The
// family follows the source's text, so '::ffff:10.0.0.1' and '::10.0.0.1'
// make IPv6 packets from IPv4-mapped and IPv4-compatible sources. Checksums
// are filled in where a real stack would check them.
import { isIPv4 } from 'node:net';
import { parseAddress } from '@packetwatch/common/address';
import { TCP_FLAGS } from './records.js';

export interface TcpSpec {
  sport: number;
  dport: number;
  flags: number;
  window?: number;
  /** TCP options, padded by the caller to a multiple of 4 bytes. */
  options?: Buffer;
  payload?: Buffer;
}

export interface Ipv6ExtHeader {
  /** 0 hop-by-hop, 43 routing, 44 fragment, 51 AH, 60 destination options */
  type: 0 | 43 | 44 | 51 | 60;
  /** Fragment header only: offset in 8-byte units and the more-fragments flag. */
  fragmentOffset?: number;
  moreFragments?: boolean;
}

export interface FrameSpec {
  /** IPv4 text makes an IPv4 packet, IPv6 text (IPv4-mapped and IPv4-compatible forms included) an IPv6 one. */
  src: string;
  dst: string;
  /** VLAN ids, outermost first (802.1ad for the outer tag when there are two or more). */
  vlans?: number[];
  ttl?: number;
  /** IPv4 options, padded by the caller to a multiple of 4 bytes. */
  ipv4Options?: Buffer;
  /** IPv4 fragment offset in 8-byte units. */
  fragmentOffset?: number;
  moreFragments?: boolean;
  ipv6ExtHeaders?: Ipv6ExtHeader[];
  /**
   * The packet carries only the first l4Bytes bytes of its TCP, UDP or ICMP
   * segment (a fragment's share: 8 is a tiny first fragment); the IP lengths
   * say so. The checksum is the whole segment's.
   */
  l4Bytes?: number;
  /** Bytes after the IP packet, outside its lengths (Ethernet padding). */
  trailer?: Buffer;
  tcp?: TcpSpec;
  udp?: { sport: number; dport: number; payload?: Buffer };
  icmp?: { type: number; code: number };
}

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_ARP = 0x0806;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
const PROTO = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

const SRC_MAC = Buffer.from('020000000002', 'hex');
const DST_MAC = Buffer.from('020000000001', 'hex');

/** The Internet checksum (RFC 1071) over the parts, each summed as 16-bit words (an odd last byte padded with zero). */
export function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length % 2) sum += (b[b.length - 1] ?? 0) << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ethernet(etherType: number, vlans: number[] = []): Buffer {
  const eth = Buffer.alloc(14 + 4 * vlans.length);
  DST_MAC.copy(eth, 0);
  SRC_MAC.copy(eth, 6);
  let off = 12;
  vlans.forEach((id, i) => {
    eth.writeUInt16BE(i === 0 && vlans.length > 1 ? ETH_P_8021AD : ETH_P_8021Q, off);
    eth.writeUInt16BE(id & 0x0fff, off + 2);
    off += 4;
  });
  eth.writeUInt16BE(etherType, off);
  return eth;
}

function tcpSegment(t: TcpSpec, pseudo: Buffer): Buffer {
  const options = t.options ?? Buffer.alloc(0);
  if (options.length % 4) throw new RangeError('TCP options must be padded to a multiple of 4 bytes');
  const hdr = Buffer.alloc(20 + options.length);
  hdr.writeUInt16BE(t.sport, 0);
  hdr.writeUInt16BE(t.dport, 2);
  hdr.writeUInt32BE(0x01020304, 4);
  hdr.writeUInt32BE(t.flags & TCP_FLAGS.ACK ? 0x0a0b0c0d : 0, 8);
  hdr[12] = (hdr.length / 4) << 4;
  hdr[13] = t.flags;
  hdr.writeUInt16BE(t.window ?? 64240, 14);
  options.copy(hdr, 20);
  const seg = Buffer.concat([hdr, t.payload ?? Buffer.alloc(0)]);
  seg.writeUInt16BE(checksum(pseudo, seg), 16);
  return seg;
}

function l4(spec: FrameSpec, pseudoFor: (proto: number, len: number) => Buffer, v6: boolean): [number, Buffer] {
  if (spec.tcp) {
    const len = 20 + (spec.tcp.options?.length ?? 0) + (spec.tcp.payload?.length ?? 0);
    return [PROTO.tcp, tcpSegment(spec.tcp, pseudoFor(PROTO.tcp, len))];
  }
  if (spec.udp) {
    const payload = spec.udp.payload ?? Buffer.alloc(0);
    const seg = Buffer.alloc(8 + payload.length);
    seg.writeUInt16BE(spec.udp.sport, 0);
    seg.writeUInt16BE(spec.udp.dport, 2);
    seg.writeUInt16BE(seg.length, 4);
    payload.copy(seg, 8);
    seg.writeUInt16BE(checksum(pseudoFor(PROTO.udp, seg.length), seg) || 0xffff, 6);
    return [PROTO.udp, seg];
  }
  const icmp = spec.icmp ?? { type: v6 ? 128 : 8, code: 0 };
  const seg = Buffer.alloc(8);
  seg[0] = icmp.type;
  seg[1] = icmp.code;
  const proto = v6 ? PROTO.icmpv6 : PROTO.icmp;
  seg.writeUInt16BE(checksum(v6 ? pseudoFor(proto, 8) : Buffer.alloc(0), seg), 2);
  return [proto, seg];
}

/** The part of the segment the packet carries (FrameSpec.l4Bytes). */
function share(spec: FrameSpec, [proto, seg]: [number, Buffer]): [number, Buffer] {
  if (spec.l4Bytes === undefined) return [proto, seg];
  if (!Number.isInteger(spec.l4Bytes) || spec.l4Bytes < 0) throw new RangeError(`l4Bytes must be a whole number of bytes, got ${spec.l4Bytes}`);
  return [proto, seg.subarray(0, spec.l4Bytes)];
}

function ipv4(spec: FrameSpec): Buffer {
  const src = parseAddress(spec.src).subarray(12);
  const dst = parseAddress(spec.dst).subarray(12);
  const pseudoFor = (proto: number, len: number) => {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = proto;
    p.writeUInt16BE(len, 10);
    return p;
  };
  const [proto, payload] = share(spec, l4(spec, pseudoFor, false));
  const options = spec.ipv4Options ?? Buffer.alloc(0);
  if (options.length % 4 || options.length > 40) throw new RangeError('IPv4 options: a multiple of 4 bytes, at most 40');
  const hdr = Buffer.alloc(20 + options.length);
  hdr[0] = 0x40 | (hdr.length / 4);
  hdr.writeUInt16BE(hdr.length + payload.length, 2);
  hdr.writeUInt16BE(0x1234, 4);
  hdr.writeUInt16BE(((spec.moreFragments ? 1 : 0) << 13) | (spec.fragmentOffset ?? 0), 6);
  hdr[8] = spec.ttl ?? 64;
  hdr[9] = proto;
  src.copy(hdr, 12);
  dst.copy(hdr, 16);
  options.copy(hdr, 20);
  hdr.writeUInt16BE(checksum(hdr), 10);
  return Buffer.concat([hdr, payload]);
}

function ipv6(spec: FrameSpec): Buffer {
  const src = parseAddress(spec.src);
  const dst = parseAddress(spec.dst);
  const pseudoFor = (proto: number, len: number) => {
    const p = Buffer.alloc(40);
    src.copy(p, 0);
    dst.copy(p, 16);
    p.writeUInt32BE(len, 32);
    p[39] = proto;
    return p;
  };
  const [proto, payload] = share(spec, l4(spec, pseudoFor, true));
  const exts = spec.ipv6ExtHeaders ?? [];
  const extBufs = exts.map((e, i) => {
    const next = i + 1 < exts.length ? (exts[i + 1]?.type ?? proto) : proto;
    if (e.type === 44) {
      const b = Buffer.alloc(8);
      b[0] = next;
      b.writeUInt16BE(((e.fragmentOffset ?? 0) << 3) | (e.moreFragments ? 1 : 0), 2);
      b.writeUInt32BE(0xcafe, 4);
      return b;
    }
    if (e.type === 51) {
      // AH: 12 fixed bytes + 12 bytes of ICV = 24 bytes, length field (24/4)-2 = 4.
      const b = Buffer.alloc(24);
      b[0] = next;
      b[1] = 4;
      return b;
    }
    // Hop-by-hop, routing, destination options: 8 bytes, length field 0, PadN filler.
    const b = Buffer.alloc(8);
    b[0] = next;
    b[1] = 0;
    if (e.type === 43) b[2] = 0; // routing type 0 with segments left 0: ignored by receivers
    else {
      b[2] = 1; // PadN
      b[3] = 4;
    }
    return b;
  });
  const hdr = Buffer.alloc(40);
  hdr.writeUInt32BE(0x60000000, 0);
  const body = Buffer.concat([...extBufs, payload]);
  hdr.writeUInt16BE(body.length, 4);
  hdr[6] = exts[0]?.type ?? proto;
  hdr[7] = spec.ttl ?? 64;
  src.copy(hdr, 8);
  dst.copy(hdr, 24);
  return Buffer.concat([hdr, body]);
}

/** An Ethernet frame carrying an IP packet; the family follows the source address. */
export function ipFrame(spec: FrameSpec): Buffer {
  const v4 = isIPv4(spec.src);
  return Buffer.concat([ethernet(v4 ? ETH_P_IP : ETH_P_IPV6, spec.vlans), v4 ? ipv4(spec) : ipv6(spec), spec.trailer ?? Buffer.alloc(0)]);
}

/** A chain of n destination-options headers (8 bytes each), to put in FrameSpec.ipv6ExtHeaders. */
export function destinationOptions(n: number): Ipv6ExtHeader[] {
  return Array.from({ length: n }, () => ({ type: 60 as const }));
}

/** A TCP segment with exactly these flags and no options (a stealth probe, an ACK, a bare RST...). */
export function tcpFrame(src: string, dst: string, sport: number, dport: number, flags: number, extra: Partial<FrameSpec> = {}): Buffer {
  return ipFrame({ src, dst, ...extra, tcp: { sport, dport, flags } });
}

/** A new-connection SYN with the options a Linux client sends (MSS, SACK, timestamps, window scale). */
export function synFrame(src: string, dst: string, sport: number, dport: number, extra: Partial<FrameSpec> = {}): Buffer {
  const options = Buffer.from('020405b40402080a000000010000000001030307', 'hex');
  return ipFrame({ src, dst, ...extra, tcp: { sport, dport, flags: TCP_FLAGS.SYN, options } });
}

export function arpFrame(senderIp: string, targetIp: string): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0); // Ethernet
  arp.writeUInt16BE(ETH_P_IP, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(1, 6); // request
  SRC_MAC.copy(arp, 8);
  parseAddress(senderIp).copy(arp, 14, 12);
  parseAddress(targetIp).copy(arp, 24, 12);
  return Buffer.concat([ethernet(ETH_P_ARP), arp]);
}
