// Sources the policy never blocks: configured prefixes and operators'
// entries, everywhere; and each probe's own addresses (when the policy
// whitelists probes' addresses), on that probe only: a peer that claims an
// address as its own shields it from its own blocks, never from the others'.
import { type Prefix, formatPrefix, parsePrefix } from '@packetwatch/common';
import { type SourceKey, sourceKey as sourceKeyOf } from './sourcekey.js';

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
  /** Own addresses by probe id (single addresses: the Report stream refuses prefixes). */
  readonly #own = new Map<string, { texts: string[]; keys: Set<SourceKey> }>();
  /** The prefixes compiled for hasSource(); undefined after any change, rebuilt on the next check. */
  #compiled: Compiled | undefined;

  constructor(configured: readonly string[]) {
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
    this.#own.set(probeId, { texts: [...addresses], keys: new Set(addresses.map((a) => sourceKeyOf(parsePrefix(a).addr, 0))) });
    return addresses.filter((a) => !before.has(a));
  }

  dropOwn(probeId: string): void {
    this.#own.delete(probeId);
  }

  /** Whether the source is one of that probe's own addresses (its key: sourcekey.ts). */
  isOwn(probeId: string, key: SourceKey): boolean {
    return this.#own.get(probeId)?.keys.has(key) ?? false;
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
    return this.hasSource(sourceKeyOf(addr, 0), addr, 0);
  }

  /**
   * Whether the fleet-wide entries cover the source at buf[at] (16 bytes); key is its
   * sourceKey(). The hot path's check: no allocation, IPv4 sources are
   * matched as numbers.
   */
  hasSource(key: SourceKey, buf: Uint8Array, at: number): boolean {
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
