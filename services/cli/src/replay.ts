// `packetwatchctl replay <capture>`: a capture's frames through the rule the
// services run, on the capture's own timestamps. What a frame is comes from
// @packetwatch/bpf/classify (the XDP program's rule in TypeScript, which the
// fuzz test holds the program to); what the probes come to from the
// policy's own parts (@packetwatch/policy/replay: allowlist, source
// prefixes, closed mode's port state, detector, budget, TTL and its
// escalation), with the policy's settings. In closed mode a file is read
// twice: first for the ports the host answered (SYN-ACKs), then through the
// rule.
import { statSync } from 'node:fs';
import { BY_VERSION, type Classified, FRAME_CLASSES, type FrameClass, classifyEthernet, classifyIp, isProbe, newClassified } from '@packetwatch/bpf/classify';
import { ConfigError, type ConfigOf, header, loadConfig, row } from '@packetwatch/common';
import { type ReplayConfig, type ReplayDecision, ReplayPorts, ReplayRule, replaySettings } from '@packetwatch/policy/replay';
import { CaptureError, type CaptureInfo, type FrameRef, LINKTYPE, readCapture } from './capture.js';

export { replaySettings };

/** What replay counted besides the probes' decisions. */
export interface ReplaySummary {
  capture: { path: string; format: CaptureInfo['format']; linkTypes: number[]; frames: number; firstMs: number | null; lastMs: number | null };
  /** Frames by what they are (classify.ts), the probes among them ('syn', 'stealth', 'tinyProbe'). */
  classes: Record<FrameClass, number>;
  /** Frames the capture marks as sent by the host (a cooked header's outgoing, pcapng's outbound): the probe never sees them. */
  outbound: number;
  /** Frames whose link-layer header is cut short, or of a link type replay does not read, by reason. */
  unreadable: Record<string, number>;
  probes: { total: number; allowlisted: number; own: number; fromBlocked: number; openPort: number };
  /** Closed mode (PW_PORTSCAN_COUNT=closed): the ports the capture shows the host answering with a SYN-ACK, by address; null in all mode. */
  answered: { address: string; port: number }[] | null;
}

/** A cooked header's packet type for a frame the host sent. */
const PACKET_OUTGOING = 4;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

/** IPv4 addresses as ::ffff:a.b.c.d, the form the rule reads: the 16-byte form of the address at buf[at], in `v4` for IPv4 (at 0). */
function mapped(cls: Classified, buf: Buffer, at: number, v4: Buffer): [Uint8Array, number] {
  if (cls.version !== 4) return [buf, at];
  v4[12] = buf[at]!;
  v4[13] = buf[at + 1]!;
  v4[14] = buf[at + 2]!;
  v4[15] = buf[at + 3]!;
  return [v4, 0];
}

const newMapped = () => Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * Closed mode's first pass: the (address, port) pairs the capture shows the
 * host answering a SYN with a SYN-ACK (from the probed address and port),
 * whichever way the capture marks the frame (the host sends them: they are
 * outgoing). A damaged file is read up to the damage (the second pass
 * reports it).
 */
function learnAnswered(path: string, ports: ReplayPorts): void {
  const cls = newClassified();
  const v4 = newMapped();
  const ignore = () => undefined;
  try {
    readCapture(path, (f) => {
      const k = classifyFrame(f, cls, ignore, undefined);
      if (k !== 'established' || (cls.flags & (SYN | ACK | RST)) !== (SYN | ACK)) return;
      const [buf, at] = mapped(cls, f.buf, cls.src, v4);
      ports.answer(buf, at, cls.sport);
    });
  } catch (e) {
    if (!(e instanceof CaptureError)) throw e;
  }
}

/** The settings from the command's flags (by flag name: 'port-threshold'), the environment, the defaults, as the policy reads them; ConfigError names a bad one. */
export function replayConfig(flags: ReadonlyMap<string, string>, env: NodeJS.ProcessEnv): ReplayConfig {
  const argv = [...flags].map(([flag, v]) => `--${flag}=${v}`);
  return loadConfig(replaySettings, argv, env).config as ConfigOf<typeof replaySettings>;
}

