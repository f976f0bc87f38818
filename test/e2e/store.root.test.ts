// e2e-store: the policy's decision store fails under it, as an operator
// would meet it. PW_STATE_DIR is a small file system of its own that fills
// up while the policy runs; a scanner in the attacker namespace is blocked
// all the same (the probe's in-kernel detector is off, so the block is the
// policy's BlockIp), the policy says NOT_SERVING and counts the failures,
// and once space is freed the decision is recorded and it serves again.
// And a store the policy's user may not write stops it at start, the file
// left as it was.
//
// The namespaces, the services and the pong server are shared; each test
// starts from `fresh()` (space on the disk, both services up and connected
// and serving, no decision, no kernel block, the attacker's earlier SYNs out
// of the detection window), so that none depends on what an earlier one did.
import { execFileSync } from 'node:child_process';
import { chownSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { BlockResponse, Decision, UnblockResponse } from '@packetwatch/proto';
import { clock } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionStore } from '../../services/policy/src/store.js';
import { fillFileSystem } from '../../services/policy/test/store-faults.js';
import { healthCheck } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, call, listAllBlocks, listAllDecisions, listeningPongServer } from '@packetwatch/test-support/services';
import { windowAfter } from './timing.js';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
const WINDOW_SECONDS = 1;
const POLICY_METRICS_PORT = 19094; // inside the victim namespace
/** Upper bound for what is slow on a loaded machine (a service starting, a detection, a retry of held writes): generous on purpose. */
const SLOW_MS = 30_000;
const FULL = 'insert: database or disk is full (SQLITE_FULL)';
const FAILED = 'decision store failed: health NOT_SERVING; enforcement goes on, writes are held in memory and retried';
const RECOVERED = 'decision store takes writes again, every held write recorded: health SERVING';

