// Blocks outlive the probe wherever it runs, or it says loudly that they
// won't (issue 18). `make run` inside a network namespace, the usual way:
// `ip netns exec NS make run`, which gives the stack a mount namespace of
// its own with a fresh /sys. With the README's recipe (a bpffs the host
// mounted, named by PW_BPF_PIN_DIR) a scanner blocked before the whole stack
// is killed with kill -9 stays blocked, and the next run adopts the pins.
// Without it, the probe says at start, in its log, in `packetwatchctl
// status` and in a metric, that its pins are private to it: and a kill -9
// does let the scanner through.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { PolicyClient } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PIN_RECIPE } from '../../services/probe/src/pins.js';
import { ROOT, type RunEnv, type StartedRun, runDirs, startRun } from './make-run.js';
import { type NamespacePair, createNamespacePair, waitFor, xdpAttached } from '@packetwatch/test-support';
import { type ServiceProcess, detachProbe, listAllBlocks, listAllDecisions, listeningPongServer } from '@packetwatch/test-support/services';
import { probeClient } from './probe-process.js';

const CLI = join(ROOT, 'services/cli/dist/main.js');
const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
/** Upper bound for what is slow on a loaded machine (a detection recorded, a namespace torn down): it only bounds a failure's wait. */
const SLOW_MS = 30_000;

/**
 * A victim namespace serving PORTS and an attacker namespace; make run in
 * the victim's, with its directories in one of the test's; and what a scan
 * from one to the other does. tearDown kills what runs, undoes what
 * `undo` was given (last first), and removes the rest.
 */
function scene(slot: number) {
  let net: NamespacePair;
  let pong: ServiceProcess;
  let dir: string | undefined;
  let env: RunEnv;
  let run: StartedRun | undefined;
  const undos: (() => void)[] = [];
  const url = (port: number) => `http://${net.victimAddr}:${port}/`;
  return {
    get net() {
      return net;
    },
    get dir() {
      return dir!;
    },
    get env() {
      return env;
    },
    /** The namespaces, the pong server, and make run's settings: its directories, PW_IFDEV, and `settings`. */
    async setUp(settings: () => RunEnv) {
      net = createNamespacePair(slot);
      pong = await listeningPongServer(net.victimNs, PORTS);
      const dirs = runDirs(`pw-pins-${slot}-`);
      dir = dirs.dir;
      env = { ...dirs.env, PW_IFDEV: net.victimIf, ...settings() };
    },
    undo(fn: () => void) {
      undos.push(fn);
    },
    async startRun(): Promise<StartedRun> {
      run = await startRun(net.victimNs, env);
      return run;
    },
    async tearDown() {
      await run?.killAll();
      for (const fn of undos.reverse()) fn();
      if (dir) rmSync(dir, { recursive: true, force: true });
      await pong?.stop('SIGKILL');
      net?.destroy();
    },
    /** One connection from the attacker: 'pong', or curl's exit code (a dropped SYN only times out, so short). */
    async connect(port: number, timeout = '10'): Promise<string | number> {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', timeout, url(port)]);
      return r.code === 0 ? r.stdout : r.code;
    },
    /** A fast scan, one curl to every port: the last SYN crosses the threshold and passes; the attacker is blocked from then on. */
    async scan(): Promise<void> {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', ...PORTS.map(url)]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('pong'.repeat(PORTS.length));
    },
  };
}

/** The policy's decision on the attacker, once recorded and enforced (a block made by the kernel is recorded by the policy just after). */
async function enforcedDecision(env: RunEnv, attacker: string): Promise<void> {
  const client = new PolicyClient(`unix://${join(env.PW_RUN_DIR!, 'policy', 'policy.sock')}`, grpc.credentials.createInsecure());
  try {
    await waitFor(
      `the decision on ${attacker}, enforced`,
      async () => {
        const ds = await listAllDecisions(client, false);
        return ds.length === 1 && ds[0]!.ip === attacker && ds[0]!.enforcedBy.length === 1 ? true : undefined;
      },
      SLOW_MS,
    );
  } finally {
    client.close();
  }
}

