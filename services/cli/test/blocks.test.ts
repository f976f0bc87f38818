import { type Block, BlockReason, type Decision, DecisionOrigin } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { type KernelView, blockRows, blocksJson, blocksText } from '../src/blocks.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const ago = (s: number) => new Date(NOW - s * 1000);
const ahead = (s: number) => new Date(NOW + s * 1000);

function decision(ip: string, o: Partial<Decision> = {}): Decision {
  return {
    id: 1n,
    ip,
    reason: 'port scan: 3 ports (8086, 8087, 8088) within 0.012s',
    origin: DecisionOrigin.DECISION_ORIGIN_DETECTOR,
    created: ago(120),
    expires: undefined,
    ended: undefined,
    enforcedBy: ['victim/pwv1'],
    missingOn: [],
    unrecorded: false,
    shadow: false,
    offence: 1,
    ...o,
  };
}

function kernelBlock(ip: string, o: Partial<Block> = {}): Block {
  return { ip, reason: BlockReason.BLOCK_REASON_PORTSCAN, created: ago(120), expires: undefined, expired: false, ...o };
}

const kernel = (blocks: Block[]): KernelView => ({ checked: true, address: 'unix:/run/packetwatch/probe.sock', probeId: 'victim/pwv1', blocks });
const unchecked: KernelView = { checked: false, address: 'unix:/p.sock', error: { code: 'UNAVAILABLE', message: 'connect ENOENT /p.sock' } };

describe('blocks: drift between the decisions and the kernel', () => {
  it('marks nothing when the kernel holds exactly the active decisions', () => {
    const rows = blockRows([decision('10.0.0.2'), decision('2001:db8::7', { id: 2n })], kernel([kernelBlock('2001:db8::7'), kernelBlock('10.0.0.2')]), NOW);
    expect(rows.map((r) => [r.ip, r.inKernel, r.drift])).toEqual([
      ['10.0.0.2', true, null],
      ['2001:db8::7', true, null],
    ]);
  });

  it('marks an active decision that the kernel does not hold', () => {
    const [row] = blockRows([decision('10.0.0.2')], kernel([]), NOW);
    expect(row).toMatchObject({ ip: '10.0.0.2', inKernel: false, drift: 'notInKernel' });
  });

  it('adds a row for a kernel block without a decision, after the decisions, by address', () => {
    const rows = blockRows([decision('10.0.0.2')], kernel([kernelBlock('10.0.0.9'), kernelBlock('10.0.0.2'), kernelBlock('10.0.0.3', { reason: BlockReason.BLOCK_REASON_MANUAL })]), NOW);
    expect(rows.map((r) => [r.ip, r.decisionId, r.drift])).toEqual([
      ['10.0.0.2', '1', null],
      ['10.0.0.3', null, 'noDecision'],
      ['10.0.0.9', null, 'noDecision'],
    ]);
    expect(rows[1]).toMatchObject({ reason: 'kernel block without a decision (manual)', origin: null, enforcedBy: ['victim/pwv1'], active: true });
  });

  it('ignores kernel entries that have expired', () => {
    const rows = blockRows([], kernel([kernelBlock('10.0.0.4', { expired: true }), kernelBlock('10.0.0.5', { expires: ago(1) })]), NOW);
    expect(rows).toEqual([]);
  });

  it('does not mark ended or expired decisions, and does not count them as explaining a kernel block', () => {
    const rows = blockRows(
      [decision('10.0.0.2', { ended: ago(10) }), decision('10.0.0.3', { id: 3n, expires: ago(5) })],
      kernel([kernelBlock('10.0.0.2')]),
      NOW,
    );
    expect(rows.map((r) => [r.ip, r.active, r.drift])).toEqual([
      ['10.0.0.2', false, null],
      ['10.0.0.3', false, null],
      ['10.0.0.2', true, 'noDecision'],
    ]);
  });

  it('leaves drift unknown (null) when the kernel was not checked', () => {
    const [row] = blockRows([decision('10.0.0.2')], unchecked, NOW);
    expect(row).toMatchObject({ inKernel: null, drift: null });
  });
});

