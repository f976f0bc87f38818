// `make run` as a user runs it (deploy/run.sh, in the background, in a
// victim namespace) and `make stop`: it stops that run, says what it
// stopped, and leaves the XDP program attached; a second run is refused
// while one is up; with nothing running it says so.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BPFFS } from '../../bench/namespaces.js';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { PROBE_MAIN, call, deadline, probeClient } from './probe-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const exec = promisify(execFile);

describe('make run in the background, and make stop', () => {
  let net: NamespacePair;
  let dir: string;
  let env: Record<string, string>;

  const runSh = (): { child: ChildProcess; exited: Promise<number | null>; code: () => number | null | undefined; stderr: string[] } => {
    const child = spawn('ip', ['netns', 'exec', net.victimNs, join(ROOT, 'deploy/run.sh')], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const stderr: string[] = [];
    child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
    let code: number | null | undefined;
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve((code = c))));
    return { child, exited, code: () => code, stderr };
  };
  const makeStop = () =>
    exec('make', ['-s', '-C', ROOT, 'stop', `COMPOSE_PROJECT=pw-stop-test-${process.pid}`], { env: { ...process.env, ...env } });
  const xdpAttached = () => JSON.stringify(JSON.parse(execFileSync('ip', ['-n', net.victimNs, '-j', 'link', 'show', 'dev', net.victimIf], { encoding: 'utf8' }))[0].xdp ?? null);

  beforeAll(() => {
    net = createNamespacePair(9);
    dir = mkdtempSync(join(tmpdir(), 'pw-run-'));
    // The policy's user must reach the state, log and run directories run.sh makes in here.
    chmodSync(dir, 0o755);
    env = {
      PW_IFDEV: net.victimIf,
      PW_RUN_DIR: join(dir, 'run'),
      PW_STATE_DIR: join(dir, 'state'),
      PW_LOG_DIR: join(dir, 'log'),
      // ip netns exec remounts /sys: pins live on a bpffs the host mounted.
      PW_BPF_PIN_DIR: `${TEST_BPFFS}/packetwatch-run-${process.pid}`,
      PW_LOG_FORMAT: 'json',
    };
  });

  afterAll(() => {
    try {
      execFileSync('ip', ['netns', 'exec', net.victimNs, process.execPath, PROBE_MAIN, 'detach'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    } catch {
      // nothing attached
    }
    rmSync(env.PW_BPF_PIN_DIR!, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    net?.destroy();
  });

  it('stops a background run, says what it stopped, leaves the program attached; refuses a second run meanwhile', async () => {
    const run = runSh();
    try {
      const client = probeClient(join(env.PW_RUN_DIR!, 'probe.sock'));
      try {
        await waitFor(
          'the probe of make run',
          async () => {
            if (run.code() !== undefined) throw new Error(`make run exited with ${run.code()}: ${run.stderr.join('')}`);
            if (!existsSync(join(env.PW_RUN_DIR!, 'probe.sock'))) return undefined;
            return call((cb) => client.getStatus({}, new grpc.Metadata(), deadline(1000), cb)).catch(() => undefined);
          },
          30_000,
        );
      } finally {
        client.close();
      }
      const second = runSh();
      expect(await second.exited).toBe(1);
      expect(second.stderr.join('')).toContain(`make run: already running (pid ${run.child.pid}); 'sudo make stop' stops it`);

      const stop = await makeStop();
      expect(stop.stdout.trim()).toBe(
        `stop: stopped make run (pid ${run.child.pid}): probe and policy on ${net.victimIf}; the XDP program stays attached and blocks stay enforced (make detach removes it)`,
      );
      expect(await run.exited).toBe(0);
      expect(existsSync(join(env.PW_RUN_DIR!, 'run.pid'))).toBe(false);
      expect(xdpAttached()).not.toBe('null');
    } finally {
      run.child.kill('SIGKILL');
    }
  });

  it('says when there is nothing to stop', async () => {
    expect((await makeStop()).stdout.trim()).toBe('stop: nothing to stop (no make run, no compose stack)');
  });
});
