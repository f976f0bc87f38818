// bpffs: where pinned objects live. A fresh machine may not have it mounted.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readlinkSync, statfsSync } from 'node:fs';
import { BpfError } from './errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;

export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Mounts bpffs at path (default /sys/fs/bpf) unless it is already there. */
export function mountBpffs(path = '/sys/fs/bpf'): void {
  if (isBpffs(path)) return;
  mkdirSync(path, { recursive: true });
  execFileSync('mount', ['-t', 'bpf', 'bpf', path], { stdio: ['ignore', 'ignore', 'pipe'] });
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
