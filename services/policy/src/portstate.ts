// Closed mode (PW_PORTSCAN_COUNT=closed; docs/detection.md, "Closed mode"):
// which events the scan rules take by the port state the XDP program wrote
// in them. The one place the policy decides it: the pipeline and the
// evidence of a detection (live), and `packetwatchctl replay` (replay.ts),
// ask here.
import { PortState } from '@packetwatch/bpf/records';

/**
 * Whether an event with this port state (PortState) counts toward the scan
 * rules, per host and across the fleet: not a SYN to a port the probe's
 * host accepts (a socket, or PW_OPEN_PORTS); every other event does
 * (closed ports, and probes not looked up: all mode, stealth and fragment
 * probes).
 */
export function countsTowardRules(portState: number): boolean {
  return portState !== PortState.Open;
}
