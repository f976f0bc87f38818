// The /metrics endpoint under a client that calls it as fast as it can: the
// service collects at most once per SCRAPE_SHARE_MS, and holds a bounded
// number of connections.
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { METRICS_MAX_CONNECTIONS, SCRAPE_SHARE_MS, createLogger, serveMetrics } from '../src/index.js';

describe('serveMetrics', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  /** An endpoint over a registry that counts its collections. */
  const serve = async () => {
    let collections = 0;
    const server = await serveMetrics(
      { contentType: 'text/plain', metrics: async () => `collection ${++collections}\n` },
      0,
      '127.0.0.1',
      createLogger('metrics-test', 'silent'),
    );
    close = () => new Promise((r) => server.close(() => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
    return { url, collections: () => collections };
  };

  it('shares one collection between scrapes closer together than SCRAPE_SHARE_MS', async () => {
    const m = await serve();
    const start = performance.now();
    const bodies: string[] = [];
    for (let i = 0; i < 200; i++) bodies.push(await (await fetch(m.url)).text());
    const elapsed = performance.now() - start;
    // Each collection serves every scrape of the next SCRAPE_SHARE_MS.
    expect(m.collections()).toBeLessThanOrEqual(Math.floor(elapsed / SCRAPE_SHARE_MS) + 1);
    expect(new Set(bodies).size).toBe(m.collections());
    expect(bodies[0]).toBe('collection 1\n');
  });

  it('collects afresh once SCRAPE_SHARE_MS has passed', async () => {
    const m = await serve();
    expect(await (await fetch(m.url)).text()).toBe('collection 1\n');
    await new Promise((r) => setTimeout(r, SCRAPE_SHARE_MS + 1));
    expect(await (await fetch(m.url)).text()).toBe('collection 2\n');
  });

  it(`holds at most ${METRICS_MAX_CONNECTIONS} connections, and still serves once they go`, async () => {
    const m = await serve();
    const { port } = new URL(m.url);
    const extra = 8;
    const sockets = await Promise.all(
      Array.from({ length: METRICS_MAX_CONNECTIONS + extra }, () => new Promise<ReturnType<typeof connect>>((r) => {
        const s = connect(Number(port), '127.0.0.1', () => r(s));
      })),
    );
    // The server closes the connections past its limit as it accepts them.
    await new Promise<void>((resolve) => {
      let closed = 0;
      for (const s of sockets) s.once('close', () => ++closed === extra && resolve());
    });
    expect(sockets.filter((s) => s.closed)).toHaveLength(extra);
    for (const s of sockets) s.destroy();
    // Once the server has seen them go, it serves again.
    for (;;) {
      const r = await fetch(m.url).catch(() => undefined);
      if (r) {
        expect(r.status).toBe(200);
        break;
      }
    }
  });
});
