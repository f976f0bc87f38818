// Prometheus metrics of the probe. Kernel counters are read at scrape time
// from the per-CPU counters map, once per scrape; the seed's conn_count_total
// is kept.
import type { Counters, Datapath } from '@packetwatch/bpf';
import { type Scrapeable, collectProcessMetrics } from '@packetwatch/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface ProbeMetricsSources {
  dp: Datapath;
  queueDepth: () => number;
  queueCapacity: number;
  eventsSent: () => number;
  eventsLost: () => number;
  policyConnected: () => boolean;
  blocks: () => number;
  blockCapacity: number;
  /** Whether the XDP program runs in shadow mode (its blocks drop nothing). */
  shadow: () => boolean;
}

const KERNEL: [name: string, help: string, counter: keyof Counters][] = [
  ['packetwatch_probe_frames_total', 'Frames seen by the XDP program', 'frames'],
  ['packetwatch_probe_syn_total', 'New-connection SYNs (SYN set; ACK, FIN, RST clear) seen', 'syn'],
  ['packetwatch_probe_stealth_probes_total', 'Stealth probes seen: TCP, ACK clear, neither a SYN nor a bare RST (FIN, NULL, XMAS, ...)', 'stealth'],
  ['packetwatch_probe_tiny_fragments_total', 'TCP first fragments without the whole TCP header, and IPv4 TCP fragments at offset 1 (dropped)', 'tinyFragments'],
  ['packetwatch_probe_long_chains_total', 'IPv6 header chains longer than the XDP program walks (dropped)', 'longChains'],
  ['packetwatch_probe_bogus_sources_total', 'IPv6 frames from IPv4-mapped or IPv4-compatible sources (dropped)', 'bogusSources'],
  ['packetwatch_probe_events_total', 'Probe events (SYN, stealth, fragment) written to the ring buffer', 'events'],
  ['packetwatch_probe_ringbuf_full_total', 'Probe events lost because the ring buffer was full', 'ringbufFull'],
  ['packetwatch_probe_malformed_total', 'Frames that could not be parsed (passed, unless from a blocked source)', 'malformed'],
  ['packetwatch_probe_fragments_total', 'Non-first IP fragments (passed, unless from a blocked source)', 'fragments'],
  ['packetwatch_probe_non_ip_total', 'Frames that are neither IPv4 nor IPv6', 'nonIp'],
  ['packetwatch_probe_non_tcp_total', 'IP packets that are not TCP', 'nonTcp'],
  ['packetwatch_probe_allowlisted_total', 'Frames of blocked sources passed because allowlisted', 'allowlisted'],
  ['packetwatch_probe_block_expired_total', 'Frames of sources whose block had expired', 'blockExpired'],
  ['packetwatch_probe_scans_blocked_total', 'Scanners the in-kernel detector blocked', 'scanBlocked'],
  ['packetwatch_probe_scans_capped_total', 'In-kernel detections not blocked (per-minute cap or full blocklist)', 'scanCapped'],
  ['packetwatch_probe_scan_admitted_total', 'Sources the in-kernel detector started to track (probation)', 'scanAdmitted'],
  ['packetwatch_probe_scan_promoted_total', "Sources moved from the in-kernel detector's probation to its protected space", 'scanPromoted'],
  ['packetwatch_probe_scan_probation_evicted_total', "Sources forgotten from the in-kernel detector's probation to make room", 'probationEvicted'],
  ['packetwatch_probe_scan_protected_evicted_total', "Sources forgotten from the in-kernel detector's protected space to make room", 'protectedEvicted'],
  ['packetwatch_probe_would_drop_total', 'Shadow mode: frames of blocked sources passed that enforcing would have dropped', 'wouldDrop'],
  ['packetwatch_probe_open_port_syns_total', 'Closed mode: SYNs to a port the host accepts (a socket, or PW_OPEN_PORTS), not counted toward the scan rule', 'openPortSyn'],
];

export class ProbeMetrics implements Scrapeable {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;
  /** The counters map as read by the scrape under way; never carried to the next one. */
  #counters: Counters | undefined;
  readonly blockApplySeconds: Histogram;
  readonly attached: Gauge;
  readonly #info: Gauge;
  readonly #infoLabels: Record<string, string>;

