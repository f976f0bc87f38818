// Undoing a run's setup even when it fails or is interrupted.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { commandError } from './errors.js';

/** Undo steps, run once in reverse order; synchronous so that they also run from process 'exit'. */
export class Cleanup {
  readonly #steps: { what: string; step: () => void }[] = [];

  /** bench: the name in `bench-<name>: cleanup (...) failed`. */
  constructor(private readonly bench: string) {}

  add(what: string, step: () => void): void {
    this.#steps.push({ what, step });
  }

  /** What make() creates (network namespaces, a veth pair), destroyed with the other steps; a failure to create it names `what`. */
  network<T extends { destroy(): void }>(what: string, make: () => T): T {
    let net: T;
    try {
      net = make();
    } catch (e) {
      throw commandError(`creating ${what} failed`, e);
    }
    this.add(`remove ${what}`, () => net.destroy());
    return net;
  }

  /** A fresh temporary directory (packetwatch-bench-<name>-*), removed with the other steps. */
  tempDir(): string {
    const dir = mkdtempSync(join(os.tmpdir(), `packetwatch-bench-${this.bench}-`));
    this.add('remove the temp dir', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  run(): void {
    for (let s = this.#steps.pop(); s; s = this.#steps.pop()) {
      try {
        s.step();
      } catch (e) {
        console.error(`bench-${this.bench}: cleanup (${s.what}) failed: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Runs body with the steps run afterwards, whatever happens: also when the
   * process exits meanwhile, and on Ctrl-C or a kill, which must not leave
   * services, namespaces or pins behind.
   */
  async around<T>(body: () => Promise<T>): Promise<T> {
    const onExit = () => this.run();
    const onSignal = (signal: NodeJS.Signals) => {
      console.error(`bench-${this.bench}: ${signal}, cleaning up`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await body();
    } finally {
      this.run();
      process.off('exit', onExit);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}
