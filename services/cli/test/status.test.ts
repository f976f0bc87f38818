import { AttachMode, ConfigOrigin, type GetPolicyStatusResponse, type GetStatusResponse } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { type ServiceReply, prefixesText, statusJson, statusText } from '../src/status.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const POLICY = 'unix:/run/packetwatch/policy.sock';
const PROBE = 'unix:/run/packetwatch/probe.sock';

/** The policy's scan settings at their defaults, as GetStatus carries them. */
const SCAN_CONFIG = {
  portThreshold: 3,
  window: { seconds: 60n, nanos: 0 },
  blockTtl: { seconds: 0n, nanos: 0 },
  maxBlocksPerMinute: 120,
  cappedBlockTtl: { seconds: 60n, nanos: 0 },
  ipv6Prefix: 64,
  ipv4Prefix: 32,
  shadow: false,
  countClosed: false,
  openPorts: [],
};

const policyStatus: GetPolicyStatusResponse = {
  version: '0.1.0',
  portThreshold: 3,
  window: { seconds: 60n, nanos: 0 },
  blockTtl: { seconds: 0n, nanos: 0 },
  whitelistSelf: true,
  allowlist: ['127.0.0.1/32', '::1/128'],
  probes: [
    {
      probeId: 'host/lo',
      interface: 'lo',
      callbackEndpoint: PROBE,
      ownAddresses: ['127.0.0.1', '::1'],
      attachMode: AttachMode.ATTACH_MODE_GENERIC,
      programId: 42,
      connected: new Date(NOW - 125_000),
      eventsReceived: 1234n,
      eventsLost: 0n,
      version: '0.1.0',
      clockSkew: { seconds: 0n, nanos: 3_000_000 },
    },
  ],
  shadow: false,
  shadowProbes: [],
  trackedSources: 2n,
  activeDecisions: 1n,
  eventsReceived: 1234n,
  eventsLost: 0n,
  detections: 1n,
  evictions: 0n,
  driftRepairs: 0n,
  blockFailures: 0n,
  started: new Date(NOW - 130_000),
  storeErrors: 0n,
  storeWritesHeld: 0n,
  storeFailure: '',
  ipv6Prefix: 64,
  ipv4Prefix: 32,
  blockTtlFactor: 1,
  blockTtlMax: undefined,
  probeConfig: SCAN_CONFIG,
  eventsOpenPort: 0n,
};

const counters = {
  frames: 5000n,
  nonIp: 1n,
  nonTcp: 2n,
  fragments: 0n,
  malformed: 0n,
  syn: 1300n,
  events: 1234n,
  ringbufFull: 0n,
  synDropped: 66n,
  otherDropped: 0n,
  allowlisted: 3n,
  blockExpired: 0n,
  scanBlocked: 0n,
  scanCapped: 0n,
  stealth: 1500n,
  tinyFragments: 7n,
  longChains: 2n,
  bogusSources: 1n,
  probeDropped: 12n,
  scanAdmitted: 40n,
  scanPromoted: 5n,
  probationEvicted: 3n,
  protectedEvicted: 0n,
  wouldDrop: 0n,
  openPortSyn: 0n,
};

const probeStatus: GetStatusResponse = {
  probeId: 'host/lo',
  version: '0.1.0',
  interface: 'lo',
  ifindex: 1,
  attachMode: AttachMode.ATTACH_MODE_GENERIC,
  programId: 42,
  adopted: false,
  pinDir: '/sys/fs/bpf/packetwatch/lo',
  pinsPrivate: false,
  ownAddresses: ['127.0.0.1', '::1'],
  counters,
  queueDepth: 0,
  queueCapacity: 262144,
  eventsSent: 1234n,
  eventsLost: 0n,
  policyConnected: true,
  policyAddress: POLICY,
  blocks: 1,
  blockCapacity: 65536,
  started: new Date(NOW - 126_000),
  uptime: { seconds: 126n, nanos: 5 },
  scanConfig: { ...SCAN_CONFIG, portThreshold: 5 },
  scanConfigOrigin: ConfigOrigin.CONFIG_ORIGIN_POLICY,
  scanConfigReceived: new Date(NOW - 60_000),
  kernelScanPorts: 5,
};

const policyOk: ServiceReply<GetPolicyStatusResponse> = { address: POLICY, status: { ok: true, value: policyStatus }, health: { ok: true, value: 'SERVING' } };
const probeOk: ServiceReply<GetStatusResponse> = { address: PROBE, status: { ok: true, value: probeStatus }, health: { ok: true, value: 'SERVING' } };
const failure = { code: 'UNAVAILABLE', message: 'connect ENOENT /run/packetwatch/probe.sock: no socket there' };
const probeDown: ServiceReply<GetStatusResponse> = { address: PROBE, status: { ok: false, error: failure }, health: { ok: false, error: failure } };

