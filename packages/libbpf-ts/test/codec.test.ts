// Codecs: the byte layouts of map keys, values and ring-buffer records.
import { bytes, decode, encode, struct, u16, u32, u64, u8 } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';

describe('integer codecs', () => {
  it('encode little-endian integers of their exact size', () => {
    expect(encode(u8, 0xab)).toEqual(Buffer.from([0xab]));
    expect(encode(u16, 0x1234)).toEqual(Buffer.from([0x34, 0x12]));
    expect(encode(u32, 0x11223344)).toEqual(Buffer.from([0x44, 0x33, 0x22, 0x11]));
    expect(encode(u64, 0x0102030405060708n)).toEqual(Buffer.from([8, 7, 6, 5, 4, 3, 2, 1]));
  });

  it('decode at an offset', () => {
    const buf = Buffer.from([0xff, 0x44, 0x33, 0x22, 0x11, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(decode(u8, buf)).toBe(0xff);
    expect(decode(u16, buf, 1)).toBe(0x3344);
    expect(decode(u32, buf, 1)).toBe(0x11223344);
    expect(decode(u64, buf, 5)).toBe(0x0102030405060708n);
  });

  it('round-trip the extremes of their range', () => {
    expect(decode(u8, encode(u8, 255))).toBe(255);
    expect(decode(u16, encode(u16, 0xffff))).toBe(0xffff);
    expect(decode(u32, encode(u32, 0xffffffff))).toBe(0xffffffff);
    expect(decode(u64, encode(u64, 0xffffffffffffffffn))).toBe(0xffffffffffffffffn);
  });

  it('throw RangeError for values that do not fit', () => {
    expect(() => encode(u8, 256)).toThrow(RangeError);
    expect(() => encode(u16, -1)).toThrow(RangeError);
    expect(() => encode(u32, 2 ** 32)).toThrow(RangeError);
    expect(() => encode(u64, -1n)).toThrow(RangeError);
  });

  it('throw RangeError when decoding a buffer that is too short', () => {
    expect(() => decode(u32, Buffer.alloc(3))).toThrow(RangeError);
    expect(() => decode(u64, Buffer.alloc(8), 1)).toThrow('need 8 bytes at offset 1, have 7');
    expect(() => decode(u8, Buffer.alloc(0))).toThrow(RangeError);
  });
});

describe('bytes codec', () => {
  it('encodes exactly its size and rejects other lengths with RangeError', () => {
    const b4 = bytes(4);
    expect(b4.size).toBe(4);
    expect(encode(b4, Buffer.from([1, 2, 3, 4]))).toEqual(Buffer.from([1, 2, 3, 4]));
    expect(() => encode(b4, Buffer.from([1, 2, 3]))).toThrow(RangeError);
    expect(() => encode(b4, Buffer.alloc(5))).toThrow(RangeError);
  });

  it('decodes a copy that does not change with the source buffer', () => {
    const src = Buffer.from([9, 1, 2, 3, 4, 9]);
    const out = decode(bytes(4), src, 1);
    src.fill(0);
    expect(out).toEqual(Buffer.from([1, 2, 3, 4]));
  });

  it('throws RangeError when decoding a buffer that is too short', () => {
    expect(() => decode(bytes(16), Buffer.alloc(15))).toThrow(RangeError);
  });
});

describe('struct codec', () => {
  // struct { __u32 a; __u16 b; /* 2 bytes padding */ __u64 c; }
  const pair = struct<{ a: number; b: number; c: bigint }>(16, {
    a: { offset: 0, codec: u32 },
    b: { offset: 4, codec: u16 },
    c: { offset: 8, codec: u64 },
  });

  it('reports its size and field layout', () => {
    expect(pair.size).toBe(16);
    expect(pair.fields).toEqual([
      { name: 'a', offset: 0, size: 4 },
      { name: 'b', offset: 4, size: 2 },
      { name: 'c', offset: 8, size: 8 },
    ]);
  });

  it('encodes fields at their offsets with zeroed padding', () => {
    const buf = Buffer.alloc(20, 0xee);
    pair.write({ a: 0x01020304, b: 0x0506, c: 0x0708090a0b0c0d0en }, buf, 2);
    expect(buf).toEqual(
      Buffer.from([
        0xee, 0xee, // before the struct
        4, 3, 2, 1, 6, 5, 0, 0, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7,
        0xee, 0xee, // after the struct
      ]),
    );
  });

  it('decodes what it encodes', () => {
    const v = { a: 0xffffffff, b: 7, c: 1n << 63n };
    expect(decode(pair, encode(pair, v))).toEqual(v);
  });

  it('nests structs and byte arrays', () => {
    const lpmKey = struct<{ prefixlen: number; addr: Buffer }>(8, {
      prefixlen: { offset: 0, codec: u32 },
      addr: { offset: 4, codec: bytes(4) },
    });
    const outer = struct<{ key: { prefixlen: number; addr: Buffer }; flag: number }>(12, {
      key: { offset: 0, codec: lpmKey },
      flag: { offset: 8, codec: u8 },
    });
    const v = { key: { prefixlen: 24, addr: Buffer.from([192, 168, 1, 0]) }, flag: 1 };
    const buf = encode(outer, v);
    expect(buf).toEqual(Buffer.from([24, 0, 0, 0, 192, 168, 1, 0, 1, 0, 0, 0]));
    expect(decode(outer, buf)).toEqual(v);
  });

  it('throws RangeError for a field that overruns the struct', () => {
    expect(() => struct<{ a: bigint }>(12, { a: { offset: 8, codec: u64 } })).toThrow(
      'field a overruns the 12-byte struct',
    );
  });

  it('throws RangeError when decoding a buffer shorter than the struct', () => {
    expect(() => decode(pair, Buffer.alloc(15))).toThrow(RangeError);
  });
});
