// The Prometheus endpoint (GET /metrics on the configured port) and the
// process metrics both services export.
import { type Server, createServer } from 'node:http';
import { type Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './log.js';

/** What the endpoint serves: a prom-client Registry, or anything that renders one per scrape. */
export interface Scrapeable {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/**
 * prom-client's default metrics name three gauges with a `_total` suffix, which
 * Prometheus reserves for counters (promtool check metrics rejects them). Each is
 * the sum of the per-type gauge of the same name without the suffix
 * (`nodejs_active_handles{type}` …), which stays: sum() gives the total.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** The process and Node.js runtime metrics, under names that follow Prometheus conventions. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
}

/**
 * Connections /metrics holds open at once; more are refused. With scrapes
 * that arrive while a collection runs sharing it, this bounds the work
 * whoever reaches the endpoint can queue.
 */
export const METRICS_MAX_CONNECTIONS = 64;

export async function serveMetrics(registry: Scrapeable, port: number, host: string, log: Logger): Promise<Server> {
  // Scrapes that arrive while a collection runs get its result; a scrape
  // after it has finished collects afresh (what it reads is never older than
  // the request).
  let running: Promise<string> | undefined;
  const collect = (): Promise<string> =>
    (running ??= registry.metrics().finally(() => {
      running = undefined;
    }));
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    collect().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => {
        log.error({ err }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info({ port, host }, 'serving metrics on /metrics');
  return server;
}
