// The Packetwatch XDP object loaded into the kernel, with its maps seen
// through the record codecs. The probe builds on this; tests and benchmarks
// use it directly.
import { existsSync } from 'node:fs';
import { setImmediate } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  BpfError,
  BpfMap,
  type Codec,
  type Collection,
  ObjectSpec,
  type PerCpuMap,
  type Program,
  RingBufferReader,
  type RingBufferReaderOptions,
  TypedMap,
  UpdateFlags,
  clock,
  u8,
  u32,
  u64,
} from 'libbpf-ts';
import { type SourcePrefixes, parseAddress, parsePrefix, sourcePrefix } from '@packetwatch/common/address';
import {
  type BlockEntry,
  BlockReason,
  type Counters,
  DEFAULT_CAPPED_BLOCK_SECONDS,
  DropMode,
  type LpmKey,
  type ProbeConfigRecord,
  SCAN_MAX_PORTS,
  SYN_EVENT_SIZE,
  scanStateSize,
  addrCodec,
  blockCodec,
  countersCodec,
  lpmKeyCodec,
  probeConfigCodec,
  type PortCountRecord,
  openPortBitmap,
  portCountCodec,
  sumCounters,
} from './records.js';

/** The maps a pinned Datapath shares with the next run (the ring buffer's readers and the detector's state are per run). */
const PINNED_MAPS = ['blocklist', 'allowlist', 'list_gen', 'counters', 'events', 'probe_config', 'port_count'];

/** The detector's default space sizes (PW_SCAN_TABLE_SIZE, PW_SCAN_PROBATION_SIZE). */
export const SCAN_TABLE_SIZE = 65_536;
export const SCAN_PROBATION_SIZE = 1 << 20;

/** The pinned map holding the policy's last scan configuration (struct pw_probe_config). */
export const PROBE_CONFIG_MAP = 'probe_config';

/** The pinned map holding closed mode and the ports declared open (struct pw_port_count), as the program was last loaded. */
export const PORT_COUNT_MAP = 'port_count';

/**
 * The lists' generation (the list_gen map). The program keeps a per-CPU
 * cache of sources it found blocked and not allowlisted, each slot stamped
 * with the generation it was filled at; moving the generation invalidates
 * them all. It must move after every change that can make a cached drop
 * wrong: any write to the blocklist, any insertion into the allowlist. The
 * Blocklist and Allowlist below do it; a write past them (bpftool on the
 * pinned maps) takes effect on cached sources at the next move.
 */
export class Generation {
  readonly #map: TypedMap<number, bigint>;

  constructor(map: BpfMap) {
    this.#map = map.typed(u32, u64);
  }

  /** Never 0 after Datapath.load (0 validates no cache slot). */
  get value(): bigint {
    return this.#map.get(0) ?? 0n;
  }

  /**
   * Moves past every value it had, in this run or in an earlier one sharing
   * the pinned maps: at least one more, and at least the boot-time clock, so
   * a generation map created afresh cannot repeat an old stamp.
   */
  bump(): void {
    const next = this.value + 1n;
    const now = clock.boottimeNs();
    this.#map.set(0, next > now ? next : now);
  }

  /** Runs a list write, then moves the generation, even when the write failed part-way. */
  after<T>(write: () => T): T {
    try {
      return write();
    } finally {
      this.bump();
    }
  }
}

/**
 * One of the lists the drop cache depends on, the blocklist hash or the
 * allowlist LPM trie: every write moves the generation. (For the blocklist
 * any write matters: an unblock or a new expiry must not be undone by a
 * cached drop; for the allowlist insertions do, removals only cost the
 * cache a refill.)
 */
export class ListMap<K, V> extends TypedMap<K, V> {
  constructor(
    map: BpfMap,
    key: Codec<K>,
    value: Codec<V>,
    readonly generation: Generation,
  ) {
    super(map, key, value);
  }

  override set(key: K, value: V, flags: UpdateFlags = UpdateFlags.Any): void {
    return this.generation.after(() => super.set(key, value, flags));
  }

  override delete(key: K): boolean {
    return this.generation.after(() => super.delete(key));
  }

  override setMany(entries: readonly (readonly [K, V])[], flags: UpdateFlags = UpdateFlags.Any): number {
    return this.generation.after(() => super.setMany(entries, flags));
  }

