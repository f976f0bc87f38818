// The compose suite: deploy/compose.yml and the images `make images` built,
// brought up by testcontainers, guarding the host end of a veth pair whose
// peer lives in a namespace this suite creates (the attacker). A fast scan
// of three ports of a small HTTP server on the host end gets the attacker
// blocked in XDP; packetwatchctl inside the policy container lists the
// decision; Prometheus scrapes both services and sees the counters move.
// Afterwards nothing is left: no containers, volumes, networks, XDP program
// or pins.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DockerComposeEnvironment, type StartedDockerComposeEnvironment, Wait } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestNet, createTestNet, waitFor } from '@packetwatch/test-support';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(REPO, 'deploy');
const PROJECT = `pwcompose${process.pid}`;
const CURL_TIMEOUT_EXIT = 28;
// The scan is three curls in a row, each a process started in the attacker's
// namespace: on a loaded machine they can take seconds, and all three must
// fall within the window. Ten minutes is ample anywhere, and not the default
// (60 s), so the run also shows that compose passes PW_ settings through.
const WINDOW_SECONDS = 600;

/** Free TCP ports on every address (the probe's metrics listen on 0.0.0.0 of the host). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createTcpServer>>((resolve) => {
      const s = createTcpServer();
      s.listen(0, '0.0.0.0', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** `docker compose` (v2) or `docker-compose` (v1), as deploy/docker-engine.sh picks it. */
function composeCommand(): string[] {
  return execFileSync(join(DEPLOY, 'docker-engine.sh'), ['compose'], { encoding: 'utf8' }).trim().split(' ');
}

/** Project resources still present, by compose's project label. */
function leftovers(): string[] {
  const label = `label=com.docker.compose.project=${PROJECT}`;
  return [
    ['ps', '-aq', '--filter', label],
    ['volume', 'ls', '-q', '--filter', label],
    ['network', 'ls', '-q', '--filter', label],
  ].flatMap((args) => execFileSync('docker', args, { encoding: 'utf8' }).split('\n').filter(Boolean).map((id) => `${args[0]} ${id}`));
}

