// The probe as a real process: spawned from its build output, awaited until
// its Probe API answers, and called over its Unix socket.
import { existsSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type GetStatusResponse, ProbeClient } from '@packetwatch/proto';
import { waitFor } from '@packetwatch/test-support';
import { PROBE_MAIN, ServiceProcess, call } from '@packetwatch/test-support/services';

/** The probe run from its build output in this namespace (as root). */
export class ProbeProcess extends ServiceProcess {
  constructor(env: Record<string, string>, args: string[] = []) {
    super([process.execPath, PROBE_MAIN, ...args], env);
  }

  /** Everything it wrote, stdout then stderr. */
  get log(): string[] {
    return [...this.stdout, ...this.stderr];
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Resolves once the probe's API answers GetStatus (a stale socket of a killed run does not count). */
  async ready(client: ProbeClient, socket: string, timeoutMs = 15_000): Promise<GetStatusResponse> {
    return waitFor(
      `the probe's API on ${socket}`,
      async () => {
        if (this.exitCode !== undefined) throw new Error(`probe exited with ${this.exitCode}:\n${this.log.join('\n')}`);
        if (!existsSync(socket)) return undefined;
        try {
          return await call<GetStatusResponse>((cb) =>
            client.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 1000 }, cb),
          );
        } catch {
          return undefined;
        }
      },
      timeoutMs,
    );
  }
}

export function deadline(ms = 5000): Partial<grpc.CallOptions> {
  return { deadline: Date.now() + ms };
}

export function probeClient(socket: string): ProbeClient {
  return new ProbeClient(`unix://${socket}`, grpc.credentials.createInsecure());
}
