// Authentication and least privilege: who can reach the probe's socket,
// mutual TLS on TCP (a certificate from another CA is refused; the probe's
// stream to the policy works over it), and the probe running with only
// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { groupId } from '@packetwatch/common';
import { type GetStatusResponse, ProbeClient } from '@packetwatch/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BPFFS } from '../privileged-setup.js';
import { type TestNet, createTestNet, waitFor } from './netns.js';
import { PolicyStub } from './policy-stub.js';
import { call, freePort } from './probe-process.js';
import { ServiceProcess } from './services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROBE_MAIN = join(ROOT, 'services/probe/dist/main.js');
const POLICY_MAIN = join(ROOT, 'services/policy/dist/main.js');
const CAP = { NET_ADMIN: 12, PERFMON: 38, BPF: 39 };

/** Calls GetStatus from a separate process running as `user`; resolves to 'ok' or the gRPC status name. */
function statusAs(user: string, socket: string): string {
  const script = `
    import * as grpc from '@grpc/grpc-js';
    import { ProbeClient } from '${join(ROOT, 'proto/dist/src/index.js')}';
    const c = new ProbeClient('unix://${socket}', grpc.credentials.createInsecure());
    c.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err) => {
      console.log(err ? grpc.status[err.code] : 'ok');
      process.exit(0);
    });`;
  const gid = execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim();
  return execFileSync('setpriv', ['--reuid', user, '--regid', gid, '--init-groups', process.execPath, '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();
}

function tlsClient(target: string, certs: string, name: string, ca = join(certs, 'ca.crt')): ProbeClient {
  return new ProbeClient(
    target,
    grpc.credentials.createSsl(readFileSync(ca), readFileSync(join(certs, `${name}.key`)), readFileSync(join(certs, `${name}.crt`))),
  );
}

const getStatus = (c: ProbeClient) => call<GetStatusResponse>((cb) => c.getStatus({}, new grpc.Metadata(), { deadline: Date.now() + 3000 }, cb));

describe('authentication and least privilege', () => {
  let net: TestNet;
  let dir: string;
  let certs: string;
  let otherCerts: string;
  let probe: ServiceProcess | undefined;
  let policy: ServiceProcess | undefined;
  let stub: PolicyStub;
  const pinRoot = `${TEST_BPFFS}/security-${process.pid}`;
  let env: Record<string, string>;

  beforeAll(async () => {
    net = createTestNet(6);
    dir = mkdtempSync(join(tmpdir(), 'pw-sec-'));
    chmodSync(dir, 0o770);
    chownSync(dir, 0, groupId('packetwatch'));
    certs = join(dir, 'certs');
    otherCerts = join(dir, 'other');
    execFileSync(join(ROOT, 'deploy/certs.sh'), [certs, 'probe', 'policy', 'client'], { stdio: 'ignore' });
    execFileSync(join(ROOT, 'deploy/certs.sh'), [otherCerts, 'client'], { stdio: 'ignore' });
    stub = new PolicyStub(join(dir, 'stub.sock'));
    await stub.start();
    env = {
      PW_IFDEV: net.hostIf,
      PW_PROBE_SOCKET: join(dir, 'probe.sock'),
      PW_POLICY_ADDR: `unix:${stub.socketPath}`,
      PW_SOCKET_GROUP: 'packetwatch',
      PW_BPF_PIN_DIR: pinRoot,
      PW_PROMETHEUS_PORT: '0',
      PW_LOG_LEVEL: 'debug',
    };
  });

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
    const tcpPort = await freePort();
    env = {
      ...env,
      PW_PROBE_TCP_ADDR: `127.0.0.1:${tcpPort}`,
      PW_TLS_CERT: join(certs, 'probe.crt'),
      PW_TLS_KEY: join(certs, 'probe.key'),
      PW_TLS_CA: join(certs, 'ca.crt'),
    };
    probe = new ServiceProcess(
      ['setpriv', '--bounding-set=-all,+bpf,+net_admin,+perfmon', `--groups=${groupId('packetwatch')}`, process.execPath, PROBE_MAIN],
      env,
    );
    const client = tlsClient(`127.0.0.1:${tcpPort}`, certs, 'client');
    const st = await waitFor('the capability-limited probe', async () => getStatus(client).catch(() => undefined), 15_000);
    client.close();
    expect(st.interface).toBe(net.hostIf);
    // setpriv execs node: the spawned pid is the probe's.
    const pid = probe.pid!;
    const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
    expect(BigInt(`0x${capEff}`)).toBe((1n << BigInt(CAP.BPF)) | (1n << BigInt(CAP.NET_ADMIN)) | (1n << BigInt(CAP.PERFMON)));
    await waitFor('the hello', () => stub.hellos[0]);
    // It does its job with them: a peer's SYN becomes an event.
    const r = await net.inPeer('curl', ['-s', '--connect-timeout', '3', `http://${net.hostAddr}:1/`]);
    expect(r.code).toBe(7); // refused by the host's stack, after the probe saw the SYN
    await waitFor('the event', () => stub.events.find((e) => e.dport === 1));
  });

  it('lets the socket group call the probe and refuses everyone else', () => {
    expect(statusAs('packetwatch', env.PW_PROBE_SOCKET!)).toBe('ok');
    expect(statusAs('nobody', env.PW_PROBE_SOCKET!)).toBe('UNAVAILABLE');
  });

  it('on TCP, accepts a client certificate from its CA and refuses one from another CA, or none', async () => {
    const target = env.PW_PROBE_TCP_ADDR!;
    const good = tlsClient(target, certs, 'client');
    expect((await getStatus(good)).interface).toBe(net.hostIf);
    good.close();
    const foreign = tlsClient(target, otherCerts, 'client', join(certs, 'ca.crt'));
    await expect(getStatus(foreign)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    foreign.close();
    const anonymous = new ProbeClient(target, grpc.credentials.createSsl(readFileSync(join(certs, 'ca.crt'))));
    await expect(getStatus(anonymous)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    anonymous.close();
    const plaintext = new ProbeClient(target, grpc.credentials.createInsecure());
    await expect(getStatus(plaintext)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    plaintext.close();
  });

  it('streams to a policy over TCP with mutual TLS', async () => {
    await probe!.stop('SIGTERM');
    const stateDir = join(dir, 'state');
    execFileSync('install', ['-d', '-o', 'packetwatch', '-g', 'packetwatch', stateDir]);
    const policyPort = await freePort();
    const tls = { PW_TLS_CERT: join(certs, 'policy.crt'), PW_TLS_KEY: join(certs, 'policy.key'), PW_TLS_CA: join(certs, 'ca.crt') };
    for (const f of ['policy.key', 'probe.key', 'client.key']) chownSync(join(certs, f), 0, groupId('packetwatch'));
    for (const f of ['policy.key']) chmodSync(join(certs, f), 0o640);
    chmodSync(certs, 0o750);
    chownSync(certs, 0, groupId('packetwatch'));
    policy = new ServiceProcess(
      ['setpriv', '--reuid=packetwatch', '--regid=packetwatch', '--init-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', process.execPath, POLICY_MAIN],
      {
        ...tls,
        PW_POLICY_SOCKET: join(dir, 'policy.sock'),
        PW_POLICY_TCP_ADDR: `127.0.0.1:${policyPort}`,
        PW_STATE_DIR: stateDir,
        PW_POLICY_PROMETHEUS_PORT: '0',
        PW_LOG_FORMAT: 'json',
      },
    );
    probe = new ServiceProcess([process.execPath, PROBE_MAIN], { ...env, PW_POLICY_ADDR: `127.0.0.1:${policyPort}` });
    const client = tlsClient(env.PW_PROBE_TCP_ADDR!, certs, 'client');
    await waitFor('the probe to connect over mutual TLS', async () => ((await getStatus(client).catch(() => undefined))?.policyConnected ? true : undefined), 20_000);
    client.close();
    expect(policy.stdout.some((l) => l.includes('"probe connected"'))).toBe(true);
  });

  it('refuses plaintext TCP unless asked, and warns when asked', async () => {
    const port = await freePort();
    const refused = new ServiceProcess([process.execPath, POLICY_MAIN], { PW_POLICY_TCP_ADDR: `127.0.0.1:${port}`, PW_STATE_DIR: join(dir, 'x'), PW_POLICY_SOCKET: join(dir, 'x.sock') });
    expect(await refused.exited).toBe(2);
    expect(refused.stderr.join('\n')).toContain('invalid PW_POLICY_TCP_ADDR=');
    const insecure = new ServiceProcess([process.execPath, POLICY_MAIN], {
      PW_POLICY_TCP_ADDR: `127.0.0.1:${port}`,
      PW_INSECURE_TCP: 'True',
      PW_STATE_DIR: join(dir, 'y'),
      PW_POLICY_SOCKET: join(dir, 'y.sock'),
      PW_POLICY_PROMETHEUS_PORT: '0',
      PW_LOG_FORMAT: 'json',
    });
    await waitFor('the warning', () => insecure.stdout.find((l) => l.includes('WITHOUT TLS')), 10_000);
    await insecure.stop('SIGTERM');
  });
});