describe('blocks: the table', () => {
  it('has SOURCE, REASON, ORIGIN, OFFENCE, CREATED, EXPIRES, ENFORCED BY and DRIFT, aligned', () => {
    const rows = blockRows(
      [
        decision('10.232.5.2', { offence: 3 }),
        decision('2001:db8::7', { id: 2n, reason: 'by hand', origin: DecisionOrigin.DECISION_ORIGIN_MANUAL, created: ago(30), expires: ahead(3600 - 30), offence: 0 }),
      ],
      kernel([kernelBlock('10.232.5.2')]),
      NOW,
    );
    expect(blocksText(rows, kernel([]), NOW, false)).toBe(
      [
        'SOURCE       REASON                                               ORIGIN    OFFENCE  CREATED  EXPIRES  ENFORCED BY  DRIFT',
        '10.232.5.2   port scan: 3 ports (8086, 8087, 8088) within 0.012s  detector  3        2m ago   never    victim/pwv1',
        '2001:db8::7  by hand                                              manual    -        30s ago  in 59m   victim/pwv1  DRIFT: not in kernel',
        '',
        '1 row marked DRIFT: the policy and the kernel of victim/pwv1 disagree. The policy repairs this on its next reconcile; `packetwatchctl unblock <ip>` removes a kernel block without a decision.',
      ].join('\n'),
    );
  });

  it('shows a kernel block without a decision', () => {
    const view = kernel([kernelBlock('10.0.0.9', { created: ago(7200), expires: ahead(86400 * 2) })]);
    const text = blocksText(blockRows([], view, NOW), view, NOW, false).split('\n');
    expect(text[1]).toBe('10.0.0.9  kernel block without a decision (port scan)  -       -        2h ago   in 2d    victim/pwv1  DRIFT: no decision');
  });

  it('shows ended and expired decisions with --all, and who is missing a block', () => {
    const rows = blockRows(
      [
        decision('10.0.0.2', { ended: ago(300), enforcedBy: [] }),
        decision('10.0.0.3', { id: 3n, expires: ago(60), enforcedBy: [] }),
        decision('10.0.0.4', { id: 4n, enforcedBy: ['a/eth0'], missingOn: ['b/eth0'], origin: DecisionOrigin.DECISION_ORIGIN_KERNEL }),
      ],
      unchecked,
      NOW,
    );
    const lines = blocksText(rows, unchecked, NOW, true).split('\n');
    expect(lines.map((l) => l.replace(/ {2,}/g, ' | '))).toEqual([
      'SOURCE | REASON | ORIGIN | OFFENCE | CREATED | EXPIRES | ENFORCED BY | DRIFT',
      '10.0.0.2 | port scan: 3 ports (8086, 8087, 8088) within 0.012s | detector | 1 | 2m ago | ended 5m ago | -',
      '10.0.0.3 | port scan: 3 ports (8086, 8087, 8088) within 0.012s | detector | 1 | 2m ago | expired 1m ago | -',
      '10.0.0.4 | port scan: 3 ports (8086, 8087, 8088) within 0.012s | kernel | 1 | 2m ago | never | a/eth0 (missing on b/eth0) | ?',
    ]);
  });

  it('says under the table how many decisions the policy holds unrecorded, before any drift note', () => {
    const view = kernel([kernelBlock('10.0.0.2')]);
    const rows = blockRows([decision('10.0.0.2', { unrecorded: true }), decision('10.0.0.3', { id: 2n, unrecorded: true })], view, NOW);
    const text = blocksText(rows, view, NOW, false).split('\n\n');
    expect(text.slice(1)).toEqual([
      "2 decisions are enforced but not recorded: the policy's decision store refuses writes (`packetwatchctl status` says why); recorded once it takes them again, lost if the policy stops first.",
      '1 row marked DRIFT: the policy and the kernel of victim/pwv1 disagree. The policy repairs this on its next reconcile; `packetwatchctl unblock <ip>` removes a kernel block without a decision.',
    ]);
    expect(rows.map((r) => r.unrecorded)).toEqual([true, true]);
  });

  it('says so when there is nothing', () => {
    expect(blocksText([], kernel([]), NOW, false)).toBe('No active decisions.');
    expect(blocksText([], kernel([]), NOW, true)).toBe('No decisions.');
  });
});

describe('blocks: JSON', () => {
  it('has stable camelCase fields, ISO times, string ids and the kernel view', () => {
    const view = kernel([kernelBlock('10.0.0.9', { created: new Date('2026-11-25T11:00:00.000Z') })]);
    const rows = blockRows([decision('10.0.0.2', { expires: new Date('2026-11-25T13:00:00.000Z'), created: new Date('2026-11-25T11:58:00.000Z') })], view, NOW);
    expect(blocksJson(rows, view)).toEqual({
      blocks: [
        {
          decisionId: '1',
          ip: '10.0.0.2',
          reason: 'port scan: 3 ports (8086, 8087, 8088) within 0.012s',
          origin: 'detector',
          active: true,
          created: '2026-11-25T11:58:00.000Z',
          expires: '2026-11-25T13:00:00.000Z',
          ended: null,
          enforcedBy: ['victim/pwv1'],
          missingOn: [],
          inKernel: false,
          drift: 'notInKernel',
          unrecorded: false,
          shadow: false,
          offence: 1,
        },
        {
          decisionId: null,
          ip: '10.0.0.9',
          reason: 'kernel block without a decision (port scan)',
          origin: null,
          active: true,
          created: '2026-11-25T11:00:00.000Z',
          expires: null,
          ended: null,
          enforcedBy: ['victim/pwv1'],
          missingOn: [],
          inKernel: true,
          drift: 'noDecision',
          unrecorded: false,
          shadow: false,
          offence: 0,
        },
      ],
      kernel: { address: 'unix:/run/packetwatch/probe.sock', checked: true, probeId: 'victim/pwv1', error: null },
    });
  });

  it('reports why the kernel was not checked', () => {
    expect(blocksJson([], unchecked).kernel).toEqual({ address: 'unix:/p.sock', checked: false, probeId: null, error: { code: 'UNAVAILABLE', message: 'connect ENOENT /p.sock' } });
  });
});