describe('compose: docker compose up guards an interface', () => {
  let net: TestNet;
  let http: Server[] = [];
  let webPorts: number[];
  let env: Record<string, string>;
  let stack: StartedDockerComposeEnvironment | undefined;
  let promUrl: string;

  // Compose v1 names containers project_service_1, v2 project-service-1.
  const container = (service: string): ReturnType<StartedDockerComposeEnvironment['getContainer']> => {
    for (const name of [`${service}-1`, `${service}_1`]) {
      try {
        return stack!.getContainer(name);
      } catch {
        // the other naming scheme
      }
    }
    throw new Error(`no ${service} container in the stack`);
  };
  const curl = async (port: number, timeout = '5') => {
    const r = await net.inPeer('curl', ['-s', '--connect-timeout', timeout, `http://${net.hostAddr}:${port}/`]);
    return r.code === 0 ? r.stdout : r.code;
  };
  const ctl = async (service: string, args: string[]) => {
    const r = await container(service).exec(['packetwatchctl', ...args]);
    if (r.exitCode !== 0) throw new Error(`packetwatchctl ${args.join(' ')} in ${service}: exit ${r.exitCode}: ${r.output}`);
    return r.stdout;
  };
  const prom = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${promUrl}${path}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { status: string; data: T };
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${JSON.stringify(body)}`);
    return body.data;
  };
  const promValue = async (query: string): Promise<number> => {
    const data = await prom<{ result: { value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(query)}`);
    return data.result.reduce((sum, r) => sum + Number(r.value[1]), 0);
  };
  const inspect = (service: string) =>
    JSON.parse(execFileSync('docker', ['inspect', container(service).getId()], { encoding: 'utf8' }))[0] as {
      Config: { User: string };
      HostConfig: { CapAdd: string[] | null; CapDrop: string[] | null; ReadonlyRootfs: boolean; NetworkMode: string; SecurityOpt: string[] | null };
    };

  beforeAll(async () => {
    net = createTestNet(77);
    // A small HTTP server on the host end: three ports to scan.
    http = await Promise.all(
      [0, 0, 0].map(() => new Promise<Server>((resolve, reject) => {
        const s = createServer((_req, res) => res.end('pong'));
        s.once('error', reject);
        s.listen(0, net.hostAddr, () => resolve(s));
      })),
    );
    webPorts = http.map((s) => (s.address() as { port: number }).port);
    const [probeMetrics, policyMetrics, promPort] = await freePorts(3);
    promUrl = `http://127.0.0.1:${promPort}`;
    env = {
      PW_IFDEV: net.hostIf,
      PW_PORTSCAN_TIME_THRESHOLD: String(WINDOW_SECONDS),
      PW_PROMETHEUS_PORT: String(probeMetrics),
      PW_POLICY_PROMETHEUS_PORT: String(policyMetrics),
      PW_PROMETHEUS_SERVER_PORT: String(promPort),
    };
    const healthy = Wait.forHealthCheck();
    const promReady = Wait.forLogMessage(/Server is ready to receive web requests/);
    stack = await new DockerComposeEnvironment(DEPLOY, 'compose.yml')
      .withProjectName(PROJECT)
      .withEnvironment(env)
      .withWaitStrategy('policy-1', healthy)
      .withWaitStrategy('policy_1', healthy)
      .withWaitStrategy('probe-1', healthy)
      .withWaitStrategy('probe_1', healthy)
      .withWaitStrategy('prometheus-1', promReady)
      .withWaitStrategy('prometheus_1', promReady)
      .withStartupTimeout(120_000)
      .up();
  });

  afterAll(async () => {
    // Stop the stack, remove the datapath with the probe image's own detach
    // command (the pins are on the host's bpffs and outlive containers),
    // then remove containers, volumes and networks.
    const compose = composeCommand();
    const opts = { cwd: DEPLOY, env: { ...process.env, ...env, COMPOSE_PROJECT_NAME: PROJECT }, timeout: 120_000 };
    try {
      if (stack) {
        await stack.stop();
        await run(compose[0]!, [...compose.slice(1), '-f', 'compose.yml', 'run', '--rm', '-T', '--no-deps', 'probe', 'detach'], opts);
      }
    } finally {
      await run(compose[0]!, [...compose.slice(1), '-f', 'compose.yml', 'down', '--volumes', '--remove-orphans', '--timeout', '10'], opts).catch(
        (e: Error) => console.error(`compose down: ${e.message}`),
      );
      await Promise.all(http.map((s) => new Promise((r) => s.close(r))));
      net?.destroy();
    }
  }, 180_000);

  it('runs the probe with the host network and only the capabilities XDP needs, the policy unprivileged and read-only', () => {
    const probe = inspect('probe');
    const policy = inspect('policy');
    expect(probe.HostConfig.NetworkMode).toBe('host');
    expect(probe.HostConfig.CapDrop).toEqual(['ALL']);
    const caps = [...(probe.HostConfig.CapAdd ?? [])].map((c) => c.replace(/^CAP_/, '')).sort();
    // BPF + PERFMON, or SYS_ADMIN in their place on an engine that does not
    // know them (make images records that in deploy/.env).
    const legacyEngine = caps.includes('SYS_ADMIN');
    console.log(`probe capabilities: ${[...new Set(caps)].join(', ')}${legacyEngine ? ' (this Docker engine does not know CAP_BPF/CAP_PERFMON)' : ''}`);
    expect([...new Set(caps)]).toEqual(legacyEngine ? ['NET_ADMIN', 'SYS_ADMIN'] : ['BPF', 'NET_ADMIN', 'PERFMON']);
    expect(probe.HostConfig.ReadonlyRootfs).toBe(true);
    expect(policy.Config.User).toBe('packetwatch:packetwatch');
    expect(policy.HostConfig.CapDrop).toEqual(['ALL']);
    expect(policy.HostConfig.CapAdd ?? []).toEqual([]);
    expect(policy.HostConfig.ReadonlyRootfs).toBe(true);
    expect(policy.HostConfig.NetworkMode).not.toBe('host');
    expect(policy.HostConfig.SecurityOpt).toContain('no-new-privileges:true');
  });

  it('attaches XDP to the interface and pins it on the host bpffs', () => {
    expect(execFileSync('ip', ['link', 'show', 'dev', net.hostIf], { encoding: 'utf8' })).toMatch(/\bxdp\b/);
    expect(existsSync(`/sys/fs/bpf/packetwatch/${net.hostIf}`)).toBe(true);
  });

  it('Prometheus scrapes both services', async () => {
    await waitFor(
      'both targets up',
      async () => {
        const { activeTargets } = await prom<{ activeTargets: { labels: { job: string }; health: string }[] }>('/api/v1/targets');
        const up = (job: string) => activeTargets.some((t) => t.labels.job === job && t.health === 'up');
        return up('packetwatch-probe') && up('packetwatch-policy') ? true : undefined;
      },
      60_000,
    );
  });

  it('blocks a fast scan of three ports: the attacker\'s next connection times out', async () => {
    const connsBefore = await promValue('conn_count_total');
    const detectionsBefore = await promValue('packetwatch_policy_detections_total');
    for (const port of webPorts) expect(await curl(port)).toBe('pong');
    const decision = await waitFor(
      'the decision in packetwatchctl blocks --json',
      async () => {
        const out = JSON.parse(await ctl('policy', ['blocks', '--json'])) as { blocks: { ip: string; origin: string; active: boolean; inKernel: boolean; reason: string }[] };
        return out.blocks.find((b) => b.ip === net.peerAddr);
      },
      20_000,
    );
    expect(decision).toMatchObject({ ip: net.peerAddr, origin: 'detector', active: true, inKernel: true });
    expect(decision.reason).toContain('3 ports');
    for (const port of webPorts) expect(decision.reason).toContain(String(port));
    expect(await curl(webPorts[0]!, '1')).toBe(CURL_TIMEOUT_EXIT);

    // The probe's own view, through its socket in the shared volume.
    const status = JSON.parse(await ctl('probe', ['status', '--json'])) as Record<string, unknown>;
    expect(JSON.stringify(status)).toContain(net.hostIf);

    // Prometheus saw the connections and the detection.
    await waitFor(
      'conn_count_total and packetwatch_policy_detections_total to move in Prometheus',
      async () =>
        (await promValue('conn_count_total')) >= connsBefore + 3 && (await promValue('packetwatch_policy_detections_total')) >= detectionsBefore + 1
          ? true
          : undefined,
      30_000,
    );
  });

  it('tears everything down: no containers, volumes, networks, XDP program or pins', async () => {
    // What afterAll does, run here so that the suite checks it.
    const compose = composeCommand();
    const opts = { cwd: DEPLOY, env: { ...process.env, ...env, COMPOSE_PROJECT_NAME: PROJECT }, timeout: 120_000 };
    await stack!.stop();
    await run(compose[0]!, [...compose.slice(1), '-f', 'compose.yml', 'run', '--rm', '-T', '--no-deps', 'probe', 'detach'], opts);
    await stack!.down({ removeVolumes: true });
    stack = undefined;
    await run(compose[0]!, [...compose.slice(1), '-f', 'compose.yml', 'down', '--volumes', '--remove-orphans'], opts);
    expect(leftovers()).toEqual([]);
    expect(execFileSync('ip', ['link', 'show', 'dev', net.hostIf], { encoding: 'utf8' })).not.toMatch(/\bxdp\b/);
    expect(existsSync(`/sys/fs/bpf/packetwatch/${net.hostIf}`)).toBe(false);
    expect(await curl(webPorts[0]!)).toBe('pong');
  });
});
