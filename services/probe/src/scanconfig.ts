// The scan configuration of the in-kernel detector: the policy's thresholds,
// window, block TTLs and per-minute budget, which it sends every probe on
// the Report stream (PolicyMessage.config). A probe no policy has configured
// runs the seed's defaults; one that has keeps the last configuration it
// received, pinned (the probe_config map), across its own restarts. Pure:
// checking a message, comparing, converting to the pinned record and back.
import { DEFAULT_CAPPED_BLOCK_SECONDS, type PortCountRecord, type ProbeConfigRecord, SCAN_MAX_PORTS, openPortRanges } from '@packetwatch/bpf';
import { MAX_TTL_SECONDS, type PortRange, formatPortRanges, mergePortRanges } from '@packetwatch/common';
import { ConfigOrigin, type Duration, type ProbeConfig } from '@packetwatch/proto';

export interface ScanConfig {
  /** Distinct ports within the window that make a scanner (1 to 255). */
  portThreshold: number;
  windowSeconds: number;
  /** 0: permanent. */
  blockTtlSeconds: number;
  /** 0: no cap. */
  maxBlocksPerMinute: number;
  cappedBlockTtlSeconds: number;
  /** IPv6 sources are tracked and blocked by this prefix length (1 to 128). */
  ipv6Prefix: number;
  /** IPv4 sources likewise (1 to 32). */
  ipv4Prefix: number;
  /** Shadow mode (the policy's PW_ENFORCE=False): the program's blocks drop nothing. */
  shadow: boolean;
  /** Closed mode (PW_PORTSCAN_COUNT=closed): a SYN counts only when nothing on the host accepts its port. */
  countClosed: boolean;
  /** Closed mode: ports declared open (PW_OPEN_PORTS), sorted and merged inclusive ranges. */
  openPorts: PortRange[];
}

/** What a probe runs before any policy has configured it: the seed's thresholds, permanent blocks, 120 a minute. */
export const DEFAULT_SCAN_CONFIG: Readonly<ScanConfig> = Object.freeze({
  portThreshold: 3,
  windowSeconds: 60,
  blockTtlSeconds: 0,
  maxBlocksPerMinute: 120,
  cappedBlockTtlSeconds: DEFAULT_CAPPED_BLOCK_SECONDS,
  ipv6Prefix: 64,
  ipv4Prefix: 32,
  shadow: false,
  countClosed: false,
  openPorts: [],
});

export const MAX_PORT_THRESHOLD = 255;
export const MAX_WINDOW_SECONDS = 86_400;
export const MAX_BLOCKS_PER_MINUTE = 1_000_000;

/** The configuration in force and where it came from (GetStatus). */
export interface ScanConfigState {
  config: ScanConfig;
  origin: ConfigOrigin;
  /** When the policy sent it; undefined for the defaults. */
  received: Date | undefined;
}

export type Checked = { ok: true; value: ScanConfig } | { ok: false; reason: string };

/** Seconds of a Duration within [min, max], or the reason they are not. */
function secondsOf(name: string, d: Duration | undefined, min: number, max: number): number | string {
  if (d === undefined) return `${name} is missing`;
  if (!Number.isInteger(d.nanos) || d.nanos < 0 || d.nanos > 999_999_999) return `${name} has nanos ${d.nanos}, not 0 to 999999999`;
  const s = Number(d.seconds) + d.nanos / 1e9;
  if (!(s >= min && s <= max)) return `${name} is ${s} s, not ${min} to ${max} s`;
  return s;
}

/**
 * Checks a configuration the policy sent. The policy is trusted, but its
 * message is still checked: a value the detector cannot run with is named,
 * and the caller keeps the configuration in force.
 */
export function checkScanConfig(m: ProbeConfig): Checked {
  if (!Number.isInteger(m.portThreshold) || m.portThreshold < 1 || m.portThreshold > MAX_PORT_THRESHOLD) {
    return { ok: false, reason: `port_threshold is ${m.portThreshold}, not 1 to ${MAX_PORT_THRESHOLD}` };
  }
  if (!Number.isInteger(m.maxBlocksPerMinute) || m.maxBlocksPerMinute > MAX_BLOCKS_PER_MINUTE) {
    return { ok: false, reason: `max_blocks_per_minute is ${m.maxBlocksPerMinute}, not 0 to ${MAX_BLOCKS_PER_MINUTE}` };
  }
  const window = secondsOf('window', m.window, 1, MAX_WINDOW_SECONDS);
  if (typeof window === 'string') return { ok: false, reason: window };
  // An absent block_ttl is a zero Duration: permanent.
  const blockTtl = secondsOf('block_ttl', m.blockTtl ?? { seconds: 0n, nanos: 0 }, 0, MAX_TTL_SECONDS);
  if (typeof blockTtl === 'string') return { ok: false, reason: blockTtl };
  const capped = secondsOf('capped_block_ttl', m.cappedBlockTtl, 1, MAX_TTL_SECONDS);
  if (typeof capped === 'string') return { ok: false, reason: capped };
  for (const [name, v, max] of [['ipv6_prefix', m.ipv6Prefix, 128], ['ipv4_prefix', m.ipv4Prefix, 32]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > max) return { ok: false, reason: `${name} is ${v}, not 1 to ${max}` };
  }
  for (const r of m.openPorts ?? []) {
    if (!Number.isInteger(r.first) || !Number.isInteger(r.last) || r.first < 1 || r.last > 65535 || r.first > r.last) {
      return { ok: false, reason: `open_ports holds ${r.first}-${r.last}, not a range of 1 to 65535` };
    }
  }
  return {
    ok: true,
    value: {
      portThreshold: m.portThreshold,
      windowSeconds: window,
      blockTtlSeconds: blockTtl,
      maxBlocksPerMinute: m.maxBlocksPerMinute,
      cappedBlockTtlSeconds: capped,
      ipv6Prefix: m.ipv6Prefix,
      ipv4Prefix: m.ipv4Prefix,
      shadow: m.shadow,
      countClosed: m.countClosed === true,
      openPorts: mergePortRanges((m.openPorts ?? []).map((r) => [r.first, r.last])),
    },
  };
}

