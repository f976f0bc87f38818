// The probe's settings: the seed's PW_ variables with their defaults, plus
// the probe's own. Each is also a flag (--ifdev eth0). The scan thresholds,
// window and block TTLs are not among them: the policy sends its own to
// every probe (scanconfig.ts).
import { hostname } from 'node:os';
import { SCAN_MAX_PORTS } from '@packetwatch/bpf/records';
import { ConfigError, LOG_LEVELS, MAX_BLOCKLIST_SIZE, type ConfigOf, parseEndpoint, settings as s } from '@packetwatch/common';

export const probeSettings = {
  // Also a directory name under PW_BPF_PIN_DIR: never "." or "..".
  ifdev: s.string('PW_IFDEV', 'ifdev', 'lo', 'interface to watch', /^(?!\.\.?$)[^\s/]{1,15}$/, 'an interface name (1-15 characters, no spaces or /, not . or ..)'),
  whitelistSelf: s.bool('PW_WHITELIST_SELF', 'whitelist-self', true, "allowlist the interface's own addresses"),
  prometheusPort: s.port('PW_PROMETHEUS_PORT', 'prometheus-port', 9090, 'port of the /metrics endpoint'),
  metricsHost: s.host('PW_METRICS_HOST', 'metrics-host', '0.0.0.0', 'address the /metrics endpoint listens on'),
  policyAddr: s.string('PW_POLICY_ADDR', 'policy-addr', 'unix:/run/packetwatch/report/policy.sock', "the policy's Report endpoint (unix:/path or host:port)"),
  socket: s.string('PW_PROBE_SOCKET', 'socket', '/run/packetwatch/probe.sock', "Unix socket of the Probe API for operators (status, blocks)", /^\/.+/, 'an absolute path'),
  socketGroup: s.optionalString('PW_SOCKET_GROUP', 'socket-group', "operators' group (socket mode 0660)"),
  controlSocket: s.string('PW_PROBE_CONTROL_SOCKET', 'control-socket', '/run/packetwatch/control/probe.sock', "Unix socket of the Probe API for the policy (BlockIp, UnblockIp)", /^\/.+/, 'an absolute path'),
  controlGroup: s.optionalString('PW_CONTROL_GROUP', 'control-group', "the group of the policy's user, without operators (control socket mode 0660)"),
  tcpAddr: s.optionalString('PW_PROBE_TCP_ADDR', 'tcp-addr', 'also serve the Probe API on host:port (TLS unless --insecure-tcp)'),
  callback: s.optionalString('PW_PROBE_CALLBACK', 'callback', 'endpoint the policy calls back (default: the control socket)'),
  tlsCert: s.optionalString('PW_TLS_CERT', 'tls-cert', 'TLS certificate (PEM) for TCP'),
  tlsKey: s.optionalString('PW_TLS_KEY', 'tls-key', 'TLS private key (PEM) for TCP'),
  tlsCa: s.optionalString('PW_TLS_CA', 'tls-ca', 'CA (PEM): clients must present a certificate it signed; also verifies the policy'),
  insecureTcp: s.bool('PW_INSECURE_TCP', 'insecure-tcp', false, 'allow plaintext gRPC on TCP (logs a warning)'),
  xdpMode: s.oneOf('PW_XDP_MODE', 'xdp-mode', 'auto', 'driver (native), generic, or auto (driver, else generic)', ['auto', 'driver', 'generic'] as const),
  dropMode: s.oneOf('PW_DROP_MODE', 'drop-mode', 'syn', "what is dropped from blocked sources: syn (new connections) or all", ['syn', 'all'] as const),
  blocklistSize: s.int('PW_BLOCKLIST_SIZE', 'blocklist-size', 65536, 'entries of the kernel blocklist', 1, MAX_BLOCKLIST_SIZE),
  allowlistSize: s.int('PW_ALLOWLIST_SIZE', 'allowlist-size', 1024, 'entries of the kernel allowlist', 1, 1_048_576),
  ringbufBytes: s.int('PW_RINGBUF_BYTES', 'ringbuf-bytes', 4 << 20, 'bytes of the events ring buffer (a power of two)', 4096, 1 << 30),
  eventQueue: s.int('PW_EVENT_QUEUE', 'event-queue', 262_144, 'events held while the policy is slow or away; beyond, they are counted lost', 1, 16_777_216),
  eventCoalesceMs: s.int(
    'PW_EVENT_COALESCE_MS',
    'event-coalesce-ms',
    1,
    'ms to gather events after a read while they keep coming (fewer wake-ups under a flood; the first event after a quiet spell is read at once; 0 = read at every wake-up)',
    0,
    1000,
  ),
  // 4096 (256 KiB of records a message): against 1024, make bench-pipeline
  // carried more at 1.5-2M events/s with less policy CPU per event (fewer
  // messages, each costing both services a fixed share of gRPC work).
  batchEvents: s.int('PW_BATCH_EVENTS', 'batch-events', 4096, 'most events in one message to the policy', 1, 65_536),
  kernelDetection: s.bool('PW_KERNEL_DETECTION', 'kernel-detection', true, `detect scans in the XDP program too, blocking at the crossing SYN with the policy's thresholds (N up to ${SCAN_MAX_PORTS})`),
  scanTableSize: s.int('PW_SCAN_TABLE_SIZE', 'scan-table-size', 65_536, "sources with two distinct ports or more the in-kernel detector keeps (its protected space, first promoted first forgotten; a value costs 72 bytes at N = 3, 736 at N = 64, allocated at load)", 1, 16_777_216),
  scanProbationSize: s.int(
    'PW_SCAN_PROBATION_SIZE',
    'scan-probation-size',
    1_048_576,
    'sources seen on one port the in-kernel detector keeps (its probation, first admitted first forgotten; about 112 bytes each, allocated at load): a scanner is detected under a flood of forged sources while fewer than this many others arrive between its first two distinct ports (21 s at 50,000 a second)',
    1,
    16_777_216,
  ),
  probeId: s.optionalString('PW_PROBE_ID', 'probe-id', 'identity announced to the policy (default host/interface)'),
  pinRoot: s.string('PW_BPF_PIN_DIR', 'pin-dir', '/sys/fs/bpf/packetwatch', 'bpffs directory for pinned links and maps, which keeps blocks after the probe (under ip netns exec: one the host mounted)', /^\/.+/, 'an absolute path'),
  addressPollMs: s.int('PW_ADDRESS_POLL_MS', 'address-poll-ms', 1000, "how often the interface's addresses are re-read", 50, 60_000),
  logLevel: s.oneOf('PW_LOG_LEVEL', 'log-level', 'info', 'log level', LOG_LEVELS),
};

