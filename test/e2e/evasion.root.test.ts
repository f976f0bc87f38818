// The scanner's stock evasions, performed as an attacker would, from an
// attacker namespace against probe + policy with the seed's defaults
// (3 ports in 60 s): each row of the attack table asserts the defended
// outcome (the rules: bpf/packetwatch.bpf.c, docs/detection.md).
//
//   nmap -f -sS (8-byte fragments)         detected: a tiny first fragment is dropped and its port counts
//   a blocked source's nmap -f -p <open>   the port stays filtered: fragments of a blocked source never pass
//   nmap -sF, -sN, -sX                      detected: stealth probes count, and the table marks them
//   IPv6 chain of 40 options headers        dropped and counted, whoever sends it
//   IPv4-mapped / -compatible IPv6 sources  dropped and counted: no event, no block of the IPv4 host
//
// The other two rows have suites of their own: addresses rotating within
// one IPv6 /64 (prefix.root.test.ts) and a forged-source flood around a
// slow scanner (churn.root.test.ts).
//
// nmap runs on one CPU, so that the XDP program sees the scan's probes one
// at a time (a veth hands a frame to XDP in the sender's softirq) and the
// counts below do not depend on two probes racing on two CPUs.
import { readFileSync } from 'node:fs';
import { TCP_FLAGS, ipFrame, synFrame } from '@packetwatch/bpf';
import { DecisionOrigin, type GetStatusResponse } from '@packetwatch/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, waitFor } from '@packetwatch/test-support';
import { type Services, listAllBlocks, listAllDecisions } from '@packetwatch/test-support/services';
import { stackPerDescribe } from './services.js';

/** The victim's one open port. */
const OPEN_PORT = 8086;
/** Ports each scan covers: many more than N = 3. */
const SCANNED = 60;
/** Upper bound for what is slow on a loaded machine (a service starting, a decision recorded): generous on purpose. */
const SLOW_MS = 60_000;
const CPU = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;

