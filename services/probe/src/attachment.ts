// The datapath on one interface, pinned under <pinRoot>/<ifname>/ so that
// blocks stay enforced while the probe is down or restarting. A starting
// probe adopts what an earlier run pinned (same maps, one program on the
// interface) instead of attaching a second time.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Datapath, DropMode } from '@packetwatch/bpf';
import type { Logger } from '@packetwatch/common';
import { BpfError, XdpLink, type XdpMode, ifindex, isBpffs, mountBpffs, xdpQuery } from 'libbpf-ts';
import { ConfigError } from '@packetwatch/common';
import { type PinLife, pinFacts, pinLife, warnPinLife } from './pins.js';

export interface AttachOptions {
  ifname: string;
  pinRoot: string;
  mode: 'auto' | 'driver' | 'generic';
  dropMode: 'syn' | 'all';
  blocklistSize: number;
  allowlistSize: number;
  ringbufBytes: number;
  /** In-kernel scan detection: N (0 = off), window, block TTL, per-minute cap, the TTL beyond it, table size. */
  scan: KernelScan;
  log: Logger;
}

export interface KernelScan {
  ports: number;
  windowSeconds: number;
  blockSeconds: number;
  blocksPerMinute: number;
  cappedBlockSeconds: number;
  tableSize: number;
  probationSize: number;
  ipv6Prefix: number;
  ipv4Prefix: number;
  /** Shadow mode: the program's blocks drop nothing. */
  shadow: boolean;
  /** Closed mode, and the ports declared open (inclusive ranges). */
  countClosed: boolean;
  openPorts: readonly (readonly [number, number])[];
}

export interface Attachment {
  dp: Datapath;
  link: XdpLink;
  ifindex: number;
  mode: XdpMode | 'none' | 'multi';
  adopted: boolean;
  pinDir: string;
  /** What becomes of the pins, and so of the blocks, when the probe is gone. */
  pins: PinLife;
}

export const LINK_PIN = 'link';

/** The interface's pin directory: a direct child of pinRoot, never the root itself or anything outside it. */
export function pinDirFor(pinRoot: string, ifname: string): string {
  const dir = join(pinRoot, ifname);
  if (ifname === '' || ifname === '.' || ifname === '..' || ifname.includes('/') || dirname(dir) !== resolve(pinRoot)) {
    throw new RangeError(`no pin directory for interface name ${JSON.stringify(ifname)} under ${pinRoot}`);
  }
  return dir;
}

function attachFresh(dp: Datapath, index: number, mode: AttachOptions['mode'], log: Logger): XdpLink {
  if (mode !== 'auto') return dp.program.attachXdp(index, { mode });
  try {
    return dp.program.attachXdp(index, { mode: 'driver' });
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    log.warn({ err: e.message }, 'native (driver) XDP unavailable on this interface; falling back to generic XDP');
    return dp.program.attachXdp(index, { mode: 'generic' });
  }
}

/** Opens the pinned link when it still holds an XDP program on this interface. */
function openAdoptable(path: string, index: number, log: Logger): XdpLink | undefined {
  if (!existsSync(path)) return undefined;
  let link: XdpLink;
  try {
    link = XdpLink.openPinned(path);
  } catch (e) {
    log.warn({ err: (e as Error).message, path }, 'pinned link unusable; attaching afresh');
    rmSync(path, { force: true });
    return undefined;
  }
  // A link whose interface vanished reports ifindex 0; one for another index
  // belongs to an interface that was deleted and recreated.
  if (link.ifindex !== index || link.info().progId === 0) {
    log.warn({ pinnedIfindex: link.ifindex, ifindex: index }, 'pinned link belongs to a vanished interface; attaching afresh');
    link.close();
    rmSync(path, { force: true });
    return undefined;
  }
  return link;
}

function loadDatapath(o: Omit<AttachOptions, 'ifname' | 'pinRoot' | 'mode' | 'log'>, pinDir: string): Datapath {
  return Datapath.load({
    dropMode: o.dropMode === 'all' ? DropMode.All : DropMode.Syn,
    blocklistSize: o.blocklistSize,
    allowlistSize: o.allowlistSize,
    ringBufferBytes: o.ringbufBytes,
    pinDir,
    scanPorts: o.scan.ports,
    scanWindowSeconds: o.scan.windowSeconds,
    scanBlockSeconds: o.scan.blockSeconds,
    scanBlocksPerMinute: o.scan.blocksPerMinute,
    scanCappedBlockSeconds: o.scan.cappedBlockSeconds,
    scanTableSize: o.scan.tableSize,
    scanProbationSize: o.scan.probationSize,
    ipv6Prefix: o.scan.ipv6Prefix,
    ipv4Prefix: o.scan.ipv4Prefix,
    shadow: o.scan.shadow,
    countClosed: o.scan.countClosed,
    openPorts: o.scan.openPorts,
  });
}

