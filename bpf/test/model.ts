// A reference model of the XDP program's parsing and verdict, written from
// the rules in bpf/packetwatch.bpf.c (not from its code paths): the fuzz test
// checks the kernel's answer for every frame against it.
import { TCP_FLAGS } from '@packetwatch/bpf';

export type ModelClass = 'malformed' | 'nonIp' | 'nonTcp' | 'fragment' | 'notNew' | 'syn';

export interface ModelResult {
  cls: ModelClass;
  /** 16-byte source, when the IP header was read. */
  saddr?: Buffer;
  daddr?: Buffer;
  sport?: number;
  dport?: number;
}

const V4_MAPPED = Buffer.from('00000000000000000000ffff', 'hex');
const EXT = new Set([0, 43, 60, 51]);

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
  let fragment = false;
  if (proto === 0x0800) {
    if (off + 20 > f.length) return { cls: 'malformed' };
    const vihl = f[off]!;
    const hl = (vihl & 0x0f) * 4;
    if (vihl >> 4 !== 4 || hl < 20 || off + hl > f.length || f.readUInt16BE(off + 2) < hl) return { cls: 'malformed' };
    saddr = Buffer.concat([V4_MAPPED, f.subarray(off + 12, off + 16)]);
    daddr = Buffer.concat([V4_MAPPED, f.subarray(off + 16, off + 20)]);
    l4 = f[off + 9]!;
    fragment = (f.readUInt16BE(off + 6) & 0x1fff) !== 0;
    off += hl;
  } else if (proto === 0x86dd) {
    if (off + 40 > f.length) return { cls: 'malformed' };
    if (f[off]! >> 4 !== 6) return { cls: 'malformed' };
    saddr = Buffer.from(f.subarray(off + 8, off + 24));
    daddr = Buffer.from(f.subarray(off + 24, off + 40));
    l4 = f[off + 6]!;
    off += 40;
    let done = false;
    for (let i = 0; i < 8 && !done; i++) {
      if (EXT.has(l4)) {
        if (off + 2 > f.length) return { cls: 'malformed' };
        const len = l4 === 51 ? (f[off + 1]! + 2) * 4 : (f[off + 1]! + 1) * 8;
        if (off + len > f.length) return { cls: 'malformed' };
        l4 = f[off]!;
        off += len;
      } else if (l4 === 44) {
        if (off + 8 > f.length) return { cls: 'malformed' };
        const fo = f.readUInt16BE(off + 2);
        l4 = f[off]!;
        off += 8;
        if (fo & 0xfff8) {
          fragment = true;
          done = true;
        }
      } else {
        done = true;
      }
    }
    if (!done) return { cls: 'malformed' };
  } else {
    return { cls: 'nonIp' };
  }
  if (fragment) return { cls: 'fragment', saddr, daddr };
  if (l4 !== 6) return { cls: 'nonTcp', saddr, daddr };
  if (off + 20 > f.length) return { cls: 'malformed' };
  const doff = (f[off + 12]! >> 4) * 4;
  if (doff < 20 || off + doff > f.length) return { cls: 'malformed' };
  const flags = f[off + 13]!;
  const cls = (flags & (TCP_FLAGS.SYN | TCP_FLAGS.ACK)) === TCP_FLAGS.SYN ? 'syn' : 'notNew';
  return { cls, saddr, daddr, sport: f.readUInt16BE(off), dport: f.readUInt16BE(off + 2) };
}
