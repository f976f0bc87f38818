// `packetwatchctl status`: what both services say about themselves, as one
// JSON document (stable camelCase names) and as text for people.
import { AttachMode, ConfigOrigin, type Duration, type GetPolicyStatusResponse, type GetStatusResponse, type ProbeConfig } from '@packetwatch/proto';
import { type KeyValue, count, humanDuration, iso, keyValues, plural, relative } from './format.js';
import { ttlRuleText } from './explain.js';

/** A call that failed: the gRPC status name and what the channel or server said. */
export interface CallFailure {
  code: string;
  message: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: CallFailure };

export interface ServiceReply<T> {
  /** The endpoint tried, as the user gave it ("unix:/run/packetwatch/policy.sock"). */
  address: string;
  status: Outcome<T>;
  /** grpc.health.v1 status name ("SERVING"), or the failure of the health call. */
  health: Outcome<string>;
}

export const seconds = (d: Duration | undefined): number => (d ? Number(d.seconds) + d.nanos / 1e9 : 0);

export function attachModeName(m: AttachMode): string {
  switch (m) {
    case AttachMode.ATTACH_MODE_DRIVER:
      return 'driver';
    case AttachMode.ATTACH_MODE_GENERIC:
      return 'generic';
    default:
      return 'unspecified';
  }
}

export interface UnreachableJson {
  address: string;
  reachable: false;
  error: CallFailure;
}

export interface PolicyProbeJson {
  probeId: string;
  version: string;
  interface: string;
  attachMode: string;
  programId: number;
  callbackEndpoint: string;
  ownAddresses: string[];
  connected: string | null;
  eventsReceived: number;
  eventsLost: number;
  /** How far the probe's clock is behind the policy's (negative: ahead), at its last event batch. */
  clockSkewSeconds: number;
  /** Its XDP program drops nothing for a block (shadow mode). */
  shadow: boolean;
}

export interface PolicyStatusJson {
  address: string;
  reachable: true;
  health: string;
  version: string;
  started: string | null;
  uptimeSeconds: number;
  portThreshold: number;
  windowSeconds: number;
  /** 0: detector blocks are permanent. */
  blockTtlSeconds: number;
  /** PW_BLOCK_TTL_FACTOR: a repeat offence's TTL is the previous one times this (1: no escalation). */
  blockTtlFactor: number;
  /** PW_BLOCK_TTL_MAX; null: up to 3650 days. */
  blockTtlMaxSeconds: number | null;
  whitelistSelf: boolean;
  allowlist: string[];
  trackedSources: number;
  activeDecisions: number;
  eventsReceived: number;
  eventsLost: number;
  detections: number;
  evictions: number;
  driftRepairs: number;
  blockFailures: number;
  /** Decision store statements that failed since start (retries included). */
  storeErrors: number;
  /** Writes held in memory because the store refused them. */
  storeWritesHeld: number;
  /** The store's latest failure while it is failing; null when it works. */
  storeFailure: string | null;
  /** The prefix lengths sources are tracked, decided and blocked by; null from a policy older than the field. */
  sourcePrefixes: SourcePrefixesJson | null;
  /** Shadow mode (PW_ENFORCE=False): decisions are made and recorded, no probe drops anything for them. */
  shadow: boolean;
  /** What counts toward the scan rules (PW_PORTSCAN_COUNT, PW_OPEN_PORTS); null from a policy older than the field. */
  portCount: PortCountJson | null;
  /** Closed mode: SYN events to a port the probe's host accepts, not counted. */
  eventsOpenPort: number;
  probes: PolicyProbeJson[];
}

/** PW_PORTSCAN_COUNT and PW_OPEN_PORTS as a service runs them. */
export interface PortCountJson {
  mode: 'all' | 'closed';
  /** The ports declared open, as the setting writes them ("8080,30000-32767"; "" for none). */
  openPorts: string;
}

const portCountOf = (c: ProbeConfig | undefined): PortCountJson | null =>
  c ? { mode: c.countClosed ? 'closed' : 'all', openPorts: c.openPorts.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join(',') } : null;

