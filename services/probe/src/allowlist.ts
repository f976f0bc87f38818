// The probe's kernel allowlist holds entries of two origins: the interface's
// own addresses (when PW_WHITELIST_SELF is true) and the policy's fleet-wide
// allowlist (PW_ALLOWLIST and operators' entries, sent on the Report
// stream). An entry's value is a bit set of its origins, so that one origin
// can be brought up to date — a restarted probe dropping own addresses the
// interface no longer has, a new list from the policy — without touching the
// other's, even where both name the same prefix. The map is pinned: the
// policy's entries of an earlier run stay in force until the policy sends its
// list again.
import type { Datapath, LpmKey } from '@packetwatch/bpf';
import { type Logger, parsePrefix } from '@packetwatch/common';
import { MapFullError } from 'libbpf-ts';

/** Bits of an allowlist entry's value. */
export enum AllowOrigin {
  OwnAddress = 1,
  Policy = 2,
}

const keyOf = (prefix: string): LpmKey => {
  const p = parsePrefix(prefix);
  return { prefixLen: p.prefixLen, addr: p.addr };
};

const keyText = (k: LpmKey) => `${k.prefixLen}/${k.addr.toString('hex')}`;

/** Adds `origin` to each prefix's entry (creating it). Throws MapFullError when the map has no room. */
export function allowFrom(dp: Datapath, origin: AllowOrigin, prefixes: readonly string[]): void {
  for (const prefix of prefixes) {
    const key = keyOf(prefix);
    dp.allowlist.set(key, (dp.allowlist.get(key) ?? 0) | origin);
  }
}

/** Takes `origin` off each prefix's entry; an entry no origin holds any more is deleted. */
export function disallowFrom(dp: Datapath, origin: AllowOrigin, prefixes: readonly string[]): void {
  for (const prefix of prefixes) {
    const key = keyOf(prefix);
    const bits = (dp.allowlist.get(key) ?? 0) & ~origin;
    if (bits === 0) dp.allowlist.delete(key);
    else dp.allowlist.set(key, bits);
  }
}

/** Makes the entries of `origin` exactly `prefixes`, leaving the other origin's alone. Throws MapFullError when the map has no room. */
export function syncFrom(dp: Datapath, origin: AllowOrigin, prefixes: readonly string[]): void {
  const want = new Set(prefixes.map((p) => keyText(keyOf(p))));
  for (const [key, bits] of [...dp.allowlist.entries()]) {
    if (!(bits & origin) || want.has(keyText(key))) continue;
    if (bits === origin) dp.allowlist.delete(key);
    else dp.allowlist.set(key, bits & ~origin);
  }
  allowFrom(dp, origin, prefixes);
}

/**
 * Holds the policy's list (PolicyAllowlist) in the kernel allowlist. The
 * policy is trusted (it may block and unblock anyway), but its list is still
 * checked: a prefix that does not parse is skipped and named, and a list
 * the map cannot hold is applied as far as it fits, loudly.
 */
export function applyPolicyAllowlist(dp: Datapath, prefixes: readonly string[], log: Logger): void {
  const valid = prefixes.filter((p) => {
    try {
      parsePrefix(p);
      return true;
    } catch (e) {
      log.warn({ prefix: p, err: (e as Error).message }, "the policy's allowlist holds an entry that is not a prefix; skipped");
      return false;
    }
  });
  try {
    syncFrom(dp, AllowOrigin.Policy, valid);
    log.info({ entries: valid.length }, "the policy's allowlist is in the kernel allowlist");
  } catch (e) {
    if (!(e instanceof MapFullError)) throw e;
    log.error({ entries: valid.length, capacity: dp.allowlist.map.maxEntries }, "the kernel allowlist is full: part of the policy's allowlist is NOT in it (raise PW_ALLOWLIST_SIZE)");
  }
}
