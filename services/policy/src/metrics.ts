// Prometheus metrics of the policy. Counts are plain numbers the domain
// increments (and GetStatus reports); the registry reads them at scrape time.
import { collectProcessMetrics } from '@packetwatch/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { STORE_OPS, type StoreOp } from './recorder.js';

export class PolicyCounts {
  eventsReceived = 0;
  eventsLost = 0;
  detections = 0;
  driftRepairs = 0;
  blockFailures = 0;
  /** Decisions made in shadow mode (PW_ENFORCE=False), of every origin: enforced by no probe. */
  shadowDecisions = 0;
  /** Detections not enforced because of the blocks-per-minute cap. */
  detectionsCapped = 0;
  /** Events not given to the detector: stamped further ahead of the policy's clock than the tolerance. */
  eventsOutOfRange = 0;
  eventsClockCorrected = 0;
  /** Closed mode: SYN events to a port the probe's host accepts, shown and not counted toward the scan rules. */
  eventsOpenPort = 0;
  /** Report streams ended for a bad message, a taken probe id, or a message out of order. */
  reportsRefused = 0;
  /** Feed events slow watchers missed (their buffer was full). */
  watchEventsMissed = 0;
  /** Kernel blocks without a decision adopted as decisions at reconcile. */
  kernelBlocksAdopted = 0;
  /** Kernel blocks without a decision not adopted: beyond the blocks-per-minute cap, or not an address. */
  kernelBlocksNotAdopted = 0;
  /** Statements the decision store failed, by what they were for (recorder.ts); retries count again. */
  readonly storeErrors = Object.fromEntries(STORE_OPS.map((op) => [op, 0])) as Record<StoreOp, number>;
  /** Writes the decision store will never get: beyond the held-writes bound, or refused as they are. */
  storeWritesDropped = 0;
  /** Ended and expired decisions deleted from the store by retention (PW_DECISION_RETENTION). */
  decisionsPruned = 0;
}

/** a + b, stopping at 2^53 - 1: a counter a peer feeds must not lose its precision or outgrow a uint64. */
export function saturatingAdd(a: number, b: number): number {
  return Math.min(a + b, Number.MAX_SAFE_INTEGER);
}

/** The detector's admission (docs/detection.md, "Memory"): totals so far, and the sources in each space now. */
export interface AdmissionCounts {
  admitted: number;
  promoted: number;
  probationEvictions: number;
  protectedEvictions: number;
  spaces: { probation: number; protected: number };
}

export interface PolicyGauges {
  trackedSources: () => number;
  evictions: () => number;
  admission: () => AdmissionCounts;
  activeDecisions: () => number;
  /** Of those, the ones made in shadow mode. */
  activeShadowDecisions: () => number;
  probesConnected: () => number;
  storeWritesHeld: () => number;
}

/** The counters that are one number each. */
const COUNTERS: [name: string, help: string, key: Exclude<keyof PolicyCounts, 'storeErrors'>][] = [
  ['packetwatch_policy_events_received_total', 'SYN events received from probes', 'eventsReceived'],
  ['packetwatch_policy_events_lost_total', 'SYN events probes reported they could not deliver', 'eventsLost'],
  ['packetwatch_policy_detections_total', 'Port scanners detected', 'detections'],
  ['packetwatch_policy_shadow_decisions_total', 'Decisions made in shadow mode (PW_ENFORCE=False), detections, adoptions and operator blocks alike: recorded and sent to the probes, enforced by none', 'shadowDecisions'],
  ['packetwatch_policy_drift_repairs_total', "Differences between decisions and a probe's kernel blocklist repaired", 'driftRepairs'],
  ['packetwatch_policy_block_failures_total', 'BlockIp calls that failed after retries', 'blockFailures'],
  ['packetwatch_policy_events_clock_corrected_total', "SYN events whose times were moved onto the policy's clock: their probe's clock was off by more than the tolerance", 'eventsClockCorrected'],
  ['packetwatch_policy_events_out_of_range_total', "SYN events not given to the detector: stamped further ahead of the policy's clock than it allows", 'eventsOutOfRange'],
  ['packetwatch_policy_events_open_port_total', "Closed mode (PW_PORTSCAN_COUNT=closed): SYN events to a port the probe's host accepts (a socket, or PW_OPEN_PORTS), not counted toward the scan rules", 'eventsOpenPort'],
  ['packetwatch_policy_watch_events_missed_total', 'Feed events Watch streams missed because their client was too slow (bounded buffer)', 'watchEventsMissed'],
  ['packetwatch_policy_kernel_blocks_adopted_total', "Kernel blocks without a decision adopted at reconcile (a probe's blocks survived a lost store)", 'kernelBlocksAdopted'],
  ['packetwatch_policy_kernel_blocks_not_adopted_total', 'Kernel blocks without a decision not adopted: beyond the blocks-per-minute cap, or not an address', 'kernelBlocksNotAdopted'],
  ['packetwatch_policy_decisions_pruned_total', 'Ended and expired decisions deleted from the store because they were older than PW_DECISION_RETENTION', 'decisionsPruned'],
  ['packetwatch_policy_reports_refused_total', 'Report streams ended with an error status (bad message, probe id in use, no hello first)', 'reportsRefused'],
  ['packetwatch_policy_detections_capped_total', 'Detections beyond the blocks-per-minute budget: blocked for PW_CAPPED_BLOCK_TTL instead of PW_BLOCK_TTL', 'detectionsCapped'],
  ['packetwatch_policy_store_writes_dropped_total', 'Writes the decision store will never get: beyond the held-writes bound, or refused as they are', 'storeWritesDropped'],
];

