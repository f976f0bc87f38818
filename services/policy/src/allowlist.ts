// Sources the policy never blocks: configured prefixes, and each probe's own
// addresses when the policy whitelists probes' addresses.
import { type Prefix, formatPrefix, parsePrefix } from '@packetwatch/common';

function covers(p: Prefix, addr: Buffer): boolean {
  const full = p.prefixLen >> 3;
  if (addr.compare(p.addr, 0, full, 0, full) !== 0) return false;
  const rest = p.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr[full] ?? 0) & mask) === ((p.addr[full] ?? 0) & mask);
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
  /** Own addresses by probe id. */
  readonly #own = new Map<string, { text: string; prefix: Prefix }[]>();

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
    return [...this.#own.entries()].map(([id, list]) => [id, list.map((o) => o.text)]);
  }

  /** Adds an operator entry; false when it was there already. */
  addOperator(text: string, addedMs: number, note: string): boolean {
    const canonical = canonicalPrefix(text);
    if (this.#operator.has(canonical)) return false;
    this.#operator.set(canonical, { text: canonical, prefix: parsePrefix(canonical), addedMs, note });
    return true;
  }

  removeOperator(text: string): boolean {
    return this.#operator.delete(canonicalPrefix(text));
  }

  /** Replaces a probe's own addresses; returns those that are new. */
  setOwn(probeId: string, addresses: readonly string[]): string[] {
    const before = new Set((this.#own.get(probeId) ?? []).map((o) => o.text));
    this.#own.set(
      probeId,
      addresses.map((text) => ({ text, prefix: parsePrefix(text) })),
    );
    return addresses.filter((a) => !before.has(a));
  }

  dropOwn(probeId: string): void {
    this.#own.delete(probeId);
  }

  /** Every entry, for status: configured prefixes and own addresses. */
  entries(): string[] {
    const own = [...this.#own.values()].flat().map((o) => o.text);
    return [...new Set([...this.configured, ...this.#operator.keys(), ...own])];
  }

  has(addr: Buffer): boolean {
    for (const c of this.#configured) if (covers(c.prefix, addr)) return true;
    for (const o of this.#operator.values()) if (covers(o.prefix, addr)) return true;
    for (const list of this.#own.values()) for (const o of list) if (covers(o.prefix, addr)) return true;
    return false;
  }
}
