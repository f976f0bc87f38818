// TypeScript codecs for the structures in bpf/packetwatch.h. Offsets are
// written out rather than computed so that test/records.test.ts can compare
// them, field by field, with the BTF clang emitted for the compiled object.
import { type Codec, type StructCodec, bytes, struct, u8, u16, u32, u64 } from 'libbpf-ts/codec';
import { OPEN_PORT_MARK } from '@packetwatch/common/table';

export const ADDR_LEN = 16;

/** struct pw_addr: blocklist key. */
export const addrCodec: Codec<Buffer> = bytes(ADDR_LEN);

export interface LpmKey {
  prefixLen: number;
  addr: Buffer;
}

/** struct pw_lpm_key: allowlist key. */
export const lpmKeyCodec: StructCodec<LpmKey> = struct<LpmKey>(20, {
  prefixLen: { offset: 0, codec: u32 },
  addr: { offset: 4, codec: addrCodec },
});

export enum BlockReason {
  Unspecified = 0,
  Portscan = 1,
  Manual = 2,
}

export interface BlockEntry {
  /** CLOCK_BOOTTIME ns after which the block is no longer enforced; 0n = never. */
  expiresNs: bigint;
  /** CLOCK_BOOTTIME ns when the block was written. */
  createdNs: bigint;
  reason: number;
  /** BLOCK_FLAGS bits; 0 for blocks written by user space. */
  flags: number;
}

export const BLOCK_FLAGS = {
  /** Written by the program's own scan detector. */
  kernelDetected: 0x1,
} as const;

/** struct pw_block: blocklist value. */
export const blockCodec: StructCodec<BlockEntry> = struct<BlockEntry>(24, {
  expiresNs: { offset: 0, codec: u64 },
  createdNs: { offset: 8, codec: u64 },
  reason: { offset: 16, codec: u32 },
  flags: { offset: 20, codec: u32 },
});

/** struct pw_probe_config: the probe_config value, the policy's last scan configuration (all zero: none yet). */
export interface ProbeConfigRecord {
  portThreshold: number;
  blocksPerMin: number;
  windowNs: bigint;
  blockNs: bigint;
  cappedBlockNs: bigint;
  /** When the policy sent it (Unix ms). */
  receivedUnixMs: bigint;
  /** IPv6 sources are tracked and blocked by this prefix length. */
  ipv6Prefix: number;
  /** IPv4 sources likewise. */
  ipv4Prefix: number;
  /** 1: shadow mode, the program's blocks drop nothing (the policy's PW_ENFORCE=False). */
  shadow: number;
}

export const probeConfigCodec: StructCodec<ProbeConfigRecord> = struct<ProbeConfigRecord>(56, {
  portThreshold: { offset: 0, codec: u32 },
  blocksPerMin: { offset: 4, codec: u32 },
  windowNs: { offset: 8, codec: u64 },
  blockNs: { offset: 16, codec: u64 },
  cappedBlockNs: { offset: 24, codec: u64 },
  receivedUnixMs: { offset: 32, codec: u64 },
  ipv6Prefix: { offset: 40, codec: u32 },
  ipv4Prefix: { offset: 44, codec: u32 },
  shadow: { offset: 48, codec: u32 },
});

/** Words of the open-port bitmap (PW_OPEN_PORT_WORDS): one bit for each of 65,536 ports. */
export const OPEN_PORT_WORDS = 1024;

/** struct pw_port_count: the port_count value, closed mode and the ports declared open (PW_OPEN_PORTS). */
export interface PortCountRecord {
  /** 1: closed mode (PW_PORTSCAN_COUNT=closed); 0: all mode. */
  closed: number;
  /** The bitmap: bit p % 64 of word p / 64 set for a port declared open (OPEN_PORT_WORDS * 8 bytes, little-endian words). */
  open: Buffer;
}

export const portCountCodec: StructCodec<PortCountRecord> = struct<PortCountRecord>(8 + OPEN_PORT_WORDS * 8, {
  closed: { offset: 0, codec: u32 },
  open: { offset: 8, codec: bytes(OPEN_PORT_WORDS * 8) },
});