  constructor(src: ProbeMetricsSources, info: { interface: string; mode: string; programId: number; version: string; pinsPrivate: boolean }) {
    const r = this.registry;
    collectProcessMetrics(r);
    // One read of the counters map per scrape, shared by every kernel metric.
    const counters = (): Counters => (this.#counters ??= src.dp.counters());
    new Counter({
      name: 'conn_count_total',
      help: 'number of new connections',
      registers: [r],
      collect() {
        this.reset();
        this.inc(Number(counters().events));
      },
    });
    for (const [name, help, key] of KERNEL) {
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          this.reset();
          this.inc(Number(counters()[key]));
        },
      });
    }
    new Counter({
      name: 'packetwatch_probe_dropped_total',
      help: 'Frames of blocked sources dropped, by kind: syn (new-connection SYNs), probe (stealth and fragment probes), other',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        this.reset();
        this.inc({ kind: 'syn' }, Number(counters().synDropped));
        this.inc({ kind: 'probe' }, Number(counters().probeDropped));
        this.inc({ kind: 'other' }, Number(counters().otherDropped));
      },
    });
    new Counter({
      name: 'packetwatch_probe_events_sent_total',
      help: 'SYN events sent to the policy service',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.eventsSent());
      },
    });
    new Counter({
      name: 'packetwatch_probe_events_lost_total',
      help: 'SYN events that could not be delivered to the policy service (queue or ring buffer full)',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.eventsLost());
      },
    });
    new Gauge({
      name: 'packetwatch_probe_queue_depth',
      help: 'Events waiting to be sent to the policy service',
      registers: [r],
      collect() {
        this.set(src.queueDepth());
      },
    });
    new Gauge({ name: 'packetwatch_probe_queue_capacity', help: 'Capacity of the event queue', registers: [r] }).set(src.queueCapacity);
    new Gauge({
      name: 'packetwatch_probe_policy_connected',
      help: '1 when the Report stream to the policy service is up',
      registers: [r],
      collect() {
        this.set(src.policyConnected() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'packetwatch_probe_blocklist_entries',
      help: 'Entries in the kernel blocklist',
      registers: [r],
      collect() {
        this.set(src.blocks());
      },
    });
    new Gauge({
      name: 'packetwatch_probe_shadow',
      help: "1 when the XDP program runs in shadow mode (the policy's PW_ENFORCE=False): blocks drop nothing",
      registers: [r],
      collect() {
        this.set(src.shadow() ? 1 : 0);
      },
    });
    new Gauge({ name: 'packetwatch_probe_blocklist_capacity', help: 'Capacity of the kernel blocklist', registers: [r] }).set(src.blockCapacity);
    this.#info = new Gauge({
      name: 'packetwatch_probe_info',
      help: 'The probe: interface, attach mode, program id, version',
      labelNames: ['interface', 'mode', 'program_id', 'version'],
      registers: [r],
    });
    this.#infoLabels = { interface: info.interface, mode: info.mode, program_id: String(info.programId), version: info.version };
    this.#info.set(this.#infoLabels, 1);
    new Gauge({
      name: 'packetwatch_probe_pins_private',
      help: '1 when the pins (link, maps) are on a bpffs private to the probe\'s mount namespace: the XDP program and every block end with it (set PW_BPF_PIN_DIR)',
      registers: [r],
    }).set(info.pinsPrivate ? 1 : 0);
    this.attached = new Gauge({
      name: 'packetwatch_probe_attached',
      help: '1 while the XDP program is attached to the watched interface, 0 while it is not (interface missing)',
      registers: [r],
    });
    this.attached.set(1);
    this.blockApplySeconds = new Histogram({
      name: 'packetwatch_probe_block_apply_seconds',
      help: 'Time to apply a BlockIp call to the kernel blocklist',
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01],
      registers: [r],
    });
  }

  /** The program was loaded again (a new scan configuration): the info series names the new id. */
  programChanged(programId: number): void {
    this.#infoLabels.program_id = String(programId);
    this.#info.reset();
    this.#info.set(this.#infoLabels, 1);
  }

  /** One scrape: the counters map is read afresh by its first kernel metric and shared by the rest. */
  metrics(): Promise<string> {
    this.#counters = undefined;
    // prom-client calls every collect() synchronously inside metrics(); what
    // a later asynchronous one would read is fresh too.
    const body = this.registry.metrics();
    this.#counters = undefined;
    return body;
  }
}
