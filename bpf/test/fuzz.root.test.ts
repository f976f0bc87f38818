// Randomised and mutation-based fuzzing of the XDP program through
// BPF_PROG_TEST_RUN, in both drop modes: every frame's verdict and event are
// compared with a reference model of the rules (test/model.ts), and so are
// the counters the run moved. Seeded and reproducible: PW_FUZZ_SEED and
// PW_FUZZ_FRAMES (frames per mode) override the defaults.
import {
  type Counters,
  Datapath,
  DropMode,
  ProbeKind,
  TCP_FLAGS,
  destinationOptions,
  formatAddress,
  ipFrame,
  parseAddress,
  synEventCodec,
  synFrame,
  tcpFrame,
  zeroCounters,
} from '@packetwatch/bpf';
import type { RingBufferReader } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../../test/prng.js';
import { type ModelWorld, type ProbeKindName, model, verdict } from './model.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const SEED = Number(process.env.PW_FUZZ_SEED ?? 20261125);
const FRAMES = Number(process.env.PW_FUZZ_FRAMES ?? 500_000);

const IPV6_PREFIX = 64;
const IPV4_PREFIX = 32;
/** Blocked through Datapath.block, which blocks each one's source (its /64 for IPv6). */
const BLOCKED = ['192.0.2.7', '192.0.2.8', '2001:db8::7', '2001:db8::8'];
const ALLOWED_PREFIXES = ['192.0.2.8/32', '2001:db8::8/128'];
const SOURCES = [
  ...BLOCKED,
  '192.0.2.9',
  '198.51.100.4',
  '2001:db8::9', // in a blocked /64
  '2001:db8:1::9',
  '10.0.0.1',
  '::ffff:192.0.2.7', // IPv4-mapped inside IPv6
  '::192.0.2.9', // IPv4-compatible
  '::1',
];
const VICTIMS = { 4: '203.0.113.1', 6: '2001:db8:ffff::1' } as const;
const KIND: Record<ProbeKindName, ProbeKind> = { syn: ProbeKind.Syn, stealth: ProbeKind.Stealth, fragment: ProbeKind.Fragment };
const FIRST_FRAGMENT6 = [{ type: 44 as const, fragmentOffset: 0, moreFragments: true }];

function seedFrames(r: () => number): Buffer[] {
  const out: Buffer[] = [];
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const F = TCP_FLAGS;
  const anyFlags = [F.ACK, F.SYN | F.ACK, F.RST, F.RST | F.ACK, 0, F.FIN, F.FIN | F.PSH | F.URG, F.SYN | F.FIN, F.SYN | F.RST, F.SYN | F.ECE | F.CWR, F.PSH];
  for (const src of SOURCES) {
    const v6 = src.includes(':');
    const dst = v6 ? VICTIMS[6] : VICTIMS[4];
    const sport = 1024 + Math.floor(r() * 60000);
    const dport = 1 + Math.floor(r() * 65000);
    out.push(synFrame(src, dst, sport, dport));
    out.push(synFrame(src, dst, sport, dport, { vlans: [7] }));
    out.push(synFrame(src, dst, sport, dport, { vlans: [100, 7] }));
    for (let i = 0; i < 3; i++) out.push(ipFrame({ src, dst, tcp: { sport, dport, flags: pick(anyFlags), payload: Buffer.from('data') } }));
    out.push(ipFrame({ src, dst, udp: { sport, dport } }));
    out.push(ipFrame({ src, dst, icmp: { type: v6 ? 1 : 3, code: 3 } }));
    if (v6) {
      out.push(synFrame(src, dst, sport, dport, { ipv6ExtHeaders: [{ type: 0 }, { type: 60 }, ...FIRST_FRAGMENT6] }));
      out.push(synFrame(src, dst, sport, dport, { ipv6ExtHeaders: [{ type: 51 }, { type: 43 }] }));
      out.push(tcpFrame(src, dst, sport, dport, pick(anyFlags), { ipv6ExtHeaders: FIRST_FRAGMENT6, l4Bytes: pick([0, 3, 4, 8, 19, 20]) }));
      out.push(tcpFrame(src, dst, sport, dport, F.ACK, { ipv6ExtHeaders: [{ type: 44, fragmentOffset: 1 + Math.floor(r() * 100) }] }));
      out.push(ipFrame({ src, dst, ipv6ExtHeaders: FIRST_FRAGMENT6, udp: { sport, dport } }));
      out.push(synFrame(src, dst, sport, dport, { ipv6ExtHeaders: destinationOptions(pick([7, 8, 9, 12])) }));
    } else {
      out.push(synFrame(src, dst, sport, dport, { ipv4Options: Buffer.from([1, 1, 1, 0]) }));
      out.push(ipFrame({ src, dst, fragmentOffset: 3, tcp: { sport, dport, flags: TCP_FLAGS.SYN } }));
      out.push(tcpFrame(src, dst, sport, dport, pick(anyFlags), { moreFragments: true, l4Bytes: pick([0, 3, 4, 8, 19, 20]) }));
      out.push(tcpFrame(src, dst, sport, dport, pick(anyFlags), { moreFragments: true, l4Bytes: 8, trailer: Buffer.alloc(24) }));
      out.push(tcpFrame(src, dst, sport, dport, F.ACK, { fragmentOffset: 1, l4Bytes: 12 }));
      out.push(ipFrame({ src, dst, moreFragments: true, udp: { sport, dport } }));
    }
  }
  return out;
}

