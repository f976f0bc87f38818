// The policy configures its probes (issue 14, item 3): its scan settings
// reach the probe's in-kernel detector on the Report stream, the probe keeps
// them, pinned, across its own restarts while the policy is away, and a
// probe that never met a policy runs the seed's defaults. Real processes,
// real SYNs from an attacker namespace; the kernel's own scanBlocked counter
// tells its blocks from the policy's.
import { execFileSync } from 'node:child_process';
import { ConfigOrigin, type GetStatusResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, listAllBlocks, listeningPongServer } from '@packetwatch/test-support/services';

const PORTS = [9201, 9202, 9203, 9204, 9205, 9206];
/** Bounds a failure's wait on a loaded machine. */
const SLOW_MS = 30_000;
const CURL_TIMEOUT_EXIT = 28;

/** One connection from the attacker namespace, from `from`: 0 (answered) or curl's exit code (a dropped SYN only times out). */
async function connect(net: NamespacePair, port: number, from: string, timeout = '3'): Promise<number> {
  const r = await net.inAttacker('curl', ['-s', '-o', '/dev/null', '--connect-timeout', timeout, '--interface', from, `http://${net.victimAddr}:${port}/`]);
  return r.code;
}

/** What the default settings of a policy send (PW_PORTSCAN_TIME_THRESHOLD 60, PW_BLOCK_TTL 0, 120 a minute, 60 s beyond), with `ports`. */
const defaultsWith = (ports: number) => ({
  portThreshold: ports,
  window: { seconds: 60n, nanos: 0 },
  blockTtl: { seconds: 0n, nanos: 0 },
  maxBlocksPerMinute: 120,
  cappedBlockTtl: { seconds: 60n, nanos: 0 },
  ipv6Prefix: 64,
  ipv4Prefix: 32,
  shadow: false,
  countClosed: false,
  openPorts: [],
});

const scanBlocked = (st: GetStatusResponse) => st.counters!.scanBlocked;

/**
 * A scan of `ports` distinct ports from `from`, one connection each, all
 * answered (the crossing SYN passes); then whether a further connection
 * from it, to a port it already hit, still passes (0) or is dropped (28).
 */
async function scanThenRetry(net: NamespacePair, from: string, ports: number): Promise<number> {
  for (const port of PORTS.slice(0, ports)) expect(await connect(net, port, from)).toBe(0);
  return connect(net, PORTS[0]!, from, '2');
}

/**
 * A victim namespace serving PORTS, an attacker namespace with `sources` (a
 * source of its own for each scan: a block of one cannot hide another's
 * outcome), and the services in the victim's with `env`, started by
 * `start`: set up before the suite's tests and removed after them.
 */
function scene(slot: number, sources: string[], env: Record<string, string>, start: (svc: Services) => Promise<unknown>) {
  const s = {} as { net: NamespacePair; pong: ServiceProcess; svc: Services };
  beforeAll(async () => {
    s.net = createNamespacePair(slot);
    for (const a of sources) s.net.addAttackerAddress(a);
    s.pong = await listeningPongServer(s.net.victimNs, PORTS);
    s.svc = new Services({ netns: s.net.victimNs, ifdev: s.net.victimIf, env });
    await start(s.svc);
  }, 60_000);
  afterAll(async () => {
    await s.svc?.destroy();
    await s.pong?.stop('SIGKILL');
    s.net?.destroy();
  });
  return s;
}