describe('status: the prefix lengths sources are keyed by', () => {
  it('says /n for a prefix, "address" for whole addresses, and unknown for a service older than the field', () => {
    expect(prefixesText({ ipv6: 64, ipv4: 32 })).toBe('IPv6 by /64, IPv4 by address');
    expect(prefixesText({ ipv6: 128, ipv4: 24 })).toBe('IPv6 by address, IPv4 by /24');
    expect(prefixesText(null)).toBe('unknown (a service older than this packetwatchctl)');
    const older = { ...policyOk, status: { ok: true as const, value: { ...policyStatus, ipv6Prefix: 0, ipv4Prefix: 0 } } };
    expect((statusJson(older, probeOk, NOW).policy as { sourcePrefixes: unknown }).sourcePrefixes).toBeNull();
  });
});

describe('status: text', () => {
  it('says what counts in closed mode (PW_PORTSCAN_COUNT=closed), the ports declared open, and the SYNs to open ports', () => {
    const openPorts = [
      { first: 8080, last: 8080 },
      { first: 30000, last: 32767 },
    ];
    const policy: ServiceReply<GetPolicyStatusResponse> = {
      ...policyOk,
      status: { ok: true, value: { ...policyStatus, probeConfig: { ...policyStatus.probeConfig!, countClosed: true, openPorts }, eventsOpenPort: 1200n } },
    };
    const probe: ServiceReply<GetStatusResponse> = {
      ...probeOk,
      status: { ok: true, value: { ...probeStatus, scanConfig: { ...probeStatus.scanConfig!, countClosed: true, openPorts }, counters: { ...counters, openPortSyn: 1200n } } },
    };
    const text = statusText(statusJson(policy, probe, NOW), NOW).split('\n');
    expect(text).toContain('  counts            SYNs to closed ports only (declared open: 8080,30000-32767); stealth probes always');
    expect(text).toContain('  events            1,234 received, 0 lost, 1,200 to open ports (not counted)');
    expect(text).toContain('  counts         SYNs to closed ports only (declared open: 8080,30000-32767); stealth probes always');
    expect(text).toContain('  SYNs seen      1,300, 1,200 to open ports (not counted)');
    expect(statusJson(policy, probe, NOW).policy).toMatchObject({ portCount: { mode: 'closed', openPorts: '8080,30000-32767' }, eventsOpenPort: 1200 });
  });

  it('shows both services: health, version, thresholds, counters, probes', () => {
    expect(statusText(statusJson(policyOk, probeOk, NOW), NOW)).toBe(
      [
        'Policy  unix:/run/packetwatch/policy.sock',
        '  health            SERVING',
        '  version           0.1.0, up 2m',
        '  thresholds        3 ports within 1m',
        '  block ttl         permanent',
        '  sources           IPv6 by /64, IPv4 by address',
        '  counts            every SYN',
        '  whitelist self    yes',
        '  allowlist         127.0.0.1/32, ::1/128',
        '  tracked sources   2',
        '  active decisions  1',
        '  events            1,234 received, 0 lost',
        '  detections        1 (block failures 0, drift repairs 0, evictions 0)',
        '  store             ok',
        '  probes            1 connected',
        '    host/lo: lo, generic XDP, program 42, 1,234 events (0 lost), connected 2m ago',
        '',
        'Probe   unix:/run/packetwatch/probe.sock',
        '  health         SERVING',
        '  version        0.1.0, up 2m',
        '  probe id       host/lo',
        '  interface      lo (ifindex 1), generic XDP, program 42',
        '  pins           /sys/fs/bpf/packetwatch/lo',
        `  thresholds     5 ports within 1m, from the policy at ${new Date(NOW - 60_000).toISOString()}`,
        '  kernel blocks  permanent, 120 a minute, beyond them 1m',
        '  sources        IPv6 by /64, IPv4 by address',
        '  counts         every SYN',
        '  own addresses  127.0.0.1, ::1',
        '  SYNs seen      1,300',
        '  stealth seen   1,500',
        '  dropped        66 SYNs, 12 probes, 0 other',
        '  evasions       7 tiny fragments, 2 long IPv6 chains, 1 bogus IPv6 sources (dropped)',
        '  detector       40 admitted, 5 promoted, evicted 3 on probation and 0 protected',
        '  events         1,234 sent, 0 lost, ring buffer full 0',
        '  queue          0 of 262,144',
        '  blocks         1 of 65,536',
        '  policy         connected (unix:/run/packetwatch/policy.sock)',
      ].join('\n'),
    );
  });

  it('names the address and the gRPC status of an unreachable service and still shows the other', () => {
    const text = statusText(statusJson(policyOk, probeDown, NOW), NOW).split('\n');
    expect(text[0]).toBe('Policy  unix:/run/packetwatch/policy.sock');
    expect(text.slice(-2)).toEqual([
      'Probe   unix:/run/packetwatch/probe.sock',
      '  health  UNREACHABLE: UNAVAILABLE (connect ENOENT /run/packetwatch/probe.sock: no socket there)',
    ]);
  });

  it("says how far a probe's clock is off the policy's, from a second on", () => {
    const skewed = (seconds: bigint, nanos: number) => {
      const probes = policyStatus.probes.map((p) => ({ ...p, clockSkew: { seconds, nanos } }));
      const reply = { ...policyOk, status: { ok: true as const, value: { ...policyStatus, probes } } };
      return statusText(statusJson(reply, probeOk, NOW), NOW).split('\n').find((l) => l.startsWith('    host/lo: '));
    };
    expect(skewed(0n, 999_000_000)).toBe('    host/lo: lo, generic XDP, program 42, 1,234 events (0 lost), connected 2m ago');
    expect(skewed(125n, 0)).toBe('    host/lo: lo, generic XDP, program 42, 1,234 events (0 lost), connected 2m ago, clock 2m behind');
    expect(skewed(-3n, -500_000_000)).toBe('    host/lo: lo, generic XDP, program 42, 1,234 events (0 lost), connected 2m ago, clock 3s ahead');
  });

  it('shows a failing decision store: what it said and how many writes the policy holds', () => {
    const failing = {
      address: POLICY,
      health: { ok: true as const, value: 'NOT_SERVING' },
      status: { ok: true as const, value: { ...policyStatus, storeErrors: 3n, storeWritesHeld: 2n, storeFailure: 'insert: database or disk is full (SQLITE_FULL)' } },
    };
    const text = statusText(statusJson(failing, probeOk, NOW), NOW);
    expect(text).toContain('  health            NOT_SERVING\n');
    expect(text).toContain('  store             FAILING: insert: database or disk is full (SQLITE_FULL); 2 writes held in memory, enforced all the same\n');
    expect(statusJson(failing, probeOk, NOW).policy).toMatchObject({ storeErrors: 3, storeWritesHeld: 2, storeFailure: 'insert: database or disk is full (SQLITE_FULL)' });
  });

  it('shows a decision store that failed and recovered: ok, with the errors since start', () => {
    const recovered = { ...policyOk, status: { ok: true as const, value: { ...policyStatus, storeErrors: 1n } } };
    expect(statusText(statusJson(recovered, probeOk, NOW), NOW)).toContain('  store             ok (1 error since start)\n');
  });

  it('says when the pins, and so the blocks, end with the probe', () => {
    const alone = { ...probeOk, status: { ok: true as const, value: { ...probeStatus, pinsPrivate: true } } };
    expect(statusText(statusJson(policyOk, alone, NOW), NOW).split('\n')).toContain(
      '  pins           private to this process: blocks end with it (/sys/fs/bpf/packetwatch/lo; PW_BPF_PIN_DIR on a bpffs the host mounted keeps them)',
    );
    expect(statusJson(policyOk, alone, NOW).probe).toMatchObject({ pinDir: '/sys/fs/bpf/packetwatch/lo', pinsPrivate: true });
  });

  it('says shadow mode loudly, for the policy, each of its probes that runs the shadow program, and the probe itself', () => {
    const policy = { ...policyOk, status: { ok: true as const, value: { ...policyStatus, shadow: true, shadowProbes: ['host/lo'] } } };
    const probe = {
      ...probeOk,
      status: { ok: true as const, value: { ...probeStatus, scanConfig: { ...probeStatus.scanConfig!, shadow: true }, counters: { ...counters, wouldDrop: 1234n } } },
    };
    const lines = statusText(statusJson(policy, probe, NOW), NOW).split('\n');
    expect(lines.slice(0, 3)).toEqual([
      'Policy  unix:/run/packetwatch/policy.sock',
      '  health            SERVING',
      '  mode              SHADOW MODE (PW_ENFORCE=False): scanners are detected and decided, NOTHING IS DROPPED',
    ]);
    expect(lines).toContain('    host/lo: lo, generic XDP, program 42, 1,234 events (0 lost), connected 2m ago, SHADOW: drops nothing');
    const probeAt = lines.indexOf('Probe   unix:/run/packetwatch/probe.sock');
    expect(lines.slice(probeAt + 1, probeAt + 3)).toEqual([
      '  health         SERVING',
      "  mode           SHADOW MODE (the policy's PW_ENFORCE=False): blocks drop NOTHING; 1,234 frames would have been dropped",
    ]);
    const doc = statusJson(policy, probe, NOW);
    expect(doc.policy).toMatchObject({ shadow: true, probes: [{ probeId: 'host/lo', shadow: true }] });
    expect(doc.probe).toMatchObject({ shadow: true, wouldDrop: 1234, scan: { shadow: true } });
  });

  it('shows a block TTL and a policy that is not connected', () => {
    const ttl = { ...policyOk, status: { ok: true as const, value: { ...policyStatus, blockTtl: { seconds: 3600n, nanos: 0 }, probes: [] } } };
    const lonely = { ...probeOk, status: { ok: true as const, value: { ...probeStatus, policyConnected: false } } };
    const text = statusText(statusJson(ttl, lonely, NOW), NOW);
    expect(text).toContain('  block ttl         1h, no escalation\n');
    expect(text).toContain('  probes            0 connected\n');
    expect(text).toContain('  policy         NOT connected (unix:/run/packetwatch/policy.sock)');
  });

  it('shows the escalation of repeat offences (PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX)', () => {
    const escalating = { ...policyStatus, blockTtl: { seconds: 600n, nanos: 0 }, blockTtlFactor: 3, blockTtlMax: { seconds: 86_400n, nanos: 0 } };
    const text = statusText(statusJson({ ...policyOk, status: { ok: true as const, value: escalating } }, probeOk, NOW), NOW);
    expect(text).toContain('  block ttl         10m, ×3 a repeat offence up to 1d\n');
    const unbounded = statusText(statusJson({ ...policyOk, status: { ok: true as const, value: { ...escalating, blockTtlMax: undefined } } }, probeOk, NOW), NOW);
    expect(unbounded).toContain('  block ttl         10m, ×3 a repeat offence up to 3650d\n');
  });
});

