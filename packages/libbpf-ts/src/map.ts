// Maps: a BpfMap is a handle on one kernel map (a file descriptor) with raw
// byte operations; typed() and perCpu() view it through codecs.
import { checkPinnedKind } from './bpffs.js';
import { type Codec, encode } from './codec.js';
import { possibleCpus } from './clock.js';
import { BpfError, native as call } from './errors.js';
import { native } from './native.js';

export enum MapType {
  Hash = 1,
  Array = 2,
  PercpuHash = 5,
  PercpuArray = 6,
  LruHash = 9,
  LruPercpuHash = 10,
  LpmTrie = 11,
  RingBuf = 27,
}

/** Flags of update(): create or replace, only create, only replace. */
export enum UpdateFlags {
  Any = 0,
  NoExist = 1,
  Exist = 2,
}

const PERCPU_TYPES = new Set<number>([MapType.PercpuHash, MapType.PercpuArray, MapType.LruPercpuHash]);
// errnos meaning "this map type has no batch operations": EINVAL, EOPNOTSUPP, ENOTSUPP.
const NO_BATCH = new Set([22, 95, 524]);
const BATCH_CHUNK = 256;

export interface MapInfo {
  id: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  /** Size of one value as declared; per-CPU maps hold one per possible CPU. */
  readonly valueSize: number;
  readonly maxEntries: number;
  /** Bytes of a value as the syscalls read and write it (all CPUs for per-CPU maps). */
  readonly valueBufferSize: number;
  #fd: number;
  readonly #owned: boolean;

  /** @internal use Collection.map(), BpfMap.openPinned() or BpfMap.fromFd(). */
  constructor(fd: number, info: MapInfo, owned: boolean) {
    this.#fd = fd;
    this.#owned = owned;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.valueBufferSize = PERCPU_TYPES.has(info.type)
      ? Math.ceil(info.valueSize / 8) * 8 * possibleCpus()
      : info.valueSize;
  }

  /** Opens a map pinned in bpffs; the returned handle owns its descriptor. */
  static openPinned(path: string): BpfMap {
    const fd = call(() => native.objGet(path));
    try {
      checkPinnedKind(fd, 'map', path);
      return new BpfMap(fd, call(() => native.mapInfo(fd)), true);
    } catch (e) {
      native.closeFd(fd);
      throw e;
    }
  }

  /** Wraps a descriptor; with owned, close() closes it. */
  static fromFd(fd: number, owned = false): BpfMap {
    return new BpfMap(fd, call(() => native.mapInfo(fd)), owned);
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError(`map ${this.name}: handle is closed`, { errno: 9, code: 'EBADF', op: 'map' });
    return this.#fd;
  }

  get perCpu(): boolean {
    return PERCPU_TYPES.has(this.type);
  }

  info(): MapInfo {
    return call(() => native.mapInfo(this.fd));
  }

  lookup(key: Buffer): Buffer | undefined {
    this.#checkKey(key);
    return call(() => native.mapLookup(this.fd, key, this.valueBufferSize));
  }

  update(key: Buffer, value: Buffer, flags: UpdateFlags = UpdateFlags.Any): void {
    this.#checkKey(key);
    if (value.length !== this.valueBufferSize) {
      throw new RangeError(`map ${this.name}: value is ${value.length} bytes, expected ${this.valueBufferSize}`);
    }
    call(() => native.mapUpdate(this.fd, key, value, flags));
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    this.#checkKey(key);
    return call(() => native.mapDelete(this.fd, key));
  }

  *keys(): IterableIterator<Buffer> {
    let key: Buffer | undefined = undefined;
    for (;;) {
      const cur: Buffer | null = key ?? null;
      key = call(() => native.mapNextKey(this.fd, cur, this.keySize));
      if (!key) return;
      yield key;
    }
  }

