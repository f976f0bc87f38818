// `packetwatchctl watch`: Policy.Watch as the seed's live table (the rows
// of @packetwatch/common, as the policy prints them) or as JSON lines.
import { type TableKind, row } from '@packetwatch/common';
import { type WatchEvent, WatchEventKind } from '@packetwatch/proto';

export interface WatchJson {
  time: string | null;
  kind: TableKind | 'unspecified';
  source: string;
  port: number;
  probeId: string;
  message: string;
  /** A blacklist event of a shadow decision: the source would have been added to the blacklist. */
  shadow: boolean;
}

export function kindName(k: WatchEventKind): TableKind | 'unspecified' {
  switch (k) {
    case WatchEventKind.WATCH_EVENT_KIND_CONNECTION:
      return 'connection';
    case WatchEventKind.WATCH_EVENT_KIND_WHITELIST:
      return 'whitelist';
    case WatchEventKind.WATCH_EVENT_KIND_BLACKLIST:
      return 'blacklist';
    case WatchEventKind.WATCH_EVENT_KIND_UNBLOCK:
      return 'unblock';
    default:
      return 'unspecified';
  }
}

export function watchJson(e: WatchEvent): WatchJson {
  return { time: e.time ? e.time.toISOString() : null, kind: kindName(e.kind), source: e.source, port: e.port, probeId: e.probeId, message: e.message, shadow: e.shadow };
}

/** The table row of an event; undefined for a kind this version does not know. */
export function watchRow(e: WatchEvent, nowMs: number): string | undefined {
  const kind = kindName(e.kind);
  if (kind === 'unspecified') return undefined;
  return row({ timeMs: e.time ? e.time.getTime() : nowMs, kind, source: e.source, port: e.port, message: e.message, shadow: e.shadow });
}
