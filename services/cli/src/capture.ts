// A streaming reader of capture files, pcap and pcapng, for `packetwatchctl
// replay`: each frame is handed over in place (a view of the read buffer,
// no copy, no object per frame), with its link type, its time and, where
// the file says it, its direction. Written here rather than taken from npm:
// of the readers there, pcap-parser (pcap only) reads 0.67 M frames/s, the
// libpcap binding `pcap` 0.91 M/s (a native build; libpcap refuses a pcapng
// whose interfaces differ in link type), pcap-ng-parser reads pcapng only,
// ignores if_tsresol and misreads options; none reaches the 1 M frames/s
// a replay needs before it has classified anything (measured on the
// development machine, README "packetwatchctl replay").
//
// Formats: pcap (microsecond and nanosecond magic, either byte order) and
// pcapng (several sections, several interfaces each with its own link type,
// if_tsresol and if_tsoffset; Enhanced and obsolete Packet Blocks; a Simple Packet
// Block has no time and is counted as unreadable). A file that ends inside
// a record, or a record whose lengths cannot be, is a CaptureError naming
// the offset: the frames before it have been handed over.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Link types (tcpdump's LINKTYPE_ values) replay reads. */
export const LINKTYPE = {
  ETHERNET: 1,
  /** LINKTYPE_RAW: the packet begins with the IP header. */
  RAW: 101,
  /** DLT_RAW as some systems wrote it. */
  RAW_12: 12,
  /** Linux cooked capture (tcpdump -i any before libpcap 1.10). */
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  /** Linux cooked capture v2 (tcpdump -i any). */
  LINUX_SLL2: 276,
} as const;

export function linkTypeKnown(t: number): boolean {
  return Object.values(LINKTYPE).includes(t as never);
}

/** Where the direction of a frame is known: 1 inbound (or to this host), 2 outbound, 0 not said. */
export type Direction = 0 | 1 | 2;

/** One frame, valid only during the callback: buf[off, end) is its captured bytes. */
export interface FrameRef {
  buf: Buffer;
  off: number;
  end: number;
  /** The frame's length on the wire (more than end - off when the snap length cut it). */
  wireLength: number;
  linkType: number;
  /** Milliseconds since the epoch (fractional). */
  tsMs: number;
  /** From pcapng's epb_flags; a cooked header's packet type says it too (see the caller). */
  direction: Direction;
  /** pcapng's interface (per section, from 0); 0 for pcap. */
  iface: number;
}

export class CaptureError extends Error {
  constructor(
    message: string,
    /** What was read before the damage. */
    readonly info: CaptureInfo,
  ) {
    super(message);
    this.name = 'CaptureError';
  }
}

export interface CaptureInfo {
  format: 'pcap' | 'pcapng';
  /** Frames handed over. */
  frames: number;
  /** Records that could not be handed over (a Simple Packet Block, no time; an unknown interface), by reason. */
  skipped: Record<string, number>;
  /** Link types seen, by interface (pcap: one). */
  linkTypes: number[];
}

const PCAP_US = 0xa1b2c3d4;
const PCAP_NS = 0xa1b23c4d;
const NG_SHB = 0x0a0d0d0a;
const NG_BOM = 0x1a2b3c4d;
/** No frame is longer (a larger length is a corrupt file, not a frame). */
const MAX_RECORD = 1 << 26;
const CHUNK = 1 << 23;

/** Reads a file through a growing window: at most CHUNK bytes a read, records whole in memory. */
class Window {
  buf = Buffer.allocUnsafe(CHUNK);
  /** File offset of buf[0]. */
  base = 0;
  /** Valid bytes in buf. */
  len = 0;
  eof = false;

  constructor(private readonly fd: number) {}

  /** Makes buf[at, at + n) valid (at relative to buf, which may move): returns where it is now, or ~(where it is now) when the file ends before. */
  ensure(at: number, n: number): number {
    if (at + n <= this.len) return at;
    if (this.eof) return ~at;
    // Keep from `at` on; drop what is before it.
    if (at > 0) {
      this.buf.copy(this.buf, 0, at, this.len);
      this.len -= at;
      this.base += at;
      at = 0;
    }
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    while (this.len < n) {
      const got = readSync(this.fd, this.buf, this.len, this.buf.length - this.len, null);
      if (got === 0) {
        this.eof = true;
        return ~at;
      }
      this.len += got;
    }
    return at;
  }

  /** Bytes left from `at` (relative to buf). */
  left(at: number): number {
    return this.len - at;
  }
}

/** A 32-bit unsigned integer at b[at], little- or big-endian. */
function u32(b: Buffer, at: number, le: boolean): number {
  return le ? b[at]! + b[at + 1]! * 0x100 + b[at + 2]! * 0x10000 + b[at + 3]! * 0x1000000 : b[at]! * 0x1000000 + b[at + 1]! * 0x10000 + b[at + 2]! * 0x100 + b[at + 3]!;
}