export function attach(o: AttachOptions): Attachment {
  // A fresh machine has no bpffs at /sys/fs/bpf: mount it, as agents do.
  const mountedHere = (o.pinRoot === '/sys/fs/bpf' || o.pinRoot.startsWith('/sys/fs/bpf/')) && mountBpffs();
  const index = ifindex(o.ifname);
  const pinDir = pinDirFor(o.pinRoot, o.ifname);
  mkdirSync(pinDir, { recursive: true, mode: 0o700 });
  // Pins outside a bpffs would not pin anything: refused. Pins on a bpffs
  // private to this process's mount namespace (as under `ip netns exec`,
  // which remounts /sys) vanish with it: said, loudly (pins.ts).
  if (!isBpffs(pinDir)) throw new ConfigError('PW_BPF_PIN_DIR', o.pinRoot, 'a directory on a bpffs mount (mount -t bpf bpf <dir>)');
  const pins = pinLife(pinFacts(pinDir, mountedHere));
  warnPinLife(pins, pinDir, o.log);
  // Maps pinned by an earlier run are reused as they are (libbpf checks they
  // are compatible), so the blocklist survives restarts and upgrades.
  const dp = loadDatapath(o, pinDir);
  try {
    const linkPath = join(pinDir, LINK_PIN);
    const pinned = openAdoptable(linkPath, index, o.log);
    let link: XdpLink;
    if (pinned) {
      // Same maps, same interface: swap in this run's program atomically. The
      // interface never goes unprotected, and never runs two programs.
      pinned.update(dp.program);
      link = pinned;
    } else {
      link = attachFresh(dp, index, o.mode, o.log);
      link.pin(linkPath);
    }
    const mode = xdpQuery(index).mode;
    o.log.info({ interface: o.ifname, ifindex: index, mode, adopted: Boolean(pinned), pinDir }, pinned ? 'adopted pinned XDP attachment' : 'attached XDP program');
    return { dp, link, ifindex: index, mode, adopted: Boolean(pinned), pinDir, pins };
  } catch (e) {
    dp.close();
    throw e;
  }
}

/**
 * Loads the program again with other scan constants, on the same pinned
 * maps (blocklist, allowlist, generation, counters, events ring), and swaps
 * it in atomically on the link: the interface is never without a program.
 * The detector's own state (scanners, per-minute budget) starts afresh.
 * Returns the previous Datapath, which the caller closes once every part
 * holding it has moved to att.dp; on failure att is unchanged.
 */
export function reload(att: Attachment, o: Omit<AttachOptions, 'ifname' | 'pinRoot' | 'mode' | 'log'>): Datapath {
  const dp = loadDatapath(o, att.pinDir);
  try {
    att.link.update(dp.program);
  } catch (e) {
    dp.close();
    throw e;
  }
  const old = att.dp;
  att.dp = dp;
  return old;
}

/** Removes the link (detaching the program), the pinned maps and the pin directory. */
export function detach(pinRoot: string, ifname: string, log: Logger): boolean {
  const pinDir = pinDirFor(pinRoot, ifname);
  if (!existsSync(pinDir)) {
    log.info({ pinDir }, 'nothing pinned for this interface');
    return false;
  }
  const linkPath = join(pinDir, LINK_PIN);
  if (existsSync(linkPath)) {
    try {
      const link = XdpLink.openPinned(linkPath);
      link.detach();
      link.close();
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'pinned link could not be detached; removing the pin');
    }
  }
  rmSync(pinDir, { recursive: true, force: true });
  log.info({ interface: ifname, pinDir }, 'detached: link, maps and pins removed');
  return true;
}

export type AttachState = 'attached' | 'interface-missing' | 'detached';

/**
 * Keeps the program attached while the interface comes and goes. A link
 * dies with its interface; when an interface of the same name appears again
 * (deleted and recreated), the program is attached to it afresh. Down/up
 * keeps the link, so nothing is needed then. Every change is reported, never
 * silent.
 */
export function checkAttachment(
  att: Attachment,
  o: Pick<AttachOptions, 'ifname' | 'mode' | 'log'>,
): { state: AttachState; changed: boolean } {
  let index: number;
  try {
    index = ifindex(o.ifname);
  } catch {
    return { state: 'interface-missing', changed: false };
  }
  const progId = att.dp.program.info().id;
  if (index === att.ifindex && xdpQuery(index).progId === progId) return { state: 'attached', changed: false };
  // The interface is new (or our program was removed from it): attach again.
  try {
    const link = attachFresh(att.dp, index, o.mode, o.log);
    const linkPath = join(att.pinDir, LINK_PIN);
    rmSync(linkPath, { force: true });
    link.pin(linkPath);
    att.link.close();
    att.link = link;
    att.ifindex = index;
    att.mode = xdpQuery(index).mode;
    o.log.warn({ interface: o.ifname, ifindex: index, mode: att.mode }, 'interface reappeared: XDP program attached again');
    return { state: 'attached', changed: true };
  } catch (e) {
    o.log.error({ interface: o.ifname, err: (e as Error).message }, 'could not attach the XDP program again');
    return { state: 'detached', changed: false };
  }
}