  override deleteMany(keys: readonly K[]): number {
    return this.generation.after(() => super.deleteMany(keys));
  }
}

/**
 * The blocklist, which also knows how many entries it holds without walking
 * them: the count from the last walk, moved by every addition and deletion
 * made through here and by the program's own additions (its block_adds
 * counter). Writes past it (bpftool on the pinned map, a second Datapath on
 * the same pins) show at the next snapshot().
 */
export class Blocklist extends ListMap<Buffer, BlockEntry> {
  readonly #kernelAdds: TypedMap<number, bigint>;
  #walked = 0;
  #kernelAddsAtWalk = 0n;
  /** Additions minus deletions made through here since the walk. */
  #delta = 0;
  /** Additions and deletions made through here, ever (a sweep tells its own from others'). */
  #changes = 0;

  #moved(by: 1 | -1): void {
    this.#delta += by;
    this.#changes++;
  }

  constructor(map: BpfMap, generation: Generation, kernelAdds: BpfMap) {
    super(map, addrCodec, blockCodec, generation);
    this.#kernelAdds = kernelAdds.typed(u32, u64);
    this.snapshot();
  }

  /** Entries in the map (lapsed ones included until someone deletes them). */
  get size(): number {
    return this.#walked + this.#delta + Number(this.#kernelAdds.get(0)! - this.#kernelAddsAtWalk);
  }

  /**
   * Every entry, read in one walk (batched reads), which also re-anchors the
   * count: the program's additions are read on both sides of the walk, and
   * when it added meanwhile (the walk may or may not have seen it) the walk
   * is done again, a few times at most (additions are detections, rare next
   * to a walk).
   */
  snapshot(): [Buffer, BlockEntry][] {
    for (let attempt = 0; ; attempt++) {
      const before = this.#kernelAdds.get(0)!;
      const walked = this.map.lookupAll();
      const after = this.#kernelAdds.get(0)!;
      if (before === after || attempt === 3) {
        this.#walked = walked.length;
        this.#kernelAddsAtWalk = after;
        this.#delta = 0;
        return walked.map(([k, v]) => [addrCodec.read(k, 0), blockCodec.read(v, 0)]);
      }
    }
  }

  /**
   * Visits every entry, one chunk (one syscall) at a time with a turn of the
   * event loop between chunks, so that walking a large blocklist never holds
   * up the ring-buffer reader. `visit` may delete entries of its chunk
   * through this Blocklist. The count is re-anchored to the walk when
   * nothing but those deletions changed it meanwhile (otherwise the walk may
   * or may not have seen a change, and the count kept so far stands).
   */
  async sweep(visit: (chunk: [Buffer, BlockEntry][]) => void): Promise<void> {
    const adds = this.#kernelAdds.get(0)!;
    const changes = this.#changes;
    let seen = 0;
    let ownChanges = 0;
    let ownDelta = 0;
    for (const chunk of this.map.lookupChunks()) {
      const [c, d] = [this.#changes, this.#delta];
      visit(chunk.map(([k, v]) => [addrCodec.read(k, 0), blockCodec.read(v, 0)]));
      ownChanges += this.#changes - c;
      ownDelta += this.#delta - d;
      seen += chunk.length;
      await setImmediate();
    }
    if (this.#kernelAdds.get(0) === adds && this.#changes - changes === ownChanges) {
      this.#walked = seen;
      this.#kernelAddsAtWalk = adds;
      this.#delta = ownDelta;
    }
  }

  /** With UpdateFlags.Any, tells a new key from a replaced one so the count stays right. */
  override set(key: Buffer, value: BlockEntry, flags: UpdateFlags = UpdateFlags.Any): void {
    if (flags !== UpdateFlags.Any) {
      super.set(key, value, flags);
      if (flags === UpdateFlags.NoExist) this.#moved(1);
      return;
    }
    try {
      super.set(key, value, UpdateFlags.NoExist);
      this.#moved(1);
    } catch (e) {
      if (!(e instanceof BpfError && e.code === 'EEXIST')) throw e;
      super.set(key, value, UpdateFlags.Exist);
    }
  }

  override delete(key: Buffer): boolean {
    const deleted = super.delete(key);
    if (deleted) this.#moved(-1);
    return deleted;
  }

  override setMany(entries: readonly (readonly [Buffer, BlockEntry])[], flags: UpdateFlags = UpdateFlags.Any): number {
    try {
      return super.setMany(entries, flags);
    } finally {
      this.snapshot();
    }
  }

  override deleteMany(keys: readonly Buffer[]): number {
    try {
      return super.deleteMany(keys);
    } finally {
      this.snapshot();
    }
  }
}

