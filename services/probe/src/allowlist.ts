// The probe's share of the kernel allowlist: the interface's own addresses
// (when PW_WHITELIST_SELF is true). Entries carry their origin in the value,
// so a restarted probe can drop the own addresses of an earlier run that the
// interface no longer has without touching entries of other origins.
import type { Datapath } from '@packetwatch/bpf';
import { parsePrefix } from '@packetwatch/common';

export enum AllowOrigin {
  OwnAddress = 1,
  Configured = 2,
}

export function addOwn(dp: Datapath, addresses: readonly string[]): void {
  for (const a of addresses) {
    const p = parsePrefix(a);
    dp.allowlist.set({ prefixLen: p.prefixLen, addr: p.addr }, AllowOrigin.OwnAddress);
  }
}

export function removeOwn(dp: Datapath, addresses: readonly string[]): void {
  for (const a of addresses) {
    const p = parsePrefix(a);
    dp.allowlist.delete({ prefixLen: p.prefixLen, addr: p.addr });
  }
}

/** Makes the own-address entries exactly `addresses` (or none). */
export function syncOwn(dp: Datapath, addresses: readonly string[]): void {
  const want = new Set(addresses.map((a) => {
    const p = parsePrefix(a);
    return `${p.prefixLen}/${p.addr.toString('hex')}`;
  }));
  for (const [key, origin] of [...dp.allowlist.entries()]) {
    if (origin === AllowOrigin.OwnAddress && !want.has(`${key.prefixLen}/${key.addr.toString('hex')}`)) dp.allowlist.delete(key);
  }
  addOwn(dp, addresses);
}