/** One mutation: byte flips, a truncation, an extension, or a header field set to an edge value. */
function mutate(base: Buffer, r: () => number): Buffer {
  let f = Buffer.from(base);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const what = r();
    if (what < 0.45) {
      f[Math.floor(r() * f.length)] = Math.floor(r() * 256);
    } else if (what < 0.65) {
      // Bytes where the parser makes decisions: EtherType, IHL/version, lengths, fragment fields, protocol, data offset, flags.
      const hot = [12, 13, 14, 16, 17, 18, 20, 21, 23, 46, 47, 54, 58, 59, 66, 67];
      const at = hot[Math.floor(r() * hot.length)]!;
      if (at < f.length) f[at] = [0, 0xff, 0x45, 0x4f, 0x60, 6, 17, 0x50, 0xf0, 2, 0x12, 0x81, 0x86, 0x88, 0xdd, 0x08, 0x20, 0x01, 0x2c, 0x3c][Math.floor(r() * 20)]!;
    } else if (what < 0.85) {
      f = f.subarray(0, 14 + Math.floor(r() * Math.max(1, f.length - 14)));
    } else {
      const extra = Buffer.alloc(Math.floor(r() * 64));
      for (let j = 0; j < extra.length; j++) extra[j] = Math.floor(r() * 256);
      f = Buffer.concat([f, extra]);
    }
  }
  return f;
}

function randomFrame(r: () => number): Buffer {
  const f = Buffer.alloc(14 + Math.floor(r() * 120));
  for (let i = 0; i < f.length; i++) f[i] = Math.floor(r() * 256);
  // Half the random frames claim to be IP, so the parser gets past Ethernet.
  if (r() < 0.5) f.writeUInt16BE(r() < 0.5 ? 0x0800 : 0x86dd, 12);
  return f;
}

