// packetwatch.v1.Probe over gRPC: argument checks and status mapping here,
// the rules in Blocks.
import { type BlockReason as KernelReason } from '@packetwatch/bpf';
import { GrpcStatus, type Logger, type MethodRoles, ServerError, unary } from '@packetwatch/common';
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

export function toProtoBlock(b: KernelBlock): Block {
  return {
    ip: b.ip,
    reason: (b.reason as number) as BlockReason,
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
      const { entry, alreadyBlocked } = blocks.block(req.ip, ttlSeconds(req.ttl), reasonOf(req.reason));
      observeApply(Number(process.hrtime.bigint() - start) / 1e9);
      log.info({ ip: entry.ip, ttlSeconds: ttlSeconds(req.ttl), reason: BlockReason[req.reason], alreadyBlocked }, 'blocked');
      return { block: toProtoBlock(entry), alreadyBlocked };
    }),
    unblockIp: unary<UnblockIpRequest, UnblockIpResponse>(log, 'UnblockIp', (req) => {
      const removed = blocks.unblock(req.ip);
      log.info({ ip: req.ip, removed }, 'unblocked');
      return { removed };
    }),
    listBlocks: unary<ListBlocksRequest, ListBlocksResponse>(log, 'ListBlocks', () => ({
      blocks: blocks.list().map(toProtoBlock),
      capacity: blocks.capacity,
    })),
    getStatus: unary<GetStatusRequest, GetStatusResponse>(log, 'GetStatus', () => status.status()),
  };
}

export function attachModeOf(mode: string): AttachMode {
  return mode === 'driver' ? AttachMode.ATTACH_MODE_DRIVER : mode === 'generic' ? AttachMode.ATTACH_MODE_GENERIC : AttachMode.ATTACH_MODE_UNSPECIFIED;
}
