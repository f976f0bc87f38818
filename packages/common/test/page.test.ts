// Pagination (AIP-158) as a client may abuse it: page sizes out of range,
// tokens forged, cut, re-spelt or taken from another list; and a server
// whose pages never end, as a fake probe's may not.
import { describe, expect, it } from 'vitest';
import { GrpcStatus, ServerError } from '../src/grpc.js';
import { PAGE_BYTES, PAGE_SIZE, PAGE_TOKEN_ROOM, type Page, PageList, PagingError, allPages, fitPage, pageCursor, pageSize, pageToken } from '../src/page.js';

/** The ServerError fn throws (fails the test when it throws nothing or something else). */
function refusal(fn: () => unknown): { code: number; details: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ServerError);
    const { code, details } = e as ServerError;
    return { code, details };
  }
  throw new Error('expected a ServerError, nothing was thrown');
}

const address = Buffer.from('20010db8000000000000000000000007', 'hex');

describe('pageSize', () => {
  it('serves the default for 0, the request up to the maximum, the maximum above it', () => {
    expect([0, 1, 999, 1000, 10_000, 10_001, 2 ** 31 - 1].map(pageSize)).toEqual([1000, 1, 999, 1000, 10_000, 10_000, 10_000]);
    expect(PAGE_SIZE).toEqual({ default: 1000, max: 10_000 });
  });

  it.each([-1, -(2 ** 31)])('refuses page_size %d with INVALID_ARGUMENT', (n) => {
    expect(refusal(() => pageSize(n))).toEqual({
      code: GrpcStatus.INVALID_ARGUMENT,
      details: `invalid page_size ${n}: 0 (the default, 1000) or a positive number`,
    });
  });
});

describe('page tokens', () => {
  it('gives back the cursor a token was made from, for its own list', () => {
    const t = pageToken(PageList.KernelBlocks, address);
    expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(pageCursor(t, PageList.KernelBlocks, 16)).toEqual(address);
  });

  it('reads an empty token as the first page', () => {
    expect(pageCursor('', PageList.KernelBlocks, 16)).toBeUndefined();
  });

  const invalid = (details: string) => ({ code: GrpcStatus.INVALID_ARGUMENT, details: `invalid page_token: ${details}` });
  const good = pageToken(PageList.ActiveDecisions, Buffer.alloc(8, 1));

  it.each([
    ['garbage', 'not a token!', 'not a token of this service'],
    ['padding', `${good}=`, 'not a token of this service'],
    ['standard base64', good.replace(/-/g, '+').replace(/_/g, '/') + '+', 'not a token of this service'],
    ['too long', 'A'.repeat(1000), 'not a token of this service'],
    ['a megabyte', 'A'.repeat(1 << 20), 'not a token of this service'],
    ['one byte', Buffer.from([1]).toString('base64url'), 'not a token of this service'],
    ['cut short', good.slice(0, -2), 'a 7-byte cursor where this list uses 8 bytes'],
    ['longer', pageToken(PageList.ActiveDecisions, Buffer.alloc(9, 1)), 'a 9-byte cursor where this list uses 8 bytes'],
    ['another version', Buffer.from([2, PageList.ActiveDecisions, 0, 0, 0, 0, 0, 0, 0, 1]).toString('base64url'), 'version 2 is not one this service issues'],
    ['another list', pageToken(PageList.KernelBlocks, address), 'it belongs to another list (or the same list with other arguments)'],
    ['the same list with other arguments', pageToken(PageList.AllDecisions, Buffer.alloc(8, 1)), 'it belongs to another list (or the same list with other arguments)'],
  ])('refuses a token that is %s with INVALID_ARGUMENT', (_what, token, details) => {
    expect(refusal(() => pageCursor(token, PageList.ActiveDecisions, 8))).toEqual(invalid(details));
  });

  it('refuses a non-canonical spelling of a valid token (stray bits in its last character)', () => {
    // 10 bytes end in a character carrying 2 bits of padding: set one.
    const last = good[good.length - 1]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelt = good.slice(0, -1) + alphabet[alphabet.indexOf(last) + 1];
    expect(Buffer.from(respelt, 'base64url')).toEqual(Buffer.from(good, 'base64url'));
    expect(refusal(() => pageCursor(respelt, PageList.ActiveDecisions, 8))).toEqual(invalid('not a token of this service'));
  });

  it('answers any string with a cursor or INVALID_ARGUMENT, never another exception', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const chars = 'AZaz09-_=+/ \u00e9\u0000';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const len = Math.floor(rand() * 40);
      let t = '';
      for (let j = 0; j < len; j++) t += chars[Math.floor(rand() * chars.length)];
      try {
        const c = pageCursor(t, PageList.KernelBlocks, 16);
        if (c !== undefined) accepted++;
      } catch (e) {
        expect(e).toBeInstanceOf(ServerError);
        expect((e as ServerError).code).toBe(GrpcStatus.INVALID_ARGUMENT);
      }
    }
    // Random text is essentially never a token of this service.
    expect(accepted).toBe(0);
  });
});

