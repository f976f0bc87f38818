// Test networks: a veth pair whose host end stays in this namespace (where
// the XDP program is attached) and whose peer end lives in a network
// namespace created for the test. Traffic only ever flows between the two.
// The victim/attacker pair and waitFor live in bench/namespaces.ts, shared
// with the benches.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export { type NamespacePair, createNamespacePair, waitFor } from '../../bench/namespaces.js';

/** Whether an XDP program is attached to the interface, as `ip link` shows it inside the namespace. */
export function xdpAttached(netns: string, ifname: string): boolean {
  const [link] = JSON.parse(execFileSync('ip', ['-n', netns, '-j', 'link', 'show', 'dev', ifname], { encoding: 'utf8' })) as { xdp?: unknown }[];
  return link?.xdp !== undefined;
}

export interface TestNet {
  /** Interface name of the host end (attach XDP here). */
  hostIf: string;
  hostAddr: string;
  peerNs: string;
  peerAddr: string;
  hostAddr6: string;
  peerAddr6: string;
  /** Runs a command inside the peer namespace. */
  inPeer(cmd: string, args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  destroy(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates the pair; `slot` (0-250) keeps the addresses of concurrent suites apart. */
export function createTestNet(slot: number): TestNet {
  const tag = `${process.pid % 10000}${slot}`;
  const hostIf = `pwh${tag}`;
  const peerIf = `pwp${tag}`;
  const peerNs = `pw-peer-${tag}`;
  const hostAddr = `10.231.${slot}.1`;
  const peerAddr = `10.231.${slot}.2`;
  const hostAddr6 = `fd00:231:${slot.toString(16)}::1`;
  const peerAddr6 = `fd00:231:${slot.toString(16)}::2`;

  const destroy = () => {
    for (const args of [['netns', 'del', peerNs], ['link', 'del', hostIf]]) {
      try {
        ip(...args);
      } catch {
        // already gone
      }
    }
  };
  destroy();
  try {
    ip('netns', 'add', peerNs);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peerIf);
    ip('link', 'set', peerIf, 'netns', peerNs);
    ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    ip('addr', 'add', `${hostAddr6}/64`, 'dev', hostIf, 'nodad');
    ip('link', 'set', hostIf, 'up');
    ip('-n', peerNs, 'addr', 'add', `${peerAddr}/30`, 'dev', peerIf);
    ip('-n', peerNs, 'addr', 'add', `${peerAddr6}/64`, 'dev', peerIf, 'nodad');
    ip('-n', peerNs, 'link', 'set', peerIf, 'up');
    ip('-n', peerNs, 'link', 'set', 'lo', 'up');
  } catch (e) {
    destroy();
    throw e;
  }

  return {
    hostIf,
    hostAddr,
    peerNs,
    peerAddr,
    hostAddr6,
    peerAddr6,
    async inPeer(cmd, args, timeoutMs = 20_000) {
      try {
        const r = await run('ip', ['netns', 'exec', peerNs, cmd, ...args], { timeout: timeoutMs });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (e) {
        const err = e as { code?: number | string; stdout?: string; stderr?: string };
        if (typeof err.code !== 'number') throw e;
        return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
      }
    },
    destroy,
  };
}
