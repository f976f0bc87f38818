// Escalating blocks and `packetwatchctl explain`, end to end: probe and
// policy as real processes in victim namespaces, real SYN, FIN and XMAS
// probes from attacker namespaces, packetwatchctl as the real CLI binary.
//
// - Escalation (PW_BLOCK_TTL=2s, PW_BLOCK_TTL_FACTOR=2, PW_BLOCK_TTL_MAX=6s):
//   one scanner scans three times, each time after its previous block
//   lapsed, the policy restarted before the third; its blocks last 2, 4 and
//   6 seconds (the maximum), its offences count 1, 2, 3, in the decisions,
//   in the kernel's block, in `blocks` and in `explain`.
// - Explain: a kernel-detected scan (SYN, FIN, XMAS), a fleet-detected one
//   (two hosts, one policy, 2 ports on each with F = 4), an operator's
//   block, a source with no decision, and bad arguments.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { ConfigOrigin, type ExplainResponse, type GetPolicyStatusResponse } from '@packetwatch/proto';
import { clock } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplainJson } from '../../services/cli/src/explain.js';
import type { BlocksJson } from '../../services/cli/src/blocks.js';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, Services, call, listAllBlocks, listAllDecisions, listeningPongServer } from '@packetwatch/test-support/services';
import { stackPerDescribe } from './services.js';
import { windowAfter } from './timing.js';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const PORTS = [8086, 8087, 8088];
/** Upper bounds for what is slow on a loaded machine (a process starting, a detection, a block lapsing): generous on purpose. */
const SLOW_MS = 30_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** packetwatchctl against a policy and probe, as a process. */
function ctlOf(svc: () => Services) {
  const run = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      const addrs = ['--policy', `unix:${svc().policySocket}`, '--probe', `unix:${svc().probeSocket}`];
      execFile(process.execPath, [CLI, ...addrs, ...args], { timeout: SLOW_MS }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
  const ok = async (...args: string[]): Promise<string> => {
    const r = await run(...args);
    expect(r.stderr, `packetwatchctl ${args.join(' ')}`).toBe('');
    expect(r.code, `packetwatchctl ${args.join(' ')}`).toBe(0);
    return r.stdout;
  };
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ok('--json', ...args)) as T;
  return { run, ok, json };
}

