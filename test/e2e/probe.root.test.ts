// The probe as a real process on a veth pair, reporting to a stand-in policy
// server: events with wall-clock times, blocks over its Unix socket, TTLs,
// refusals, metrics, a kill -9 and adoption, a bounded queue while the
// policy is away, and detach. Each test starts from `stack()`: the stand-in
// policy up, a probe with the settings the test asks for, no blocks; what an
// earlier test left behind (or failed to clean up) does not matter.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { formatAddress } from '@packetwatch/bpf';
import {
  AttachMode,
  BlockReason,
  type BlockIpResponse,
  type GetStatusResponse,
  type ProbeClient,
  type UnblockIpResponse,
} from '@packetwatch/proto';
import { clock, xdpQuery } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestNet, createTestNet, freePort, waitFor, withinRun } from '@packetwatch/test-support';
import { PolicyStub } from '@packetwatch/test-support/policy-stub';
import { PROBE_MAIN, call, listAllBlocks } from '@packetwatch/test-support/services';
import { ProbeProcess, deadline, probeClient } from './probe-process.js';
import { healthCheck, reflectedServices } from './grpc-tools.js';

const CURL_TIMEOUT_EXIT = 28;

describe('probe process', () => {
  let net: TestNet;
  let dir: string;
  let pinRoot: string;
  let socket: string;
  let operatorSocket: string;
  let stub: PolicyStub;
  let probe: ProbeProcess | undefined;
  let client: ProbeClient;
  let server: Server;
  let port: number;
  let metricsPort: number;
  let env: Record<string, string>;

  const curl = (timeout = '5') =>
    net.inPeer('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--connect-timeout', timeout, `http://${net.hostAddr}:${port}/`]);
  const status = () => call<GetStatusResponse>((cb) => client.getStatus({}, new grpc.Metadata(), deadline(), cb));
  const blockIp = (ip: string, ttlSeconds = 0, reason = BlockReason.BLOCK_REASON_MANUAL) =>
    call<BlockIpResponse>((cb) =>
      client.blockIp({ ip, ttl: { seconds: BigInt(ttlSeconds), nanos: 0 }, reason }, new grpc.Metadata(), deadline(), cb),
    );
  const unblockIp = (ip: string) => call<UnblockIpResponse>((cb) => client.unblockIp({ ip }, new grpc.Metadata(), deadline(), cb));
  const listBlocks = async () => ({ blocks: await listAllBlocks(client) });
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };
  let probeExtra = '';
  const startProbe = async (extra: Record<string, string> = {}) => {
    probe = new ProbeProcess({ ...env, ...extra });
    probeExtra = JSON.stringify(extra);
    return probe.ready(client, socket);
  };
  const stopProbe = async () => {
    probe?.kill('SIGKILL');
    await probe?.exited;
    probe = undefined;
  };
  const detach = () => {
    try {
      execFileSync(process.execPath, [PROBE_MAIN, 'detach'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    } catch {
      // nothing attached
    }
  };
  /** What every test starts from: the stand-in policy up, a probe running with `extra` settings, no blocks. */
  const stack = async (extra: Record<string, string> = {}): Promise<GetStatusResponse> => {
    if (!stub.running) await stub.start();
    if (!probe?.running || probeExtra !== JSON.stringify(extra)) {
      await stopProbe();
      await startProbe(extra);
    }
    for (const b of (await listBlocks()).blocks) await unblockIp(b.ip);
    await waitFor('policyConnected', async () => ((await status()).policyConnected ? true : undefined), 10_000);
    return status();
  };

  beforeAll(async () => {
    net = createTestNet(2);
    dir = mkdtempSync(join(tmpdir(), 'pw-probe-'));
    pinRoot = `/sys/fs/bpf/packetwatch-test-${process.pid}`;
    // The control socket, where the policy calls: the tests below block as it does.
    socket = join(dir, 'control', 'probe.sock');
    operatorSocket = join(dir, 'probe.sock');
    stub = new PolicyStub(join(dir, 'policy.sock'));
    await stub.start();
    server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, net.hostAddr, resolve));
    port = (server.address() as AddressInfo).port;
    metricsPort = await freePort();
    env = {
      PW_IFDEV: net.hostIf,
      PW_PROBE_SOCKET: operatorSocket,
      PW_PROBE_CONTROL_SOCKET: socket,
      PW_POLICY_ADDR: `unix:${stub.socketPath}`,
      PW_PROMETHEUS_PORT: String(metricsPort),
      PW_METRICS_HOST: '127.0.0.1',
      PW_BPF_PIN_DIR: pinRoot,
      PW_LOG_LEVEL: 'debug',
    };
    client = probeClient(socket);
  });

  afterAll(async () => {
    await stopProbe();
    detach();
    rmSync(pinRoot, { recursive: true, force: true });
    client?.close();
    stub?.stop();
    net?.destroy();
    await new Promise((r) => server?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('attaches natively, announces itself to the policy, and serves its API on a 0660 Unix socket', async () => {
    if (!stub.running) await stub.start();
    await stopProbe();
    detach();
    const hellos = stub.hellos.length;
    const st = await startProbe();
    expect(st).toMatchObject({ interface: net.hostIf, attachMode: AttachMode.ATTACH_MODE_DRIVER, adopted: false });
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    expect(statSync(operatorSocket).mode & 0o777).toBe(0o660);
    const hello = await waitFor('the hello', () => stub.hellos[hellos]);
    expect(hello).toMatchObject({
      interface: net.hostIf,
      whitelistSelf: true,
      callbackEndpoint: `unix:${socket}`,
      attachMode: AttachMode.ATTACH_MODE_DRIVER,
      programId: st.programId,
      adopted: false,
    });
    expect(hello.ownAddresses).toEqual(expect.arrayContaining([net.hostAddr, net.hostAddr6]));
    expect(xdpQuery(net.hostIf)).toMatchObject({ mode: 'driver', progId: st.programId });
    await waitFor('policyConnected', async () => ((await status()).policyConnected ? true : undefined));
  });

  it("serves operators on its other socket: status and blocks, but blocking is the policy's", async () => {
    await stack();
    const operator = probeClient(operatorSocket);
    try {
      expect((await call<GetStatusResponse>((cb) => operator.getStatus({}, new grpc.Metadata(), deadline(), cb))).interface).toBe(net.hostIf);
      for (const attempt of [
        call((cb) => operator.blockIp({ ip: net.peerAddr, ttl: undefined, reason: BlockReason.BLOCK_REASON_MANUAL }, new grpc.Metadata(), deadline(), cb)),
        call((cb) => operator.unblockIp({ ip: net.peerAddr }, new grpc.Metadata(), deadline(), cb)),
      ]) {
        await expect(attempt).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining('this socket serves the operator role') });
      }
      expect((await status()).blocks).toBe(0);
    } finally {
      operator.close();
    }
  });

  it('answers the standard health check and lists its services through reflection', async () => {
    await stack();
    expect(await healthCheck(`unix://${socket}`, 'packetwatch.v1.Probe')).toBe('SERVING');
    expect(await healthCheck(`unix://${socket}`, '')).toBe('SERVING');
    expect(await reflectedServices(`unix://${socket}`)).toEqual(['grpc.health.v1.Health', 'packetwatch.v1.Probe']);
  });

  it('follows a new address on the interface: allowlisted, announced to the policy, refused as a block target', async () => {
    await stack();
    const extra = '10.231.2.200';
    execFileSync('ip', ['addr', 'add', `${extra}/32`, 'dev', net.hostIf]);
    try {
      await waitFor('the address update', () => stub.addressUpdates.find((a) => a.includes(extra)), 5000);
      await expect(blockIp(extra)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    } finally {
      execFileSync('ip', ['addr', 'del', `${extra}/32`, 'dev', net.hostIf]);
    }
    await waitFor('the removal', () => (stub.addressUpdates.at(-1)?.includes(extra) === false ? true : undefined), 5000);
    expect((await blockIp(extra)).alreadyBlocked).toBe(false);
    expect((await unblockIp(extra)).removed).toBe(true);
  });

  it("streams the peer's SYN as an event with its fields and a wall-clock time", async () => {
    await stack();
    const seen = stub.events.length;
    const before = clock.realtimeNs();
    expect(await curl()).toMatchObject({ code: 0, stdout: '200' });
    const after = clock.realtimeNs();
    const ev = await waitFor('the SYN event', () =>
      stub.events.slice(seen).find((e) => formatAddress(e.saddr) === net.peerAddr && e.dport === port),
    );
    expect(formatAddress(ev.daddr)).toBe(net.hostAddr);
    expect(ev.ipVersion).toBe(4);
    // Wall-clock nanoseconds within the curl's run, as far as the clocks' resolutions allow.
    expect(withinRun(ev.tsNs, before, after, clock.coarseLagNs())).toBe(true);
  });

  it('blocks the peer over the Unix socket (its connections time out) and unblocks it', async () => {
    await stack();
    const res = await blockIp(net.peerAddr, 0, BlockReason.BLOCK_REASON_PORTSCAN);
    expect(res.alreadyBlocked).toBe(false);
    expect(res.block).toMatchObject({ ip: net.peerAddr, reason: BlockReason.BLOCK_REASON_PORTSCAN, expires: undefined, expired: false });
    expect((await blockIp(net.peerAddr, 0, BlockReason.BLOCK_REASON_PORTSCAN)).alreadyBlocked).toBe(true);
    expect((await listBlocks()).blocks.map((b) => b.ip)).toEqual([net.peerAddr]);
    expect((await curl('1')).code).toBe(CURL_TIMEOUT_EXIT);
    expect((await unblockIp(net.peerAddr)).removed).toBe(true);
    expect((await unblockIp(net.peerAddr)).removed).toBe(false);
    expect(await curl()).toMatchObject({ code: 0, stdout: '200' });
  });

  it('lets a block with a TTL lapse by itself', async () => {
    await stack();
    const res = await blockIp(net.peerAddr, 2);
    expect(res.block!.expires!.getTime() - res.block!.created!.getTime()).toBe(2000);
    expect((await curl('1')).code).toBe(CURL_TIMEOUT_EXIT);
    // The program compares the expiry with its coarse clock: it lapses up to the clock's lag after it is due.
    const lapsed = res.block!.expires!.getTime() + Number(clock.coarseLagNs() / 1_000_000n) + 1;
    await waitFor('the TTL to pass', () => (Date.now() > lapsed ? true : undefined), 5000);
    expect(await curl()).toMatchObject({ code: 0, stdout: '200' });
  });

  it("refuses to block its own addresses, and refuses bad arguments with INVALID_ARGUMENT", async () => {
    await stack();
    await expect(blockIp(net.hostAddr)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(blockIp(net.hostAddr6)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(blockIp('10.0.0.300')).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining("'10.0.0.300'") });
    await expect(blockIp('x'.repeat(10_000))).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(blockIp('192.0.2.1', -5)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(unblockIp('::g')).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect((await listBlocks()).blocks.filter((b) => !b.expired)).toEqual([]);
  });

  it('shows the counters as they are at each scrape on /metrics', async () => {
    await stack();
    const connBefore = await metric('conn_count_total');
    const sentBefore = await metric('packetwatch_probe_events_sent_total');
    for (let i = 0; i < 3; i++) expect((await curl()).stdout).toBe('200');
    await waitFor('3 more events sent', async () =>
      ((await metric('packetwatch_probe_events_sent_total')) === sentBefore + 3 ? true : undefined),
    );
    expect(await metric('conn_count_total')).toBe(connBefore + 3);
    await blockIp(net.peerAddr);
    const droppedBefore = await metric('packetwatch_probe_dropped_total{kind="syn"}');
    // One SYN and no retransmission: hping3 sends exactly one.
    const r = await net.inPeer('hping3', ['-q', '-S', '-p', String(port), '-c', '1', net.hostAddr], 10_000);
    expect(r.code).not.toBe(0); // no answer: 100% packet loss
    // The very next scrape shows it: the counters are read afresh at every scrape.
    expect(await metric('packetwatch_probe_dropped_total{kind="syn"}')).toBe(droppedBefore + 1);
    expect(await metric('conn_count_total')).toBe(connBefore + 3);
    expect(await metric('packetwatch_probe_blocklist_entries')).toBe(1);
    expect(await metric('packetwatch_probe_policy_connected')).toBe(1);
  });

  it('keeps enforcing blocks after kill -9, and a restarted probe adopts the pinned program', async () => {
    const first = await stack();
    await blockIp(net.peerAddr);
    probe!.kill('SIGKILL');
    await probe!.exited;
    // Down: the peer is still blocked (by the pinned program, with no process behind it).
    expect((await curl('1')).code).toBe(CURL_TIMEOUT_EXIT);
    expect(xdpQuery(net.hostIf).mode).toBe('driver');
    const hellos = stub.hellos.length;
    const st = await startProbe();
    expect(st.adopted).toBe(true);
    expect(st.programId).not.toBe(first.programId);
    // Exactly one program on the interface: the new one, swapped in atomically.
    expect(xdpQuery(net.hostIf)).toMatchObject({ mode: 'driver', progId: st.programId, genericProgId: 0 });
    expect((await listBlocks()).blocks.map((b) => b.ip)).toEqual([net.peerAddr]);
    await waitFor('a new hello', () => stub.hellos[hellos]);
    expect(stub.hellos[hellos]!.adopted).toBe(true);
    expect((await unblockIp(net.peerAddr)).removed).toBe(true);
    const seen = stub.events.length;
    expect((await curl()).stdout).toBe('200');
    await waitFor('events resuming', () => (stub.events.length > seen ? true : undefined));
  });

  it('holds at most its queue capacity while the policy is away, and counts the rest as lost', async () => {
    await stack({ PW_EVENT_QUEUE: '100' });
    stub.stop();
    await waitFor('the policy to be away', async () => ((await status()).policyConnected ? undefined : true));
    const before = (await status()).counters!.events;
    const r = await net.inPeer('hping3', ['-q', '-S', '-p', String(port), '-c', '400', '-i', 'u2000', net.hostAddr], 30_000);
    expect(r.code).toBe(0);
    const st = await waitFor('the SYNs to be counted', async () => {
      const s = await status();
      return (s.counters!.events - before >= 400n ? s : undefined);
    });
    const seen = Number(st.counters!.events - before);
    expect(st.queueDepth).toBe(100);
    expect(st.queueCapacity).toBe(100);
    expect(Number(st.eventsLost)).toBe(seen - 100);
    expect(st.policyConnected).toBe(false);
    // The policy returns: the 100 queued events arrive, with the loss reported.
    const batches = stub.batches.length;
    await stub.start();
    await waitFor('the queued events', () => {
      const fresh = stub.batches.slice(batches);
      return fresh.reduce((n, b) => n + b.events.length, 0) >= 100 ? fresh : undefined;
    }, 10_000);
    const fresh = stub.batches.slice(batches);
    expect(fresh.reduce((n, b) => n + b.lost, 0n)).toBe(BigInt(seen - 100));
    expect((await status()).queueDepth).toBe(0);
  });

  it('exits 0 on SIGTERM leaving the program attached, and detach removes link, maps and pins', async () => {
    const st = await stack();
    probe!.kill('SIGTERM');
    expect(await probe!.exited).toBe(0);
    probe = undefined;
    expect(xdpQuery(net.hostIf).progId).toBe(st.programId);
    execFileSync(process.execPath, [PROBE_MAIN, 'detach'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    expect(xdpQuery(net.hostIf).mode).toBe('none');
    expect(existsSync(join(pinRoot, net.hostIf))).toBe(false);
    await waitFor('the program to be freed', () => {
      try {
        execFileSync('bpftool', ['prog', 'show', 'id', String(st.programId)], { stdio: 'ignore' });
        return undefined;
      } catch {
        return true;
      }
    });
  });

  it('stops with exit code 2 naming a bad setting', async () => {
    for (const [k, v] of [
      ['PW_PROMETHEUS_PORT', '99999'],
      ['PW_WHITELIST_SELF', 'maybe'],
      ['PW_IFDEV', 'nosuchif0'],
      ['PW_XDP_MODE', 'fast'],
    ] as const) {
      const p = new ProbeProcess({ ...env, [k]: v });
      expect(await p.exited).toBe(2);
      expect(p.log.join('\n')).toContain(`invalid ${k}=`);
    }
  });
});
