// The Report stream to the policy service: hello first, then event batches
// as fast as gRPC flow control allows. While the policy is slow or away the
// queue absorbs events up to its capacity; the stream is re-opened with
// capped exponential backoff.
import * as grpc from '@grpc/grpc-js';
import { type Endpoint, type Logger, type TlsFiles, channelCredentials, endpointTarget } from '@packetwatch/common';
import { type PolicyMessage, PolicyService, type ProbeConfig, type ProbeHello, type ProbeMessage, eventBatchMessageSize, reserveEventBatch, serializeProbeMessage } from '@packetwatch/proto';
import type { EventQueue } from './queue.js';

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
/** Message buffers kept for reuse (each holds a full batch: 256 KiB at the default PW_BATCH_EVENTS). */
const POOL_MAX = 32;

/** What the stream carries: a message, or an event batch already encoded (reserveEventBatch). */
type Outgoing = ProbeMessage | Buffer;
const serialize = (m: Outgoing): Buffer => (Buffer.isBuffer(m) ? m : serializeProbeMessage(m));

export interface ReporterStats {
  connected: boolean;
  eventsSent: number;
  batchesSent: number;
  reconnects: number;
}

export class Reporter {
  readonly #client: grpc.Client;
  #call: grpc.ClientDuplexStream<Outgoing, PolicyMessage> | undefined;
  #connected = false;
  #writable = false;
  #stopped = false;
  #backoff = BACKOFF_MIN_MS;
  #retry: NodeJS.Timeout | undefined;
  #flushScheduled = false;
  /** Batches written to the stream whose write has not completed yet (waiting for HTTP/2 flow control or the socket). */
  #inFlight = 0;
  #eventsSent = 0;
  #batchesSent = 0;
  #reconnects = 0;
  /**
   * Event-batch messages are written into buffers reused from message to
   * message. A fresh buffer per message (a new ArrayBuffer of a quarter of a
   * megabyte) made V8 run a full collection every 64 MB of them, several a
   * second at a million events a second. A buffer goes back to the pool
   * once gRPC is done with the message: at the turn of the event loop after
   * its write callback (setImmediate). gRPC copies a message into its own
   * frame in the microtasks after it takes it (its filters are async
   * functions); its retry layer, which would hold messages to resend them
   * and call back before they are even taken, is off (retries off, no retry
   * buffer: the stream is re-opened here instead), so the write callback
   * comes once the message is on its way to the socket.
   */
  readonly #messageSize: number;
  readonly #free: Buffer[] = [];
  #released: Buffer[] = [];

