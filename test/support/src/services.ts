// Probe and policy as real processes inside the victim's network namespace,
// as `make run` starts them: the probe as root, the policy as the
// unprivileged `packetwatch` user with no capabilities. They talk over Unix
// sockets in a directory only that group can enter; callers use both APIs
// over the same sockets.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { PAGE_SIZE, allPages, groupId } from '@packetwatch/common';
import {
  type Block,
  type Decision,
  type GetPolicyStatusResponse,
  type GetStatusResponse,
  type ListBlocksResponse,
  type ListDecisionsResponse,
  PolicyClient,
  ProbeClient,
} from '@packetwatch/proto';
import { TEST_BPFFS } from './namespaces.js';
import { waitFor } from './wait.js';

/** The repository: the first directory up from this module (its source, or its build output) that holds services/probe. */
export const REPO_ROOT = (() => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'services', 'probe'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no services/probe above ${fileURLToPath(import.meta.url)}`);
  }
})();
export const PROBE_MAIN = join(REPO_ROOT, 'services/probe/dist/main.js');
const POLICY_MAIN = join(REPO_ROOT, 'services/policy/dist/main.js');
const POLICY_USER = 'packetwatch';
/** The probe's and the policy's group (make deps), without operators. */
const CONTROL_GROUP = 'packetwatch-control';
/** An upper bound for a service to start and connect, generous for a loaded machine (it only bounds a failure's wait). */
const START_TIMEOUT_MS = 60_000;

/** Promisifies a unary call; rejects with the grpc ServiceError. */
export function call<T>(fn: (cb: (err: grpc.ServiceError | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as T))));
}

/** Every block in a probe's kernel, page after page (ListBlocks is paginated), each call with its own deadline. */
export function listAllBlocks(client: ProbeClient, timeoutMs = 5000): Promise<Block[]> {
  return allPages(async (pageToken) => {
    const res = await call<ListBlocksResponse>((cb) => client.listBlocks({ pageSize: PAGE_SIZE.max, pageToken }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, cb));
    return { items: res.blocks, nextPageToken: res.nextPageToken };
  });
}

/** Every decision (active ones, or all), page after page, each call with its own deadline. */
export function listAllDecisions(client: PolicyClient, all: boolean, timeoutMs = 5000): Promise<Decision[]> {
  return allPages(async (pageToken) => {
    const res = await call<ListDecisionsResponse>((cb) =>
      client.listDecisions({ all, pageSize: PAGE_SIZE.max, pageToken }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, cb),
    );
    return { items: res.decisions, nextPageToken: res.nextPageToken };
  });
}

/** `packetwatch-probe detach` inside a namespace with these settings (PW_IFDEV, PW_BPF_PIN_DIR): removes the program, its maps and pins, if any. */
export function detachProbe(netns: string, env: Record<string, string | undefined>): void {
  try {
    execFileSync('ip', ['netns', 'exec', netns, process.execPath, PROBE_MAIN, 'detach'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  } catch {
    // nothing attached
  }
}

function uid(user: string): number {
  return Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
}

export class ServiceProcess {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;
  readonly #child: ChildProcess;

  constructor(argv: string[], env: Record<string, string>) {
    this.#child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const [stream, lines] of [
      [this.#child.stdout!, this.stdout],
      [this.#child.stderr!, this.stderr],
    ] as const) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        const parts = (partial + d).split('\n');
        partial = parts.pop() ?? '';
        lines.push(...parts);
      });
    }
    this.exited = new Promise((resolve) =>
      this.#child.on('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      }),
    );
  }

  /** The service's own pid: `ip netns exec` and setpriv exec it in place. */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.exitCode === undefined) this.#child.kill(signal);
  }

  /** SIGKILL, then waits (synchronously: this also runs from process 'exit') until the kernel has released its descriptors. */
  killSync(): void {
    const pid = this.pid;
    if (pid === undefined || this.exitCode !== undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 200; i++) {
      let state: string | undefined;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        state = stat[stat.lastIndexOf(')') + 2];
      } catch {
        return;
      }
      // A zombie has closed its files: an XDP link and maps it held are released.
      if (state === 'Z' || state === 'X') return;
      Atomics.wait(pause, 0, 0, 10);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.kill(signal);
    return this.exited;
  }
}

export interface ServicesOptions {
  netns: string;
  ifdev: string;
  /** PW_ settings for both services. */
  env?: Record<string, string>;
  /**
   * Another host of a fleet: the probe reports to that Services' policy (its
   * Report socket), and this one's policy is not started. Unix sockets cross
   * network namespaces, as the benches and the fleet tests need.
   */
  reportTo?: Services;
}

export class Services {
  readonly dir: string;
  readonly stateDir: string;
  readonly pinRoot: string;
  /** The operators' sockets (status, lists, the policy's API). */
  readonly probeSocket: string;
  readonly policySocket: string;
  /** The probe's and the policy's channel: the probe's control socket (BlockIp), the policy's Report socket. */
  readonly controlSocket: string;
  readonly reportSocket: string;
  /** An operator's clients. */
  readonly probeClient: ProbeClient;
  readonly policyClient: PolicyClient;
  /** The policy's client of the probe (BlockIp, UnblockIp), and a probe's of the policy (Report). */
  readonly controlClient: ProbeClient;
  readonly reportClient: PolicyClient;
  probe: ServiceProcess | undefined;
  policy: ServiceProcess | undefined;

  constructor(private readonly opts: ServicesOptions) {
    // The layout of deploy/run.sh: the directory is root's (setgid, read-only
    // to the group), the policy's socket and state in directories of its own,
    // the channel between the two in control/ (root's) and report/ (the
    // policy's), of the control group.
    this.dir = mkdtempSync(join(tmpdir(), 'pw-e2e-'));
    const gid = groupId(POLICY_USER);
    chownSync(this.dir, 0, gid);
    chmodSync(this.dir, 0o2750);
    this.stateDir = join(this.dir, 'state');
    mkdirSync(this.stateDir, { mode: 0o750 });
    chownSync(this.stateDir, uid(POLICY_USER), gid);
    mkdirSync(join(this.dir, 'policy'), { mode: 0o750 });
    chownSync(join(this.dir, 'policy'), uid(POLICY_USER), gid);
    const controlGid = groupId(CONTROL_GROUP);
    for (const [sub, owner] of [['control', 0], ['report', uid(POLICY_USER)]] as const) {
      mkdirSync(join(this.dir, sub));
      chownSync(join(this.dir, sub), owner, controlGid);
      chmodSync(join(this.dir, sub), 0o2750);
    }
    this.pinRoot = `${TEST_BPFFS}/packetwatch-e2e-${process.pid}-${opts.ifdev}`;
    this.probeSocket = join(this.dir, 'probe.sock');
    this.policySocket = join(this.dir, 'policy', 'policy.sock');
    this.controlSocket = join(this.dir, 'control', 'probe.sock');
    this.reportSocket = join(this.dir, 'report', 'policy.sock');
    this.probeClient = new ProbeClient(`unix://${this.probeSocket}`, grpc.credentials.createInsecure());
    this.policyClient = new PolicyClient(`unix://${this.policySocket}`, grpc.credentials.createInsecure());
    this.controlClient = new ProbeClient(`unix://${this.controlSocket}`, grpc.credentials.createInsecure());
    this.reportClient = new PolicyClient(`unix://${this.reportSocket}`, grpc.credentials.createInsecure());
  }

  get env(): Record<string, string> {
    return {
      PW_IFDEV: this.opts.ifdev,
      PW_STATE_DIR: this.stateDir,
      PW_PROBE_SOCKET: this.probeSocket,
      PW_PROBE_CONTROL_SOCKET: this.controlSocket,
      PW_POLICY_SOCKET: this.policySocket,
      PW_POLICY_REPORT_SOCKET: this.reportSocket,
      PW_POLICY_ADDR: `unix:${(this.opts.reportTo ?? this).reportSocket}`,
      PW_SOCKET_GROUP: POLICY_USER,
      PW_CONTROL_GROUP: CONTROL_GROUP,
      PW_BPF_PIN_DIR: this.pinRoot,
      PW_PROMETHEUS_PORT: '0',
      PW_POLICY_PROMETHEUS_PORT: '0',
      PW_LOG_FORMAT: 'table',
      PW_LOG_LEVEL: 'debug',
      ...this.opts.env,
    };
  }

  /** Changes PW_ settings of the services started from now on. */
  configure(env: Record<string, string>): void {
    this.opts.env = { ...this.opts.env, ...env };
  }

  /** Starts the policy (unprivileged) and waits until it answers. */
  async startPolicy(): Promise<GetPolicyStatusResponse> {
    this.policy = new ServiceProcess(
      [
        'ip', 'netns', 'exec', this.opts.netns,
        'setpriv', `--reuid=${POLICY_USER}`, `--regid=${POLICY_USER}`, '--init-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs',
        process.execPath, POLICY_MAIN,
      ],
      this.env,
    );
    return this.#ready(this.policy, () => this.policyStatus());
  }

  /** Starts the probe (root) and waits until it answers and the policy it reports to has its hello. */
  async startProbe(): Promise<GetStatusResponse> {
    this.probe = new ServiceProcess(['ip', 'netns', 'exec', this.opts.netns, process.execPath, PROBE_MAIN], this.env);
    const st = await this.#ready(this.probe, () => this.probeStatus());
    const home = this.opts.reportTo ?? this;
    if (home.policy?.exitCode === undefined && home.policy) {
      await waitFor(
        'the policy to see the probe',
        async () => ((await home.policyStatus()).probes.some((p) => p.probeId === st.probeId) ? true : undefined),
        START_TIMEOUT_MS,
      );
    }
    return st;
  }

  async start(): Promise<void> {
    await this.startPolicy();
    await this.startProbe();
  }

  /** Both services running (whichever has exited is started again), connected to each other, with nothing queued. */
  async ensureRunning(): Promise<void> {
    if (!this.policy || this.policy.exitCode !== undefined) await this.startPolicy();
    if (!this.probe || this.probe.exitCode !== undefined) await this.startProbe();
    await waitFor(
      'the probe and the policy connected, nothing queued',
      async () => {
        try {
          const [probe, policy] = await Promise.all([this.probeStatus(), this.policyStatus()]);
          return probe.policyConnected && probe.queueDepth === 0 && policy.probes.length === 1 ? true : undefined;
        } catch {
          return undefined; // still starting
        }
      },
      START_TIMEOUT_MS,
    );
  }

  /** Ends every decision (the policy's Unblock, all) and removes every kernel block, those without a decision too. */
  async unblockEverything(): Promise<void> {
    const meta = () => new grpc.Metadata();
    const deadline = () => ({ deadline: Date.now() + 10_000 });
    await call((cb) => this.policyClient.unblock({ ip: '', all: true }, meta(), deadline(), cb));
    for (const b of await listAllBlocks(this.probeClient, 10_000)) await call((cb) => this.controlClient.unblockIp({ ip: b.ip }, meta(), deadline(), cb));
  }

  probeStatus(): Promise<GetStatusResponse> {
    return call((cb) => this.probeClient.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));
  }

  policyStatus(): Promise<GetPolicyStatusResponse> {
    return call((cb) => this.policyClient.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));
  }

  /** The policy's live table (its stdout). */
  get table(): string[] {
    return this.policy?.stdout ?? [];
  }

  detach(): void {
    detachProbe(this.opts.netns, this.env);
  }

  async destroy(): Promise<void> {
    await Promise.all([this.probe?.stop('SIGKILL'), this.policy?.stop('SIGKILL')]);
    this.#release();
  }

  /** destroy() without waiting for the processes to exit: for a process 'exit' handler, where nothing can be awaited. */
  destroySync(): void {
    this.probe?.kill('SIGKILL');
    this.policy?.kill('SIGKILL');
    this.#release();
  }

  #release(): void {
    this.detach();
    rmSync(this.pinRoot, { recursive: true, force: true });
    for (const c of [this.probeClient, this.policyClient, this.controlClient, this.reportClient]) c.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async #ready<T>(proc: ServiceProcess, status: () => Promise<T>): Promise<T> {
    return waitFor(
      'the service to answer',
      async () => {
        if (proc.exitCode !== undefined) {
          throw new Error(`service exited with ${proc.exitCode}:\n${[...proc.stdout, ...proc.stderr].slice(-20).join('\n')}`);
        }
        try {
          return await status();
        } catch {
          return undefined;
        }
      },
      START_TIMEOUT_MS,
    );
  }
}

/** startPongServer(), once it listens on every port. */
export async function listeningPongServer(netns: string, ports: number[]): Promise<ServiceProcess> {
  const pong = startPongServer(netns, ports);
  await waitFor('the pong server', () => (pong.stdout.length === ports.length ? true : undefined), START_TIMEOUT_MS);
  return pong;
}

/** A small HTTP server inside a namespace answering "pong" on each port. */
export function startPongServer(netns: string, ports: number[]): ServiceProcess {
  const script = `
    const http = require('node:http');
    for (const p of ${JSON.stringify(ports)}) http.createServer((_q, r) => r.end('pong')).listen(p, '0.0.0.0', () => console.log('listening ' + p));
  `;
  return new ServiceProcess(['ip', 'netns', 'exec', netns, process.execPath, '-e', script], {});
}
