// BpfMap and its typed views on a hash map, an array, a per-CPU array and an
// LPM trie: single-element operations, update flags, errors, iteration
// (batched and key by key) and batch operations.
import {
  type BpfMap,
  BpfError,
  MapFullError,
  MapType,
  ObjectSpec,
  UpdateFlags,
  bytes,
  encode,
  possibleCpus,
  struct,
  u16,
  u32,
  u64,
} from 'libbpf-ts';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { packet, loadedMaps, thrown } from './helpers.js';

const ENOTSUPP = 524; // the kernel's "no such operation for this map type"

const maps = loadedMaps();

const k32 = (n: number): Buffer => encode(u32, n);
const v64 = (n: bigint): Buffer => encode(u64, n);
const sortedKeys = (keys: Iterable<Buffer>): number[] => [...keys].map((k) => k.readUInt32LE(0)).sort((a, b) => a - b);

function clear(map: BpfMap): void {
  for (const k of [...map.keys()]) map.delete(k);
}

describe('hash map, raw', () => {
  let hash: BpfMap;
  beforeAll(() => {
    hash = maps.col.map('hash');
  });
  beforeEach(() => clear(hash));

  it('reports the kernel map info', () => {
    const info = hash.info();
    expect(info).toMatchObject({ name: 'hash', type: MapType.Hash, keySize: 4, valueSize: 8, maxEntries: 8, flags: 0 });
    expect(info.id).toBeGreaterThan(0);
    expect(hash.perCpu).toBe(false);
    expect(hash.valueBufferSize).toBe(8);
  });

  it('looks up what update wrote', () => {
    hash.update(k32(1), v64(0x1122334455667788n));
    expect(hash.lookup(k32(1))).toEqual(v64(0x1122334455667788n));
  });

  it('returns undefined for a missing key', () => {
    expect(hash.lookup(k32(404))).toBeUndefined();
  });

  it('deletes a key and returns true, then false for the missing key', () => {
    hash.update(k32(5), v64(5n));
    expect(hash.delete(k32(5))).toBe(true);
    expect(hash.lookup(k32(5))).toBeUndefined();
    expect(hash.delete(k32(5))).toBe(false);
  });

  it('replaces a value with UpdateFlags.Any', () => {
    hash.update(k32(1), v64(1n));
    hash.update(k32(1), v64(2n), UpdateFlags.Any);
    expect(hash.lookup(k32(1))).toEqual(v64(2n));
  });

  it('throws BpfError EEXIST for UpdateFlags.NoExist on an existing key and keeps the value', () => {
    hash.update(k32(1), v64(1n));
    const err = thrown(() => hash.update(k32(1), v64(2n), UpdateFlags.NoExist));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EEXIST', op: 'bpf_map_update_elem' });
    expect(hash.lookup(k32(1))).toEqual(v64(1n));
    hash.update(k32(2), v64(2n), UpdateFlags.NoExist);
    expect(hash.lookup(k32(2))).toEqual(v64(2n));
  });

  it('throws BpfError ENOENT for UpdateFlags.Exist on a missing key and creates nothing', () => {
    const err = thrown(() => hash.update(k32(3), v64(3n), UpdateFlags.Exist));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'ENOENT', op: 'bpf_map_update_elem' });
    expect(hash.lookup(k32(3))).toBeUndefined();
  });

  it('throws MapFullError E2BIG for a new key in a full map, but still replaces existing keys', () => {
    for (let i = 0; i < hash.maxEntries; i++) hash.update(k32(i), v64(BigInt(i)));
    const err = thrown(() => hash.update(k32(100), v64(100n)));
    expect(err).toBeInstanceOf(MapFullError);
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'E2BIG', errno: 7 });
    hash.update(k32(0), v64(42n));
    expect(hash.lookup(k32(0))).toEqual(v64(42n));
    expect(hash.lookup(k32(100))).toBeUndefined();
  });

  it('throws RangeError for a key or value of the wrong size', () => {
    expect(() => hash.lookup(Buffer.alloc(8))).toThrow(RangeError);
    expect(() => hash.update(Buffer.alloc(3), v64(1n))).toThrow(RangeError);
    expect(() => hash.update(k32(1), Buffer.alloc(4))).toThrow(RangeError);
    expect(() => hash.delete(Buffer.alloc(5))).toThrow(RangeError);
    expect(hash.lookup(k32(1))).toBeUndefined();
  });

  it('lists exactly the inserted keys and entries', () => {
    const inserted = [3, 1, 4, 15, 9];
    for (const k of inserted) hash.update(k32(k), v64(BigInt(k) * 10n));
    expect(sortedKeys(hash.keys())).toEqual([1, 3, 4, 9, 15]);
    const entries = [...hash.entries()].map(([k, v]) => [k.readUInt32LE(0), v.readBigUInt64LE(0)] as const);
    expect(entries.sort((a, b) => a[0] - b[0])).toEqual([
      [1, 10n],
      [3, 30n],
      [4, 40n],
      [9, 90n],
      [15, 150n],
    ]);
  });

  it('lists nothing when empty', () => {
    expect([...hash.keys()]).toEqual([]);
    expect([...hash.entries()]).toEqual([]);
    expect(hash.lookupAll()).toEqual([]);
  });

  it('reads every entry in batches with lookupAll', () => {
    for (const k of [7, 2, 5]) hash.update(k32(k), v64(BigInt(k)));
    const all = hash.lookupAll().map(([k, v]) => [k.readUInt32LE(0), v.readBigUInt64LE(0)] as const);
    expect(all.sort((a, b) => a[0] - b[0])).toEqual([
      [2, 2n],
      [5, 5n],
      [7, 7n],
    ]);
  });

  it('reads every entry in chunks of a chosen size with lookupChunks', () => {
    for (let k = 1; k <= 7; k++) hash.update(k32(k), v64(BigInt(k)));
    const chunks = [...hash.lookupChunks(3)];
    // Chunks of 3 but for a hash bucket holding more, which comes whole:
    // never all 7 in one (that would take the 7 keys in one of 8 buckets).
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.map((c) => c.length).reduce((a, b) => a + b)).toBe(7);
    const keys = chunks.flat().map(([k]) => k.readUInt32LE(0));
    expect(keys.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('reads every entry in chunks of one, a hash bucket holding more coming whole (the kernel says ENOSPC for it)', () => {
    // 7 keys in the map's 8 buckets share one with 98% odds (1 - 8!/8^7),
    // which a chunk of one entry cannot hold.
    for (let k = 1; k <= 7; k++) hash.update(k32(k), v64(BigInt(k)));
    const chunks = [...hash.lookupChunks(1)];
    const entries = chunks.flat().map(([k, v]) => [k.readUInt32LE(0), v.readBigUInt64LE(0)] as const);
    expect(entries.sort((a, b) => a[0] - b[0])).toEqual([1, 2, 3, 4, 5, 6, 7].map((k) => [k, BigInt(k)]));
  });

  it('writes and deletes many entries with updateBatch and deleteBatch', () => {
    const entries = [1, 2, 3, 4, 5].map((k) => [k32(k), v64(BigInt(k) << 32n)] as const);
    expect(hash.updateBatch(entries)).toBe(5);
    expect(sortedKeys(hash.keys())).toEqual([1, 2, 3, 4, 5]);
    expect(hash.lookup(k32(4))).toEqual(v64(4n << 32n));
    expect(hash.deleteBatch([k32(1), k32(3), k32(5)])).toBe(3);
    expect(sortedKeys(hash.keys())).toEqual([2, 4]);
    expect(hash.updateBatch([])).toBe(0);
    expect(hash.deleteBatch([])).toBe(0);
  });

  it('honours UpdateFlags.NoExist in updateBatch: new keys are written, an existing key throws EEXIST', () => {
    expect(hash.updateBatch([[k32(1), v64(1n)], [k32(2), v64(2n)]], UpdateFlags.NoExist)).toBe(2);
    const err = thrown(() => hash.updateBatch([[k32(3), v64(3n)], [k32(2), v64(20n)]], UpdateFlags.NoExist));
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ code: 'EEXIST' });
    expect(hash.lookup(k32(2))).toEqual(v64(2n));
    expect(hash.lookup(k32(3))).toEqual(v64(3n));
  });

  it('honours UpdateFlags.Exist in updateBatch: existing keys are replaced, a missing key throws ENOENT', () => {
    hash.updateBatch([[k32(1), v64(1n)], [k32(2), v64(2n)]]);
    expect(hash.updateBatch([[k32(1), v64(10n)], [k32(2), v64(20n)]], UpdateFlags.Exist)).toBe(2);
    expect(hash.lookup(k32(1))).toEqual(v64(10n));
    expect(thrown(() => hash.updateBatch([[k32(9), v64(9n)]], UpdateFlags.Exist))).toMatchObject({ code: 'ENOENT' });
    expect(hash.lookup(k32(9))).toBeUndefined();
  });

  it('skips keys that are not there in deleteBatch and deletes the keys after them', () => {
    hash.updateBatch([1, 2, 3, 4].map((k) => [k32(k), v64(BigInt(k))] as const));
    expect(hash.deleteBatch([k32(1), k32(7), k32(3), k32(8), k32(9)])).toBe(2);
    expect(sortedKeys(hash.keys())).toEqual([2, 4]);
    expect(hash.deleteBatch([k32(7)])).toBe(0);
    expect(hash.deleteBatch([k32(2), k32(4)])).toBe(2);
    expect([...hash.keys()]).toEqual([]);
  });

  it('throws MapFullError for updateBatch beyond max entries', () => {
    const entries = Array.from({ length: hash.maxEntries + 1 }, (_, i) => [k32(i), v64(BigInt(i))] as const);
    expect(thrown(() => hash.updateBatch(entries))).toBeInstanceOf(MapFullError);
  });

  it('throws RangeError for a batch with a value of the wrong size, even when the total size matches', () => {
    expect(() => hash.updateBatch([[k32(1), Buffer.alloc(4)]])).toThrow(RangeError);
    expect(() =>
      hash.updateBatch([
        [k32(1), Buffer.alloc(4)],
        [k32(2), Buffer.alloc(12)],
      ]),
    ).toThrow(RangeError);
    expect(() => hash.updateBatch([[Buffer.alloc(2), v64(1n)]])).toThrow(RangeError);
    expect(() => hash.deleteBatch([Buffer.alloc(2)])).toThrow(RangeError);
    expect([...hash.keys()]).toEqual([]);
  });
});

