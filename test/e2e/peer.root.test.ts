// A hostile peer of the policy: anyone who can open its Report stream, or
// its Watch. Each test performs an attack with a real gRPC client against the policy as
// a real process (the unprivileged user, as `make run` starts it) and asserts
// the defended outcome: the offending stream ends with the right status, the
// policy lives on and stays correct.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SYN_EVENT_SIZE, TCP_FLAGS, synEventCodec } from '@packetwatch/bpf';
import { parseAddress } from '@packetwatch/common';
import {
  AttachMode,
  BlockReason,
  DecisionOrigin,
  ProbeService,
  type ProbeServer,
  type GetPolicyStatusResponse,
  type ListAllowResponse,
  type PolicyMessage,
  type ProbeHello,
  type ProbeMessage,
  type UnblockResponse,
} from '@packetwatch/proto';
import { encode } from 'libbpf-ts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callAs } from './grpc-tools.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { Services, call, listAllDecisions } from '@packetwatch/test-support/services';
import { MAX_REPORT_STREAMS, MAX_WATCHERS } from '../../services/policy/src/service.js';

const METRICS_PORT = 19191; // inside the victim namespace
const OWN_METRICS_PORT = 19192;
const BLOCKS_PER_MINUTE = 50;
const ALLOWLISTED_NET = '203.0.113.0/24';
let probeCount = 0;