  constructor(
    readonly endpoint: Endpoint,
    tls: TlsFiles | undefined,
    private readonly queue: EventQueue,
    private readonly hello: () => ProbeHello,
    private readonly log: Logger,
    private readonly handlers: {
      onConnectionChange?: (connected: boolean) => void;
      onAllowlist?: (prefixes: string[]) => void;
      onConfig?: (config: ProbeConfig) => void;
    } = {},
  ) {
    // A plain client, so that Report can send event batches encoded around
    // the queue's records (reserveEventBatch) and other messages through
    // serializeProbeMessage; the method, the messages and the response
    // decoder are the generated ones.
    this.#client = new grpc.Client(endpointTarget(endpoint), channelCredentials(endpoint, tls), {
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      // See #free: gRPC never holds or resends a message after its write callback.
      'grpc.enable_retries': 0,
      'grpc.per_rpc_retry_buffer_size': 0,
    });
    this.#messageSize = eventBatchMessageSize(queue.batchEvents * queue.recordSize);
  }

  get connected(): boolean {
    return this.#connected;
  }

  stats(): ReporterStats {
    return { connected: this.#connected, eventsSent: this.#eventsSent, batchesSent: this.#batchesSent, reconnects: this.#reconnects };
  }

  start(): void {
    this.#open();
  }

  /** Sends what is queued soon: after the current I/O callbacks, so one wake-up's records go out together. */
  scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Sends a message outside the event flow (address changes); dropped when not connected, since the next hello carries it. */
  send(msg: ProbeMessage): void {
    if (this.#connected && this.#call) this.#call.write(msg);
  }

  /** Sends what is queued (within graceMs), then closes the stream. */
  async stop(graceMs = 1000): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    const deadline = Date.now() + graceMs;
    while (this.#connected && this.queue.depth > 0 && Date.now() < deadline) {
      this.#flush();
      await new Promise((r) => setTimeout(r, 5));
    }
    this.#call?.end();
    this.#client.close();
  }

  #open(): void {
    if (this.#stopped) return;
    const report = PolicyService.report;
    const call = this.#client.makeBidiStreamRequest(report.path, serialize, report.responseDeserialize);
    this.#call = call;
    this.#writable = true;
    this.#inFlight = 0;
    call.write({ message: { $case: 'hello', value: this.hello() } });
    call.on('data', (msg: PolicyMessage) => {
      if (msg.message?.$case === 'hello' && !this.#connected) {
        this.#connected = true;
        this.#backoff = BACKOFF_MIN_MS;
        this.log.info({ policy: endpointTarget(this.endpoint), policyVersion: msg.message.value.version }, 'connected to the policy service');
        this.handlers.onConnectionChange?.(true);
        this.#flush();
      } else if (msg.message?.$case === 'allowlist') {
        this.handlers.onAllowlist?.(msg.message.value.prefixes);
      } else if (msg.message?.$case === 'config') {
        this.handlers.onConfig?.(msg.message.value);
      }
    });
    call.on('drain', () => {
      this.#writable = true;
      this.#flush();
    });
    const lost = (err?: grpc.ServiceError) => {
      if (this.#call !== call) return;
      this.#call = undefined;
      const was = this.#connected;
      this.#connected = false;
      this.#writable = false;
      if (was) this.handlers.onConnectionChange?.(false);
      if (this.#stopped) return;
      const delay = Math.round(this.#backoff * (0.5 + Math.random() / 2));
      this.#backoff = Math.min(this.#backoff * 2, BACKOFF_MAX_MS);
      this.#reconnects++;
      this.log[was ? 'warn' : 'debug'](
        { policy: endpointTarget(this.endpoint), code: err ? grpc.status[err.code] : 'END', details: err?.details, retryInMs: delay },
        'policy stream closed; reconnecting',
      );
      this.#retry = setTimeout(() => this.#open(), delay);
    };
    call.on('error', (err: grpc.ServiceError) => lost(err));
    call.on('end', () => lost());
  }

  /** A buffer for one message, from the pool when it has one. */
  #messageBuffer(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#messageSize);
  }

  /** Returns a message's buffer to the pool at the next turn of the event loop (its write callback has come). */
  #release(buf: Buffer): void {
    if (this.#released.length === 0) {
      setImmediate(() => {
        for (const b of this.#released) if (this.#free.length < POOL_MAX) this.#free.push(b);
        this.#released = [];
      });
    }
    this.#released.push(buf);
  }

  #flush(): void {
    const call = this.#call;
    if (!call || !this.#connected) return;
    while (this.#writable) {
      // While earlier batches are still on their way, only full batches
      // leave: under load the stream carries fewer, fuller messages (at a
      // million events a second it carried four times as many as needed, a
      // few hundred events each, and each message costs both services a fixed
      // share of gRPC work). A partial batch leaves as soon as nothing is in
      // flight, so a lone SYN is not held back.
      if (this.#inFlight > 0 && this.queue.depth < this.queue.batchEvents) return;
      const batch = this.queue.take();
      if (!batch) return;
      this.#inFlight++;
      const buf = this.#messageBuffer();
      const written = () => {
        this.#release(buf);
        if (this.#call !== call) return;
        this.#inFlight--;
        if (this.#inFlight === 0) this.#flush();
      };
      // The records go from the queue straight into the message that is
      // sent: one copy, no intermediate buffer.
      const recordSize = this.queue.recordSize;
      const { message, recordsOffset } = reserveEventBatch(
        { count: batch.count, recordSize, lostEvents: BigInt(batch.lost), firstSequence: batch.firstSequence, sentUnixNs: BigInt(Date.now()) * 1_000_000n },
        batch.count * recordSize,
        buf,
      );
      let at = recordsOffset;
      for (const part of batch.parts) at += part.copy(message, at);
      this.#writable = call.write(message, written);
      this.#eventsSent += batch.count;
      this.#batchesSent++;
    }
  }
}
