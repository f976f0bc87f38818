// Faults survived: kill -9 of either service or both (restarted in either
// order), a damaged decision store, and the watched interface going down and
// up or being deleted and recreated. After each, enforcement and decisions
// must be intact.
//
// The namespaces, the services and the pong server are shared; each test
// starts from `ready()` (the veth pair plugged and up, both services running
// and in touch, the scanner blocked by one enforced decision and nothing
// else blocked), so that none depends on what an earlier one did or failed
// to undo: a killed service, a deleted interface, a lost block.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  AttachMode,
  DecisionOrigin,
  type UnblockResponse,
} from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { healthCheck } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, call, listAllBlocks, listAllDecisions, startPongServer } from '@packetwatch/test-support/services';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
/**
 * The detection window. Nothing here depends on its length: the scanner's
 * three SYNs only have to fall within it however slow the machine, and the
 * bystander only ever connects to one port, so it is never a scanner.
 */
const WINDOW_SECONDS = 60;
const PROBE_METRICS_PORT = 19093; // inside the victim namespace
/** Upper bound for what is slow on a loaded machine (a service starting, a reconnect, a re-attach): generous on purpose. */
const SLOW_MS = 30_000;
/** Per test: some restart both services twice, each start taking seconds under load. */
const TEST_MS = 300_000;
const deadline = () => ({ deadline: Date.now() + 5000 });

