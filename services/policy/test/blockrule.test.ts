// What a detection becomes (blockrule.ts), on the clock the caller gives:
// the budget's sliding minute, the short TTL, the reasons.
import { describe, expect, it } from 'vitest';
import { BlockBudget, cappedTtl, detectorBlock, scanReason } from '../src/blockrule.js';
import type { Detection } from '../src/detector.js';

const T0 = 1_800_000_000_000;

describe('BlockBudget', () => {
  it('allows perMinute blocks in any 60 s and counts only those it allows', () => {
    const b = new BlockBudget(2);
    expect([b.take(T0), b.take(T0 + 1000), b.take(T0 + 2000)]).toEqual([true, true, false]);
    // A block leaves the window 60 s after it, not before; a refused one never counted.
    expect(b.take(T0 + 59_999)).toBe(false);
    expect(b.take(T0 + 60_000)).toBe(true);
    expect(b.take(T0 + 60_001)).toBe(false);
    expect(b.take(T0 + 61_000)).toBe(true);
  });

  it('0 is no cap', () => {
    const b = new BlockBudget(0);
    expect(Array.from({ length: 1000 }, () => b.take(T0)).every(Boolean)).toBe(true);
  });
});

describe('a detection as a block', () => {
  const det: Detection = { source: 1, port: 443, tsMs: T0 + 250, ports: [22, 80, 443], firstMs: T0, lastMs: T0 + 250 };

  it('the short TTL is PW_CAPPED_BLOCK_TTL, or PW_BLOCK_TTL when that is shorter', () => {
    expect(cappedTtl({ ttlSeconds: 0, cappedTtlSeconds: 60 })).toBe(60);
    expect(cappedTtl({ ttlSeconds: 3600, cappedTtlSeconds: 60 })).toBe(60);
    expect(cappedTtl({ ttlSeconds: 30, cappedTtlSeconds: 60 })).toBe(30);
  });

  it('within the budget: the reason and PW_BLOCK_TTL; beyond it: the reason says so, and the short TTL', () => {
    const terms = { ttlSeconds: 3600, cappedTtlSeconds: 60 };
    expect(detectorBlock(det, false, terms, String)).toEqual({ reason: 'port scan: 3 ports (22, 80, 443) within 0.250s', ttlSeconds: 3600 });
    expect(detectorBlock(det, true, terms, String)).toEqual({ reason: 'port scan: 3 ports (22, 80, 443) within 0.250s; beyond the blocks-per-minute budget: 60s', ttlSeconds: 60 });
  });

  it('a kernel detection the policy saw one port of, and the fleet rule by probe', () => {
    expect(scanReason({ ...det, ports: [443], firstMs: det.tsMs }, String)).toBe('port scan: detected in the kernel at port 443');
    const fleet: Detection = { ...det, pairs: [{ probe: 1, port: 22 }, { probe: 2, port: 22 }, { probe: 1, port: 80 }] };
    expect(scanReason(fleet, (n) => `host-${n}`)).toBe('port scan across the fleet: 3 (probe, port) pairs on 2 probes within 0.250s (host-1: 22, 80; host-2: 22)');
  });
});
