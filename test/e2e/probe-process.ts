// The probe as a real process: spawned from its build output, awaited until
// its Probe API answers, and called over its Unix socket.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type GetStatusResponse, ProbeClient } from '@packetwatch/proto';
import { waitFor } from '@packetwatch/test-support';
import { PROBE_MAIN, call } from '@packetwatch/test-support/services';

export class ProbeProcess {
  readonly log: string[] = [];
  readonly exited: Promise<number | null>;
  #child: ChildProcess;
  #running = true;

  constructor(env: Record<string, string>, args: string[] = []) {
    this.#child = spawn(process.execPath, [PROBE_MAIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [this.#child.stdout!, this.#child.stderr!]) {
      s.setEncoding('utf8');
      s.on('data', (d: string) => this.log.push(...d.split('\n').filter(Boolean)));
    }
    this.exited = new Promise((resolve) =>
      this.#child.on('exit', (code) => {
        this.#running = false;
        resolve(code);
      }),
    );
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.#running;
  }

  get pid(): number {
    return this.#child.pid!;
  }

  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** Resolves once the probe's API answers GetStatus (a stale socket of a killed run does not count). */
  async ready(client: ProbeClient, socket: string, timeoutMs = 15_000): Promise<GetStatusResponse> {
    let exitCode: number | null | undefined;
    void this.exited.then((c) => (exitCode = c));
    return waitFor(
      `the probe's API on ${socket}`,
      async () => {
        if (exitCode !== undefined) throw new Error(`probe exited with ${exitCode}:\n${this.log.join('\n')}`);
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