/** The bitmap of port_count for inclusive port ranges [first, last]. */
export function openPortBitmap(ranges: readonly (readonly [number, number])[]): Buffer {
  const bits = Buffer.alloc(OPEN_PORT_WORDS * 8);
  // Little-endian 64-bit words: bit p % 64 of word p / 64 is bit p % 8 of byte p / 8.
  for (const [first, last] of ranges) for (let p = first; p <= last; p++) bits[p >> 3]! |= 1 << (p & 7);
  return bits;
}

/** The inclusive port ranges [first, last] a port_count bitmap holds, in port order. */
export function openPortRanges(bits: Buffer): [number, number][] {
  const out: [number, number][] = [];
  let start = -1;
  for (let p = 0; p <= OPEN_PORT_WORDS * 64; p++) {
    const set = p < OPEN_PORT_WORDS * 64 && (bits[p >> 3]! >> (p & 7)) & 1;
    if (set && start < 0) start = p;
    else if (!set && start >= 0) {
      out.push([start, p - 1]);
      start = -1;
    }
  }
  return out;
}

/** How long a block beyond the blocks-per-minute budget lasts, unless configured (PW_CAPPED_BLOCK_TTL). */
export const DEFAULT_CAPPED_BLOCK_SECONDS = 60;

/** enum pw_scan_verdict: what the in-kernel detector made of a new connection. */
export enum ScanVerdict {
  None = 0,
  /** This SYN crossed the threshold; the source is now blocked in the kernel. */
  Blocked = 1,
  /** Crossed beyond the blocks-per-minute budget: blocked in the kernel for the short TTL. */
  Capped = 2,
  /** Crossed, not blocked: allowlisted. */
  Allowlisted = 3,
  /** Crossed, not blocked: the kernel blocklist is full. */
  Full = 4,
}

/** Most ports the in-kernel detector can be set to (PW_SCAN_MAX_PORTS): N of docs/detection.md. */
export const SCAN_MAX_PORTS = 64;

/** struct pw_scan: the head of a scanners value, what the in-kernel detector keeps of one source. */
export interface ScanHead {
  /** The newest of the times kept (CLOCK_BOOTTIME ns). */
  lastNs: bigint;
  /** The oldest of the times kept, as last recomputed. */
  minNs: bigint;
  /** Entries in use, 1..N. */
  count: number;
  /** An entry whose time is minNs. */
  minIdx: number;
  /** Its promotion's number (low 32 bits): its slot in protected_ring is seq mod the space's size. */
  seq: number;
}

export const scanHeadCodec: StructCodec<ScanHead> = struct<ScanHead>(24, {
  lastNs: { offset: 0, codec: u64 },
  minNs: { offset: 8, codec: u64 },
  count: { offset: 16, codec: u8 },
  minIdx: { offset: 17, codec: u8 },
  seq: { offset: 20, codec: u32 },
});

/** struct pw_probation: a value of scan_probation, a source the detector has seen on one port only. */
export interface ProbationEntry {
  /** The time of its hit (CLOCK_BOOTTIME ns). */
  timeNs: bigint;
  /** Its admission's number (low 32 bits): its slot in probation_ring is seq mod the space's size. */
  seq: number;
  port: number;
  /** 1: a stub, the source has moved to the protected space. */
  promoted: number;
}

export const probationCodec: StructCodec<ProbationEntry> = struct<ProbationEntry>(16, {
  timeNs: { offset: 0, codec: u64 },
  seq: { offset: 8, codec: u32 },
  port: { offset: 12, codec: u16 },
  promoted: { offset: 14, codec: u8 },
});

/** Entries a group of the scanners value covers (PW_SCAN_GROUP). */
const SCAN_GROUP = 8;