describe('escalating blocks: three offences, each after the previous block lapsed, across a policy restart', () => {
  const TTL = 2;
  const stack = stackPerDescribe({
    slot: 32,
    ports: PORTS,
    env: { PW_PORTSCAN_TIME_THRESHOLD: '1', PW_BLOCK_TTL: `${TTL}s`, PW_BLOCK_TTL_FACTOR: '2', PW_BLOCK_TTL_MAX: '6s' },
    timeoutMs: 60_000,
  });
  const ctl = ctlOf(() => stack().svc);
  let attackerDoneNs = 0n;

  /** A fast scan of the three ports by one curl process: answered, and the source is then blocked. */
  const scan = async () => {
    const { net } = stack();
    await windowAfter(attackerDoneNs, 1);
    try {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', ...PORTS.map((p) => `http://${net.victimAddr}:${p}/`)]);
      expect(r.stdout).toBe('pong'.repeat(PORTS.length));
    } finally {
      attackerDoneNs = clock.monotonicNs();
    }
  };

  it('gives 2 s, then 4 s, then the maximum 6 s, counting offences 1, 2 and 3', async () => {
    const { svc, net } = stack();
    const attacker = net.attackerAddr;
    const seen: { offence: number; ttlMs: number; kernelTtlMs: number }[] = [];
    for (let round = 1; round <= 3; round++) {
      if (round === 3) {
        // The offence count is in the store: a restarted policy knows it.
        await svc.policy!.stop('SIGTERM');
        await svc.ensureRunning();
      }
      // The probe's kernel runs the policy's configuration (its block TTL) before the scan.
      await waitFor(
        "the probe running the policy's configuration",
        async () => {
          const st = await svc.probeStatus();
          return st.scanConfigOrigin === ConfigOrigin.CONFIG_ORIGIN_POLICY && st.scanConfig?.blockTtl?.seconds === BigInt(TTL) ? true : undefined;
        },
        SLOW_MS,
      );
      await scan();
      const d = await waitFor(
        `offence ${round}, enforced`,
        async () => {
          const ds = await listAllDecisions(svc.policyClient, false);
          return ds.length === 1 && ds[0]!.enforcedBy.length === 1 ? ds[0] : undefined;
        },
        SLOW_MS,
      );
      expect(d.ip).toBe(attacker);
      // The kernel wrote the block at the crossing SYN for PW_BLOCK_TTL; the policy wrote it again with the escalated TTL.
      const kernel = await waitFor(
        'the kernel block with the decision’s TTL',
        async () => {
          const [b] = (await listAllBlocks(svc.probeClient)).filter((x) => x.ip === attacker && !x.expired);
          return b && b.expires!.getTime() - b.created!.getTime() >= (d.expires!.getTime() - d.created!.getTime()) - 1 ? b : undefined;
        },
        SLOW_MS,
      );
      seen.push({ offence: d.offence, ttlMs: d.expires!.getTime() - d.created!.getTime(), kernelTtlMs: kernel.expires!.getTime() - kernel.created!.getTime() });
      // Until it lapses: no active decision, the kernel no longer drops it.
      await waitFor('the block to lapse', async () => ((await listAllDecisions(svc.policyClient, false)).length === 0 ? true : undefined), SLOW_MS);
      await waitFor('the kernel block to lapse', async () => ((await listAllBlocks(svc.probeClient)).some((b) => b.ip === attacker && !b.expired) ? undefined : true), SLOW_MS);
    }
    expect(seen.map((s) => [s.offence, s.ttlMs])).toEqual([
      [1, 2000],
      [2, 4000],
      [3, 6000],
    ]);
    // The kernel's blocks lasted at least as long (the escalated ones written after the crossing SYN's).
    for (const s of seen) expect(s.kernelTtlMs).toBeGreaterThanOrEqual(s.ttlMs - 1);

    const blocks = await ctl.json<BlocksJson>('blocks', '--all', '--no-drift');
    expect(blocks.blocks.map((b) => [b.ip, b.origin, b.offence])).toEqual([
      [attacker, 'detector', 1],
      [attacker, 'detector', 2],
      [attacker, 'detector', 3],
    ]);
    const table = await ctl.ok('blocks', '--all', '--no-drift');
    expect(table.split('\n')[0]).toMatch(/^SOURCE +REASON +ORIGIN +OFFENCE +CREATED +EXPIRES +ENFORCED BY +DRIFT$/);
    expect(table.trimEnd().split('\n').slice(1).map((l) => l.split(/ {2,}/)[3])).toEqual(['1', '2', '3']);

    const ex = await ctl.json<ExplainJson>('explain', attacker);
    expect(ex).toMatchObject({
      source: attacker,
      blocked: false,
      engine: 'kernel',
      offence: 3,
      ttlSeconds: 6,
      capped: false,
      rule: { portThreshold: 3, windowSeconds: 1, blockTtlSeconds: 2, blockTtlFactor: 2, blockTtlMaxSeconds: 6 },
      next: { offence: 4, ttlSeconds: 6 },
    });
    const text = await ctl.ok('explain', attacker);
    expect(text).toContain('\noffence       3\n');
    expect(text).toContain('\nblock ttl     2s, ×2 a repeat offence up to 6s\n');
    expect(text).toContain('\nnext offence  4, blocked for 6s\n');
  }, 180_000);
});

