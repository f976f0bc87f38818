import { type Decision, DecisionOrigin, ExplainEngine, ExplainPortState, type ExplainResponse } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { explainJson, explainText } from '../src/explain.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const ago = (s: number) => new Date(NOW - s * 1000);
const ahead = (s: number) => new Date(NOW + s * 1000);
const dur = (s: number) => ({ seconds: BigInt(s), nanos: 0 });
const rule = { portThreshold: 3, window: dur(60), fleetPortThreshold: 10, blockTtl: dur(60), blockTtlFactor: 2, blockTtlMax: dur(3600), maxBlocksPerMinute: 120, cappedBlockTtl: dur(60) };

const decision: Decision = {
  id: 12n,
  ip: '10.232.9.2',
  reason: 'port scan: 3 ports (8086, 8087, 8088) within 0.098s',
  origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR,
  created: ago(60),
  expires: ahead(180),
  ended: undefined,
  enforcedBy: ['vm/eth0'],
  missingOn: [],
  unrecorded: false,
  shadow: false,
  offence: 3,
};

const res: ExplainResponse = {
  source: '10.232.9.2',
  rule,
  blocked: true,
  decision,
  engine: ExplainEngine.EXPLAIN_ENGINE_KERNEL,
  decidedUnder: rule,
  capped: false,
  offence: 3,
  ttl: dur(240),
  probes: [
    { time: new Date('2026-11-25T11:58:59.902Z'), port: 8086, kind: 'SYN', probeId: 'vm/eth0', address: '10.232.9.2', portState: ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED },
    { time: new Date('2026-11-25T11:58:59.950Z'), port: 8087, kind: 'FIN', probeId: 'vm/eth0', address: '10.232.9.2', portState: ExplainPortState.EXPLAIN_PORT_STATE_CLOSED },
    { time: undefined, port: 8088, kind: 'unknown', probeId: '', address: '', portState: ExplainPortState.EXPLAIN_PORT_STATE_OPEN },
  ],
  nextOffence: 4,
  nextTtl: dur(480),
  kernel: [
    { probeId: 'vm/eth0', blocked: true, created: ago(60), expires: ahead(180), error: '' },
    { probeId: 'vm/eth1', blocked: false, created: undefined, expires: undefined, error: 'connect ENOENT' },
  ],
  tracked: [],
};

describe('explain', () => {
  it('prints the source, the rule, the decision with its engine, TTL and offence, the kernels, and the probes', () => {
    expect(explainText(explainJson(res, NOW), NOW)).toBe(
      [
        'source        10.232.9.2',
        'status        blocked (decision 12), expires in 3m',
        'rule          3 ports within 1m, or 10 (probe, port) pairs across the fleet',
        'block ttl     1m, ×2 a repeat offence up to 1h',
        'budget        120 blocks a minute, beyond them 1m',
        'reason        port scan: 3 ports (8086, 8087, 8088) within 0.098s',
        "decided by    the kernel (the XDP program's rule, at the crossing probe)",
        'under         3 ports within 1m, or 10 (probe, port) pairs across the fleet',
        'ttl           4m',
        'offence       3',
        'enforced by   vm/eth0',
        'next offence  4, blocked for 8m',
        'kernel        vm/eth0: blocked, expires in 3m',
        '              vm/eth1: unknown (connect ENOENT)',
        'tracking      nothing (no probe of it within the window)',
        '',
        'TIME                      PORT  KIND     STATE    PROBE    ADDRESS',
        '2026-11-25T11:58:59.902Z  8086  SYN      unknown  vm/eth0  10.232.9.2',
        '2026-11-25T11:58:59.950Z  8087  FIN      closed   vm/eth0  10.232.9.2',
        'unknown                   8088  unknown  open     -        -',
      ].join('\n'),
    );
  });

  it('has stable JSON fields: seconds for durations, ISO times, null for what is unknown', () => {
    const doc = explainJson(res, NOW);
    expect(doc).toMatchObject({
      source: '10.232.9.2',
      blocked: true,
      engine: 'kernel',
      capped: false,
      offence: 3,
      ttlSeconds: 240,
      rule: { portThreshold: 3, windowSeconds: 60, fleetPortThreshold: 10, blockTtlSeconds: 60, blockTtlFactor: 2, blockTtlMaxSeconds: 3600, maxBlocksPerMinute: 120, cappedBlockTtlSeconds: 60 },
      next: { offence: 4, ttlSeconds: 480 },
      kernel: [
        { probeId: 'vm/eth0', blocked: true, created: '2026-11-25T11:59:00.000Z', expires: '2026-11-25T12:03:00.000Z', error: null },
        { probeId: 'vm/eth1', blocked: false, created: null, expires: null, error: 'connect ENOENT' },
      ],
    });
    expect(doc.probes[2]).toEqual({ time: null, port: 8088, kind: 'unknown', probeId: '', address: '', portState: 'open' });
    expect(doc.decision).toMatchObject({ decisionId: '12', offence: 3, active: true });
  });

  it('says a source without a decision is not blocked, with a permanent TTL and no escalation in the rule', () => {
    const none: ExplainResponse = {
      ...res,
      rule: { ...rule, blockTtl: dur(0), blockTtlFactor: 1, blockTtlMax: undefined },
      blocked: false,
      decision: undefined,
      engine: ExplainEngine.EXPLAIN_ENGINE_UNSPECIFIED,
      decidedUnder: undefined,
      offence: 0,
      ttl: undefined,
      probes: [],
      nextOffence: 1,
      nextTtl: dur(0),
      kernel: [],
      tracked: [{ time: ago(5), port: 22, kind: 'unknown', probeId: '', address: '', portState: ExplainPortState.EXPLAIN_PORT_STATE_UNSPECIFIED }],
    };
    expect(explainText(explainJson(none, NOW), NOW)).toBe(
      [
        'source        10.232.9.2',
        'status        not blocked: no decision on this source',
        'rule          3 ports within 1m, or 10 (probe, port) pairs across the fleet',
        'block ttl     permanent',
        'budget        120 blocks a minute, beyond them 1m',
        'next offence  1, blocked permanently',
        'tracking      22 5s ago',
      ].join('\n'),
    );
  });

  it('says a shadow decision would block, and that nothing is dropped for it', () => {
    const text = explainText(explainJson({ ...res, decision: { ...decision, shadow: true } }, NOW), NOW);
    expect(text.split('\n')[1]).toBe('status        SHADOW: would be blocked (decision 12, made in shadow mode: nothing is dropped for it), expires in 3m');
    expect(explainJson({ ...res, decision: { ...decision, shadow: true } }, NOW).decision).toMatchObject({ shadow: true });
  });
});
