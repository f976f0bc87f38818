// Hostile input: spoofed-source floods cannot make Packetwatch block the
// internet for long nor stop it blocking real scanners (a cap on tracked
// sources, a budget of full-length blocks a minute), stealth scans are
// probes like SYNs and an ACK scan is nothing, bad RPC arguments get the documented status and change
// nothing, and every bad setting stops a service with exit code 2 naming it.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_CAPPED_BLOCK_SECONDS } from '@packetwatch/bpf/records';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policySettings } from '../../services/policy/src/config.js';
import { probeSettings } from '../../services/probe/src/config.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, call, listAllBlocks, listAllDecisions, startPongServer } from '@packetwatch/test-support/services';

const METRICS_PORT = 19092; // inside the victim namespace
const MAX_BLOCKS_PER_MINUTE = 5;
const FORGED_SYNS = 2000;
const CURL_TIMEOUT_EXIT = 28;
/** Upper bound for what is slow on a loaded machine (a service starting, a flood's events coming through, nmap): generous on purpose. */
const SLOW_MS = 60_000;
/** Per test: some restart both services, or start a service once per setting, each taking seconds under load. */
const TEST_MS = 300_000;
const deadline = () => ({ deadline: Date.now() + 5000 });
const run = promisify(execFile);

describe('hostile input', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;

  const policyMetric = async (name: string): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${METRICS_PORT}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };
  const decisions = async () => ({ decisions: await listAllDecisions(svc.policyClient, true) });
  const kernelBlocks = async () => ({ blocks: await listAllBlocks(svc.probeClient) });

  const running = () => svc.ensureRunning();

  /**
   * Both services started afresh, on an empty decision store and with no
   * program pinned (so an empty kernel blocklist): the blocks-per-minute
   * windows (the policy's sliding one, the XDP program's fixed one) hold no
   * earlier block. Waiting a minute for them to empty would do too, slowly.
   */
  const fresh = async () => {
    await Promise.all([svc.probe?.stop('SIGKILL'), svc.policy?.stop('SIGKILL')]);
    svc.detach();
    for (const f of ['decisions.db', 'decisions.db-wal', 'decisions.db-shm']) rmSync(join(svc.stateDir, f), { force: true });
    await running();
    expect((await decisions()).decisions).toEqual([]);
    expect((await kernelBlocks()).blocks).toEqual([]);
  };

  beforeAll(async () => {
    net = createNamespacePair(3);
    pong = startPongServer(net.victimNs, [8086]);
    await waitFor('the pong server', () => (pong.stdout.length === 1 ? true : undefined), SLOW_MS);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        // Every source is a "scanner" at its first SYN: the worst case for a spoofed flood.
        PW_PORTSCAN_PORT_THRESHOLD: '1',
        PW_MAX_BLOCKS_PER_MINUTE: String(MAX_BLOCKS_PER_MINUTE),
        PW_MAX_TRACKED_SOURCES: '100',
        PW_POLICY_PROMETHEUS_PORT: String(METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_LOG_FORMAT: 'json',
        PW_LOG_LEVEL: 'info',
      },
    });
    await svc.start();
  }, 120_000);

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('under a spoofed-source flood far beyond PW_MAX_BLOCKS_PER_MINUTE, blocks forged sources only briefly and a real scanner at once', async () => {
    await fresh();
    const received0 = await policyMetric('packetwatch_policy_events_received_total');
    const capped0 = await policyMetric('packetwatch_policy_detections_capped_total');
    const k0 = (await svc.probeStatus()).counters!;
    // 2000 forged sources, one SYN each, in about a second: all of it well
    // within the minute both budgets count blocks over.
    const r = await net.inAttacker('hping3', ['-q', '-S', '--rand-source', '-p', '8086', '-c', String(FORGED_SYNS), '-i', 'u500', net.victimAddr], SLOW_MS);
    // hping3 exits 1 when replies are missing, as they are for forged sources.
    expect(r.stdout + r.stderr).toContain(`${FORGED_SYNS} packets transmitted`);
    const k = (await svc.probeStatus()).counters!;
    const events = Number(k.events - k0.events);
    // Nothing on the path drops a SYN but a veth whose ring is full, which at
    // one frame every 500 us takes a receiver stalled for over 100 ms; 3/4 of
    // them still make a flood 300 times the budget.
    expect(Number(k.syn - k0.syn)).toBeGreaterThanOrEqual((FORGED_SYNS * 3) / 4);
    // No forged source sends twice, so none is dropped: every SYN an event.
    expect(k.events - k0.events).toBe(k.syn - k0.syn);
    // Every event is a detection (N = 1), blocked in the kernel at that SYN:
    // the first MAX_BLOCKS_PER_MINUTE at full length, every later one for
    // the short TTL. The policy records each as the kernel made it.
    expect({ blocked: k.scanBlocked - k0.scanBlocked, capped: k.scanCapped - k0.scanCapped }).toEqual({
      blocked: BigInt(MAX_BLOCKS_PER_MINUTE),
      capped: BigInt(events - MAX_BLOCKS_PER_MINUTE),
    });
    const handled = async () => ({
      received: (await policyMetric('packetwatch_policy_events_received_total')) - received0,
      capped: (await policyMetric('packetwatch_policy_detections_capped_total')) - capped0,
    });
    await waitFor(
      'the flood to be handled',
      async () => {
        const h = await handled();
        return h.received === events && h.capped === events - MAX_BLOCKS_PER_MINUTE ? true : undefined;
      },
      SLOW_MS,
    ).catch(() => undefined); // the assertions below say what is off
    expect(await handled()).toEqual({ received: events, capped: events - MAX_BLOCKS_PER_MINUTE });
    const ttls = (list: { created?: Date | undefined; expires?: Date | undefined }[]) =>
      list.map((x) => (x.expires ? Math.round((x.expires.getTime() - x.created!.getTime()) / 1000) : 0)).sort((a, b) => a - b);
    const short = Array(events - MAX_BLOCKS_PER_MINUTE).fill(DEFAULT_CAPPED_BLOCK_SECONDS);
    const permanent = Array(MAX_BLOCKS_PER_MINUTE).fill(0);
    expect(ttls((await decisions()).decisions)).toEqual([...permanent, ...short]);
    expect(ttls((await kernelBlocks()).blocks)).toEqual([...permanent, ...short]);

    // A real scanner now, the budget long spent: blocked at its crossing SYN
    // (the first, N = 1), which passes; its next connection times out.
    expect((await net.inAttacker('curl', ['-s', '--connect-timeout', '10', `http://${net.victimAddr}:8086/`])).stdout).toBe('pong');
    expect((await net.inAttacker('curl', ['-s', '--connect-timeout', '1', `http://${net.victimAddr}:8086/`])).code).toBe(CURL_TIMEOUT_EXIT);
    const scanner = (await kernelBlocks()).blocks.find((b) => b.ip === net.attackerAddr);
    expect(ttls([scanner!])).toEqual([DEFAULT_CAPPED_BLOCK_SECONDS]);
    // Both services are still there and still talking.
    expect((await svc.probeStatus()).policyConnected).toBe(true);
    expect((await svc.policyStatus()).probes).toHaveLength(1);
  }, TEST_MS);

  it('sees FIN, NULL and Xmas scans as stealth probes (reported or, once blocked, dropped), and an ACK scan as no probe', async () => {
    await running();
    const before = (await svc.probeStatus()).counters!;
    for (const scan of ['-sF', '-sN', '-sX']) {
      const r = await net.inAttacker('nmap', ['-n', '-Pn', scan, '-p', '1-200', '--max-retries', '0', net.victimAddr], SLOW_MS);
      expect(r.code).toBe(0);
    }
    const mid = (await svc.probeStatus()).counters!;
    // Every scan probes each of the 200 ports once at least; none of them is a SYN.
    expect(mid.frames - before.frames).toBeGreaterThanOrEqual(600n);
    expect(mid.syn - before.syn).toBe(0n);
    expect(mid.stealth - before.stealth).toBeGreaterThanOrEqual(600n);
    // Each stealth probe is an event, or dropped because its source is blocked
    // (N = 1: the first one that passes blocks it, unless the policy's spent
    // budget lifts the block again).
    expect(mid.events - before.events + (mid.probeDropped - before.probeDropped)).toBe(mid.stealth - before.stealth);
    const r = await net.inAttacker('nmap', ['-n', '-Pn', '-sA', '-p', '1-200', '--max-retries', '0', net.victimAddr], SLOW_MS);
    expect(r.code).toBe(0);
    const after = (await svc.probeStatus()).counters!;
    expect(after.frames - mid.frames).toBeGreaterThanOrEqual(200n);
    expect({ syn: after.syn - mid.syn, stealth: after.stealth - mid.stealth, events: after.events - mid.events }).toEqual({ syn: 0n, stealth: 0n, events: 0n });
  }, TEST_MS);

  it('refuses bad RPC arguments with the documented status and changes nothing', async () => {
    // Running and in touch: the policy has the probe's hello, and with it the
    // probe's own addresses (the own-address cases).
    await running();
    const stateBefore = JSON.stringify((await decisions()).decisions.map((d) => [d.ip, d.ended]));
    const kernelBefore = (await kernelBlocks()).blocks.length;
    const policyBlock = (ip: string, reason = '', seconds = 0n) => () =>
      call((cb) => svc.policyClient.block({ ip, reason, ttl: { seconds, nanos: 0 } }, new grpc.Metadata(), deadline(), cb));
    const probeBlock = (ip: string, seconds = 0n) => () =>
      call((cb) => svc.controlClient.blockIp({ ip, reason: 2, ttl: { seconds, nanos: 0 } }, new grpc.Metadata(), deadline(), cb));
    const cases: [string, () => Promise<unknown>, grpc.status][] = [
      ['policy: not an address', policyBlock('300.1.1.1'), grpc.status.INVALID_ARGUMENT],
      ['policy: a prefix', policyBlock('192.0.2.0/24'), grpc.status.INVALID_ARGUMENT],
      ['policy: negative ttl', policyBlock('192.0.2.1', '', -5n), grpc.status.INVALID_ARGUMENT],
      ['policy: huge reason', policyBlock('192.0.2.1', 'x'.repeat(100_000)), grpc.status.INVALID_ARGUMENT],
      ['policy: oversized message', policyBlock('1'.repeat(5 << 20)), grpc.status.RESOURCE_EXHAUSTED],
      ['policy: own address', policyBlock(net.victimAddr), grpc.status.FAILED_PRECONDITION],
      ['policy: unblock nothing', () => call((cb) => svc.policyClient.unblock({ ip: '', all: false }, new grpc.Metadata(), deadline(), cb)), grpc.status.INVALID_ARGUMENT],
      ['policy: allow garbage', () => call((cb) => svc.policyClient.addAllow({ prefix: '10.0.0.0/33', note: '' }, new grpc.Metadata(), deadline(), cb)), grpc.status.INVALID_ARGUMENT],
      ['probe: not an address', probeBlock('::g'), grpc.status.INVALID_ARGUMENT],
      ['probe: huge address', probeBlock('a'.repeat(100_000)), grpc.status.INVALID_ARGUMENT],
      ['probe: negative ttl', probeBlock('192.0.2.1', -1n), grpc.status.INVALID_ARGUMENT],
      ['probe: oversized message', probeBlock('1'.repeat(5 << 20)), grpc.status.RESOURCE_EXHAUSTED],
      ['probe: own address', probeBlock(net.victimAddr), grpc.status.FAILED_PRECONDITION],
    ];
    for (const [name, request, code] of cases) {
      const err = await request().then(
        () => undefined,
        (e: grpc.ServiceError) => e.code,
      );
      expect({ name, code: err === undefined ? 'OK' : grpc.status[err] }).toEqual({ name, code: grpc.status[code] });
    }
    expect(JSON.stringify((await decisions()).decisions.map((d) => [d.ip, d.ended]))).toBe(stateBefore);
    expect((await kernelBlocks()).blocks.length).toBe(kernelBefore);
  }, TEST_MS);
});

