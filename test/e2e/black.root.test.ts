// e2e-black, after the seed's suite of that name: an attacker namespace
// against a victim namespace running probe + policy + a pong server on ports
// 8086-8088. Slow scans and hammering are left alone; a fast scan and an
// nmap SYN scan are blocked; unblock restores access; a restarted policy
// re-applies its stored decisions to a fresh probe.
import * as grpc from '@grpc/grpc-js';
import { type BlockResponse, DecisionOrigin, type ListDecisionsResponse, type UnblockResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { healthCheck, reflectedServices } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { call } from './probe-process.js';
import { type ServiceProcess, Services, startPongServer } from './services.js';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
const WINDOW_SECONDS = 1;
const POLICY_METRICS_PORT = 19091; // inside the victim namespace

describe('e2e-black: a port scanner is blocked', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;

  const curl = async (port: number, timeout = '5') => {
    const r = await net.inAttacker('curl', ['-s', '--connect-timeout', timeout, `http://${net.victimAddr}:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = () => call<ListDecisionsResponse>((cb) => svc.policyClient.listDecisions({ all: false }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));
  const unblock = (ip: string) => call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip, all: false }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
  const blacklisted = (ip: string) => svc.table.some((l) => l.includes(ip) && l.endsWith('Added to blacklist'));
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const policyMetric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${POLICY_METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };

  beforeAll(async () => {
    net = createNamespacePair(1);
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined));
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS), PW_POLICY_PROMETHEUS_PORT: String(POLICY_METRICS_PORT), PW_METRICS_HOST: '127.0.0.1' },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('shows the banner and reaches the victim', async () => {
    expect(svc.table.slice(0, 5)).toEqual([
      'Welcome to Packetwatch!',
      `We will be logging all incoming connections on ${net.victimIf}`,
      `Any source IPs that hit 3 different ports within ${WINDOW_SECONDS} second(s) will have their future connection attempts dropped!`,
      `We will whitelist any incoming connections originating from our own IPs on ${net.victimIf}!`,
      'TIME               SOURCE IP        PORT   MESSAGE',
    ]);
    expect(await curl(8086)).toBe('pong');
    await waitFor('the connection row', () => svc.table.find((l) => l.includes(net.attackerAddr) && l.trimEnd().endsWith('8086')));
  });

  it('does not block a slow scan (gaps longer than the window)', async () => {
    for (const port of PORTS) {
      expect(await curl(port)).toBe('pong');
      await pause(WINDOW_SECONDS * 1000 + 200);
    }
    expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
  });

  it('does not block a hammer on one port', async () => {
    for (let i = 0; i < 10; i++) expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
    await pause(WINDOW_SECONDS * 1000 + 200);
  });

  it('blocks a fast scan of 3 ports: the next attempt times out and the table shows "Added to blacklist"', async () => {
    for (const port of PORTS) expect(await curl(port)).toBe('pong');
    await waitFor('the blacklist row', () => (blacklisted(net.attackerAddr) ? true : undefined));
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    const [d] = (await decisions()).decisions;
    expect(d).toMatchObject({ ip: net.attackerAddr, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR, expires: undefined, missingOn: [] });
    expect(d!.reason).toContain('3 ports (8086, 8087, 8088)');
    expect(d!.enforcedBy).toHaveLength(1);
  });

  it('counts the detection, the decision, the probe and the detection-to-block latency on /metrics', async () => {
    expect(await policyMetric('packetwatch_policy_detections_total')).toBe(1);
    expect(await policyMetric('packetwatch_policy_decisions_active')).toBe(1);
    expect(await policyMetric('packetwatch_policy_probes_connected')).toBe(1);
    expect(await policyMetric('packetwatch_policy_detection_to_block_seconds_count')).toBe(1);
    expect(await policyMetric('packetwatch_policy_block_failures_total')).toBe(0);
    expect(await policyMetric('packetwatch_policy_events_received_total')).toBeGreaterThanOrEqual(3 + 3 + 10 + 1);
    expect(await policyMetric('packetwatch_policy_tracked_sources')).toBeGreaterThanOrEqual(0);
  });

  it('serves the standard health check and reflection on its socket', async () => {
    expect(await healthCheck(`unix://${svc.policySocket}`, 'packetwatch.v1.Policy')).toBe('SERVING');
    expect(await reflectedServices(`unix://${svc.policySocket}`)).toEqual(['grpc.health.v1.Health', 'packetwatch.v1.Policy']);
  });

  it('restores access when the policy unblocks the source', async () => {
    const res = await unblock(net.attackerAddr);
    expect(res.ended.map((d) => d.ip)).toEqual([net.attackerAddr]);
    expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
    await pause(WINDOW_SECONDS * 1000 + 200);
  });

  it('blocks an nmap SYN scan of 1,000 ports at 1,000 SYN/s after the threshold, and reports how many SYNs got through', async () => {
    const before = await svc.probeStatus();
    const r = await net.inAttacker('nmap', ['-n', '-Pn', '-sS', '-p', '1-1000', '--max-retries', '0', '--min-rate', '1000', '--max-rate', '1000', net.victimAddr], 120_000);
    expect(r.code).toBe(0);
    await waitFor('the detection', async () => ((await decisions()).decisions.length === 1 ? true : undefined));
    const after = await svc.probeStatus();
    const passed = Number(after.counters!.events - before.counters!.events);
    const dropped = Number(after.counters!.synDropped - before.counters!.synDropped);
    const inForce = svc.policy!.stderr.map((l) => /"detectionToBlockMs":([\d.]+)/.exec(l)?.[1]).find(Boolean);
    console.log(`detection to block: ${inForce} ms`);
    console.log(`nmap -sS -p 1-1000: ${passed} SYNs reached the victim before the block, ${dropped} dropped`);
    expect(passed).toBeGreaterThanOrEqual(3);
    // At 1,000 SYN/s the scan lasts a second: all but the first few tens of
    // milliseconds of it must have been dropped.
    expect(passed).toBeLessThan(500);
    expect(dropped).toBeGreaterThan(500);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
  });

  it('re-applies its stored decisions to a fresh probe after a restart', async () => {
    await svc.probe!.stop('SIGTERM');
    await svc.policy!.stop('SIGTERM');
    svc.detach();
    // Nothing enforces the block now: the datapath is gone.
    expect(await curl(8086)).toBe('pong');
    await svc.start();
    await waitFor('the re-applied block', async () => ((await svc.probeStatus()).blocks === 1 ? true : undefined));
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    const [d] = (await decisions()).decisions;
    expect(d).toMatchObject({ ip: net.attackerAddr, missingOn: [] });
  });

  it('blocks and unblocks by hand through the policy', async () => {
    await unblock(net.attackerAddr);
    const res = await call<BlockResponse>((cb) =>
      svc.policyClient.block({ ip: net.attackerAddr, reason: 'by hand', ttl: undefined }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb),
    );
    expect(res.decision).toMatchObject({ ip: net.attackerAddr, reason: 'by hand', origin: DecisionOrigin.DECISION_ORIGIN_MANUAL });
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    await expect(
      call((cb) => svc.policyClient.block({ ip: net.victimAddr, reason: '', ttl: undefined }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb)),
    ).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await unblock(net.attackerAddr);
    expect(await curl(8086)).toBe('pong');
  });
});
