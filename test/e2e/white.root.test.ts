// e2e-white, after the seed's suite of that name: Packetwatch on the
// victim's loopback. Its own address scanning itself is whitelisted and never
// blocked; with PW_WHITELIST_SELF=False the same address is a scanner like
// any other, and probe and policy keep talking (over Unix sockets, not TCP
// on the interface they guard).
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, call, listAllDecisions, startPongServer } from '@packetwatch/test-support/services';

const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
/** Upper bound for what is slow on a loaded machine (services starting, a scan's events coming through): generous on purpose. */
const SLOW_MS = 30_000;
/** Per test: two services start, and nmap runs, each taking seconds under load. */
const TEST_MS = 300_000;

describe('e2e-white: own addresses on the watched interface', () => {
  let net: NamespacePair;
  let pong: ServiceProcess;
  let svc: Services | undefined;

  /** 'pong', or curl's exit code. Only connections expected to be dropped pass a short timeout (it merely bounds the wait). */
  const curlSelf = async (port: number, timeout = '10', host = '127.0.0.1') => {
    const r = await net.inVictim('curl', ['-s', '--connect-timeout', timeout, `http://${host}:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = (s: Services) =>
    listAllDecisions(s.policyClient, false).then((decisions) => ({ decisions }));
  /** The ports of the table's connection rows from `source`. */
  const rowPorts = (s: Services, source: string) =>
    s.table.flatMap((l) => {
      const m = /^\S+\s+(\S+)\s+(\d+)$/.exec(l);
      return m && m[1] === source ? [Number(m[2])] : [];
    });

  beforeAll(async () => {
    net = createNamespacePair(2);
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined), SLOW_MS);
  });

  // Each test starts its own services (their settings differ) and this stops
  // them, whether the test passed or not; the pinned program goes with them.
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
    await waitFor('the whitelist row', () => s.table.find((l) => /127\.0\.0\.1\s+Added to whitelist$/.test(l)), SLOW_MS);
    for (let round = 0; round < 3; round++) for (const port of PORTS) expect(await curlSelf(port)).toBe('pong');
    const r = await net.inVictim('nmap', ['-n', '-Pn', '-sS', '-p', '1-200', '127.0.0.1'], 120_000);
    expect(r.code).toBe(0);
    // The policy has handled the whole scan once every port's row is out:
    // rows are printed as it processes the events.
    const scanned = Array.from({ length: 200 }, (_, i) => i + 1);
    await waitFor('a row for every port scanned', () => (scanned.every((p) => rowPorts(s, '127.0.0.1').includes(p)) ? true : undefined), SLOW_MS);
    expect(await curlSelf(8086)).toBe('pong');
    expect((await decisions(s)).decisions).toEqual([]);
    expect(s.table.some((l) => l.endsWith('Added to blacklist'))).toBe(false);
    // Reported, though: the seed showed whitelisted connections in its table,
    // one row per connection (three to 8087, and nmap's ports stop at 200).
    expect(rowPorts(s, '127.0.0.1').filter((p) => p === 8087)).toHaveLength(3);
  }, TEST_MS);

  it('with PW_WHITELIST_SELF=False, an nmap scan of 127.0.0.1 ends in "Added to blacklist" while probe and policy keep talking', async () => {
    svc = new Services({ netns: net.victimNs, ifdev: 'lo', env: { PW_WHITELIST_SELF: 'False' } });
    await svc.start();
    const s = svc;
    // The banner is printed once the probe says hello, and reaches us through a pipe.
    await waitFor('the banner', () => (s.table.length > 3 ? true : undefined), SLOW_MS);
    expect(s.table[3]).toBe('We will NOT whitelist any incoming connections originating from our own IPs on lo, so play nice!');
    const r = await net.inVictim('nmap', ['-n', '-Pn', '-sS', '-p', '1-1000', '--max-retries', '0', '--min-rate', '2000', '127.0.0.1'], 120_000);
    expect(r.code).toBe(0);
    await waitFor('the blacklist row', () => s.table.find((l) => /127\.0\.0\.1\s+Added to blacklist$/.test(l)), SLOW_MS);
    expect(await curlSelf(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    expect((await decisions(s)).decisions.map((d) => d.ip)).toEqual(['127.0.0.1']);
    const [probeStatus, policyStatus] = await Promise.all([s.probeStatus(), s.policyStatus()]);
    expect(probeStatus.policyConnected).toBe(true);
    expect(policyStatus.probes.map((p) => p.interface)).toEqual(['lo']);
    // Events still flow after the block: another local address is still reported.
    expect(await curlSelf(8086, '10', net.victimAddr)).toBe('pong');
    await waitFor('the connection row of the other address', () => (rowPorts(s, net.victimAddr).includes(8086) ? true : undefined), SLOW_MS);
  }, TEST_MS);
});
