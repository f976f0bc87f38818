import { AllowSource } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { allowJson, allowText } from '../src/allow.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);

describe('allow list', () => {
  const entries = [
    { prefix: '10.0.0.0/8', source: AllowSource.ALLOW_SOURCE_CONFIGURED, probeId: '', added: new Date(NOW - 3600_000), note: 'PW_ALLOWLIST' },
    { prefix: '192.0.2.7/32', source: AllowSource.ALLOW_SOURCE_OPERATOR, probeId: '', added: new Date(NOW - 90_000), note: 'monitoring' },
    { prefix: '127.0.0.1/32', source: AllowSource.ALLOW_SOURCE_OWN_ADDRESS, probeId: 'host/lo', added: undefined, note: 'own address' },
  ].map(allowJson);

  it('has stable JSON fields', () => {
    expect(entries).toEqual([
      { prefix: '10.0.0.0/8', source: 'configured', probeId: null, added: '2026-11-25T11:00:00.000Z', note: 'PW_ALLOWLIST' },
      { prefix: '192.0.2.7/32', source: 'operator', probeId: null, added: '2026-11-25T11:58:30.000Z', note: 'monitoring' },
      { prefix: '127.0.0.1/32', source: 'ownAddress', probeId: 'host/lo', added: null, note: 'own address' },
    ]);
  });

  it('is an aligned table', () => {
    expect(allowText(entries, NOW)).toBe(
      [
        'PREFIX        SOURCE        PROBE    ADDED   NOTE',
        '10.0.0.0/8    PW_ALLOWLIST  -        1h ago  PW_ALLOWLIST',
        '192.0.2.7/32  operator      -        1m ago  monitoring',
        '127.0.0.1/32  own address   host/lo  -       own address',
      ].join('\n'),
    );
  });

  it('says when it is empty', () => {
    expect(allowText([], NOW)).toBe('The allowlist is empty.');
  });
});