/** What counts toward the scan rules, in a few words. */
export function portCountText(p: PortCountJson | null): string {
  if (!p) return 'unknown (a service older than this packetwatchctl)';
  if (p.mode === 'all') return 'every SYN';
  return `SYNs to closed ports only (declared open: ${p.openPorts || 'none'}); stealth probes always`;
}

/** PW_IPV6_PREFIX and PW_IPV4_PREFIX as a service runs them. */
export interface SourcePrefixesJson {
  ipv6: number;
  ipv4: number;
}

/** How sources are keyed, in a few words: "IPv6 by /64, IPv4 by address". */
export function prefixesText(p: SourcePrefixesJson | null): string {
  if (!p) return 'unknown (a service older than this packetwatchctl)';
  const one = (family: string, len: number, whole: number) => `${family} by ${len === whole ? 'address' : `/${len}`}`;
  return `${one('IPv6', p.ipv6, 128)}, ${one('IPv4', p.ipv4, 32)}`;
}

/** Lengths a service reported, or null when it reported none (0: older than the field). */
const prefixesOf = (ipv6: number, ipv4: number): SourcePrefixesJson | null => (ipv6 > 0 && ipv4 > 0 ? { ipv6, ipv4 } : null);

export interface ProbeStatusJson {
  address: string;
  reachable: true;
  health: string;
  probeId: string;
  version: string;
  started: string | null;
  uptimeSeconds: number;
  interface: string;
  ifindex: number;
  attachMode: string;
  programId: number;
  adopted: boolean;
  /** Where the link and maps are pinned. */
  pinDir: string;
  /** The pins end with the probe's mount namespace, and every block with them. */
  pinsPrivate: boolean;
  ownAddresses: string[];
  synSeen: number;
  /** Stealth probes seen (FIN, NULL, XMAS, ...). */
  stealthSeen: number;
  synDropped: number;
  /** Stealth and fragment probes of blocked sources dropped. */
  probeDropped: number;
  otherDropped: number;
  /** Its XDP program runs in shadow mode: blocks drop nothing. */
  shadow: boolean;
  /** Shadow mode: frames of blocked sources passed that enforcing would have dropped. */
  wouldDrop: number;
  eventsSent: number;
  eventsLost: number;
  ringbufFull: number;
  queueDepth: number;
  queueCapacity: number;
  policyConnected: boolean;
  policyAddress: string;
  blocks: number;
  blockCapacity: number;
  counters: Record<string, number>;
  /** The in-kernel detector's configuration and where it came from; null from a probe older than the field. */
  scan: ProbeScanJson | null;
}

export interface ProbeScanJson {
  portThreshold: number;
  windowSeconds: number;
  /** 0: permanent. */
  blockTtlSeconds: number;
  /** 0: no cap. */
  maxBlocksPerMinute: number;
  cappedBlockTtlSeconds: number;
  /** The ports the XDP program checks (0: in-kernel detection off). */
  kernelPorts: number;
  /** The prefix lengths the kernel keys its blocklist and detector by; null from a probe older than the field. */
  sourcePrefixes: SourcePrefixesJson | null;
  /** What counts toward the scan rule in the kernel. */
  portCount: PortCountJson | null;
  origin: 'defaults' | 'policy' | 'pinned';
  /** Shadow mode: the program's blocks drop nothing. */
  shadow: boolean;
  /** When the policy sent it; null for the defaults. */
  received: string | null;
}

const ORIGIN: Partial<Record<ConfigOrigin, ProbeScanJson['origin']>> = {
  [ConfigOrigin.CONFIG_ORIGIN_DEFAULTS]: 'defaults',
  [ConfigOrigin.CONFIG_ORIGIN_POLICY]: 'policy',
  [ConfigOrigin.CONFIG_ORIGIN_PINNED]: 'pinned',
};

function scanJson(s: GetStatusResponse): ProbeScanJson | null {
  const origin = ORIGIN[s.scanConfigOrigin];
  const c = s.scanConfig;
  if (!origin || !c) return null;
  return {
    portThreshold: c.portThreshold,
    windowSeconds: seconds(c.window),
    blockTtlSeconds: seconds(c.blockTtl),
    maxBlocksPerMinute: c.maxBlocksPerMinute,
    cappedBlockTtlSeconds: seconds(c.cappedBlockTtl),
    kernelPorts: s.kernelScanPorts,
    sourcePrefixes: prefixesOf(c.ipv6Prefix, c.ipv4Prefix),
    portCount: portCountOf(c),
    origin,
    shadow: c.shadow,
    received: iso(s.scanConfigReceived),
  };
}

