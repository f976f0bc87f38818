// Capture files as tcpdump writes them, pcap and pcapng, for the replay
// bench (a large generated capture) and the reader's tests (every format
// variant and damage). Written from the formats' specifications; the
// reader under test (services/cli/src/capture.ts) shares nothing with it.
import { closeSync, openSync, writeSync } from 'node:fs';

export interface CapturedFrame {
  /** Milliseconds since the epoch (whole microseconds, or nanoseconds with `nano`). */
  tsMs: number;
  data: Buffer;
  /** pcapng: the interface's index; pcap: ignored. */
  iface?: number;
  /** pcapng: epb_flags (bits 0-1 the direction: 1 inbound, 2 outbound). */
  flags?: number;
}

/** The pcap file header (LINKTYPE linkType), microsecond or nanosecond magic, in either byte order. */
export function pcapHeader(linkType: number, o: { nano?: boolean; bigEndian?: boolean; snaplen?: number } = {}): Buffer {
  const h = Buffer.alloc(24);
  const u32 = (v: number, at: number) => (o.bigEndian ? h.writeUInt32BE(v, at) : h.writeUInt32LE(v, at));
  const u16 = (v: number, at: number) => (o.bigEndian ? h.writeUInt16BE(v, at) : h.writeUInt16LE(v, at));
  u32(o.nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  u16(2, 4);
  u16(4, 6);
  u32(o.snaplen ?? 262144, 16);
  u32(linkType, 20);
  return h;
}

/** A pcap record's 16-byte header at r[at]: the time, the captured and wire lengths (both `length`). */
function recordHeader(r: Buffer, at: number, tsMs: number, length: number, o: { nano?: boolean; bigEndian?: boolean }): void {
  const u32 = (v: number, off: number) => (o.bigEndian ? r.writeUInt32BE(v, at + off) : r.writeUInt32LE(v, at + off));
  const sec = Math.floor(tsMs / 1000);
  const frac = Math.round((tsMs - sec * 1000) * (o.nano ? 1e6 : 1e3));
  u32(sec, 0);
  u32(frac, 4);
  u32(length, 8);
  u32(length, 12);
}

/** One pcap record: its header and the frame. */
export function pcapRecord(f: CapturedFrame, o: { nano?: boolean; bigEndian?: boolean } = {}): Buffer {
  const r = Buffer.alloc(16 + f.data.length);
  recordHeader(r, 0, f.tsMs, f.data.length, o);
  f.data.copy(r, 16);
  return r;
}

/** A pcap file (little-endian, microseconds) written a record at a time, through a buffer: for captures of millions of frames. */
export class PcapWriter {
  readonly #fd: number;
  readonly #buf = Buffer.allocUnsafe(1 << 22);
  #len = 0;
  frames = 0;

  constructor(path: string, linkType: number) {
    this.#fd = openSync(path, 'w');
    writeSync(this.#fd, pcapHeader(linkType));
  }

  /** Appends frame[0, length) at tsMs. */
  write(tsMs: number, frame: Buffer, length = frame.length): void {
    if (this.#len + 16 + length > this.#buf.length) this.#flush();
    recordHeader(this.#buf, this.#len, tsMs, length, {});
    frame.copy(this.#buf, this.#len + 16, 0, length);
    this.#len += 16 + length;
    this.frames++;
  }

  close(): void {
    this.#flush();
    closeSync(this.#fd);
  }

  #flush(): void {
    writeSync(this.#fd, this.#buf, 0, this.#len);
    this.#len = 0;
  }
}

export function pcapFile(linkType: number, frames: readonly CapturedFrame[], o: { nano?: boolean; bigEndian?: boolean } = {}): Buffer {
  return Buffer.concat([pcapHeader(linkType, o), ...frames.map((f) => pcapRecord(f, o))]);
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const b = Buffer.alloc(total);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(total, 4);
  body.copy(b, 8);
  b.writeUInt32LE(total, total - 4);
  return b;
}

function option(code: number, value: Buffer): Buffer {
  const o = Buffer.alloc(4 + pad4(value.length));
  o.writeUInt16LE(code, 0);
  o.writeUInt16LE(value.length, 2);
  value.copy(o, 4);
  return o;
}

const END_OF_OPTIONS = Buffer.alloc(4);

export interface NgInterface {
  linkType: number;
  /** if_tsresol: 6 (microseconds, the default when absent), 9 (nanoseconds). */
  tsresol?: number;
  /** if_tsoffset: seconds added to every timestamp of the interface (its frames' times are written less it). */
  tsoffset?: number;
  name?: string;
}

/** A little-endian pcapng section: its header, the interfaces, the packets as Enhanced Packet Blocks. */
export function pcapngSection(interfaces: readonly NgInterface[], frames: readonly CapturedFrame[]): Buffer {
  const shb = Buffer.alloc(16);
  shb.writeUInt32LE(0x1a2b3c4d, 0);
  shb.writeUInt16LE(1, 4);
  shb.writeUInt16LE(0, 6);
  shb.writeBigInt64LE(-1n, 8);
  const blocks = [block(0x0a0d0d0a, shb)];
  for (const i of interfaces) {
    const fixed = Buffer.alloc(8);
    fixed.writeUInt16LE(i.linkType, 0);
    fixed.writeUInt32LE(262144, 4);
    const opts: Buffer[] = [];
    if (i.name) opts.push(option(2, Buffer.from(i.name)));
    if (i.tsresol !== undefined) opts.push(option(9, Buffer.from([i.tsresol])));
    if (i.tsoffset !== undefined) {
      const v = Buffer.alloc(8);
      v.writeBigInt64LE(BigInt(i.tsoffset), 0);
      opts.push(option(14, v));
    }
    if (opts.length > 0) opts.push(END_OF_OPTIONS);
    blocks.push(block(1, Buffer.concat([fixed, ...opts])));
  }
  for (const f of frames) {
    const iface = f.iface ?? 0;
    const perMs = 10 ** ((interfaces[iface]?.tsresol ?? 6) - 3);
    const units = BigInt(Math.round((f.tsMs - (interfaces[iface]?.tsoffset ?? 0) * 1000) * perMs));
    const fixed = Buffer.alloc(20);
    fixed.writeUInt32LE(iface, 0);
    fixed.writeUInt32LE(Number(units >> 32n), 4);
    fixed.writeUInt32LE(Number(units & 0xffffffffn), 8);
    fixed.writeUInt32LE(f.data.length, 12);
    fixed.writeUInt32LE(f.data.length, 16);
    const data = Buffer.alloc(pad4(f.data.length));
    f.data.copy(data);
    const opts: Buffer[] = [];
    if (f.flags !== undefined) {
      const v = Buffer.alloc(4);
      v.writeUInt32LE(f.flags, 0);
      opts.push(option(2, v), END_OF_OPTIONS);
    }
    blocks.push(block(6, Buffer.concat([fixed, data, ...opts])));
  }
  return Buffer.concat(blocks);
}

/** A Linux cooked (SLL2) header before an IP packet: protocol, packet type (0 to this host, 4 outgoing). */
export function sll2(ethertype: number, packetType: number, packet: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(ethertype, 0);
  h.writeUInt32BE(2, 4);
  h.writeUInt16BE(1, 8);
  h[10] = packetType;
  h[11] = 6;
  return Buffer.concat([h, packet]);
}

/** A Linux cooked (SLL) header before an IP packet. */
export function sll(ethertype: number, packetType: number, packet: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(packetType, 0);
  h.writeUInt16BE(1, 2);
  h.writeUInt16BE(6, 4);
  h.writeUInt16BE(ethertype, 14);
  return Buffer.concat([h, packet]);
}
