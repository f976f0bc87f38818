// `make run` as a user runs it (deploy/run.sh, in the background, in a
// victim namespace) and `make stop`: it stops that run, says what it
// stopped, and leaves the XDP program attached; a second run is refused
// while one is up; with nothing running it says so. And the socket layout
// it makes, tried as the policy's user: the probe's socket can be called,
// never renamed or replaced.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, lstatSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, TEST_BPFFS, createNamespacePair, xdpAttached } from '@packetwatch/test-support';
import { detachProbe } from '@packetwatch/test-support/services';
import { type RunEnv, makeStop as stopRuns, runDirs, runSh as runShIn, startRun as startRunIn } from './make-run.js';

const exec = promisify(execFile);

describe('make run in the background, and make stop', () => {
  let net: NamespacePair;
  let dir: string;
  let env: RunEnv;

  const runSh = () => runShIn(net.victimNs, env);
  const makeStop = () => stopRuns(env);

  beforeAll(() => {
    net = createNamespacePair(9);
    const run = runDirs('pw-run-');
    dir = run.dir;
    env = {
      ...run.env,
      PW_IFDEV: net.victimIf,
      // ip netns exec remounts /sys: pins live on a bpffs the host mounted.
      PW_BPF_PIN_DIR: `${TEST_BPFFS}/packetwatch-run-${process.pid}`,
    };
  });

  afterAll(() => {
    if (net) detachProbe(net.victimNs, env);
    if (env) rmSync(env.PW_BPF_PIN_DIR!, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
    net?.destroy();
  });

  /** deploy/run.sh in the background, once its probe answers (connected to its policy). */
  const startRun = () => startRunIn(net.victimNs, env);
  /** Runs a shell command as the policy's user (the packetwatch user, as make run starts the policy). */
  const asPolicyUser = (command: string) =>
    exec('setpriv', ['--reuid=packetwatch', '--regid=packetwatch', '--init-groups', 'sh', '-c', command]).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );

  it('stops a background run, says what it stopped, leaves the program attached; refuses a second run meanwhile', async () => {
    const run = await startRun();
    try {
      const second = runSh();
      expect(await second.exited).toBe(1);
      expect(second.stderr.join('')).toContain(`make run: already running (pid ${run.child.pid}); 'sudo make stop' stops it`);

      const stop = await makeStop();
      expect(stop.stdout.trim()).toBe(
        `stop: stopped make run (pid ${run.child.pid}): probe and policy on ${net.victimIf}; the XDP program stays attached and blocks stay enforced (make detach removes it)`,
      );
      expect(await run.exited).toBe(0);
      expect(existsSync(join(env.PW_RUN_DIR!, 'run.pid'))).toBe(false);
      expect(xdpAttached(net.victimNs, net.victimIf)).toBe(true);
    } finally {
      await run.killAll();
    }
  });

  it("lays its sockets out so that the policy's user can call the probe but never rename or replace its sockets", async () => {
    const run = await startRun();
    const dir = env.PW_RUN_DIR!;
    const probeSock = join(dir, 'probe.sock');
    const controlSock = join(dir, 'control', 'probe.sock');
    try {
      const gid = Number(execFileSync('getent', ['group', 'packetwatch'], { encoding: 'utf8' }).split(':')[2]);
      const controlGid = Number(execFileSync('getent', ['group', 'packetwatch-control'], { encoding: 'utf8' }).split(':')[2]);
      const uid = Number(execFileSync('id', ['-u', 'packetwatch'], { encoding: 'utf8' }).trim());
      const mode = (p: string) => {
        const st = lstatSync(p);
        return { uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8), socket: st.isSocket() };
      };
      expect(mode(dir)).toEqual({ uid: 0, gid, mode: '2750', socket: false });
      expect(mode(probeSock)).toEqual({ uid: 0, gid, mode: '660', socket: true });
      // Made in the setgid directory, it inherits the bit: its socket is the group's too.
      expect(mode(join(dir, 'policy'))).toEqual({ uid, gid, mode: '2750', socket: false });
      expect(mode(join(dir, 'policy', 'policy.sock'))).toEqual({ uid, gid, mode: '660', socket: true });
      // The channel between the two: the control group's, the probe's half root's.
      expect(mode(join(dir, 'control'))).toEqual({ uid: 0, gid: controlGid, mode: '2750', socket: false });
      expect(mode(controlSock)).toEqual({ uid: 0, gid: controlGid, mode: '660', socket: true });
      expect(mode(join(dir, 'report'))).toEqual({ uid, gid: controlGid, mode: '2750', socket: false });
      expect(mode(join(dir, 'report', 'policy.sock'))).toEqual({ uid, gid: controlGid, mode: '660', socket: true });

      // The attack: swap the probe's socket for a link to a file root would then chmod or chown.
      const target = join(dir, '..', 'target');
      writeFileSync(target, 'not to be touched\n', { mode: 0o600 });
      for (const attempt of [probeSock, controlSock].flatMap((sock) => [
        `mv ${sock} ${dirname(sock)}/moved`,
        `rm -f ${sock}`,
        `ln -sf ${target} ${sock}`,
        `ln -s ${target} ${sock}.new && mv -f ${sock}.new ${sock}`,
      ])) {
        const r = await asPolicyUser(attempt);
        expect(r.code, attempt).not.toBe(0);
        expect(r.stderr, attempt).toMatch(/Permission denied/);
      }
      expect(mode(probeSock)).toEqual({ uid: 0, gid, mode: '660', socket: true });
      expect(mode(controlSock)).toEqual({ uid: 0, gid: controlGid, mode: '660', socket: true });
      expect(mode(target)).toEqual({ uid: 0, gid: 0, mode: '600', socket: false });
      // What the policy's user may do: call the probe, on both sockets.
      for (const sock of [probeSock, controlSock]) {
        const call = await asPolicyUser(`node -e "require('net').connect('${sock}').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"`);
        expect(call.code, sock).toBe(0);
      }
    } finally {
      await makeStop();
      await run.exited;
    }
  });

  it('says when there is nothing to stop', async () => {
    expect((await makeStop()).stdout.trim()).toBe('stop: nothing to stop (no make run, no compose stack)');
  });
});