export interface StatusJson {
  policy: PolicyStatusJson | UnreachableJson;
  probe: ProbeStatusJson | UnreachableJson;
}

const healthText = (h: Outcome<string>) => (h.ok ? h.value : `unknown (${h.error.code})`);

export function statusJson(policy: ServiceReply<GetPolicyStatusResponse>, probe: ServiceReply<GetStatusResponse>, nowMs: number): StatusJson {
  return { policy: policyJson(policy, nowMs), probe: probeJson(probe) };
}

function policyJson(r: ServiceReply<GetPolicyStatusResponse>, nowMs: number): PolicyStatusJson | UnreachableJson {
  if (!r.status.ok) return { address: r.address, reachable: false, error: r.status.error };
  const s = r.status.value;
  return {
    address: r.address,
    reachable: true,
    health: healthText(r.health),
    version: s.version,
    started: iso(s.started),
    uptimeSeconds: s.started ? Math.max(0, Math.floor((nowMs - s.started.getTime()) / 1000)) : 0,
    portThreshold: s.portThreshold,
    windowSeconds: seconds(s.window),
    blockTtlSeconds: seconds(s.blockTtl),
    blockTtlFactor: s.blockTtlFactor,
    blockTtlMaxSeconds: s.blockTtlMax === undefined ? null : seconds(s.blockTtlMax),
    whitelistSelf: s.whitelistSelf,
    allowlist: s.allowlist,
    trackedSources: Number(s.trackedSources),
    activeDecisions: Number(s.activeDecisions),
    eventsReceived: Number(s.eventsReceived),
    eventsLost: Number(s.eventsLost),
    detections: Number(s.detections),
    evictions: Number(s.evictions),
    driftRepairs: Number(s.driftRepairs),
    blockFailures: Number(s.blockFailures),
    storeErrors: Number(s.storeErrors),
    storeWritesHeld: Number(s.storeWritesHeld),
    storeFailure: s.storeFailure || null,
    sourcePrefixes: prefixesOf(s.ipv6Prefix, s.ipv4Prefix),
    shadow: s.shadow,
    portCount: portCountOf(s.probeConfig),
    eventsOpenPort: Number(s.eventsOpenPort),
    probes: s.probes.map((p) => ({
      probeId: p.probeId,
      version: p.version,
      interface: p.interface,
      attachMode: attachModeName(p.attachMode),
      programId: p.programId,
      callbackEndpoint: p.callbackEndpoint,
      ownAddresses: p.ownAddresses,
      connected: iso(p.connected),
      eventsReceived: Number(p.eventsReceived),
      eventsLost: Number(p.eventsLost),
      clockSkewSeconds: seconds(p.clockSkew),
      shadow: s.shadowProbes.includes(p.probeId),
    })),
  };
}

function probeJson(r: ServiceReply<GetStatusResponse>): ProbeStatusJson | UnreachableJson {
  if (!r.status.ok) return { address: r.address, reachable: false, error: r.status.error };
  const s = r.status.value;
  const c = s.counters;
  const counters: Record<string, number> = {};
  if (c) for (const [k, v] of Object.entries(c)) counters[k] = Number(v);
  return {
    address: r.address,
    reachable: true,
    health: healthText(r.health),
    probeId: s.probeId,
    version: s.version,
    started: iso(s.started),
    uptimeSeconds: Math.floor(seconds(s.uptime)),
    interface: s.interface,
    ifindex: s.ifindex,
    attachMode: attachModeName(s.attachMode),
    programId: s.programId,
    adopted: s.adopted,
    pinDir: s.pinDir,
    pinsPrivate: s.pinsPrivate,
    ownAddresses: s.ownAddresses,
    synSeen: counters.syn ?? 0,
    stealthSeen: counters.stealth ?? 0,
    synDropped: counters.synDropped ?? 0,
    probeDropped: counters.probeDropped ?? 0,
    otherDropped: counters.otherDropped ?? 0,
    shadow: s.scanConfig?.shadow ?? false,
    wouldDrop: counters.wouldDrop ?? 0,
    eventsSent: Number(s.eventsSent),
    eventsLost: Number(s.eventsLost),
    ringbufFull: counters.ringbufFull ?? 0,
    queueDepth: s.queueDepth,
    queueCapacity: s.queueCapacity,
    policyConnected: s.policyConnected,
    policyAddress: s.policyAddress,
    blocks: s.blocks,
    blockCapacity: s.blockCapacity,
    counters,
    scan: scanJson(s),
  };
}

