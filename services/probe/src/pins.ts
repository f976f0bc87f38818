// Whether the probe's pins (link, blocklist, allowlist) outlive it: the
// promise that a killed probe leaves blocks enforced holds only when they do.
//
// Pinned objects live as long as their bpffs is mounted somewhere. A bpffs
// the probe did not mount is its mounter's, shared with whoever mounted it:
// the host's /sys/fs/bpf, the one PW_BPF_PIN_DIR names, or the host's bound
// into a container (compose): it outlives the probe, and nothing is said.
// One the probe mounted itself (no bpffs at /sys/fs/bpf) is in the probe's
// mount namespace, and outlives it only when that namespace is the host's.
// `ip netns exec` gives its command a mount namespace of its own and mounts
// a fresh sysfs there, so the probe mounts a bpffs that ends with the last
// process in it.
//
// "The host's" is the mount namespace of PID 1 of the initial PID namespace;
// the test is whether the very bpffs (by device: each mount -t bpf makes a
// new one) is in PID 1's mounts. That reads /proc/1/mountinfo, not the
// /proc/1/ns/mnt link, which takes ptrace access to PID 1 that a root
// process short of one of PID 1's capabilities does not have (on the
// development machine, root reading that link gets EACCES); and it also
// holds for a mount that propagated to the host from a namespace sharing
// the host's mounts. In another PID namespace (a container), PID 1 is the
// container's own init, whose mounts end with the container: what the probe
// mounted there is private too.
import { readlinkSync } from 'node:fs';
import { bpffsMountedIn } from 'libbpf-ts';
import type { Logger } from '@packetwatch/common';

/** What becomes of the pins when the probe is gone. */
export type PinLife = 'outlive' | 'private' | 'unknown';

/** What decides it (see the top of this file). */
export interface PinFacts {
  /** The probe mounted the bpffs its pins are on. */
  mountedHere: boolean;
  /** This process is in the initial PID namespace (PID 1 is the host's init). */
  initPidNs: boolean;
  /** That bpffs is in PID 1's mounts; undefined when they cannot be read. */
  heldByInit: boolean | undefined;
}

export function pinLife(f: PinFacts): PinLife {
  if (!f.mountedHere) return 'outlive';
  if (!f.initPidNs) return 'private';
  if (f.heldByInit === undefined) return 'unknown';
  return f.heldByInit ? 'outlive' : 'private';
}

/** The inode of the initial PID namespace (PROC_PID_INIT_INO), fixed by the kernel. */
const INIT_PID_NS = 'pid:[4026531836]';

function inInitPidNs(): boolean {
  try {
    return readlinkSync('/proc/self/ns/pid') === INIT_PID_NS;
  } catch {
    return false;
  }
}

/** The facts for pins in pinDir, on a bpffs the probe mounted (mountedHere) or found. */
export function pinFacts(pinDir: string, mountedHere: boolean): PinFacts {
  return { mountedHere, initPidNs: inInitPidNs(), heldByInit: mountedHere ? bpffsMountedIn(pinDir, 1) : undefined };
}

/** How to keep pins when the probe's own mount namespace is not the host's. */
export const PIN_RECIPE =
  'mount a bpffs on the host and point PW_BPF_PIN_DIR at it: mkdir -p /run/packetwatch-bpffs && mount -t bpf bpf /run/packetwatch-bpffs, then PW_BPF_PIN_DIR=/run/packetwatch-bpffs/<network namespace>';

/** Says at start, as a warning, when pins may end with the probe. */
export function warnPinLife(life: PinLife, pinDir: string, log: Logger): void {
  if (life === 'private') {
    log.warn(
      { pinDir, pinsPrivate: true },
      `pins private to this process: blocks end with it (the probe mounted the bpffs holding ${pinDir} itself, in a mount namespace that is not the host's, as under ip netns exec); to keep them, ${PIN_RECIPE}`,
    );
  } else if (life === 'unknown') {
    log.warn(
      { pinDir, pinsPrivate: false },
      `cannot tell whether pins outlive the probe (the probe mounted the bpffs holding ${pinDir} itself and cannot read /proc/1/mountinfo); in a mount namespace that is not the host's, as under ip netns exec, blocks end with the probe; to keep them, ${PIN_RECIPE}`,
    );
  }
}
