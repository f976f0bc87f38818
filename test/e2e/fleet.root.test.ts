// e2e-fleet: five hosts, each a victim namespace with its own probe on its
// own veth, all reporting to one policy (in the first), with the default
// settings (N = 3 per host, F = 10 over the fleet, T = 60 s). One attacker
// address reaches all five victims (the same address on each attacker
// namespace, as one host on the internet reaches a fleet) and connects to 2
// ports on each: under the per-host threshold everywhere, so neither the
// kernels nor the per-host rule see a scan, but the policy's fleet rule does,
// and the attacker is blocked on every probe. A client that connects to 2
// ports of one host is left alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, listAllDecisions, listeningPongServer } from '@packetwatch/test-support/services';

const CURL_TIMEOUT_EXIT = 28;
/** Slots 18-22: one namespace pair per host. */
const SLOTS = [18, 19, 20, 21, 22];
const PORTS = [8086, 8087];
/** The attacker's one address, on the attacker end of every pair. */
const ATTACKER = '10.233.18.66';
/** Upper bounds for what is slow on a loaded machine (a detection, a block on five probes): generous on purpose. */
const SLOW_MS = 30_000;

describe('e2e-fleet: a scan spread over five hosts is blocked on all of them', () => {
  let nets: NamespacePair[] = [];
  const pongs: ServiceProcess[] = [];
  /** hosts[0] runs the policy and a probe; the others a probe each, reporting to that policy. */
  const hosts: Services[] = [];
  /** The probes' ids, host by host. */
  let probeIds: string[] = [];

  const url = (net: NamespacePair, port: number) => `http://${net.victimAddr}:${port}/`;
  /**
   * One curl process from a pair's attacker namespace to the given ports of
   * its victim, from `from` (the attacker's shared address) or the pair's own
   * attacker address: the bodies, or curl's exit code. A connection expected
   * to be dropped passes a short connect timeout (it never completes, so the
   * timeout only bounds the wait).
   */
  const curl = async (net: NamespacePair, ports: number[], opts: { from?: string; timeout?: string } = {}) => {
    const bind = opts.from ? ['--interface', opts.from] : [];
    const r = await net.inAttacker('curl', ['-s', '--connect-timeout', opts.timeout ?? '10', ...bind, ...ports.map((p) => url(net, p))]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const decisions = () => listAllDecisions(hosts[0]!.policyClient, false);

  beforeAll(async () => {
    nets = SLOTS.map((slot) => createNamespacePair(slot));
    for (const net of nets) net.addAttackerAddress(ATTACKER);
    pongs.push(...(await Promise.all(nets.map((net) => listeningPongServer(net.victimNs, PORTS)))));
    const home = new Services({ netns: nets[0]!.victimNs, ifdev: nets[0]!.victimIf });
    hosts.push(home, ...nets.slice(1).map((net) => new Services({ netns: net.victimNs, ifdev: net.victimIf, reportTo: home })));
    await home.start();
    // Each returns once the policy has its hello.
    await Promise.all(hosts.slice(1).map((h) => h.startProbe()));
    probeIds = (await Promise.all(hosts.map((h) => h.probeStatus()))).map((s) => s.probeId);
    expect((await home.policyStatus()).probes.map((p) => p.probeId).sort()).toEqual([...probeIds].sort());
  });

  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.destroy()));
    await Promise.all(pongs.map((p) => p.stop('SIGKILL')));
    for (const net of nets) net.destroy();
  });

  it('blocks an attacker that connects to 2 ports on each of the 5 victims on every probe: its next connection to any victim times out', async () => {
    // Ten connections, all answered: the tenth (probe, port) pair is the crossing SYN, which has passed.
    for (const net of nets) expect(await curl(net, PORTS, { from: ATTACKER })).toBe('pong'.repeat(PORTS.length));
    const [d] = await waitFor(
      'the decision, enforced by every probe',
      async () => {
        const ds = await decisions();
        return ds.length === 1 && ds[0]!.enforcedBy.length === hosts.length ? ds : undefined;
      },
      SLOW_MS,
    );
    expect(d).toMatchObject({ ip: ATTACKER, enforcedBy: [...probeIds].sort(), missingOn: [] });
    const pairs = probeIds.map((id) => `${id}: ${PORTS.join(', ')}`).join('; ');
    expect(d!.reason).toMatch(/^port scan across the fleet: 10 \(probe, port\) pairs on 5 probes within \d+\.\d{3}s \((.+)\)$/);
    expect(d!.reason.endsWith(`(${pairs})`)).toBe(true);
    const blocked = await Promise.all(nets.map((net) => curl(net, [PORTS[0]!], { from: ATTACKER, timeout: '1' })));
    expect(blocked).toEqual(nets.map(() => CURL_TIMEOUT_EXIT));
  });

  it('leaves a client that connects to 2 ports on one victim alone', async () => {
    const net = nets[1]!;
    expect(await curl(net, PORTS)).toBe('pong'.repeat(PORTS.length));
    expect(await curl(net, [PORTS[0]!])).toBe('pong');
    expect((await decisions()).filter((d) => d.ip === net.attackerAddr)).toEqual([]);
    expect(await curl(net, PORTS)).toBe('pong'.repeat(PORTS.length));
  });
});