/**
 * Runs the capture at `path` through the rule. A file that cannot be read
 * whole (not a capture, cut short, corrupt) gives `error`, with the
 * decisions and counts of the frames before the damage. Closed mode reads
 * the file twice: a ConfigError naming PW_PORTSCAN_COUNT for a capture
 * that is not a regular file (a pipe cannot be read again).
 */
export function replay(path: string, c: ReplayConfig, ownAddresses: readonly string[] = []): { decisions: ReplayDecision[]; summary: ReplaySummary; error?: string } {
  const rule = new ReplayRule(c, ownAddresses);
  const ports = new ReplayPorts(c);
  if (ports.closedMode) {
    let regular = true;
    try {
      regular = statSync(path).isFile();
    } catch {
      // Not there: the read below says so.
    }
    if (!regular) {
      throw new ConfigError(
        'PW_PORTSCAN_COUNT',
        c.portscanCount,
        `all for ${path}, which is not a regular file: closed mode reads the capture twice (the ports the host answered, then the rule); write it to a file first (tcpdump -w file)`,
      );
    }
    learnAnswered(path, ports);
  }
  const classes = Object.fromEntries(FRAME_CLASSES.map((k) => [k, 0])) as Record<FrameClass, number>;
  const unreadable: Record<string, number> = {};
  const cls = newClassified();
  const v4 = newMapped();
  const v4dst = newMapped();
  let outbound = 0;
  let firstMs: number | null = null;
  let lastMs: number | null = null;
  const bad = (why: string) => {
    unreadable[why] = (unreadable[why] ?? 0) + 1;
  };
  const outgoing = () => {
    outbound++;
  };
  const onFrame = (f: FrameRef): void => {
    if (firstMs === null) firstMs = f.tsMs;
    lastMs = f.tsMs;
    if (f.direction === 2) {
      outbound++;
      return;
    }
    const k = classifyFrame(f, cls, bad, outgoing);
    if (k === undefined) return;
    classes[k]++;
    if (!isProbe(k)) return;
    const [src, at] = mapped(cls, f.buf, cls.src, v4);
    let portState: number | undefined;
    if (ports.closedMode) {
      const [dst, dat] = mapped(cls, f.buf, cls.dst, v4dst);
      portState = ports.stateOf(k === 'syn', dst, dat, cls.dport);
    }
    rule.probe(src, at, cls.dport, f.tsMs, portState);
  };
  const summary = (info: CaptureInfo): ReplaySummary => ({
    capture: { path, format: info.format, linkTypes: info.linkTypes, frames: info.frames, firstMs, lastMs },
    classes,
    outbound,
    unreadable,
    probes: { total: rule.counts.probes, allowlisted: rule.counts.allowlisted, own: rule.counts.own, fromBlocked: rule.counts.fromBlocked, openPort: rule.counts.openPort },
    answered: ports.closedMode ? ports.answered() : null,
  });
  let info: CaptureInfo;
  try {
    info = readCapture(path, onFrame);
  } catch (e) {
    if (!(e instanceof CaptureError)) throw e;
    return { decisions: rule.decisions, summary: summary(e.info), error: e.message };
  }
  for (const [why, n] of Object.entries(info.skipped)) unreadable[why] = (unreadable[why] ?? 0) + n;
  return { decisions: rule.decisions, summary: summary(info) };
}