const list = (xs: string[]) => (xs.length > 0 ? xs.join(', ') : 'none');

function unreachableText(title: string, u: UnreachableJson): string {
  return `${title}  ${u.address}\n${keyValues([['health', `UNREACHABLE: ${u.error.code} (${u.error.message})`]])}`;
}

function storeText(p: PolicyStatusJson): string {
  if (p.storeFailure === null) return p.storeErrors > 0 ? `ok (${plural(p.storeErrors, 'error')} since start)` : 'ok';
  return `FAILING: ${p.storeFailure}; ${plural(p.storeWritesHeld, 'write')} held in memory, enforced all the same`;
}

function policyText(p: PolicyStatusJson, nowMs: number): string {
  const rows: KeyValue[] = [
    ['health', p.health],
    ...(p.shadow ? ([['mode', 'SHADOW MODE (PW_ENFORCE=False): scanners are detected and decided, NOTHING IS DROPPED']] as KeyValue[]) : []),
    ['version', `${p.version}, up ${humanDuration(p.uptimeSeconds)}`],
    ['thresholds', `${plural(p.portThreshold, 'port')} within ${humanDuration(p.windowSeconds)}`],
    ['block ttl', ttlRuleText({ blockTtlSeconds: p.blockTtlSeconds, blockTtlFactor: p.blockTtlFactor, blockTtlMaxSeconds: p.blockTtlMaxSeconds })],
    ['sources', prefixesText(p.sourcePrefixes)],
    ['counts', portCountText(p.portCount)],
    ['whitelist self', p.whitelistSelf ? 'yes' : 'no'],
    ['allowlist', list(p.allowlist)],
    ['tracked sources', count(p.trackedSources)],
    ['active decisions', count(p.activeDecisions)],
    ['events', `${count(p.eventsReceived)} received, ${count(p.eventsLost)} lost${p.portCount?.mode === 'closed' ? `, ${count(p.eventsOpenPort)} to open ports (not counted)` : ''}`],
    ['detections', `${count(p.detections)} (block failures ${count(p.blockFailures)}, drift repairs ${count(p.driftRepairs)}, evictions ${count(p.evictions)})`],
    ['store', storeText(p)],
    ['probes', `${count(p.probes.length)} connected`],
  ];
  const probes = p.probes.map(
    (x) =>
      `    ${x.probeId}: ${x.interface}, ${x.attachMode} XDP, program ${x.programId}, ` +
      `${count(x.eventsReceived)} events (${count(x.eventsLost)} lost), connected ${relative(x.connected ? new Date(x.connected) : undefined, nowMs, 'at an unknown time')}` +
      clockText(x.clockSkewSeconds) +
      (x.shadow ? ', SHADOW: drops nothing' : ''),
  );
  return [`Policy  ${p.address}`, keyValues(rows), ...probes].join('\n');
}

/** A probe's clock against the policy's, when it is a second or more off: ", clock 1m behind". */
function clockText(skewSeconds: number): string {
  if (Math.abs(skewSeconds) < 1) return '';
  return `, clock ${humanDuration(Math.abs(skewSeconds))} ${skewSeconds > 0 ? 'behind' : 'ahead'}`;
}

/** Where the pins are, and whether blocks outlive the probe (a probe older than the field says no directory). */
function pinsText(p: ProbeStatusJson): string {
  const dir = p.pinDir || 'unknown';
  return p.pinsPrivate ? `private to this process: blocks end with it (${dir}; PW_BPF_PIN_DIR on a bpffs the host mounted keeps them)` : dir;
}

