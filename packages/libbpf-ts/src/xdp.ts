// Interfaces and the kernel's view of what XDP program is attached where.
import { native as call } from './errors.js';
import { native } from './native.js';

/** driver: native XDP in the NIC driver; generic: the kernel's skb-based fallback. */
export type XdpMode = 'driver' | 'generic' | 'offload';

export const XDP_FLAGS = {
  updateIfNoExist: 1,
  generic: 2,
  driver: 4,
  offload: 8,
} as const;

export interface XdpAttachment {
  /** How the program is attached, or 'none'; 'multi' when several modes are in use at once. */
  mode: XdpMode | 'none' | 'multi';
  /** Id of the attached program when exactly one is attached, else 0. */
  progId: number;
  driverProgId: number;
  genericProgId: number;
  offloadProgId: number;
}

const ATTACH_MODES = ['none', 'driver', 'generic', 'offload', 'multi'] as const;

export function ifindex(iface: string | number): number {
  if (typeof iface === 'number') return iface;
  return call(() => native.ifNameToIndex(iface));
}

export function ifname(index: number): string | undefined {
  return native.ifIndexToName(index);
}

/** What XDP program, if any, is attached to an interface (bpf_xdp_query). */
export function xdpQuery(iface: string | number): XdpAttachment {
  const q = call(() => native.xdpQuery(ifindex(iface)));
  return {
    mode: ATTACH_MODES[q.attachMode] ?? 'multi',
    progId: q.progId,
    driverProgId: q.driverProgId,
    genericProgId: q.genericProgId,
    offloadProgId: q.offloadProgId,
  };
}