export type Allowlist = ListMap<LpmKey, number>;

/** The compiled program, built by `make bpf` next to its source. */
export const OBJECT_PATH = fileURLToPath(new URL('../build/packetwatch.bpf.o', import.meta.url));

/**
 * The same program built with PW_VARIANT_TEST_CLOCK (also by `make bpf`): its
 * clock is the u64 in its test_clock map, which a test writes before each
 * frame. For tests and benches only; never deployed.
 */
export const TEST_CLOCK_OBJECT_PATH = fileURLToPath(new URL('../build/packetwatch-test-clock.bpf.o', import.meta.url));

export const PROGRAM_NAME = 'packetwatch';

export interface DatapathOptions {
  objectPath?: string;
  dropMode?: DropMode;
  /** Entries of the blocklist hash (default 65,536). */
  blocklistSize?: number;
  /** Entries of the allowlist LPM trie (default 1,024). */
  allowlistSize?: number;
  /** Bytes of the events ring buffer, a power of two (default 4 MiB). */
  ringBufferBytes?: number;
  /** Directory in bpffs where the maps are pinned (reused if already there). */
  pinDir?: string;
  /** In-kernel scan detection: N distinct ports (0 = off, at most SCAN_MAX_PORTS). */
  scanPorts?: number;
  /** ... within this many seconds (default 60). */
  scanWindowSeconds?: number;
  /** How long a kernel block lasts (0 = permanent, the default). */
  scanBlockSeconds?: number;
  /** Kernel blocks per minute at full length (0 = no cap, the default); beyond, blocks last scanCappedBlockSeconds. */
  scanBlocksPerMinute?: number;
  /** How long a block beyond the per-minute budget lasts (default DEFAULT_CAPPED_BLOCK_SECONDS). */
  scanCappedBlockSeconds?: number;
  /** Sources the detector's protected space holds (sources with two distinct ports or more: the scanners hash and protected_ring; default 65,536). */
  scanTableSize?: number;
  /** Sources the detector's probation holds (sources seen on one port: scan_probation and probation_ring; default 1,048,576). */
  scanProbationSize?: number;
  /** IPv6 sources are tracked and blocked by this prefix length (default 64). */
  ipv6Prefix?: number;
  /** IPv4 sources likewise (default 32). */
  ipv4Prefix?: number;
  /** Shadow mode: a block drops nothing; what it would have dropped passes, counted as wouldDrop (default false: enforcing). */
  shadow?: boolean;
  /** Closed mode (PW_PORTSCAN_COUNT=closed): a SYN counts only when nothing on the host accepts its port (default false: every SYN counts). */
  countClosed?: boolean;
  /** Closed mode: ports declared open (PW_OPEN_PORTS), inclusive ranges [first, last] of 1 to 65535. */
  openPorts?: readonly (readonly [number, number])[];
}

export interface BlockOptions {
  /** Seconds until the block lapses; 0 or omitted: never. */
  ttlSeconds?: number;
  reason?: BlockReason;
}

export class Datapath {
  readonly program: Program;
  readonly generation: Generation;
  readonly blocklist: Blocklist;
  readonly allowlist: Allowlist;
  readonly events: BpfMap;
  /** The policy's last scan configuration (key 0), pinned: see readPinnedProbeConfig. */
  readonly probeConfig: TypedMap<number, ProbeConfigRecord>;
  /** Closed mode and the ports declared open (key 0), written at load, pinned: see readPinnedPortCount. */
  readonly portCount: TypedMap<number, PortCountRecord>;
  /**
   * The prefix lengths the program was loaded with (ipv6_prefix,
   * ipv4_prefix): it looks a source up in the blocklist, and tracks it, by
   * its address masked to these. A block written for an address must be
   * written at sourceKey(address) to be seen.
   */
  readonly prefixes: Readonly<SourcePrefixes>;
  readonly #counters: PerCpuMap<number, Counters>;

