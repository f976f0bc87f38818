// bpffs: where pinned objects live. A fresh machine may not have it mounted.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readlinkSync, statSync, statfsSync } from 'node:fs';
import { BpfError } from './errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;

export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Mounts bpffs at path (default /sys/fs/bpf) unless it is already there.
 * True when it mounted one: that bpffs is then in this process's mount
 * namespace alone (and in those that share its mounts).
 */
export function mountBpffs(path = '/sys/fs/bpf'): boolean {
  if (isBpffs(path)) return false;
  mkdirSync(path, { recursive: true });
  execFileSync('mount', ['-t', 'bpf', 'bpf', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  return true;
}

/**
 * The devices ("major:minor", as st_dev) of the file systems of one type
 * that a /proc/<pid>/mountinfo text lists. Every `mount -t bpf` makes a new
 * bpffs with a device of its own; a bind mount shows the same device again.
 * @internal
 */
export function mountedDevices(mountinfo: string, fsType: string): Set<string> {
  const devices = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields...] - type source super-options
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep > 0 && fields[sep + 1] === fsType && fields[2] !== undefined) devices.add(fields[2]);
  }
  return devices;
}

/** st_dev as "major:minor", the way mountinfo writes it (glibc's major() and minor()). */
function deviceOf(path: string): string {
  const dev = statSync(path, { bigint: true }).dev;
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * Whether the bpffs holding path is mounted in the mount namespace of
 * process pid: the same bpffs, mounted there or bound there, not merely one
 * at the same place. Pinned objects live as long as their bpffs is mounted
 * somewhere, so a bpffs that the namespace of a process outliving this one
 * holds keeps its pins. Undefined when that process's mounts cannot be read
 * (no procfs, or procfs mounted with hidepid).
 */
export function bpffsMountedIn(path: string, pid: number): boolean | undefined {
  let mountinfo: string;
  try {
    mountinfo = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch {
    return undefined;
  }
  return isBpffs(path) && mountedDevices(mountinfo, 'bpf').has(deviceOf(path));
}

/** The kinds of object a bpffs pin can hold. */
export type PinnedKind = 'map' | 'program' | 'link';

// What /proc/self/fd/N links to for each kind: the kernel names the anonymous
// inode of every BPF descriptor after its kind.
const ANON_INODES: Record<string, PinnedKind> = {
  'anon_inode:bpf-map': 'map',
  'anon_inode:bpf-prog': 'program',
  // A link fd made by BPF_LINK_CREATE is named bpf_link, one opened from a
  // pin (BPF_OBJ_GET) bpf-link.
  'anon_inode:bpf_link': 'link',
  'anon_inode:bpf-link': 'link',
};

/**
 * Throws unless fd, opened from the pin at path, is of the expected kind.
 * BPF_OBJ_GET_INFO_BY_FD answers for whatever the descriptor is, so without
 * this check a pinned map opened as a program (or as an XDP link) would be
 * accepted with its map fields read as program or link fields.
 * @internal
 */
export function checkPinnedKind(fd: number, kind: PinnedKind, path: string): void {
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return; // no procfs: nothing to check against, trust the caller
  }
  const actual = ANON_INODES[target];
  if (actual !== kind) {
    throw new BpfError(`${path} is ${actual ? `a pinned ${actual}` : 'not a BPF object'}, not a ${kind}`, {
      errno: 22,
      code: 'EINVAL',
      op: `open pinned ${kind}`,
    });
  }
}
