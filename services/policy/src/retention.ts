// Retention of ended and expired decisions (PW_DECISION_RETENTION): the
// store would otherwise keep every decision ever made. Pruned at start and
// every hour, in batches so that a long history never holds the event loop
// for long; which decisions stay however old is the store's rule
// (DecisionStore.prune), because reconcile depends on them.
import type { Logger } from '@packetwatch/common';
import type { PolicyMetrics } from './metrics.js';
import type { DecisionStore } from './store.js';

export const PRUNE_INTERVAL_MS = 3_600_000;
/** Decisions deleted per statement; the event loop gets a turn between statements. */
export const PRUNE_BATCH = 1000;

export class Retention {
  #running: Promise<number> | undefined;

  constructor(
    private readonly store: DecisionStore,
    /** 0: keep every decision. */
    private readonly retentionSeconds: number,
    private readonly metrics: PolicyMetrics,
    private readonly log: Logger,
  ) {}

  /** Deletes what is due at nowMs; returns how many. A prune asked for while one runs joins it. */
  prune(nowMs = Date.now()): Promise<number> {
    if (this.retentionSeconds === 0) return Promise.resolve(0);
    this.#running ??= this.#prune(nowMs - this.retentionSeconds * 1000).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #prune(beforeMs: number): Promise<number> {
    let afterId = 0;
    let total = 0;
    for (;;) {
      const ids = this.store.prune(beforeMs, afterId, PRUNE_BATCH);
      total += ids.length;
      this.metrics.counts.decisionsPruned += ids.length;
      if (ids.length < PRUNE_BATCH) break;
      afterId = ids[ids.length - 1]!;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (total > 0) this.log.info({ pruned: total, endedBefore: new Date(beforeMs).toISOString() }, 'pruned ended and expired decisions past PW_DECISION_RETENTION');
    return total;
  }

  /** Prunes now and every PRUNE_INTERVAL_MS; returns a function that stops the timer. */
  start(): () => void {
    const run = () => {
      this.prune().catch((err: unknown) => this.log.error({ err }, 'pruning decisions failed'));
    };
    run();
    const timer = setInterval(run, PRUNE_INTERVAL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }
}
