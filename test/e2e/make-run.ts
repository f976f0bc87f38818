// `make run` as a user runs it in a network namespace: deploy/run.sh under
// `ip netns exec`, in the background, with its run, state and log
// directories in a directory of the test's (PW_RUN_DIR, PW_STATE_DIR,
// PW_LOG_DIR) so that nothing touches /run/packetwatch; and `make stop`.
// Each run leads a process group of its own, which its policy and probe
// are in: the whole stack can be killed at once, as kill -9 of every
// process of it would.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { GetStatusResponse } from '@packetwatch/proto';
import { waitFor } from '@packetwatch/test-support';
import { call } from '@packetwatch/test-support/services';
import { deadline, probeClient } from './probe-process.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const exec = promisify(execFile);
/** Upper bound for make run to start and connect, or for killed processes to go: generous for a loaded machine. */
const SLOW_MS = 60_000;

/** Settings for a run; an undefined one is left unset even when this process has it. */
export type RunEnv = Record<string, string | undefined>;

export interface MakeRun {
  child: ChildProcess;
  exited: Promise<number | null>;
  /** The exit code once run.sh has exited, undefined until then. */
  code(): number | null | undefined;
  stderr: string[];
  /** SIGKILL to run.sh, the policy and the probe at once; resolves once none of them is left. */
  killAll(): Promise<void>;
}

/**
 * A directory of the test's with make run's run, state and log directories
 * in it, and the settings that point run.sh at them (plus JSON logs).
 */
export function runDirs(prefix: string): { dir: string; env: RunEnv } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // The policy's user must reach the state, log and run directories run.sh makes in here.
  chmodSync(dir, 0o755);
  return {
    dir,
    env: { PW_RUN_DIR: join(dir, 'run'), PW_STATE_DIR: join(dir, 'state'), PW_LOG_DIR: join(dir, 'log'), PW_LOG_FORMAT: 'json' },
  };
}

/** Whether a process of the group is still running (a zombie has closed everything it held). */
function groupRunning(pgid: number): boolean {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/** deploy/run.sh under `ip netns exec netns`, in the background. */
export function runSh(netns: string, env: RunEnv): MakeRun {
  const child = spawn('ip', ['netns', 'exec', netns, join(ROOT, 'deploy/run.sh')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve((code = c))));
  const pgid = child.pid!;
  const killAll = async () => {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // nothing left to kill
    }
    await exited;
    await waitFor(`every process of make run (process group ${pgid}) gone`, () => (groupRunning(pgid) ? undefined : true), SLOW_MS);
  };
  return { child, exited, code: () => code, stderr, killAll };
}

/** A run whose probe has answered, with the status it first answered connected. */
export type StartedRun = MakeRun & { status: GetStatusResponse };

/** deploy/run.sh in the background, once its probe answers, connected to its policy. */
export async function startRun(netns: string, env: RunEnv): Promise<StartedRun> {
  const run = runSh(netns, env);
  const socket = join(env.PW_RUN_DIR!, 'probe.sock');
  const client = probeClient(socket);
  try {
    const status = await waitFor(
      'the probe of make run, connected to its policy',
      async () => {
        if (run.code() !== undefined) throw new Error(`make run exited with ${run.code()}: ${run.stderr.join('')}`);
        if (!existsSync(socket)) return undefined;
        const st = await call<GetStatusResponse>((cb) => client.getStatus({}, new grpc.Metadata(), deadline(1000), cb)).catch(() => undefined);
        return st?.policyConnected ? st : undefined;
      },
      SLOW_MS,
    );
    return { ...run, status };
  } catch (e) {
    await run.killAll();
    throw e;
  } finally {
    client.close();
  }
}

/** `make stop`, with the run's settings (PW_RUN_DIR). */
export function makeStop(env: RunEnv): Promise<{ stdout: string; stderr: string }> {
  return exec('make', ['-s', '-C', ROOT, 'stop', `COMPOSE_PROJECT=pw-stop-test-${process.pid}`], { env: { ...process.env, ...env } });
}