describe('hash map, typed', () => {
  let hash: BpfMap;
  beforeAll(() => {
    hash = maps.col.map('hash');
  });
  beforeEach(() => clear(hash));

  it('gets what set wrote and undefined for a missing key', () => {
    const t = hash.typed(u32, u64);
    t.set(10, 0xffffffffffffffffn);
    expect(t.get(10)).toBe(0xffffffffffffffffn);
    expect(t.get(11)).toBeUndefined();
  });

  it('deletes and reports whether the key was there', () => {
    const t = hash.typed(u32, u64);
    t.set(1, 1n);
    expect(t.delete(1)).toBe(true);
    expect(t.delete(1)).toBe(false);
  });

  it('passes update flags through', () => {
    const t = hash.typed(u32, u64);
    t.set(1, 1n);
    expect(thrown(() => t.set(1, 2n, UpdateFlags.NoExist))).toMatchObject({ code: 'EEXIST' });
    expect(thrown(() => t.set(2, 2n, UpdateFlags.Exist))).toMatchObject({ code: 'ENOENT' });
  });

  it('lists keys and entries decoded', () => {
    const t = hash.typed(u32, u64);
    expect(t.setMany([
      [1, 100n],
      [2, 200n],
      [3, 300n],
    ])).toBe(3);
    expect([...t.keys()].sort()).toEqual([1, 2, 3]);
    expect([...t.entries()].sort((a, b) => a[0] - b[0])).toEqual([
      [1, 100n],
      [2, 200n],
      [3, 300n],
    ]);
    expect(t.deleteMany([1, 3])).toBe(2);
    expect([...t.entries()]).toEqual([[2, 200n]]);
  });

  it('throws RangeError for codecs whose sizes differ from the map', () => {
    expect(() => hash.typed(u32, u32)).toThrow(RangeError);
    expect(() => hash.typed(u64, u64)).toThrow(RangeError);
  });

  it('throws TypeError for a per-CPU view of a map that is not per-CPU', () => {
    expect(() => hash.perCpuTyped(u32, u64)).toThrow(TypeError);
  });
});