describe('faults', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  const bystander = () => net.attackerAddr.replace(/\.2$/, '.3');
  const attackerIf = () => `pwa${net.victimIf.slice(3)}`;

  /** 'pong', or curl's exit code. Only connections expected to be dropped pass a short timeout (it merely bounds the wait). */
  const curl = async (port: number, timeout = '10', from = net.attackerAddr) => {
    const r = await net.inAttacker('curl', ['-s', '--connect-timeout', timeout, '--interface', from, `http://${net.victimAddr}:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = async () => ({ decisions: await listAllDecisions(svc.policyClient, false) });
  const kernelBlocks = async () => ({ blocks: await listAllBlocks(svc.probeClient) });
  const probeMetric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${PROBE_METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };
  const addBystander = () => execFileSync('ip', ['-n', net.attackerNs, 'addr', 'add', `${bystander()}/24`, 'dev', attackerIf()]);
  const attackerBlocked = async () => expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
  const running = (p: ServiceProcess | undefined) => p !== undefined && p.exitCode === undefined;
  const plugged = () => {
    try {
      execFileSync('ip', ['-n', net.victimNs, 'link', 'show', 'dev', net.victimIf], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const hasBystander = () =>
    execFileSync('ip', ['-n', net.attackerNs, '-o', 'addr', 'show', 'dev', attackerIf()], { encoding: 'utf8' }).includes(` ${bystander()}/`);

  /** The scanner is blocked: its one active decision is enforced everywhere, and it is the kernel's only block. */
  const scannerBlocked = async () => {
    const d = (await decisions()).decisions;
    const k = (await kernelBlocks()).blocks.filter((b) => !b.expired);
    return d.length === 1 && d[0]!.ip === net.attackerAddr && d[0]!.enforcedBy.length === 1 && d[0]!.missingOn.length === 0 && k.length === 1 && k[0]!.ip === net.attackerAddr;
  };
  const consistent = async () => {
    await waitFor('the policy to see the probe', async () => ((await svc.policyStatus()).probes.length === 1 ? true : undefined), SLOW_MS);
    await waitFor('decisions enforced everywhere', async () => {
      const d = (await decisions()).decisions;
      return d.length === 1 && d[0]!.missingOn.length === 0 ? true : undefined;
    }, SLOW_MS);
    expect((await decisions()).decisions.map((d) => d.ip)).toEqual([net.attackerAddr]);
    expect((await kernelBlocks()).blocks.map((b) => b.ip)).toEqual([net.attackerAddr]);
  };

  /**
   * What every test starts from, whatever an earlier one did or failed to
   * undo: the veth pair plugged and up, with the bystander's address; both
   * services running, the probe attached and the two in touch with nothing
   * queued; and the scanner blocked (one decision, enforced, the kernel's
   * only block). If the block is not exactly that, it starts over: no
   * decision, no kernel block, and a scan of the three ports.
   */
  const ready = async () => {
    if (!plugged()) net.plug();
    execFileSync('ip', ['-n', net.victimNs, 'link', 'set', 'dev', net.victimIf, 'up']);
    execFileSync('ip', ['-n', net.attackerNs, 'link', 'set', 'dev', attackerIf(), 'up']);
    if (!hasBystander()) addBystander();
    if (!running(svc.policy)) await svc.startPolicy();
    if (!running(svc.probe)) await svc.startProbe();
    await waitFor(
      'the probe attached and in touch with the policy',
      async () => {
        try {
          const [probe, policy] = await Promise.all([svc.probeStatus(), svc.policyStatus()]);
          const attached = probe.attachMode !== AttachMode.ATTACH_MODE_UNSPECIFIED;
          return attached && probe.policyConnected && probe.queueDepth === 0 && policy.probes.length === 1 ? true : undefined;
        } catch {
          return undefined; // still starting
        }
      },
      SLOW_MS,
    );
    if (await scannerBlocked()) return;
    await svc.unblockEverything();
    // One curl process for the three ports: its SYNs are milliseconds apart.
    const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', '--interface', net.attackerAddr, ...PORTS.map((p) => `http://${net.victimAddr}:${p}/`)]);
    expect(r.stdout).toBe('pong'.repeat(PORTS.length));
    await waitFor('the scanner to be blocked', async () => ((await scannerBlocked()) ? true : undefined), SLOW_MS);
  };

  beforeAll(async () => {
    net = createNamespacePair(4);
    addBystander();
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined), SLOW_MS);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
        PW_PROMETHEUS_PORT: String(PROBE_METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_ADDRESS_POLL_MS: '200',
      },
    });
    await svc.start();
  }, 120_000);

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('kill -9 of the probe: blocks stay enforced while it is down; the restarted probe adopts the pinned program', async () => {
    await ready();
    const before = await svc.probeStatus();
    await svc.probe!.stop('SIGKILL');
    await attackerBlocked();
    const st = await svc.startProbe();
    expect(st.adopted).toBe(true);
    await consistent();
    expect(st.programId).not.toBe(before.programId);
    await attackerBlocked();
    // Streaming resumed: a new connection reaches the policy.
    const received = (await svc.policyStatus()).eventsReceived;
    expect(await curl(8086, '10', bystander())).toBe('pong');
    await waitFor('the event at the policy', async () => ((await svc.policyStatus()).eventsReceived > received ? true : undefined), SLOW_MS);
  }, TEST_MS);

  it('kill -9 of the policy: the probe keeps enforcing, counts what it cannot deliver, and the restarted policy repairs drift', async () => {
    await ready();
    await svc.policy!.stop('SIGKILL');
    await waitFor('the probe to notice', async () => ((await svc.probeStatus()).policyConnected ? undefined : true), SLOW_MS);
    await attackerBlocked();
    // An event while the policy is away waits in the probe's queue: every
    // event the program produced from here on (the bystander's SYN).
    const down = await svc.probeStatus();
    const eventsBefore = down.counters!.events;
    expect(await curl(8086, '10', bystander())).toBe('pong');
    const queued = await waitFor(
      'the queued event',
      async () => {
        const st = await svc.probeStatus();
        const produced = Number(st.counters!.events - eventsBefore);
        return produced >= 1 && st.queueDepth === produced ? produced : undefined;
      },
      SLOW_MS,
    );
    expect((await svc.probeStatus()).policyConnected).toBe(false);
    // Drift behind the policy's back: the kernel loses the block.
    expect((await call<{ removed: boolean }>((cb) => svc.controlClient.unblockIp({ ip: net.attackerAddr }, new grpc.Metadata(), deadline(), cb))).removed).toBe(true);
    await svc.startPolicy();
    await consistent();
    // The one repair: the decision missing from the kernel, re-applied.
    expect(Number((await svc.policyStatus()).driftRepairs)).toBe(1);
    await waitFor('the queue to drain', async () => ((await svc.probeStatus()).queueDepth === 0 ? true : undefined), SLOW_MS);
    // Every queued event reached the restarted policy, none was lost.
    await waitFor('the queued events at the policy', async () => (Number((await svc.policyStatus()).eventsReceived) >= queued ? true : undefined), SLOW_MS);
    expect(Number((await svc.policyStatus()).eventsReceived)).toBe(queued);
    expect((await svc.probeStatus()).eventsLost).toBe(down.eventsLost);
    await attackerBlocked();
  }, TEST_MS);

  it('an unblock made while the probe is down reaches it when it comes back: the ended decision wins at reconcile', async () => {
    await ready();
    await svc.probe!.stop('SIGKILL');
    await waitFor('the policy to see the probe gone', async () => ((await svc.policyStatus()).probes.length === 0 ? true : undefined), SLOW_MS);
    // The operator frees the scanner; no probe is there to hear it, and the pinned program still drops it.
    const ended = await call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip: net.attackerAddr, all: false }, new grpc.Metadata(), deadline(), cb));
    expect(ended.ended.map((d) => d.ip)).toEqual([net.attackerAddr]);
    await attackerBlocked();
    await svc.startProbe();
    // Not adopted again as a kernel block without a decision: lifted.
    await waitFor('the kernel block to be lifted', async () => ((await kernelBlocks()).blocks.length === 0 ? true : undefined), SLOW_MS);
    expect((await decisions()).decisions).toEqual([]);
    expect(await curl(8086, '10')).toBe('pong');
  }, TEST_MS);

  it('both killed, restarted probe first then policy, and policy first then probe', async () => {
    await ready();
    for (const order of [['probe', 'policy'], ['policy', 'probe']] as const) {
      await Promise.all([svc.probe!.stop('SIGKILL'), svc.policy!.stop('SIGKILL')]);
      await attackerBlocked();
      for (const which of order) {
        if (which === 'probe') await svc.startProbe();
        else await svc.startPolicy();
      }
      await consistent();
      await attackerBlocked();
    }
  }, TEST_MS);

  it('a damaged store: the policy starts, says what it lost, and rebuilds from the kernel view', async () => {
    await ready();
    await svc.policy!.stop('SIGTERM');
    writeFileSync(join(svc.stateDir, 'decisions.db'), Buffer.alloc(8192, 0x5a));
    await svc.startPolicy();
    await waitFor('the warning', () => svc.policy!.stderr.find((l) => l.includes('decision store unreadable')), SLOW_MS);
    await consistent();
    const [d] = (await decisions()).decisions;
    expect(d!.origin).toBe(DecisionOrigin.DECISION_ORIGIN_KERNEL);
    await attackerBlocked();
  }, TEST_MS);

  it('a missing store: the policy starts empty and rebuilds from the kernel view', async () => {
    await ready();
    await svc.policy!.stop('SIGTERM');
    execFileSync('rm', ['-f', join(svc.stateDir, 'decisions.db'), join(svc.stateDir, 'decisions.db-wal'), join(svc.stateDir, 'decisions.db-shm')]);
    await svc.startPolicy();
    await consistent();
    const [d] = (await decisions()).decisions;
    expect(d!.origin).toBe(DecisionOrigin.DECISION_ORIGIN_KERNEL);
  }, TEST_MS);

  it('the interface goes down and up: still attached, still enforcing', async () => {
    await ready();
    const progId = (await svc.probeStatus()).programId;
    execFileSync('ip', ['-n', net.victimNs, 'link', 'set', net.victimIf, 'down']);
    execFileSync('ip', ['-n', net.victimNs, 'link', 'set', net.victimIf, 'up']);
    await waitFor('the link to be usable', async () => ((await curl(8086, '1', bystander())) === 'pong' ? true : undefined), SLOW_MS);
    await attackerBlocked();
    expect((await svc.probeStatus()).programId).toBe(progId);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(1);
  }, TEST_MS);

  it('the interface is deleted: health NOT_SERVING and the metric say so; recreated: attached again with the blocks intact', async () => {
    await ready();
    const socket = `unix://${svc.probeSocket}`;
    const logged = svc.probe!.stdout.length;
    net.unplug();
    await waitFor('NOT_SERVING', async () => ((await healthCheck(socket, 'packetwatch.v1.Probe')) === 'NOT_SERVING' ? true : undefined), SLOW_MS);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(0);
    // The log line is written when the state changes, and reaches us through a pipe.
    await waitFor('the NOT WATCHING log line', () => svc.probe!.stdout.slice(logged).find((l) => l.includes('NOT WATCHING')), SLOW_MS);
    net.plug();
    addBystander();
    await waitFor('SERVING', async () => ((await healthCheck(socket, 'packetwatch.v1.Probe')) === 'SERVING' ? true : undefined), SLOW_MS);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(1);
    await attackerBlocked();
    const before = (await svc.probeStatus()).counters!.events;
    expect(await curl(8086, '10', bystander())).toBe('pong');
    await waitFor('events again', async () => ((await svc.probeStatus()).counters!.events > before ? true : undefined), SLOW_MS);
  }, TEST_MS);
});
