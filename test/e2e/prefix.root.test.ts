// IPv6 sources by prefix (PW_IPV6_PREFIX), as the attack it defends meets
// it: a scanner rotating the addresses of one /64, each address touching a
// single new port, so that no address alone ever looks like a scan. Probe
// and policy run as real processes in a victim namespace; the attacker
// namespace holds several addresses of one /64 and one of another, and
// connects from each with curl bound to it.
//
// With the default /64, three addresses of the /64 on three ports are one
// source at N = 3: the /64 is blocked in the kernel and decided on by the
// policy as "…::/64", and a fresh fourth address of the /64 cannot connect
// (its SYN is dropped) while an address of another /64 can. `packetwatchctl
// blocks` lists the prefix and `packetwatchctl unblock <prefix>` lets the
// fresh address in. With PW_IPV6_PREFIX=128 the same three addresses are
// three sources of one port each: nothing is detected (and a /64 block made
// before the change is removed: no lookup could match it). Back to /64, a
// block of an address widens to its /64, in the kernel and in the policy.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { type BlockResponse, DecisionOrigin } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, Services, call, listAllBlocks, listAllDecisions } from '@packetwatch/test-support/services';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const CURL_TIMEOUT_EXIT = 28;
const SLOW_MS = 30_000;
const PORTS = [8081, 8082, 8083, 8084];