describe('evasion: stock scanner tricks against the seed defaults', () => {
  /** The attacker's n-th extra address (one per row, so that no row inherits another's block). */
  const sourceOf = (pair: NamespacePair, n: number) => pair.attackerAddr.replace(/\.2$/, `.${10 + n}`);
  const stack = stackPerDescribe({
    slot: 30,
    ports: [OPEN_PORT],
    env: { PW_LOG_FORMAT: 'table' },
    attackerAddresses: (pair) => Array.from({ length: 6 }, (_, n) => sourceOf(pair, n)),
    timeoutMs: SLOW_MS,
  });
  let net: NamespacePair;
  let svc: Services;
  beforeAll(() => {
    ({ net, svc } = stack());
  });
  const source = (n: number) => sourceOf(net, n);

  const counters = async () => (await svc.probeStatus()).counters!;
  const delta = (before: GetStatusResponse['counters'], after: GetStatusResponse['counters'], name: 'events' | 'tinyFragments' | 'stealth' | 'probeDropped' | 'longChains' | 'bogusSources' | 'scanBlocked') =>
    Number(after![name] - before![name]);
  const nmap = (src: string, args: string[]) =>
    net.inAttacker('taskset', ['-c', CPU, 'nmap', '-n', '-Pn', '-e', net.attackerIf, '-S', src, '--max-retries', '0', ...args, net.victimAddr], 120_000);
  /** The policy's decision on src once its probe enforces it. */
  const enforced = (src: string) =>
    waitFor(
      `the decision on ${src}, enforced`,
      async () => {
        const d = (await listAllDecisions(svc.policyClient, false)).find((x) => x.ip === src);
        return d && d.enforcedBy.length === 1 ? d : undefined;
      },
      SLOW_MS,
    );
  /** A scanner detected in both engines: the policy's detection at N = 3, the kernel's block. */
  const expectDetected = async (src: string) => {
    const d = await enforced(src);
    expect(d).toMatchObject({ ip: src, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR });
    expect(d.reason).toMatch(/^port scan: 3 ports \(/);
    expect((await listAllBlocks(svc.probeClient)).map((b) => b.ip)).toContain(src);
  };

  it('nmap -f -sS (8-byte fragments) of 60 ports: every first fragment dropped, the scanner detected at its 3rd probe', async () => {
    const src = source(0);
    const before = await counters();
    const r = await nmap(src, ['-f', '-sS', '-p', `1-${SCANNED}`]);
    expect(r.code).toBe(0);
    await expectDetected(src);
    const after = await counters();
    // A probe is 24 bytes of TCP in three fragments: the first, too short for
    // the flags, and the second, at offset 1 (where it could rewrite them),
    // are dropped; the third has nothing to reassemble with.
    const tiny = delta(before, after, 'tinyFragments');
    expect(tiny % 2).toBe(0);
    const probes = tiny / 2;
    expect(probes).toBeGreaterThanOrEqual(SCANNED);
    // Exactly three reached the detectors as probes; every later one was the blocked source's.
    expect(delta(before, after, 'events')).toBe(3);
    expect(delta(before, after, 'scanBlocked')).toBe(1);
    expect(delta(before, after, 'probeDropped')).toBe(probes - 3);
    // nmap heard nothing back: no port open, none closed.
    expect(r.stdout).not.toMatch(/\/tcp\s+(open|closed)/);
  });

  it('a blocked source running nmap -f -sS against the open port sees it filtered (unblocked, plain -sS saw it open)', async () => {
    const src = source(1);
    const open = await nmap(src, ['-sS', '-p', String(OPEN_PORT)]);
    expect(open.stdout).toMatch(new RegExp(`${OPEN_PORT}/tcp\\s+open`));
    // Blocked the way a scanner gets blocked: by scanning.
    await nmap(src, ['-sS', '-p', '1-10']);
    await expectDetected(src);
    const before = await counters();
    for (const args of [['-f', '-sS'], ['-sS'], ['--mtu', '16', '-sS']]) {
      const r = await nmap(src, [...args, '-p', String(OPEN_PORT)]);
      expect({ args, out: r.stdout }).toMatchObject({ out: expect.stringMatching(new RegExp(`${OPEN_PORT}/tcp\\s+filtered`)) });
    }
    const after = await counters();
    expect(delta(before, after, 'events')).toBe(0);
  });

  describe.each([
    ['-sF', 'FIN', TCP_FLAGS.FIN],
    ['-sN', 'NULL', 0],
    ['-sX', 'XMAS', TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG],
  ] as const)('nmap %s of 60 ports', (flag, label, _flags) => {
    const index = { '-sF': 2, '-sN': 3, '-sX': 4 }[flag];

    it(`counts its ${label} probes like SYNs: detected at the 3rd, later ones dropped, the table marks them "${label} probe"`, async () => {
      const src = source(index);
      const before = await counters();
      const r = await nmap(src, [flag, '-p', `1-${SCANNED}`]);
      expect(r.code).toBe(0);
      await expectDetected(src);
      const after = await counters();
      expect(delta(before, after, 'stealth')).toBeGreaterThanOrEqual(SCANNED);
      expect(delta(before, after, 'events')).toBe(3);
      expect(delta(before, after, 'scanBlocked')).toBe(1);
      expect(delta(before, after, 'probeDropped')).toBe(delta(before, after, 'stealth') - 3);
      // The live table: the three probes that reached the policy, each marked with its kind.
      const rows = await waitFor(
        `three ${label} rows`,
        () => {
          const mine = svc.table.filter((l) => l.split(/\s+/)[1] === src && /\d+\s+\S+ probe$/.test(l));
          return mine.length === 3 ? mine : undefined;
        },
        SLOW_MS,
      );
      for (const row of rows) expect(row).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\s+${src.replace(/\./g, '\\.')}\\s+\\d+\\s+${label} probe$`));
    });
  });

  it('an IPv6 SYN behind 40 destination-options headers is dropped and counted, from any source', async () => {
    const before = await counters();
    const chain = Array.from({ length: 40 }, () => ({ type: 60 as const }));
    const frames = Array.from({ length: 5 }, (_, i) =>
      ipFrame({ src: '2001:db8:bad::1', dst: '2001:db8::1', ipv6ExtHeaders: chain, tcp: { sport: 40000 + i, dport: 100 + i, flags: TCP_FLAGS.SYN } }),
    );
    net.sendFromAttacker(frames);
    const after = await waitFor('the chains counted', async () => {
      const c = await counters();
      return delta(before, c, 'longChains') === frames.length ? c : undefined;
    });
    expect(delta(before, after, 'events')).toBe(0);
  });

  it('IPv6 SYNs from IPv4-mapped and IPv4-compatible sources are dropped and counted: no event, and the IPv4 host is never blocked', async () => {
    const framed = '10.204.0.105';
    const before = await counters();
    const frames = ['::ffff:10.204.0.105', '::10.204.0.105'].flatMap((src) => Array.from({ length: 5 }, (_, i) => synFrame(src, '2001:db8::1', 40000 + i, 200 + i)));
    net.sendFromAttacker(frames);
    const after = await waitFor('the bogus sources counted', async () => {
      const c = await counters();
      return delta(before, c, 'bogusSources') === frames.length ? c : undefined;
    });
    expect(delta(before, after, 'events')).toBe(0);
    expect(delta(before, after, 'scanBlocked')).toBe(0);
    const blocked = (await listAllBlocks(svc.probeClient)).map((b) => b.ip);
    const decided = (await listAllDecisions(svc.policyClient, true)).map((d) => d.ip);
    for (const ip of [framed, '::ffff:10.204.0.105', '::10.204.0.105']) {
      expect(blocked).not.toContain(ip);
      expect(decided).not.toContain(ip);
    }
  });
});
