// `packetwatchctl replay` against the live services on the same traffic:
// probe and policy run in a victim namespace while tcpdump captures the
// victim's interface (Ethernet) and every interface (`-i any`, Linux cooked
// SLL2); from the attacker namespace, an nmap SYN scan, an nmap FIN scan, a
// benign client on two ports and a scanner rotating the addresses of one
// IPv6 /64 (each address one port). The CLI binary, as a user runs it,
// replays each capture with the services' settings and must print exactly
// the decisions the live policy recorded: the same sources, each with the
// same ports. A capture taken on the protected host holds what the XDP
// program passed (it runs before any tap), so the frames of a source after
// its block are not in it, and the probes replay counts are exactly the
// events the probe reported.
//
// nmap runs on one CPU, so that the XDP program sees the scan's probes one
// at a time (as in evasion.root.test.ts).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ipFrame, synFrame } from '@packetwatch/bpf';
import { header, row } from '@packetwatch/common';
import { DecisionOrigin } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, type Services, listAllDecisions } from '@packetwatch/test-support/services';
import { stackPerDescribe } from './services.js';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const SLOW_MS = 60_000;
const OPEN_PORTS = [8086, 8087];
const CPU = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
/** The settings of both services and of the replay. */
const SETTINGS = { PW_PORTSCAN_PORT_THRESHOLD: '3', PW_PORTSCAN_TIME_THRESHOLD: '60', PW_IPV6_PREFIX: '64', PW_IPV4_PREFIX: '32' };

/** The rotating scanner's /64 and its addresses, and an address of another /64 (one probe: never a scan). */
const ROTATING = ['fd38:0:0:2::a1', 'fd38:0:0:2::a2', 'fd38:0:0:2::a3'];
const ROTATING_SOURCE = 'fd38:0:0:2::/64';
const OTHER_64 = 'fd38:0:0:3::b1';
const VICTIM6 = 'fd38::1';

interface ReplayJson {
  error: string | null;
  decisions: { source: string; ports: number[]; reason: string; createdMs: number; capped: boolean; expires: string | null }[];
  summary: {
    capture: { format: string; linkTypes: number[]; frames: number };
    classes: Record<string, number>;
    outbound: number;
    unreadable: Record<string, number>;
    probes: { total: number; allowlisted: number; own: number; fromBlocked: number };
  };
}

const run = promisify(execFile);

