// e2e-black, after the seed's suite of that name: an attacker namespace
// against a victim namespace running probe + policy + a pong server on ports
// 8086-8088. Slow scans and hammering are left alone; a fast scan and an
// nmap SYN scan are blocked; unblock restores access; a restarted policy
// re-applies its stored decisions to a fresh probe.
//
// The namespaces, the services and the pong server are shared; each test
// starts from `fresh()` (both services up and connected, no decision, no
// kernel block, the attacker's earlier SYNs out of the detection window), so
// that none depends on what an earlier one did or failed to clean up.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import {
  type BlockResponse,
  DecisionOrigin,
  type UnblockResponse,
} from '@packetwatch/proto';
import { clock } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { healthCheck, reflectedServices } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, call, listAllDecisions, startPongServer } from '@packetwatch/test-support/services';
import { windowAfter } from './timing.js';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
/** N: the default port threshold, which both services use here. */
const PORT_THRESHOLD = PORTS.length;
const WINDOW_SECONDS = 1;
const POLICY_METRICS_PORT = 19091; // inside the victim namespace
/** Upper bounds for what is slow on a loaded machine (a service starting, a reconnect, a detection): generous on purpose. */
const SLOW_MS = 30_000;

describe('e2e-black: a port scanner is blocked', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  /** CLOCK_MONOTONIC after the attacker's latest command returned: every SYN it sent is older. */
  let attackerDoneNs = 0n;

  const deadline = (ms = 5000) => ({ deadline: Date.now() + ms });
  const inAttacker = async (cmd: string, args: string[], timeoutMs?: number) => {
    try {
      return await net.inAttacker(cmd, args, timeoutMs);
    } finally {
      attackerDoneNs = clock.monotonicNs();
    }
  };
  const url = (port: number) => `http://${net.victimAddr}:${port}/`;
  /**
   * One connection from the attacker: 'pong', or curl's exit code. A
   * connection expected to succeed gets a generous connect timeout; one
   * expected to be dropped passes a short one (it never completes, so the
   * timeout only bounds the wait).
   */
  const curl = async (port: number, timeout = '10') => {
    const r = await inAttacker('curl', ['-s', '--connect-timeout', timeout, url(port)]);
    return r.code === 0 ? r.stdout : r.code;
  };
  /**
   * A fast scan: one curl process connecting to each port in turn. Its SYNs
   * are milliseconds apart, well within the window even on a loaded machine
   * (separate curl processes would each pay a process start); in port order,
   * so the detection lists the ports in that order.
   */
  const fastScan = async () => {
    const r = await inAttacker('curl', ['-s', '--connect-timeout', '10', ...PORTS.map(url)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('pong'.repeat(PORTS.length));
  };
  const decisions = async () => ({ decisions: await listAllDecisions(svc.policyClient, false) });
  const unblock = (ip: string) => call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip, all: false }, new grpc.Metadata(), deadline(), cb));
  const blockByHand = (ip: string, reason: string) =>
    call<BlockResponse>((cb) => svc.policyClient.block({ ip, reason, ttl: undefined }, new grpc.Metadata(), deadline(), cb));
  /** Waits for the one active decision, once its probe enforces it. */
  const enforcedDecision = () =>
    waitFor(
      'the decision, enforced',
      async () => {
        const ds = (await decisions()).decisions;
        return ds.length === 1 && ds[0]!.enforcedBy.length === 1 && ds[0]!.missingOn.length === 0 ? ds : undefined;
      },
      SLOW_MS,
    );
  /** The policy's table rows printed from `mark` (a length of the table) on. */
  const rowsSince = (mark: number) => svc.table.slice(mark);
  const policyMetric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${POLICY_METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };

  /** Both services running (restarted if a test stopped one) and connected to each other. */
  const running = async () => {
    await svc.ensureRunning();
  };

  /**
   * What every test starts from: both services up, the attacker's earlier
   * SYNs out of the window (so neither detector counts them; by then their
   * events have long been handled), no active decision, and no kernel block,
   * even one without a decision.
   */
  const fresh = async () => {
    await running();
    await windowAfter(attackerDoneNs, WINDOW_SECONDS);
    await svc.unblockEverything();
    expect((await decisions()).decisions).toEqual([]);
    expect((await svc.probeStatus()).blocks).toBe(0);
  };

  beforeAll(async () => {
    net = createNamespacePair(1);
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined), SLOW_MS);
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
    await fresh();
    expect(svc.table.slice(0, 5)).toEqual([
      'Welcome to Packetwatch!',
      `We will be logging all incoming connections on ${net.victimIf}`,
      `Any source IPs that hit ${PORT_THRESHOLD} different ports within ${WINDOW_SECONDS} second(s) will have their future connection attempts dropped!`,
      `We will whitelist any incoming connections originating from our own IPs on ${net.victimIf}!`,
      'TIME               SOURCE IP        PORT   MESSAGE',
    ]);
    const mark = svc.table.length;
    expect(await curl(8086)).toBe('pong');
    await waitFor('the connection row', () => rowsSince(mark).find((l) => l.includes(net.attackerAddr) && l.trimEnd().endsWith('8086')), SLOW_MS);
  });

  it('does not block a slow scan (gaps longer than the window)', async () => {
    await fresh();
    for (const port of PORTS) {
      expect(await curl(port)).toBe('pong');
      await windowAfter(attackerDoneNs, WINDOW_SECONDS);
    }
    expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
    expect((await svc.probeStatus()).blocks).toBe(0);
  });

  it('does not block a hammer on one port', async () => {
    await fresh();
    for (let i = 0; i < 10; i++) expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
    expect((await svc.probeStatus()).blocks).toBe(0);
  });

  it('blocks a fast scan of 3 ports: the next attempt times out and the table shows "Added to blacklist"', async () => {
    await fresh();
    const mark = svc.table.length;
    await fastScan();
    await waitFor('the blacklist row', () => rowsSince(mark).find((l) => l.includes(net.attackerAddr) && l.endsWith('Added to blacklist')), SLOW_MS);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    const ds = (await decisions()).decisions;
    expect(ds).toHaveLength(1);
    const d = ds[0]!;
    expect(d).toMatchObject({ ip: net.attackerAddr, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR, expires: undefined, missingOn: [] });
    expect(d.reason).toContain('3 ports (8086, 8087, 8088)');
    expect(d.enforcedBy).toHaveLength(1);
  });

  it('counts the detection, the decision, the probe and the detection-to-block latency on /metrics', async () => {
    await fresh();
    // Counters are cumulative over the policy's life: compared before and after this test's scan.
    const counters = ['detections_total', 'detection_to_block_seconds_count', 'block_failures_total', 'events_received_total'] as const;
    const read = async () => Object.fromEntries(await Promise.all(counters.map(async (c) => [c, await policyMetric(`packetwatch_policy_${c}`)] as const)));
    const before = await read();
    const kernelBefore = (await svc.probeStatus()).counters!.events;
    await fastScan();
    await enforcedDecision();
    const after = await read();
    const kernelEvents = Number((await svc.probeStatus()).counters!.events - kernelBefore);
    expect(after.detections_total! - before.detections_total!).toBe(1);
    expect(after.detection_to_block_seconds_count! - before.detection_to_block_seconds_count!).toBe(1);
    expect(after.block_failures_total! - before.block_failures_total!).toBe(0);
    // Every SYN event the program wrote reached the policy: one per connection
    // of the scan (a SYN retransmission would be one more on both sides).
    expect(kernelEvents).toBeGreaterThanOrEqual(PORTS.length);
    expect(after.events_received_total! - before.events_received_total!).toBe(kernelEvents);
    // Gauges: what is true now.
    expect(await policyMetric('packetwatch_policy_decisions_active')).toBe(1);
    expect(await policyMetric('packetwatch_policy_probes_connected')).toBe(1);
    // The detection drops the attacker's history, and no one else sends SYNs here.
    expect(await policyMetric('packetwatch_policy_tracked_sources')).toBe(0);
  });

  it('serves the standard health check and reflection on its socket', async () => {
    await fresh();
    expect(await healthCheck(`unix://${svc.policySocket}`, 'packetwatch.v1.Policy')).toBe('SERVING');
    expect(await reflectedServices(`unix://${svc.policySocket}`)).toEqual(['grpc.health.v1.Health', 'packetwatch.v1.Policy']);
  });

  it('restores access when the policy unblocks the source', async () => {
    await fresh();
    await fastScan();
    await enforcedDecision();
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    const res = await unblock(net.attackerAddr);
    expect(res.ended.map((d) => d.ip)).toEqual([net.attackerAddr]);
    expect(await curl(8086)).toBe('pong');
    expect((await decisions()).decisions).toEqual([]);
  });

  it('blocks an nmap SYN scan of 1,000 ports at 1,000 SYN/s after the threshold, and reports how many SYNs got through', async () => {
    await fresh();
    const before = (await svc.probeStatus()).counters!;
    const log = svc.policy!.stderr.length;
    // nmap on one CPU (the first this process may use): see `passed` below.
    const cpu = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
    const nmap = ['-n', '-Pn', '-sS', '-p', '1-1000', '--max-retries', '0', '--min-rate', '1000', '--max-rate', '1000', net.victimAddr];
    const r = await inAttacker('taskset', ['-c', cpu, 'nmap', ...nmap], 120_000);
    expect(r.code).toBe(0);
    await enforcedDecision();
    const after = (await svc.probeStatus()).counters!;
    const seen = Number(after.syn - before.syn);
    const passed = Number(after.events - before.events);
    const dropped = Number(after.synDropped - before.synDropped);
    const inForce = svc.policy!.stderr.slice(log).map((l) => /"detectionToBlockMs":([\d.]+)/.exec(l)?.[1]).find(Boolean);
    console.log(`detection to block: ${inForce} ms`);
    console.log(`nmap -sS -p 1-1000: ${passed} SYNs reached the victim before the block, ${dropped} dropped`);
    // One SYN per port (no retries), plus any timing probes nmap adds once
    // nothing answers any more.
    expect(seen).toBeGreaterThanOrEqual(1000);
    // The XDP program blocks the source at the SYN that reaches the N-th
    // distinct port, whatever the machine's speed or load: exactly N pass,
    // every later one is dropped. That holds when the program handles the
    // scan's SYNs one at a time: its per-source scan state is not updated
    // atomically, so SYNs of one source on two CPUs at the same instant could
    // get one more through. A veth hands a frame to the program (driver or
    // generic XDP, no RPS, no threaded NAPI, as created here) in the softirq
    // of the CPU that sent it, so a sender held on one CPU is handled one SYN
    // at a time, even with its softirqs deferred to that CPU's ksoftirqd.
    expect(passed).toBe(PORT_THRESHOLD);
    expect(dropped).toBe(seen - PORT_THRESHOLD);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
  });

  it('re-applies its stored decisions to a fresh probe after a restart', async () => {
    await fresh();
    await fastScan();
    await enforcedDecision();
    await svc.probe!.stop('SIGTERM');
    await svc.policy!.stop('SIGTERM');
    svc.detach();
    // Nothing enforces the block now: the datapath is gone.
    expect(await curl(8086)).toBe('pong');
    await svc.start();
    await waitFor('the re-applied block', async () => ((await svc.probeStatus()).blocks === 1 ? true : undefined), SLOW_MS);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    // The kernel holds the block a moment before the policy hears back from BlockIp.
    const [d] = await enforcedDecision();
    expect(d).toMatchObject({ ip: net.attackerAddr, missingOn: [], enforcedBy: [(await svc.probeStatus()).probeId] });
  });

  it('blocks and unblocks by hand through the policy', async () => {
    await fresh();
    const res = await blockByHand(net.attackerAddr, 'by hand');
    expect(res.decision).toMatchObject({ ip: net.attackerAddr, reason: 'by hand', origin: DecisionOrigin.DECISION_ORIGIN_MANUAL });
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    await expect(blockByHand(net.victimAddr, '')).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect((await unblock(net.attackerAddr)).ended.map((d) => d.ip)).toEqual([net.attackerAddr]);
    expect(await curl(8086)).toBe('pong');
  });
});
