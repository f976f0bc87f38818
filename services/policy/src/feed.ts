// The live feed behind the table and Watch: connections, whitelist and
// blacklist events. Recent events are kept for Watch's `since`.
//
// Connections arrive at up to a million a second, and most of the time
// nobody watches: a connection is kept raw (time, port, the 16 address bytes
// copied into typed arrays, the probe id by reference) and becomes a
// FeedEvent, with its address formatted, only when someone reads it: a
// subscriber at once, Watch's `since` later. The rarer events (whitelist,
// blacklist, unblock) are kept as the objects they are published as.
import { PortState, probeLabel } from '@packetwatch/bpf/records';
import { formatAddress } from '@packetwatch/common';
import type { TableKind } from '@packetwatch/common';

export type FeedKind = TableKind;

export interface FeedEvent {
  timeMs: number;
  kind: FeedKind;
  source: string;
  /** Destination port of a connection; 0 otherwise. */
  port: number;
  probeId: string;
  message: string;
  /** A blacklist event of a shadow decision: the source would have been blocked. */
  shadow?: boolean;
  /** A connection's PortState when the kernel looked its port up (closed mode); absent otherwise. */
  portState?: number;
}

const ADDR_LEN = 16;

export class Feed {
  readonly #capacity: number;
  /** Per slot: a published object, or undefined for a raw connection (below). */
  readonly #objects: (FeedEvent | undefined)[];
  readonly #times: Float64Array;
  readonly #ports: Uint16Array;
  /** A connection's ProbeKind and TCP flags (its marker: probeLabel). */
  readonly #kinds: Uint8Array;
  readonly #flags: Uint8Array;
  /** A connection's PortState (closed mode: an open port's SYN is marked). */
  readonly #states: Uint8Array;
  readonly #addrs: Uint8Array;
  readonly #probes: (string | undefined)[];
  #next = 0;
  #size = 0;
  readonly #subscribers = new Set<(e: FeedEvent) => void>();

  constructor(recentCapacity = 5000) {
    this.#capacity = recentCapacity;
    this.#objects = new Array<FeedEvent | undefined>(recentCapacity);
    this.#times = new Float64Array(recentCapacity);
    this.#ports = new Uint16Array(recentCapacity);
    this.#kinds = new Uint8Array(recentCapacity);
    this.#flags = new Uint8Array(recentCapacity);
    this.#states = new Uint8Array(recentCapacity);
    this.#addrs = new Uint8Array(recentCapacity * ADDR_LEN);
    this.#probes = new Array<string | undefined>(recentCapacity);
  }

  /** Whether anyone is subscribed (then every connection is formatted as it is published). */
  get watched(): boolean {
    return this.#subscribers.size > 0;
  }

  publish(e: FeedEvent): void {
    const slot = this.#claim();
    this.#objects[slot] = e;
    this.#probes[slot] = undefined;
    this.#times[slot] = e.timeMs;
    for (const s of this.#subscribers) s(e);
  }

  /**
   * A new connection (a probe: a SYN, a stealth segment or a tiny fragment,
   * kind, tcpFlags and portState as in the record): the source address is the 16 bytes
   * at `records[at]` (IPv4-mapped for IPv4), copied; nothing is allocated
   * unless someone is subscribed.
   */
  publishConnection(timeMs: number, records: Uint8Array, at: number, port: number, probeId: string, kind = 0, tcpFlags = 0, portState = 0): void {
    const slot = this.#claim();
    this.#objects[slot] = undefined;
    this.#probes[slot] = probeId;
    this.#times[slot] = timeMs;
    this.#ports[slot] = port;
    this.#kinds[slot] = kind;
    this.#flags[slot] = tcpFlags;
    this.#states[slot] = portState;
    const addrs = this.#addrs;
    const base = slot * ADDR_LEN;
    for (let i = 0; i < ADDR_LEN; i++) addrs[base + i] = records[at + i]!;
    if (this.#subscribers.size === 0) return;
    const e = this.#event(slot);
    for (const s of this.#subscribers) s(e);
  }

  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** Recent events at or after sinceMs, oldest first. */
  since(sinceMs: number): FeedEvent[] {
    const n = this.#capacity;
    const out: FeedEvent[] = [];
    const first = (this.#next - this.#size + n) % n;
    for (let i = 0; i < this.#size; i++) {
      const slot = (first + i) % n;
      if (this.#times[slot]! >= sinceMs) out.push(this.#event(slot));
    }
    return out;
  }

  /**
   * Recent connections at or after sinceMs whose source address (the 16
   * bytes at `at` of `addrs`) `match` takes, newest first, as the caller
   * takes them: only those are formatted, and a caller that has what it
   * needs stops the walk (the evidence of a decision: evidence.ts).
   */
  *connections(sinceMs: number, match: (addrs: Uint8Array, at: number) => boolean): Generator<FeedEvent> {
    const n = this.#capacity;
    for (let i = 1; i <= this.#size; i++) {
      const slot = (this.#next - i + n) % n;
      if (this.#objects[slot] || !(this.#times[slot]! >= sinceMs) || !match(this.#addrs, slot * ADDR_LEN)) continue;
      yield this.#event(slot);
    }
  }

  #claim(): number {
    const slot = this.#next;
    this.#next = (slot + 1) % this.#capacity;
    if (this.#size < this.#capacity) this.#size++;
    return slot;
  }

  #event(slot: number): FeedEvent {
    const o = this.#objects[slot];
    if (o) return o;
    const base = slot * ADDR_LEN;
    const source = formatAddress(Buffer.from(this.#addrs.buffer, this.#addrs.byteOffset + base, ADDR_LEN));
    const portState = this.#states[slot]!;
    const message = probeLabel(this.#kinds[slot]!, this.#flags[slot]!, portState);
    const e: FeedEvent = { timeMs: this.#times[slot]!, kind: 'connection', source, port: this.#ports[slot]!, probeId: this.#probes[slot] ?? '', message };
    if (portState !== PortState.Unknown) e.portState = portState;
    return e;
  }
}
