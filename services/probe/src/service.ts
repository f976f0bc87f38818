// packetwatch.v1.Probe over gRPC: argument checks and status mapping here,
// the rules in Blocks.
import type { BlockReason as KernelReason } from '@packetwatch/bpf';
import { ADDR_LEN } from '@packetwatch/bpf/records';
import { GrpcStatus, type Logger, type MethodRoles, PageList, ServerError, pageCursor, pageSize, pageToken, unary } from '@packetwatch/common';
import {
  AttachMode,
  type Block,
  BlockReason,
  type BlockIpRequest,
  type BlockIpResponse,
  type Duration,
  type GetStatusRequest,
  type GetStatusResponse,
  type ListBlocksRequest,
  type ListBlocksResponse,
  type ProbeServer,
  type UnblockIpRequest,
  type UnblockIpResponse,
} from '@packetwatch/proto';
import type { Blocks, KernelBlock } from './blocks.js';

export interface StatusSource {
  status(): GetStatusResponse;
}

const nsToDate = (ns: bigint) => new Date(Number(ns / 1_000_000n));

/**
 * The most a Block takes encoded, with its tag and length in the response:
 * the longest source text (43 characters: eight full groups and a /127,
 * under PW_IPV6_PREFIX=127), a reason, two timestamps (of the latest time
 * a u64 of nanoseconds holds) and a flag: 79 bytes, and
 * some room (listblocks.test.ts encodes the largest possible Block). A
 * page of PAGE_SIZE.max blocks is then at most 800,000 bytes, and the
 * response adds only its capacity and a token (under 40 bytes): within
 * PAGE_BYTES, and far below grpc-js's 4 MiB receive limit, whatever the map
 * holds.
 */
export const MAX_BLOCK_BYTES = 80;

/** Reasons the protocol knows; the kernel map holds a 32-bit number anyone with the pin can write. */
const REASONS = new Set<number>([BlockReason.BLOCK_REASON_UNSPECIFIED, BlockReason.BLOCK_REASON_PORTSCAN, BlockReason.BLOCK_REASON_MANUAL]);

export function toProtoBlock(b: KernelBlock): Block {
  return {
    ip: b.ip,
    // Another number would not even encode (an enum is an int32): one odd entry must not fail the whole list.
    reason: REASONS.has(b.reason) ? (b.reason as number as BlockReason) : BlockReason.BLOCK_REASON_UNSPECIFIED,
    created: nsToDate(b.createdUnixNs),
    expires: b.expiresUnixNs === undefined ? undefined : nsToDate(b.expiresUnixNs),
    expired: b.expired,
  };
}

function ttlSeconds(ttl: Duration | undefined): number {
  if (!ttl) return 0;
  const s = Number(ttl.seconds) + ttl.nanos / 1e9;
  if ((ttl.seconds < 0n || ttl.nanos < 0) && s !== 0) {
    throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid ttl ${s}s: must be zero (permanent) or positive`);
  }
  return s;
}

function reasonOf(r: BlockReason): KernelReason {
  if (r === BlockReason.UNRECOGNIZED || !(r in BlockReason)) {
    throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid reason ${String(r)}`);
  }
  return r as number as KernelReason;
}

/** Who may call what over TLS: blocks are the policy's to make; operators read. */
export const PROBE_ROLES: MethodRoles<ProbeServer> = {
  blockIp: ['policy'],
  unblockIp: ['policy'],
  listBlocks: ['policy', 'operator'],
  getStatus: ['policy', 'operator'],
};

export function probeService(
  blocks: Blocks,
  status: StatusSource,
  log: Logger,
  observeApply: (seconds: number) => void,
): ProbeServer {
  return {
    blockIp: unary<BlockIpRequest, BlockIpResponse>(log, 'BlockIp', (req) => {
      const start = process.hrtime.bigint();
      const { entry, alreadyBlocked, widened } = blocks.block(req.ip, ttlSeconds(req.ttl), reasonOf(req.reason));
      observeApply(Number(process.hrtime.bigint() - start) / 1e9);
      if (widened) log.info({ requested: req.ip, ip: entry.ip }, 'block widened to the prefix this probe keys sources by');
      log.info({ ip: entry.ip, ttlSeconds: ttlSeconds(req.ttl), reason: BlockReason[req.reason], alreadyBlocked }, 'blocked');
      return { block: toProtoBlock(entry), alreadyBlocked, widened };
    }),
    unblockIp: unary<UnblockIpRequest, UnblockIpResponse>(log, 'UnblockIp', (req) => {
      const { removed, text } = blocks.unblock(req.ip);
      log.info({ requested: req.ip, ip: text, removed }, 'unblocked');
      return { removed, ip: text };
    }),
    listBlocks: unary<ListBlocksRequest, ListBlocksResponse>(log, 'ListBlocks', (req) => {
      const size = pageSize(req.pageSize);
      const after = pageCursor(req.pageToken, PageList.KernelBlocks, ADDR_LEN);
      const page = blocks.page(after, size);
      return {
        blocks: page.blocks.map(toProtoBlock),
        capacity: blocks.capacity,
        nextPageToken: page.more && page.last ? pageToken(PageList.KernelBlocks, page.last) : '',
      };
    }),
    getStatus: unary<GetStatusRequest, GetStatusResponse>(log, 'GetStatus', () => status.status()),
  };
}

export function attachModeOf(mode: string): AttachMode {
  return mode === 'driver' ? AttachMode.ATTACH_MODE_DRIVER : mode === 'generic' ? AttachMode.ATTACH_MODE_GENERIC : AttachMode.ATTACH_MODE_UNSPECIFIED;
}
