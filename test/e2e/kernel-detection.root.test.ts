// In-kernel detection as a user meets it, at N = 3, 16 and 64 (the rule:
// docs/detection.md): probe + policy in a victim namespace with
// PW_PORTSCAN_PORT_THRESHOLD=N, and real scanners in an attacker namespace,
// nmap's SYN scan and a loop of curl connections. The XDP program blocks the
// source at the SYN that reaches the Nth distinct port: exactly N SYNs reach
// the victim, every later one is dropped, and the policy, running the same
// rule on the same events, records the detection of the same N ports.
//
// Nothing listens on the victim's scanned ports: a SYN that passes is
// answered with an RST (curl: connection refused), one that is dropped gets
// nothing (curl: timeout).
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { DecisionOrigin, type UnblockResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { Services, call, listAllBlocks, listAllDecisions } from '@packetwatch/test-support/services';

const CURL_REFUSED_EXIT = 7;
const CURL_TIMEOUT_EXIT = 28;
const WINDOW_SECONDS = 60;
/** Upper bound for what is slow on a loaded machine (a service starting, a decision recorded): generous on purpose. */
const SLOW_MS = 30_000;

// Slots 16 and 17 are this suite's; the third N reuses the first pair's slot once it is gone.
describe.each([
  [3, 16],
  [16, 17],
  [64, 16],
])('in-kernel detection at N = %i: a scanner is blocked at the crossing SYN', (n, slot) => {
  let net: NamespacePair;
  let svc: Services;

  beforeAll(async () => {
    net = createNamespacePair(slot);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { PW_PORTSCAN_PORT_THRESHOLD: String(n), PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS), PW_KERNEL_DETECTION: 'True' },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  const counters = async () => (await svc.probeStatus()).counters!;
  /** The one active decision, once its probe enforces it. */
  const enforcedDecision = () =>
    waitFor(
      'the decision, enforced',
      async () => {
        const ds = await listAllDecisions(svc.policyClient, false);
        return ds.length === 1 && ds[0]!.enforcedBy.length === 1 && ds[0]!.missingOn.length === 0 ? ds[0] : undefined;
      },
      SLOW_MS,
    );
  /** Lifts the block (the policy's Unblock), so that the next scan starts from nothing. */
  const unblock = async () => {
    const res = await call<UnblockResponse>((cb) => svc.policyClient.unblock({ ip: net.attackerAddr, all: false }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
    expect(res.ended.map((d) => d.ip)).toEqual([net.attackerAddr]);
    await waitFor('the kernel block lifted', async () => ((await svc.probeStatus()).blocks === 0 ? true : undefined), SLOW_MS);
  };
  /** The kernel's block and the policy's decision on the attacker, as they stand once the scan is over. */
  const expectDetectedAtN = async () => {
    const d = await enforcedDecision();
    expect(d).toMatchObject({ ip: net.attackerAddr, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR });
    // The policy's detector crossed on the same SYN (otherwise the reason
    // would say the kernel alone saw it): both engines, one rule.
    expect(d!.reason).toMatch(new RegExp(`^port scan: ${n} ports \\(`));
    expect((await listAllBlocks(svc.probeClient, 5000)).map((b) => b.ip)).toEqual([net.attackerAddr]);
  };

  it(`lets exactly ${n} SYNs of an nmap SYN scan through and drops every later one`, async () => {
    const before = await counters();
    // nmap on one CPU: the program then handles the scan's SYNs one at a
    // time (a veth hands a frame to XDP in the sender's softirq), so the
    // count below does not depend on two SYNs racing on two CPUs.
    const cpu = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
    const ports = n + 100;
    const nmap = ['-n', '-Pn', '-sS', '-p', `1-${ports}`, '--max-retries', '0', '--min-rate', '1000', '--max-rate', '1000', net.victimAddr];
    const r = await net.inAttacker('taskset', ['-c', cpu, 'nmap', ...nmap], 120_000);
    expect(r.code).toBe(0);
    await expectDetectedAtN();
    const after = await counters();
    const seen = Number(after.syn - before.syn);
    // One SYN per port (no retries), plus any probes nmap adds once nothing answers.
    expect(seen).toBeGreaterThanOrEqual(ports);
    expect(Number(after.events - before.events)).toBe(n);
    expect(Number(after.synDropped - before.synDropped)).toBe(seen - n);
    expect(Number(after.scanBlocked - before.scanBlocked)).toBe(1);
    await unblock();
  });

  it(`refuses ${n} connections of a curl loop over ${n + 1} ports and times out the last: the kernel blocked the source at connection ${n}`, async () => {
    const before = await counters();
    const exits: number[] = [];
    for (let port = 1; port <= n + 1; port++) {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '1', `http://${net.victimAddr}:${port}/`]);
      exits.push(r.code);
    }
    expect(exits).toEqual([...Array<number>(n).fill(CURL_REFUSED_EXIT), CURL_TIMEOUT_EXIT]);
    await expectDetectedAtN();
    const after = await counters();
    expect(Number(after.events - before.events)).toBe(n);
    expect(Number(after.scanBlocked - before.scanBlocked)).toBe(1);
    await unblock();
  });
});
