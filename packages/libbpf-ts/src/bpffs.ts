// bpffs: where pinned objects live. A fresh machine may not have it mounted.
import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync } from 'node:fs';

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