/** The in-kernel detector's thresholds and where they came from. */
function scanRows(s: ProbeScanJson | null): KeyValue[] {
  if (!s) return [['thresholds', 'unknown (a probe older than this packetwatchctl)']];
  const from =
    s.origin === 'defaults'
      ? 'the defaults: no policy has configured this probe'
      : s.origin === 'policy'
        ? `the policy at ${s.received ?? 'an unknown time'}`
        : `pinned from an earlier run (the policy at ${s.received ?? 'an unknown time'})`;
  const off = s.kernelPorts === 0 ? '; in-kernel detection off, the policy detects alone' : '';
  const cap = s.maxBlocksPerMinute > 0 ? `${count(s.maxBlocksPerMinute)} a minute, beyond them ${humanDuration(s.cappedBlockTtlSeconds)}` : 'no per-minute cap';
  return [
    ['thresholds', `${plural(s.portThreshold, 'port')} within ${humanDuration(s.windowSeconds)}, from ${from}${off}`],
    ['kernel blocks', `${s.blockTtlSeconds > 0 ? humanDuration(s.blockTtlSeconds) : 'permanent'}, ${cap}`],
    ['sources', prefixesText(s.sourcePrefixes)],
    ['counts', portCountText(s.portCount)],
  ];
}

/** What the XDP program drops whoever sends it (docs/detection.md). */
function evasionsText(c: Record<string, number>): string {
  const n = (k: string) => count(c[k] ?? 0);
  return `${n('tinyFragments')} tiny fragments, ${n('longChains')} long IPv6 chains, ${n('bogusSources')} bogus IPv6 sources (dropped)`;
}

/** The in-kernel detector's admission of sources. */
function detectorText(c: Record<string, number>): string {
  const n = (k: string) => count(c[k] ?? 0);
  return `${n('scanAdmitted')} admitted, ${n('scanPromoted')} promoted, evicted ${n('probationEvicted')} on probation and ${n('protectedEvicted')} protected`;
}

function probeText(p: ProbeStatusJson): string {
  const rows: KeyValue[] = [
    ['health', p.health],
    ...(p.shadow ? ([['mode', `SHADOW MODE (the policy's PW_ENFORCE=False): blocks drop NOTHING; ${count(p.wouldDrop)} frames would have been dropped`]] as KeyValue[]) : []),
    ['version', `${p.version}, up ${humanDuration(p.uptimeSeconds)}`],
    ['probe id', p.probeId],
    ['interface', `${p.interface} (ifindex ${p.ifindex}), ${p.attachMode} XDP, program ${p.programId}${p.adopted ? ' (adopted)' : ''}`],
    ['pins', pinsText(p)],
    ...scanRows(p.scan),
    ['own addresses', list(p.ownAddresses)],
    ['SYNs seen', `${count(p.synSeen)}${p.scan?.portCount?.mode === 'closed' ? `, ${count(p.counters.openPortSyn ?? 0)} to open ports (not counted)` : ''}`],
    ['stealth seen', count(p.stealthSeen)],
    ['dropped', `${count(p.synDropped)} SYNs, ${count(p.probeDropped)} probes, ${count(p.otherDropped)} other`],
    ['evasions', evasionsText(p.counters)],
    ['detector', detectorText(p.counters)],
    ['events', `${count(p.eventsSent)} sent, ${count(p.eventsLost)} lost, ring buffer full ${count(p.ringbufFull)}`],
    ['queue', `${count(p.queueDepth)} of ${count(p.queueCapacity)}`],
    ['blocks', `${count(p.blocks)} of ${count(p.blockCapacity)}`],
    ['policy', `${p.policyConnected ? 'connected' : 'NOT connected'} (${p.policyAddress})`],
  ];
  return [`Probe   ${p.address}`, keyValues(rows)].join('\n');
}

export function statusText(s: StatusJson, nowMs: number): string {
  const policy = s.policy.reachable ? policyText(s.policy, nowMs) : unreachableText('Policy', s.policy);
  const probe = s.probe.reachable ? probeText(s.probe) : unreachableText('Probe ', s.probe);
  return `${policy}\n\n${probe}`;
}
