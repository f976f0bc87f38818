// A stand-in for the policy service: a real gRPC server implementing
// packetwatch.v1.Policy/Report (the other methods answer UNIMPLEMENTED) that
// records what a probe sends. bench-probe only counts the event batches: it
// takes each as received (onBatch), its records a view of the message.
import * as grpc from '@grpc/grpc-js';
import { type SynEvent, synEventCodec } from '@packetwatch/bpf';
import { REPORT_WINDOW_BYTES, setReceiveWindow } from '@packetwatch/common';
import { type EventBatch, type PolicyMessage, PolicyService, type ProbeHello, type ProbeMessage, deserializeProbeMessage } from '@packetwatch/proto';

export interface ReceivedBatch {
  events: SynEvent[];
  lost: bigint;
  firstSequence: bigint;
}

export class PolicyStub {
  readonly hellos: ProbeHello[] = [];
  /** The event batches, decoded; none when onBatch takes them. */
  readonly batches: ReceivedBatch[] = [];
  readonly addressUpdates: string[][] = [];
  #server: grpc.Server | undefined;

  constructor(
    readonly socketPath: string,
    private readonly onBatch: (batch: EventBatch) => void = (b) => this.#keep(b),
    /** The version its hello answers with. */
    private readonly version = 'stub',
  ) {}

  get running(): boolean {
    return this.#server !== undefined;
  }

  get events(): SynEvent[] {
    return this.batches.flatMap((b) => b.events);
  }

  #keep(b: EventBatch): void {
    const records = Buffer.from(b.records);
    const events = Array.from({ length: b.count }, (_, i) => synEventCodec.read(records, i * b.recordSize));
    this.batches.push({ events, lost: b.lostEvents, firstSequence: b.firstSequence });
  }

  async start(): Promise<void> {
    const server = new grpc.Server();
    const service = { ...PolicyService, report: { ...PolicyService.report, requestDeserialize: deserializeProbeMessage } };
    const report = (call: grpc.ServerDuplexStream<ProbeMessage, PolicyMessage>) => {
      call.on('data', (msg: ProbeMessage) => {
        const m = msg.message;
        if (m?.$case === 'events') this.onBatch(m.value);
        else if (m?.$case === 'hello') {
          this.hellos.push(m.value);
          call.write({ message: { $case: 'hello', value: { version: this.version } } });
        } else if (m?.$case === 'ownAddresses') this.addressUpdates.push(m.value.addresses);
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    };
    server.addService(service, { report });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    setReceiveWindow(server, REPORT_WINDOW_BYTES); // as the policy offers its probes
    this.#server = server;
  }

  /** Goes away abruptly, as a crashed policy would. */
  stop(): void {
    this.#server?.forceShutdown();
    this.#server = undefined;
  }
}