describe('e2e-store: the decision store fails under a running policy', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  let mounted = false;
  /** The file filling the disk, while there is one. */
  let filler: string | undefined;
  /** CLOCK_MONOTONIC after the attacker's latest command returned: every SYN it sent is older. */
  let attackerDoneNs = 0n;

  const deadline = () => ({ deadline: Date.now() + 5000 });
  const url = (port: number) => `http://${net.victimAddr}:${port}/`;
  const inAttacker = async (args: string[]) => {
    try {
      return await net.inAttacker('curl', ['-s', ...args]);
    } finally {
      attackerDoneNs = clock.monotonicNs();
    }
  };
  /** One connection from the attacker: 'pong', or curl's exit code (a short timeout only bounds the wait for a dropped one). */
  const curl = async (port: number, timeout = '10') => {
    const r = await inAttacker(['--connect-timeout', timeout, url(port)]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = async (all = false) => ({ decisions: await listAllDecisions(svc.policyClient, all) });
  const kernelBlocks = async () => ({ blocks: await listAllBlocks(svc.probeClient) });
  /** The policy's health, for the server as a whole ('') and for its service: the same, or the test says so. */
  const health = async () => {
    const socket = `unix://${svc.policySocket}`;
    const [whole, policy] = await Promise.all([healthCheck(socket, ''), healthCheck(socket, 'packetwatch.v1.Policy')]);
    expect(whole).toBe(policy);
    return policy;
  };
  const serving = () => waitFor('the policy to serve again', async () => ((await health()) === 'SERVING' ? true : undefined), SLOW_MS);
  /** /metrics of the policy, sample by sample ('name{labels}' → value). */
  const metrics = async () => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${POLICY_METRICS_PORT}/metrics`]);
    return new Map(r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
  };
  const insertErrors = async () => (await metrics()).get('packetwatch_policy_store_errors_total{op="insert"}');
  /** Log lines of the policy with this message, from line `mark` on. */
  const logged = (msg: string, mark: number) => svc.policy!.stderr.slice(mark).filter((l) => l.includes(`"msg":"${msg}"`)).length;
  const fill = () => {
    filler = fillFileSystem(svc.stateDir);
  };
  const freeSpace = () => {
    if (filler) rmSync(filler, { force: true });
    filler = undefined;
  };

  const fresh = async () => {
    freeSpace();
    await svc.ensureRunning();
    await windowAfter(attackerDoneNs, WINDOW_SECONDS);
    await svc.unblockEverything();
    await serving();
    expect((await decisions()).decisions).toEqual([]);
    expect((await kernelBlocks()).blocks).toEqual([]);
  };

  beforeAll(async () => {
    net = createNamespacePair(12);
    pong = await listeningPongServer(net.victimNs, PORTS);
    const env = {
      // The probe only reports: every block is the policy's decision and BlockIp.
      PW_KERNEL_DETECTION: 'False',
      PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
      PW_POLICY_PROMETHEUS_PORT: String(POLICY_METRICS_PORT),
      PW_METRICS_HOST: '127.0.0.1',
    };
    svc = new Services({ netns: net.victimNs, ifdev: net.victimIf, env });
    // The state directory on a file system of 1 MiB, the policy user's, as the directory was.
    const owner = execFileSync('stat', ['-c', 'uid=%u,gid=%g', svc.stateDir], { encoding: 'utf8' }).trim();
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=1m,mode=0750,${owner}`, 'tmpfs', svc.stateDir]);
    mounted = true;
    await svc.start();
  });

  afterAll(async () => {
    await Promise.all([svc?.probe?.stop('SIGKILL'), svc?.policy?.stop('SIGKILL')]);
    if (mounted) execFileSync('umount', [svc.stateDir]);
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('the disk fills up: a scan is still blocked in the kernel; NOT_SERVING and counted; space freed: recorded and SERVING again', async () => {
    await fresh();
    const errorsBefore = (await insertErrors())!;
    const mark = svc.policy!.stderr.length;
    fill();

    // The scan: one curl process, three ports, milliseconds apart.
    const scan = await inAttacker(['--connect-timeout', '10', ...PORTS.map(url)]);
    expect(scan.stdout).toBe('pong'.repeat(PORTS.length));
    await waitFor('the block in the kernel', async () => ((await kernelBlocks()).blocks.some((b) => b.ip === net.attackerAddr) ? true : undefined), SLOW_MS);
    expect((await kernelBlocks()).blocks.map((b) => b.ip)).toEqual([net.attackerAddr]);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);

    const [held] = (await decisions()).decisions;
    expect(held).toMatchObject({ ip: net.attackerAddr, unrecorded: true, missingOn: [] });
    expect(held!.enforcedBy).toHaveLength(1);
    expect(await health()).toBe('NOT_SERVING');
    expect(await insertErrors()).toBeGreaterThan(errorsBefore);
    expect((await metrics()).get('packetwatch_policy_store_writes_held')).toBe(1);
    expect(await svc.policyStatus()).toMatchObject({ storeWritesHeld: 1n, storeFailure: FULL });
    // What the store has: not this decision.
    expect((await decisions(true)).decisions.map((d) => d.id)).not.toContain(held!.id);
    await waitFor('the log line', () => (logged(FAILED, mark) > 0 ? true : undefined), SLOW_MS);

    freeSpace();
    await serving();
    const recorded = (await decisions(true)).decisions.find((d) => d.id === held!.id);
    expect(recorded).toMatchObject({ ip: net.attackerAddr, unrecorded: false, ended: undefined, reason: held!.reason });
    expect(await svc.policyStatus()).toMatchObject({ storeWritesHeld: 0n, storeFailure: '' });
    expect((await metrics()).get('packetwatch_policy_store_writes_held')).toBe(0);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    await waitFor('the log line', () => (logged(RECOVERED, mark) > 0 ? true : undefined), SLOW_MS);
    // One line each way, however many retries failed in between.
    expect([logged(FAILED, mark), logged(RECOVERED, mark)]).toEqual([1, 1]);
  });

  it("on the full disk an operator's Block and Unblock take effect and answer OK, marked unrecorded; recorded once there is space", async () => {
    await fresh();
    fill();
    const blocked = await call<BlockResponse>((cb) => svc.policyClient.block({ ip: net.attackerAddr, reason: 'by hand', ttl: undefined }, new grpc.Metadata(), deadline(), cb));
    expect(blocked).toMatchObject({ alreadyBlocked: false, decision: { ip: net.attackerAddr, reason: 'by hand', unrecorded: true } });
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    expect(await health()).toBe('NOT_SERVING');

    const unblocked = await call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip: net.attackerAddr, all: false }, new grpc.Metadata(), deadline(), cb));
    expect(unblocked.ended.map((d: Decision) => [d.id, d.unrecorded])).toEqual([[blocked.decision!.id, true]]);
    expect(await curl(8086)).toBe('pong');
    expect(await svc.policyStatus()).toMatchObject({ storeWritesHeld: 2n, storeFailure: FULL });

    freeSpace();
    await serving();
    const [recorded] = (await decisions(true)).decisions.filter((d) => d.id === blocked.decision!.id);
    expect(recorded).toMatchObject({ ip: net.attackerAddr, reason: 'by hand', unrecorded: false, ended: unblocked.ended[0]!.ended });
  });

  it('a store the policy may not write (made by root in its directory) stops it at start with exit 1, naming PW_STATE_DIR and the file, which is left as it was', async () => {
    // A policy of its own, in the same namespace, on a state directory of its own.
    const other = new Services({ netns: net.victimNs, ifdev: net.victimIf });
    try {
      const path = join(other.stateDir, 'decisions.db');
      const { store } = DecisionStore.open(other.stateDir);
      store.insert({ id: 1, ip: '192.0.2.1', reason: 'kept', origin: 'manual', createdMs: 1, expiresMs: undefined, endedMs: undefined, shadow: false });
      store.close();
      chownSync(path, 0, 0);
      const before = readFileSync(path);

      await expect(other.startPolicy()).rejects.toThrow('service exited with 1');
      expect(other.policy!.stderr).toContain(
        `packetwatch-policy: PW_STATE_DIR=${other.stateDir}: cannot open the decision store ${path}: attempt to write a readonly database (SQLITE_READONLY); nothing was moved or changed`,
      );
      expect(readdirSync(other.stateDir).filter((f) => f.includes('.unreadable-'))).toEqual([]);
      expect(readFileSync(path).equals(before)).toBe(true);
    } finally {
      await other.destroy();
    }
  });
});
