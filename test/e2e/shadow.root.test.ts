// Shadow mode (PW_ENFORCE=False) as an operator tries it: probe and policy
// in a victim namespace, a real scanner (nmap, then curl) in an attacker
// namespace. Everything runs but the drop: the kernel and the policy detect
// and decide, the decision is recorded and marked shadow, the live table says
// the source would have been added to the blacklist, status and metrics say
// shadow, and the scanner still completes a connection to an open port
// afterwards. Then the policy is restarted enforcing: its active shadow
// decisions become blocks (PW_ENFORCE_SHADOW_DECISIONS=True, the default),
// or end, their kernel blocks lifted (False).
//
// The kernel's detector writes its block in shadow mode too (docs/detection.md,
// "Shadow mode"): a policy restarted enforcing enforces it without a new detection.
//
// The tests run in order on one stack: each switch starts from what the one
// before left (that is what a switch is), and each asserts where it starts.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DecisionOrigin, type GetStatusResponse } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { type ServiceProcess, Services, listAllBlocks, listAllDecisions, listeningPongServer } from '@packetwatch/test-support/services';

const CLI = fileURLToPath(new URL('../../services/cli/dist/main.js', import.meta.url));
const POLICY_MAIN = fileURLToPath(new URL('../../services/policy/dist/main.js', import.meta.url));
/** The victim's open port (a pong server), and the closed ones a scan hits. */
const OPEN_PORT = 8090;
const CLOSED_PORTS = [9301, 9302, 9303];
const N = 3;
const CURL_TIMEOUT_EXIT = 28;
const PROMETHEUS = { probe: 19134, policy: 19135 } as const;
/** Bounds a failure's wait on a loaded machine. */
const SLOW_MS = 30_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}, timeout = SLOW_MS): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('shadow mode (PW_ENFORCE=False)', () => {
  let net: NamespacePair;
  let pong: ServiceProcess;
  let svc: Services;

  beforeAll(async () => {
    net = createNamespacePair(34);
    pong = await listeningPongServer(net.victimNs, [OPEN_PORT]);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_ENFORCE: 'False',
        PW_PORTSCAN_PORT_THRESHOLD: String(N),
        PW_PORTSCAN_TIME_THRESHOLD: '60',
        PW_PROMETHEUS_PORT: String(PROMETHEUS.probe),
        PW_POLICY_PROMETHEUS_PORT: String(PROMETHEUS.policy),
        PW_METRICS_HOST: '127.0.0.1',
      },
    });
    await svc.start();
  }, 2 * SLOW_MS);

  afterAll(async () => {
    await svc?.destroy();
    await pong?.stop('SIGKILL');
    net?.destroy();
  });

  const ctlArgs = () => [CLI, '--policy', `unix:${svc.policySocket}`, '--probe', `unix:${svc.probeSocket}`];
  const ctl = (...args: string[]) => run(process.execPath, [...ctlArgs(), ...args]);
  /** One connection from the attacker: 0 (answered, even refused counts as 7), or curl's exit code. */
  const connect = async (port: number, timeout = '3') => (await net.inAttacker('curl', ['-s', '-o', '/dev/null', '--connect-timeout', timeout, `http://${net.victimAddr}:${port}/`])).code;
  const scrape = async (port: number) => {
    const r = await net.inVictim('curl', ['-sSf', `http://127.0.0.1:${port}/metrics`]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  /** A sample's value in a scrape (one series, no labels). */
  const sample = (text: string, name: string) => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    if (!m) throw new Error(`${name} not in the scrape`);
    return Number(m[1]);
  };
  const counters = async () => (await svc.probeStatus()).counters!;
  /** The policy restarted with `env`, and the probe reconnected and running its configuration: shadow or not. */
  const restartPolicy = async (env: Record<string, string>, shadow: boolean): Promise<GetStatusResponse> => {
    await svc.policy!.stop('SIGTERM');
    svc.configure(env);
    await svc.startPolicy();
    return waitFor(
      `the probe reconnected, ${shadow ? 'in shadow mode' : 'enforcing'}`,
      async () => {
        const [probe, policy] = await Promise.all([svc.probeStatus(), svc.policyStatus()]);
        return probe.policyConnected && policy.probes.length === 1 && probe.scanConfig?.shadow === shadow && probe.scanConfigReceived !== undefined ? probe : undefined;
      },
      SLOW_MS,
    );
  };

  it('says shadow loudly: the policy, its probe, the probe itself, packetwatchctl status and the banner', async () => {
    const [policy, probe] = await Promise.all([svc.policyStatus(), svc.probeStatus()]);
    expect(policy.shadow).toBe(true);
    expect(policy.shadowProbes).toEqual([probe.probeId]);
    expect(probe.scanConfig?.shadow).toBe(true);
    const st = await ctl('status');
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/\n {2}mode +SHADOW MODE \(PW_ENFORCE=False\): scanners are detected and decided, NOTHING IS DROPPED\n/);
    expect(st.stdout).toContain(', SHADOW: drops nothing\n');
    expect(st.stdout).toMatch(/\n {2}mode +SHADOW MODE \(the policy's PW_ENFORCE=False\): blocks drop NOTHING; 0 frames would have been dropped\n/);
    expect(svc.table).toContain(
      `Any source IPs that hit ${N} different ports within 60 second(s) would have their future connection attempts dropped, but this is SHADOW MODE (PW_ENFORCE=False): nothing is dropped!`,
    );
  });

  it('drops nothing for a scanner well past the threshold: nmap over 100 ports, then a connection to an open port completes; the decision is recorded, marked shadow', async () => {
    const before = await counters();
    // nmap on one CPU, so that the count does not depend on two SYNs racing (kernel-detection.root.test.ts).
    const cpu = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!;
    const nmap = await net.inAttacker(
      'taskset',
      ['-c', cpu, 'nmap', '-n', '-Pn', '-sS', '-p', '1-100', '--max-retries', '0', '--min-rate', '1000', '--max-rate', '1000', net.victimAddr],
      120_000,
    );
    expect(nmap.code, nmap.stderr).toBe(0);
    const decision = await waitFor(
      'the shadow decision',
      async () => {
        const ds = await listAllDecisions(svc.policyClient, false);
        return ds.length === 1 ? ds[0] : undefined;
      },
      SLOW_MS,
    );
    expect(decision).toMatchObject({ ip: net.attackerAddr, origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR, shadow: true });
    expect(decision.reason).toMatch(new RegExp(`^port scan: ${N} ports \\(`));
    // The kernel blocked it at the crossing SYN, as it does enforcing, and then dropped nothing.
    expect((await listAllBlocks(svc.probeClient)).map((b) => b.ip)).toEqual([net.attackerAddr]);
    const afterScan = await counters();
    const seen = Number(afterScan.syn - before.syn);
    expect(seen).toBeGreaterThanOrEqual(100);
    expect(Number(afterScan.scanBlocked - before.scanBlocked)).toBe(1);
    expect(Number(afterScan.events - before.events)).toBe(N);
    expect(afterScan.synDropped - before.synDropped + afterScan.probeDropped - before.probeDropped + afterScan.otherDropped - before.otherDropped).toBe(0n);
    expect(Number(afterScan.wouldDrop - before.wouldDrop)).toBe(seen - N);

    // Well past the threshold, the scanner still gets its answer from the open port.
    const r = await net.inAttacker('curl', ['-sS', '--connect-timeout', '3', `http://${net.victimAddr}:${OPEN_PORT}/`]);
    expect([r.code, r.stdout]).toEqual([0, 'pong']);
    const afterCurl = await counters();
    // Its SYN is the one frame a block would have dropped (its ACKs pass in syn mode whatever the mode).
    expect(afterCurl.wouldDrop - afterScan.wouldDrop).toBe(1n);
    expect(afterCurl.synDropped).toBe(before.synDropped);
  });

  it('says "would" in the live table and in packetwatchctl blocks and watch, and counts the shadow decision in metrics', async () => {
    const line = new RegExp(`^\\d\\d:\\d\\d:\\d\\d {11}${net.attackerAddr.replaceAll('.', '\\.')} +Would have been added to blacklist \\(shadow mode\\)$`);
    expect(svc.table.filter((l) => line.test(l))).toHaveLength(1);
    expect(svc.table.filter((l) => l.endsWith('Added to blacklist'))).toEqual([]);
    // watch follows until interrupted: the JSON lines it printed in 5 s (its backlog comes first) are what it read.
    const watch = await run(process.execPath, [...ctlArgs(), 'watch', '--since', '10m', '--json'], {}, 5000);
    const blacklist = watch.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { kind: string; source: string; shadow: boolean })
      .filter((e) => e.kind === 'blacklist');
    expect(blacklist).toEqual([expect.objectContaining({ source: net.attackerAddr, shadow: true })]);
    const blocks = await ctl('blocks');
    expect(blocks.code, blocks.stderr).toBe(0);
    expect(blocks.stdout).toContain('detector (SHADOW)');
    expect(blocks.stdout).toContain('1 active decision marked SHADOW was made in shadow mode (PW_ENFORCE=False)');

    const policy = await scrape(PROMETHEUS.policy);
    expect(sample(policy, 'packetwatch_policy_enforcing')).toBe(0);
    expect(sample(policy, 'packetwatch_policy_shadow_decisions_total')).toBe(1);
    expect(sample(policy, 'packetwatch_policy_shadow_decisions_active')).toBe(1);
    expect(sample(policy, 'packetwatch_policy_detections_total')).toBe(1);
    const probe = await scrape(PROMETHEUS.probe);
    expect(sample(probe, 'packetwatch_probe_shadow')).toBe(1);
    expect(sample(probe, 'packetwatch_probe_would_drop_total')).toBe(Number((await counters()).wouldDrop));
  });

  it('restarted with PW_ENFORCE=True, makes the active shadow decision a block: the same decision, no longer shadow, and the scanner is dropped', async () => {
    const [shadowDecision] = await listAllDecisions(svc.policyClient, false);
    expect(shadowDecision).toMatchObject({ ip: net.attackerAddr, shadow: true });
    await restartPolicy({ PW_ENFORCE: 'True' }, false);
    const ds = await listAllDecisions(svc.policyClient, false);
    expect(ds.map((d) => [d.id, d.ip, d.shadow])).toEqual([[shadowDecision!.id, net.attackerAddr, false]]);
    const [policy, probe] = await Promise.all([svc.policyStatus(), svc.probeStatus()]);
    expect([policy.shadow, policy.shadowProbes]).toEqual([false, []]);
    expect((await listAllBlocks(svc.probeClient)).map((b) => b.ip)).toEqual([net.attackerAddr]);
    expect(await connect(OPEN_PORT, '2')).toBe(CURL_TIMEOUT_EXIT);
    expect((await counters()).synDropped).toBeGreaterThan(probe.counters!.synDropped);
    const st = await ctl('status');
    expect(st.stdout).not.toContain('SHADOW');
  });

  it('restarted with PW_ENFORCE=True and PW_ENFORCE_SHADOW_DECISIONS=False, ends the active shadow decision and lifts its kernel block: the scanner is not dropped', async () => {
    // From the enforcing stack the previous test left: nothing blocked, then shadow again, and a new scan.
    await svc.unblockEverything();
    await restartPolicy({ PW_ENFORCE: 'False' }, true);
    for (const port of CLOSED_PORTS) await connect(port);
    const shadowDecision = await waitFor(
      'the new shadow decision',
      async () => {
        const ds = await listAllDecisions(svc.policyClient, false);
        return ds.length === 1 && ds[0]!.shadow ? ds[0] : undefined;
      },
      SLOW_MS,
    );
    expect((await listAllBlocks(svc.probeClient)).map((b) => b.ip)).toEqual([net.attackerAddr]);

    await restartPolicy({ PW_ENFORCE: 'True', PW_ENFORCE_SHADOW_DECISIONS: 'False' }, false);
    expect(await listAllDecisions(svc.policyClient, false)).toEqual([]);
    const ended = (await listAllDecisions(svc.policyClient, true)).find((d) => d.id === shadowDecision!.id);
    expect(ended).toMatchObject({ ip: net.attackerAddr, shadow: true });
    expect(ended!.ended).toBeInstanceOf(Date);
    await waitFor('the kernel block lifted', async () => ((await svc.probeStatus()).blocks === 0 ? true : undefined), SLOW_MS);
    const r = await net.inAttacker('curl', ['-sS', '--connect-timeout', '3', `http://${net.victimAddr}:${OPEN_PORT}/`]);
    expect([r.code, r.stdout]).toEqual([0, 'pong']);
  });
});

describe('PW_ENFORCE with a bad value', () => {
  it.each([
    ['PW_ENFORCE', 'maybe'],
    ['PW_ENFORCE_SHADOW_DECISIONS', 'perhaps'],
  ])('stops the policy with exit code 2, naming %s', async (name, value) => {
    const r = await run(process.execPath, [POLICY_MAIN], { [name]: value, PW_LOG_FORMAT: 'json' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`invalid ${name}="${value}": expected True or False (also true/false, 1/0, yes/no)`);
  });
});