/** The frame's class under its link type; undefined when it was not classified (unreadable, or outgoing where `outgoing` is given: undefined classifies those too). */
function classifyFrame(f: FrameRef, out: Classified, bad: (why: string) => void, outgoing: (() => void) | undefined): FrameClass | undefined {
  const { buf, off, end } = f;
  switch (f.linkType) {
    case LINKTYPE.ETHERNET:
      return classifyEthernet(buf, off, end, out);
    case LINKTYPE.LINUX_SLL:
      if (end - off < 16) {
        bad('cooked (SLL) header cut short');
        return undefined;
      }
      if (outgoing && ((buf[off]! << 8) | buf[off + 1]!) === PACKET_OUTGOING) {
        outgoing();
        return undefined;
      }
      return classifyIp(buf, off + 16, end, (buf[off + 14]! << 8) | buf[off + 15]!, out);
    case LINKTYPE.LINUX_SLL2:
      if (end - off < 20) {
        bad('cooked (SLL2) header cut short');
        return undefined;
      }
      if (outgoing && buf[off + 10] === PACKET_OUTGOING) {
        outgoing();
        return undefined;
      }
      return classifyIp(buf, off + 20, end, (buf[off]! << 8) | buf[off + 1]!, out);
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_12:
      return classifyIp(buf, off, end, BY_VERSION, out);
    case LINKTYPE.IPV4:
      return classifyIp(buf, off, end, 0x0800, out);
    case LINKTYPE.IPV6:
      return classifyIp(buf, off, end, 0x86dd, out);
    default:
      bad(`link type ${f.linkType} (not Ethernet, Linux cooked or raw IP)`);
      return undefined;
  }
}

/** The decisions as the seed's table shows them: a blacklist row each. */
export function replayText(decisions: readonly ReplayDecision[]): string {
  return [header(), ...decisions.map((d) => row({ timeMs: d.createdMs, kind: 'blacklist', source: d.source, port: 0 }))].join('\n');
}

export function replayJson(decisions: readonly ReplayDecision[], summary: ReplaySummary, c: ReplayConfig, error?: string): unknown {
  return {
    error: error ?? null,
    settings: Object.fromEntries(Object.entries(replaySettings).map(([key, s]) => [s.env, c[key as keyof ReplayConfig]])),
    decisions: decisions.map((d) => ({
      source: d.source,
      reason: d.reason,
      created: new Date(d.createdMs).toISOString(),
      createdMs: d.createdMs,
      expires: d.expiresMs === undefined ? null : new Date(d.expiresMs).toISOString(),
      ports: d.ports,
      port: d.port,
      capped: d.capped,
      offence: d.offence,
    })),
    summary,
  };
}

/** The summary in a few lines (stderr beside the table). */
export function summaryText(decisions: readonly ReplayDecision[], s: ReplaySummary): string {
  const n = (x: number) => x.toLocaleString('en');
  const probes = s.classes.syn + s.classes.stealth + s.classes.tinyProbe;
  const lines = [
    `${s.capture.path}: ${s.capture.format}, link type ${[...new Set(s.capture.linkTypes)].join(', ')}, ${n(s.capture.frames)} frames` +
      (s.capture.firstMs !== null && s.capture.lastMs !== null ? ` over ${((s.capture.lastMs - s.capture.firstMs) / 1000).toFixed(3)}s` : ''),
    `probes ${n(probes)} (SYN ${n(s.classes.syn)}, stealth ${n(s.classes.stealth)}, fragment ${n(s.classes.tinyProbe)}): ` +
      `${n(s.probes.allowlisted)} allowlisted, ${n(s.probes.own)} from own addresses, ${n(s.probes.fromBlocked)} from blocked sources` +
      (s.answered ? `, ${n(s.probes.openPort)} SYNs to open ports` : '') +
      `; ${n(decisions.length)} decisions`,
    `dropped by the frame rule: ${n(s.classes.bogus)} bogus sources, ${n(s.classes.longChain)} long chains, ${n(s.classes.tiny + s.classes.tinyProbe)} tiny fragments`,
  ];
  if (s.answered) {
    const shown = s.answered.slice(0, 20).map((a) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`));
    lines.push(
      `closed mode: ${n(s.answered.length)} ports answered with a SYN-ACK in the capture` +
        (shown.length > 0 ? ` (${shown.join(', ')}${s.answered.length > shown.length ? ', ...' : ''})` : '') +
        '; every other port counts as closed unless PW_OPEN_PORTS declares it',
    );
  }
  const unreadable = Object.entries(s.unreadable);
  const unparsed = s.classes.malformed;
  lines.push(
    `not parsed: ${n(unparsed)} malformed before the source` +
      (unreadable.length > 0 ? `, ${unreadable.map(([why, k]) => `${n(k)} ${why}`).join(', ')}` : '') +
      `; ${n(s.classes.nonIp)} not IP; ${n(s.outbound)} outgoing (skipped)`,
  );
  return lines.join('\n');
}
