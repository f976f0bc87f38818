// What a probe may send on its Report stream, checked field by field without
// throwing. Whoever can open the stream is a possible attacker: a bad
// message ends that stream with INVALID_ARGUMENT and a reason, never the
// policy, and nothing a peer sends is taken on trust (an own address is one
// address, never a prefix that would allowlist the world).
import { SYN_EVENT_SIZE } from '@packetwatch/bpf/records';
import { formatAddress, parseAddress, parseEndpoint } from '@packetwatch/common';
import type { EventBatch, ProbeHello } from '@packetwatch/proto';

export const PEER_LIMITS = {
  /** Printable ASCII without spaces: the default id is host/interface. */
  probeIdChars: 128,
  /** Linux interface names are at most 15 characters. */
  interfaceChars: 15,
  versionChars: 64,
  endpointChars: 512,
  /** As many as the probe's kernel allowlist can hold at most (PW_ALLOWLIST_SIZE). */
  ownAddresses: 1_048_576,
  /** The probe sends at most PW_BATCH_EVENTS (65,536) events a message. */
  batchEvents: 65_536,
} as const;

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const bad = (reason: string): Checked<never> => ({ ok: false, reason });

/** For messages: the text shown, quoted and cut short, with anything unprintable escaped. */
export function quote(text: string, max = 64): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

function word(field: string, text: string, max: number, allowEmpty = false): string | undefined {
  if (!allowEmpty && text.length === 0) return `${field} is empty`;
  if (text.length > max) return `${field} is longer than ${max} characters`;
  if (!/^[\x21-\x7e]*$/.test(text)) return `${field} ${quote(text)} has characters other than printable ASCII`;
  return undefined;
}

/** Own addresses: single IPv4 or IPv6 addresses, in canonical text. */
export function checkOwnAddresses(list: readonly string[]): Checked<string[]> {
  if (list.length > PEER_LIMITS.ownAddresses) return bad(`more than ${PEER_LIMITS.ownAddresses} own addresses`);
  const out = new Set<string>();
  for (const text of list) {
    if (text.includes('/')) return bad(`own address ${quote(text)} is a prefix; a probe's own addresses are single addresses`);
    try {
      out.add(formatAddress(parseAddress(text)));
    } catch {
      return bad(`own address ${quote(text)} is not an IPv4 or IPv6 address`);
    }
  }
  return ok([...out]);
}

/** The first message of a Report stream. */
export function checkHello(h: ProbeHello): Checked<{ ownAddresses: string[] }> {
  const wrong =
    word('probe_id', h.probeId, PEER_LIMITS.probeIdChars) ??
    word('interface', h.interface, PEER_LIMITS.interfaceChars) ??
    word('version', h.version, PEER_LIMITS.versionChars, true) ??
    word('callback_endpoint', h.callbackEndpoint, PEER_LIMITS.endpointChars);
  if (wrong) return bad(wrong);
  if (!parseEndpoint(h.callbackEndpoint)) return bad(`callback_endpoint ${quote(h.callbackEndpoint)} is not unix:/path or host:port`);
  const own = checkOwnAddresses(h.ownAddresses);
  return own.ok ? ok({ ownAddresses: own.value }) : own;
}

/** An event batch: whole records of the known size, and a loss count a probe could have. */
export function checkBatch(b: EventBatch): Checked<EventBatch> {
  if (b.count > PEER_LIMITS.batchEvents) return bad(`an event batch of ${b.count} events; at most ${PEER_LIMITS.batchEvents}`);
  if (b.count > 0 && b.recordSize !== SYN_EVENT_SIZE) return bad(`event record_size ${b.recordSize}; this policy reads ${SYN_EVENT_SIZE}-byte records`);
  if (b.records.length < b.count * b.recordSize) return bad(`an event batch of ${b.count} records in ${b.records.length} bytes`);
  // No probe loses 2^53 events: a count beyond is forged, and would overflow the counters it adds to.
  if (b.lostEvents > BigInt(Number.MAX_SAFE_INTEGER)) return bad(`lost_events ${b.lostEvents} is beyond any probe's count`);
  return ok(b);
}
