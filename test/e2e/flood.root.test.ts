// A SYN flood (hping3 --flood) from one source while another scans: no
// crash, bounded memory in both services, every event accounted for
// (delivered or counted lost), and the scanner still blocked.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from './netns.js';
import { type ServiceProcess, Services, startPongServer } from './services.js';

const PORTS = [8086, 8087, 8088];
const CURL_TIMEOUT_EXIT = 28;

/** RSS of a service (ip netns exec and setpriv exec it: the spawned pid is the service's). */
function rssMiB(pid: number | undefined): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return kb / 1024;
}

describe('SYN flood while another source scans', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  const scanner = () => net.attackerAddr.replace(/\.2$/, '.3');

  beforeAll(async () => {
    net = createNamespacePair(7);
    execFileSync('ip', ['-n', net.attackerNs, 'addr', 'add', `${scanner()}/24`, 'dev', `pwa${net.victimIf.slice(3)}`]);
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined));
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { PW_PORTSCAN_TIME_THRESHOLD: '2', PW_LOG_FORMAT: 'json', PW_LOG_LEVEL: 'info', PW_EVENT_QUEUE: '65536' },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  it('survives, accounts for every event, and still blocks the scanner', async () => {
    const flood = net.inAttacker('timeout', ['8', 'hping3', '--flood', '-q', '-S', '-p', '8086', net.victimAddr], 30_000);
    // The scanner keeps scanning, as scanners do, until it is cut off.
    const blocked = await waitFor(
      'the scanner to be blocked during the flood',
      async () => {
        for (const port of PORTS) {
          const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '1', '--interface', scanner(), `http://${net.victimAddr}:${port}/`]);
          if (r.code === CURL_TIMEOUT_EXIT) return true;
        }
        return undefined;
      },
      25_000,
    );
    expect(blocked).toBe(true);
    await flood;
    const rss = { probe: rssMiB(svc.probe!.pid), policy: rssMiB(svc.policy!.pid) };
    console.log(`after the flood: probe ${rss.probe.toFixed(0)} MiB, policy ${rss.policy.toFixed(0)} MiB RSS`);
    expect(rss.probe).toBeLessThan(400);
    expect(rss.policy).toBeLessThan(600);
    // Every event the kernel produced was delivered to the policy or counted lost.
    const settled = await waitFor(
      'the queue to drain',
      async () => {
        const p = await svc.probeStatus();
        return p.queueDepth === 0 && p.policyConnected ? p : undefined;
      },
      30_000,
    );
    const pol = await svc.policyStatus();
    const k = settled.counters!;
    console.log(`flood: ${k.syn} SYNs, ${k.events} events, ${k.ringbufFull} ring-full, ${settled.eventsLost} lost, ${pol.eventsReceived} received`);
    expect(k.events + k.ringbufFull).toBe(pol.eventsReceived + settled.eventsLost);
    expect(k.syn).toBeGreaterThan(10_000n);
    const scannerDecision = (await svc.policyStatus()).activeDecisions;
    expect(scannerDecision).toBeGreaterThanOrEqual(1n);
    expect(svc.probe!.exitCode).toBeUndefined();
    expect(svc.policy!.exitCode).toBeUndefined();
  });
});