describe('a hostile Report peer', () => {
  let net: NamespacePair;
  let svc: Services;

  const status = () => svc.policyStatus();
  const decisions = (s = svc) =>
    listAllDecisions(s.policyClient, false, 3000).then((decisions) => ({ decisions }));
  const allowlist = () => call<ListAllowResponse>((cb) => svc.policyClient.listAllow({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));
  const metric = async (name: string, port = METRICS_PORT): Promise<number> => {
    const r = await net.inVictim('curl', ['-s', `http://127.0.0.1:${port}/metrics`]);
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };

  /** A Report stream as a probe would open it; `ended` resolves with the status the policy ends it with. */
  const peer = (s = svc) => {
    const stream = s.reportClient.report() as grpc.ClientDuplexStream<ProbeMessage, PolicyMessage>;
    const replies: PolicyMessage[] = [];
    stream.on('data', (m: PolicyMessage) => replies.push(m));
    const ended = new Promise<{ code: grpc.status; details: string }>((resolve) => {
      stream.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
      stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
    });
    const send = (m: ProbeMessage['message']) => stream.write({ message: m });
    return { stream, replies, ended, send, close: () => stream.cancel() };
  };
  const hello = (over: Partial<ProbeHello> = {}): ProbeMessage['message'] => ({
    $case: 'hello',
    value: {
      probeId: `fake-${process.pid}-${++probeCount}`,
      version: 'test',
      interface: 'veth0',
      ifindex: 1,
      ownAddresses: ['192.0.2.250'],
      whitelistSelf: true,
      // Nothing listens there: the policy's callbacks fail, which is not what these tests look at.
      callbackEndpoint: `unix:/nonexistent/pw-${process.pid}.sock`,
      attachMode: AttachMode.ATTACH_MODE_GENERIC,
      programId: 1,
      adopted: false,
      kernelScanPorts: 0,
      kernelScanWindow: undefined,
      shadow: false,
      ...over,
    },
  });
  /** An event batch; sentUnixNs: the sender's clock when it sent it (0: not given). */
  const events = (list: { src: string; port: number; tsNs: bigint }[], lostEvents = 0n, sentUnixNs = 0n): ProbeMessage['message'] => ({
    $case: 'events',
    value: {
      count: list.length,
      recordSize: SYN_EVENT_SIZE,
      records: Buffer.concat(
        list.map((e) =>
          encode(synEventCodec, {
            tsNs: e.tsNs,
            saddr: parseAddress(e.src),
            daddr: parseAddress('192.0.2.250'),
            sport: 40000,
            dport: e.port,
            ifindex: 1,
            tcpFlags: TCP_FLAGS.SYN,
            ipVersion: 4,
            ttl: 64,
            scan: 0,
            vlanId: 0,
            kind: 0,
            portState: 0,
          }),
        ),
      ),
      lostEvents,
      firstSequence: 0n,
      sentUnixNs,
    },
  });
  /** A scan of three ports from `src`, stamped now, sent on a peer's stream; resolves once the policy has decided on it. */
  const scanDetected = async (p: ReturnType<typeof peer>, src: string) => {
    const now = BigInt(Date.now()) * 1_000_000n;
    p.send(events([1, 2, 3].map((port) => ({ src, port, tsNs: now }))));
    await waitFor(`the detection of ${src}`, async () => ((await decisions()).decisions.find((d) => d.ip === src) ? true : undefined), 10_000);
  };
  /** The status a Watch with `source` ends with (a deadline far off: a refusal must come at once). */
  const watchRefusal = (source: string) =>
    new Promise<grpc.ServiceError>((resolve) => {
      const w = svc.policyClient.watch({ source, since: undefined }, new grpc.Metadata(), { deadline: Date.now() + 60_000 });
      w.on('data', () => {});
      w.on('error', resolve);
    });
  /**
   * A fake probe's Probe API on a Unix socket the policy's user can reach:
   * ListBlocks answers `kernel` (permanent manual blocks); BlockIp and
   * UnblockIp calls are recorded.
   */
  const fakeProbe = async (kernel: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'pw-fake-probe-'));
    chmodSync(dir, 0o755);
    const socket = join(dir, 'probe.sock');
    const blocks = kernel.map((ip) => ({ ip, reason: BlockReason.BLOCK_REASON_MANUAL, created: new Date(), expires: undefined, expired: false }));
    const blocked: string[] = [];
    const unblocked: string[] = [];
    const server = new grpc.Server();
    const fake: ProbeServer = {
      listBlocks: (_call, cb) => cb(null, { blocks, capacity: 65_536, nextPageToken: '' }),
      blockIp: (call, cb) => {
        blocked.push(call.request.ip);
        cb(null, { alreadyBlocked: false, block: undefined, widened: false });
      },
      unblockIp: (call, cb) => {
        unblocked.push(call.request.ip);
        cb(null, { removed: true, ip: call.request.ip });
      },
      getStatus: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'fake' }),
    };
    server.addService(ProbeService, fake);
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    chmodSync(socket, 0o666); // the policy runs as its own user
    return {
      endpoint: `unix:${socket}`,
      blocked,
      unblocked,
      close: () => {
        server.forceShutdown();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
  const connected = async (id: string) =>
    waitFor(`${id} to be connected`, async () => (await status()).probes.find((p) => p.probeId === id), 10_000);
  const alive = async () => expect((await status()).version).not.toBe('');

  beforeAll(async () => {
    net = createNamespacePair(11);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_POLICY_PROMETHEUS_PORT: String(METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_MAX_BLOCKS_PER_MINUTE: '0',
      },
    });
    await svc.startPolicy();
  });

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  beforeEach(async () => {
    // Each test starts with no decisions: what an earlier one detected is ended.
    await call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip: '', all: true }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
  });

  it('ends a hello with an own address that is not an address with INVALID_ARGUMENT, and lives on', async () => {
    const p = peer();
    p.send(hello({ ownAddresses: ['x'] }));
    expect(await p.ended).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: 'hello: own address "x" is not an IPv4 or IPv6 address' });
    await alive();
    expect(svc.policy!.exitCode).toBeUndefined();
  });

  it('ends a later OwnAddresses message that is not an address with INVALID_ARGUMENT, and lives on', async () => {
    const p = peer();
    const h = hello();
    p.send(h);
    await connected((h as { value: ProbeHello }).value.probeId);
    p.send({ $case: 'ownAddresses', value: { addresses: ['192.0.2.1', 'not-an-ip'] } });
    expect(await p.ended).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: 'own_addresses: own address "not-an-ip" is not an IPv4 or IPv6 address' });
    await alive();
    expect((await status()).probes.map((x) => x.probeId)).not.toContain((h as { value: ProbeHello }).value.probeId);
  });

  it('refuses a prefix as an own address (::/0 would allowlist the world)', async () => {
    for (const [i, prefix] of ['::/0', '0.0.0.0/0', '10.0.0.0/8'].entries()) {
      const p = peer();
      p.send(i === 0 ? hello({ ownAddresses: [prefix] }) : hello());
      if (i > 0) p.send({ $case: 'ownAddresses', value: { addresses: [prefix] } });
      const end = await p.ended;
      expect(end.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(end.details).toContain(`own address "${prefix}" is a prefix`);
    }
    expect((await allowlist()).entries.map((e) => e.prefix)).toEqual([]);
    // The world is not allowlisted: a scan is still detected.
    const p = peer();
    p.send(hello());
    await scanDetected(p, '198.51.100.7');
    p.close();
  });

  it('refuses a second hello with a live probe_id with ALREADY_EXISTS: the first session keeps it', async () => {
    const first = peer();
    const h = hello({ callbackEndpoint: 'unix:/nonexistent/first.sock' });
    const id = (h as { value: ProbeHello }).value.probeId;
    first.send(h);
    await connected(id);
    const second = peer();
    second.send(hello({ probeId: id, callbackEndpoint: 'unix:/nonexistent/takeover.sock' }));
    expect(await second.ended).toEqual({ code: grpc.status.ALREADY_EXISTS, details: `probe_id "${id}" is connected already` });
    const probes = (await status()).probes.filter((p) => p.probeId === id);
    expect(probes.map((p) => p.callbackEndpoint)).toEqual(['unix:/nonexistent/first.sock']);
    first.close();
    // Once the first is gone, the id is free again.
    await waitFor('the first to be gone', async () => ((await status()).probes.some((p) => p.probeId === id) ? undefined : true), 10_000);
    const again = peer();
    again.send(hello({ probeId: id }));
    await connected(id);
    again.close();
  });

  it('refuses a forged loss count of 2^64-1, and its status and counters stay readable', async () => {
    const before = (await status()).eventsLost;
    for (let i = 0; i < 2; i++) {
      const p = peer();
      p.send(hello());
      p.send(events([], 2n ** 64n - 1n));
      expect(await p.ended).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: `events: lost_events ${2n ** 64n - 1n} is beyond any probe's count` });
    }
    const st: GetPolicyStatusResponse = await status();
    expect(st.eventsLost).toBe(before);
    expect(await metric('packetwatch_policy_events_lost_total')).toBe(Number(before));
  });

  it('refuses malformed event batches with INVALID_ARGUMENT', async () => {
    const cases: [ProbeMessage['message'], string][] = [
      [{ $case: 'events', value: { count: 2, recordSize: SYN_EVENT_SIZE, records: Buffer.alloc(SYN_EVENT_SIZE), lostEvents: 0n, firstSequence: 0n, sentUnixNs: 0n } }, `events: an event batch of 2 records in ${SYN_EVENT_SIZE} bytes`],
      [{ $case: 'events', value: { count: 1, recordSize: 8, records: Buffer.alloc(8), lostEvents: 0n, firstSequence: 0n, sentUnixNs: 0n } }, `events: event record_size 8; this policy reads ${SYN_EVENT_SIZE}-byte records`],
    ];
    for (const [msg, details] of cases) {
      const p = peer();
      p.send(hello());
      p.send(msg);
      expect(await p.ended).toEqual({ code: grpc.status.INVALID_ARGUMENT, details });
    }
    await alive();
  });

  it('does not let an event stamped in the future switch detection off: it is counted, later scans are detected', async () => {
    const outOfRange = await metric('packetwatch_policy_events_out_of_range_total');
    const p = peer();
    p.send(hello());
    const now = BigInt(Date.now()) * 1_000_000n;
    // A year ahead: taken as the detector's clock, it would make every real event stale.
    p.send(events([{ src: '198.51.100.66', port: 1, tsNs: now + 365n * 86_400n * 1_000_000_000n }]));
    await waitFor('the event to be counted', async () =>
      (await metric('packetwatch_policy_events_out_of_range_total')) === outOfRange + 1 ? true : undefined,
    );
    await scanDetected(p, '198.51.100.8');
    p.close();
  });

  it("puts a lagging probe's events on the policy's clock: a skew of 2T does not switch detection off", async () => {
    const corrected = await metric('packetwatch_policy_events_clock_corrected_total');
    const onTime = peer();
    const late = peer();
    try {
      onTime.send(hello());
      const lh = hello();
      late.send(lh);
      const lateId = (lh as { value: ProbeHello }).value.probeId;
      await connected(lateId);
      // A probe with a correct clock moves the detector's clock to now...
      const now = BigInt(Date.now()) * 1_000_000n;
      onTime.send(events([{ src: '198.51.100.30', port: 1, tsNs: now }], 0n, now));
      // ...and one whose clock is 2T (120 s) behind reports a scan, on its own clock.
      const lag = 120n * 1_000_000_000n;
      late.send(events([1, 2, 3].map((port) => ({ src: '198.51.100.31', port, tsNs: now - lag })), 0n, now - lag));
      await waitFor('the detection of the lagging probe\'s scanner', async () =>
        ((await decisions()).decisions.some((d) => d.ip === '198.51.100.31') ? true : undefined), 10_000);
      expect(await metric('packetwatch_policy_events_clock_corrected_total')).toBe(corrected + 3);
      const skew = (await status()).probes.find((p) => p.probeId === lateId)!.clockSkew!;
      expect(Number(skew.seconds)).toBeGreaterThanOrEqual(120);
    } finally {
      onTime.close();
      late.close();
    }
  });

  it("takes Report only on the probes' socket, which operators cannot reach, and nothing else there", async () => {
    // Root on the operators' socket: the socket carries the role, and Report is not an operator's.
    const stream = svc.policyClient.report();
    const refused = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('data', () => {});
      stream.on('error', resolve);
    });
    expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(refused.details).toContain('/packetwatch.v1.Policy/Report is for the probe role; this socket serves the operator role');
    // An operator (the socket group, not the control group) cannot even connect to the probes' socket...
    expect(callAs({ user: 'nobody', groups: ['packetwatch'] }, 'Policy', svc.reportSocket, 'getStatus', {})).toBe('UNAVAILABLE');
    // ...and whoever can (root) gets nothing there but Report.
    await expect(
      call((cb) => svc.reportClient.addAllow({ prefix: '0.0.0.0/0', note: '' }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb)),
    ).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect((await allowlist()).entries.map((e) => e.prefix)).toEqual([]);
  });

  it('ends a stream whose first message is not a hello with FAILED_PRECONDITION', async () => {
    const p = peer();
    p.send(events([]));
    expect(await p.ended).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: 'the first message of Report must be a hello' });
    await alive();
  });

  it('refuses a hello whose fields hold terminal escapes or exceed their limits', async () => {
    const cases: [Partial<ProbeHello>, string][] = [
      [{ probeId: 'evil\u001b[2Jprobe' }, 'hello: probe_id "evil\\u001b[2Jprobe" has characters other than printable ASCII'],
      [{ interface: 'x'.repeat(16) }, 'hello: interface is longer than 15 characters'],
      [{ probeId: '' }, 'hello: probe_id is empty'],
      [{ callbackEndpoint: 'nowhere' }, 'hello: callback_endpoint "nowhere" is not unix:/path or host:port'],
    ];
    for (const [over, details] of cases) {
      const p = peer();
      p.send(hello(over));
      expect(await p.ended).toEqual({ code: grpc.status.INVALID_ARGUMENT, details });
    }
    await alive();
  });

  it('ends a Watch of an invalid source with INVALID_ARGUMENT at once, not at the client\'s deadline', async () => {
    const err = await watchRefusal('not-an-ip');
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toContain("'not-an-ip'");
    await alive();
  });

  it(`refuses Watch streams beyond ${MAX_WATCHERS} with RESOURCE_EXHAUSTED, and serves one again once one ends`, async () => {
    const open = (): grpc.ClientReadableStream<unknown> => {
      const w = svc.policyClient.watch({ source: '', since: undefined }, new grpc.Metadata());
      w.on('data', () => {});
      w.on('error', () => {});
      return w;
    };
    const watchers = () => metric('packetwatch_policy_watchers');
    const base = await watchers();
    const streams = Array.from({ length: MAX_WATCHERS - base }, open);
    try {
      await waitFor(`${MAX_WATCHERS} watchers`, async () => ((await watchers()) === MAX_WATCHERS ? true : undefined), 30_000);
      const err = await watchRefusal('');
      expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      streams.pop()!.cancel();
      await waitFor('a free place', async () => ((await watchers()) === MAX_WATCHERS - 1 ? true : undefined), 30_000);
      streams.push(open());
      await waitFor('the new watcher', async () => ((await watchers()) === MAX_WATCHERS ? true : undefined), 30_000);
    } finally {
      for (const w of streams) w.cancel();
    }
    await waitFor('the watchers to be gone', async () => ((await watchers()) === base ? true : undefined), 30_000);
  });

  it(`refuses Report streams beyond ${MAX_REPORT_STREAMS} with RESOURCE_EXHAUSTED, and serves one again once one ends`, async () => {
    const reports = () => metric('packetwatch_policy_report_streams');
    const base = await reports();
    const streams = Array.from({ length: MAX_REPORT_STREAMS - base }, () => peer());
    try {
      await waitFor(`${MAX_REPORT_STREAMS} Report streams`, async () => ((await reports()) === MAX_REPORT_STREAMS ? true : undefined), 30_000);
      const refused = peer();
      expect(await refused.ended).toEqual({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `${MAX_REPORT_STREAMS} Report streams are open already, the most this policy serves`,
      });
      streams.pop()!.close();
      await waitFor('a free place', async () => ((await reports()) === MAX_REPORT_STREAMS - 1 ? true : undefined), 30_000);
      const again = peer();
      again.send(hello());
      streams.push(again);
      await waitFor('the new stream', async () => ((await reports()) === MAX_REPORT_STREAMS ? true : undefined), 30_000);
      await scanDetected(again, '198.51.100.40');
    } finally {
      for (const s of streams) s.close();
    }
    await waitFor('the streams to be gone', async () => ((await reports()) === base ? true : undefined), 30_000);
  });

  it('adopts a forged kernel view only within the blocks-per-minute cap, never an allowlisted source, and counts both', async () => {
    // A policy of its own: the cap it fills is its alone.
    const own = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_POLICY_PROMETHEUS_PORT: String(OWN_METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
        PW_MAX_BLOCKS_PER_MINUTE: String(BLOCKS_PER_MINUTE),
        PW_ALLOWLIST: ALLOWLISTED_NET,
      },
    });
    await own.startPolicy();
    // A fake probe whose ListBlocks answers 1,001 blocks, one of them allowlisted.
    const fake = await fakeProbe([
      ...Array.from({ length: 1000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`),
      '203.0.113.9',
    ]);
    const { unblocked } = fake;
    const p = peer(own);
    try {
      p.send(hello({ callbackEndpoint: fake.endpoint }));
      const counts = await waitFor(
        'the forged view to be reconciled',
        async () => {
          const adopted = await metric('packetwatch_policy_kernel_blocks_adopted_total', OWN_METRICS_PORT);
          const notAdopted = await metric('packetwatch_policy_kernel_blocks_not_adopted_total', OWN_METRICS_PORT);
          return adopted + notAdopted === 1000 ? { adopted, notAdopted } : undefined;
        },
        30_000,
      );
      expect(counts).toEqual({ adopted: BLOCKS_PER_MINUTE, notAdopted: 1000 - BLOCKS_PER_MINUTE });
      const adopted = (await decisions(own)).decisions;
      expect(adopted.length).toBe(BLOCKS_PER_MINUTE);
      expect(adopted.every((d) => d.origin === DecisionOrigin.DECISION_ORIGIN_KERNEL)).toBe(true);
      expect(adopted.map((d) => d.ip)).not.toContain('203.0.113.9');
      // The allowlisted block is lifted on the probe that held it.
      await waitFor('the allowlisted block to be lifted', () => (unblocked.includes('203.0.113.9') ? true : undefined), 10_000);
    } finally {
      p.close();
      fake.close();
      await own.destroy();
    }
  });

  it("lets a peer's own address shield it on that peer only: a scan from it is still blocked on every other probe", async () => {
    const claimed = '198.51.100.20';
    const [liar, honest] = [await fakeProbe([]), await fakeProbe([])];
    const l = peer();
    const h = peer();
    try {
      // The liar claims the scanner's address as its own.
      const lh = hello({ ownAddresses: [claimed], callbackEndpoint: liar.endpoint });
      l.send(lh);
      const hh = hello({ callbackEndpoint: honest.endpoint });
      h.send(hh);
      await connected((lh as { value: ProbeHello }).value.probeId);
      await connected((hh as { value: ProbeHello }).value.probeId);
      await scanDetected(h, claimed);
      // Enforced on the honest probe, and owed by no other: the liar is neither asked nor counted as missing.
      const honestId = (hh as { value: ProbeHello }).value.probeId;
      await waitFor(
        'the block on the honest probe alone',
        async () => {
          const d = (await decisions()).decisions.find((x) => x.ip === claimed)!;
          return d.enforcedBy.join() === honestId && d.missingOn.length === 0 ? true : undefined;
        },
        10_000,
      );
      expect(honest.blocked).toEqual([claimed]);
      expect(liar.blocked).toEqual([]);
    } finally {
      l.close();
      h.close();
      liar.close();
      honest.close();
    }
  });
});
