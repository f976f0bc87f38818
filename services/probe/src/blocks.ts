// Block management on the kernel blocklist: the rules behind BlockIp and
// friends, free of gRPC so they read as the domain they are.
//
// The XDP program looks a source up by its prefix: the address masked to
// the configured length of its family (ProbeConfig ipv6_prefix, ipv4_prefix;
// bpf/packetwatch.bpf.c source_key), one exact-match lookup. So a block is
// written under that key: an address, or a longer prefix, is widened to it,
// and a shorter prefix is refused (no lookup at the configured length would
// ever find it). The allowlist goes by address: an allowlisted address
// passes inside a blocked prefix.
import { type BlockEntry, BlockReason, type Datapath, blockCodec, lpmKeyCodec } from '@packetwatch/bpf';
import {
  GrpcStatus,
  MAX_TTL_SECONDS,
  type Prefix,
  type SourcePrefixes,
  ServerError,
  formatSource,
  namedSource,
  sourceLengthFor,
  sourcePrefix,
} from '@packetwatch/common';
import { MapFullError, UpdateFlags, clock, encode } from 'libbpf-ts';
import { keyPage } from './keypage.js';

export interface KernelBlock {
  ip: string;
  reason: BlockReason;
  createdUnixNs: bigint;
  /** undefined: permanent. */
  expiresUnixNs: bigint | undefined;
  expired: boolean;
}

/** Offset that turns CLOCK_BOOTTIME ns into Unix-epoch ns, read now. */
export function bootToUnixOffsetNs(): bigint {
  const a = clock.realtimeNs();
  const b = clock.boottimeNs();
  const c = clock.realtimeNs();
  return (a + c) / 2n - b;
}

/** What a BlockIp or UnblockIp names: the blocklist key of the source it falls in. */
export interface Target {
  /** The 16-byte key: the address masked to its family's configured length. */
  key: Buffer;
  /** That source as text ("2001:db8:1:2::/64", or the address at whole length). */
  text: string;
  /** The address given, when an address was (not a prefix). */
  address: Buffer | undefined;
  /** The key covers more than was named: an address or a longer prefix, widened. */
  widened: boolean;
}

/** What the probe does with its blocklist when the prefix lengths change (Blocks.rekey). */
export interface Rekeyed {
  /** Entries moved to a shorter key (widened), merged where several fell into one. */
  widened: number;
  /** Entries merged into another's key. */
  merged: number;
  /** Entries deleted: keyed by a prefix shorter than the new length, which no lookup can match. */
  removed: number;
}

export class Blocks {
  constructor(
    private dp: Datapath,
    /** The prefix lengths the program keys sources by (the scan configuration in force). */
    private lengths: SourcePrefixes,
  ) {}

  /** Moves to a reloaded Datapath (same pinned maps, another program). */
  use(dp: Datapath): void {
    this.dp = dp;
  }

  get prefixes(): Readonly<SourcePrefixes> {
    return this.lengths;
  }

  /** Whether the allowlist covers the address (longest-prefix match, as the kernel does). */
  allowlisted(addr: Buffer): boolean {
    return this.covered({ addr, prefixLen: 128 });
  }

  /** Whether one allowlist entry covers every address of the prefix (an LPM lookup at its length finds only those). */
  covered(p: Prefix): boolean {
    const key = encode(lpmKeyCodec, { prefixLen: p.prefixLen, addr: p.addr });
    return this.dp.allowlist.map.lookup(key) !== undefined;
  }

  /**
   * The source an address or prefix names, at the configured length of its
   * family: an address or a longer prefix widens to it; a shorter prefix is
   * INVALID_ARGUMENT naming the length (one exact-match lookup per source:
   * the kernel cannot match a /48 when it keys by /64).
   */
  target(ip: string): Target {
    const named = namedSource(ip, this.lengths);
    return { key: named.prefix.addr, text: named.text, address: named.address, widened: named.widened };
  }