/** Where the parts of a scanners value for N ports lie (bpf/packetwatch.h, PW_SCAN_*_OFF). */
function scanLayout(n: number) {
  const ports = scanHeadCodec.size;
  const times = ports + 8 * Math.ceil(n / 4);
  const groups = Math.ceil(n / SCAN_GROUP);
  const groupMins = times + 8 * n;
  const groupIdx = groupMins + 8 * groups;
  return { ports, times, groups, groupMins, groupIdx, size: groupIdx + 8 * Math.ceil(groups / 8) };
}

/** Bytes of a scanners value for N ports (PW_SCAN_STATE_SIZE). */
export function scanStateSize(n: number): number {
  return scanLayout(n).size;
}

/** One source's history in the in-kernel detector: its entries [port, time ns], in entry order. */
export interface ScanHistory {
  head: ScanHead;
  entries: [port: number, timeNs: bigint][];
}

/**
 * A scanners value for N ports holding these entries, with the head and the
 * groups' oldest times computed from them; `head` overrides parts of the
 * head (to write what a race could leave).
 */
export function encodeScanHistory(n: number, entries: readonly (readonly [number, bigint])[], head: Partial<ScanHead> = {}): Buffer {
  const l = scanLayout(n);
  const value = Buffer.alloc(l.size);
  const argmin = (from: number, to: number) => {
    let at = from;
    for (let i = from + 1; i < to; i++) if (entries[i]![1] < entries[at]![1]) at = i;
    return at;
  };
  entries.forEach(([port, ns], i) => {
    value.writeUInt16LE(port, l.ports + 2 * i);
    value.writeBigUInt64LE(ns, l.times + 8 * i);
  });
  for (let g = 0; g * SCAN_GROUP < entries.length; g++) {
    const at = argmin(g * SCAN_GROUP, Math.min(entries.length, (g + 1) * SCAN_GROUP));
    value.writeBigUInt64LE(entries[at]![1], l.groupMins + 8 * g);
    value.writeUInt8(at, l.groupIdx + g);
  }
  const minIdx = argmin(0, entries.length);
  const lastNs = entries.reduce((m, [, ns]) => (ns > m ? ns : m), 0n);
  scanHeadCodec.write({ lastNs, minNs: entries[minIdx]![1], count: entries.length, minIdx, seq: 0, ...head }, value, 0);
  return value;
}

/** The entries and head of a scanners value for N ports. */
export function decodeScanHistory(n: number, value: Buffer): ScanHistory {
  const l = scanLayout(n);
  const head = scanHeadCodec.read(value, 0);
  const entries = Array.from({ length: head.count }, (_, i): [number, bigint] => [value.readUInt16LE(l.ports + 2 * i), value.readBigUInt64LE(l.times + 8 * i)]);
  return { head, entries };
}

export interface SynEvent {
  /** CLOCK_BOOTTIME ns when the SYN was seen. */
  tsNs: bigint;
  saddr: Buffer;
  daddr: Buffer;
  sport: number;
  dport: number;
  ifindex: number;
  tcpFlags: number;
  ipVersion: number;
  ttl: number;
  /** ScanVerdict of the in-kernel detector. */
  scan: number;
  vlanId: number;
  /** ProbeKind: a SYN, a stealth segment or a tiny fragment. */
  kind: number;
  /** PortState: whether the host accepts the port (closed mode); Unknown in all mode and for probes that are not SYNs. */
  portState: number;
}

/** enum pw_port_state: what the program knew of a probed port (closed mode, PW_PORTSCAN_COUNT=closed). */
export enum PortState {
  /** Not looked up: all mode, or not a SYN (stealth and fragment probes always count). */
  Unknown = 0,
  /** Nothing on the host accepts it: the SYN counts toward the scan rule. */
  Closed = 1,
  /** A socket accepts it, or PW_OPEN_PORTS declares it open: the SYN does not count. */
  Open = 2,
}

/** enum pw_probe_kind: what a probe event is. */
export enum ProbeKind {
  /** A new-connection SYN. */
  Syn = 0,
  /** ACK clear, not a SYN, not a bare RST (FIN, NULL, XMAS, ...): tcpFlags says which. */
  Stealth = 1,
  /** A TCP first fragment too short for the TCP header (dropped; flags unknown). */
  Fragment = 2,
}

const FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'] as const;

/**
 * How the live table marks a probe that is not a SYN: "NULL" (no flags),
 * "XMAS" (FIN, PSH, URG), a stealth segment's flags otherwise ("FIN",
 * "SYN+FIN"), "fragment" for a tiny fragment; a SYN OPEN_PORT_MARK when, in
 * closed mode, the host accepts its port (it does not count toward the
 * scan rule), else "".
 */
export function probeLabel(kind: number, tcpFlags: number, portState: number = PortState.Unknown): string {
  if (kind === ProbeKind.Fragment) return 'fragment';
  if (kind !== ProbeKind.Stealth) return portState === PortState.Open ? OPEN_PORT_MARK : '';
  if (tcpFlags === 0) return 'NULL';
  if (tcpFlags === 0x29) return 'XMAS';
  return FLAG_NAMES.filter((_, bit) => tcpFlags & (1 << bit)).reverse().join('+');
}

/** struct pw_syn_event: one ring-buffer record. */
export const synEventCodec: StructCodec<SynEvent> = struct<SynEvent>(56, {
  tsNs: { offset: 0, codec: u64 },
  saddr: { offset: 8, codec: addrCodec },
  daddr: { offset: 24, codec: addrCodec },
  sport: { offset: 40, codec: u16 },
  dport: { offset: 42, codec: u16 },
  ifindex: { offset: 44, codec: u32 },
  tcpFlags: { offset: 48, codec: u8 },
  ipVersion: { offset: 49, codec: u8 },
  ttl: { offset: 50, codec: u8 },
  scan: { offset: 51, codec: u8 },
  vlanId: { offset: 52, codec: u16 },
  kind: { offset: 54, codec: u8 },
  portState: { offset: 55, codec: u8 },
});

export const SYN_EVENT_SIZE = synEventCodec.size;

/** Each field's offset in a SynEvent record, for readers that take fields in place (the policy's hot path). */
export const SYN_EVENT_OFFSET = Object.fromEntries(synEventCodec.fields.map((f) => [f.name, f.offset])) as Readonly<Record<keyof SynEvent, number>>;

/** enum pw_counter, in index order. */
export const COUNTER_NAMES = [
  'frames',
  'nonIp',
  'nonTcp',
  'fragments',
  'malformed',
  'syn',
  'events',
  'ringbufFull',
  'synDropped',
  'otherDropped',
  'allowlisted',
  'blockExpired',
  'scanBlocked',
  'scanCapped',
  'stealth',
  'tinyFragments',
  'longChains',
  'bogusSources',
  'probeDropped',
  'scanAdmitted',
  'scanPromoted',
  'probationEvicted',
  'protectedEvicted',
  'wouldDrop',
  'openPortSyn',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];
export type Counters = Record<CounterName, bigint>;

/** struct pw_counters: one per-CPU slot holding every counter. */
export const countersCodec: Codec<Counters> = {
  size: COUNTER_NAMES.length * 8,
  write(value, buf, offset) {
    COUNTER_NAMES.forEach((n, i) => buf.writeBigUInt64LE(value[n], offset + i * 8));
  },
  read(buf, offset) {
    const out = {} as Counters;
    COUNTER_NAMES.forEach((n, i) => (out[n] = buf.readBigUInt64LE(offset + i * 8)));
    return out;
  },
};

export function zeroCounters(): Counters {
  return Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0n])) as Counters;
}

export function sumCounters(perCpu: readonly Counters[]): Counters {
  const total = zeroCounters();
  for (const c of perCpu) for (const n of COUNTER_NAMES) total[n] += c[n];
  return total;
}

export const TCP_FLAGS = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export enum DropMode {
  /** Drop only new-connection SYNs from blocked sources; established traffic flows. */
  Syn = 0,
  /** Drop every frame from blocked sources. */
  All = 1,
}
