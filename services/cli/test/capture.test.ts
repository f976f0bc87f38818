// The capture reader on files written from the formats' specifications
// (@packetwatch/test-support capture.ts): every variant it reads, and the damage it must
// report rather than crash on.
import { join } from 'node:path';
import { synFrame } from '@packetwatch/bpf';
import { describe, expect, it } from 'vitest';
import { type CapturedFrame, pcapFile, pcapngSection, sll2 } from '@packetwatch/test-support';
import { CaptureError, type CaptureInfo, LINKTYPE, readCapture } from '../src/capture.js';
import { tempFiles } from './tempfiles.js';

const { dir, file } = tempFiles('pw-capture-');

interface Read {
  linkType: number;
  tsMs: number;
  data: string;
  direction: number;
  iface: number;
}

function readAll(path: string): { frames: Read[]; info: CaptureInfo } {
  const frames: Read[] = [];
  const info = readCapture(path, (f) => frames.push({ linkType: f.linkType, tsMs: f.tsMs, data: f.buf.subarray(f.off, f.end).toString('hex'), direction: f.direction, iface: f.iface }));
  return { frames, info };
}

/** readCapture's error, and the frames it handed over before it. */
function readBroken(path: string): { error: CaptureError; frames: number } {
  let frames = 0;
  try {
    readCapture(path, () => frames++);
  } catch (e) {
    expect(e).toBeInstanceOf(CaptureError);
    return { error: e as CaptureError, frames };
  }
  throw new Error(`${path} was read whole`);
}

const T0 = Date.UTC(2026, 10, 30, 11, 0, 0);
const syn = (n: number) => synFrame('10.0.0.9', '10.0.0.1', 40000 + n, 1000 + n);
const FRAMES: CapturedFrame[] = [
  { tsMs: T0 + 0.001, data: syn(1) },
  { tsMs: T0 + 1500.25, data: syn(2) },
  { tsMs: T0 + 3000, data: syn(3) },
];

describe('readCapture: pcap', () => {
  it.each([
    ['little-endian, microseconds', {}],
    ['big-endian, microseconds', { bigEndian: true }],
    ['little-endian, nanoseconds', { nano: true }],
    ['big-endian, nanoseconds', { nano: true, bigEndian: true }],
  ])('%s: every frame, its bytes, its time and the link type', (_name, o) => {
    const { frames, info } = readAll(file(pcapFile(LINKTYPE.ETHERNET, FRAMES, o)));
    expect(info).toEqual({ format: 'pcap', frames: 3, skipped: {}, linkTypes: [LINKTYPE.ETHERNET] });
    expect(frames.map((f) => f.data)).toEqual(FRAMES.map((f) => f.data.toString('hex')));
    expect(frames.map((f) => f.linkType)).toEqual([1, 1, 1]);
    for (const [i, f] of frames.entries()) expect(f.tsMs).toBeCloseTo(FRAMES[i]!.tsMs, 6);
  });

  it('reads records that straddle its 8 MiB reads, and a frame larger than one read', () => {
    const big = Buffer.alloc(9 << 20, 0xab);
    const many: CapturedFrame[] = Array.from({ length: 200_000 }, (_, i) => ({ tsMs: T0 + i, data: syn(i % 500) }));
    many.splice(100_000, 0, { tsMs: T0 + 100_000, data: big });
    const { frames, info } = readAll(file(pcapFile(LINKTYPE.ETHERNET, many)));
    expect(info.frames).toBe(200_001);
    expect(frames[100_000]!.data).toBe(big.toString('hex'));
    expect(frames[200_000]!.data).toBe(many[200_000]!.data.toString('hex'));
    expect(frames[199_999]!.tsMs).toBe(T0 + 199_998);
  });

  it('an empty capture (a header, no frame) is read whole: no frames', () => {
    expect(readAll(file(pcapFile(LINKTYPE.LINUX_SLL2, [])))).toEqual({ frames: [], info: { format: 'pcap', frames: 0, skipped: {}, linkTypes: [276] } });
  });
});

