// Hostile input: spoofed-source floods cannot make Packetwatch block the
// internet (caps on tracked sources and on blocks per minute), stealth scans
// produce no events, bad RPC arguments get the documented status and change
// nothing, and every bad setting stops a service with exit code 2 naming it.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { type ListDecisionsResponse, type ListBlocksResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policySettings } from '../../services/policy/src/config.js';
import { probeSettings } from '../../services/probe/src/config.js';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { call } from './probe-process.js';
import { ServiceProcess, Services, startPongServer } from './services.js';

const METRICS_PORT = 19092;
const deadline = () => ({ deadline: Date.now() + 5000 });

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
  const decisions = () => call<ListDecisionsResponse>((cb) => svc.policyClient.listDecisions({ all: true }, new grpc.Metadata(), deadline(), cb));
  const kernelBlocks = () => call<ListBlocksResponse>((cb) => svc.probeClient.listBlocks({}, new grpc.Metadata(), deadline(), cb));

  beforeAll(async () => {
    net = createNamespacePair(3);
    pong = startPongServer(net.victimNs, [8086]);
    await waitFor('the pong server', () => (pong.stdout.length === 1 ? true : undefined));
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        // Every source is a "scanner" at its first SYN: the worst case for a spoofed flood.
        PW_PORTSCAN_PORT_THRESHOLD: '1',
        PW_MAX_BLOCKS_PER_MINUTE: '5',
        PW_MAX_TRACKED_SOURCES: '100',
        PW_POLICY_PROMETHEUS_PORT: String(METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_LOG_FORMAT: 'json',
        PW_LOG_LEVEL: 'info',
      },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('blocks at most PW_MAX_BLOCKS_PER_MINUTE sources under a spoofed-source flood, and counts the rest', async () => {
    const r = await net.inAttacker('hping3', ['-q', '-S', '--rand-source', '-p', '8086', '-c', '2000', '-i', 'u500', net.victimAddr], 60_000);
    // hping3 exits 1 when replies are missing, as they are for forged sources.
    expect(r.stdout + r.stderr).toContain('2000 packets transmitted');
    await waitFor('the flood to be processed', async () => ((await policyMetric('packetwatch_policy_events_received_total')) >= 1500 ? true : undefined), 15_000);
    expect((await decisions()).decisions).toHaveLength(5);
    expect((await kernelBlocks()).blocks).toHaveLength(5);
    expect(await policyMetric('packetwatch_policy_detections_not_enforced_total')).toBeGreaterThan(1000);
    // Both services are still there and still talking.
    expect((await svc.probeStatus()).policyConnected).toBe(true);
    expect((await svc.policyStatus()).probes).toHaveLength(1);
  });

  it('sees no new connection in stealth scans (FIN, NULL, Xmas, ACK)', async () => {
    const before = (await svc.probeStatus()).counters!;
    for (const scan of ['-sF', '-sN', '-sX', '-sA']) {
      const r = await net.inAttacker('nmap', ['-n', '-Pn', scan, '-p', '1-200', '--max-retries', '0', net.victimAddr], 60_000);
      expect(r.code).toBe(0);
    }
    const after = (await svc.probeStatus()).counters!;
    expect(after.frames - before.frames).toBeGreaterThanOrEqual(800n);
    expect(after.syn - before.syn).toBe(0n);
    expect(after.events - before.events).toBe(0n);
  });

  it('refuses bad RPC arguments with the documented status and changes nothing', async () => {
    const stateBefore = JSON.stringify((await decisions()).decisions.map((d) => [d.ip, d.ended]));
    const kernelBefore = (await kernelBlocks()).blocks.length;
    const policyBlock = (ip: string, reason = '', seconds = 0n) => () =>
      call((cb) => svc.policyClient.block({ ip, reason, ttl: { seconds, nanos: 0 } }, new grpc.Metadata(), deadline(), cb));
    const probeBlock = (ip: string, seconds = 0n) => () =>
      call((cb) => svc.probeClient.blockIp({ ip, reason: 2, ttl: { seconds, nanos: 0 } }, new grpc.Metadata(), deadline(), cb));
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
  });
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
    'a string': '',
  };
  const badValue = (accepts: string) => Object.entries(BAD).find(([k]) => accepts.startsWith(k))?.[1];

  for (const [service, spec] of [
    ['probe', probeSettings],
    ['policy', policySettings],
  ] as const) {
    it(`stops the ${service} with exit code 2 naming each setting given a bad value`, () => {
      let checked = 0;
      for (const s of Object.values(spec)) {
        const value = badValue(s.accepts);
        if (!value) continue;
        let code = 0;
        let stderr = '';
        try {
          execFileSync(process.execPath, [MAINS[service]], { env: { ...process.env, [s.env]: value }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
        } catch (e) {
          const err = e as { status: number; stderr: Buffer };
          code = err.status;
          stderr = err.stderr.toString();
        }
        expect({ setting: s.env, code, named: stderr.includes(`invalid ${s.env}=`) }).toEqual({ setting: s.env, code: 2, named: true });
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(10);
    });
  }
});