/** The victim's IPv6 address; every address below is on-link over the veth pair (a /48 on both ends). */
const VICTIM6 = 'fd28::1';
/** The scanner's /64, and its addresses: three to scan with, a fresh fourth. */
const SCAN_NET = 'fd28:0:0:2::/64';
const SCANNERS = ['fd28:0:0:2::a1', 'fd28:0:0:2::a2', 'fd28:0:0:2::a3'];
const FRESH = 'fd28:0:0:2::a4';
/** An address of another /64. */
const NEIGHBOUR = 'fd28:0:0:3::b1';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('IPv6 sources by prefix: a scan rotating the addresses of one /64', () => {
  let net: NamespacePair;
  let svc: Services;
  let server: ServiceProcess;

  beforeAll(async () => {
    net = createNamespacePair(28);
    const v6 = async (ns: 'inVictim' | 'inAttacker', addr: string, dev: string) => {
      const r = await net[ns]('ip', ['-6', 'addr', 'add', `${addr}/48`, 'dev', dev, 'nodad']);
      expect(r, `ip -6 addr add ${addr}`).toMatchObject({ code: 0 });
    };
    await v6('inVictim', VICTIM6, net.victimIf);
    const attackerIf = (await net.inAttacker('ip', ['-o', 'link', 'show', 'type', 'veth'])).stdout.split(':')[1]!.trim().split('@')[0]!;
    for (const a of [...SCANNERS, FRESH, NEIGHBOUR]) await v6('inAttacker', a, attackerIf);
    // A listener on every port, both families: a SYN that passes connects.
    const script = `
      const http = require('node:http');
      for (const p of ${JSON.stringify(PORTS)}) http.createServer((_q, r) => r.end('pong')).listen(p, '::', () => console.log('listening ' + p));
    `;
    server = new ServiceProcess(['ip', 'netns', 'exec', net.victimNs, process.execPath, '-e', script], {});
    await waitFor('the pong server', () => (server.stdout.length === PORTS.length ? true : undefined), SLOW_MS);
    svc = new Services({ netns: net.victimNs, ifdev: net.victimIf, env: { PW_PORTSCAN_PORT_THRESHOLD: '3', PW_PORTSCAN_TIME_THRESHOLD: '60' } });
    await svc.start();
  }, 120_000);

  afterAll(async () => {
    await server?.stop('SIGKILL');
    await svc?.destroy();
    net?.destroy();
  });

  /** curl from `from` (bound to it) to the victim's port: 0 and "pong" when the SYN got through. */
  const connect = (from: string, port: number) =>
    net.inAttacker('curl', ['-g', '-s', '--interface', from, '--connect-timeout', '2', '--max-time', '5', `http://[${VICTIM6}]:${port}/`]);
  const ctl = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(process.execPath, [CLI, '--policy', `unix:${svc.policySocket}`, '--probe', `unix:${svc.probeSocket}`, ...args], { timeout: SLOW_MS }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
  const kernelBlocks = async () => (await listAllBlocks(svc.probeClient, 5000)).map((b) => b.ip);

  it('blocks the /64 of three addresses that touch one new port each, in the kernel and as a policy decision', async () => {
    const status = await svc.policyStatus();
    expect([status.ipv6Prefix, status.ipv4Prefix]).toEqual([64, 32]);
    expect((await svc.probeStatus()).scanConfig).toMatchObject({ ipv6Prefix: 64, ipv4Prefix: 32 });

    // Each address once, each on its own port: every SYN passes (the third crosses N = 3 and blocks the /64 behind it).
    for (const [i, from] of SCANNERS.entries()) expect(await connect(from, PORTS[i]!)).toMatchObject({ code: 0, stdout: 'pong' });

    const decision = await waitFor(
      'the decision on the /64, enforced',
      async () => {
        const ds = await listAllDecisions(svc.policyClient, false);
        return ds.length === 1 && ds[0]!.enforcedBy.length === 1 ? ds[0] : undefined;
      },
      SLOW_MS,
    );
    expect(decision).toMatchObject({ ip: SCAN_NET, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR, missingOn: [] });
    expect(decision.reason).toMatch(/^port scan: 3 ports \(8081, 8082, 8083\)/);
    expect(await kernelBlocks()).toEqual(['fd28:0:0:2::/64']);
  });

  it('drops the SYN of a fresh address of the blocked /64, and lets an address of another /64 connect', async () => {
    const before = (await svc.probeStatus()).counters!;
    expect((await connect(FRESH, PORTS[3]!)).code).toBe(CURL_TIMEOUT_EXIT);
    const after = (await svc.probeStatus()).counters!;
    expect(after.synDropped - before.synDropped).toBeGreaterThanOrEqual(1n);
    expect(await connect(NEIGHBOUR, PORTS[3]!)).toMatchObject({ code: 0, stdout: 'pong' });
    // The neighbour's one port is no scan: still the one decision.
    expect((await listAllDecisions(svc.policyClient, false)).map((d) => d.ip)).toEqual(['fd28:0:0:2::/64']);
  });

  it('packetwatchctl blocks lists the prefix, and unblock <prefix> lets the fresh address connect', async () => {
    const blocks = await ctl('blocks');
    expect(blocks).toMatchObject({ code: 0, stderr: '' });
    const rows = blocks.stdout.split('\n').filter((l) => l.startsWith('fd28:'));
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(['fd28:0:0:2::/64']);
    expect(rows[0]).not.toContain('DRIFT');

    const unblocked = await ctl('unblock', SCAN_NET);
    expect(unblocked).toMatchObject({ code: 0, stderr: '' });
    expect(unblocked.stdout).toMatch(/^Unblocked 1 source: fd28:0:0:2::\/64 \(decision \d+, port scan: 3 ports/);
    await waitFor('the kernel block lifted', async () => ((await kernelBlocks()).length === 0 ? true : undefined), SLOW_MS);
    expect(await listAllDecisions(svc.policyClient, false)).toEqual([]);
    expect(await connect(FRESH, PORTS[3]!)).toMatchObject({ code: 0, stdout: 'pong' });
  });

  it('block <address> blocks its /64, and the probe holds it under the prefix', async () => {
    const blocked = await ctl('block', FRESH, '--reason', 'by hand');
    expect(blocked).toMatchObject({ code: 0, stderr: '' });
    expect(blocked.stdout).toMatch(/^Blocked fd28:0:0:2::\/64 \(the \/64 holding fd28:0:0:2::a4\): by hand \(manual\)/);
    await waitFor('the kernel block', async () => ((await kernelBlocks()).join() === 'fd28:0:0:2::/64' ? true : undefined), SLOW_MS);
    // Another address of the /64 is dropped; the neighbour is not.
    expect((await connect(SCANNERS[0]!, PORTS[0]!)).code).toBe(CURL_TIMEOUT_EXIT);
    expect(await connect(NEIGHBOUR, PORTS[0]!)).toMatchObject({ code: 0, stdout: 'pong' });
    // A prefix shorter than the /64 sources are blocked by is refused, naming the length.
    const short = await call<BlockResponse>((cb) =>
      svc.policyClient.block({ ip: 'fd28::/48', reason: '', ttl: undefined }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb),
    ).catch((e: grpc.ServiceError) => e);
    expect(short).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect((short as grpc.ServiceError).details).toContain('shorter than the /64 IPv6 sources are blocked by (PW_IPV6_PREFIX)');
    expect((await ctl('unblock', FRESH)).stdout).toMatch(/^Unblocked 1 source: fd28:0:0:2::\/64, the \/64 holding fd28:0:0:2::a4 \(decision \d+, by hand\)/);
    await waitFor('the kernel block lifted', async () => ((await kernelBlocks()).length === 0 ? true : undefined), SLOW_MS);
  });

  it('with PW_IPV6_PREFIX=128 the same three addresses are three sources of one port each: nothing is detected', async () => {
    // A /64 block made before the change: the probe cannot narrow it to
    // addresses and removes it; the policy ends its decision.
    await ctl('block', SCAN_NET, '--reason', 'before the change');
    await waitFor('the kernel block', async () => ((await kernelBlocks()).length === 1 ? true : undefined), SLOW_MS);

    svc.configure({ PW_IPV6_PREFIX: '128' });
    await svc.policy!.stop();
    await svc.startPolicy();
    await waitFor(
      'the probe running the new prefix length, connected',
      async () => {
        const st = await svc.probeStatus();
        return st.scanConfig?.ipv6Prefix === 128 && st.policyConnected ? true : undefined;
      },
      SLOW_MS,
    );
    expect((await svc.policyStatus()).ipv6Prefix).toBe(128);
    await waitFor('the /64 block gone from the kernel', async () => ((await kernelBlocks()).length === 0 ? true : undefined), SLOW_MS);
    expect(await listAllDecisions(svc.policyClient, false)).toEqual([]);

    const received = Number((await svc.policyStatus()).eventsReceived);
    for (const [i, from] of SCANNERS.entries()) expect(await connect(from, PORTS[i]!)).toMatchObject({ code: 0, stdout: 'pong' });
    // The policy has taken the three SYNs: three sources, tracked, none detected.
    const st = await waitFor(
      'the three SYNs in the policy',
      async () => {
        const s = await svc.policyStatus();
        return Number(s.eventsReceived) - received >= 3 && Number(s.trackedSources) === 3 ? s : undefined;
      },
      SLOW_MS,
    );
    expect(Number(st.detections)).toBe(0);
    expect(await listAllDecisions(svc.policyClient, false)).toEqual([]);
    expect(await kernelBlocks()).toEqual([]);
    expect(await connect(FRESH, PORTS[3]!)).toMatchObject({ code: 0, stdout: 'pong' });
  });

  it('back to /64, an address block made under /128 widens to its /64: the kernel key moves, the decision is carried over, the /64 is dropped', async () => {
    expect((await ctl('block', FRESH, '--reason', 'by hand')).stdout).toMatch(/^Blocked fd28:0:0:2::a4: by hand/);
    await waitFor('the kernel block of the address', async () => ((await kernelBlocks()).join() === FRESH ? true : undefined), SLOW_MS);

    svc.configure({ PW_IPV6_PREFIX: '64' });
    await svc.policy!.stop();
    await svc.startPolicy();
    await waitFor(
      'the probe running /64 again, connected',
      async () => {
        const st = await svc.probeStatus();
        return st.scanConfig?.ipv6Prefix === 64 && st.policyConnected ? true : undefined;
      },
      SLOW_MS,
    );
    await waitFor('the kernel block under the /64', async () => ((await kernelBlocks()).join() === 'fd28:0:0:2::/64' ? true : undefined), SLOW_MS);
    const decisions = await listAllDecisions(svc.policyClient, false);
    expect(decisions.map((d) => [d.ip, d.reason])).toEqual([['fd28:0:0:2::/64', 'by hand (was on fd28:0:0:2::a4)']]);
    expect((await connect(SCANNERS[1]!, PORTS[1]!)).code).toBe(CURL_TIMEOUT_EXIT);
    expect(await connect(NEIGHBOUR, PORTS[1]!)).toMatchObject({ code: 0, stdout: 'pong' });
  });
});
