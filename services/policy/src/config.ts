// The policy's settings: the seed's detector thresholds and whitelist flag
// with their defaults, plus the policy's own. Each is also a flag.
import { DEFAULT_CAPPED_BLOCK_SECONDS } from '@packetwatch/bpf/records';
import { ConfigError, LOG_LEVELS, type ConfigOf, parseEndpoint, parsePrefix, settings as s } from '@packetwatch/common';
import type { Duration, ProbeConfig } from '@packetwatch/proto';
import type { Escalation } from './escalation.js';

/**
 * The shortest PW_DECISION_RETENTION: pruning keeps an ended decision
 * while a block made for it may be in a kernel, judged by its expiry, and a
 * kernel block outlives its decision by the BlockIp calls' delay (seconds)
 * at most; an hour is ample margin (store.ts, prune).
 */
export const RETENTION_MIN_SECONDS = 3600;

export const policySettings = {
  timeThreshold: s.int('PW_PORTSCAN_TIME_THRESHOLD', 'time-threshold', 60, 'window in seconds in which distinct ports count', 1, 86_400),
  portThreshold: s.int('PW_PORTSCAN_PORT_THRESHOLD', 'port-threshold', 3, 'distinct ports within the window that make a scanner', 1, 255),
  // F = 10: a source that stays under N = 3 on every host, 2 ports each, is a
  // scanner by its fifth host, a one-port sweep by its tenth (docs/fleet.md).
  fleetThreshold: s.int(
    'PW_FLEET_PORT_THRESHOLD',
    'fleet-port-threshold',
    10,
    'distinct (probe, port) pairs within the window, over all probes, that make a scanner (0 = off; below PW_PORTSCAN_PORT_THRESHOLD it counts as that; docs/fleet.md)',
    0,
    255,
  ),
  portscanCount: s.oneOf(
    'PW_PORTSCAN_COUNT',
    'portscan-count',
    'all',
    'which SYNs count toward the scan rule: all (every SYN), or closed (only SYNs to ports nothing on the host accepts; stealth probes always count)',
    ['all', 'closed'] as const,
  ),
  openPorts: s.portRanges(
    'PW_OPEN_PORTS',
    'open-ports',
    'with PW_PORTSCAN_COUNT=closed, ports that count as open without a listening socket (ports published through DNAT), comma-separated ports and ranges: 8080,30000-32767',
  ),
  ipv6Prefix: s.int('PW_IPV6_PREFIX', 'ipv6-prefix', 64, 'IPv6 sources are tracked and blocked by this prefix length (128: each address alone)', 1, 128),
  ipv4Prefix: s.int('PW_IPV4_PREFIX', 'ipv4-prefix', 32, 'IPv4 sources are tracked and blocked by this prefix length', 1, 32),
  whitelistSelf: s.bool('PW_WHITELIST_SELF', 'whitelist-self', true, "never block a probe's own addresses"),
  enforce: s.bool(
    'PW_ENFORCE',
    'enforce',
    true,
    'False: shadow mode, where scanners are detected, decided, recorded and counted as usual but no probe drops anything for a block',
  ),
  enforceShadowDecisions: s.bool(
    'PW_ENFORCE_SHADOW_DECISIONS',
    'enforce-shadow-decisions',
    true,
    'at a start with PW_ENFORCE=True, the active decisions made in shadow mode become blocks (True) or end (False)',
  ),
  allowlist: s.string('PW_ALLOWLIST', 'allowlist', '', 'addresses or CIDRs never blocked, comma-separated'),
  blockTtl: s.seconds('PW_BLOCK_TTL', 'block-ttl', 0, 'how long a detector block lasts (0 = permanent, like the seed)'),
  blockTtlFactor: s.string(
    'PW_BLOCK_TTL_FACTOR',
    'block-ttl-factor',
    '1',
    'a source detected again after its previous block lapsed is blocked for the previous TTL times this, up to PW_BLOCK_TTL_MAX (1 = no escalation)',
    /^\d+(\.\d+)?$/,
    'a number of 1 or more (1 = no escalation)',
  ),
  blockTtlMax: s.seconds('PW_BLOCK_TTL_MAX', 'block-ttl-max', 0, 'the longest an escalated block lasts (0 = up to 3650d); not below PW_BLOCK_TTL'),
  stateDir: s.string('PW_STATE_DIR', 'state-dir', '/var/lib/packetwatch', 'directory of the decision store', /^\/.+/, 'an absolute path'),
  socket: s.string('PW_POLICY_SOCKET', 'socket', '/run/packetwatch/policy/policy.sock', 'Unix socket of the Policy API for operators', /^\/.+/, 'an absolute path'),
  socketGroup: s.optionalString('PW_SOCKET_GROUP', 'socket-group', "operators' group (socket mode 0660)"),
  reportSocket: s.string('PW_POLICY_REPORT_SOCKET', 'report-socket', '/run/packetwatch/report/policy.sock', 'Unix socket of the Policy API for probes (Report)', /^\/.+/, 'an absolute path'),
  controlGroup: s.optionalString('PW_CONTROL_GROUP', 'control-group', 'the group shared with the probe, without operators (report socket mode 0660)'),
  tcpAddr: s.optionalString('PW_POLICY_TCP_ADDR', 'tcp-addr', 'also serve the Policy API on host:port (TLS unless --insecure-tcp)'),
  tlsCert: s.optionalString('PW_TLS_CERT', 'tls-cert', 'TLS certificate (PEM) for TCP'),
  tlsKey: s.optionalString('PW_TLS_KEY', 'tls-key', 'TLS private key (PEM) for TCP'),
  tlsCa: s.optionalString('PW_TLS_CA', 'tls-ca', 'CA (PEM): clients must present a certificate it signed; also verifies probes'),
  insecureTcp: s.bool('PW_INSECURE_TCP', 'insecure-tcp', false, 'allow plaintext gRPC on TCP (logs a warning)'),
  prometheusPort: s.port('PW_POLICY_PROMETHEUS_PORT', 'prometheus-port', 9091, 'port of the /metrics endpoint'),
  metricsHost: s.host('PW_METRICS_HOST', 'metrics-host', '0.0.0.0', 'address the /metrics endpoint listens on'),
  maxSources: s.int(
    'PW_MAX_TRACKED_SOURCES',
    'max-tracked-sources',
    1_250_000,
    'sources the detector tracks at most, in two spaces: an eighth for sources with two distinct ports or more (protected; the least recently hit evicted for a promotion), the rest for sources seen on one port (probation, first admitted first forgotten: a scanner is detected under a flood of forged sources while fewer than 7/8 of this arrive between its first two distinct ports, 21.9 s at 50,000 a second by default); evictions counted',
    2,
    16_777_216,
  ),
  maxBlocksPerMinute: s.int(
    'PW_MAX_BLOCKS_PER_MINUTE',
    'max-blocks-per-minute',
    120,
    'detector blocks a minute at full length (PW_BLOCK_TTL); beyond, blocks last PW_CAPPED_BLOCK_TTL (0 = no cap)',
    0,
    1_000_000,
  ),
  cappedBlockTtl: s.seconds('PW_CAPPED_BLOCK_TTL', 'capped-block-ttl', DEFAULT_CAPPED_BLOCK_SECONDS, 'how long a block beyond PW_MAX_BLOCKS_PER_MINUTE lasts (or PW_BLOCK_TTL when shorter)'),
  decisionRetention: s.seconds(
    'PW_DECISION_RETENTION',
    'decision-retention',
    30 * 86_400,
    'how long ended and expired decisions are kept (0 = forever); an ended one that still outranks a kernel block is kept longer (SECURITY.md)',
    RETENTION_MIN_SECONDS,
  ),
  reconcileSeconds: s.int('PW_RECONCILE_INTERVAL', 'reconcile-interval', 60, "seconds between comparisons of decisions with each probe's kernel view", 1, 86_400),
  logFormat: s.oneOf('PW_LOG_FORMAT', 'log-format', 'auto', 'table (the live table on stdout), json, or auto (table on a terminal)', ['auto', 'table', 'json'] as const),
  logLevel: s.oneOf('PW_LOG_LEVEL', 'log-level', 'info', 'log level', LOG_LEVELS),
};

