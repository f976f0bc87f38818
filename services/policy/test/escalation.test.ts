import { MAX_TTL_SECONDS } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { nextStep, ttlForOffence } from '../src/escalation.js';

describe('escalating block TTLs', () => {
  const e = { baseSeconds: 60, factor: 2, maxSeconds: 3600 };

  it('multiplies the previous TTL by the factor at each offence, up to the maximum', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((k) => ttlForOffence(e, k))).toEqual([60, 120, 240, 480, 960, 1920, 3600, 3600]);
  });

  it('does not escalate with factor 1 (the default)', () => {
    expect([1, 2, 50].map((k) => ttlForOffence({ baseSeconds: 60, factor: 1, maxSeconds: 0 }, k))).toEqual([60, 60, 60]);
  });

  it('keeps a permanent PW_BLOCK_TTL permanent', () => {
    expect([1, 2, 9].map((k) => ttlForOffence({ baseSeconds: 0, factor: 3, maxSeconds: 3600 }, k))).toEqual([0, 0, 0]);
  });

  it('takes fractional factors in whole seconds, and goes no further than 3650 days without a maximum', () => {
    const f = { baseSeconds: 10, factor: 1.5, maxSeconds: 0 };
    expect([1, 2, 3, 4].map((k) => ttlForOffence(f, k))).toEqual([10, 15, 22, 33]);
    expect(ttlForOffence({ baseSeconds: 86_400, factor: 1000, maxSeconds: 0 }, 1_000_000)).toBe(MAX_TTL_SECONDS);
  });

  it('counts an offence after a lapsed block, starts over after an ended one or none', () => {
    expect(nextStep(e, undefined)).toEqual({ offence: 1, ttlSeconds: 60 });
    expect(nextStep(e, { offence: 1, endedMs: undefined })).toEqual({ offence: 2, ttlSeconds: 120 });
    expect(nextStep(e, { offence: 3, endedMs: undefined })).toEqual({ offence: 4, ttlSeconds: 480 });
    // An operator's unblock (or the allowlist) ended it: forgiven.
    expect(nextStep(e, { offence: 3, endedMs: 1 })).toEqual({ offence: 1, ttlSeconds: 60 });
    // An operator's block is no offence.
    expect(nextStep(e, { offence: 0, endedMs: undefined })).toEqual({ offence: 1, ttlSeconds: 60 });
  });
});
