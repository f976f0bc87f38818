// The Report stream as the probe sends it: a real gRPC server (the policy
// stand-in) receives every event the queue held, once, in order, with its
// sequence, although the reporter writes its messages into buffers it reuses.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SYN_EVENT_SIZE } from '@packetwatch/bpf/records';
import { createLogger, parseEndpoint } from '@packetwatch/common';
import { PolicyStub } from '@packetwatch/test-support/policy-stub';
import { afterEach, describe, expect, it } from 'vitest';
import { EventQueue } from '../src/queue.js';
import { Reporter } from '../src/reporter.js';

const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** `count` SYN records whose timestamps are their numbers first.. (the stand-in decodes them). */
function records(first: number, count: number): Buffer {
  const b = Buffer.alloc(count * SYN_EVENT_SIZE);
  for (let i = 0; i < count; i++) b.writeBigUInt64LE(BigInt(first + i), i * SYN_EVENT_SIZE);
  return b;
}

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function connected(queue: EventQueue) {
  const dir = mkdtempSync(join(tmpdir(), 'pw-reporter-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const stub = new PolicyStub(join(dir, 'policy.sock'));
  await stub.start();
  cleanups.push(() => stub.stop());
  const hello = { probeId: 'test/eth0', version: 't', interface: 'eth0', ifindex: 2, ownAddresses: [], whitelistSelf: false, callbackEndpoint: '', attachMode: 0, programId: 0, adopted: false, kernelScanPorts: 0, kernelScanWindow: undefined, shadow: false };
  const reporter = new Reporter(parseEndpoint(`unix:${stub.socketPath}`)!, undefined, queue, () => hello, createLogger('test', 'silent'));
  reporter.start();
  cleanups.push(() => reporter.stop(0));
  await until('the hello', () => reporter.connected);
  return { stub, reporter };
}

describe('Reporter', () => {
  it('delivers every event once and in order over many messages, full and partial, from reused buffers', async () => {
    const queue = new EventQueue(100_000, 1000, SYN_EVENT_SIZE);
    const { stub, reporter } = await connected(queue);
    // Rounds of different sizes, each pushed within one turn of the event
    // loop, with turns between them: more messages than the reporter keeps
    // buffers for, so buffers are reused while earlier messages are still
    // on their way.
    let next = 0;
    for (const n of [1, 2500, 999, 1000, 1, 40_000, 7, 3000, 50_000, 12]) {
      for (let pushed = 0; pushed < n; ) {
        const k = Math.min(n - pushed, 700);
        expect(queue.push(records(next + pushed, k), k)).toBe(k);
        pushed += k;
      }
      next += n;
      reporter.scheduleFlush();
      await new Promise((r) => setImmediate(r));
    }
    await until('every event', () => stub.events.length >= next);
    expect(stub.events.map((e) => Number(e.tsNs))).toEqual(Array.from({ length: next }, (_, i) => i));
    // Each batch carries its first event's sequence, and none is larger than batchEvents.
    let seq = 0n;
    for (const b of stub.batches) {
      expect(b.firstSequence).toBe(seq);
      expect(b.events.length).toBeLessThanOrEqual(1000);
      seq += BigInt(b.events.length);
    }
    expect(stub.batches.length).toBeGreaterThan(32);
    expect(stub.batches.every((b) => b.lost === 0n)).toBe(true);
    expect(reporter.stats()).toMatchObject({ eventsSent: next, batchesSent: stub.batches.length });
  });

  it('sends the losses counted with no events to carry them', async () => {
    const queue = new EventQueue(10, 10, SYN_EVENT_SIZE);
    const { stub, reporter } = await connected(queue);
    queue.push(records(0, 15), 15);
    reporter.scheduleFlush();
    await until('the batch', () => stub.events.length >= 10);
    queue.addLost(3);
    reporter.scheduleFlush();
    await until('the losses', () => stub.batches.reduce((n, b) => n + b.lost, 0n) >= 8n);
    expect(stub.events.map((e) => Number(e.tsNs))).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(stub.batches.map((b) => [b.events.length, b.lost])).toEqual([
      [10, 5n],
      [0, 3n],
    ]);
  });
});
