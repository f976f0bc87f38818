// Programs: run them (BPF_PROG_TEST_RUN), attach them (XDP links), pin them.
import { checkPinnedKind } from './bpffs.js';
import { BpfError, native as call } from './errors.js';
import { XdpLink, xdpFlags } from './link.js';
import { native } from './native.js';
import { type XdpMode, ifindex } from './xdp.js';

export interface TestRunOptions {
  /** Packet given to the program. XDP needs at least an Ethernet header (14 bytes). */
  data: Buffer;
  /** Runs in a kernel loop; durationNs is the mean per run. Default 1. */
  repeat?: number;
  /** Context (struct xdp_md for XDP), e.g. to set ingress_ifindex. */
  ctx?: Buffer;
  /** Room for the packet as the program leaves it; default data.length + 256. */
  dataOutSize?: number;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  dataOut: Buffer;
  ctxOut?: Buffer;
}

export interface ProgramInfo {
  id: number;
  name: string;
  type: number;
  tag: string;
}

export interface AttachXdpOptions {
  /** Omitted: the kernel picks driver mode where the driver supports it, else generic. */
  mode?: XdpMode;
}

export class Program {
  #fd: number;
  readonly #owned: boolean;

  /** @internal use Collection.program() or Program.openPinned(). */
  constructor(
    fd: number,
    readonly name: string,
    owned: boolean,
  ) {
    this.#fd = fd;
    this.#owned = owned;
  }

  static openPinned(path: string): Program {
    const fd = call(() => native.objGet(path));
    try {
      checkPinnedKind(fd, 'program', path);
      return new Program(fd, call(() => native.progInfo(fd)).name, true);
    } catch (e) {
      native.closeFd(fd);
      throw e;
    }
  }

  get fd(): number {
    if (this.#fd < 0) throw new BpfError(`program ${this.name}: handle is closed`, { errno: 9, code: 'EBADF', op: 'program' });
    return this.#fd;
  }

  info(): ProgramInfo {
    const i = call(() => native.progInfo(this.fd));
    return { id: i.id, name: i.name, type: i.type, tag: i.tag.toString('hex') };
  }

  /** Runs the program in the kernel on a packet (BPF_PROG_TEST_RUN). */
  testRun(opts: TestRunOptions): TestRunResult {
    const repeat = opts.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`repeat must be a positive integer, got ${repeat}`);
    const r = call(() =>
      native.progTestRun(this.fd, opts.data, repeat, opts.ctx ?? null, opts.dataOutSize ?? opts.data.length + 256),
    );
    return r.ctxOut ? r : { retval: r.retval, durationNs: r.durationNs, dataOut: r.dataOut };
  }

  /** Attaches to an interface through a BPF link. */
  attachXdp(iface: string | number, opts: AttachXdpOptions = {}): XdpLink {
    const index = ifindex(iface);
    const fd = call(() => native.linkCreateXdp(this.fd, index, xdpFlags(opts.mode)));
    return new XdpLink(fd, index);
  }

  pin(path: string): void {
    call(() => native.objPin(this.fd, path));
  }

  close(): void {
    if (this.#fd >= 0 && this.#owned) native.closeFd(this.#fd);
    this.#fd = -1;
  }
}