async function ctl(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** tcpdump writing `file` from an interface of the victim namespace, once it listens. */
async function capture(net: NamespacePair, iface: string, file: string): Promise<ServiceProcess> {
  const p = new ServiceProcess(['ip', 'netns', 'exec', net.victimNs, 'tcpdump', '-i', iface, '-n', '-U', '-s', '0', '-Z', 'root', '-w', file], {});
  await waitFor(`tcpdump on ${iface}`, () => (p.stderr.some((l) => l.includes('listening on')) ? true : undefined), SLOW_MS);
  return p;
}

describe('replay: a capture of live traffic gives the decisions the live services made', () => {
  const sourceOf = (pair: NamespacePair, n: number) => pair.attackerAddr.replace(/\.2$/, `.${10 + n}`);
  const stack = stackPerDescribe({
    slot: 38,
    ports: OPEN_PORTS,
    env: { ...SETTINGS, PW_LOG_FORMAT: 'table' },
    attackerAddresses: (pair) => [0, 1, 2].map((n) => sourceOf(pair, n)),
    timeoutMs: SLOW_MS,
  });
  let net: NamespacePair;
  let svc: Services;
  const dir = mkdtempSync(join(tmpdir(), 'pw-replay-'));
  const ethernetFile = join(dir, 'veth.pcap');
  const cookedFile = join(dir, 'any.pcap');
  let eventsDuring = 0;

  beforeAll(async () => {
    ({ net, svc } = stack());
    const eth = await capture(net, net.victimIf, ethernetFile);
    const any = await capture(net, 'any', cookedFile);
    const before = (await svc.probeStatus()).counters!.events;
    const nmap = (src: string, args: string[]) =>
      net.inAttacker('taskset', ['-c', CPU, 'nmap', '-n', '-Pn', '-e', net.attackerIf, '-S', src, '--max-retries', '0', ...args, net.victimAddr], 120_000);
    // A SYN scan and a FIN scan, each from an address of its own.
    expect((await nmap(sourceOf(net, 0), ['-sS', '-p', '1-40'])).code).toBe(0);
    expect((await nmap(sourceOf(net, 1), ['-sF', '-p', '1-40'])).code).toBe(0);
    // A benign client: a few requests to two ports, as a browser makes.
    for (const port of [8086, 8086, 8087, 8086, 8087]) {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', '--interface', sourceOf(net, 2), `http://${net.victimAddr}:${port}/`]);
      expect(r).toMatchObject({ code: 0, stdout: 'pong' });
    }
    // Three addresses of one /64, one port each, and a lone address of another /64.
    net.sendFromAttacker(ROTATING.map((a, i) => synFrame(a, VICTIM6, 40000 + i, 8081 + i)));
    net.sendFromAttacker([synFrame(OTHER_64, VICTIM6, 40100, 8081)]);
    // Every event the probe reported has reached the policy.
    await waitFor(
      'the policy has every event',
      async () => {
        const [probe, policy] = await Promise.all([svc.probeStatus(), svc.policyStatus()]);
        return probe.queueDepth === 0 && policy.eventsReceived === probe.eventsSent && probe.counters!.events > before ? probe : undefined;
      },
      SLOW_MS,
    );
    eventsDuring = Number((await svc.probeStatus()).counters!.events - before);
    // The end of the traffic: a datagram after every probe, on the same wire; once each capture holds it, it holds them all.
    const marker = Buffer.from(`packetwatch replay test: end of traffic ${process.pid}`);
    net.sendFromAttacker([ipFrame({ src: net.attackerAddr, dst: net.victimAddr, udp: { sport: 9, dport: 9, payload: marker } })]);
    for (const file of [ethernetFile, cookedFile]) await waitFor(`the end of the traffic in ${file}`, () => (readFileSync(file).includes(marker) ? true : undefined), SLOW_MS);
    await Promise.all([eth.stop('SIGINT'), any.stop('SIGINT')]);
  }, 300_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The live policy's decisions: source and ports (as its reason lists them), sorted. */
  const live = async () => {
    const decisions = await listAllDecisions(svc.policyClient, true);
    for (const d of decisions) expect(d).toMatchObject({ origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR });
    return decisions
      .map((d) => ({ source: d.ip, ports: /^port scan: 3 ports \(([\d, ]+)\) within /.exec(d.reason)![1]!.split(', ').map(Number).sort((a, b) => a - b) }))
      .sort((a, b) => a.source.localeCompare(b.source));
  };

  it('the live services decided on the two nmap scanners and the rotating /64, not on the benign client nor the lone address', async () => {
    expect((await live()).map((d) => d.source)).toEqual([sourceOf(net, 0), sourceOf(net, 1), ROTATING_SOURCE].sort((a, b) => a.localeCompare(b)));
  });

  it.each([
    ['tcpdump -i <veth> (Ethernet)', () => ethernetFile, 1],
    ['tcpdump -i any (Linux cooked SLL2)', () => cookedFile, 276],
  ])('%s: replay --json gives exactly the live decisions, and counts the probes the probe reported', async (_name, file, linkType) => {
    const r = await ctl(['replay', '--json', file()], SETTINGS);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as ReplayJson;
    expect(doc.error).toBeNull();
    const replayed = doc.decisions.map((d) => ({ source: d.source, ports: [...d.ports].sort((a, b) => a - b) })).sort((a, b) => a.source.localeCompare(b.source));
    expect(replayed).toEqual(await live());
    for (const d of doc.decisions) expect(d).toMatchObject({ capped: false, expires: null, reason: expect.stringMatching(/^port scan: 3 ports \(/) });
    expect(doc.summary.capture).toMatchObject({ format: 'pcap', linkTypes: [linkType] });
    // What the XDP program dropped never reached the tap: each probe in the capture is an event the probe reported.
    expect(doc.summary.classes.syn! + doc.summary.classes.stealth!).toBe(eventsDuring);
    expect(doc.summary.probes).toEqual({ total: eventsDuring, allowlisted: 0, own: 0, fromBlocked: 0, openPort: 0 });
    expect(doc.summary.classes.malformed).toBe(0);
    expect(doc.summary.unreadable).toEqual({});
  });

  it('the text output is the seed table: the header, then an "Added to blacklist" row per decision in capture order; the summary on stderr', async () => {
    const json = JSON.parse((await ctl(['replay', '--json', ethernetFile], SETTINGS)).stdout) as ReplayJson;
    const r = await ctl(['replay', ethernetFile], SETTINGS);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${[header(), ...json.decisions.map((d) => row({ timeMs: d.createdMs, kind: 'blacklist', source: d.source, port: 0 }))].join('\n')}\n`);
    expect(r.stderr).toContain(`probes ${eventsDuring} (SYN `);
    expect(r.stderr).toContain('; 3 decisions');
  });

  it('the same capture under other settings gives other decisions: PW_IPV6_PREFIX=128 sees three one-port sources, --port-threshold 41 no scanner at all', async () => {
    const by128 = JSON.parse((await ctl(['replay', '--json', ethernetFile], { ...SETTINGS, PW_IPV6_PREFIX: '128' })).stdout) as ReplayJson;
    expect(by128.decisions.map((d) => d.source).sort()).toEqual([sourceOf(net, 0), sourceOf(net, 1)].sort());
    const high = JSON.parse((await ctl(['replay', '--json', '--port-threshold', '41', ethernetFile], SETTINGS)).stdout) as ReplayJson;
    expect(high.decisions).toEqual([]);
  });
});

// Closed mode (PW_PORTSCAN_COUNT=closed): the live services count a SYN only
// when nothing in the victim namespace accepts its port (the XDP program
// asks the kernel); replay learns the open ports from the capture, where
// the host answered SYNs with SYN-ACKs, so the capture is of both directions
// (tcpdump's default). A benign client uses the three services (and a port
// declared open, which refuses it), an nmap SYN scan covers the services and
// closed ports: replay in closed mode prints exactly the live decisions; in
// all mode the client is a scanner too.
describe('replay in closed mode: the ports the capture shows answered are open, as the kernel found them', () => {
  const SERVICES = [8086, 8087, 8088];
  const PUBLISHED = 9000;
  const CLOSED_SETTINGS = { ...SETTINGS, PW_PORTSCAN_COUNT: 'closed', PW_OPEN_PORTS: String(PUBLISHED) };
  const clientOf = (pair: NamespacePair) => pair.attackerAddr.replace(/\.2$/, '.20');
  const scannerOf = (pair: NamespacePair) => pair.attackerAddr.replace(/\.2$/, '.21');
  const stack = stackPerDescribe({
    slot: 39,
    ports: SERVICES,
    env: { ...CLOSED_SETTINGS, PW_LOG_FORMAT: 'table' },
    attackerAddresses: (pair) => [clientOf(pair), scannerOf(pair)],
    timeoutMs: SLOW_MS,
  });
  let net: NamespacePair;
  let svc: Services;
  const dir = mkdtempSync(join(tmpdir(), 'pw-replay-closed-'));
  const file = join(dir, 'veth.pcap');
  /** SYNs the probe reported as to an open port during the traffic. */
  let openDuring = 0;

  beforeAll(async () => {
    ({ net, svc } = stack());
    await waitFor('the probe running closed mode', async () => ((await svc.probeStatus()).scanConfig?.countClosed ? true : undefined), SLOW_MS);
    const tcpdump = await capture(net, net.victimIf, file);
    const { events: before, openPortSyn: openBefore } = (await svc.probeStatus()).counters!;
    // The client: each service twice, and the declared port (nothing listens: refused).
    const bodies: string[] = [];
    for (const port of [...SERVICES, ...SERVICES, PUBLISHED]) {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', '--interface', clientOf(net), `http://${net.victimAddr}:${port}/`]);
      bodies.push(r.code === 0 ? r.stdout : `exit ${r.code}`);
    }
    expect(bodies).toEqual([...Array<string>(6).fill('pong'), 'exit 7']);
    // The scanner: the services and closed ports, in nmap's order.
    const nmap = ['-n', '-Pn', '-e', net.attackerIf, '-S', scannerOf(net), '--max-retries', '0', '-sS', '-p', `1-40,${SERVICES.join(',')}`, net.victimAddr];
    expect((await net.inAttacker('taskset', ['-c', CPU, 'nmap', ...nmap], 120_000)).code).toBe(0);
    await waitFor(
      'the policy has every event, and its decision',
      async () => {
        const [probe, policy] = await Promise.all([svc.probeStatus(), svc.policyStatus()]);
        if (!(probe.queueDepth === 0 && policy.eventsReceived === probe.eventsSent && probe.counters!.events > before)) return undefined;
        return (await listAllDecisions(svc.policyClient, true)).length > 0 ? true : undefined;
      },
      SLOW_MS,
    );
    openDuring = Number((await svc.probeStatus()).counters!.openPortSyn - openBefore);
    const marker = Buffer.from(`packetwatch replay closed-mode test: end of traffic ${process.pid}`);
    net.sendFromAttacker([ipFrame({ src: net.attackerAddr, dst: net.victimAddr, udp: { sport: 9, dport: 9, payload: marker } })]);
    await waitFor('the end of the traffic in the capture', () => (readFileSync(file).includes(marker) ? true : undefined), SLOW_MS);
    await tcpdump.stop('SIGINT');
  }, 300_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const replayed = (doc: ReplayJson) => doc.decisions.map((d) => ({ source: d.source, ports: [...d.ports].sort((a, b) => a - b) })).sort((a, b) => a.source.localeCompare(b.source));
  const replayJson = async (env: Record<string, string>) => {
    const r = await ctl(['replay', '--json', file], env);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    return JSON.parse(r.stdout) as ReplayJson & { summary: { answered: { address: string; port: number }[] | null; probes: { openPort: number } } };
  };

  it('the live services decided on the scanner alone, at closed ports', async () => {
    const live = await listAllDecisions(svc.policyClient, true);
    expect(live.map((d) => d.ip)).toEqual([scannerOf(net)]);
    const ports = /^port scan: 3 ports \(([\d, ]+)\) within /.exec(live[0]!.reason)![1]!.split(', ').map(Number);
    for (const p of ports) expect(SERVICES).not.toContain(p);
  });

  it('replay with PW_PORTSCAN_COUNT=closed prints exactly the live decisions, having learned the services from the SYN-ACKs', async () => {
    const live = (await listAllDecisions(svc.policyClient, true)).map((d) => ({
      source: d.ip,
      ports: /^port scan: 3 ports \(([\d, ]+)\) within /.exec(d.reason)![1]!.split(', ').map(Number).sort((a, b) => a - b),
    }));
    const doc = await replayJson(CLOSED_SETTINGS);
    expect(doc.error).toBeNull();
    expect(replayed(doc)).toEqual(live);
    expect(doc.summary.answered).toEqual(SERVICES.map((port) => ({ address: net.victimAddr, port })));
    // The client's 7 SYNs (the services and the declared port) and the scanner's to the services before its block: the probe's open-port SYNs.
    expect(openDuring).toBeGreaterThanOrEqual(7);
    expect(doc.summary.probes.openPort).toBe(openDuring);
    const text = await ctl(['replay', file], CLOSED_SETTINGS);
    expect(text.stdout).toBe(`${[header(), ...doc.decisions.map((d) => row({ timeMs: d.createdMs, kind: 'blacklist', source: d.source, port: 0 }))].join('\n')}\n`);
    expect(text.stderr).toContain(`closed mode: 3 ports answered with a SYN-ACK in the capture (${SERVICES.map((p) => `${net.victimAddr}:${p}`).join(', ')})`);
  });

  it('the setting matters: in all mode replay blocks the benign client at its third service', async () => {
    const doc = await replayJson(SETTINGS);
    const client = replayed(doc).find((d) => d.source === clientOf(net));
    expect(client).toEqual({ source: clientOf(net), ports: SERVICES });
    expect(doc.summary.answered).toBeNull();
  });

  it('a capture read from a pipe is refused in closed mode: exit 2 naming PW_PORTSCAN_COUNT', async () => {
    const r = await run('sh', ['-c', `cat '${file}' | '${process.execPath}' '${CLI}' replay /dev/stdin`], { env: { ...process.env, ...CLOSED_SETTINGS } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^packetwatchctl: invalid PW_PORTSCAN_COUNT="closed": expected all for \/dev\/stdin, which is not a regular file/);
  });
});