describe('escalation settings: a bad value stops the policy with exit code 2, naming the setting', () => {
  const POLICY_MAIN = fileURLToPath(new URL('../../services/policy/dist/main.js', import.meta.url));
  it.each([
    [{ PW_BLOCK_TTL_FACTOR: '0.5' }, 'invalid PW_BLOCK_TTL_FACTOR="0.5": expected a number from 1 (no escalation) to 1000'],
    [{ PW_BLOCK_TTL_FACTOR: 'double' }, 'invalid PW_BLOCK_TTL_FACTOR="double": expected a number of 1 or more (1 = no escalation)'],
    [{ PW_BLOCK_TTL: '1h', PW_BLOCK_TTL_MAX: '30m' }, 'invalid PW_BLOCK_TTL_MAX="1800s": expected 0 (up to 3650d) or at least PW_BLOCK_TTL (3600s)'],
  ])('%j', async (env, message) => {
    const dir = mkdtempSync(join(tmpdir(), 'pw-escalation-config-'));
    try {
      const p = new ServiceProcess([process.execPath, POLICY_MAIN], { ...env, PW_STATE_DIR: `${dir}/state`, PW_POLICY_SOCKET: `${dir}/p.sock`, PW_POLICY_REPORT_SOCKET: `${dir}/r.sock`, PW_POLICY_PROMETHEUS_PORT: '0' });
      expect(await p.exited).toBe(2);
      expect(p.stderr.join('\n')).toContain(message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('packetwatchctl explain: kernel, fleet and operator blocks, and a source without one', () => {
  /** Slots 32 and 33: hosts[0] runs the policy and a probe, hosts[1] a probe reporting to it. */
  let nets: NamespacePair[] = [];
  const pongs: ServiceProcess[] = [];
  const hosts: Services[] = [];
  let probeIds: string[] = [];
  /** One address on both attacker namespaces: one host on the internet reaching the fleet. */
  const FLEET_ATTACKER = '10.233.32.66';
  const ctl = ctlOf(() => hosts[0]!);

  beforeAll(async () => {
    nets = [createNamespacePair(32), createNamespacePair(33)];
    for (const net of nets) net.addAttackerAddress(FLEET_ATTACKER);
    pongs.push(...(await Promise.all(nets.map((net) => listeningPongServer(net.victimNs, PORTS)))));
    const env = { PW_PORTSCAN_TIME_THRESHOLD: '30', PW_FLEET_PORT_THRESHOLD: '4', PW_BLOCK_TTL: '1h' };
    const home = new Services({ netns: nets[0]!.victimNs, ifdev: nets[0]!.victimIf, env });
    hosts.push(home, new Services({ netns: nets[1]!.victimNs, ifdev: nets[1]!.victimIf, env, reportTo: home }));
    await home.start();
    await hosts[1]!.startProbe();
    probeIds = (await Promise.all(hosts.map((h) => h.probeStatus()))).map((s) => s.probeId);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.destroy()));
    await Promise.all(pongs.map((p) => p.stop('SIGKILL')));
    for (const net of nets) net.destroy();
  });

  const decisionOn = (ip: string) =>
    waitFor(
      `the decision on ${ip}, enforced by both probes`,
      async () => {
        const d = (await listAllDecisions(hosts[0]!.policyClient, false)).find((x) => x.ip === ip);
        return d && d.enforcedBy.length === 2 ? d : undefined;
      },
      SLOW_MS,
    );

  it('explains a kernel-detected scan: the SYN, FIN and XMAS probes, the kernel engine, the rule and the TTL', async () => {
    const net = nets[0]!;
    const victim = net.victimAddr;
    const syn = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', `http://${victim}:8086/`]);
    expect(syn.stdout).toBe('pong');
    // hping3 exits 1 when no reply comes: a FIN or XMAS to a listening port gets none.
    await net.inAttacker('hping3', ['-q', '-c', '1', '-F', '-p', '8087', victim]);
    await net.inAttacker('hping3', ['-q', '-c', '1', '-F', '-P', '-U', '-p', '8088', victim]);
    const d = await decisionOn(net.attackerAddr);
    expect(d.offence).toBe(1);

    const ex = await ctl.json<ExplainJson>('explain', net.attackerAddr);
    expect(ex).toMatchObject({
      source: net.attackerAddr,
      blocked: true,
      engine: 'kernel',
      capped: false,
      offence: 1,
      ttlSeconds: 3600,
      rule: { portThreshold: 3, windowSeconds: 30, fleetPortThreshold: 4, blockTtlSeconds: 3600, blockTtlFactor: 1, blockTtlMaxSeconds: null, maxBlocksPerMinute: 120, cappedBlockTtlSeconds: 60 },
      decidedUnder: { portThreshold: 3, windowSeconds: 30, fleetPortThreshold: 4 },
      next: { offence: 2, ttlSeconds: 3600 },
    });
    expect(ex.decision).toMatchObject({ decisionId: String(d.id), ip: net.attackerAddr, origin: 'detector', active: true, offence: 1, enforcedBy: [...probeIds].sort() });
    expect(ex.probes.map((p) => [p.port, p.kind, p.probeId, p.address, p.portState])).toEqual([
      [8086, 'SYN', probeIds[0], net.attackerAddr, 'unknown'],
      [8087, 'FIN', probeIds[0], net.attackerAddr, 'unknown'],
      [8088, 'XMAS', probeIds[0], net.attackerAddr, 'unknown'],
    ]);
    const times = ex.probes.map((p) => Date.parse(p.time!));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    // Both kernels hold it now: the first since the crossing probe, the other by the policy's BlockIp.
    expect(ex.kernel.map((k) => [k.probeId, k.blocked, k.error]).sort()).toEqual(probeIds.map((id) => [id, true, null]).sort());
    expect(ex.tracked).toEqual([]);

    const text = await ctl.ok('explain', net.attackerAddr);
    const lines = text.trimEnd().split('\n');
    expect(lines.slice(0, 3)).toEqual([`source        ${net.attackerAddr}`, expect.stringMatching(/^status        blocked \(decision \d+\), expires in 59m$/), 'rule          3 ports within 30s, or 4 (probe, port) pairs across the fleet']);
    expect(lines).toContain("decided by    the kernel (the XDP program's rule, at the crossing probe)");
    expect(lines).toContain('ttl           1h');
    expect(lines).toContain('offence       1');
    const table = lines.slice(lines.findIndex((l) => l.startsWith('TIME')));
    expect(table[0]).toMatch(/^TIME +PORT +KIND +STATE +PROBE +ADDRESS$/);
    expect(table.slice(1).map((l) => l.split(/ {2,}/).slice(1))).toEqual([
      ['8086', 'SYN', 'unknown', probeIds[0], net.attackerAddr],
      ['8087', 'FIN', 'unknown', probeIds[0], net.attackerAddr],
      ['8088', 'XMAS', 'unknown', probeIds[0], net.attackerAddr],
    ]);
  }, 90_000);

  it('explains a fleet-detected scan: 2 ports on each of the 2 hosts, by probe', async () => {
    for (const net of nets) {
      const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', '--interface', FLEET_ATTACKER, ...PORTS.slice(0, 2).map((p) => `http://${net.victimAddr}:${p}/`)]);
      expect(r.stdout).toBe('pongpong');
    }
    await decisionOn(FLEET_ATTACKER);
    const ex = await ctl.json<ExplainJson>('explain', FLEET_ATTACKER);
    expect(ex).toMatchObject({ source: FLEET_ATTACKER, blocked: true, engine: 'fleet', offence: 1, ttlSeconds: 3600 });
    expect(ex.probes.map((p) => [p.probeId, p.port, p.kind, p.address])).toEqual([
      [probeIds[0], 8086, 'SYN', FLEET_ATTACKER],
      [probeIds[0], 8087, 'SYN', FLEET_ATTACKER],
      [probeIds[1], 8086, 'SYN', FLEET_ATTACKER],
      [probeIds[1], 8087, 'SYN', FLEET_ATTACKER],
    ]);
    expect(await ctl.ok('explain', FLEET_ATTACKER)).toContain("\ndecided by    the policy's fleet rule (across probes)\n");
  }, 90_000);

  it("explains an operator's block: the operator engine, no offence, no probes", async () => {
    const target = '10.232.32.77';
    await ctl.ok('block', target, '--ttl', '2h', '--reason', 'by hand');
    const ex = await ctl.json<ExplainJson>('explain', target);
    expect(ex).toMatchObject({ source: target, blocked: true, engine: 'operator', offence: 0, ttlSeconds: 7200, probes: [], next: { offence: 1, ttlSeconds: 3600 } });
    expect(ex.decision).toMatchObject({ ip: target, origin: 'manual', reason: 'by hand', offence: 0 });
    const lines = (await ctl.ok('explain', target)).trimEnd().split('\n');
    expect(lines).toContain('decided by    an operator (packetwatchctl block)');
    expect(lines).toContain("offence       - (an operator's block is no offence)");
    expect(lines[lines.length - 1]).toBe('No probes were counted for this decision.');
  });

  it('answers for a source without a decision: not blocked, the rule, what the detector holds, its first offence', async () => {
    // One port of the second host: tracked (a fleet pair), far from a scan.
    const net = nets[1]!;
    expect((await net.inAttacker('curl', ['-s', '--connect-timeout', '10', `http://${net.victimAddr}:8088/`])).stdout).toBe('pong');
    const held = await waitFor(
      'the detector to hold the probe',
      async () => {
        const ex = await ctl.json<ExplainJson>('explain', net.attackerAddr);
        return ex.tracked.length > 0 ? ex : undefined;
      },
      SLOW_MS,
    );
    expect(held).toMatchObject({ source: net.attackerAddr, blocked: false, decision: null, engine: null, offence: 0, next: { offence: 1, ttlSeconds: 3600 } });
    expect(held.tracked.map((t) => [t.probeId, t.port, t.kind])).toEqual([[probeIds[1], 8088, 'unknown']]);
    expect(held.kernel.map((k) => [k.probeId, k.blocked]).sort()).toEqual(probeIds.map((id) => [id, false]).sort());
    const heldText = (await ctl.ok('explain', net.attackerAddr)).split('\n');
    expect(heldText).toContainEqual(expect.stringMatching(new RegExp(`^tracking +${probeIds[1]!.replace(/[/.]/g, '\\$&')} 8088 (just now|\\d+s ago)$`)));

    const ex = await ctl.json<ExplainJson>('explain', '192.0.2.200');
    expect(ex).toEqual({
      source: '192.0.2.200',
      blocked: false,
      rule: { portThreshold: 3, windowSeconds: 30, fleetPortThreshold: 4, blockTtlSeconds: 3600, blockTtlFactor: 1, blockTtlMaxSeconds: null, maxBlocksPerMinute: 120, cappedBlockTtlSeconds: 60 },
      decision: null,
      engine: null,
      decidedUnder: null,
      capped: false,
      offence: 0,
      ttlSeconds: null,
      probes: [],
      next: { offence: 1, ttlSeconds: 3600 },
      kernel: expect.arrayContaining(probeIds.map((probeId) => ({ probeId, blocked: false, created: null, expires: null, error: null }))),
      tracked: [],
    });
    expect((await ctl.ok('explain', '192.0.2.200')).split('\n').slice(0, 2)).toEqual(['source        192.0.2.200', 'status        not blocked: no decision on this source']);
  });

  it('refuses a malformed source (exit 2) and a prefix shorter than the policy keys by (INVALID_ARGUMENT)', async () => {
    const bad = await ctl.run('explain', 'not-an-address');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("invalid address or prefix 'not-an-address'");
    const short = await ctl.run('explain', '10.0.0.0/8');
    expect(short.code).toBe(2);
    expect(short.stderr).toBe(
      'packetwatchctl: policy refused the request: 10.0.0.0/8 is shorter than the /32 IPv4 sources are blocked by (PW_IPV4_PREFIX): give a /32 or longer, or an address (INVALID_ARGUMENT)\n',
    );
    const err = await call<ExplainResponse>((cb) => hosts[0]!.policyClient.explain({ source: '' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb)).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((err as grpc.ServiceError).details).toBe('source: give an address or prefix');
    // GetStatus says the escalation in force.
    const st = await call<GetPolicyStatusResponse>((cb) => hosts[0]!.policyClient.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 5000 }, cb));
    expect([st.blockTtlFactor, st.blockTtlMax]).toEqual([1, undefined]);
  });
});
