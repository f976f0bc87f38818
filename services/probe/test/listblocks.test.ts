// Probe.ListBlocks a page at a time, through the real handler, Blocks and
// key order, over a stand-in for the kernel map (a list of raw entries the
// test changes between pages, as the expiry sweep and UnblockIp do): the
// edges of paging, a client's bad page_size and forged tokens, and the
// encoded size of the largest page there can be.
import { BlockReason as KernelReason, type Datapath, blockCodec, formatAddress } from '@packetwatch/bpf';
import { GrpcStatus, PAGE_BYTES, PAGE_SIZE, PageList, WHOLE_ADDRESSES, createLogger, pageToken } from '@packetwatch/common';
import { type Block, BlockReason, type ListBlocksRequest, type ListBlocksResponse, ProbeService } from '@packetwatch/proto';
import type * as grpc from '@grpc/grpc-js';
import { encode } from 'libbpf-ts';
import { beforeEach, describe, expect, it } from 'vitest';
import { Blocks } from '../src/blocks.js';
import { keyPage } from '../src/keypage.js';
import { MAX_BLOCK_BYTES, probeService, toProtoBlock } from '../src/service.js';

/** The blocklist's raw entries, [16-byte address, 24-byte value], in no particular order (as a hash map's). */
let entries: [Buffer, Buffer][] = [];
const dp = { blocklist: { map: { lookupAll: () => entries.slice(), maxEntries: 65_536 } } } as unknown as Datapath;
const svc = probeService(new Blocks(dp, WHOLE_ADDRESSES), { status: () => ({}) as never }, createLogger('test', 'silent'), () => undefined);

const value = (expiresNs = 0n, reason = 1) => encode(blockCodec, { expiresNs, createdNs: 1n, reason, flags: 0 });
/** 2001:db8::<n>, as 16 bytes. */
function addr(n: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(0x20010db8, 0);
  b.writeUInt32BE(n, 12);
  return b;
}
const text = (n: number) => formatAddress(addr(n));
/** Entries for 2001:db8::<n> for each n, shuffled (a hash map's order is none). */
function fill(ns: number[]): void {
  entries = ns.map((n) => [addr(n), value()] as [Buffer, Buffer]);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
}
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const remove = (n: number) => {
  entries = entries.filter(([k]) => !k.equals(addr(n)));
};