  block(ip: string, ttlSeconds: number, reason: BlockReason): { entry: KernelBlock; alreadyBlocked: boolean; widened: boolean } {
    const { key: addr, text, address, widened } = this.target(ip);
    if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${ttlSeconds}s: must be zero (permanent) or positive`);
    }
    if (ttlSeconds > MAX_TTL_SECONDS) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${ttlSeconds}s: at most ${MAX_TTL_SECONDS}s (ten years); use 0 for permanent`);
    }
    if (!Object.values(BlockReason).includes(reason)) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid reason ${reason}`);
    }
    if (address && this.allowlisted(address)) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${ip} is allowlisted (an own address of this probe, or the policy's allowlist) and cannot be blocked`);
    }
    if (this.covered(sourcePrefix(addr, this.lengths))) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${text} is allowlisted whole (an own address of this probe, or the policy's allowlist) and cannot be blocked`);
    }
    const now = clock.boottimeNs();
    const existing = this.dp.blocklist.get(addr);
    const alreadyBlocked = existing !== undefined && (existing.expiresNs === 0n || existing.expiresNs > now);
    const entry: BlockEntry = {
      createdNs: alreadyBlocked ? existing.createdNs : now,
      expiresNs: ttlSeconds > 0 ? now + BigInt(Math.round(ttlSeconds * 1e9)) : 0n,
      reason,
      flags: 0,
    };
    try {
      this.dp.blocklist.set(addr, entry, UpdateFlags.Any);
    } catch (e) {
      if (e instanceof MapFullError) {
        throw new ServerError(GrpcStatus.RESOURCE_EXHAUSTED, `the kernel blocklist is full (${this.dp.blocklist.map.maxEntries} entries)`);
      }
      throw e;
    }
    return { entry: this.toKernelBlock(addr, entry, now, bootToUnixOffsetNs()), alreadyBlocked, widened };
  }

  /** Removes the block of the source an address or prefix falls in; the source, and whether there was one. */
  unblock(ip: string): { removed: boolean; text: string } {
    const { key, text } = this.target(ip);
    return { removed: this.dp.blocklist.delete(key), text };
  }

  /**
   * The blocklist under new prefix lengths (the policy sent a configuration
   * that changes them, and the program is loaded again with it), in one walk:
   * an entry keyed longer than its family's new length (a whole address
   * when sources become /64s; any key with bits beyond the length, whatever
   * wrote it) moves to the key of the prefix it falls in, merged with what
   * is there (the earliest creation, the later expiry, permanent winning),
   * so that it keeps matching. An entry keyed shorter than the new length
   * (a /64 when sources become addresses) cannot be matched by any lookup
   * and cannot be narrowed to the addresses it meant: it is deleted, and the
   * policy's reconcile re-sends its decisions under the new length (a block
   * made by the in-kernel detector alone is lost with it). `from`: the
   * lengths the entries were written under; undefined when unknown (at
   * start), when only the first rule can be applied.
   */
  rekey(from: SourcePrefixes | undefined, to: SourcePrefixes): Rekeyed {
    this.lengths = to;
    const out: Rekeyed = { widened: 0, merged: 0, removed: 0 };
    for (const [key, raw] of this.dp.blocklist.map.lookupAll()) {
      const whole = { addr: key, prefixLen: 128 };
      const newLen = sourceLengthFor(whole, to);
      const oldLen = from === undefined ? undefined : sourceLengthFor(whole, from);
      if (oldLen !== undefined && oldLen < newLen) {
        if (this.dp.blocklist.delete(key)) out.removed++;
        continue;
      }
      const next = sourcePrefix(key, to).addr;
      if (next.equals(key)) continue;
      const moving = blockCodec.read(raw, 0);
      const there = this.dp.blocklist.get(next);
      const entry: BlockEntry = there
        ? {
            createdNs: there.createdNs < moving.createdNs ? there.createdNs : moving.createdNs,
            expiresNs: there.expiresNs === 0n || moving.expiresNs === 0n ? 0n : there.expiresNs > moving.expiresNs ? there.expiresNs : moving.expiresNs,
            reason: there.reason,
            flags: there.flags,
          }
        : moving;
      try {
        this.dp.blocklist.set(next, entry, UpdateFlags.Any);
      } catch (e) {
        // Full: the entry stays under its old key (it no longer matches, and ListBlocks shows it widened).
        if (e instanceof MapFullError) continue;
        throw e;
      }
      this.dp.blocklist.delete(key);
      if (there) out.merged++;
      else out.widened++;
    }
    return out;
  }

  /**
   * At most `size` blocks in address order, those after `after` (from the
   * start when undefined), and whether more follow (keypage.ts says why
   * address order).
   */
  page(after: Buffer | undefined, size: number): { blocks: KernelBlock[]; last: Buffer | undefined; more: boolean } {
    const now = clock.boottimeNs();
    const offset = bootToUnixOffsetNs();
    const { page, more } = keyPage(this.dp.blocklist.map.lookupAll(), after, size);
    return {
      blocks: page.map(([addr, value]) => this.toKernelBlock(addr, blockCodec.read(value, 0), now, offset)),
      last: page.at(-1)?.[0],
      more,
    };
  }

  /** Entries in the kernel blocklist, kept as they change: no walk (scrapes and status calls read it). */
  get size(): number {
    return this.dp.blocklist.size;
  }

  get capacity(): number {
    return this.dp.blocklist.map.maxEntries;
  }

  /**
   * Deletes entries whose expiry has passed (the kernel ignores them, but
   * they take room), walking the blocklist a chunk at a time between other
   * work. Returns how many it deleted.
   */
  async removeExpired(): Promise<number> {
    const now = clock.boottimeNs();
    let removed = 0;
    await this.dp.blocklist.sweep((chunk) => {
      for (const [k, e] of chunk) if (e.expiresNs !== 0n && e.expiresNs <= now && this.dp.blocklist.delete(k)) removed++;
    });
    return removed;
  }

  private toKernelBlock(addr: Buffer, e: BlockEntry, now: bigint, offset: bigint): KernelBlock {
    return {
      // The key as the source it is, at its family's configured length.
      ip: formatSource({ addr, prefixLen: sourceLengthFor({ addr, prefixLen: 128 }, this.lengths) }),
      reason: e.reason as BlockReason,
      createdUnixNs: e.createdNs + offset,
      expiresUnixNs: e.expiresNs === 0n ? undefined : e.expiresNs + offset,
      expired: e.expiresNs !== 0n && e.expiresNs <= now,
    };
  }
}
