// Sources the policy never blocks: configured prefixes and operators'
// entries, everywhere; and each probe's own addresses (when the policy
// whitelists probes' addresses), on that probe only: a peer that claims an
// address as its own shields it from its own blocks, never from the others'.
// Every check here is by address, never by the source's prefix: an
// allowlisted address inside a blocked /64 keeps passing (the kernel's
// allowlist goes by address too), and only an entry covering a whole prefix
// stands in the way of blocking it (coversWhole).
import { type Prefix, formatPrefix, parsePrefix } from '@packetwatch/common';
import { type SourceKey, SourceKeys, V6, addressAt } from './sourcekey.js';

/** Whether the 16-byte address at buf[at] lies in prefix p. */
function coversAt(p: Prefix, buf: Uint8Array, at: number): boolean {
  const full = p.prefixLen >> 3;
  const net = p.addr;
  for (let i = 0; i < full; i++) if (buf[at + i] !== net[i]) return false;
  const rest = p.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((buf[at + full] ?? 0) & mask) === ((net[full] ?? 0) & mask);
}

function covers(p: Prefix, addr: Buffer): boolean {
  return coversAt(p, addr, 0);
}

function sameAt(a: Buffer, buf: Uint8Array, at: number): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== buf[at + i]) return false;
  return true;
}