export class PolicyMetrics {
  readonly registry = new Registry();
  readonly counts = new PolicyCounts();
  /** Watch streams open now. */
  watchers = 0;
  /** Report streams open now (with or without a hello). */
  reportStreams = 0;
  readonly detectionToBlock: Histogram;

  /** A counter whose value is read at scrape time. */
  #counter(name: string, help: string, read: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  constructor() {
    const registers = [this.registry];
    const counts = this.counts;
    collectProcessMetrics(this.registry);
    for (const [name, help, key] of COUNTERS) this.#counter(name, help, () => counts[key]);
    new Counter({
      name: 'packetwatch_policy_store_errors_total',
      help: 'Decision store statements that failed (a full disk, a damaged page, a lock), by operation; a held write retried counts again',
      labelNames: ['op'],
      registers,
      collect() {
        this.reset();
        for (const op of STORE_OPS) this.inc({ op }, counts.storeErrors[op]);
      },
    });
    this.detectionToBlock = new Histogram({
      name: 'packetwatch_policy_detection_to_block_seconds',
      help: "From the kernel time of the SYN that crossed the threshold to the probe's acknowledgement of the block",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
  }

  /** Whether the policy enforces (PW_ENFORCE): 0 is shadow mode. */
  enforcing(yes: boolean): void {
    new Gauge({
      name: 'packetwatch_policy_enforcing',
      help: 'Whether decisions are enforced: 1, or 0 in shadow mode (PW_ENFORCE=False), where probes drop nothing for a block',
      registers: [this.registry],
    }).set(yes ? 1 : 0);
  }

  /** The prefix lengths sources are keyed by (PW_IPV6_PREFIX, PW_IPV4_PREFIX): every source counted here is one. */
  sourcePrefixes(lengths: { ipv6: number; ipv4: number }): void {
    const g = new Gauge({
      name: 'packetwatch_policy_source_prefix_length',
      help: 'The prefix length sources of a family are tracked, decided and blocked by (PW_IPV6_PREFIX, PW_IPV4_PREFIX); tracked sources and decisions count prefixes',
      labelNames: ['family'],
      registers: [this.registry],
    });
    g.set({ family: 'ipv6' }, lengths.ipv6);
    g.set({ family: 'ipv4' }, lengths.ipv4);
  }

  /** Gauges read at scrape time. */
  observe(g: PolicyGauges): void {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge('packetwatch_policy_tracked_sources', 'Sources the detector is tracking: addresses, or prefixes under PW_IPV6_PREFIX and PW_IPV4_PREFIX', g.trackedSources);
    gauge('packetwatch_policy_decisions_active', 'Active block decisions (each on one source: an address or a prefix)', g.activeDecisions);
    gauge('packetwatch_policy_shadow_decisions_active', 'Active decisions made in shadow mode (PW_ENFORCE=False): enforced by no probe', g.activeShadowDecisions);
    gauge('packetwatch_policy_probes_connected', 'Probes with an open Report stream', g.probesConnected);
    gauge('packetwatch_policy_watchers', 'Watch streams open', () => this.watchers);
    gauge('packetwatch_policy_report_streams', 'Report streams open, with or without a hello', () => this.reportStreams);
    gauge('packetwatch_policy_store_writes_held', 'Writes held in memory because the decision store refused them; retried until it takes them', g.storeWritesHeld);
    const counter = this.#counter.bind(this);
    counter('packetwatch_policy_evictions_total', 'Tracked sources evicted because the detector was at its cap (both spaces)', () => g.evictions());
    counter('packetwatch_policy_tracked_sources_admitted_total', "Sources that entered the detector's probation (a first hit, or a first hit after their history expired)", () => g.admission().admitted);
    counter('packetwatch_policy_tracked_sources_promoted_total', 'Sources moved from probation to the protected space by a second distinct port', () => g.admission().promoted);
    new Counter({
      name: 'packetwatch_policy_tracked_sources_evicted_total',
      help: 'Tracked sources forgotten to make room while their history was unexpired: from probation by a newer admission, from the protected space by a promotion',
      labelNames: ['space'],
      registers,
      collect() {
        const a = g.admission();
        this.reset();
        this.inc({ space: 'probation' }, a.probationEvictions);
        this.inc({ space: 'protected' }, a.protectedEvictions);
      },
    });
    new Gauge({
      name: 'packetwatch_policy_tracked_sources_in_space',
      help: 'Sources the detector is tracking, by space: probation (seen on one port) or protected (two distinct ports or more)',
      labelNames: ['space'],
      registers,
      collect() {
        const a = g.admission();
        this.set({ space: 'probation' }, a.spaces.probation);
        this.set({ space: 'protected' }, a.spaces.protected);
      },
    });
  }
}
