// Authentication and least privilege: who can reach the probe's socket,
// mutual TLS on TCP (a certificate from another CA is refused; the probe's
// stream to the policy works over it), roles from certificates (only the
// policy blocks on a probe, only a probe reports, operators call the rest),
// and the probe running with only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { groupId } from '@packetwatch/common';
import {
  type AddAllowResponse,
  type BlockIpResponse,
  BlockReason,
  type GetStatusResponse,
  type ListAllowResponse,
  PolicyClient,
  ProbeClient,
  type UnblockIpResponse,
} from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BPFFS, type TestNet, createTestNet, freePort, waitFor } from '@packetwatch/test-support';
import { PolicyStub } from '@packetwatch/test-support/policy-stub';
import { ServiceProcess, call } from '@packetwatch/test-support/services';
import { callAs } from './grpc-tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROBE_MAIN = join(ROOT, 'services/probe/dist/main.js');
const POLICY_MAIN = join(ROOT, 'services/policy/dist/main.js');
const CAP = { NET_ADMIN: 12, PERFMON: 38, BPF: 39 };

/** Upper bound for what is slow on a loaded machine (a service starting, a reconnect, a TLS handshake): generous on purpose. */
const SLOW_MS = 60_000;
/** Per test: some start two services, each taking seconds under load. */
const TEST_MS = 300_000;
/** A call's deadline: generous, so that a refusal shows as the refusal and not as a deadline passed on a loaded machine. */
const CALL_MS = 10_000;

/** Client credentials with the certificate `name` from `certs` (deploy/certs.sh). */
const tlsCredentials = (certs: string, name: string, ca = join(certs, 'ca.crt')) =>
  grpc.credentials.createSsl(readFileSync(ca), readFileSync(join(certs, `${name}.key`)), readFileSync(join(certs, `${name}.crt`)));

function tlsClient(target: string, certs: string, name: string, ca = join(certs, 'ca.crt')): ProbeClient {
  return new ProbeClient(target, tlsCredentials(certs, name, ca));
}

const getStatus = (c: ProbeClient) => call<GetStatusResponse>((cb) => c.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb));

