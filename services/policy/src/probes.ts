// The probes connected to this policy, and calls back to them. Each probe
// announced its callback endpoint in its hello; unary calls carry deadlines
// and BlockIp is retried on transient failures.
import * as grpc from '@grpc/grpc-js';
import { type Logger, MAX_BLOCKLIST_SIZE, PAGE_SIZE, type TlsFiles, allPages, channelCredentials, endpointTarget, parseEndpoint } from '@packetwatch/common';
import {
  type Block,
  BlockReason,
  type BlockIpResponse,
  type ListBlocksResponse,
  type PolicyMessage,
  ProbeClient,
  type ProbeHello,
  type UnblockIpResponse,
} from '@packetwatch/proto';

const CALL_TIMEOUT_MS = 3000;
const RETRIES = 4;
const TRANSIENT = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED, grpc.status.ABORTED]);

function unaryCall<T>(fn: (opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    fn({ deadline: Date.now() + CALL_TIMEOUT_MS }, (err, res) => (err ? reject(err) : resolve(res as T))),
  );
}

export class ProbeSession {
  readonly connectedAt = Date.now();
  eventsReceived = 0;
  eventsLost = 0;
  /** How far the probe's clock is behind the policy's (negative: ahead), at its last batch. */
  clockSkewMs = 0;
  /** Whether that is beyond the tolerance, so its event times are being corrected. */
  clockCorrected = false;
  /** Writes a message on the probe's Report stream (set once its hello is answered). */
  toProbe: (m: PolicyMessage) => void = () => {};
  /** The probe's number for the fleet rule's (probe, port) pairs, given by ProbeRegistry.add(). */
  number = 0;
  ownAddresses: string[];
  /** Whether its XDP program drops nothing for a block: as its hello said, then as this policy's configuration (sent after the hello) says. */
  shadow: boolean;
  readonly #client: ProbeClient;

