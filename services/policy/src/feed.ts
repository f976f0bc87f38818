// The live feed behind the table and Watch: connections, whitelist and
// blacklist events. Recent events are kept for Watch's `since`.
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
}

export class Feed {
  readonly #recent: (FeedEvent | undefined)[];
  #next = 0;
  readonly #subscribers = new Set<(e: FeedEvent) => void>();

  constructor(recentCapacity = 5000) {
    this.#recent = new Array<FeedEvent | undefined>(recentCapacity);
  }

  publish(e: FeedEvent): void {
    this.#recent[this.#next] = e;
    this.#next = (this.#next + 1) % this.#recent.length;
    for (const s of this.#subscribers) s(e);
  }

  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /** Recent events at or after sinceMs, oldest first. */
  since(sinceMs: number): FeedEvent[] {
    const n = this.#recent.length;
    const out: FeedEvent[] = [];
    for (let i = 0; i < n; i++) {
      const e = this.#recent[(this.#next + i) % n];
      if (e && e.timeMs >= sinceMs) out.push(e);
    }
    return out;
  }
}
