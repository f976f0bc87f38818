// `packetwatchctl allow list`: every allowlist entry the policy knows, from
// PW_ALLOWLIST, from operators, and the probes' own addresses.
import { type AllowEntry, AllowSource } from '@packetwatch/proto';
import { iso, relative, table } from './format.js';

export interface AllowJson {
  prefix: string;
  source: 'configured' | 'operator' | 'ownAddress' | 'unspecified';
  probeId: string | null;
  added: string | null;
  note: string;
}

function sourceName(s: AllowSource): AllowJson['source'] {
  switch (s) {
    case AllowSource.ALLOW_SOURCE_CONFIGURED:
      return 'configured';
    case AllowSource.ALLOW_SOURCE_OPERATOR:
      return 'operator';
    case AllowSource.ALLOW_SOURCE_OWN_ADDRESS:
      return 'ownAddress';
    default:
      return 'unspecified';
  }
}

export function allowJson(e: AllowEntry): AllowJson {
  return { prefix: e.prefix, source: sourceName(e.source), probeId: e.probeId || null, added: iso(e.added), note: e.note };
}

const SOURCE_TEXT: Record<AllowJson['source'], string> = {
  configured: 'PW_ALLOWLIST',
  operator: 'operator',
  ownAddress: 'own address',
  unspecified: '-',
};

export function allowText(entries: readonly AllowJson[], nowMs: number): string {
  if (entries.length === 0) return 'The allowlist is empty.';
  return table(
    ['PREFIX', 'SOURCE', 'PROBE', 'ADDED', 'NOTE'],
    entries.map((e) => [e.prefix, SOURCE_TEXT[e.source], e.probeId ?? '-', relative(e.added === null ? undefined : new Date(e.added), nowMs, '-'), e.note]),
  );
}
