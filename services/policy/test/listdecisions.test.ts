// Policy.ListDecisions a page at a time, through the real handler and store:
// the edges of keyset paging, decisions ending or pruned between pages, a
// client's bad page_size and forged or borrowed tokens, and pages cut by
// their encoded size.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { GrpcStatus, PAGE_BYTES, PageList, createLogger, pageToken } from '@packetwatch/common';
import { type ListDecisionsRequest, type ListDecisionsResponse, PolicyService } from '@packetwatch/proto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed } from '../src/feed.js';
import { PolicyMetrics } from '../src/metrics.js';
import { ProbeRegistry } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { type PolicyContext, policyService } from '../src/service.js';
import { DecisionStore } from '../src/store.js';
import { appendDecision } from './records.js';

let dir: string;
let store: DecisionStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pw-list-'));
  store = DecisionStore.open(dir).store;
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The Policy API over the store as it is now, as a policy started on it
 * would serve it (the active decisions read from the store at start): each
 * call below is served by a fresh one, so that what a test writes into the
 * store between pages is what the next page sees.
 */
function service(): { svc: ReturnType<typeof policyService>; close: () => void } {
  const log = createLogger('test', 'silent');
  const metrics = new PolicyMetrics();
  const probes = new ProbeRegistry();
  const allowlist = new Allowlist([]);
  const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000 });
  const feed = new Feed();
  const recorder = new Recorder(store, metrics, log);
  const decisions = new Decisions({ recorder, probes, allowlist, detector, feed, metrics, log, detectorTtlSeconds: 0, maxBlocksPerMinute: 0 });
  const settings = { tls: undefined, whitelistSelf: true, portThreshold: 3, windowSeconds: 60, blockTtlSeconds: 0, probeConfig: { portThreshold: 3, maxBlocksPerMinute: 0, ipv6Prefix: 64, ipv4Prefix: 32, shadow: false, countClosed: false, openPorts: [] }, started: new Date() };
  const svc = policyService({ detector, decisions, allowlist, probes, feed, metrics, log, recorder, ...settings, onProbe: () => undefined } satisfies PolicyContext);
  return { svc, close: () => recorder.close() };
}

/** Decisions on 2001:db8::<i> for i in [from, to), `reason` each; returns their ids. */
function insert(from: number, to: number, reason = 'r', expiresMs?: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(appendDecision(store, { ip: `2001:db8::${i.toString(16)}`, reason, origin: 'manual', createdMs: Date.now(), expiresMs }).id);
  return out;
}

function list(req: Partial<ListDecisionsRequest> = {}): Promise<ListDecisionsResponse> {
  const { svc, close } = service();
  return new Promise<ListDecisionsResponse>((resolve, reject) =>
    svc.listDecisions({ request: { all: false, pageSize: 0, pageToken: '', ...req } } as grpc.ServerUnaryCall<ListDecisionsRequest, ListDecisionsResponse>, (err, res) =>
      err ? reject(err) : resolve(res!),
    ),
  ).finally(close);
}

/** Every page from req.pageToken (the first page by default), as a client pages: each page's decision ids. */
async function pages(req: Partial<ListDecisionsRequest> = {}): Promise<number[][]> {
  const out: number[][] = [];
  let token = req.pageToken ?? '';
  do {
    const res = await list({ ...req, pageToken: token });
    out.push(res.decisions.map((d) => Number(d.id)));
    token = res.nextPageToken;
  } while (token !== '');
  return out;
}

describe('ListDecisions: pages', () => {
  it('answers no decisions with one empty last page', async () => {
    expect(await list()).toEqual({ decisions: [], nextPageToken: '' });
    expect(await list({ all: true })).toEqual({ decisions: [], nextPageToken: '' });
  });

  it('lists exactly one default page (1,000) with no next page', async () => {
    const ids = insert(0, 1000);
    expect(await pages()).toEqual([ids]);
  });

  it('puts the decision after a full page on a page of its own', async () => {
    const ids = insert(0, 1001);
    expect(await pages()).toEqual([ids.slice(0, 1000), [ids[1000]]]);
  });

  it('clamps a page_size above 10,000 and pages 25,000 decisions by id', async () => {
    const ids = insert(0, 25_000);
    const got = await pages({ pageSize: 2 ** 31 - 1 });
    expect(got.map((p) => p.length)).toEqual([10_000, 10_000, 5000]);
    expect(got.flat()).toEqual(ids);
  });

  it('lists active decisions by default and ended or expired ones too with all', async () => {
    const [a, b, c] = insert(0, 3);
    store.end(b!, Date.now());
    const [expired] = insert(3, 4, 'r', Date.now() - 1000);
    expect(await pages({ pageSize: 1 })).toEqual([[a], [c]]);
    expect(await pages({ all: true, pageSize: 1 })).toEqual([[a], [b], [c], [expired]]);
  });
});