describe('the policy configures its probes', () => {
  const scn = scene(26, ['10.233.26.4', '10.233.26.5', '10.233.26.6'], { PW_PORTSCAN_PORT_THRESHOLD: '5' }, (svc) => scn.svc.start());

  it("the policy's PW_PORTSCAN_PORT_THRESHOLD=5 reaches the probe: its status says 5, from the policy", async () => {
    const st = await waitFor(
      'the probe to run with the policy configuration',
      async () => {
        const s = await scn.svc.probeStatus();
        return s.scanConfigOrigin === ConfigOrigin.CONFIG_ORIGIN_POLICY ? s : undefined;
      },
      SLOW_MS,
    );
    expect(st.scanConfig).toEqual(defaultsWith(5));
    expect(st.kernelScanPorts).toBe(5);
    expect(st.scanConfigReceived!.getTime()).toBeGreaterThan(Date.now() - SLOW_MS);
  }, 60_000);

  it('a 4-port scan is not blocked; a 5-port scan is blocked by the kernel at its 5th SYN', async () => {
    await scn.svc.ensureRunning();
    const before = scanBlocked(await scn.svc.probeStatus());
    expect(await scanThenRetry(scn.net, '10.233.26.4', 4)).toBe(0);
    expect((await listAllBlocks(scn.svc.probeClient)).map((b) => b.ip)).not.toContain('10.233.26.4');
    expect(scanBlocked(await scn.svc.probeStatus())).toBe(before);

    expect(await scanThenRetry(scn.net, '10.233.26.5', 5)).toBe(CURL_TIMEOUT_EXIT);
    expect(scanBlocked(await scn.svc.probeStatus())).toBe(before + 1n);
    expect((await listAllBlocks(scn.svc.probeClient)).map((b) => b.ip)).toContain('10.233.26.5');
  }, 120_000);

  it('with the policy killed and the probe restarted, the probe still runs 5, pinned from the earlier run, and its kernel still blocks at 5', async () => {
    const applied = (await scn.svc.probeStatus()).scanConfigReceived!;
    await scn.svc.policy!.stop('SIGKILL');
    await scn.svc.probe!.stop('SIGTERM');
    const st = await scn.svc.startProbe();
    expect(st.policyConnected).toBe(false);
    expect(st.scanConfigOrigin).toBe(ConfigOrigin.CONFIG_ORIGIN_PINNED);
    expect(st.scanConfig?.portThreshold).toBe(5);
    expect(st.kernelScanPorts).toBe(5);
    expect(st.scanConfigReceived).toEqual(applied);

    const before = scanBlocked(st);
    expect(await scanThenRetry(scn.net, '10.233.26.6', 5)).toBe(CURL_TIMEOUT_EXIT);
    expect(scanBlocked(await scn.svc.probeStatus())).toBe(before + 1n);
  }, 120_000);

  it('a policy with another threshold loads the program again: the old one is gone, the blocks stay', async () => {
    const old = await scn.svc.probeStatus();
    const blocks = (await listAllBlocks(scn.svc.probeClient)).map((b) => b.ip).sort();
    scn.svc.configure({ PW_PORTSCAN_PORT_THRESHOLD: '4' });
    await scn.svc.startPolicy();
    const st = await waitFor(
      'the probe to run with 4',
      async () => {
        const s = await scn.svc.probeStatus();
        return s.scanConfigOrigin === ConfigOrigin.CONFIG_ORIGIN_POLICY && s.scanConfig?.portThreshold === 4 ? s : undefined;
      },
      SLOW_MS,
    );
    expect(st.kernelScanPorts).toBe(4);
    expect(st.programId).not.toBe(old.programId);
    // The previous program was closed, not leaked: no such id in the kernel.
    expect(() => execFileSync('bpftool', ['prog', 'show', 'id', String(old.programId)], { stdio: 'pipe' })).toThrow();
    expect((await listAllBlocks(scn.svc.probeClient)).map((b) => b.ip).sort()).toEqual(blocks);
  }, 120_000);
});

describe('a probe that never met a policy', () => {
  // A policy setting in its environment changes nothing: only a policy configures a probe.
  const scn = scene(27, ['10.233.27.4'], { PW_PORTSCAN_PORT_THRESHOLD: '5' }, (svc) => scn.svc.startProbe());

  it("runs the seed's defaults, says so, and its kernel blocks at the 3rd port", async () => {
    const st = await scn.svc.probeStatus();
    expect(st.policyConnected).toBe(false);
    expect(st.scanConfigOrigin).toBe(ConfigOrigin.CONFIG_ORIGIN_DEFAULTS);
    expect(st.scanConfigReceived).toBeUndefined();
    expect(st.scanConfig).toEqual(defaultsWith(3));
    expect(st.kernelScanPorts).toBe(3);
    expect(await scanThenRetry(scn.net, '10.233.27.4', 3)).toBe(CURL_TIMEOUT_EXIT);
    expect(scanBlocked(await scn.svc.probeStatus())).toBe(scanBlocked(st) + 1n);
  }, 120_000);
});