export type PolicyConfig = ConfigOf<typeof policySettings>;

const duration = (seconds: number): Duration => {
  const ns = BigInt(Math.round(seconds * 1e9));
  return { seconds: ns / 1_000_000_000n, nanos: Number(ns % 1_000_000_000n) };
};

/** The settings every probe's in-kernel detector runs with (PolicyMessage.config): the policy's own. */
export function probeConfigOf(c: PolicyConfig): ProbeConfig {
  return {
    portThreshold: c.portThreshold,
    window: duration(c.timeThreshold),
    blockTtl: duration(c.blockTtl),
    maxBlocksPerMinute: c.maxBlocksPerMinute,
    cappedBlockTtl: duration(c.cappedBlockTtl),
    ipv6Prefix: c.ipv6Prefix,
    ipv4Prefix: c.ipv4Prefix,
    shadow: !c.enforce,
    countClosed: c.portscanCount === 'closed',
    openPorts: c.openPorts.map(([first, last]) => ({ first, last })),
  };
}

/** The most PW_BLOCK_TTL_FACTOR may be: beyond, the second offence is already at the ceiling. */
export const MAX_TTL_FACTOR = 1000;

/** PW_ALLOWLIST's entries; a ConfigError naming it for one that is not an address or CIDR. */
export function allowPrefixesOf(allowlist: string): string[] {
  const allowPrefixes = allowlist
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const p of allowPrefixes) {
    try {
      parsePrefix(p);
    } catch {
      throw new ConfigError('PW_ALLOWLIST', allowlist, `comma-separated addresses or CIDRs ('${p}' is neither)`);
    }
  }
  return allowPrefixes;
}

