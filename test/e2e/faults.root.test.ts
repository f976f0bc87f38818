// Faults survived: kill -9 of either service or both (restarted in either
// order), a damaged decision store, and the watched interface going down and
// up or being deleted and recreated. After each, enforcement and decisions
// must be intact.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DecisionOrigin, type ListBlocksResponse, type ListDecisionsResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { healthCheck } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { call } from './probe-process.js';
import { type ServiceProcess, Services, startPongServer } from './services.js';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
const PROBE_METRICS_PORT = 19093;
const deadline = () => ({ deadline: Date.now() + 5000 });

describe('faults', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  const bystander = () => net.attackerAddr.replace(/\.2$/, '.3');

  const curl = async (port: number, timeout = '5', from = net.attackerAddr) => {
    const r = await net.inAttacker('curl', ['-s', '--connect-timeout', timeout, '--interface', from, `http://${net.victimAddr}:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = () => call<ListDecisionsResponse>((cb) => svc.policyClient.listDecisions({ all: false }, new grpc.Metadata(), deadline(), cb));
  const kernelBlocks = () => call<ListBlocksResponse>((cb) => svc.probeClient.listBlocks({}, new grpc.Metadata(), deadline(), cb));
  const probeMetric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${PROBE_METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };
  const addBystander = () => execFileSync('ip', ['-n', net.attackerNs, 'addr', 'add', `${bystander()}/24`, 'dev', `pwa${net.victimIf.slice(3)}`]);
  const attackerBlocked = async () => expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
  const consistent = async () => {
    await waitFor('the policy to see the probe', async () => ((await svc.policyStatus()).probes.length === 1 ? true : undefined), 10_000);
    await waitFor('decisions enforced everywhere', async () => {
      const d = (await decisions()).decisions;
      return d.length === 1 && d[0]!.missingOn.length === 0 ? true : undefined;
    }, 10_000);
    expect((await decisions()).decisions.map((d) => d.ip)).toEqual([net.attackerAddr]);
    expect((await kernelBlocks()).blocks.map((b) => b.ip)).toEqual([net.attackerAddr]);
  };

  beforeAll(async () => {
    net = createNamespacePair(4);
    addBystander();
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined));
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { PW_PORTSCAN_TIME_THRESHOLD: '1', PW_PROMETHEUS_PORT: String(PROBE_METRICS_PORT), PW_METRICS_HOST: '127.0.0.1', PW_ADDRESS_POLL_MS: '200' },
    });
    await svc.start();
    for (const p of PORTS) expect(await curl(p)).toBe('pong');
    await waitFor('the scanner to be blocked', async () => ((await kernelBlocks()).blocks.length === 1 ? true : undefined));
  });

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('kill -9 of the probe: blocks stay enforced while it is down; the restarted probe adopts the pinned program', async () => {
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
    expect(await curl(8086, '5', bystander())).toBe('pong');
    await waitFor('the event at the policy', async () => ((await svc.policyStatus()).eventsReceived > received ? true : undefined));
  });

  it('kill -9 of the policy: the probe keeps enforcing, counts what it cannot deliver, and the restarted policy repairs drift', async () => {
    await svc.policy!.stop('SIGKILL');
    await attackerBlocked();
    // An event while the policy is away waits in the probe's queue.
    expect(await curl(8086, '5', bystander())).toBe('pong');
    await waitFor('the queued event', async () => ((await svc.probeStatus()).queueDepth >= 1 ? true : undefined));
    expect((await svc.probeStatus()).policyConnected).toBe(false);
    // Drift behind the policy's back: the kernel loses the block.
    expect((await call<{ removed: boolean }>((cb) => svc.probeClient.unblockIp({ ip: net.attackerAddr }, new grpc.Metadata(), deadline(), cb))).removed).toBe(true);
    await svc.startPolicy();
    await consistent();
    const st = await svc.policyStatus();
    expect(Number(st.driftRepairs)).toBeGreaterThanOrEqual(1);
    expect(Number(st.eventsReceived)).toBeGreaterThanOrEqual(1);
    await waitFor('the queue to drain', async () => ((await svc.probeStatus()).queueDepth === 0 ? true : undefined));
    await attackerBlocked();
  });

  it('both killed, restarted probe first then policy, and policy first then probe', async () => {
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
  });

  it('a damaged store: the policy starts, says what it lost, and rebuilds from the kernel view', async () => {
    await svc.policy!.stop('SIGTERM');
    writeFileSync(join(svc.stateDir, 'decisions.db'), Buffer.alloc(8192, 0x5a));
    await svc.startPolicy();
    await waitFor('the warning', () => svc.policy!.stderr.find((l) => l.includes('decision store unreadable')));
    await consistent();
    const [d] = (await decisions()).decisions;
    expect(d!.origin).toBe(DecisionOrigin.DECISION_ORIGIN_KERNEL);
    await attackerBlocked();
  });

  it('a missing store: the policy starts empty and rebuilds from the kernel view', async () => {
    await svc.policy!.stop('SIGTERM');
    execFileSync('rm', ['-f', join(svc.stateDir, 'decisions.db'), join(svc.stateDir, 'decisions.db-wal'), join(svc.stateDir, 'decisions.db-shm')]);
    await svc.startPolicy();
    await consistent();
  });

  it('the interface goes down and up: still attached, still enforcing', async () => {
    const progId = (await svc.probeStatus()).programId;
    execFileSync('ip', ['-n', net.victimNs, 'link', 'set', net.victimIf, 'down']);
    execFileSync('ip', ['-n', net.victimNs, 'link', 'set', net.victimIf, 'up']);
    await waitFor('the link to be usable', async () => ((await curl(8086, '1', bystander())) === 'pong' ? true : undefined), 10_000);
    await attackerBlocked();
    expect((await svc.probeStatus()).programId).toBe(progId);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(1);
  });

  it('the interface is deleted: health NOT_SERVING and the metric say so; recreated: attached again with the blocks intact', async () => {
    const socket = `unix://${svc.probeSocket}`;
    net.unplug();
    await waitFor('NOT_SERVING', async () => ((await healthCheck(socket, 'packetwatch.v1.Probe')) === 'NOT_SERVING' ? true : undefined), 10_000);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(0);
    expect(svc.probe!.stdout.some((l) => l.includes('NOT WATCHING'))).toBe(true);
    net.plug();
    addBystander();
    await waitFor('SERVING', async () => ((await healthCheck(socket, 'packetwatch.v1.Probe')) === 'SERVING' ? true : undefined), 10_000);
    expect(await probeMetric('packetwatch_probe_attached')).toBe(1);
    await attackerBlocked();
    const before = (await svc.probeStatus()).counters!.events;
    expect(await curl(8086, '5', bystander())).toBe('pong');
    await waitFor('events again', async () => ((await svc.probeStatus()).counters!.events > before ? true : undefined));
  });
});