describe('make run under ip netns exec, with PW_BPF_PIN_DIR on a bpffs the host mounted (the README recipe)', () => {
  const sc = scene(24);

  beforeAll(() =>
    sc.setUp(() => {
      // The recipe: a bpffs mounted on the host (this test's mount namespace
      // is the host's), outside /sys, one directory under it per namespace.
      const bpffs = join(sc.dir, 'bpffs');
      mkdirSync(bpffs);
      execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
      sc.undo(() => execFileSync('umount', [bpffs]));
      sc.undo(() => detachProbe(sc.net.victimNs, sc.env));
      return { PW_BPF_PIN_DIR: join(bpffs, sc.net.victimNs) };
    }),
  );
  afterAll(() => sc.tearDown());

  it('keeps a blocked scanner blocked after kill -9 of the whole stack; the next run adopts the pins', async () => {
    const { net, env } = sc;
    const pinDir = join(env.PW_BPF_PIN_DIR!, net.victimIf);
    let run = await sc.startRun();
    expect(run.status).toMatchObject({ adopted: false, pinDir, pinsPrivate: false });
    expect(await sc.connect(8086)).toBe('pong');
    await sc.scan();
    expect(await sc.connect(8087, '2')).toBe(CURL_TIMEOUT_EXIT);
    await enforcedDecision(env, net.attackerAddr);

    await run.killAll();
    expect(xdpAttached(net.victimNs, net.victimIf)).toBe(true);
    expect(await sc.connect(8086, '2')).toBe(CURL_TIMEOUT_EXIT);

    run = await sc.startRun();
    expect(run.status).toMatchObject({ adopted: true, pinDir, pinsPrivate: false, blocks: 1 });
    const client = probeClient(join(env.PW_RUN_DIR!, 'probe.sock'));
    try {
      expect((await listAllBlocks(client)).map((b) => b.ip)).toEqual([net.attackerAddr]);
    } finally {
      client.close();
    }
    expect(await sc.connect(8088, '2')).toBe(CURL_TIMEOUT_EXIT);
  });
});

describe('make run under ip netns exec without PW_BPF_PIN_DIR', () => {
  const sc = scene(25);

  // Unset even if this process has it: the probe's default, /sys/fs/bpf/packetwatch.
  beforeAll(() => sc.setUp(() => ({ PW_BPF_PIN_DIR: undefined, PW_METRICS_HOST: '127.0.0.1' })));
  // The stack's mount namespace, and with it its bpffs and pins, ends with its last process.
  afterAll(() => sc.tearDown());

  it('says in its log, in packetwatchctl status and in a metric that blocks end with the probe; they do', async () => {
    const { net, env } = sc;
    const pinDir = `/sys/fs/bpf/packetwatch/${net.victimIf}`;
    const run = await sc.startRun();
    expect(run.status).toMatchObject({ pinDir, pinsPrivate: true });

    const warning = await waitFor(
      "the probe's warning in its log",
      () =>
        readFileSync(join(env.PW_LOG_DIR!, 'probe.log'), 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((l) => l.pinsPrivate !== undefined),
      SLOW_MS,
    );
    expect(warning).toMatchObject({
      level: 'warn',
      pinDir,
      pinsPrivate: true,
      msg: `pins private to this process: blocks end with it (the probe mounted the bpffs holding ${pinDir} itself, in a mount namespace that is not the host's, as under ip netns exec); to keep them, ${PIN_RECIPE}`,
    });

    const status = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [CLI, '--policy', `unix:${join(env.PW_RUN_DIR!, 'policy', 'policy.sock')}`, '--probe', `unix:${join(env.PW_RUN_DIR!, 'probe.sock')}`, 'status'],
        { timeout: SLOW_MS },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      ),
    );
    expect({ code: status.code, stderr: status.stderr }).toEqual({ code: 0, stderr: '' });
    expect(status.stdout.split('\n')).toContain(
      `  pins           private to this process: blocks end with it (${pinDir}; PW_BPF_PIN_DIR on a bpffs the host mounted keeps them)`,
    );

    const metrics = await net.inVictim('curl', ['-sSf', 'http://127.0.0.1:9090/metrics']);
    expect(metrics.code, metrics.stderr).toBe(0);
    expect(metrics.stdout.split('\n')).toContain('packetwatch_probe_pins_private 1');

    // What it said is true: the scanner, blocked, gets through once the stack is gone.
    await sc.scan();
    expect(await sc.connect(8087, '2')).toBe(CURL_TIMEOUT_EXIT);
    await run.killAll();
    await waitFor('the XDP program gone with the bpffs of the stack', () => (xdpAttached(net.victimNs, net.victimIf) ? undefined : true), SLOW_MS);
    expect(await sc.connect(8087)).toBe('pong');
  });
});