describe('readCapture: pcapng', () => {
  it('several interfaces with their own link types, time resolutions and offsets; the direction from epb_flags', () => {
    const cooked = sll2(0x0800, 0, syn(7).subarray(14));
    const section = pcapngSection(
      [{ linkType: LINKTYPE.ETHERNET, name: 'veth0' }, { linkType: LINKTYPE.LINUX_SLL2, tsresol: 9, tsoffset: 1_700_000_000 }],
      [
        { tsMs: T0 + 1.5, data: syn(1), iface: 0, flags: 1 },
        { tsMs: T0 + 2.000001, data: cooked, iface: 1 },
        { tsMs: T0 + 3, data: syn(3), iface: 0, flags: 2 },
      ],
    );
    const { frames, info } = readAll(file(section));
    expect(info).toEqual({ format: 'pcapng', frames: 3, skipped: {}, linkTypes: [1, 276] });
    expect(frames.map(({ linkType, direction, iface, data }) => ({ linkType, direction, iface, data }))).toEqual([
      { linkType: 1, direction: 1, iface: 0, data: syn(1).toString('hex') },
      { linkType: 276, direction: 0, iface: 1, data: cooked.toString('hex') },
      { linkType: 1, direction: 2, iface: 0, data: syn(3).toString('hex') },
    ]);
    expect(frames[0]!.tsMs).toBeCloseTo(T0 + 1.5, 6);
    // Nanosecond units: a double of ms since the epoch resolves about 0.2 us.
    expect(Math.abs(frames[1]!.tsMs - (T0 + 2.000001))).toBeLessThan(0.0005);
  });

  it('a second section numbers its interfaces afresh', () => {
    const a = pcapngSection([{ linkType: LINKTYPE.ETHERNET }], [{ tsMs: T0, data: syn(1) }]);
    const b = pcapngSection([{ linkType: LINKTYPE.RAW }], [{ tsMs: T0 + 1, data: syn(2).subarray(14) }]);
    const { frames, info } = readAll(file(Buffer.concat([a, b])));
    expect(info.linkTypes).toEqual([1, 101]);
    expect(frames.map((f) => [f.linkType, f.iface])).toEqual([
      [1, 0],
      [101, 0],
    ]);
  });
});

describe('readCapture: damage is an error naming where, after the frames before it', () => {
  const whole = pcapFile(LINKTYPE.ETHERNET, FRAMES);
  const recordLen = 16 + syn(1).length;

  it('a pcap cut inside its last frame', () => {
    const cut = file(whole.subarray(0, whole.length - 10));
    const { error, frames } = readBroken(cut);
    expect(frames).toBe(2);
    expect(error.message).toBe(`${cut}: cut short at byte ${24 + 2 * recordLen}: a frame of ${syn(1).length} bytes with ${syn(1).length - 10} in the file (2 frames read)`);
    expect(error.info.frames).toBe(2);
  });

  it('a pcap cut inside a record header', () => {
    const { error, frames } = readBroken(file(whole.subarray(0, 24 + recordLen + 7)));
    expect(frames).toBe(1);
    expect(error.message).toMatch(/: cut short at byte \d+: a record header of 7 of 16 bytes \(1 frames read\)$/);
  });

  it('a pcap cut inside its file header', () => {
    expect(readBroken(file(whole.subarray(0, 20))).error.message).toMatch(/: pcap file header cut short \(20 of 24 bytes\)$/);
  });

  it('a record whose length cannot be', () => {
    const bad = Buffer.from(whole);
    bad.writeUInt32LE(0x7fffffff, 24 + recordLen + 8);
    const { error, frames } = readBroken(file(bad));
    expect(frames).toBe(1);
    expect(error.message).toMatch(/: corrupt record at byte \d+ \(captured length 2147483647, fraction \d+\) after 1 frames$/);
  });

  it('not a capture; too short for a magic number; a missing file; a directory', () => {
    expect(readBroken(file(Buffer.from('GET / HTTP/1.1\r\n'))).error.message).toMatch(/: not a pcap or pcapng file \(magic 0x47455420\)$/);
    expect(readBroken(file(Buffer.from([0xd4]))).error.message).toMatch(/: not a capture file \(1 bytes: too short for a header\)$/);
    expect(readBroken(join(dir, 'absent')).error.message).toBe(`cannot open ${join(dir, 'absent')}: ENOENT`);
    expect(readBroken(dir).error.message).toBe(`${dir} is a directory`);
  });

  it('a pcapng cut inside a block, and one whose block lengths disagree', () => {
    const ng = pcapngSection([{ linkType: LINKTYPE.ETHERNET }], FRAMES);
    const cut = readBroken(file(ng.subarray(0, ng.length - 6)));
    expect(cut.frames).toBe(2);
    expect(cut.error.message).toMatch(/: cut short at byte \d+: a block of \d+ bytes with \d+ in the file \(2 frames read\)$/);
    const bad = Buffer.from(ng);
    bad.writeUInt32LE(12345, bad.length - 4);
    const b = readBroken(file(bad));
    expect(b.frames).toBe(2);
    expect(b.error.message).toMatch(/: corrupt block at byte \d+: its trailing length is not \d+ \(2 frames read\)$/);
  });

  it('a packet block of an interface never declared is counted, not handed over', () => {
    const ng = pcapngSection([{ linkType: LINKTYPE.ETHERNET }], [{ tsMs: T0, data: syn(1) }, { tsMs: T0, data: syn(2), iface: 3 }]);
    const { frames, info } = readAll(file(ng));
    expect(frames).toHaveLength(1);
    expect(info.skipped).toEqual({ 'a packet block of an undeclared interface': 1 });
  });
});