export type ProbeConfig = ConfigOf<typeof probeSettings>;

/** Checks that span settings; per-setting checks are in the parsers. */
export function validate(c: ProbeConfig): ProbeConfig & { probeIdResolved: string } {
  if ((c.ringbufBytes & (c.ringbufBytes - 1)) !== 0) {
    throw new ConfigError('PW_RINGBUF_BYTES', String(c.ringbufBytes), 'a power of two from 4096');
  }
  if (!parseEndpoint(c.policyAddr)) throw new ConfigError('PW_POLICY_ADDR', c.policyAddr, 'unix:/path or host:port');
  if (c.tcpAddr !== undefined) {
    const e = parseEndpoint(c.tcpAddr);
    if (!e || e.kind !== 'tcp') throw new ConfigError('PW_PROBE_TCP_ADDR', c.tcpAddr, 'host:port');
    if (!(c.tlsCert && c.tlsKey && c.tlsCa) && !c.insecureTcp) {
      throw new ConfigError('PW_PROBE_TCP_ADDR', c.tcpAddr, 'PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True');
    }
  }
  if (parseEndpoint(c.policyAddr)?.kind === 'tcp' && !c.tlsCa && !c.insecureTcp) {
    throw new ConfigError('PW_POLICY_ADDR', c.policyAddr, 'unix:/path, or host:port with PW_TLS_CA (TLS) or PW_INSECURE_TCP=True (plaintext)');
  }
  if (c.callback !== undefined && !parseEndpoint(c.callback)) throw new ConfigError('PW_PROBE_CALLBACK', c.callback, 'unix:/path or host:port');
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) {
    throw new ConfigError(c.tlsCert ? 'PW_TLS_KEY' : 'PW_TLS_CERT', '', 'both PW_TLS_CERT and PW_TLS_KEY, or neither');
  }
  return { ...c, probeIdResolved: c.probeId ?? `${hostname()}/${c.ifdev}` };
}