describe('fitPage', () => {
  it('keeps every item that fits, counting each item’s tag and length', () => {
    // 100-byte items take 102 bytes each in a repeated field: 10 fit in 1,020 bytes, not 11.
    const items = Array.from({ length: 20 }, (_, i) => i);
    expect(fitPage(items, () => 100, 1020)).toEqual(items.slice(0, 10));
    expect(fitPage(items, () => 100, 1019)).toEqual(items.slice(0, 9));
  });

  it('counts a two-byte length for items of 128 bytes and more', () => {
    expect(fitPage([1, 2], () => 128, 2 * 131)).toEqual([1, 2]);
    expect(fitPage([1, 2], () => 128, 2 * 131 - 1)).toEqual([1]);
  });

  it('sends an item larger than the budget alone rather than not at all', () => {
    expect(fitPage(['big', 'small'], (s) => (s === 'big' ? 2 * PAGE_BYTES : 1))).toEqual(['big']);
  });

  it('returns an empty page for no items', () => {
    expect(fitPage([], () => 1)).toEqual([]);
  });

  it('leaves room for the page token by default: a full page and a 40-byte token stay within PAGE_BYTES', () => {
    // 1,000-byte items take 1,003 bytes each; the token, 40 bytes, 42 with its tag and length.
    const items = Array.from({ length: 2000 }, (_, i) => i);
    const page = fitPage(items, () => 1000);
    expect(page).toHaveLength(Math.floor((PAGE_BYTES - PAGE_TOKEN_ROOM) / 1003));
    expect(page.length * 1003 + 42).toBeLessThanOrEqual(PAGE_BYTES);
  });
});

describe('allPages', () => {
  /** A server of `items` in pages of `size`, with tokens 'p<offset>'; records the tokens it was given. */
  function server(items: number[], size: number) {
    const asked: string[] = [];
    const fetch = async (token: string): Promise<Page<number>> => {
      asked.push(token);
      const from = token === '' ? 0 : Number(token.slice(1));
      const next = from + size;
      return { items: items.slice(from, next), nextPageToken: next < items.length ? `p${next}` : '' };
    };
    return { fetch, asked };
  }
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);

  it('reads an empty list in one call', async () => {
    const s = server([], 10);
    expect(await allPages(s.fetch)).toEqual([]);
    expect(s.asked).toEqual(['']);
  });

  it('reads exactly one page in one call', async () => {
    const s = server(range(10), 10);
    expect(await allPages(s.fetch)).toEqual(range(10));
    expect(s.asked).toEqual(['']);
  });

  it('follows the tokens across page boundaries', async () => {
    const s = server(range(21), 10);
    expect(await allPages(s.fetch)).toEqual(range(21));
    expect(s.asked).toEqual(['', 'p10', 'p20']);
  });

  it('takes exactly maxItems, and refuses one more', async () => {
    expect(await allPages(server(range(21), 10).fetch, 21)).toEqual(range(21));
    const s = server(range(22), 10);
    await expect(allPages(s.fetch, 21)).rejects.toEqual(new PagingError('the list holds more than 21 items, more than it can'));
    expect(s.asked).toEqual(['', 'p10', 'p20']);
  });

  it('stops at a token it was given before (pages in a circle)', async () => {
    const asked: string[] = [];
    const fetch = async (token: string) => {
      asked.push(token);
      return { items: [1], nextPageToken: token === 'b' ? 'a' : token === 'a' ? 'b' : 'a' };
    };
    await expect(allPages(fetch)).rejects.toEqual(new PagingError('a next_page_token that was given before: the pages go round in a circle'));
    expect(asked).toEqual(['', 'a', 'b']);
  });

  it('stops at an empty page that is not the last', async () => {
    let n = 0;
    const fetch = async () => ({ items: [], nextPageToken: `p${n++}` });
    await expect(allPages(fetch)).rejects.toEqual(new PagingError('an empty page that is not the last'));
    expect(n).toBe(1);
  });

  it('passes a failed call on as it failed', async () => {
    const failure = Object.assign(new Error('unavailable'), { code: 14 });
    await expect(allPages(async () => Promise.reject(failure))).rejects.toBe(failure);
  });
});