  /**
   * Every entry, read in batches where the kernel supports it for this map
   * type and key by key otherwise. Entries added or removed meanwhile may or
   * may not be seen, as with any walk over a live map.
   */
  *entries(): IterableIterator<[Buffer, Buffer]> {
    let batched: [Buffer, Buffer][] | undefined;
    try {
      batched = this.lookupAll();
    } catch (e) {
      if (!(e instanceof BpfError && NO_BATCH.has(e.errno))) throw e;
    }
    if (batched) {
      yield* batched;
      return;
    }
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) yield [key, value];
    }
  }

  /** All entries through BPF_MAP_LOOKUP_BATCH; throws where the map type lacks it. */
  lookupAll(): [Buffer, Buffer][] {
    const out: [Buffer, Buffer][] = [];
    for (const chunk of this.lookupChunks()) out.push(...chunk);
    return out;
  }

  /**
   * The entries through BPF_MAP_LOOKUP_BATCH, one chunk (up to `chunk`
   * entries, one syscall) at a time, so that a caller can pause between
   * chunks (a walk of a large map that must not hold up an event loop).
   * A hash map hands out a bucket whole: a chunk holds more than `chunk`
   * entries when one bucket does (the kernel says ENOSPC, and the call is
   * made again with room for it). Throws where the map type lacks batch
   * operations.
   */
  *lookupChunks(chunk = BATCH_CHUNK): IterableIterator<[Buffer, Buffer][]> {
    let token: Buffer | null = null;
    for (;;) {
      const r = this.#lookupBatch(token, chunk);
      const out: [Buffer, Buffer][] = [];
      for (let i = 0; i < r.count; i++) {
        out.push([
          r.keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          r.values.subarray(i * this.valueBufferSize, (i + 1) * this.valueBufferSize),
        ]);
      }
      if (out.length > 0) yield out;
      if (r.done) return;
      token = r.token;
    }
  }

  /** One BPF_MAP_LOOKUP_BATCH of up to `count` entries from `token`, with room made for a bucket larger than that. */
  #lookupBatch(token: Buffer | null, count: number): ReturnType<typeof native.mapLookupBatch> {
    for (let room = count; ; room *= 2) {
      try {
        return call(() => native.mapLookupBatch(this.fd, token, this.keySize, this.valueBufferSize, room));
      } catch (e) {
        if (!(e instanceof BpfError && e.code === 'ENOSPC') || room >= this.maxEntries) throw e;
      }
    }
  }

  /**
   * Writes many entries, in one syscall with UpdateFlags.Any; returns how
   * many were written. Stops at the first entry that fails, as the kernel does.
   */
  updateBatch(entries: readonly (readonly [Buffer, Buffer])[], flags: UpdateFlags = UpdateFlags.Any): number {
    if (entries.length === 0) return 0;
    // Check each value: a short one followed by a long one would otherwise
    // pass a check of the total and shift every later value in the kernel.
    for (const [k, v] of entries) {
      this.#checkKey(k);
      if (v.length !== this.valueBufferSize) {
        throw new RangeError(`map ${this.name}: every value must be ${this.valueBufferSize} bytes, got ${v.length}`);
      }
    }
    // BPF_MAP_UPDATE_BATCH takes no per-element BPF_NOEXIST/BPF_EXIST (the
    // kernel rejects them with EINVAL): honour them element by element.
    if (flags !== UpdateFlags.Any) {
      for (const [k, v] of entries) this.update(k, v, flags);
      return entries.length;
    }
    const keys = Buffer.concat(entries.map(([k]) => k));
    const values = Buffer.concat(entries.map(([, v]) => v));
    return call(() => native.mapUpdateBatch(this.fd, keys, values, entries.length, flags));
  }

  /**
   * Deletes many keys in one syscall (one more per key that is not in the
   * map: like delete(), a missing key is skipped, not an error); returns how
   * many were deleted.
   */
  deleteBatch(keys: readonly Buffer[]): number {
    if (keys.length === 0) return 0;
    for (const k of keys) this.#checkKey(k);
    return call(() => native.mapDeleteBatch(this.fd, Buffer.concat(keys), keys.length));
  }

  pin(path: string): void {
    call(() => native.objPin(this.fd, path));
  }

  /** A view through codecs. The view shares this handle's descriptor. */
  typed<K, V>(key: Codec<K>, value: Codec<V>): TypedMap<K, V> {
    return new TypedMap(this, key, value);
  }

  /** A per-CPU view: lookups return one value per possible CPU. */
  perCpuTyped<K, V>(key: Codec<K>, value: Codec<V>): PerCpuMap<K, V> {
    return new PerCpuMap(this, key, value);
  }

  close(): void {
    if (this.#fd >= 0 && this.#owned) native.closeFd(this.#fd);
    this.#fd = -1;
  }

  #checkKey(key: Buffer): void {
    if (key.length !== this.keySize) {
      throw new RangeError(`map ${this.name}: key is ${key.length} bytes, expected ${this.keySize}`);
    }
  }
}