export function sameScanConfig(a: ScanConfig, b: ScanConfig): boolean {
  return (
    a.portThreshold === b.portThreshold &&
    a.windowSeconds === b.windowSeconds &&
    a.blockTtlSeconds === b.blockTtlSeconds &&
    a.maxBlocksPerMinute === b.maxBlocksPerMinute &&
    a.cappedBlockTtlSeconds === b.cappedBlockTtlSeconds &&
    a.ipv6Prefix === b.ipv6Prefix &&
    a.ipv4Prefix === b.ipv4Prefix &&
    a.shadow === b.shadow &&
    a.countClosed === b.countClosed &&
    formatPortRanges(a.openPorts) === formatPortRanges(b.openPorts)
  );
}

/** The ports the XDP program checks: the threshold, or 0 (off) when disabled or beyond what it tracks (the policy then detects alone). */
export function kernelScanPorts(c: ScanConfig, kernelDetection: boolean): number {
  return kernelDetection && c.portThreshold <= SCAN_MAX_PORTS ? c.portThreshold : 0;
}

const NS = 1_000_000_000n;
const ns = (s: number) => BigInt(Math.round(s * 1e9));
const durationOfNs = (n: bigint): Duration => ({ seconds: n / NS, nanos: Number(n % NS) });
const duration = (s: number): Duration => durationOfNs(ns(s));

/** The pinned probe_config record (closed mode and the ports declared open are pinned in port_count, written at load). */
export function toRecord(c: ScanConfig, received: Date): ProbeConfigRecord {
  return {
    portThreshold: c.portThreshold,
    blocksPerMin: c.maxBlocksPerMinute,
    windowNs: ns(c.windowSeconds),
    blockNs: ns(c.blockTtlSeconds),
    cappedBlockNs: ns(c.cappedBlockTtlSeconds),
    receivedUnixMs: BigInt(received.getTime()),
    ipv6Prefix: c.ipv6Prefix,
    ipv4Prefix: c.ipv4Prefix,
    shadow: c.shadow ? 1 : 0,
  };
}

/**
 * The configuration a pinned record holds, checked as a message from the
 * policy is (the pin can be written past the probe, with bpftool);
 * undefined when it holds none the detector can run with. Closed mode and
 * the ports declared open come from the port_count pin (all mode without
 * it: pins of a probe that predates closed mode).
 */
export function fromRecord(r: ProbeConfigRecord, ports?: PortCountRecord): { config: ScanConfig; received: Date } | undefined {
  const checked = checkScanConfig({
    portThreshold: r.portThreshold,
    window: durationOfNs(r.windowNs),
    blockTtl: durationOfNs(r.blockNs),
    maxBlocksPerMinute: r.blocksPerMin,
    cappedBlockTtl: durationOfNs(r.cappedBlockNs),
    ipv6Prefix: r.ipv6Prefix,
    ipv4Prefix: r.ipv4Prefix,
    shadow: r.shadow !== 0,
    countClosed: ports?.closed === 1,
    openPorts: ports ? openPortRanges(ports.open).map(([first, last]) => ({ first, last })) : [],
  });
  return checked.ok ? { config: checked.value, received: new Date(Number(r.receivedUnixMs)) } : undefined;
}

export function toProto(c: ScanConfig): ProbeConfig {
  return {
    portThreshold: c.portThreshold,
    window: duration(c.windowSeconds),
    blockTtl: duration(c.blockTtlSeconds),
    maxBlocksPerMinute: c.maxBlocksPerMinute,
    cappedBlockTtl: duration(c.cappedBlockTtlSeconds),
    ipv6Prefix: c.ipv6Prefix,
    ipv4Prefix: c.ipv4Prefix,
    shadow: c.shadow,
    countClosed: c.countClosed,
    openPorts: c.openPorts.map(([first, last]) => ({ first, last })),
  };
}
