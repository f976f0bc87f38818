// Paginated lists, after Google AIP-158: a request carries page_size and
// page_token, a response next_page_token (empty on the last page). One
// place for what every list shares: the sizes, the token's format and its
// checks, and a client's loop over the pages.
//
// A token is opaque to clients but not secret: it is a position in one
// list (version, list, cursor) in base64url, and any position a client
// could forge is one it may ask for, so a token needs no signature. It must
// never do harm, so it is checked whole before use: a token of another
// list, another version, another length, or not canonical base64url is
// INVALID_ARGUMENT, never an exception.
import { GrpcStatus, ServerError } from './grpc.js';

/** Items a page holds: 0 asks for the default; more than the maximum is clamped to it. */
export const PAGE_SIZE = { default: 1000, max: 10_000 } as const;

/**
 * Encoded bytes a page may take, far below grpc-js's 4 MiB default
 * receive limit (the whole response, fields other than the items
 * included, stays under it by construction; see the lists' servers).
 */
export const PAGE_BYTES = 1024 * 1024;

/**
 * What a response needs besides its items: its next_page_token field (a
 * token is under 40 bytes, plus its tag and length). Items fill the rest of
 * PAGE_BYTES, so that the whole response stays within it.
 */
export const PAGE_TOKEN_ROOM = 64;

/** Which list a token belongs to: a token is refused by every other list. */
export enum PageList {
  /** Probe.ListBlocks: the cursor is the last address listed (16 bytes). */
  KernelBlocks = 1,
  /** Policy.ListDecisions, all = false: the cursor is the last id listed (8 bytes). */
  ActiveDecisions = 2,
  /** Policy.ListDecisions, all = true. */
  AllDecisions = 3,
}

const TOKEN_VERSION = 1;
/** The longest cursor any list uses, so a token is never longer than this much base64url. */
const MAX_CURSOR_BYTES = 16;
const MAX_TOKEN_CHARS = Math.ceil(((2 + MAX_CURSOR_BYTES) * 4) / 3);

function invalid(details: string): ServerError {
  return new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid page_token: ${details}`);
}

/** The page size to serve for a request's page_size (AIP-158): 0 is the default, above the maximum is the maximum. */
export function pageSize(requested: number): number {
  if (!Number.isSafeInteger(requested) || requested < 0) {
    throw new ServerError(GrpcStatus.INVALID_ARGUMENT, `invalid page_size ${requested}: 0 (the default, ${PAGE_SIZE.default}) or a positive number`);
  }
  return requested === 0 ? PAGE_SIZE.default : Math.min(requested, PAGE_SIZE.max);
}

/** The next_page_token that continues `list` after `cursor`. */
export function pageToken(list: PageList, cursor: Buffer): string {
  if (cursor.length > MAX_CURSOR_BYTES) throw new RangeError(`a page cursor is at most ${MAX_CURSOR_BYTES} bytes, got ${cursor.length}`);
  return Buffer.concat([Buffer.from([TOKEN_VERSION, list]), cursor]).toString('base64url');
}

/**
 * The cursor in a request's page_token for `list`, which takes cursors of
 * `cursorBytes`; undefined for an empty token (the first page). Throws
 * ServerError(INVALID_ARGUMENT) for anything this service did not issue
 * for this list.
 */
export function pageCursor(token: string, list: PageList, cursorBytes: number): Buffer | undefined {
  if (token === '') return undefined;
  if (token.length > MAX_TOKEN_CHARS || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid('not a token of this service');
  const raw = Buffer.from(token, 'base64url');
  // Buffer.from ignores stray bits of a last character; only the canonical spelling is a token.
  if (raw.toString('base64url') !== token || raw.length < 2) throw invalid('not a token of this service');
  if (raw[0] !== TOKEN_VERSION) throw invalid(`version ${raw[0]} is not one this service issues`);
  if (raw[1] !== list) throw invalid('it belongs to another list (or the same list with other arguments)');
  if (raw.length !== 2 + cursorBytes) throw invalid(`a ${raw.length - 2}-byte cursor where this list uses ${cursorBytes} bytes`);
  return raw.subarray(2);
}

/** Bytes of a varint holding n (n >= 0). */
function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

/**
 * The longest prefix of `items` (at least one) whose encoding as a repeated
 * message field numbered 1 to 15 stays within `budget` bytes: for lists
 * whose items vary in size, so that a page is bounded in bytes as well as in
 * count. `encodedSize` is an item's encoded size alone; its tag and length
 * are added here. A single item above the budget goes alone. The default
 * budget leaves PAGE_TOKEN_ROOM of PAGE_BYTES for the page token.
 */
export function fitPage<T>(items: readonly T[], encodedSize: (item: T) => number, budget = PAGE_BYTES - PAGE_TOKEN_ROOM): T[] {
  let bytes = 0;
  let n = 0;
  for (const item of items) {
    const size = encodedSize(item);
    bytes += 1 + varintBytes(size) + size;
    if (bytes > budget && n > 0) break;
    n++;
  }
  return items.slice(0, n);
}

/** One page as a client receives it. */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** A list whose pages do not add up: a page token repeated, an empty page that is not the last, more items than can be. */
export class PagingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PagingError';
  }
}

/**
 * Every item of a list, fetching page after page until next_page_token is
 * empty. The server may be an attacker (a probe's ListBlocks, to the
 * policy): the loop ends whatever it answers. A page that is not the last
 * must hold items (our servers never send an empty one) and name a token
 * not seen before, and the items are at most maxItems; otherwise it throws
 * PagingError.
 */
export async function allPages<T>(fetch: (pageToken: string) => Promise<Page<T>>, maxItems = Number.POSITIVE_INFINITY): Promise<T[]> {
  const out: T[] = [];
  const seen = new Set<string>(['']);
  let token = '';
  for (;;) {
    const page = await fetch(token);
    if (out.length + page.items.length > maxItems) throw new PagingError(`the list holds more than ${maxItems} items, more than it can`);
    for (const item of page.items) out.push(item);
    if (page.nextPageToken === '') return out;
    if (page.items.length === 0) throw new PagingError('an empty page that is not the last');
    if (seen.has(page.nextPageToken)) throw new PagingError('a next_page_token that was given before: the pages go round in a circle');
    seen.add(page.nextPageToken);
    token = page.nextPageToken;
  }
}
