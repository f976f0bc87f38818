// A reference model of the XDP program's verdict, written from the rules
// (issue 15, docs/detection.md "What the XDP program drops"), not from the
// program's code paths: the fuzz test checks the kernel's answer for every
// frame against it. Its parsing is bpf/src/classify.ts, the TypeScript
// implementation of the frame rule (packetwatchctl replay runs it too); the
// lists part here masks sources and matches prefixes itself, on plain bytes.
// None of it shares code with the C program it checks.
import { type FrameClass, classifyEthernet, newClassified } from '@packetwatch/bpf';

export type ModelClass = FrameClass;

export interface ModelResult {
  cls: ModelClass;
  /** 16-byte source, when the IP header was read. */
  saddr?: Buffer;
  daddr?: Buffer;
  sport?: number;
  dport?: number;
  flags?: number;
  /** A first fragment (offset 0, more to come). */
  firstFragment?: boolean;
}

const V4_MAPPED = Buffer.from('00000000000000000000ffff', 'hex');

/** An address of the frame as 16 bytes (IPv4 as ::ffff:a.b.c.d). */
function address(f: Buffer, at: number, version: number): Buffer {
  return version === 4 ? Buffer.concat([V4_MAPPED, f.subarray(at, at + 4)]) : Buffer.from(f.subarray(at, at + 16));
}

/** What the frame is, by the rules: parsing only, no lists. */
export function model(f: Buffer): ModelResult {
  const c = newClassified();
  const cls = classifyEthernet(f, 0, f.length, c);
  if (c.version === 0) return { cls };
  const r: ModelResult = { cls, saddr: address(f, c.src, c.version), daddr: address(f, c.dst, c.version), firstFragment: c.firstFragment };
  if (cls === 'syn' || cls === 'stealth' || cls === 'rst' || cls === 'established' || cls === 'tinyProbe') {
    r.sport = c.sport;
    r.dport = c.dport;
    r.flags = c.flags;
  }
  return r;
}

/** The lists and settings the program runs with, as plain data. */
export interface ModelWorld {
  dropAll: boolean;
  /** Prefix lengths sources are keyed by. */
  ipv6Prefix: number;
  ipv4Prefix: number;
  /** Blocked keys (16 bytes, already masked), hex. Permanent blocks only. */
  blockedKeys: ReadonlySet<string>;
  /** Allowlisted prefixes: 16 bytes and a length in bits of them. */
  allowed: readonly { addr: Buffer; bits: number }[];
}

function leadingBitsEqual(a: Buffer, b: Buffer, bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const mask = 0x80 >> (i % 8);
    if ((a[i >> 3]! & mask) !== (b[i >> 3]! & mask)) return false;
  }
  return true;
}

function keyOf(addr: Buffer, w: ModelWorld): string {
  const v4 = addr.subarray(0, 12).equals(V4_MAPPED);
  const bits = v4 ? 96 + w.ipv4Prefix : w.ipv6Prefix;
  const out = Buffer.alloc(16);
  for (let i = 0; i < bits; i++) if (addr[i >> 3]! & (0x80 >> (i % 8))) out[i >> 3] = out[i >> 3]! | (0x80 >> (i % 8));
  return out.toString('hex');
}

export type ProbeKindName = 'syn' | 'stealth' | 'fragment';

export interface ModelVerdict {
  drop: boolean;
  /** The probe event the frame produces, if any. */
  event?: { kind: ProbeKindName; sport: number; dport: number; flags: number };
  /** The counters the frame moves, by name, each by 1. */
  counters: string[];
}

/**
 * The rules of issue 15 items 1-5: what happens to a parsed frame given the
 * lists. A blocked source (key blocked, address not allowlisted) gets
 * nothing through but, in syn mode, whole ACK segments and unfragmented
 * non-TCP packets.
 */
export function verdict(m: ModelResult, w: ModelWorld): ModelVerdict {
  const counters = ['frames'];
  const count = (...names: string[]) => counters.push(...names);
  switch (m.cls) {
    case 'malformed':
      count('malformed');
      return { drop: false, counters };
    case 'nonIp':
      count('nonIp');
      return { drop: false, counters };
    case 'bogus':
      count('bogusSources');
      return { drop: true, counters };
    case 'longChain':
      count('longChains');
      return { drop: true, counters };
    case 'tiny':
      count('tinyFragments');
      return { drop: true, counters };
    default:
  }
  const saddr = m.saddr!;
  // Whether the block applies: null when the blocklist is not consulted.
  const isBlocked = (): boolean => {
    if (!w.blockedKeys.has(keyOf(saddr, w))) return false;
    if (w.allowed.some((p) => leadingBitsEqual(p.addr, saddr, p.bits))) {
      count('allowlisted');
      return false;
    }
    return true;
  };
  const maySpare = !m.firstFragment && !w.dropAll;
  let dropCounter = 'otherDropped';
  let probe: ProbeKindName | undefined;
  let dropAnyway = false;
  switch (m.cls) {
    case 'bad':
      count('malformed');
      break;
    case 'fragment':
      count('fragments');
      break;
    case 'nonTcp':
      count('nonTcp');
      if (maySpare) return { drop: false, counters };
      break;
    case 'established':
      if (maySpare) return { drop: false, counters };
      break;
    case 'rst':
      break;
    case 'syn':
      count('syn');
      dropCounter = 'synDropped';
      probe = 'syn';
      break;
    case 'stealth':
      count('stealth');
      dropCounter = 'probeDropped';
      probe = 'stealth';
      break;
    case 'tinyProbe':
      count('tinyFragments');
      dropCounter = 'probeDropped';
      probe = 'fragment';
      dropAnyway = true;
      break;
    default:
      throw new Error(`model: unhandled class ${m.cls}`);
  }
  if (isBlocked()) {
    count(dropCounter);
    return { drop: true, counters };
  }
  if (!probe) return { drop: dropAnyway, counters };
  count('events');
  return { drop: dropAnyway, counters, event: { kind: probe, sport: m.sport!, dport: m.dport!, flags: m.flags! } };
}