describe('status: JSON', () => {
  it('is one document with stable camelCase fields and plain numbers', () => {
    const doc = statusJson(policyOk, probeOk, NOW);
    expect(doc.policy).toEqual({
      address: POLICY,
      reachable: true,
      health: 'SERVING',
      version: '0.1.0',
      started: '2026-11-25T11:57:50.000Z',
      uptimeSeconds: 130,
      portThreshold: 3,
      windowSeconds: 60,
      blockTtlSeconds: 0,
      blockTtlFactor: 1,
      blockTtlMaxSeconds: null,
      whitelistSelf: true,
      allowlist: ['127.0.0.1/32', '::1/128'],
      trackedSources: 2,
      activeDecisions: 1,
      eventsReceived: 1234,
      eventsLost: 0,
      detections: 1,
      evictions: 0,
      driftRepairs: 0,
      blockFailures: 0,
      storeErrors: 0,
      storeWritesHeld: 0,
      storeFailure: null,
      sourcePrefixes: { ipv6: 64, ipv4: 32 },
      shadow: false,
      portCount: { mode: 'all', openPorts: '' },
      eventsOpenPort: 0,
      probes: [
        {
          probeId: 'host/lo',
          version: '0.1.0',
          interface: 'lo',
          attachMode: 'generic',
          programId: 42,
          callbackEndpoint: PROBE,
          ownAddresses: ['127.0.0.1', '::1'],
          connected: '2026-11-25T11:57:55.000Z',
          eventsReceived: 1234,
          eventsLost: 0,
          clockSkewSeconds: 0.003,
          shadow: false,
        },
      ],
    });
    expect(doc.probe).toMatchObject({
      address: PROBE,
      reachable: true,
      health: 'SERVING',
      probeId: 'host/lo',
      uptimeSeconds: 126,
      interface: 'lo',
      ifindex: 1,
      attachMode: 'generic',
      programId: 42,
      synSeen: 1300,
      stealthSeen: 1500,
      synDropped: 66,
      probeDropped: 12,
      eventsSent: 1234,
      eventsLost: 0,
      queueDepth: 0,
      queueCapacity: 262144,
      policyConnected: true,
      blocks: 1,
      blockCapacity: 65536,
      pinDir: '/sys/fs/bpf/packetwatch/lo',
      pinsPrivate: false,
    });
    expect(doc.probe).toHaveProperty('counters.allowlisted', 3);
    expect(doc.probe).toMatchObject({
      counters: { stealth: 1500, tinyFragments: 7, longChains: 2, bogusSources: 1, probeDropped: 12, scanAdmitted: 40, scanPromoted: 5, probationEvicted: 3, protectedEvicted: 0 },
    });
    expect(() => JSON.stringify(doc)).not.toThrow();
  });

  it('says reachable: false with the error of an unreachable service', () => {
    expect(statusJson(policyOk, probeDown, NOW).probe).toEqual({ address: PROBE, reachable: false, error: failure });
  });

  it('reports a failed health check without failing the status', () => {
    const doc = statusJson({ ...policyOk, health: { ok: false, error: { code: 'UNIMPLEMENTED', message: '' } } }, probeOk, NOW);
    expect(doc.policy).toMatchObject({ reachable: true, health: 'unknown (UNIMPLEMENTED)' });
  });
});
