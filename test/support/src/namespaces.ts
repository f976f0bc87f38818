// Network namespaces for the e2e suites and the benches. A victim and an
// attacker namespace joined by a veth pair (createNamespacePair), or a veth
// pair whose host end stays in this namespace, where the XDP program is
// attached, and whose peer end lives in a namespace of its own
// (createTestNet). Traffic only ever flows between the two ends.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A bpffs outside /sys for services run under `ip netns exec`: that remounts
 * /sys in a mount namespace of its own, where pins on /sys/fs/bpf would not
 * outlive the process.
 */
export const TEST_BPFFS = '/run/packetwatch-test-bpffs';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Deletes a namespace, first killing whatever still runs in it: a scan, a
 * flood or a service that a failed test or an interrupted bench left behind
 * would otherwise go on (its namespace, veth and all, alive as long as it
 * runs) after the name is gone.
 */
function deleteNamespace(ns: string): void {
  for (const pid of namespacePids(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  ipIfPresent('netns', 'del', ns);
}

/** ip(...args) on something that may be gone already: a failure is ignored. */
function ipIfPresent(...args: string[]): void {
  try {
    ip(...args);
  } catch {
    // already gone
  }
}

/** The processes running in a namespace (`ip netns pids`); none when there is no such namespace. */
export function namespacePids(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export interface NamespacePair {
  victimNs: string;
  attackerNs: string;
  /** The victim's end of the veth pair (inside victimNs). */
  victimIf: string;
  /** The attacker's end (inside attackerNs): where nmap -e and raw frames leave from. */
  attackerIf: string;
  victimAddr: string;
  attackerAddr: string;
  /** Deletes the veth pair (both ends), as an unplugged or removed interface. */
  unplug(): void;
  /** Creates the pair again with the same names and addresses. */
  plug(): void;
  /**
   * Gives the attacker's end one more IPv4 address, which the victim routes
   * back over the pair (until it is unplugged). The same address on several
   * pairs is one host reaching several victims, as a scanner on the internet
   * reaches a fleet; a connection uses it when bound to it (curl --interface).
   */
  addAttackerAddress(addr: string): void;
  inVictim(cmd: string, args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  inAttacker(cmd: string, args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Sends whole Ethernet frames, as built, out of the attacker's end (a
   * packet socket: nothing of the attacker's stack checks or changes them),
   * so that they arrive on the victim's end as they are.
   */
  sendFromAttacker(frames: readonly Buffer[]): void;
  /** Deletes both namespaces (the veth pair with them), killing what still runs in them. */
  destroy(): void;
}

/** Sends the hex frames on stdin, one a line, out of the interface named by argv[1]. */
const SEND_FRAMES = 'import socket, sys\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind((sys.argv[1], 0))\nfor line in sys.stdin:\n    s.send(bytes.fromhex(line.strip()))\n';

async function execIn(ns: string, cmd: string, args: string[], timeoutMs: number) {
  try {
    const r = await run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** Two namespaces, victim and attacker, joined by a veth pair; `slot` (0-250) keeps concurrent users apart. */
export function createNamespacePair(slot: number): NamespacePair {
  const tag = `${process.pid % 10000}${slot}`;
  const victimNs = `pw-victim-${tag}`;
  const attackerNs = `pw-attacker-${tag}`;
  const victimIf = `pwv${tag}`;
  const attackerIf = `pwa${tag}`;
  const victimAddr = `10.232.${slot}.1`;
  const attackerAddr = `10.232.${slot}.2`;
  const destroy = () => [victimNs, attackerNs].forEach(deleteNamespace);
  const plug = () => {
    ip('link', 'add', victimIf, 'netns', victimNs, 'type', 'veth', 'peer', 'name', attackerIf, 'netns', attackerNs);
    ip('-n', victimNs, 'addr', 'add', `${victimAddr}/24`, 'dev', victimIf);
    ip('-n', attackerNs, 'addr', 'add', `${attackerAddr}/24`, 'dev', attackerIf);
    for (const [ns, dev] of [
      [victimNs, victimIf],
      [attackerNs, attackerIf],
      [victimNs, 'lo'],
      [attackerNs, 'lo'],
    ] as const) {
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
  };
  destroy();
  try {
    ip('netns', 'add', victimNs);
    ip('netns', 'add', attackerNs);
    plug();
  } catch (e) {
    destroy();
    throw e;
  }
  return {
    plug,
    unplug: () => ip('-n', victimNs, 'link', 'del', victimIf),
    addAttackerAddress: (addr) => {
      ip('-n', attackerNs, 'addr', 'add', `${addr}/32`, 'dev', attackerIf);
      ip('-n', victimNs, 'route', 'add', `${addr}/32`, 'dev', victimIf);
    },
    sendFromAttacker: (frames) => {
      execFileSync('ip', ['netns', 'exec', attackerNs, 'python3', '-c', SEND_FRAMES, attackerIf], {
        input: frames.map((f) => f.toString('hex')).join('\n'),
        stdio: ['pipe', 'ignore', 'pipe'],
      });
    },
    victimNs,
    attackerNs,
    victimIf,
    attackerIf,
    victimAddr,
    attackerAddr,
    inVictim: (cmd, args, timeoutMs = 30_000) => execIn(victimNs, cmd, args, timeoutMs),
    inAttacker: (cmd, args, timeoutMs = 30_000) => execIn(attackerNs, cmd, args, timeoutMs),
    destroy,
  };
}

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
  /** Deletes the peer namespace, killing what still runs in it, and the veth pair. */
  destroy(): void;
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
    deleteNamespace(peerNs);
    ipIfPresent('link', 'del', hostIf);
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
    inPeer: (cmd, args, timeoutMs = 20_000) => execIn(peerNs, cmd, args, timeoutMs),
    destroy,
  };
}
