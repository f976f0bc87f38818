// Thin gRPC adapters: one channel per service, unary calls as promises with
// a deadline each, failures as RpcError naming the service, the address
// tried and the gRPC status; the health check; the Watch stream.
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { type Endpoint, PagingError, type TlsFiles, allPages, channelCredentials, endpointTarget } from '@packetwatch/common';
import { PolicyClient, ProbeClient, type WatchEvent, type WatchRequest } from '@packetwatch/proto';

export type ServiceName = 'policy' | 'probe';

export class RpcError extends Error {
  constructor(
    readonly service: ServiceName,
    readonly address: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${service} at ${address}: ${grpc.status[code] ?? code} (${details})`);
    this.name = 'RpcError';
  }

  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }

  /** The service could not be reached (or did not answer in time), as opposed to refusing the call. */
  get unreachable(): boolean {
    return this.code === grpc.status.UNAVAILABLE || this.code === grpc.status.DEADLINE_EXCEEDED;
  }
}

const HINTS: Record<string, string> = {
  ENOENT: 'no socket there: is the service running, and is this its address?',
  EACCES: 'permission denied: run as root or as a member of the socket\'s group (packetwatch)',
  ECONNREFUSED: 'nothing is listening there',
};

/**
 * grpc-js's channel errors, shortened and explained: "No connection
 * established. Last error: Error: connect ENOENT /x. Resolution note: "
 * becomes "connect ENOENT /x: no socket there: is the service running...".
 */
export function explainDetails(details: string): string {
  let text = details
    .replace(/\s*Resolution note:\s*$/, '')
    .replace(/^No connection established\. Last error: (?:Error: )?/, '')
    .replace(/\.$/, '')
    .trim();
  const errno = /\b(E[A-Z]+)\b/.exec(text)?.[1];
  const hint = errno === undefined ? undefined : HINTS[errno];
  if (hint) text = `${text}: ${hint}`;
  return text || details;
}

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;

/** grpc.health.v1 ServingStatus names, by number. */
const HEALTH = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

/** HealthCheckRequest { string service = 1; } */
function encodeHealthRequest(service: string): Buffer {
  return Buffer.from(new BinaryWriter().uint32((1 << 3) | WireType.LengthDelimited).string(service).finish());
}

/** HealthCheckResponse { ServingStatus status = 1; } (absent: 0, UNKNOWN). */
function decodeHealthResponse(buf: Buffer): string {
  const r = new BinaryReader(buf);
  let status = 0;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.Varint) status = r.int32();
    else r.skip(wire);
  }
  return HEALTH[status] ?? `status ${status}`;
}

export class Connection<C extends grpc.Client> {
  constructor(
    readonly service: ServiceName,
    /** As the user gave it, for messages. */
    readonly address: string,
    readonly client: C,
    readonly timeoutMs: number,
  ) {}

  #fail(err: grpc.ServiceError | Error): RpcError {
    const e = err as Partial<grpc.ServiceError>;
    return new RpcError(this.service, this.address, e.code ?? grpc.status.UNKNOWN, explainDetails(e.details ?? err.message));
  }

  /** A unary call with a deadline of timeoutMs from now. */
  unary<T>(fn: (client: C, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: Callback<T>) => unknown): Promise<T> {
    return new Promise((resolve, reject) =>
      fn(this.client, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) =>
        err ? reject(this.#fail(err)) : resolve(res as T),
      ),
    );
  }

  /**
   * Every item of a paginated list (AIP-158): one call per page, each with
   * its own deadline; `items` picks a page's items from its response. Pages
   * that do not add up are an RpcError (INTERNAL).
   */
  async list<R extends { nextPageToken: string }, T>(
    page: (client: C, pageToken: string, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: Callback<R>) => unknown,
    items: (res: R) => T[],
  ): Promise<T[]> {
    try {
      return await allPages(async (pageToken) => {
        const res = await this.unary<R>((c, m, o, cb) => page(c, pageToken, m, o, cb));
        return { items: items(res), nextPageToken: res.nextPageToken };
      });
    } catch (e) {
      if (e instanceof PagingError) throw new RpcError(this.service, this.address, grpc.status.INTERNAL, `its list pages do not add up: ${e.message}`);
      throw e;
    }
  }

  /** The standard health check of one served service ("packetwatch.v1.Policy"). */
  health(serviceName: string): Promise<string> {
    return new Promise((resolve, reject) =>
      this.client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        encodeHealthRequest,
        decodeHealthResponse,
        serviceName,
        new grpc.Metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => (err ? reject(this.#fail(err)) : resolve(res ?? 'UNKNOWN')),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}

export type PolicyConnection = Connection<PolicyClient>;
export type ProbeConnection = Connection<ProbeClient>;

export function connectPolicy(address: string, endpoint: Endpoint, tls: TlsFiles, timeoutMs: number): PolicyConnection {
  return new Connection('policy', address, new PolicyClient(endpointTarget(endpoint), channelCredentials(endpoint, tls)), timeoutMs);
}

export function connectProbe(address: string, endpoint: Endpoint, tls: TlsFiles, timeoutMs: number): ProbeConnection {
  return new Connection('probe', address, new ProbeClient(endpointTarget(endpoint), channelCredentials(endpoint, tls)), timeoutMs);
}

export interface WatchHandle {
  /** Ends the stream; `done` then resolves. */
  cancel(): void;
  /** Resolves when cancelled; rejects with RpcError when the stream fails or the server ends it. */
  done: Promise<void>;
}

/** Policy.Watch: onEvent for each event until cancel() or a failure. No deadline: it runs until stopped. */
export function watch(policy: PolicyConnection, req: WatchRequest, onEvent: (e: WatchEvent) => void): WatchHandle {
  const stream = policy.client.watch(req, new grpc.Metadata());
  let cancelled = false;
  const done = new Promise<void>((resolve, reject) => {
    stream.on('data', (e: WatchEvent) => onEvent(e));
    stream.on('error', (err: grpc.ServiceError) => {
      if (cancelled && err.code === grpc.status.CANCELLED) resolve();
      else reject(new RpcError('policy', policy.address, err.code, explainDetails(err.details)));
    });
    stream.on('end', () => {
      if (cancelled) resolve();
      else reject(new RpcError('policy', policy.address, grpc.status.UNAVAILABLE, 'the policy ended the stream'));
    });
  });
  return {
    cancel() {
      cancelled = true;
      stream.cancel();
    },
    done,
  };
}
