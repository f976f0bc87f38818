// The watched interface's own addresses, re-read periodically so that the
// allowlist follows them (DHCP renewals, added IPv6 addresses, ...).
import { networkInterfaces } from 'node:os';
import { formatAddress, parseAddress } from '@packetwatch/common';

/** The interface's IPv4 and IPv6 addresses in canonical text, sorted; zone ids dropped. */
export function interfaceAddresses(ifname: string): string[] {
  const list = networkInterfaces()[ifname] ?? [];
  const out = new Set<string>();
  for (const a of list) out.add(formatAddress(parseAddress(a.address.split('%')[0]!)));
  return [...out].sort();
}

export interface AddressChange {
  added: string[];
  removed: string[];
  current: string[];
}

export class AddressWatcher {
  #current: string[];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly ifname: string,
    private readonly onChange: (c: AddressChange) => void,
  ) {
    this.#current = interfaceAddresses(ifname);
  }

  get current(): string[] {
    return this.#current;
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => this.check(), intervalMs);
    this.#timer.unref();
  }

  check(): void {
    const next = interfaceAddresses(this.ifname);
    const added = next.filter((a) => !this.#current.includes(a));
    const removed = this.#current.filter((a) => !next.includes(a));
    if (added.length === 0 && removed.length === 0) return;
    this.#current = next;
    this.onChange({ added, removed, current: next });
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