function listBlocks(req: Partial<ListBlocksRequest> = {}): Promise<ListBlocksResponse> {
  return new Promise((resolve, reject) =>
    svc.listBlocks({ request: { pageSize: 0, pageToken: '', ...req } } as grpc.ServerUnaryCall<ListBlocksRequest, ListBlocksResponse>, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  );
}

/** Every page from `from` (the first page by default), as a client pages: the addresses of each page. */
async function pages(pageSize: number, from = ''): Promise<string[][]> {
  const out: string[][] = [];
  let pageToken = from;
  do {
    const res = await listBlocks({ pageSize, pageToken });
    out.push(res.blocks.map((b) => b.ip));
    pageToken = res.nextPageToken;
  } while (pageToken !== '');
  return out;
}

beforeEach(() => {
  entries = [];
});

describe('ListBlocks: pages', () => {
  it('answers an empty blocklist with one empty last page and the capacity', async () => {
    expect(await listBlocks()).toEqual({ blocks: [], capacity: 65_536, nextPageToken: '' });
  });

  it('lists exactly one default page (1,000) with no next page', async () => {
    fill(range(1, 1001));
    const res = await listBlocks();
    expect(res.blocks.map((b) => b.ip)).toEqual(range(1, 1001).map(text));
    expect(res.nextPageToken).toBe('');
  });

  it('puts the block after a full page on a second page of its own', async () => {
    fill(range(1, 1002));
    expect(await pages(0)).toEqual([range(1, 1001).map(text), [text(1001)]]);
  });

  it('lists 25,000 blocks at most 10,000 a page, each once, in address order', async () => {
    fill(range(1, 25_001));
    const got = await pages(10_000);
    expect(got.map((p) => p.length)).toEqual([10_000, 10_000, 5000]);
    expect(got.flat()).toEqual(range(1, 25_001).map(text));
  });

  it('clamps a page_size above the maximum to 10,000', async () => {
    fill(range(1, 10_002));
    const res = await listBlocks({ pageSize: 2 ** 31 - 1 });
    expect(res.blocks).toHaveLength(PAGE_SIZE.max);
    expect(res.nextPageToken).not.toBe('');
  });

  it('pages one block at a time with page_size 1', async () => {
    fill([5, 3, 9]);
    expect(await pages(1)).toEqual([[text(3)], [text(5)], [text(9)]]);
  });

  it('puts IPv4 blocks (::ffff:a.b.c.d) in byte order among IPv6 ones', async () => {
    const v4 = Buffer.from('00000000000000000000ffffc0000207', 'hex');
    const low = Buffer.alloc(16);
    low[15] = 1;
    entries = [[addr(1), value()], [v4, value()], [low, value()]];
    expect((await listBlocks()).blocks.map((b) => b.ip)).toEqual(['::1', '192.0.2.7', text(1)]);
  });
});

describe('ListBlocks: blocks removed and added between pages', () => {
  it('continues after the last block of a page even when that block is gone', async () => {
    fill(range(1, 11));
    const first = await listBlocks({ pageSize: 3 });
    expect(first.blocks.map((b) => b.ip)).toEqual([1, 2, 3].map(text));
    // The expiry sweep or an UnblockIp removes the page's last block and the next one.
    remove(3);
    remove(4);
    expect(await pages(3, first.nextPageToken)).toEqual([[5, 6, 7], [8, 9, 10]].map((p) => p.map(text)));
  });

  it('lists a block added ahead of the cursor, not one added behind it', async () => {
    fill([10, 20, 30, 40]);
    const first = await listBlocks({ pageSize: 2 });
    expect(first.blocks.map((b) => b.ip)).toEqual([text(10), text(20)]);
    entries.push([addr(15), value()], [addr(35), value()]);
    const second = await listBlocks({ pageSize: 10, pageToken: first.nextPageToken });
    expect(second).toMatchObject({ nextPageToken: '' });
    expect(second.blocks.map((b) => b.ip)).toEqual([text(30), text(35), text(40)]);
  });

  it('ends with an empty last page when every block after the cursor is gone', async () => {
    fill([1, 2, 3]);
    const first = await listBlocks({ pageSize: 2 });
    remove(3);
    expect(await listBlocks({ pageSize: 2, pageToken: first.nextPageToken })).toEqual({ blocks: [], capacity: 65_536, nextPageToken: '' });
  });

  it('lists every block held throughout exactly once, in order, while others come and go on every page', async () => {
    const held = range(1, 2001).map((n) => n * 2);
    fill(held);
    const seen: string[] = [];
    let pageToken = '';
    let calls = 0;
    do {
      const res = await listBlocks({ pageSize: 97, pageToken });
      calls++;
      seen.push(...res.blocks.map((b) => b.ip));
      pageToken = res.nextPageToken;
      // Odd addresses come and go anywhere in the list; the even ones stay.
      // A map holds a key once: an address already there is not added again.
      for (let i = 0; i < 5; i++) {
        const k = addr(2 * Math.floor(Math.random() * 2100) + 1);
        if (!entries.some(([e]) => e.equals(k))) entries.push([k, value()]);
      }
      entries = entries.filter(([k]) => k.readUInt32BE(12) % 2 === 0 || Math.random() < 0.5);
    } while (pageToken !== '');
    const heldText = new Set(held.map(text));
    expect(seen.filter((ip) => heldText.has(ip))).toEqual(held.map(text));
    // Strictly ascending: nothing twice, whatever came back meanwhile.
    const numbers = seen.map((ip) => parseInt(ip.split(':').pop()!, 16));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(new Set(numbers).size).toBe(numbers.length);
    expect(calls).toBeGreaterThanOrEqual(21);
  });
});

describe('ListBlocks: a bad page_size, and page tokens a client may forge', () => {
  it.each([
    ['a negative page_size', { pageSize: -1 }, 'invalid page_size -1: 0 (the default, 1000) or a positive number'],
    ['garbage', { pageToken: '%%%' }, 'invalid page_token: not a token of this service'],
    ['a ListDecisions token', { pageToken: pageToken(PageList.ActiveDecisions, Buffer.alloc(8)) }, 'invalid page_token: it belongs to another list (or the same list with other arguments)'],
    ['a cursor of the wrong length', { pageToken: pageToken(PageList.KernelBlocks, Buffer.alloc(4)) }, 'invalid page_token: a 4-byte cursor where this list uses 16 bytes'],
    ['a megabyte of text', { pageToken: 'A'.repeat(1 << 20) }, 'invalid page_token: not a token of this service'],
  ])('refuses %s with INVALID_ARGUMENT', async (_what, req, details) => {
    fill([1, 2]);
    await expect(listBlocks(req)).rejects.toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details });
  });

  it('takes any well-formed position, listing what lies after it', async () => {
    fill([1, 2, 3]);
    const res = await listBlocks({ pageToken: pageToken(PageList.KernelBlocks, addr(2)) });
    expect(res.blocks.map((b) => b.ip)).toEqual([text(3)]);
    const end = await listBlocks({ pageToken: pageToken(PageList.KernelBlocks, Buffer.alloc(16, 0xff)) });
    expect(end).toEqual({ blocks: [], capacity: 65_536, nextPageToken: '' });
  });
});

