// Block management on the kernel blocklist: the rules behind BlockIp and
// friends, free of gRPC so they read as the domain they are.
import { type BlockEntry, BlockReason, type Datapath, blockCodec, lpmKeyCodec } from '@packetwatch/bpf';
import { AddressError, GrpcStatus, MAX_TTL_SECONDS, ServerError, formatAddress, parseAddress } from '@packetwatch/common';
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

export function parseIp(ip: string): Buffer {
  try {
    return parseAddress(ip);
  } catch (e) {
    if (e instanceof AddressError) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, e.message);
    throw e;
  }
}

export class Blocks {
  constructor(private dp: Datapath) {}

  /** Moves to a reloaded Datapath (same pinned maps, another program). */
  use(dp: Datapath): void {
    this.dp = dp;
  }

  /** Whether the allowlist covers the address (longest-prefix match, as the kernel does). */
  allowlisted(addr: Buffer): boolean {
    const key = encode(lpmKeyCodec, { prefixLen: 128, addr });
    return this.dp.allowlist.map.lookup(key) !== undefined;
  }

  block(ip: string, ttlSeconds: number, reason: BlockReason): { entry: KernelBlock; alreadyBlocked: boolean } {
    if (ip.length > 64) throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid address: ${ip.length} characters is not an address`);
    const addr = parseIp(ip);
    if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${ttlSeconds}s: must be zero (permanent) or positive`);
    }
    if (ttlSeconds > MAX_TTL_SECONDS) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${ttlSeconds}s: at most ${MAX_TTL_SECONDS}s (ten years); use 0 for permanent`);
    }
    if (!Object.values(BlockReason).includes(reason)) {
      throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid reason ${reason}`);
    }
    const text = formatAddress(addr);
    if (this.allowlisted(addr)) {
      throw new ServerError(GrpcStatus.FAILED_PRECONDITION, `${text} is allowlisted (an own address of this probe, or the policy's allowlist) and cannot be blocked`);
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
    return { entry: this.toKernelBlock(addr, entry, now, bootToUnixOffsetNs()), alreadyBlocked };
  }

  unblock(ip: string): boolean {
    return this.dp.blocklist.delete(parseIp(ip));
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
      ip: formatAddress(addr),
      reason: e.reason as BlockReason,
      createdUnixNs: e.createdNs + offset,
      expiresUnixNs: e.expiresNs === 0n ? undefined : e.expiresNs + offset,
      expired: e.expiresNs !== 0n && e.expiresNs <= now,
    };
  }
}
