// A stand-in for the policy service: a real gRPC server implementing
// packetwatch.v1.Policy/Report that records what a probe sends.
import * as grpc from '@grpc/grpc-js';
import { type SynEvent, synEventCodec } from '@packetwatch/bpf';
import { type PolicyMessage, type PolicyServer, PolicyService, type ProbeHello, type ProbeMessage } from '@packetwatch/proto';

export interface ReceivedBatch {
  events: SynEvent[];
  lost: bigint;
  firstSequence: bigint;
}

export class PolicyStub {
  readonly hellos: ProbeHello[] = [];
  readonly batches: ReceivedBatch[] = [];
  readonly addressUpdates: string[][] = [];
  #server: grpc.Server | undefined;

  constructor(readonly socketPath: string) {}

  get running(): boolean {
    return this.#server !== undefined;
  }

  get events(): SynEvent[] {
    return this.batches.flatMap((b) => b.events);
  }

  get lost(): bigint {
    return this.batches.reduce((n, b) => n + b.lost, 0n);
  }

  async start(): Promise<void> {
    const server = new grpc.Server();
    // Only Report: the other methods answer UNIMPLEMENTED, as grpc-js does for missing handlers.
    const impl: Pick<PolicyServer, 'report'> = {
      report: (call: grpc.ServerDuplexStream<ProbeMessage, PolicyMessage>) => {
        call.on('data', (msg: ProbeMessage) => {
          const m = msg.message;
          if (m?.$case === 'hello') {
            this.hellos.push(m.value);
            call.write({ message: { $case: 'hello', value: { version: 'stub' } } });
          } else if (m?.$case === 'events') {
            const b = m.value;
            const events: SynEvent[] = [];
            for (let i = 0; i < b.count; i++) events.push(synEventCodec.read(Buffer.from(b.records), i * b.recordSize));
            this.batches.push({ events, lost: b.lostEvents, firstSequence: b.firstSequence });
          } else if (m?.$case === 'ownAddresses') {
            this.addressUpdates.push(m.value.addresses);
          }
        });
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
    };
    server.addService(PolicyService, impl);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.#server = server;
  }

  /** Goes away abruptly, as a crashed policy would. */
  stop(): void {
    this.#server?.forceShutdown();
    this.#server = undefined;
  }
}
