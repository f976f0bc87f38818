// packetwatchctl as a real process against the real probe and policy in a
// victim namespace, an attacker namespace scanning it: status, blocks (and
// the DRIFT mark when the kernel and the policy disagree), block, unblock,
// allow, watch during a fast scan, and the exit codes a script relies on.
//
// The namespaces, the services and the pong server are shared; each test
// starts from `fresh()` (both services up and connected, no decision, no
// kernel block, no operator allowlist entry, the attacker's earlier SYNs out
// of the detection window) and makes the blocks it needs itself, so that
// none depends on what an earlier one did or failed to clean up.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import {
  AllowSource,
  BlockReason,
  type BlockIpResponse,
  type BlockResponse,
  type GetStatusResponse,
  type ListAllowResponse,
  type RemoveAllowResponse,
  type UnblockIpResponse,
} from '@packetwatch/proto';
import { clock } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, Services, call, listAllDecisions, startPongServer } from '@packetwatch/test-support/services';
import { windowAfter } from './timing.js';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const CURL_TIMEOUT_EXIT = 28;
const PORTS = [8086, 8087, 8088];
const WINDOW_SECONDS = 1;
/** Upper bounds for what is slow on a loaded machine (a process starting, a reconnect, a detection): generous on purpose. */
const SLOW_MS = 30_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('packetwatchctl against the real services', () => {
  let net: NamespacePair;
  let svc: Services;
  let pong: ServiceProcess;
  /** The running probe's id (fresh() reads it again: a restarted probe may have another). */
  let probeId: string;
  /** The attacker's address, and one that nothing uses (for a kernel block behind the policy's back). */
  let attacker: string;
  let stranger: string;
  /** CLOCK_MONOTONIC after the attacker's latest command returned: every SYN it sent is older. */
  let attackerDoneNs = 0n;

  const addrs = () => ['--policy', `unix:${svc.policySocket}`, '--probe', `unix:${svc.probeSocket}`];
  const ctl = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(process.execPath, [CLI, ...addrs(), ...args], { timeout: SLOW_MS }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  const ok = async (...args: string[]): Promise<string> => {
    const r = await ctl(...args);
    expect(r.stderr, `packetwatchctl ${args.join(' ')}`).toBe('');
    expect(r.code, `packetwatchctl ${args.join(' ')}`).toBe(0);
    return r.stdout;
  };
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ok('--json', ...args)) as T;
  const inAttacker = async (cmd: string, args: string[]) => {
    try {
      return await net.inAttacker(cmd, args);
    } finally {
      attackerDoneNs = clock.monotonicNs();
    }
  };
  const url = (port: number) => `http://${net.victimAddr}:${port}/`;
  /**
   * One connection from the attacker: 'pong', or curl's exit code. A
   * connection expected to succeed gets a generous connect timeout; one
   * expected to be dropped passes a short one (it never completes, so the
   * timeout only bounds the wait).
   */
  const curl = async (port: number, timeout = '10') => {
    const r = await inAttacker('curl', ['-s', '--connect-timeout', timeout, url(port)]);
    return r.code === 0 ? r.stdout : r.code;
  };
  /**
   * A fast scan: one curl process connecting to each port in turn. Its SYNs
   * are milliseconds apart, well within the window even on a loaded machine
   * (separate curl processes would each pay a process start); in port order,
   * so the detection lists the ports in that order.
   */
  const fastScan = async () => {
    const r = await inAttacker('curl', ['-s', '--connect-timeout', '10', ...PORTS.map(url)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('pong'.repeat(PORTS.length));
  };
  const deadline = (ms = 5000) => ({ deadline: Date.now() + ms });
  const decisions = async () => ({ decisions: await listAllDecisions(svc.policyClient, false) });
  /** The policy's manual block of the attacker for an hour: the decision the DRIFT and unblock tests start from. */
  const blockAttackerByHand = () =>
    call<BlockResponse>((cb) =>
      svc.policyClient.block({ ip: attacker, ttl: { seconds: 3600n, nanos: 0 }, reason: 'e2e by hand' }, new grpc.Metadata(), deadline(), cb),
    );
  /** A kernel block of `ip` made on the probe directly, behind the policy's back. */
  const kernelBlock = (ip: string) =>
    call<BlockIpResponse>((cb) => svc.controlClient.blockIp({ ip, ttl: undefined, reason: BlockReason.BLOCK_REASON_MANUAL }, new grpc.Metadata(), deadline(), cb));
  const kernelUnblock = (ip: string) => call<UnblockIpResponse>((cb) => svc.controlClient.unblockIp({ ip }, new grpc.Metadata(), deadline(), cb));
  /** Waits for the one active decision, once the probe enforces it (the kernel holds the block). */
  const enforcedDecision = () =>
    waitFor(
      'the decision, enforced',
      async () => {
        const ds = (await decisions()).decisions;
        return ds.length === 1 && ds[0]!.enforcedBy.length === 1 && ds[0]!.missingOn.length === 0 ? ds[0] : undefined;
      },
      SLOW_MS,
    );
  const spawnCtl = (...args: string[]) => new ServiceProcess([process.execPath, CLI, ...addrs(), ...args], {});
  /** The table's data rows (after the header), split on runs of two or more spaces. */
  const cells = (table: string) =>
    table
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((l) => l.split(/ {2,}/));

  /** Both services running (restarted if a test stopped one) and connected to each other. */
  const running = async () => {
    await svc.ensureRunning();
    probeId = (await svc.probeStatus()).probeId;
  };

  /**
   * What every test starts from: both services up, the attacker's earlier
   * SYNs out of the window (so neither detector counts them; by then their
   * events have long been handled), no active decision, no kernel block (even
   * one without a decision), and no operator allowlist entry.
   */
  const fresh = async () => {
    await running();
    await windowAfter(attackerDoneNs, WINDOW_SECONDS);
    await svc.unblockEverything();
    const allow = await call<ListAllowResponse>((cb) => svc.policyClient.listAllow({}, new grpc.Metadata(), deadline(), cb));
    for (const e of allow.entries.filter((a) => a.source === AllowSource.ALLOW_SOURCE_OPERATOR)) {
      await call<RemoveAllowResponse>((cb) => svc.policyClient.removeAllow({ prefix: e.prefix }, new grpc.Metadata(), deadline(), cb));
    }
    expect((await decisions()).decisions).toEqual([]);
    expect((await svc.probeStatus()).blocks).toBe(0);
  };

  beforeAll(async () => {
    net = createNamespacePair(5);
    // IPv4 only on the victim's end: a link-local IPv6 address turning up
    // mid-suite would change the own-address lists asserted below.
    expect((await net.inVictim('sysctl', ['-qw', `net.ipv6.conf.${net.victimIf}.disable_ipv6=1`])).code).toBe(0);
    attacker = net.attackerAddr;
    stranger = net.victimAddr.replace(/\.1$/, '.77');
    pong = startPongServer(net.victimNs, PORTS);
    await waitFor('the pong server', () => (pong.stdout.length === PORTS.length ? true : undefined), SLOW_MS);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      // No periodic reconcile during the suite: the drift it shows is made on purpose.
      env: { PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS), PW_RECONCILE_INTERVAL: '3600' },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  /** The probe's drop counters, read over its API before and after `during` (nothing sends meanwhile, so they must not move). */
  const steadyDrops = async (during: () => Promise<void>) => {
    const drops = (st: GetStatusResponse) => ({ syn: st.counters!.synDropped, probe: st.counters!.probeDropped, other: st.counters!.otherDropped });
    const before = drops(await svc.probeStatus());
    await during();
    expect(drops(await svc.probeStatus())).toEqual(before);
    return before;
  };

  it('status: both services, their health, thresholds, interface and counters', async () => {
    await fresh();
    let out = '';
    // The drop counters are the kernel's, kept over the program's life: what status shows is what the API says.
    const drops = await steadyDrops(async () => {
      out = await ok('status');
    });
    const lines = out.trimEnd().split('\n');
    const at = lines.indexOf('');
    const policy = lines.slice(0, at);
    const probe = lines.slice(at + 1);
    expect(policy[0]).toBe(`Policy  unix:${svc.policySocket}`);
    expect(policy).toEqual(
      expect.arrayContaining([
        '  health            SERVING',
        `  thresholds        ${PORTS.length} ports within ${WINDOW_SECONDS}s`,
        '  block ttl         permanent',
        '  whitelist self    yes',
        '  active decisions  0',
        '  probes            1 connected',
      ]),
    );
    expect(policy).toContainEqual(expect.stringMatching(/^ {2}version {11}0\.1\.0, up \d+s$/));
    expect(policy).toContainEqual(expect.stringMatching(/^ {2}events {12}\d+ received, 0 lost$/));
    expect(policy.at(-1)).toMatch(new RegExp(`^ {4}${probeId}: ${net.victimIf}, (generic|driver) XDP, program \\d+, \\d+ events \\(0 lost\\), connected (\\d+s ago|just now)$`));
    expect(probe[0]).toBe(`Probe   unix:${svc.probeSocket}`);
    expect(probe).toEqual(
      expect.arrayContaining([
        '  health         SERVING',
        `  probe id       ${probeId}`,
        `  own addresses  ${net.victimAddr}`,
        `  dropped        ${drops.syn.toLocaleString('en-US')} SYNs, ${drops.probe.toLocaleString('en-US')} probes, ${drops.other.toLocaleString('en-US')} other`,
        '  blocks         0 of 65,536',
        `  policy         connected (unix:${svc.reportSocket})`,
      ]),
    );
    expect(probe).toContainEqual(expect.stringMatching(new RegExp(`^ {2}interface {6}${net.victimIf} \\(ifindex \\d+\\), (generic|driver) XDP, program \\d+$`)));
    expect(probe).toContainEqual(expect.stringMatching(/^ {2}SYNs seen {6}\d+$/));
  });

  it('status --json: one document with stable fields', async () => {
    await fresh();
    let doc: { policy: Record<string, unknown>; probe: Record<string, unknown> } = { policy: {}, probe: {} };
    const drops = await steadyDrops(async () => {
      doc = await json('status');
    });
    expect(doc.policy).toMatchObject({
      address: `unix:${svc.policySocket}`,
      reachable: true,
      health: 'SERVING',
      version: '0.1.0',
      portThreshold: PORTS.length,
      windowSeconds: WINDOW_SECONDS,
      blockTtlSeconds: 0,
      whitelistSelf: true,
      activeDecisions: 0,
      eventsLost: 0,
      probes: [expect.objectContaining({ probeId, interface: net.victimIf, ownAddresses: [net.victimAddr], eventsLost: 0 })],
    });
    expect(doc.probe).toMatchObject({
      address: `unix:${svc.probeSocket}`,
      reachable: true,
      health: 'SERVING',
      probeId,
      interface: net.victimIf,
      ownAddresses: [net.victimAddr],
      synDropped: Number(drops.syn),
      probeDropped: Number(drops.probe),
      eventsLost: 0,
      policyConnected: true,
      blocks: 0,
      blockCapacity: 65536,
    });
  });

  it('blocks with nothing blocked', async () => {
    await fresh();
    expect(await ok('blocks')).toBe('No active decisions.\n');
    expect(await json('blocks')).toEqual({
      blocks: [],
      kernel: { address: `unix:${svc.probeSocket}`, checked: true, probeId, error: null },
    });
  });

  it('watch shows the connections of a fast scan and "Added to blacklist"; Ctrl-C ends it with 0', async () => {
    await fresh();
    // `--since` replays the feed so that rows published before a watcher's
    // subscription is live are not missed; a policy started for this test
    // has no rows of an earlier test in it to replay.
    await svc.policy!.stop('SIGTERM');
    await running();
    const table = spawnCtl('watch', '--since', '30s');
    const lines = spawnCtl('watch', '--json', '--since', '30s', '--source', attacker);
    try {
      await waitFor('the watch header', () => (table.stdout[0] !== undefined ? true : undefined), SLOW_MS);
      expect(table.stdout[0]).toBe('TIME               SOURCE IP        PORT   MESSAGE');
      await fastScan();
      const conn = new RegExp(`^\\d\\d:\\d\\d:\\d\\d {11}${attacker.replace(/\./g, '\\.')} +8086$`);
      await waitFor('a connection row', () => table.stdout.find((l) => conn.test(l)), SLOW_MS);
      const blacklisted = await waitFor('the blacklist row', () => table.stdout.find((l) => l.includes(attacker) && l.endsWith('Added to blacklist')), SLOW_MS);
      expect(blacklisted.indexOf(attacker)).toBe(19);
      expect(blacklisted.indexOf('Added to blacklist')).toBe(43);
      const events = await waitFor(
        'the JSON lines',
        () => {
          const parsed = lines.stdout.filter(Boolean).map((l) => JSON.parse(l) as { kind: string; source: string; port: number; probeId: string; time: string });
          return parsed.some((e) => e.kind === 'blacklist') ? parsed : undefined;
        },
        SLOW_MS,
      );
      expect(events.every((e) => e.source === attacker)).toBe(true);
      expect(events).toContainEqual(expect.objectContaining({ kind: 'connection', source: attacker, port: 8087, probeId }));
      expect(Object.keys(events[0]!).sort()).toEqual(['kind', 'message', 'port', 'probeId', 'shadow', 'source', 'time']);
    } finally {
      table.kill('SIGINT');
      lines.kill('SIGINT');
    }
    expect(await table.exited).toBe(0);
    expect(await lines.exited).toBe(0);
    expect(table.stderr.filter(Boolean)).toEqual([]);
    // The row is published as the decision is taken; the kernel holds the block a moment later.
    await waitFor('the block in the kernel', async () => ((await svc.probeStatus()).blocks === 1 ? true : undefined), SLOW_MS);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
  });

  it('blocks: the detector decision, enforced by the probe, without drift', async () => {
    await fresh();
    await fastScan();
    await enforcedDecision();
    const out = await ok('blocks');
    expect(out.split('\n')[0]).toMatch(/^SOURCE +REASON +ORIGIN +OFFENCE +CREATED +EXPIRES +ENFORCED BY +DRIFT$/);
    const rows = cells(out);
    expect(rows).toHaveLength(1);
    const [source, reason, origin, offence, created, expires, enforcedBy, drift] = rows[0]!;
    // Each test's scan is a first offence: fresh() unblocked the earlier ones, which forgives them.
    expect({ source, origin, offence, expires, enforcedBy, drift }).toEqual({ source: attacker, origin: 'detector', offence: '1', expires: 'never', enforcedBy: probeId, drift: undefined });
    expect(reason).toMatch(/^port scan: 3 ports \(8086, 8087, 8088\) within [\d.]+s$/);
    expect(created).toMatch(/^(\d+s ago|just now)$/);
    expect(cells(await ok('list')).map((r) => [r[0], r[2]])).toEqual([[attacker, 'detector']]); // the alias
    const doc = await json<{ blocks: Record<string, unknown>[]; kernel: Record<string, unknown> }>('blocks');
    expect(doc.blocks).toEqual([
      expect.objectContaining({ ip: attacker, origin: 'detector', offence: 1, active: true, expires: null, ended: null, enforcedBy: [probeId], missingOn: [], inKernel: true, drift: null }),
    ]);
    expect(doc.kernel).toEqual({ address: `unix:${svc.probeSocket}`, checked: true, probeId, error: null });
  });

  it('unblock restores the attacker\'s access', async () => {
    await fresh();
    await fastScan();
    const decision = await enforcedDecision();
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    // `blocks --all` lists every decision, oldest first, the ended ones of
    // earlier tests too: this one is the last, and stays listed once ended.
    const history = cells(await ok('blocks', '--all')).length;
    const out = await ok('unblock', attacker);
    expect(out).toMatch(new RegExp(`^Unblocked 1 source: ${attacker.replace(/\./g, '\\.')} \\(decision ${decision.id}, port scan: 3 ports .*\\)\n$`));
    expect(await curl(8086)).toBe('pong');
    expect(await ok('blocks')).toBe('No active decisions.\n');
    const all = cells(await ok('blocks', '--all'));
    expect(all).toHaveLength(history);
    expect(all.at(-1)![0]).toBe(attacker);
    expect(all.at(-1)![5]).toMatch(/^ended (\d+s ago|just now)$/);
    const doc = await json<{ blocks: Record<string, unknown>[] }>('blocks', '--all');
    expect(doc.blocks.at(-1)).toMatchObject({ decisionId: String(decision.id), ip: attacker, active: false, ended: expect.any(String) });
  });

  it('block by hand with a TTL and a reason; the next attempt is dropped', async () => {
    await fresh();
    const out = await ok('block', attacker, '--ttl', '1h', '--reason', 'e2e by hand');
    expect(out).toBe(`Blocked ${attacker}: e2e by hand (manual), expires in 59m, enforced by ${probeId}\n`);
    expect(await curl(8086, '1')).toBe(CURL_TIMEOUT_EXIT);
    const again = await json<{ alreadyBlocked: boolean; decision: { ip: string } }>('block', attacker);
    expect(again).toMatchObject({ alreadyBlocked: true, decision: { ip: attacker } });
    const [row] = cells(await ok('blocks'));
    expect(row).toEqual([attacker, 'e2e by hand', 'manual', '-', expect.stringMatching(/^(\d+s ago|just now)$/), 'in 59m', probeId]);
  });

  it('blocks marks DRIFT when the kernel loses a block behind the policy\'s back, and when it holds one without a decision', async () => {
    await fresh();
    await blockAttackerByHand();
    expect((await kernelUnblock(attacker)).removed).toBe(true);
    await kernelBlock(stranger);
    const out = await ok('blocks');
    const rows = cells(out.split('\n\n')[0]!);
    expect(rows).toEqual([
      [attacker, 'e2e by hand', 'manual', '-', expect.stringMatching(/ago|just now/), 'in 59m', probeId, 'DRIFT: not in kernel'],
      [stranger, 'kernel block without a decision (manual)', '-', '-', expect.stringMatching(/ago|just now/), 'never', probeId, 'DRIFT: no decision'],
    ]);
    expect(out.split('\n\n')[1]).toBe(
      `2 rows marked DRIFT: the policy and the kernel of ${probeId} disagree. ` +
        'The policy repairs this on its next reconcile; `packetwatchctl unblock <ip>` removes a kernel block without a decision.\n',
    );
    const doc = await json<{ blocks: { ip: string; drift: string | null; inKernel: boolean | null; decisionId: string | null }[] }>('blocks');
    expect(doc.blocks.map((b) => [b.ip, b.drift, b.inKernel, b.decisionId === null])).toEqual([
      [attacker, 'notInKernel', false, false],
      [stranger, 'noDecision', true, true],
    ]);
    // --no-drift asks only the policy.
    expect(cells(await ok('blocks', '--no-drift'))).toEqual([[attacker, 'e2e by hand', 'manual', '-', expect.stringMatching(/ago|just now/), 'in 59m', probeId]]);
  });

  it('unblock of an address without a decision removes its kernel block; unblock --all ends the rest', async () => {
    await fresh();
    await blockAttackerByHand();
    await kernelBlock(stranger);
    expect((await svc.probeStatus()).blocks).toBe(2);
    expect(await ok('unblock', stranger)).toBe(`No active decision on the source of ${stranger}; the probes were told to remove any kernel block of it all the same.\n`);
    expect(await ok('unblock', '--all')).toMatch(new RegExp(`^Unblocked 1 source: ${attacker.replace(/\./g, '\\.')} \\(decision \\d+, e2e by hand\\)\n$`));
    expect(await ok('blocks')).toBe('No active decisions.\n');
    expect(await ok('unblock', '--all')).toBe('No active decisions: nothing to unblock.\n');
    expect((await svc.probeStatus()).blocks).toBe(0);
  });

  it('allow add, list, remove', async () => {
    await fresh();
    expect(await ok('allow', 'add', '192.0.2.0/24', '--note', 'e2e range')).toBe('Allowlisted 192.0.2.0/24.\n');
    expect(await ok('allow', 'add', '192.0.2.0/24')).toBe('192.0.2.0/24 was already on the allowlist.\n');
    const out = await ok('allow', 'list');
    expect(out.split('\n')[0]).toMatch(/^PREFIX +SOURCE +PROBE +ADDED +NOTE$/);
    expect(cells(out)).toEqual([
      ['192.0.2.0/24', 'operator', '-', expect.stringMatching(/ago|just now/), 'e2e range'],
      [`${net.victimAddr}/32`, 'own address', probeId, '-', 'own address'],
    ]);
    expect(await json('allow', 'list')).toEqual({
      entries: [
        { prefix: '192.0.2.0/24', source: 'operator', probeId: null, added: expect.any(String), note: 'e2e range' },
        { prefix: `${net.victimAddr}/32`, source: 'ownAddress', probeId, added: null, note: 'own address' },
      ],
    });
    const blocked = await ctl('block', '192.0.2.9');
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toContain('(FAILED_PRECONDITION)');
    expect(await ok('allow', 'remove', '192.0.2.0/24')).toBe('Removed 192.0.2.0/24 from the allowlist.\n');
    expect(await ok('allow', 'remove', '192.0.2.0/24')).toBe('192.0.2.0/24 is not an operator allowlist entry; nothing removed.\n');
  });

  it('exit 1 naming the address when a service is unreachable, with what the other one said', async () => {
    await running(); // the probe answers, the address given for the policy does not
    const gone = `unix:${svc.dir}/nothing-here.sock`;
    const r = await new Promise<Run>((resolve) =>
      execFile(process.execPath, [CLI, '--policy', gone, '--probe', `unix:${svc.probeSocket}`, 'status'], { timeout: SLOW_MS }, (err, stdout, stderr) =>
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr }),
      ),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `packetwatchctl: policy unreachable at ${gone}: UNAVAILABLE (connect ENOENT ${svc.dir}/nothing-here.sock: no socket there: is the service running, and is this its address?)\n`,
    );
    expect(r.stdout).toContain(`Policy  ${gone}\n  health  UNREACHABLE: UNAVAILABLE`);
    expect(r.stdout).toContain(`Probe   unix:${svc.probeSocket}\n  health         SERVING\n`);
    const blocks = await new Promise<Run>((resolve) =>
      execFile(process.execPath, [CLI, '--policy', gone, 'blocks'], { timeout: SLOW_MS }, (err, stdout, stderr) => resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr })),
    );
    expect(blocks).toMatchObject({ code: 1, stdout: '' });
    expect(blocks.stderr).toContain(`policy unreachable at ${gone}: UNAVAILABLE`);
  });

  it('exit 2 for an invalid address, naming it, and for a usage error, with help; never a stack trace', async () => {
    const bad = await ctl('block', '10.232.5.300');
    expect(bad).toEqual({ code: 2, stdout: '', stderr: "packetwatchctl: invalid address or prefix '10.232.5.300': not an IPv4 or IPv6 address\n" });
    // IPv4 sources are whole addresses (PW_IPV4_PREFIX=32): the policy refuses a /24, naming the length.
    const cidr = await ctl('block', '10.232.5.0/24');
    expect(cidr).toEqual({
      code: 2,
      stdout: '',
      stderr: 'packetwatchctl: policy refused the request: 10.232.5.0/24 is shorter than the /32 IPv4 sources are blocked by (PW_IPV4_PREFIX): give a /32 or longer, or an address (INVALID_ARGUMENT)\n',
    });
    const usage = await ctl('blocks', '--bogus');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("error: unknown option '--bogus'");
    expect(usage.stderr).toContain('Usage: packetwatchctl blocks|list [options]');
    for (const r of [bad, cidr, usage]) expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
