// Links: a kernel object that keeps a program attached for as long as a
// descriptor or a bpffs pin refers to it.
import { checkPinnedKind } from './bpffs.js';
import { BpfError, native as call } from './errors.js';
import { native } from './native.js';
import type { Program } from './program.js';
import { type XdpMode, XDP_FLAGS, xdpQuery } from './xdp.js';

export interface LinkInfo {
  id: number;
  type: number;
  progId: number;
  ifindex?: number;
}

const BPF_LINK_TYPE_XDP = 6;

export class XdpLink {
  #fd: number;

  /** @internal use Program.attachXdp() or XdpLink.openPinned(). */
  constructor(
    fd: number,
    readonly ifindex: number,
  ) {
    this.#fd = fd;
  }

  /** Opens a pinned XDP link, e.g. one left by an earlier run of the same service. */
  static openPinned(path: string): XdpLink {
    const fd = call(() => native.objGet(path));
    try {
      checkPinnedKind(fd, 'link', path);
      const info = call(() => native.linkInfo(fd));
      if (info.type !== BPF_LINK_TYPE_XDP || info.ifindex === undefined) {
        throw new BpfError(`${path} is not an XDP link`, { errno: 22, code: 'EINVAL', op: 'open pinned link' });
      }
      return new XdpLink(fd, info.ifindex);
    } catch (e) {
      native.closeFd(fd);
      throw e;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError('link: handle is closed', { errno: 9, code: 'EBADF', op: 'link' });
    return this.#fd;
  }

  info(): LinkInfo {
    return call(() => native.linkInfo(this.fd));
  }

  /** The mode the kernel reports for the program on this link's interface. */
  mode(): XdpMode | 'none' | 'multi' {
    return xdpQuery(this.ifindex).mode;
  }

  /** Pins the link so that the program stays attached after this process exits. */
  pin(path: string): void {
    call(() => native.objPin(this.fd, path));
  }

  /** Atomically replaces the attached program. */
  update(program: Program): void {
    call(() => native.linkUpdate(this.fd, program.fd));
  }

  /** Detaches the program now, even if the link is pinned or has other descriptors. */
  detach(): void {
    call(() => native.linkDetach(this.fd));
  }

  /** Drops this descriptor; an unpinned link detaches when its last descriptor closes. */
  close(): void {
    if (this.#fd >= 0) native.closeFd(this.#fd);
    this.#fd = -1;
  }
}

export function xdpFlags(mode: XdpMode | undefined): number {
  return mode ? XDP_FLAGS[mode] : 0;
}