describe('authentication and least privilege', () => {
  let net: TestNet;
  let dir: string;
  let certs: string;
  let otherCerts: string;
  let probe: ServiceProcess | undefined;
  let policy: ServiceProcess | undefined;
  let stub: PolicyStub;
  const pinRoot = `${TEST_BPFFS}/security-${process.pid}`;
  /** The probe's settings: its Unix socket, and its API on TCP with mutual TLS. */
  let env: Record<string, string>;

  const running = (p: ServiceProcess | undefined): p is ServiceProcess => p !== undefined && p.exitCode === undefined;
  const stopProbe = async () => {
    await probe?.stop('SIGKILL');
    probe = undefined;
  };
  /**
   * A probe started afresh: 'limited' runs with only its three capabilities
   * and reports to the stand-in policy; 'full' (as root) reports to
   * `policyAddr`. Resolves once its API answers over TCP with mutual TLS.
   */
  const startProbe = async (kind: 'limited' | 'full', policyAddr = `unix:${stub.socketPath}`): Promise<GetStatusResponse> => {
    await stopProbe();
    const argv =
      kind === 'limited'
        ? ['setpriv', '--bounding-set=-all,+bpf,+net_admin,+perfmon', `--groups=${groupId('packetwatch')},${groupId('packetwatch-control')}`, process.execPath, PROBE_MAIN]
        : [process.execPath, PROBE_MAIN];
    const p = new ServiceProcess(argv, { ...env, PW_POLICY_ADDR: policyAddr });
    probe = p;
    const client = tlsClient(env.PW_PROBE_TCP_ADDR!, certs, 'operator');
    try {
      return await waitFor(
        `the ${kind} probe`,
        async () => {
          if (p.exitCode !== undefined) throw new Error(`probe exited with ${p.exitCode}:\n${[...p.stdout, ...p.stderr].slice(-20).join('\n')}`);
          return getStatus(client).catch(() => undefined);
        },
        SLOW_MS,
      );
    } finally {
      client.close();
    }
  };
  /** A probe serving its API, whichever (the tests of who may call it do not care): one is started if none runs. */
  const probeRunning = async () => {
    if (!running(probe)) await startProbe('limited');
  };

  beforeAll(async () => {
    net = createTestNet(6);
    dir = mkdtempSync(join(tmpdir(), 'pw-sec-'));
    chmodSync(dir, 0o770);
    chownSync(dir, 0, groupId('packetwatch'));
    // The control directory as deploy/run.sh makes it: root's, the control group's.
    mkdirSync(join(dir, 'control'));
    chownSync(join(dir, 'control'), 0, groupId('packetwatch-control'));
    chmodSync(join(dir, 'control'), 0o2750);
    certs = join(dir, 'certs');
    otherCerts = join(dir, 'other');
    execFileSync(join(ROOT, 'deploy/certs.sh'), [certs, 'probe', 'policy', 'operator'], { stdio: 'ignore' });
    execFileSync(join(ROOT, 'deploy/certs.sh'), [otherCerts, 'operator'], { stdio: 'ignore' });
    stub = new PolicyStub(join(dir, 'stub.sock'));
    await stub.start();
    env = {
      PW_IFDEV: net.hostIf,
      PW_PROBE_SOCKET: join(dir, 'probe.sock'),
      PW_PROBE_CONTROL_SOCKET: join(dir, 'control', 'probe.sock'),
      PW_CONTROL_GROUP: 'packetwatch-control',
      PW_SOCKET_GROUP: 'packetwatch',
      PW_BPF_PIN_DIR: pinRoot,
      PW_PROMETHEUS_PORT: '0',
      PW_LOG_LEVEL: 'debug',
      PW_PROBE_TCP_ADDR: `127.0.0.1:${await freePort()}`,
      PW_TLS_CERT: join(certs, 'probe.crt'),
      PW_TLS_KEY: join(certs, 'probe.key'),
      PW_TLS_CA: join(certs, 'ca.crt'),
    };
  }, 120_000);

  afterAll(async () => {
    await Promise.all([probe?.stop('SIGKILL'), policy?.stop('SIGKILL')]);
    try {
      execFileSync(process.execPath, [PROBE_MAIN, 'detach'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    } catch {
      // nothing attached
    }
    rmSync(pinRoot, { recursive: true, force: true });
    stub?.stop();
    net?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the probe with only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and it works', async () => {
    if (!stub.running) await stub.start();
    const hellos = stub.hellos.length;
    const seen = stub.events.length;
    const st = await startProbe('limited');
    expect(st.interface).toBe(net.hostIf);
    // setpriv execs node: the spawned pid is the probe's.
    const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${probe!.pid}/status`, 'utf8'))![1]!;
    expect(BigInt(`0x${capEff}`)).toBe((1n << BigInt(CAP.BPF)) | (1n << BigInt(CAP.NET_ADMIN)) | (1n << BigInt(CAP.PERFMON)));
    await waitFor('the hello', () => stub.hellos[hellos], SLOW_MS);
    // It does its job with them: a peer's SYN becomes an event.
    const r = await net.inPeer('curl', ['-s', '--connect-timeout', '10', `http://${net.hostAddr}:1/`]);
    expect(r.code).toBe(7); // refused by the host's stack, after the probe saw the SYN
    await waitFor('the event', () => stub.events.slice(seen).find((e) => e.dport === 1), SLOW_MS);
  }, TEST_MS);

  it('lets the socket group call the probe and refuses everyone else', async () => {
    await probeRunning();
    expect(callAs({ user: 'packetwatch' }, 'Probe', env.PW_PROBE_SOCKET!, 'getStatus', {})).toBe('ok');
    expect(callAs({ user: 'nobody' }, 'Probe', env.PW_PROBE_SOCKET!, 'getStatus', {})).toBe('UNAVAILABLE');
  }, TEST_MS);

  it("on Unix sockets, gives each role a socket of its own: operators read, only the policy's user blocks", async () => {
    await probeRunning();
    const operator = { user: 'nobody', groups: ['packetwatch'] };
    const policyUser = { user: 'packetwatch' };
    const ip = '198.51.100.9';
    const block = { ip, reason: BlockReason.BLOCK_REASON_MANUAL };
    // An operator (in the socket group, not in the control group): status on its socket, no blocks anywhere.
    expect(callAs(operator, 'Probe', env.PW_PROBE_SOCKET!, 'getStatus', {})).toBe('ok');
    expect(callAs(operator, 'Probe', env.PW_PROBE_SOCKET!, 'blockIp', block)).toBe('PERMISSION_DENIED');
    expect(callAs(operator, 'Probe', env.PW_PROBE_CONTROL_SOCKET!, 'blockIp', block)).toBe('UNAVAILABLE');
    expect(callAs(operator, 'Probe', env.PW_PROBE_CONTROL_SOCKET!, 'getStatus', {})).toBe('UNAVAILABLE');
    // Nor root on the operators' socket: the socket, not the caller, carries the role.
    const root = new ProbeClient(`unix://${env.PW_PROBE_SOCKET}`, grpc.credentials.createInsecure());
    try {
      await expect(
        call<BlockIpResponse>((cb) => root.blockIp({ ...block, ttl: undefined }, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb)),
      ).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    } finally {
      root.close();
    }
    // The policy's user, on the control socket.
    expect(callAs(policyUser, 'Probe', env.PW_PROBE_CONTROL_SOCKET!, 'blockIp', block)).toBe('ok');
    expect(callAs(policyUser, 'Probe', env.PW_PROBE_CONTROL_SOCKET!, 'unblockIp', { ip })).toBe('ok');
  }, TEST_MS);

  it('on TCP, accepts a client certificate from its CA and refuses one from another CA, or none', async () => {
    await probeRunning();
    const target = env.PW_PROBE_TCP_ADDR!;
    const good = tlsClient(target, certs, 'operator');
    expect((await getStatus(good)).interface).toBe(net.hostIf);
    good.close();
    const foreign = tlsClient(target, otherCerts, 'operator', join(certs, 'ca.crt'));
    await expect(getStatus(foreign)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    foreign.close();
    const anonymous = new ProbeClient(target, grpc.credentials.createSsl(readFileSync(join(certs, 'ca.crt'))));
    await expect(getStatus(anonymous)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    anonymous.close();
    const plaintext = new ProbeClient(target, grpc.credentials.createInsecure());
    await expect(getStatus(plaintext)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    plaintext.close();
  }, TEST_MS);

  it('on TCP, lets only the policy block on the probe and operators read, whatever else the CA signed', async () => {
    await probeRunning();
    const target = env.PW_PROBE_TCP_ADDR!;
    // A certificate from the CA without a role (no OU), as a careless PKI might issue.
    execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=someone', '-keyout', join(certs, 'someone.key'), '-out', join(certs, 'someone.csr')], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', join(certs, 'someone.csr'), '-CA', join(certs, 'ca.crt'), '-CAkey', join(certs, 'ca.key'), '-days', '1', '-out', join(certs, 'someone.crt')], { stdio: 'ignore' });
    const block = (c: ProbeClient, ip: string) =>
      call<BlockIpResponse>((cb) => c.blockIp({ ip, ttl: undefined, reason: BlockReason.BLOCK_REASON_MANUAL }, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb));
    const unblock = (c: ProbeClient, ip: string) =>
      call<UnblockIpResponse>((cb) => c.unblockIp({ ip }, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb));
    const clients = Object.fromEntries(['probe', 'policy', 'operator', 'someone'].map((n) => [n, tlsClient(target, certs, n)]));
    try {
      // A compromised remote probe, an operator and a role-less certificate cannot block or unblock.
      for (const [name, role] of [['probe', 'has the probe role'], ['operator', 'has the operator role'], ['someone', 'names no role']] as const) {
        for (const attempt of [block(clients[name]!, '198.51.100.9'), unblock(clients[name]!, '198.51.100.9')]) {
          const err = await attempt.then(() => undefined, (e: grpc.ServiceError) => e);
          expect(err?.code, name).toBe(grpc.status.PERMISSION_DENIED);
          expect(err?.details).toContain(role);
        }
      }
      await expect(getStatus(clients.someone!)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      await expect(getStatus(clients.probe!)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
      expect((await getStatus(clients.operator!)).blocks).toBe(0);
      // The policy can.
      expect((await block(clients.policy!, '198.51.100.9')).alreadyBlocked).toBe(false);
      expect((await getStatus(clients.operator!)).blocks).toBe(1);
      expect((await unblock(clients.policy!, '198.51.100.9')).removed).toBe(true);
    } finally {
      for (const c of Object.values(clients)) c.close();
    }
  }, TEST_MS);

  it('streams to a policy over TCP with mutual TLS', async () => {
    const stateDir = join(dir, 'state');
    execFileSync('install', ['-d', '-o', 'packetwatch', '-g', 'packetwatch', stateDir]);
    const tls = { PW_TLS_CERT: join(certs, 'policy.crt'), PW_TLS_KEY: join(certs, 'policy.key'), PW_TLS_CA: join(certs, 'ca.crt') };
    for (const f of ['policy.key', 'probe.key', 'operator.key']) chownSync(join(certs, f), 0, groupId('packetwatch'));
    for (const f of ['policy.key']) chmodSync(join(certs, f), 0o640);
    chmodSync(certs, 0o750);
    chownSync(certs, 0, groupId('packetwatch'));
    // A policy of this test's own, and a probe started afresh to report to it.
    await policy?.stop('SIGKILL');
    const policyPort = await freePort();
    const p = new ServiceProcess(
      ['setpriv', '--reuid=packetwatch', '--regid=packetwatch', '--init-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', process.execPath, POLICY_MAIN],
      {
        ...tls,
        PW_POLICY_SOCKET: join(dir, 'policy.sock'),
        PW_POLICY_REPORT_SOCKET: join(dir, 'report', 'policy.sock'),
        PW_POLICY_TCP_ADDR: `127.0.0.1:${policyPort}`,
        PW_STATE_DIR: stateDir,
        PW_POLICY_PROMETHEUS_PORT: '0',
        PW_LOG_FORMAT: 'json',
      },
    );
    policy = p;
    try {
      await startProbe('full', `127.0.0.1:${policyPort}`);
      const client = tlsClient(env.PW_PROBE_TCP_ADDR!, certs, 'operator');
      try {
        await waitFor('the probe to connect over mutual TLS', async () => ((await getStatus(client).catch(() => undefined))?.policyConnected ? true : undefined), SLOW_MS);
      } finally {
        client.close();
      }
      // The policy's log line reaches us through a pipe.
      await waitFor('the policy to log the probe', () => p.stdout.find((l) => l.includes('"probe connected"')), SLOW_MS);
      // Roles on the policy: a probe's certificate reports and nothing else; an operator's cannot report.
      const target = `127.0.0.1:${policyPort}`;
      const asProbe = new PolicyClient(target, tlsCredentials(certs, 'probe'));
      const asOperator = new PolicyClient(target, tlsCredentials(certs, 'operator'));
      try {
        const allowAll = (c: PolicyClient) =>
          call<AddAllowResponse>((cb) => c.addAllow({ prefix: '0.0.0.0/0', note: 'mine' }, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb));
        await expect(allowAll(asProbe)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
        const report = asOperator.report();
        const refused = await new Promise<grpc.ServiceError>((resolve) => {
          report.on('data', () => {});
          report.on('error', resolve);
        });
        expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
        expect(refused.details).toContain('/packetwatch.v1.Policy/Report is for the probe role');
        const listAllow = await call<ListAllowResponse>((cb) => asOperator.listAllow({}, new grpc.Metadata(), { deadline: Date.now() + CALL_MS }, cb));
        expect(listAllow.entries.map((e) => e.prefix)).not.toContain('0.0.0.0/0');
      } finally {
        asProbe.close();
        asOperator.close();
      }
    } finally {
      await stopProbe();
      await p.stop('SIGKILL');
      policy = undefined;
    }
  }, TEST_MS);

  it('refuses plaintext TCP unless asked, and warns when asked', async () => {
    const port = await freePort();
    const refused = new ServiceProcess([process.execPath, POLICY_MAIN], { PW_POLICY_TCP_ADDR: `127.0.0.1:${port}`, PW_STATE_DIR: join(dir, 'x'), PW_POLICY_SOCKET: join(dir, 'x.sock'), PW_POLICY_REPORT_SOCKET: join(dir, 'x-report.sock') });
    expect(await refused.exited).toBe(2);
    expect(refused.stderr.join('\n')).toContain('invalid PW_POLICY_TCP_ADDR=');
    const insecure = new ServiceProcess([process.execPath, POLICY_MAIN], {
      PW_POLICY_TCP_ADDR: `127.0.0.1:${port}`,
      PW_INSECURE_TCP: 'True',
      PW_STATE_DIR: join(dir, 'y'),
      PW_POLICY_SOCKET: join(dir, 'y.sock'),
      PW_POLICY_REPORT_SOCKET: join(dir, 'y-report.sock'),
      PW_POLICY_PROMETHEUS_PORT: '0',
      PW_LOG_FORMAT: 'json',
    });
    try {
      await waitFor('the warning', () => insecure.stdout.find((l) => l.includes('WITHOUT TLS')), SLOW_MS);
    } finally {
      await insecure.stop('SIGTERM');
    }
  }, TEST_MS);
});