describe('array map', () => {
  // struct pair { __u32 a; __u16 b; __u64 c; } with 2 bytes of padding.
  const pair = struct<{ a: number; b: number; c: bigint }>(16, {
    a: { offset: 0, codec: u32 },
    b: { offset: 4, codec: u16 },
    c: { offset: 8, codec: u64 },
  });

  it('holds a zeroed value at every index up front', () => {
    // A load of its own: the shared array holds what the other tests wrote.
    const fresh = ObjectSpec.open(maps.fx.path('maps')).load();
    try {
      const array = fresh.map('array');
      expect(sortedKeys(array.keys())).toEqual([0, 1, 2, 3]);
      const t = array.typed(u32, pair);
      expect([0, 1, 2, 3].map((i) => t.get(i))).toEqual(Array.from({ length: 4 }, () => ({ a: 0, b: 0, c: 0n })));
    } finally {
      fresh.close();
    }
  });

  it('stores structs and returns undefined for an index past the end', () => {
    const t = maps.col.map('array').typed(u32, pair);
    t.set(1, { a: 0xdeadbeef, b: 0xffff, c: 1n << 40n });
    expect(t.get(1)).toEqual({ a: 0xdeadbeef, b: 0xffff, c: 1n << 40n });
    expect(maps.col.map('array').lookup(k32(1))).toEqual(
      Buffer.from([0xef, 0xbe, 0xad, 0xde, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
    );
    expect(t.get(4)).toBeUndefined();
  });

  it('reads all entries in batches', () => {
    const t = maps.col.map('array').typed(u32, pair);
    t.set(2, { a: 2, b: 2, c: 2n });
    const all = maps.col.map('array').lookupAll();
    expect(all.map(([k]) => k.readUInt32LE(0))).toEqual([0, 1, 2, 3]);
    expect(pair.read(all[2]?.[1] ?? Buffer.alloc(16), 0)).toEqual({ a: 2, b: 2, c: 2n });
  });

  it('throws BpfError EINVAL on delete, which arrays do not support', () => {
    expect(thrown(() => maps.col.map('array').delete(k32(0)))).toMatchObject({ name: 'BpfError', code: 'EINVAL' });
  });

  it('throws BpfError E2BIG for an index past the end', () => {
    expect(thrown(() => maps.col.map('array').update(k32(4), Buffer.alloc(16)))).toMatchObject({ code: 'E2BIG' });
  });
});

describe('LPM trie', () => {
  const lpmKey = struct<{ prefixlen: number; addr: Buffer }>(8, {
    prefixlen: { offset: 0, codec: u32 },
    addr: { offset: 4, codec: bytes(4) },
  });
  const key = (cidr: string): { prefixlen: number; addr: Buffer } => {
    const [addr = '', len = '32'] = cidr.split('/');
    return { prefixlen: Number(len), addr: Buffer.from(addr.split('.').map(Number)) };
  };
  const show = (k: { prefixlen: number; addr: Buffer }): string => `${[...k.addr].join('.')}/${k.prefixlen}`;
  const inserted = ['10.0.0.0/8', '10.1.0.0/16', '192.168.1.0/24', '0.0.0.0/0'];

  // Every test starts from exactly the inserted prefixes, whatever the one before changed.
  beforeEach(() => {
    const lpm = maps.col.map('lpm');
    clear(lpm);
    const t = lpm.typed(lpmKey, u32);
    inserted.forEach((c, i) => t.set(key(c), i + 1));
  });

  it('finds the longest matching prefix', () => {
    const t = maps.col.map('lpm').typed(lpmKey, u32);
    expect(t.get(key('10.1.2.3/32'))).toBe(2);
    expect(t.get(key('10.2.0.1/32'))).toBe(1);
    expect(t.get(key('192.168.1.77/32'))).toBe(3);
    expect(t.get(key('8.8.8.8/32'))).toBe(4);
  });

  it('reads every entry in batches with lookupAll', () => {
    const all = maps.col.map('lpm').lookupAll().map(([k, v]) => [show(lpmKey.read(k, 0)), v.readUInt32LE(0)] as const);
    expect(all.sort()).toEqual(inserted.map((c, i) => [c, i + 1] as const).sort());
  });

  it('lists exactly the inserted prefixes with keys()', () => {
    const t = maps.col.map('lpm').typed(lpmKey, u32);
    expect([...t.keys()].map(show).sort()).toEqual([...inserted].sort());
  });

  it('lists exactly the inserted entries with entries()', () => {
    const t = maps.col.map('lpm').typed(lpmKey, u32);
    const got = [...t.entries()].map(([k, v]) => [show(k), v] as const).sort();
    expect(got).toEqual(inserted.map((c, i) => [c, i + 1] as const).sort());
  });

  it('deletes an exact prefix only', () => {
    const t = maps.col.map('lpm').typed(lpmKey, u32);
    expect(t.delete(key('10.1.0.0/24'))).toBe(false);
    expect(t.delete(key('10.1.0.0/16'))).toBe(true);
    expect(t.get(key('10.1.2.3/32'))).toBe(1);
    expect([...t.keys()].map(show).sort()).toEqual(['0.0.0.0/0', '10.0.0.0/8', '192.168.1.0/24']);
  });
});

describe('map without batch operations (program array)', () => {
  const BPF_MAP_TYPE_PROG_ARRAY = 3;
  let progs: BpfMap;
  let dropId: number;
  beforeAll(() => {
    progs = maps.col.map('progs');
    // A program array takes program descriptors and reads back program ids.
    const drop = maps.col.program('xdp_drop');
    dropId = drop.info().id;
    progs.update(k32(1), k32(drop.fd));
    progs.update(k32(3), k32(drop.fd));
  });

  it('has no batch lookup, so lookupAll throws BpfError ENOTSUPP', () => {
    expect(progs.type).toBe(BPF_MAP_TYPE_PROG_ARRAY);
    const err = thrown(() => progs.lookupAll());
    expect(err).toBeInstanceOf(BpfError);
    expect(err).toMatchObject({ errno: ENOTSUPP, code: 'ENOTSUPP', op: 'bpf_map_lookup_batch' });
    expect((err as BpfError).message).toBe('bpf_map_lookup_batch: Operation is not supported');
  });

  it('lists exactly the filled slots with entries(), key by key', () => {
    const got = [...progs.entries()].map(([k, v]) => [k.readUInt32LE(0), v.readUInt32LE(0)]);
    expect(got).toEqual([
      [1, dropId],
      [3, dropId],
    ]);
  });

  it('walks every index with keys(), as arrays do', () => {
    expect(sortedKeys(progs.keys())).toEqual([0, 1, 2, 3]);
  });
});

describe('per-CPU array', () => {
  const cpus = possibleCpus();

  it('reads and writes one padded 8-byte slot per possible CPU', () => {
    const m = maps.col.map('percpu');
    expect(m.perCpu).toBe(true);
    expect(m.valueSize).toBe(4);
    expect(m.valueBufferSize).toBe(8 * cpus);
    const t = m.perCpuTyped(u32, u32);
    t.setAll(1, 0xabcdef01);
    expect(t.get(1)).toEqual(Array.from({ length: cpus }, () => 0xabcdef01));
    const raw = m.lookup(k32(1));
    const slot = Buffer.from([0x01, 0xef, 0xcd, 0xab, 0, 0, 0, 0]);
    expect(raw).toEqual(Buffer.concat(Array.from({ length: cpus }, () => slot)));
  });

  it('returns each CPU its own value', () => {
    const m = maps.col.map('percpu');
    const buf = Buffer.alloc(m.valueBufferSize);
    for (let cpu = 0; cpu < cpus; cpu++) buf.writeUInt32LE(100 + cpu, cpu * 8);
    m.update(k32(1), buf);
    expect(m.perCpuTyped(u32, u32).get(1)).toEqual(Array.from({ length: cpus }, (_, cpu) => 100 + cpu));
  });

  it('sums to the number of packets counted by the program', () => {
    const t = maps.col.map('percpu').perCpuTyped(u32, u32);
    t.setAll(0, 0);
    maps.col.program('xdp_record').testRun({ data: packet(64), repeat: 25 });
    const perCpu = t.get(0) ?? [];
    expect(perCpu).toHaveLength(cpus);
    expect(perCpu.reduce((a, b) => a + b, 0)).toBe(25);
  });

  it('returns undefined for an index past the end', () => {
    expect(maps.col.map('percpu').perCpuTyped(u32, u32).get(2)).toBeUndefined();
  });

  it('throws RangeError for a value that is not one slot per CPU', () => {
    const m = maps.col.map('percpu');
    expect(() => m.update(k32(0), Buffer.alloc(4))).toThrow(RangeError);
    expect(() => m.update(k32(0), Buffer.alloc(4 * cpus))).toThrow(RangeError);
    expect(() => m.typed(u32, u32)).toThrow(RangeError);
    expect(() => m.perCpuTyped(u32, u64)).toThrow(RangeError);
  });

  it('reads all entries in batches with every CPU slot', () => {
    const m = maps.col.map('percpu');
    m.perCpuTyped(u32, u32).setAll(1, 9);
    const all = m.lookupAll();
    expect(all.map(([k]) => k.readUInt32LE(0))).toEqual([0, 1]);
    expect(all[1]?.[1]).toEqual(Buffer.concat(Array.from({ length: cpus }, () => Buffer.from([9, 0, 0, 0, 0, 0, 0, 0]))));
  });
});