describe('ListDecisions: decisions that end or go between pages', () => {
  it('continues after the last id of a page when that decision has ended, and skips those that end ahead', async () => {
    const ids = insert(0, 10);
    const first = await list({ pageSize: 4 });
    expect(first.decisions.map((d) => Number(d.id))).toEqual(ids.slice(0, 4));
    store.end(ids[3]!, Date.now());
    store.end(ids[4]!, Date.now());
    expect(await pages({ pageSize: 4, pageToken: first.nextPageToken })).toEqual([ids.slice(5, 9), [ids[9]]]);
  });

  it('continues after a pruned decision (all), listing a decision made meanwhile at the end', async () => {
    const ids = insert(0, 4, 'r', Date.now() - 100 * 86_400_000);
    const first = await list({ all: true, pageSize: 2 });
    expect(store.prune(Date.now(), 0, 1000)).toEqual(ids);
    const [fresh] = insert(10, 11);
    expect(await pages({ all: true, pageSize: 2, pageToken: first.nextPageToken })).toEqual([[fresh]]);
  });
});

describe('ListDecisions: a bad page_size, and page tokens a client may forge or borrow', () => {
  const id = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    return b;
  };
  it.each([
    ['a negative page_size', { pageSize: -5 }, 'invalid page_size -5: 0 (the default, 1000) or a positive number'],
    ['garbage', { pageToken: '!!' }, 'invalid page_token: not a token of this service'],
    ['a ListBlocks token', { pageToken: pageToken(PageList.KernelBlocks, Buffer.alloc(16)) }, 'invalid page_token: it belongs to another list (or the same list with other arguments)'],
    ['an all=true token for all=false', { pageToken: pageToken(PageList.AllDecisions, id(1n)) }, 'invalid page_token: it belongs to another list (or the same list with other arguments)'],
    ['an all=false token for all=true', { all: true, pageToken: pageToken(PageList.ActiveDecisions, id(1n)) }, 'invalid page_token: it belongs to another list (or the same list with other arguments)'],
    ['an id no store issues', { pageToken: pageToken(PageList.ActiveDecisions, id(2n ** 63n)) }, 'invalid page_token: not a token of this service'],
  ])('refuses %s with INVALID_ARGUMENT', async (_what, req, details) => {
    insert(0, 3);
    await expect(list(req)).rejects.toEqual({ code: GrpcStatus.INVALID_ARGUMENT, details });
  });

  it('takes a forged position that is well formed, listing what follows it', async () => {
    const ids = insert(0, 3);
    const res = await list({ pageToken: pageToken(PageList.ActiveDecisions, id(BigInt(ids[1]!))) });
    expect(res.decisions.map((d) => Number(d.id))).toEqual([ids[2]]);
  });
});

describe('ListDecisions: pages cut by size', () => {
  it('stops pages of large decisions before PAGE_BYTES, each next page picking up where the last stopped', async () => {
    // 256-character reasons make each decision about 300 bytes: 10,000 would be 3 MB.
    const ids = insert(0, 10_000, 'x'.repeat(256));
    const listed: number[] = [];
    const sizes: number[] = [];
    let token = '';
    do {
      const res = await list({ pageSize: 10_000, pageToken: token });
      sizes.push(PolicyService.listDecisions.responseSerialize(res).length);
      listed.push(...res.decisions.map((d) => Number(d.id)));
      token = res.nextPageToken;
    } while (token !== '');
    expect(listed).toEqual(ids);
    expect(sizes.length).toBe(3);
    for (const bytes of sizes) expect(bytes).toBeLessThanOrEqual(PAGE_BYTES);
    // Full pages are full: another decision would not have fitted.
    for (const bytes of sizes.slice(0, -1)) expect(bytes).toBeGreaterThan(PAGE_BYTES - 400);
  });
});