function checkCodec(map: BpfMap, what: string, size: number, expected: number): void {
  if (size !== expected) {
    throw new RangeError(`map ${map.name}: ${what} codec is ${size} bytes, the map's ${what} is ${expected}`);
  }
}

export class TypedMap<K, V> {
  constructor(
    readonly map: BpfMap,
    private readonly key: Codec<K>,
    private readonly value: Codec<V>,
  ) {
    checkCodec(map, 'key', key.size, map.keySize);
    checkCodec(map, 'value', value.size, map.valueBufferSize);
  }

  get(key: K): V | undefined {
    const v = this.map.lookup(encode(this.key, key));
    return v && this.value.read(v, 0);
  }

  set(key: K, value: V, flags: UpdateFlags = UpdateFlags.Any): void {
    this.map.update(encode(this.key, key), encode(this.value, value), flags);
  }

  delete(key: K): boolean {
    return this.map.delete(encode(this.key, key));
  }

  *keys(): IterableIterator<K> {
    for (const k of this.map.keys()) yield this.key.read(k, 0);
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.map.entries()) yield [this.key.read(k, 0), this.value.read(v, 0)];
  }

  setMany(entries: readonly (readonly [K, V])[], flags: UpdateFlags = UpdateFlags.Any): number {
    return this.map.updateBatch(
      entries.map(([k, v]) => [encode(this.key, k), encode(this.value, v)] as const),
      flags,
    );
  }

  deleteMany(keys: readonly K[]): number {
    return this.map.deleteBatch(keys.map((k) => encode(this.key, k)));
  }
}

export class PerCpuMap<K, V> {
  readonly #stride: number;
  readonly #cpus: number;

  constructor(
    readonly map: BpfMap,
    private readonly key: Codec<K>,
    private readonly value: Codec<V>,
  ) {
    if (!map.perCpu) throw new TypeError(`map ${map.name} is not a per-CPU map`);
    checkCodec(map, 'key', key.size, map.keySize);
    checkCodec(map, 'value', value.size, map.valueSize);
    this.#stride = Math.ceil(map.valueSize / 8) * 8;
    this.#cpus = map.valueBufferSize / this.#stride;
  }

  /** One value per possible CPU, in CPU order. */
  get(key: K): V[] | undefined {
    const buf = this.map.lookup(encode(this.key, key));
    if (!buf) return undefined;
    const out: V[] = [];
    for (let cpu = 0; cpu < this.#cpus; cpu++) out.push(this.value.read(buf, cpu * this.#stride));
    return out;
  }

  /** Sets every CPU's slot to the same value. */
  setAll(key: K, value: V): void {
    const buf = Buffer.alloc(this.map.valueBufferSize);
    for (let cpu = 0; cpu < this.#cpus; cpu++) this.value.write(value, buf, cpu * this.#stride);
    this.map.update(encode(this.key, key), buf);
  }
}