  private constructor(
    readonly collection: Collection,
    prefixes: SourcePrefixes,
  ) {
    this.prefixes = Object.freeze({ ...prefixes });
    this.program = collection.program(PROGRAM_NAME);
    this.generation = new Generation(collection.map('list_gen'));
    this.blocklist = new Blocklist(collection.map('blocklist'), this.generation, collection.map('block_adds'));
    this.allowlist = new ListMap(collection.map('allowlist'), lpmKeyCodec, u8, this.generation);
    this.events = collection.map('events');
    this.probeConfig = collection.map(PROBE_CONFIG_MAP).typed(u32, probeConfigCodec);
    this.portCount = collection.map(PORT_COUNT_MAP).typed(u32, portCountCodec);
    this.#counters = collection.map('counters').perCpuTyped(u32, countersCodec);
  }

  /**
   * The scan configuration an earlier run pinned under pinDir, read before
   * anything is loaded (its values are the program's load-time constants);
   * undefined when there is no such pin or it holds none (all zero).
   */
  static readPinnedProbeConfig(pinDir: string): ProbeConfigRecord | undefined {
    const path = `${pinDir}/${PROBE_CONFIG_MAP}`;
    if (!existsSync(path)) return undefined;
    const map = BpfMap.openPinned(path);
    try {
      const rec = map.typed(u32, probeConfigCodec).get(0);
      return rec === undefined || rec.portThreshold === 0 ? undefined : rec;
    } finally {
      map.close();
    }
  }

  /**
   * Closed mode and the ports declared open as an earlier run loaded the
   * program with them under pinDir; undefined when there is no such pin.
   */
  static readPinnedPortCount(pinDir: string): PortCountRecord | undefined {
    const path = `${pinDir}/${PORT_COUNT_MAP}`;
    if (!existsSync(path)) return undefined;
    const map = BpfMap.openPinned(path);
    try {
      return map.typed(u32, portCountCodec).get(0);
    } finally {
      map.close();
    }
  }