/** ::ffff:0.0.0.0, the first IPv4-mapped address. */
const V4_MAPPED_ZERO = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * The allowlist's prefixes in the form the hot path checks (rebuilt when an
 * entry changes): IPv4 prefixes as (network, mask) numbers, matched against
 * the numeric key of an IPv4 source without touching its bytes; the others
 * as byte prefixes. `allV4`: a prefix shorter than /96 covers every IPv4
 * address (::/0, ::ffff:0:0/96's parents).
 */
interface Compiled {
  v4Nets: Uint32Array;
  v4Masks: Uint32Array;
  v6: Prefix[];
  allV4: boolean;
}

function compile(prefixes: readonly Prefix[]): Compiled {
  const nets: number[] = [];
  const masks: number[] = [];
  const v6: Prefix[] = [];
  let allV4 = false;
  for (const p of prefixes) {
    if (p.prefixLen >= 96 && coversAt({ addr: V4_MAPPED_ZERO, prefixLen: 96 }, p.addr, 0)) {
      const bits = p.prefixLen - 96;
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      nets.push(p.addr.readUInt32BE(12) & mask);
      masks.push(mask);
    } else {
      v6.push(p);
      if (p.prefixLen < 96 && coversAt(p, V4_MAPPED_ZERO, 0)) allV4 = true;
    }
  }
  return { v4Nets: Uint32Array.from(nets, (n) => n >>> 0), v4Masks: Uint32Array.from(masks), v6, allV4 };
}

export interface OperatorEntry {
  text: string;
  prefix: Prefix;
  addedMs: number;
  note: string;
}

/** The canonical text of a prefix ("192.0.2.0/24", "2001:db8::7/128"). */
export function canonicalPrefix(text: string): string {
  return formatPrefix(parsePrefix(text));
}

export { covers };

export class Allowlist {
  readonly #configured: { text: string; prefix: Prefix }[];
  /** Entries an operator added (AddAllow), by canonical text. */
  readonly #operator = new Map<string, OperatorEntry>();
  /**
   * Own addresses by probe id (single addresses: the Report stream refuses
   * prefixes): their 16 bytes, and the keys of the sources they fall in,
   * so that the per-event check compares bytes only for a source of the
   * probe's own prefix.
   */
  readonly #own = new Map<string, { texts: string[]; addrs: Buffer[]; keys: Set<SourceKey> }>();
  /** The prefixes compiled for hasSource(); undefined after any change, rebuilt on the next check. */
  #compiled: Compiled | undefined;

  /** keys: how sources are keyed (the prefix lengths); each address alone by default. */
  constructor(
    configured: readonly string[],
    readonly keys: SourceKeys = new SourceKeys(),
  ) {
    this.#configured = configured.map((text) => ({ text, prefix: parsePrefix(text) }));
  }

  get configured(): string[] {
    return this.#configured.map((c) => c.text);
  }

  get operator(): OperatorEntry[] {
    return [...this.#operator.values()];
  }

  /** Own addresses by probe id. */
  get own(): [probeId: string, addresses: string[]][] {
    return [...this.#own.entries()].map(([id, o]) => [id, o.texts]);
  }

  /** Adds an operator entry; false when it was there already. */
  addOperator(text: string, addedMs: number, note: string): boolean {
    const canonical = canonicalPrefix(text);
    if (this.#operator.has(canonical)) return false;
    this.#operator.set(canonical, { text: canonical, prefix: parsePrefix(canonical), addedMs, note });
    this.#compiled = undefined;
    return true;
  }

  removeOperator(text: string): boolean {
    this.#compiled = undefined;
    return this.#operator.delete(canonicalPrefix(text));
  }

  /** Replaces a probe's own addresses; returns those that are new. */
  setOwn(probeId: string, addresses: readonly string[]): string[] {
    const before = new Set(this.#own.get(probeId)?.texts);
    const addrs = addresses.map((a) => parsePrefix(a).addr);
    this.#own.set(probeId, { texts: [...addresses], addrs, keys: new Set(addrs.map((a) => this.keys.of(a))) });
    return addresses.filter((a) => !before.has(a));
  }

  dropOwn(probeId: string): void {
    this.#own.delete(probeId);
  }

  /**
   * Whether the address at buf[at] is one of that probe's own addresses;
   * key: its source's key (SourceKeys.at). The hot path's check: a set
   * lookup, and a byte comparison only for sources of the probe's own prefix.
   */
  isOwn(probeId: string, key: SourceKey, buf: Uint8Array, at: number): boolean {
    const own = this.#own.get(probeId);
    if (!own?.keys.has(key)) return false;
    for (const a of own.addrs) if (sameAt(a, buf, at)) return true;
    return false;
  }

  /** Whether a 16-byte address is one of that probe's own addresses. */
  isOwnAddress(probeId: string, addr: Buffer): boolean {
    return this.isOwn(probeId, this.keys.of(addr), addr, 0);
  }

  /** The fleet-wide entries (configured, then operators'), canonical: what every probe's kernel allowlist holds. */
  fleet(): string[] {
    return [...new Set([...this.#configured.map((c) => formatPrefix(c.prefix)), ...this.#operator.keys()])];
  }

  /** Every entry, for status: configured prefixes, operators' entries and own addresses. */
  entries(): string[] {
    const own = [...this.#own.values()].flatMap((o) => o.texts);
    return [...new Set([...this.configured, ...this.#operator.keys(), ...own])];
  }

  /** Whether the fleet-wide entries (configured, operators') cover the address. */
  has(addr: Buffer): boolean {
    return this.hasSource(addressAt(addr, 0), addr, 0);
  }

  /**
   * Whether one fleet-wide entry covers every address of prefix p: only
   * then is blocking the prefix pointless (an entry covering some of its
   * addresses keeps those passing inside the block).
   */
  coversWhole(p: Prefix): boolean {
    return this.#prefixes().some((e) => e.prefixLen <= p.prefixLen && covers(e, p.addr));
  }

  /**
   * Whether the fleet-wide entries cover the address at buf[at] (16 bytes); key is
   * addressAt(buf, at). The hot path's check: no allocation, IPv4 addresses are
   * matched as numbers.
   */
  hasSource(key: number | typeof V6, buf: Uint8Array, at: number): boolean {
    const c = (this.#compiled ??= compile(this.#prefixes()));
    if (typeof key === 'number') {
      if (c.allV4) return true;
      const nets = c.v4Nets;
      const masks = c.v4Masks;
      for (let i = 0; i < nets.length; i++) if (((key & masks[i]!) >>> 0) === nets[i]) return true;
      return false;
    }
    for (const p of c.v6) if (coversAt(p, buf, at)) return true;
    return false;
  }

  #prefixes(): Prefix[] {
    return [...this.#configured.map((c) => c.prefix), ...[...this.#operator.values()].map((o) => o.prefix)];
  }
}
