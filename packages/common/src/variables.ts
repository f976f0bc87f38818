// Every PW_ environment variable Packetwatch reads, whoever reads it. One
// environment often serves both services and `make run`, so a service cannot
// tell a misspelt variable from its sibling's setting by its own table alone;
// this list is the whole vocabulary. A unit test proves it equal to the
// services' settings tables and to what the scripts, the CLI, the benches and
// the tests read.
import { closest, distance } from 'fastest-levenshtein';
import type { Logger } from './log.js';

export const PW_VARIABLES: readonly string[] = [
  // The services' settings (services/*/src/config.ts).
  'PW_ADDRESS_POLL_MS',
  'PW_ALLOWLIST',
  'PW_ALLOWLIST_SIZE',
  'PW_BATCH_EVENTS',
  'PW_BLOCKLIST_SIZE',
  'PW_BLOCK_TTL',
  'PW_BLOCK_TTL_FACTOR',
  'PW_BLOCK_TTL_MAX',
  'PW_BPF_PIN_DIR',
  'PW_CAPPED_BLOCK_TTL',
  'PW_IPV6_PREFIX',
  'PW_IPV4_PREFIX',
  'PW_CONTROL_GROUP',
  'PW_DECISION_RETENTION',
  'PW_DROP_MODE',
  'PW_EVENT_COALESCE_MS',
  'PW_EVENT_QUEUE',
  'PW_ENFORCE',
  'PW_ENFORCE_SHADOW_DECISIONS',
  'PW_FLEET_PORT_THRESHOLD',
  'PW_IFDEV',
  'PW_INSECURE_TCP',
  'PW_KERNEL_DETECTION',
  'PW_LOG_FORMAT',
  'PW_LOG_LEVEL',
  'PW_MAX_BLOCKS_PER_MINUTE',
  'PW_MAX_TRACKED_SOURCES',
  'PW_METRICS_HOST',
  'PW_OPEN_PORTS',
  'PW_POLICY_ADDR',
  'PW_POLICY_PROMETHEUS_PORT',
  'PW_POLICY_REPORT_SOCKET',
  'PW_POLICY_SOCKET',
  'PW_POLICY_TCP_ADDR',
  'PW_PORTSCAN_COUNT',
  'PW_PORTSCAN_PORT_THRESHOLD',
  'PW_PORTSCAN_TIME_THRESHOLD',
  'PW_PROBE_CALLBACK',
  'PW_PROBE_CONTROL_SOCKET',
  'PW_PROBE_ID',
  'PW_PROBE_SOCKET',
  'PW_PROBE_TCP_ADDR',
  'PW_PROMETHEUS_PORT',
  'PW_RECONCILE_INTERVAL',
  'PW_RINGBUF_BYTES',
  'PW_SCAN_PROBATION_SIZE',
  'PW_SCAN_TABLE_SIZE',
  'PW_SOCKET_GROUP',
  'PW_STATE_DIR',
  'PW_TLS_CA',
  'PW_TLS_CERT',
  'PW_TLS_KEY',
  'PW_WHITELIST_SELF',
  'PW_XDP_MODE',
  // The services' start-up (stack traces of start-up failures) and packetwatchctl
  // (its own names for the services' addresses: PW_POLICY_ADDR is where the
  // probe reports, which is not where an operator calls).
  'PW_DEBUG',
  'PW_CTL_POLICY_ADDR',
  'PW_CTL_PROBE_ADDR',
  // make run (deploy/run.sh).
  'PW_LOG_DIR',
  'PW_RUN_DIR',
  // The images and the compose stack (deploy/).
  'PW_BUILD_CA_BUNDLE',
  'PW_DEBIAN_SUITE',
  'PW_DOCKERD_LOG',
  'PW_IMAGE_TAG',
  'PW_NODE_BIN',
  'PW_PROBE_CAP_BPF',
  'PW_PROBE_CAP_PERFMON',
  'PW_PROMETHEUS_SERVER_PORT',
  'PW_PROMETHEUS_UPSTREAM',
  'PW_PULL_TIMEOUT',
  // The benches and the tests.
  'PW_BENCH_SMOKE',
  'PW_FUZZ_FRAMES',
  'PW_FUZZ_SEED',
];

export interface UnknownVariable {
  name: string;
  /** The known name nearest to it (fewest edits). */
  closest: string;
  /** Whether it is near enough to be the one meant: within a third of the name's length in edits (at least 2). */
  likely: boolean;
}

/** The PW_ variables in `env` that no part of Packetwatch reads, each with the known name nearest to it. */
export function unknownVariables(env: NodeJS.ProcessEnv, known: readonly string[] = PW_VARIABLES): UnknownVariable[] {
  const names = new Set(known);
  return Object.keys(env)
    .filter((name) => name.startsWith('PW_') && !names.has(name))
    .sort()
    .map((name) => {
      const near = closest(name, known as string[]);
      return { name, closest: near, likely: distance(name, near) <= Math.max(2, Math.floor(name.length / 3)) };
    });
}

export function unknownVariableMessage(v: UnknownVariable): string {
  const hint = v.likely ? `did you mean ${v.closest}?` : `the nearest known name is ${v.closest}`;
  return `${v.name} is not a Packetwatch setting and is ignored; ${hint}`;
}

/** Logs a warning for each unknown PW_ variable: not a refusal, so one environment can serve every part. */
export function warnUnknownVariables(log: Logger, env: NodeJS.ProcessEnv): void {
  for (const v of unknownVariables(env)) log.warn({ variable: v.name, closest: v.closest }, unknownVariableMessage(v));
}
