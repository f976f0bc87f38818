// Closed mode (PW_PORTSCAN_COUNT=closed) as a user meets it: probe and
// policy in a victim namespace with three HTTP services listening (a pong
// server on 8086-8088), a client and nmap in the attacker namespace. With
// closed, a SYN counts toward the scan rule only when nothing in the victim
// namespace accepts its port (the XDP program looks the socket up) and the
// port is not declared open (PW_OPEN_PORTS); with all, every SYN counts. The
// same client, using the same three services, is never blocked in closed
// mode and blocked at its third service in all mode.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { ConfigOrigin, type ExplainResponse, ExplainPortState, type WatchEvent, WatchEventKind } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { waitFor } from '@packetwatch/test-support';
import { ServiceProcess, call, listAllBlocks, listAllDecisions } from '@packetwatch/test-support/services';
import { stackPerDescribe } from './services.js';

const POLICY_MAIN = fileURLToPath(new URL('../../services/policy/dist/main.js', import.meta.url));

const SERVICES = [8086, 8087, 8088];
/** Declared open, nothing listens on it: a port published through DNAT looks so from the host's namespace. */
const PUBLISHED = 9000;
const N = 3;
const CURL_REFUSED_EXIT = 7;
const CURL_TIMEOUT_EXIT = 28;
/** Upper bound for what is slow on a loaded machine (a service starting, a decision recorded): generous on purpose. */
const SLOW_MS = 30_000;

const env = (count: 'all' | 'closed') => ({
  PW_PORTSCAN_COUNT: count,
  PW_OPEN_PORTS: String(PUBLISHED),
  PW_PORTSCAN_PORT_THRESHOLD: String(N),
  PW_PORTSCAN_TIME_THRESHOLD: '60',
  PW_KERNEL_DETECTION: 'True',
});

/** nmap and the program on one CPU, as in kernel-detection.root.test.ts: the count does not depend on two SYNs racing. */
const oneCpu = () => /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;

describe('PW_PORTSCAN_COUNT=closed: only SYNs to ports nothing accepts count', () => {
  const stack = stackPerDescribe({ slot: 36, ports: SERVICES, env: env('closed'), timeoutMs: 60_000 });
  const counters = async () => (await stack().svc.probeStatus()).counters!;
  const curl = (port: number) => stack().net.inAttacker('curl', ['-s', '--connect-timeout', '1', `http://${stack().net.victimAddr}:${port}/`]);

  it('has the probe run closed mode with the declared ports, as the policy sent them', async () => {
    const st = await waitFor(
      'the probe running the policy configuration',
      async () => {
        const s = await stack().svc.probeStatus();
        return s.scanConfig?.countClosed ? s : undefined;
      },
      SLOW_MS,
    );
    expect(st.scanConfig).toMatchObject({ countClosed: true, openPorts: [{ first: PUBLISHED, last: PUBLISHED }] });
  });

  /** The first `count` connections the policy's Watch replays from `since` for the attacker: port and MESSAGE marker. */
  const watched = (since: Date, count: number) =>
    new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const w = stack().svc.policyClient.watch({ source: stack().net.attackerAddr, since }, new grpc.Metadata(), { deadline: Date.now() + SLOW_MS });
      w.on('data', (e: WatchEvent) => {
        if (e.kind !== WatchEventKind.WATCH_EVENT_KIND_CONNECTION) return;
        got.push(`${e.port} ${e.message}`.trim());
        if (got.length === count) {
          w.cancel();
          resolve(got);
        }
      });
      w.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? undefined : reject(err)));
    });

  it('never blocks a client that uses every open service, nor one that reaches a declared open port nothing listens on', async () => {
    const since = new Date(Date.now() - 1000);
    const before = await counters();
    const bodies: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (const port of SERVICES) {
        const r = await curl(port);
        bodies.push(r.code === 0 ? r.stdout : `exit ${r.code}`);
      }
    }
    expect(bodies).toEqual(Array<string>(9).fill('pong'));
    // Published through DNAT on a real host; here nothing listens: refused, and not counted.
    expect((await curl(PUBLISHED)).code).toBe(CURL_REFUSED_EXIT);
    expect((await curl(PUBLISHED)).code).toBe(CURL_REFUSED_EXIT);
    const after = await counters();
    expect(Number(after.syn - before.syn)).toBe(11);
    expect(Number(after.openPortSyn - before.openPortSyn)).toBe(11);
    expect(Number(after.scanBlocked - before.scanBlocked)).toBe(0);
    // The policy saw every one of them and counted none.
    await waitFor('the policy to receive the events', async () => ((await stack().svc.policyStatus()).eventsReceived >= 11n ? true : undefined), SLOW_MS);
    expect(await listAllDecisions(stack().svc.policyClient, false)).toEqual([]);
    expect(await listAllBlocks(stack().svc.probeClient, 5000)).toEqual([]);
    // The feed (table, packetwatchctl watch) shows each, marked.
    expect(await watched(since, 11)).toEqual([...Array.from({ length: 3 }, () => SERVICES.map((p) => `${p} open port`)).flat(), `${PUBLISHED} open port`, `${PUBLISHED} open port`]);
    expect((await curl(SERVICES[0]!)).stdout).toBe('pong');
  });

  it('keeps closed mode with the policy gone: a restarted probe runs it pinned from the earlier run, and the client is still never blocked', async () => {
    const { svc } = stack();
    await svc.policy!.stop('SIGKILL');
    await svc.probe!.stop('SIGTERM');
    const st = await svc.startProbe();
    expect(st.policyConnected).toBe(false);
    expect(st.scanConfigOrigin).toBe(ConfigOrigin.CONFIG_ORIGIN_PINNED);
    expect(st.scanConfig).toMatchObject({ countClosed: true, openPorts: [{ first: PUBLISHED, last: PUBLISHED }] });
    const before = await counters();
    const bodies: string[] = [];
    for (let round = 0; round < 2; round++) for (const port of SERVICES) bodies.push((await curl(port)).stdout);
    expect(bodies).toEqual(Array<string>(6).fill('pong'));
    const after = await counters();
    expect(Number(after.openPortSyn - before.openPortSyn)).toBe(6);
    expect(Number(after.scanBlocked - before.scanBlocked)).toBe(0);
    await svc.ensureRunning();
  });

  it(`blocks nmap -sS --top-ports 1000 after exactly ${N} closed-port SYNs; SYNs to the open services before then are not counted`, async () => {
    const before = await counters();
    const nmap = ['-n', '-Pn', '-sS', '--top-ports', '1000', '--max-retries', '0', '--min-rate', '1000', '--max-rate', '1000', stack().net.victimAddr];
    const r = await stack().net.inAttacker('taskset', ['-c', oneCpu(), 'nmap', ...nmap], 120_000);
    expect(r.code).toBe(0);
    const d = await waitFor(
      'the decision, enforced',
      async () => {
        const ds = await listAllDecisions(stack().svc.policyClient, false);
        return ds.length === 1 && ds[0]!.enforcedBy.length === 1 ? ds[0] : undefined;
      },
      SLOW_MS,
    );
    expect(d!.ip).toBe(stack().net.attackerAddr);
    // Both engines crossed at the same closed port.
    expect(d!.reason).toMatch(new RegExp(`^port scan: ${N} ports \\(`));
    const after = await counters();
    const events = Number(after.events - before.events);
    const open = Number(after.openPortSyn - before.openPortSyn);
    expect(events - open).toBe(N);
    expect(Number(after.scanBlocked - before.scanBlocked)).toBe(1);
    expect(Number(after.synDropped - before.synDropped)).toBe(Number(after.syn - before.syn) - events);
    // explain names the three closed ports it was blocked for, each closed as the kernel's event said.
    const ex = await call<ExplainResponse>((cb) => stack().svc.policyClient.explain({ source: stack().net.attackerAddr }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
    expect(ex.blocked).toBe(true);
    expect(ex.probes.map((p) => [p.kind, p.portState])).toEqual(Array.from({ length: N }, () => ['SYN', ExplainPortState.EXPLAIN_PORT_STATE_CLOSED]));
    // The client's address is the scanner's: it is blocked now, and its connections time out.
    expect((await curl(SERVICES[0]!)).code).toBe(CURL_TIMEOUT_EXIT);
  });
});