  static load(opts: DatapathOptions = {}): Datapath {
    const spec = ObjectSpec.open(opts.objectPath ?? OBJECT_PATH);
    try {
      spec.setConstant('drop_mode', opts.dropMode ?? DropMode.Syn);
      spec.setConstant('shadow', opts.shadow === true ? 1 : 0);
      if (opts.blocklistSize !== undefined) spec.setMaxEntries('blocklist', opts.blocklistSize);
      if (opts.allowlistSize !== undefined) spec.setMaxEntries('allowlist', opts.allowlistSize);
      if (opts.ringBufferBytes !== undefined) spec.setMaxEntries('events', opts.ringBufferBytes);
      // Each space: a ring and a hash of its size (bpf/packetwatch.bpf.c).
      for (const [size, dflt, hash, ring, constant] of [
        [opts.scanTableSize, SCAN_TABLE_SIZE, 'scanners', 'protected_ring', 'scan_protected_size'],
        [opts.scanProbationSize, SCAN_PROBATION_SIZE, 'scan_probation', 'probation_ring', 'scan_probation_size'],
      ] as const) {
        const n = size ?? dflt;
        if (!Number.isInteger(n) || n < 1 || n > 1 << 24) throw new RangeError(`${ring} size must be 1 to ${1 << 24}, got ${n}`);
        spec.setMaxEntries(ring, n);
        spec.setMaxEntries(hash, n);
        spec.setConstant(constant, n);
      }
      const ports = opts.scanPorts ?? 0;
      if (!Number.isInteger(ports) || ports < 0 || ports > SCAN_MAX_PORTS) {
        throw new RangeError(`scanPorts must be 0 to ${SCAN_MAX_PORTS}, got ${ports}`);
      }
      spec.setConstant('scan_ports', ports);
      // Sized for N: a value for 64 ports is ten times one for 3.
      spec.setValueSize('scanners', scanStateSize(Math.max(ports, 1)));
      spec.setConstant('scan_window_ns', BigInt(Math.round((opts.scanWindowSeconds ?? 60) * 1e9)));
      spec.setConstant('scan_block_ns', BigInt(Math.round((opts.scanBlockSeconds ?? 0) * 1e9)));
      spec.setConstant('scan_blocks_per_min', opts.scanBlocksPerMinute ?? 0);
      spec.setConstant('scan_capped_block_ns', BigInt(Math.round((opts.scanCappedBlockSeconds ?? DEFAULT_CAPPED_BLOCK_SECONDS) * 1e9)));
      const prefixes: SourcePrefixes = { ipv6: opts.ipv6Prefix ?? 64, ipv4: opts.ipv4Prefix ?? 32 };
      for (const [name, len, max] of [['ipv6_prefix', prefixes.ipv6, 128], ['ipv4_prefix', prefixes.ipv4, 32]] as const) {
        if (!Number.isInteger(len) || len < 1 || len > max) throw new RangeError(`${name} must be 1 to ${max}, got ${len}`);
        spec.setConstant(name, len);
      }
      spec.setConstant('count_closed', opts.countClosed ? 1 : 0);
      const openPorts = opts.openPorts ?? [];
      for (const [first, last] of openPorts) {
        if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last > 65535 || first > last) {
          throw new RangeError(`openPorts ranges must be 1 to 65535, first <= last, got ${first}-${last}`);
        }
      }
      if (opts.pinDir !== undefined) {
        for (const m of PINNED_MAPS) spec.pinMap(m, `${opts.pinDir}/${m}`);
      }
      const dp = new Datapath(spec.load(), prefixes);
      try {
        // The ports declared open, with the mode they go with: the map is
        // shared with the program this one replaces, which reads the bits
        // only in closed mode.
        dp.portCount.set(0, { closed: opts.countClosed ? 1 : 0, open: openPortBitmap(openPorts) });
        // Before the program sees a frame: generation 0 would keep its drop cache unused.
        dp.generation.bump();
      } catch (e) {
        dp.close();
        throw e;
      }
      return dp;
    } catch (e) {
      spec.close();
      throw e;
    }
  }

  /**
   * The blocklist key of the source an address (text or 16 bytes) belongs
   * to: the address masked to its family's prefix length (this.prefixes),
   * as the program masks every frame's source (bpf/packetwatch.bpf.c
   * source_key). With the default /64, 2001:db8::7 and 2001:db8::8 share
   * the key 2001:db8::.
   */
  sourceKey(address: string | Buffer): Buffer {
    return sourcePrefix(typeof address === 'string' ? parseAddress(address) : address, this.prefixes).addr;
  }

  /**
   * Blocks the source an address belongs to (IPv4 or IPv6 text): its whole
   * prefix (sourceKey). Replaces an existing block's expiry and reason. An
   * allowlisted address inside a blocked prefix still passes.
   */
  block(address: string, opts: BlockOptions = {}): BlockEntry {
    const now = clock.boottimeNs();
    const ttl = opts.ttlSeconds ?? 0;
    const entry: BlockEntry = {
      createdNs: now,
      expiresNs: ttl > 0 ? now + BigInt(Math.round(ttl * 1e9)) : 0n,
      reason: opts.reason ?? BlockReason.Unspecified,
      flags: 0,
    };
    this.blocklist.set(this.sourceKey(address), entry);
    return entry;
  }

  /** Unblocks the source an address belongs to (its prefix); returns false when it was not blocked. */
  unblock(address: string): boolean {
    return this.blocklist.delete(this.sourceKey(address));
  }

  /** Allowlists a prefix ("10.0.0.0/8", "2001:db8::/32") or a single address. */
  allow(prefix: string): void {
    const p = parsePrefix(prefix);
    this.allowlist.set({ prefixLen: p.prefixLen, addr: p.addr }, 1);
  }

  disallow(prefix: string): boolean {
    const p = parsePrefix(prefix);
    return this.allowlist.delete({ prefixLen: p.prefixLen, addr: p.addr });
  }

  /** Counters summed over every CPU. */
  counters(): Counters {
    return sumCounters(this.#counters.get(0) ?? []);
  }

  /** A reader of SYN event records (decode each with synEventCodec). */
  reader(opts: Omit<RingBufferReaderOptions, 'recordSize'> = {}): RingBufferReader {
    return new RingBufferReader(this.events, { ...opts, recordSize: SYN_EVENT_SIZE });
  }

  close(): void {
    this.collection.close();
  }
}
