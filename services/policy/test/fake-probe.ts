// A stand-in for a probe's callback endpoint: packetwatch.v1.Probe on a Unix
// socket, in this process, serving a kernel view the test sets, a page at a
// time, and recording the UnblockIp and BlockIp calls the policy makes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type Logger, createLogger } from '@packetwatch/common';
import { type Block, type BlockReason, type ListBlocksRequest, ProbeHello, type ProbeServer, ProbeService } from '@packetwatch/proto';
import { ProbeSession } from '../src/probes.js';

export class FakeProbe {
  /** The kernel view ListBlocks serves. */
  blocks: Block[] = [];
  /** How it pages: honestly (tokens 'p<offset>'), or with a next page token that never changes. */
  paging: 'honest' | 'circle' = 'honest';
  readonly listRequests: ListBlocksRequest[] = [];
  readonly unblocked: string[] = [];
  readonly blocked: { ip: string; reason: BlockReason }[] = [];
  /** The TTL of each BlockIp, in whole seconds (0: permanent), in the order of `blocked`. */
  readonly blockTtls: number[] = [];
  readonly #dir = mkdtempSync(join(tmpdir(), 'pw-fake-probe-'));
  readonly socket = join(this.#dir, 'probe.sock');
  readonly #server = new grpc.Server();

  async start(): Promise<void> {
    const impl: ProbeServer = {
      listBlocks: (call, cb) => {
        this.listRequests.push(call.request);
        const size = call.request.pageSize || 1000;
        const from = call.request.pageToken === '' ? 0 : Number(call.request.pageToken.slice(1));
        const next = from + size;
        const nextPageToken = this.paging === 'circle' ? 'p0' : next < this.blocks.length ? `p${next}` : '';
        cb(null, { blocks: this.blocks.slice(from, next), capacity: 65_536, nextPageToken });
      },
      blockIp: (call, cb) => {
        this.blocked.push({ ip: call.request.ip, reason: call.request.reason });
        this.blockTtls.push(Math.round(Number(call.request.ttl?.seconds ?? 0n) + (call.request.ttl?.nanos ?? 0) / 1e9));
        cb(null, { alreadyBlocked: false, block: undefined, widened: false });
      },
      unblockIp: (call, cb) => {
        this.unblocked.push(call.request.ip);
        cb(null, { removed: true, ip: call.request.ip });
      },
      getStatus: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'fake' }),
    };
    this.#server.addService(ProbeService, impl);
    await new Promise<void>((resolve, reject) =>
      this.#server.bindAsync(`unix://${this.socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
  }

  /** The policy's session with this probe, as a Report stream's hello would make it. */
  session(probeId = 'fake/eth0', log: Logger = createLogger('test', 'silent')): ProbeSession {
    const hello = ProbeHello.fromPartial({ probeId, interface: 'eth0', callbackEndpoint: `unix:${this.socket}` });
    return new ProbeSession(hello, undefined, log);
  }

  stop(): void {
    this.#server.forceShutdown();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
