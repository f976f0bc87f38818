// The stack as deployed, for the benches that attack it (bench-detection,
// bench-leak): probe + policy as real processes in a victim namespace
// (services.ts), run with the settings of the scenarios, and the
// checks that must pass before anything is measured. Imported dynamically,
// after bench/harness.ts requireBuild has named any missing build output.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { type BlockEntry, addrCodec, blockCodec } from '@packetwatch/bpf';
import type { DatapathCounters, GetPolicyStatusResponse, GetStatusResponse } from '@packetwatch/proto';
import { BpfMap, Program, type TypedMap, mountBpffs } from 'libbpf-ts';
import type { Cleanup } from './cleanup.js';
import { HarnessError, commandError } from './errors.js';
import { type NamespacePair, TEST_BPFFS, createNamespacePair } from './namespaces.js';
import { Services } from './services.js';

/** N of both detectors in every scenario of the issue. */
export const PORT_THRESHOLD = 3;

export type DetectionMode = 'in-kernel' | 'policy alone';
export const MODES: readonly DetectionMode[] = ['in-kernel', 'policy alone'];

/** A detection mode at an N (PW_PORTSCAN_PORT_THRESHOLD of both services). */
export interface Setup {
  mode: DetectionMode;
  n: number;
}

/** The in-kernel detector at the N and at larger ones up to the most it takes (docs/detection.md), then the policy alone. */
export const SETUPS: readonly Setup[] = [
  ...[PORT_THRESHOLD, 16, 64].map((n): Setup => ({ mode: 'in-kernel', n })),
  { mode: 'policy alone', n: PORT_THRESHOLD },
];

export function setupText(s: Setup): string {
  return `${s.mode}, N = ${s.n}`;
}

/** The settings that make a Stack run a setup's N. */
export function setupEnv(s: Setup): Record<string, string> {
  return { PW_PORTSCAN_PORT_THRESHOLD: String(s.n) };
}

/** The victim/attacker namespaces, removed by the cleanup. */
export function namespaces(slot: number, cleanup: Cleanup): NamespacePair {
  return cleanup.network('the victim and attacker namespaces', () => createNamespacePair(slot));
}

/**
 * Probe + policy in the victim namespace, as `make run` starts them, with
 * N = 3, no blocks-per-minute cap on either, a large blocklist, in-kernel
 * detection on or off, logs as JSON at info (the policy's "block in force"
 * lines are read from its stdout; no live table, whose per-SYN rows would be
 * part of the measurement) and no /metrics listeners.
 */
export class Stack {
  readonly svc: Services;
  #live = true;

  private constructor(
    readonly net: NamespacePair,
    readonly mode: DetectionMode,
    env: Record<string, string>,
  ) {
    this.svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_KERNEL_DETECTION: mode === 'in-kernel' ? 'True' : 'False',
        PW_PORTSCAN_PORT_THRESHOLD: String(PORT_THRESHOLD),
        PW_PORTSCAN_TIME_THRESHOLD: '60',
        PW_MAX_BLOCKS_PER_MINUTE: '0',
        PW_BLOCKLIST_SIZE: String(1 << 18),
        PW_LOG_FORMAT: 'json',
        PW_LOG_LEVEL: 'info',
        ...env,
      },
    });
  }

  static async start(net: NamespacePair, mode: DetectionMode, cleanup: Cleanup, env: Record<string, string> = {}): Promise<Stack> {
    // Pins made under `ip netns exec` need a bpffs outside /sys (namespaces.ts).
    try {
      mountBpffs(TEST_BPFFS);
    } catch (e) {
      throw commandError(`mounting a bpffs on ${TEST_BPFFS} failed`, e);
    }
    const s = new Stack(net, mode, env);
    cleanup.add(`stop probe + policy (${mode}), detach, remove the pins`, () => s.stopSync());
    try {
      await s.svc.start();
    } catch (e) {
      throw new HarnessError(`probe + policy did not start (${mode}): ${(e as Error).message}`);
    }
    return s;
  }

  probeStatus(): Promise<GetStatusResponse> {
    return this.#guard('the probe', () => this.svc.probeStatus());
  }

  policyStatus(): Promise<GetPolicyStatusResponse> {
    return this.#guard('the policy', () => this.svc.policyStatus());
  }

  /** The policy's JSON log lines with this message prefix. */
  policyLog(msgPrefix: string): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.svc.policy?.stdout ?? []) {
      if (!line.startsWith('{')) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof rec === 'object' && rec !== null && typeof (rec as { msg?: unknown }).msg === 'string' && (rec as { msg: string }).msg.startsWith(msgPrefix)) {
        out.push(rec as Record<string, unknown>);
      }
    }
    return out;
  }

  /** The kernel blocklist, read directly from its pin: created_ns in nanoseconds, which ListBlocks rounds to milliseconds. */
  openBlocklist(cleanup: Cleanup): TypedMap<Buffer, BlockEntry> {
    const path = `${this.svc.pinRoot}/${this.net.victimIf}/blocklist`;
    let map: BpfMap;
    try {
      map = BpfMap.openPinned(path);
    } catch (e) {
      throw new HarnessError(`opening the probe's pinned blocklist ${path} failed: ${(e as Error).message}`);
    }
    cleanup.add('close the blocklist', () => map.close());
    return map.typed(addrCodec, blockCodec);
  }

  /**
   * The attached program, for BPF_PROG_TEST_RUN from this process: pinned by
   * id with bpftool (libbpf-ts opens programs from pins only), opened, and
   * the pin removed at once; the descriptor keeps it.
   */
  openProgram(programId: number, cleanup: Cleanup): Program {
    const pin = `${TEST_BPFFS}/packetwatch-bench-prog-${process.pid}`;
    rmSync(pin, { force: true });
    try {
      execFileSync('bpftool', ['prog', 'pin', 'id', String(programId), pin], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw commandError(`bpftool prog pin id ${programId} failed`, e);
    }
    let prog: Program;
    try {
      prog = Program.openPinned(pin);
    } finally {
      rmSync(pin, { force: true });
    }
    cleanup.add('close the program', () => prog.close());
    if (prog.info().id !== programId) throw new HarnessError(`pinned program ${programId} opened as ${prog.info().id}`);
    return prog;
  }

  get running(): boolean {
    return this.svc.probe?.exitCode === undefined && this.svc.policy?.exitCode === undefined;
  }

  /** The last lines either service wrote, for an error message. */
  tail(): string {
    const lines = [...(this.svc.probe?.stdout ?? []), ...(this.svc.probe?.stderr ?? []), ...(this.svc.policy?.stdout ?? []), ...(this.svc.policy?.stderr ?? [])];
    return lines.slice(-20).join('\n');
  }

  async stop(): Promise<void> {
    if (!this.#live) return;
    this.#live = false;
    await this.svc.destroy();
  }

  stopSync(): void {
    if (!this.#live) return;
    this.#live = false;
    this.svc.destroySync();
  }

  async #guard<T>(who: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const exited = this.running ? '' : ` (probe exit ${String(this.svc.probe?.exitCode)}, policy exit ${String(this.svc.policy?.exitCode)})`;
      throw new HarnessError(`${who} did not answer GetStatus${exited}: ${(e as Error).message}\n${this.tail()}`);
    }
  }
}

/** A counter of the probe's GetStatus, moved between two readings. */
export function counterDelta(before: GetStatusResponse, after: GetStatusResponse, name: keyof DatapathCounters): number {
  const c = (s: GetStatusResponse) => s.counters?.[name] ?? 0n;
  return Number(c(after) - c(before));
}