describe('bad settings', () => {
  const MAINS = {
    probe: fileURLToPath(new URL('../../services/probe/dist/main.js', import.meta.url)),
    policy: fileURLToPath(new URL('../../services/policy/dist/main.js', import.meta.url)),
  };
  const BAD: Record<string, string> = {
    'an integer': 'many',
    'a port': '65536',
    'True or False': 'maybe',
    'one of': 'sideways',
    'an absolute path': 'relative/path',
    'an interface name': 'no/such/if',
    'a duration': '-5m',
    // Free-form strings ('a string') have no bad value: empty means unset.
  };
  const badValue = (accepts: string) => Object.entries(BAD).find(([k]) => accepts.startsWith(k))?.[1];

  /** Exit code and stderr of a service started with one setting; the timeout only bounds a service that failed to stop. */
  const startWith = async (main: string, env: string, value: string) => {
    try {
      await run(process.execPath, [main], { env: { ...process.env, [env]: value }, timeout: SLOW_MS });
      return { code: 0, stderr: '' };
    } catch (e) {
      const err = e as { code?: number | string; stderr?: string };
      return { code: err.code, stderr: err.stderr ?? '' };
    }
  };

  for (const [service, spec] of [
    ['probe', probeSettings],
    ['policy', policySettings],
  ] as const) {
    it(`stops the ${service} with exit code 2 naming each setting given a bad value`, async () => {
      const cases = Object.values(spec).flatMap((s) => {
        const value = badValue(s.accepts);
        return value === undefined ? [] : [{ env: s.env, value }];
      });
      expect(cases.length).toBeGreaterThanOrEqual(10);
      // A process start each, some seconds on a loaded machine: as many at a time as there are CPUs.
      const results: { setting: string; code: number | string | undefined; named: boolean }[] = [];
      const queue = [...cases];
      await Promise.all(
        Array.from({ length: availableParallelism() }, async () => {
          for (let c = queue.shift(); c; c = queue.shift()) {
            const r = await startWith(MAINS[service], c.env, c.value);
            results.push({ setting: c.env, code: r.code, named: r.stderr.includes(`invalid ${c.env}=`) });
          }
        }),
      );
      const bySetting = (a: { setting: string }, b: { setting: string }) => a.setting.localeCompare(b.setting);
      expect(results.sort(bySetting)).toEqual(cases.map((c) => ({ setting: c.env, code: 2, named: true })).sort(bySetting));
    }, TEST_MS);
  }
});
