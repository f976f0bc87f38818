// The /metrics endpoint under a client that calls it as fast as it can:
// scrapes share a collection under way, and connections are bounded.
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { METRICS_MAX_CONNECTIONS, createLogger, serveMetrics } from '../src/index.js';

describe('serveMetrics', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  /** An endpoint over a registry that counts its collections; each waits for `gate` when one is set. */
  const serve = async () => {
    let collections = 0;
    let gate: Promise<void> | undefined;
    const server = await serveMetrics(
      {
        contentType: 'text/plain',
        metrics: async () => {
          const n = ++collections;
          await gate;
          return `collection ${n}\n`;
        },
      },
      0,
      '127.0.0.1',
      createLogger('metrics-test', 'silent'),
    );
    close = () => new Promise((r) => server.close(() => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
    return { server, url, collections: () => collections, hold: (p: Promise<void>) => (gate = p) };
  };

  it('shares one collection between the scrapes that arrive while it runs', async () => {
    const m = await serve();
    let release!: () => void;
    m.hold(new Promise<void>((r) => (release = r)));
    let arrived = 0;
    m.server.on('request', () => ++arrived === 20 && release());
    const bodies = await Promise.all(Array.from({ length: 20 }, async () => (await fetch(m.url)).text()));
    expect(bodies).toEqual(Array(20).fill('collection 1\n'));
    expect(m.collections()).toBe(1);
  });

  it('collects afresh for a scrape that comes after the last collection finished', async () => {
    const m = await serve();
    expect(await (await fetch(m.url)).text()).toBe('collection 1\n');
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