describe('ListBlocks: the largest page', () => {
  /** The largest Block there can be: a 43-character source (eight full groups, /127), the longest reason, both times at their longest varints, expired. */
  const largest = (n: number) =>
    toProtoBlock({
      ip: `ffff:ffff:ffff:ffff:ffff:ffff:${(0xf000 + (n >> 12)).toString(16)}:${(0xf000 + 2 * (n % 0x800)).toString(16)}/127`,
      reason: KernelReason.Manual,
      // Beyond what a u64 of boot-time nanoseconds plus the epoch offset reaches, with 999 ms.
      createdUnixNs: 30_000_000_000_999_000_000n,
      expiresUnixNs: 30_000_000_000_999_000_000n,
      expired: true,
    });
  const size = (blocks: Block[], nextPageToken = '') => ProbeService.listBlocks.responseSerialize({ blocks, capacity: 2 ** 32 - 1, nextPageToken }).length;

  it('takes 79 bytes for the largest Block, tag and length included: within MAX_BLOCK_BYTES', () => {
    expect(size([largest(1)]) - size([])).toBe(79);
    expect(79).toBeLessThanOrEqual(MAX_BLOCK_BYTES);
  });

  it('encodes a full page of the largest blocks, with capacity and token, in 790,032 bytes: within PAGE_BYTES', () => {
    const page = range(0, PAGE_SIZE.max).map(largest);
    const bytes = size(page, pageToken(PageList.KernelBlocks, Buffer.alloc(16, 0xff)));
    expect(bytes).toBe(790_032);
    expect(bytes).toBeLessThanOrEqual(PAGE_BYTES);
    expect(PAGE_SIZE.max * MAX_BLOCK_BYTES + 64).toBeLessThanOrEqual(PAGE_BYTES);
  });

  it('lists an entry whose reason the protocol does not know as unspecified rather than failing the list', async () => {
    entries = [[addr(1), value(0n, 2 ** 32 - 1)], [addr(2), value(0n, 2)]];
    const res = await listBlocks();
    expect(res.blocks.map((b) => [b.ip, b.reason])).toEqual([
      [text(1), BlockReason.BLOCK_REASON_UNSPECIFIED],
      [text(2), BlockReason.BLOCK_REASON_MANUAL],
    ]);
    expect(ProbeService.listBlocks.responseSerialize(res).length).toBeGreaterThan(0);
  });
});

describe('keyPage', () => {
  const keys = (page: [Buffer, unknown][]) => page.map(([k]) => k.readUInt32BE(12));

  it('selects the smallest keys above the cursor for any order, including sorted and reversed', () => {
    for (const order of ['ascending', 'descending', 'random'] as const) {
      for (const n of [0, 1, 2, 7, 100, 1000]) {
        const ns = range(0, n);
        if (order === 'descending') ns.reverse();
        if (order === 'random') ns.sort(() => Math.random() - 0.5);
        const all = ns.map((i) => [addr(i), i] as const);
        for (const size of [1, 2, 10, 999, 1001]) {
          for (const after of [undefined, 0, Math.floor(n / 2), n]) {
            const want = range(after === undefined ? 0 : after + 1, n).slice(0, size);
            const got = keyPage(all, after === undefined ? undefined : addr(after), size);
            expect(keys(got.page)).toEqual(want);
            expect(got.more).toBe((after === undefined ? n : Math.max(0, n - after - 1)) > size);
          }
        }
      }
    }
  });
});
