// The policy reads a probe's kernel view page after page, and a probe
// whose pages never end (a forged one) cannot hold it in a loop.
import { PagingError } from '@packetwatch/common';
import { BlockReason } from '@packetwatch/proto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeProbe } from './fake-probe.js';

const block = (i: number) => ({ ip: `2001:db8::${i.toString(16)}`, reason: BlockReason.BLOCK_REASON_MANUAL, created: new Date(0), expires: undefined, expired: false });

describe('ProbeSession.listBlocks', () => {
  const probe = new FakeProbe();
  beforeAll(() => probe.start());
  afterAll(() => probe.stop());
  beforeEach(() => {
    probe.blocks = [];
    probe.paging = 'honest';
    probe.listRequests.length = 0;
  });

  it('asks for the largest pages and follows them to the last: 25,001 blocks in three calls', async () => {
    probe.blocks = Array.from({ length: 25_001 }, (_, i) => block(i));
    const s = probe.session();
    try {
      const got = await s.listBlocks();
      expect(got.map((b) => b.ip)).toEqual(probe.blocks.map((b) => b.ip));
      expect(probe.listRequests).toEqual([
        { pageSize: 10_000, pageToken: '' },
        { pageSize: 10_000, pageToken: 'p10000' },
        { pageSize: 10_000, pageToken: 'p20000' },
      ]);
    } finally {
      s.close();
    }
  });

  it('reads an empty kernel view in one call', async () => {
    const s = probe.session();
    try {
      expect(await s.listBlocks()).toEqual([]);
      expect(probe.listRequests).toHaveLength(1);
    } finally {
      s.close();
    }
  });

  it('stops, with a PagingError, at a probe whose pages go round in a circle', async () => {
    probe.blocks = [block(1), block(2)];
    probe.paging = 'circle';
    const s = probe.session();
    try {
      await expect(s.listBlocks()).rejects.toEqual(new PagingError('a next_page_token that was given before: the pages go round in a circle'));
      expect(probe.listRequests.map((r) => r.pageToken)).toEqual(['', 'p0']);
    } finally {
      s.close();
    }
  });
});
