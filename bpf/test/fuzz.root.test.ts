// Randomised and mutation-based fuzzing of the XDP program through
// BPF_PROG_TEST_RUN: every frame's verdict and event are compared with a
// reference model of the rules (test/model.ts). Seeded and reproducible:
// PW_FUZZ_SEED and PW_FUZZ_FRAMES override the defaults.
import { Datapath, TCP_FLAGS, formatAddress, ipFrame, parseAddress, synEventCodec, synFrame } from '@packetwatch/bpf';
import type { RingBufferReader } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prng } from '../../test/prng.js';
import { model } from './model.js';

const XDP_DROP = 1;
const XDP_PASS = 2;
const SEED = Number(process.env.PW_FUZZ_SEED ?? 20261125);
const FRAMES = Number(process.env.PW_FUZZ_FRAMES ?? 1_000_000);

const BLOCKED = ['192.0.2.7', '192.0.2.8', '2001:db8::7', '2001:db8::8'];
const ALLOWED_PREFIXES = ['192.0.2.8/32', '2001:db8::8/128'];
const SOURCES = [...BLOCKED, '192.0.2.9', '198.51.100.4', '2001:db8::9', '10.0.0.1'];
const VICTIMS = { 4: '203.0.113.1', 6: '2001:db8:ffff::1' } as const;

function seedFrames(r: () => number): Buffer[] {
  const out: Buffer[] = [];
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  for (const src of SOURCES) {
    const dst = src.includes(':') ? VICTIMS[6] : VICTIMS[4];
    const sport = 1024 + Math.floor(r() * 60000);
    const dport = 1 + Math.floor(r() * 65000);
    out.push(synFrame(src, dst, sport, dport));
    out.push(synFrame(src, dst, sport, dport, { vlans: [7] }));
    out.push(synFrame(src, dst, sport, dport, { vlans: [100, 7] }));
    out.push(ipFrame({ src, dst, tcp: { sport, dport, flags: pick([TCP_FLAGS.ACK, TCP_FLAGS.SYN | TCP_FLAGS.ACK, TCP_FLAGS.RST, 0, TCP_FLAGS.FIN]) } }));
    out.push(ipFrame({ src, dst, udp: { sport, dport } }));
    if (src.includes(':')) {
      out.push(synFrame(src, dst, sport, dport, { ipv6ExtHeaders: [{ type: 0 }, { type: 60 }, { type: 44, fragmentOffset: 0, moreFragments: true }] }));
      out.push(synFrame(src, dst, sport, dport, { ipv6ExtHeaders: [{ type: 51 }, { type: 43 }] }));
    } else {
      out.push(synFrame(src, dst, sport, dport, { ipv4Options: Buffer.from([1, 1, 1, 0]) }));
      out.push(ipFrame({ src, dst, fragmentOffset: 3, tcp: { sport, dport, flags: TCP_FLAGS.SYN } }));
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
      // Bytes where the parser makes decisions: EtherType, IHL/version, protocol, data offset, flags.
      const hot = [12, 13, 14, 16, 17, 18, 20, 21, 23, 46, 47, 54, 58, 59, 66, 67];
      const at = hot[Math.floor(r() * hot.length)]!;
      if (at < f.length) f[at] = [0, 0xff, 0x45, 0x4f, 0x60, 6, 17, 0x50, 0xf0, 2, 0x12, 0x81, 0x86, 0x88, 0xdd, 0x08][Math.floor(r() * 16)]!;
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

describe('XDP program under fuzzing', () => {
  let dp: Datapath;
  let reader: RingBufferReader;
  const blocked = new Set(BLOCKED.map((a) => parseAddress(a).toString('hex')));
  const allowed = new Set(ALLOWED_PREFIXES.map((p) => parseAddress(p.split('/')[0]!).toString('hex')));

  beforeAll(() => {
    dp = Datapath.load();
    reader = dp.reader();
    for (const a of BLOCKED) dp.block(a);
    for (const p of ALLOWED_PREFIXES) dp.allow(p);
  });
  afterAll(() => {
    reader?.close();
    dp?.close();
  });

  it(`agrees with the model on ${FRAMES.toLocaleString('en')} frames (seed ${SEED})`, () => {
    const r = prng(SEED);
    const seeds = seedFrames(r);
    const tally = { frames: 0, events: 0, drops: 0, malformed: 0 };
    for (let i = 0; i < FRAMES; i++) {
      const frame = r() < 0.15 ? randomFrame(r) : mutate(seeds[Math.floor(r() * seeds.length)]!, r);
      const m = model(frame);
      const key = m.saddr?.toString('hex');
      const drop = m.cls === 'syn' && key !== undefined && blocked.has(key) && !allowed.has(key);
      const { retval } = dp.program.testRun({ data: frame, dataOutSize: frame.length + 8 });
      const batch = reader.consume();
      const want = { verdict: drop ? XDP_DROP : XDP_PASS, events: m.cls === 'syn' && !drop ? 1 : 0 };
      if (retval !== want.verdict || batch.count !== want.events) {
        expect({ i, frame: frame.toString('hex'), model: m.cls, verdict: retval, events: batch.count }).toEqual({
          i,
          frame: frame.toString('hex'),
          model: m.cls,
          ...want,
        });
      }
      if (batch.count === 1) {
        const ev = synEventCodec.read([...batch][0]!, 0);
        if (formatAddress(ev.saddr) !== formatAddress(m.saddr!) || ev.sport !== m.sport || ev.dport !== m.dport) {
          expect({ i, saddr: formatAddress(ev.saddr), sport: ev.sport, dport: ev.dport }).toEqual({
            i,
            saddr: formatAddress(m.saddr!),
            sport: m.sport,
            dport: m.dport,
          });
        }
        tally.events++;
      }
      if (retval === XDP_DROP) tally.drops++;
      if (m.cls === 'malformed') tally.malformed++;
      tally.frames++;
    }
    const c = dp.counters();
    expect(c.frames).toBe(BigInt(FRAMES));
    expect(c.events).toBe(BigInt(tally.events));
    expect(c.synDropped).toBe(BigInt(tally.drops));
    expect(c.malformed).toBe(BigInt(tally.malformed));
    // The mix must exercise every outcome, or the agreement means little.
    expect(tally.events).toBeGreaterThan(FRAMES / 50);
    expect(tally.drops).toBeGreaterThan(FRAMES / 200);
    expect(tally.malformed).toBeGreaterThan(FRAMES / 20);
    console.log(`fuzz: ${tally.frames} frames, ${tally.events} events, ${tally.drops} drops, ${tally.malformed} malformed (seed ${SEED})`);
  });
});