  constructor(
    readonly hello: ProbeHello,
    tls: TlsFiles | undefined,
    private readonly log: Logger,
  ) {
    this.ownAddresses = hello.ownAddresses;
    this.shadow = hello.shadow;
    const endpoint = parseEndpoint(hello.callbackEndpoint);
    if (!endpoint) throw new Error(`probe ${hello.probeId} announced an invalid callback endpoint '${hello.callbackEndpoint}'`);
    this.#client = new ProbeClient(endpointTarget(endpoint), channelCredentials(endpoint, tls));
    // Connect now: the first BlockIp after a detection must not pay for the
    // connection set-up while the scanner keeps sending.
    this.#client.waitForReady(Date.now() + CALL_TIMEOUT_MS, (err) => {
      if (err) this.log.warn({ probe: hello.probeId, callback: hello.callbackEndpoint, err: err.message }, 'probe callback endpoint not reachable yet');
    });
  }

  get id(): string {
    return this.hello.probeId;
  }

  /** BlockIp, retried with backoff while the failure is transient. */
  blockIp(ip: string, ttlSeconds: number, reason: BlockReason): Promise<BlockIpResponse> {
    const ttl = { seconds: BigInt(Math.floor(ttlSeconds)), nanos: Math.round((ttlSeconds % 1) * 1e9) };
    return this.#retried('BlockIp', ip, (opts, cb) => this.#client.blockIp({ ip, ttl, reason }, new grpc.Metadata(), opts, cb));
  }

  /** UnblockIp, retried the same way: an unblock that does not arrive would leave a source blocked that an operator freed. */
  unblockIp(ip: string): Promise<UnblockIpResponse> {
    return this.#retried('UnblockIp', ip, (opts, cb) => this.#client.unblockIp({ ip }, new grpc.Metadata(), opts, cb));
  }

  async #retried<T>(what: string, ip: string, fn: (opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: T) => void) => void): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await unaryCall<T>(fn);
      } catch (e) {
        const err = e as grpc.ServiceError;
        if (!TRANSIENT.has(err.code) || attempt >= RETRIES) throw err;
        const delay = 50 * 2 ** attempt;
        this.log.warn({ probe: this.id, ip, code: grpc.status[err.code], retryInMs: delay }, `${what} failed; retrying`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * Every block in the probe's kernel, page after page, each call with its
   * own deadline. The probe may be forged: no more than a blocklist can
   * hold, and pages that go round in a circle throw PagingError.
   */
  listBlocks(): Promise<Block[]> {
    return allPages(async (pageToken) => {
      const res = await unaryCall<ListBlocksResponse>((opts, cb) =>
        this.#client.listBlocks({ pageSize: PAGE_SIZE.max, pageToken }, new grpc.Metadata(), opts, cb),
      );
      return { items: res.blocks, nextPageToken: res.nextPageToken };
    }, MAX_BLOCKLIST_SIZE);
  }

  close(): void {
    this.#client.close();
  }
}

/** Probe numbers are 16 bits: the fleet rule keeps a (probe, port) pair in 32 (detector.ts). */
export const PROBE_NUMBERS = 0x10000;

/**
 * The probes' numbers for the fleet rule, by id. A number stays with its id
 * when the probe leaves, so that a probe that reconnects has its pairs of
 * before counted as its own. Beyond PROBE_NUMBERS ids, a newcomer takes the
 * number of the probe that left longest ago (only a peer inventing ids gets
 * that far; if that probe left less than T ago, its pairs still in the
 * detector count as the newcomer's).
 */
export class ProbeNumbers {
  readonly #numbers = new Map<string, number>();
  readonly #ids: string[] = [];
  /** Ids of probes that left, with their numbers, the longest gone first. */
  readonly #departed = new Map<string, number>();

  /** A connecting probe's number: its own of before, a fresh one, or the longest departed probe's. Throws when every number is connected. */
  connect(id: string): number {
    let n = this.#numbers.get(id);
    if (n !== undefined) {
      this.#departed.delete(id);
      return n;
    }
    if (this.#ids.length < PROBE_NUMBERS) {
      n = this.#ids.length;
      this.#ids.push(id);
    } else {
      const gone = this.#departed.entries().next();
      if (gone.done) throw new Error(`${PROBE_NUMBERS} probes are connected: no probe number is free`);
      const [oldId, oldNumber] = gone.value;
      this.#departed.delete(oldId);
      this.#numbers.delete(oldId);
      n = oldNumber;
      this.#ids[n] = id;
    }
    this.#numbers.set(id, n);
    return n;
  }

  /** The probe left: its number is kept for it, and is the next to go once every number is taken. */
  disconnect(id: string): void {
    const n = this.#numbers.get(id);
    if (n !== undefined) this.#departed.set(id, n);
  }

  /** The id of the probe with this number (a Detection's pairs), or '' for a number never given. */
  idOf(number: number): string {
    return this.#ids[number] ?? '';
  }
}

export class ProbeRegistry {
  readonly #sessions = new Map<string, ProbeSession>();
  readonly numbers = new ProbeNumbers();

  /** Adds a session whose id is free (the Report handler refuses a taken one: a live id is never taken over), and numbers it. */
  add(s: ProbeSession): void {
    if (this.#sessions.has(s.id)) throw new Error(`probe id ${s.id} is connected already`);
    s.number = this.numbers.connect(s.id);
    this.#sessions.set(s.id, s);
  }

  /** Removes the session if it is the one registered under its id. */
  remove(s: ProbeSession): boolean {
    if (this.#sessions.get(s.id) !== s) return false;
    this.#sessions.delete(s.id);
    this.numbers.disconnect(s.id);
    return true;
  }

  get(id: string): ProbeSession | undefined {
    return this.#sessions.get(id);
  }

  all(): ProbeSession[] {
    return [...this.#sessions.values()];
  }

  get size(): number {
    return this.#sessions.size;
  }
}

export { BlockReason };
