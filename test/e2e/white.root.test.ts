// e2e-white, after the seed's suite of that name: Packetwatch on the
// victim's loopback. Its own address scanning itself is whitelisted and never
// blocked; with PW_WHITELIST_SELF=False the same address is a scanner like
// any other, and probe and policy keep talking (over Unix sockets, not TCP
// on the interface they guard).
import * as grpc from '@grpc/grpc-js';
import type { ListDecisionsResponse } from '@packetwatch/proto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { call } from './probe-process.js';
import { type ServiceProcess, Services, startPongServer } from './services.js';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];

describe('e2e-white: own addresses on the watched interface', () => {
  let net: NamespacePair;
  let pong: ServiceProcess;
  let svc: Services | undefined;

  const curlSelf = async (port: number, timeout = '5') => {
    const r = await net.inVictim('curl', ['-s', '--connect-timeout', timeout, `http://127.0.0.1:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = (s: Services) =>
    call<ListDecisionsResponse>((cb) => s.policyClient.listDecisions({ all: false }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));

  beforeAll(async () => {
    net = createNamespacePair(2);
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined));
  });

  afterEach(async () => {
    await svc?.destroy();
    svc = undefined;
  });

  afterAll(async () => {
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('whitelists 127.0.0.1 and never blocks it, however fast it scans itself', async () => {
    svc = new Services({ netns: net.victimNs, ifdev: 'lo', env: { PW_PORTSCAN_TIME_THRESHOLD: '60' } });
    await svc.start();
    const s = svc;
    await waitFor('the whitelist row', () => s.table.find((l) => /127\.0\.0\.1\s+Added to whitelist$/.test(l)));
    for (let round = 0; round < 3; round++) for (const port of PORTS) expect(await curlSelf(port)).toBe('pong');
    const r = await net.inVictim('nmap', ['-n', '-Pn', '-sS', '-p', '1-200', '127.0.0.1'], 60_000);
    expect(r.code).toBe(0);
    expect(await curlSelf(8086)).toBe('pong');
    expect((await decisions(s)).decisions).toEqual([]);
    expect(s.table.some((l) => l.endsWith('Added to blacklist'))).toBe(false);
    // Reported, though: the seed showed whitelisted connections in its table.
    expect(s.table.filter((l) => /^\S+\s+127\.0\.0\.1\s+8087$/.test(l)).length).toBeGreaterThanOrEqual(3);
  });

  it('with PW_WHITELIST_SELF=False, an nmap scan of 127.0.0.1 ends in "Added to blacklist" while probe and policy keep talking', async () => {
    svc = new Services({ netns: net.victimNs, ifdev: 'lo', env: { PW_WHITELIST_SELF: 'False' } });
    await svc.start();
    const s = svc;
    expect(s.table[3]).toBe('We will NOT whitelist any incoming connections originating from our own IPs on lo, so play nice!');
    const r = await net.inVictim('nmap', ['-n', '-Pn', '-sS', '-p', '1-1000', '--max-retries', '0', '--min-rate', '2000', '127.0.0.1'], 120_000);
    expect(r.code).toBe(0);
    await waitFor('the blacklist row', () => s.table.find((l) => /127\.0\.0\.1\s+Added to blacklist$/.test(l)));
    expect(await curlSelf(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    expect((await decisions(s)).decisions.map((d) => d.ip)).toEqual(['127.0.0.1']);
    const [probeStatus, policyStatus] = await Promise.all([s.probeStatus(), s.policyStatus()]);
    expect(probeStatus.policyConnected).toBe(true);
    expect(policyStatus.probes.map((p) => p.interface)).toEqual(['lo']);
    // Events still flow after the block: another local address is still reported.
    const before = policyStatus.eventsReceived;
    const other = await net.inVictim('curl', ['-s', '--connect-timeout', '5', `http://${net.victimAddr}:8086/`]);
    expect(other.stdout).toBe('pong');
    await waitFor('the new event', async () => ((await s.policyStatus()).eventsReceived > before ? true : undefined));
  });
});