/** F as the detector takes it: on one probe the pairs are its ports, so an F below N counts as N (detector.ts). */
export function fleetThresholdOf(c: { fleetThreshold: number; portThreshold: number }): number {
  return c.fleetThreshold === 0 ? 0 : Math.max(c.fleetThreshold, c.portThreshold);
}

/**
 * The escalation of repeat offences (escalation.ts) from PW_BLOCK_TTL,
 * PW_BLOCK_TTL_FACTOR and PW_BLOCK_TTL_MAX; a ConfigError naming the factor
 * or the maximum when it cannot be.
 */
export function escalationOf(c: { blockTtl: number; blockTtlFactor: string; blockTtlMax: number }): Escalation {
  const factor = Number(c.blockTtlFactor);
  if (!(factor >= 1 && factor <= MAX_TTL_FACTOR)) throw new ConfigError('PW_BLOCK_TTL_FACTOR', c.blockTtlFactor, `a number from 1 (no escalation) to ${MAX_TTL_FACTOR}`);
  if (c.blockTtlMax !== 0 && c.blockTtl !== 0 && c.blockTtlMax < c.blockTtl) {
    throw new ConfigError('PW_BLOCK_TTL_MAX', `${c.blockTtlMax}s`, `0 (up to 3650d) or at least PW_BLOCK_TTL (${c.blockTtl}s)`);
  }
  return { baseSeconds: c.blockTtl, factor, maxSeconds: c.blockTtlMax };
}

export function validate(c: PolicyConfig): PolicyConfig & { allowPrefixes: string[]; ttlFactor: number } {
  const ttlFactor = escalationOf(c).factor;
  const allowPrefixes = allowPrefixesOf(c.allowlist);
  if (c.tcpAddr !== undefined) {
    const e = parseEndpoint(c.tcpAddr);
    if (!e || e.kind !== 'tcp') throw new ConfigError('PW_POLICY_TCP_ADDR', c.tcpAddr, 'host:port');
    if (!(c.tlsCert && c.tlsKey && c.tlsCa) && !c.insecureTcp) {
      throw new ConfigError('PW_POLICY_TCP_ADDR', c.tcpAddr, 'PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True');
    }
  }
  // On one probe the pairs are its ports: an F below N would be a lower
  // per-host threshold in disguise (detector.ts), so it counts as N (the
  // default 10 too, when N is above it).
  const fleetThreshold = fleetThresholdOf(c);
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) {
    throw new ConfigError(c.tlsCert ? 'PW_TLS_KEY' : 'PW_TLS_CERT', '', 'both PW_TLS_CERT and PW_TLS_KEY, or neither');
  }
  return { ...c, fleetThreshold, allowPrefixes, ttlFactor };
}