/**
 * Reads the capture at `path`, calling onFrame for each frame in file
 * order. Throws CaptureError for a file that is not a capture, is cut
 * short or corrupt (after the frames before the damage).
 */
export function readCapture(path: string, onFrame: (f: FrameRef) => void): CaptureInfo {
  const none: CaptureInfo = { format: 'pcap', frames: 0, skipped: {}, linkTypes: [] };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new CaptureError(`cannot open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, none);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new CaptureError(`${path} is a directory`, none);
    const w = new Window(fd);
    if (w.ensure(0, 4) < 0) throw new CaptureError(`${path}: not a capture file (${w.len} bytes: too short for a header)`, none);
    const magicLE = w.buf.readUInt32LE(0);
    const magicBE = w.buf.readUInt32BE(0);
    if (magicLE === PCAP_US || magicLE === PCAP_NS || magicBE === PCAP_US || magicBE === PCAP_NS) return readPcap(path, w, onFrame);
    if (magicBE === NG_SHB) return readPcapng(path, w, onFrame);
    throw new CaptureError(`${path}: not a pcap or pcapng file (magic 0x${magicBE.toString(16).padStart(8, '0')})`, none);
  } finally {
    closeSync(fd);
  }
}

function readPcap(path: string, w: Window, onFrame: (f: FrameRef) => void): CaptureInfo {
  if (w.ensure(0, 24) < 0) throw new CaptureError(`${path}: pcap file header cut short (${w.len} of 24 bytes)`, { format: 'pcap', frames: 0, skipped: {}, linkTypes: [] });
  const le = w.buf.readUInt32LE(0) === PCAP_US || w.buf.readUInt32LE(0) === PCAP_NS;
  const nano = u32(w.buf, 0, le) === PCAP_NS;
  // The link type is the low 16 bits; the bits above carry FCS information.
  const linkType = u32(w.buf, 20, le) & 0xffff;
  const fracPerMs = nano ? 1e6 : 1e3;
  const info: CaptureInfo = { format: 'pcap', frames: 0, skipped: {}, linkTypes: [linkType] };
  const frame: FrameRef = { buf: w.buf, off: 0, end: 0, wireLength: 0, linkType, tsMs: 0, direction: 0, iface: 0 };
  let at = 24;
  for (;;) {
    let next = w.ensure(at, 16);
    if (next < 0) {
      at = ~next;
      if (w.left(at) === 0) return info;
      throw new CaptureError(`${path}: cut short at byte ${w.base + at}: a record header of ${w.left(at)} of 16 bytes (${info.frames} frames read)`, info);
    }
    at = next;
    const buf = w.buf;
    const sec = u32(buf, at, le);
    const frac = u32(buf, at + 4, le);
    const incl = u32(buf, at + 8, le);
    const orig = u32(buf, at + 12, le);
    if (incl > MAX_RECORD || frac >= fracPerMs * 1000) {
      throw new CaptureError(`${path}: corrupt record at byte ${w.base + at} (captured length ${incl}, fraction ${frac}) after ${info.frames} frames`, info);
    }
    next = w.ensure(at, 16 + incl);
    if (next < 0) {
      at = ~next;
      throw new CaptureError(`${path}: cut short at byte ${w.base + at}: a frame of ${incl} bytes with ${w.left(at) - 16} in the file (${info.frames} frames read)`, info);
    }
    at = next;
    frame.buf = w.buf;
    frame.off = at + 16;
    frame.end = at + 16 + incl;
    frame.wireLength = orig;
    frame.tsMs = sec * 1000 + frac / fracPerMs;
    info.frames++;
    onFrame(frame);
    at += 16 + incl;
  }
}

interface NgInterface {
  linkType: number;
  /** Timestamp units per millisecond. */
  unitsPerMs: number;
  /** if_tsoffset, in ms: added to every timestamp. */
  offsetMs: number;
}

function readPcapng(path: string, w: Window, onFrame: (f: FrameRef) => void): CaptureInfo {
  const info: CaptureInfo = { format: 'pcapng', frames: 0, skipped: {}, linkTypes: [] };
  const frame: FrameRef = { buf: w.buf, off: 0, end: 0, wireLength: 0, linkType: 0, tsMs: 0, direction: 0, iface: 0 };
  let le = true;
  let ifaces: NgInterface[] = [];
  const skip = (why: string) => {
    info.skipped[why] = (info.skipped[why] ?? 0) + 1;
  };
  let at = 0;
  for (;;) {
    let next = w.ensure(at, 12);
    if (next < 0) {
      at = ~next;
      if (w.left(at) === 0) return info;
      throw new CaptureError(`${path}: cut short at byte ${w.base + at}: a block header of ${w.left(at)} bytes (${info.frames} frames read)`, info);
    }
    at = next;
    let buf = w.buf;
    const type = buf.readUInt32BE(at) === NG_SHB ? NG_SHB : u32(buf, at, le);
    if (type === NG_SHB) {
      const bom = buf.readUInt32LE(at + 8);
      if (bom === NG_BOM) le = true;
      else if (buf.readUInt32BE(at + 8) === NG_BOM) le = false;
      else throw new CaptureError(`${path}: corrupt section header at byte ${w.base + at} (byte-order magic 0x${bom.toString(16)})`, info);
      // A new section: its interfaces are numbered afresh.
      ifaces = [];
    }
    const total = u32(buf, at + 4, le);
    if (total < 12 || total % 4 !== 0 || total > MAX_RECORD) {
      throw new CaptureError(`${path}: corrupt block at byte ${w.base + at} (type 0x${type.toString(16)}, length ${total}) after ${info.frames} frames`, info);
    }
    next = w.ensure(at, total);
    if (next < 0) {
      at = ~next;
      throw new CaptureError(`${path}: cut short at byte ${w.base + at}: a block of ${total} bytes with ${w.left(at)} in the file (${info.frames} frames read)`, info);
    }
    at = next;
    buf = w.buf;
    const u16 = le ? (o: number) => buf.readUInt16LE(o) : (o: number) => buf.readUInt16BE(o);
    if (u32(buf, at + total - 4, le) !== total) {
      throw new CaptureError(`${path}: corrupt block at byte ${w.base + at}: its trailing length is not ${total} (${info.frames} frames read)`, info);
    }
    const body = at + 8;
    const bodyEnd = at + total - 4;
    if (type === 1) {
      if (bodyEnd - body < 8) throw new CaptureError(`${path}: corrupt interface block at byte ${w.base + at}`, info);
      const iface: NgInterface = { linkType: u16(body), unitsPerMs: 1e3, offsetMs: 0 };
      forOptions(buf, body + 8, bodyEnd, u16, (code, o, len) => {
        if (code === 9 && len >= 1) {
          const v = buf[o]!;
          const unitsPerSecond = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** (v & 0x7f);
          iface.unitsPerMs = unitsPerSecond / 1000;
        } else if (code === 14 && len >= 8) {
          iface.offsetMs = Number(le ? buf.readBigInt64LE(o) : buf.readBigInt64BE(o)) * 1000;
        }
      });
      ifaces.push(iface);
      info.linkTypes.push(iface.linkType);
    } else if (type === 6 || type === 2) {
      // Enhanced Packet Block; the obsolete Packet Block has a 16-bit interface and a drop count.
      const id = type === 6 ? u32(buf, body, le) : u16(body);
      const hi = u32(buf, body + 4, le);
      const lo = u32(buf, body + 8, le);
      const caplen = u32(buf, body + 12, le);
      const orig = u32(buf, body + 16, le);
      const data = body + 20;
      const padded = data + ((caplen + 3) & ~3);
      if (padded > bodyEnd) throw new CaptureError(`${path}: corrupt packet block at byte ${w.base + at}: ${caplen} bytes do not fit in it (${info.frames} frames read)`, info);
      const iface = ifaces[id];
      if (!iface) {
        skip('a packet block of an undeclared interface');
      } else {
        let flags = 0;
        forOptions(buf, padded, bodyEnd, u16, (code, o, len) => {
          // epb_flags (Enhanced Packet Block) and pack_flags (Packet Block): bits 0-1 the direction.
          if (code === 2 && len >= 4) flags = u32(buf, o, le);
        });
        const direction = flags & 3;
        frame.buf = buf;
        frame.off = data;
        frame.end = data + caplen;
        frame.wireLength = orig;
        frame.linkType = iface.linkType;
        frame.tsMs = (hi * 4294967296 + lo) / iface.unitsPerMs + iface.offsetMs;
        frame.direction = direction === 1 || direction === 2 ? direction : 0;
        frame.iface = id;
        info.frames++;
        onFrame(frame);
      }
    } else if (type === 3) {
      skip('a simple packet block (no time)');
    }
    at += total;
  }
}

/** Calls fn(code, offset, length) for each option in buf[from, end), until opt_endofopt. */
function forOptions(buf: Buffer, from: number, end: number, u16: (o: number) => number, fn: (code: number, at: number, len: number) => void): void {
  let o = from;
  while (o + 4 <= end) {
    const code = u16(o);
    const len = u16(o + 2);
    if (code === 0) return;
    if (o + 4 + len > end) return;
    fn(code, o + 4, len);
    o += 4 + ((len + 3) & ~3);
  }
}