describe.each([
  ['syn', DropMode.Syn],
  ['drop-all', DropMode.All],
] as const)('XDP program under fuzzing (%s mode)', (mode, dropMode) => {
  let dp: Datapath;
  let reader: RingBufferReader;
  const world: ModelWorld = {
    dropAll: dropMode === DropMode.All,
    ipv6Prefix: IPV6_PREFIX,
    ipv4Prefix: IPV4_PREFIX,
    blockedKeys: new Set(),
    allowed: ALLOWED_PREFIXES.map((p) => {
      const [a, len] = p.split('/') as [string, string];
      return { addr: parseAddress(a), bits: (a.includes(':') ? 0 : 96) + Number(len) };
    }),
  };

  beforeAll(() => {
    dp = Datapath.load({ dropMode, ipv6Prefix: IPV6_PREFIX, ipv4Prefix: IPV4_PREFIX });
    reader = dp.reader();
    for (const a of BLOCKED) dp.block(a);
    for (const p of ALLOWED_PREFIXES) dp.allow(p);
    // The model is told which keys are blocked as the map holds them: what
    // a key is, it works out for itself.
    world.blockedKeys = new Set([...dp.blocklist.keys()].map((k) => k.toString('hex')));
  });
  afterAll(() => {
    reader?.close();
    dp?.close();
  });

  it(`agrees with the model on ${FRAMES.toLocaleString('en')} frames (seed ${SEED})`, () => {
    expect(world.blockedKeys.size).toBe(3); // 192.0.2.7, 192.0.2.8, 2001:db8::/64
    const r = prng(SEED + (mode === 'syn' ? 0 : 1));
    const seeds = seedFrames(r);
    const want = zeroCounters();
    const tally: Record<string, number> = {};
    const seen = (what: string) => (tally[what] = (tally[what] ?? 0) + 1);
    for (let i = 0; i < FRAMES; i++) {
      const frame = r() < 0.15 ? randomFrame(r) : mutate(seeds[Math.floor(r() * seeds.length)]!, r);
      const m = model(frame);
      const v = verdict(m, world);
      const { retval } = dp.program.testRun({ data: frame, dataOutSize: frame.length + 8 });
      const batch = reader.consume();
      const expected = { verdict: v.drop ? XDP_DROP : XDP_PASS, events: v.event ? 1 : 0 };
      if (retval !== expected.verdict || batch.count !== expected.events) {
        expect({ i, frame: frame.toString('hex'), model: m.cls, verdict: retval, events: batch.count }).toEqual({
          i,
          frame: frame.toString('hex'),
          model: m.cls,
          ...expected,
        });
      }
      if (batch.count === 1) {
        const ev = synEventCodec.read([...batch][0]!, 0);
        const got = { saddr: formatAddress(ev.saddr), sport: ev.sport, dport: ev.dport, kind: ev.kind, flags: ev.tcpFlags, portState: ev.portState };
        // All mode (the program's default): no port is looked up, every event says unknown (0).
        const exp = { saddr: formatAddress(m.saddr!), sport: v.event!.sport, dport: v.event!.dport, kind: KIND[v.event!.kind], flags: v.event!.flags, portState: 0 };
        if (JSON.stringify(got) !== JSON.stringify(exp)) expect({ i, frame: frame.toString('hex'), ...got }).toEqual({ i, frame: frame.toString('hex'), ...exp });
        seen(`event:${v.event!.kind}`);
      }
      for (const c of v.counters) want[c as keyof Counters]++;
      seen(m.cls);
      if (retval === XDP_DROP) seen('drop');
    }
    expect(dp.counters()).toEqual(want);
    // The mix must exercise every outcome, or the agreement means little.
    const floor = (what: string, share: number) => expect(tally[what] ?? 0, what).toBeGreaterThan(FRAMES * share);
    floor('event:syn', 1 / 100);
    floor('event:stealth', 1 / 100);
    floor('event:fragment', 1 / 500);
    floor('drop', 1 / 20);
    for (const cls of ['malformed', 'bad', 'bogus', 'longChain', 'tiny', 'tinyProbe', 'fragment', 'nonTcp', 'established', 'rst', 'syn', 'stealth']) floor(cls, 1 / 1000);
    expect(want.synDropped).toBeGreaterThan(BigInt(FRAMES / 500));
    expect(want.probeDropped).toBeGreaterThan(BigInt(FRAMES / 1000));
    expect(want.otherDropped).toBeGreaterThan(BigInt(FRAMES / 1000));
    expect(want.allowlisted).toBeGreaterThan(BigInt(FRAMES / 1000));
    console.log(`fuzz (${mode}): ${FRAMES} frames, seed ${SEED}: ${JSON.stringify(tally)}`);
  });
});