describe('PW_PORTSCAN_COUNT=all (the default rule): the same client is blocked at its third service', () => {
  const stack = stackPerDescribe({ slot: 37, ports: SERVICES, env: env('all'), timeoutMs: 60_000 });
  const curl = (port: number) => stack().net.inAttacker('curl', ['-s', '--connect-timeout', '1', `http://${stack().net.victimAddr}:${port}/`]);

  it('answers its first three requests, then drops its connections: every SYN counts', async () => {
    // The policy's configuration in the probe first (its PW_OPEN_PORTS differs from the defaults: a reload).
    await waitFor(
      'the probe running the policy configuration',
      async () => ((await stack().svc.probeStatus()).scanConfigOrigin === ConfigOrigin.CONFIG_ORIGIN_POLICY ? true : undefined),
      SLOW_MS,
    );
    const results: string[] = [];
    for (const port of [...SERVICES, SERVICES[0]!]) {
      const r = await curl(port);
      results.push(r.code === 0 ? r.stdout : `exit ${r.code}`);
    }
    expect(results).toEqual(['pong', 'pong', 'pong', `exit ${CURL_TIMEOUT_EXIT}`]);
    const c = (await stack().svc.probeStatus()).counters!;
    expect(c.openPortSyn).toBe(0n);
    expect(c.scanBlocked).toBe(1n);
    const ds = await waitFor('the decision', async () => {
      const d = await listAllDecisions(stack().svc.policyClient, false);
      return d.length === 1 ? d : undefined;
    }, SLOW_MS);
    expect(ds[0]!.reason).toMatch(/^port scan: 3 ports \(8086, 8087, 8088\)/);
  });
});

describe('bad closed-mode settings stop the policy with exit code 2, naming the setting', () => {
  it.each([
    ['PW_PORTSCAN_COUNT', 'some'],
    ['PW_OPEN_PORTS', '0-100'],
    ['PW_OPEN_PORTS', '9000-8000'],
    ['PW_OPEN_PORTS', '70000'],
    ['PW_OPEN_PORTS', '80,https'],
  ])('%s=%s', async (name, value) => {
    const dir = mkdtempSync(join(tmpdir(), 'pw-closed-'));
    try {
      const p = new ServiceProcess([process.execPath, POLICY_MAIN], {
        [name]: value,
        PW_STATE_DIR: join(dir, 'state'),
        PW_POLICY_SOCKET: join(dir, 'policy.sock'),
        PW_POLICY_REPORT_SOCKET: join(dir, 'report.sock'),
      });
      expect(await p.exited).toBe(2);
      expect(p.stderr.join('\n')).toContain(`invalid ${name}=${JSON.stringify(value)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
