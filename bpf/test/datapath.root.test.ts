// The XDP program run by the kernel (BPF_PROG_TEST_RUN) on crafted frames:
// verdicts, events and counters for every path the program can take.
import {
  BLOCK_FLAGS,
  type BlockEntry,
  BlockReason,
  type Counters,
  Datapath,
  DropMode,
  PortState,
  ProbeKind,
  SCAN_MAX_PORTS,
  ScanVerdict,
  type SynEvent,
  TCP_FLAGS,
  arpFrame,
  blockCodec,
  formatAddress,
  ipFrame,
  lpmKeyCodec,
  decodeScanHistory,
  openPortRanges,
  destinationOptions,
  encodeScanHistory,
  parseAddress,
  scanStateSize,
  synEventCodec,
  synFrame,
  tcpFrame,
  zeroCounters,
} from '@packetwatch/bpf';
import { type AddressInfo, type Server, type Socket, createConnection, createServer } from 'node:net';
import { BpfError, type RingBufferReader, clock, encode } from 'libbpf-ts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const XDP_DROP = 1;
const XDP_PASS = 2;
const LOOPBACK_IFINDEX = 1; // test runs present frames as received on lo

const ATTACKER = '192.0.2.7';
const VICTIM = '198.51.100.1';
const ATTACKER6 = '2001:db8::7';
const VICTIM6 = '2001:db8::1';
// The program stamps times with the kernel's coarse clock (CLOCK_BOOTTIME at
// tick resolution), which trails a clock read in user space by up to two
// ticks, not one: at a tick the kernel moves the coarse clock forward by whole
// tick intervals of the clock source only, so right after a tick it can
// already be almost a tick behind, and it falls up to another tick behind
// before the next one (6.8 ms measured at HZ=250, idle and under load).
const COARSE_LAG_NS = clock.coarseLagNs();

interface Outcome {
  verdict: number;
  events: SynEvent[];
  counters: Partial<Counters>;
}

class Harness {
  readonly reader: RingBufferReader;
  #before: Counters = zeroCounters();

  constructor(readonly dp: Datapath) {
    this.reader = dp.reader();
  }

  /** Runs one frame and reports the verdict, the events it produced and the counters it moved. */
  run(frame: Buffer): Outcome {
    this.reader.consume();
    this.#before = this.dp.counters();
    const { retval } = this.dp.program.testRun({ data: frame });
    const batch = this.reader.consume();
    const events = [...batch].map((r) => synEventCodec.read(r, 0));
    const after = this.dp.counters();
    const moved: Partial<Counters> = {};
    for (const k of Object.keys(after) as (keyof Counters)[]) {
      if (after[k] !== this.#before[k]) moved[k] = after[k] - this.#before[k];
    }
    return { verdict: retval, events, counters: moved };
  }

  /** Both lists emptied: every test of a describe starts from no block and no allowlist entry. */
  clearLists(): void {
    for (const k of [...this.dp.blocklist.keys()]) this.dp.blocklist.delete(k);
    for (const k of [...this.dp.allowlist.keys()]) this.dp.allowlist.delete(k);
  }

  close(): void {
    this.reader.close();
    this.dp.close();
  }
}

/** A harness per describe, in drop mode `dropMode` (in shadow mode with `shadow`), its lists emptied (then `setUp`) before each test. */
function harnessPerDescribe(dropMode: DropMode, setUp: (h: Harness) => void = () => {}, shadow = false): () => Harness {
  let h: Harness;
  beforeAll(() => {
    h = new Harness(Datapath.load({ dropMode, shadow }));
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.clearLists();
    setUp(h);
  });
  return () => h;
}

/** Runs body on a Datapath loaded with opts and its ring buffer reader, both closed afterwards. */
function withDatapath(opts: Parameters<typeof Datapath.load>[0], body: (dp: Datapath, r: RingBufferReader) => void): void {
  const dp = Datapath.load(opts);
  const reader = dp.reader();
  try {
    body(dp, reader);
  } finally {
    reader.close();
    dp.close();
  }
}

function expectPassNoEvent(o: Outcome, counter: keyof Counters | undefined): void {
  expect(o.verdict).toBe(XDP_PASS);
  expect(o.events).toEqual([]);
  expect(o.counters).toEqual(counter ? { frames: 1n, [counter]: 1n } : { frames: 1n });
}

/** Resolves once CLOCK_BOOTTIME reaches `deadlineNs` (timers alone may fire up to a millisecond early). */
async function until(deadlineNs: bigint): Promise<void> {
  for (let left = deadlineNs - clock.boottimeNs(); left > 0n; left = deadlineNs - clock.boottimeNs()) {
    await new Promise((res) => setTimeout(res, Math.ceil(Number(left) / 1e6)));
  }
}

describe('default mode (drop new-connection SYNs of blocked sources)', () => {
  let h: Harness;
  beforeAll(() => {
    h = new Harness(Datapath.load());
  });
  afterAll(() => h.close());
  beforeEach(() => {
    for (const k of [...h.dp.blocklist.keys()]) h.dp.blocklist.delete(k);
    for (const k of [...h.dp.allowlist.keys()]) h.dp.allowlist.delete(k);
  });

  it('reports an IPv4 SYN as exactly one event with its addresses, ports and kernel time, and passes it', () => {
    const before = clock.boottimeNs();
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22, { ttl: 61 }));
    const after = clock.boottimeNs();
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events).toHaveLength(1);
    const ev = o.events[0]!;
    expect(formatAddress(ev.saddr)).toBe(ATTACKER);
    expect(formatAddress(ev.daddr)).toBe(VICTIM);
    expect(ev).toMatchObject({
      sport: 40000,
      dport: 22,
      ifindex: LOOPBACK_IFINDEX,
      tcpFlags: TCP_FLAGS.SYN,
      ipVersion: 4,
      ttl: 61,
      vlanId: 0,
    });
    expect(ev.tsNs >= before - COARSE_LAG_NS && ev.tsNs <= after).toBe(true);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n });
  });

  it('reports an IPv6 SYN with both 16-byte addresses', () => {
    const o = h.run(synFrame(ATTACKER6, VICTIM6, 50000, 443));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events.map((e) => [formatAddress(e.saddr), formatAddress(e.daddr), e.sport, e.dport, e.ipVersion])).toEqual([
      [ATTACKER6, VICTIM6, 50000, 443, 6],
    ]);
  });

  it('walks IPv6 extension headers (hop-by-hop, routing, destination options, AH, first fragment) to the TCP header', () => {
    const o = h.run(
      synFrame(ATTACKER6, VICTIM6, 50001, 8080, {
        ipv6ExtHeaders: [{ type: 0 }, { type: 43 }, { type: 60 }, { type: 51 }, { type: 44, fragmentOffset: 0, moreFragments: true }],
      }),
    );
    expect(o.events.map((e) => e.dport)).toEqual([8080]);
    expect(o.verdict).toBe(XDP_PASS);
  });

  it('walks a chain of exactly 8 extension headers (IPV6_EXT_MAX) to the TCP header', () => {
    const o = h.run(synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: destinationOptions(8) }));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events.map((e) => [e.dport, e.kind])).toEqual([[2, ProbeKind.Syn]]);
  });

  it('drops an IPv6 packet with more extension headers than it walks (9, 40), whoever sends it (RFC 9098)', () => {
    for (const n of [9, 40]) {
      const o = h.run(synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: destinationOptions(n) }));
      expect({ n, ...o }).toEqual({ n, verdict: XDP_DROP, events: [], counters: { frames: 1n, longChains: 1n } });
    }
    // Not UDP either, and not for an allowlisted or a blocked source: no lookup changes it.
    expect(h.run(ipFrame({ src: ATTACKER6, dst: VICTIM6, ipv6ExtHeaders: destinationOptions(40), udp: { sport: 1, dport: 2 } }))).toEqual({
      verdict: XDP_DROP,
      events: [],
      counters: { frames: 1n, longChains: 1n },
    });
    h.dp.allow(ATTACKER6);
    expect(h.run(synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: destinationOptions(40) })).counters).toEqual({ frames: 1n, longChains: 1n });
    h.dp.disallow(ATTACKER6);
    h.dp.block(ATTACKER6);
    expect(h.run(synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: destinationOptions(40) }))).toEqual({
      verdict: XDP_DROP,
      events: [],
      counters: { frames: 1n, longChains: 1n },
    });
  });

  it('honours IPv4 options (IHL > 5)', () => {
    const options = Buffer.from([0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00]); // NOP NOP NOP EOL, router alert
    const o = h.run(synFrame(ATTACKER, VICTIM, 40001, 25, { ipv4Options: options }));
    expect(o.events.map((e) => [formatAddress(e.saddr), e.sport, e.dport])).toEqual([[ATTACKER, 40001, 25]]);
  });

  it('reads through a single VLAN tag and reports its id', () => {
    const o = h.run(synFrame(ATTACKER, VICTIM, 40002, 80, { vlans: [42] }));
    expect(o.events.map((e) => [e.dport, e.vlanId])).toEqual([[80, 42]]);
  });

  it('reads through two VLAN tags (802.1ad + 802.1Q) and reports the inner id', () => {
    const o = h.run(synFrame(ATTACKER6, VICTIM6, 40003, 81, { vlans: [100, 7] }));
    expect(o.events.map((e) => [e.dport, e.vlanId, e.ipVersion])).toEqual([[81, 7, 6]]);
  });

  it('passes an EtherType of 0 as not IP (not malformed)', () => {
    const f = synFrame(ATTACKER, VICTIM, 1, 2);
    f.writeUInt16BE(0, 12);
    expectPassNoEvent(h.run(f), 'nonIp');
  });

  it('passes a frame with three VLAN tags as not IP, without an event', () => {
    expectPassNoEvent(h.run(synFrame(ATTACKER, VICTIM, 1, 2, { vlans: [1, 2, 3] })), 'nonIp');
  });

  const notNew: [string, number][] = [
    ['SYN-ACK', TCP_FLAGS.SYN | TCP_FLAGS.ACK],
    ['ACK', TCP_FLAGS.ACK],
    ['RST', TCP_FLAGS.RST],
    ['RST-ACK', TCP_FLAGS.RST | TCP_FLAGS.ACK],
    ['FIN-ACK', TCP_FLAGS.FIN | TCP_FLAGS.ACK],
    ['bare RST (not a probe)', TCP_FLAGS.RST],
    ['PSH-ACK with data', TCP_FLAGS.PSH | TCP_FLAGS.ACK],
  ];
  it.each(notNew)('passes a %s without an event', (_name, flags) => {
    const frame = ipFrame({ src: ATTACKER, dst: VICTIM, tcp: { sport: 1234, dport: 80, flags, payload: Buffer.from('hello') } });
    expectPassNoEvent(h.run(frame), undefined);
  });

  it('passes UDP, ICMP, ICMPv6 and ARP without an event', () => {
    expectPassNoEvent(h.run(ipFrame({ src: ATTACKER, dst: VICTIM, udp: { sport: 53, dport: 53 } })), 'nonTcp');
    expectPassNoEvent(h.run(ipFrame({ src: ATTACKER, dst: VICTIM, icmp: { type: 8, code: 0 } })), 'nonTcp');
    expectPassNoEvent(h.run(ipFrame({ src: ATTACKER6, dst: VICTIM6, icmp: { type: 128, code: 0 } })), 'nonTcp');
    expectPassNoEvent(h.run(arpFrame(ATTACKER, VICTIM)), 'nonIp');
  });

  it('passes non-first IPv4 and IPv6 fragments (no TCP header to read) and counts them', () => {
    const v4 = ipFrame({ src: ATTACKER, dst: VICTIM, fragmentOffset: 185, tcp: { sport: 1, dport: 2, flags: TCP_FLAGS.SYN } });
    expectPassNoEvent(h.run(v4), 'fragments');
    const v6 = synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: [{ type: 44, fragmentOffset: 100 }] });
    expectPassNoEvent(h.run(v6), 'fragments');
  });

  it('reports a first fragment that carries the whole TCP header as an ordinary segment: a fragmented SYN is a SYN', () => {
    const o = h.run(synFrame(ATTACKER, VICTIM, 3, 4, { moreFragments: true }));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events.map((e) => [e.dport, e.kind, e.tcpFlags])).toEqual([[4, ProbeKind.Syn, TCP_FLAGS.SYN]]);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n });
    // Exactly 20 bytes of TCP header in the fragment is enough.
    const o20 = h.run(tcpFrame(ATTACKER, VICTIM, 3, 5, TCP_FLAGS.SYN, { moreFragments: true, l4Bytes: 20 }));
    expect([o20.verdict, o20.events.map((e) => [e.dport, e.kind])]).toEqual([XDP_PASS, [[5, ProbeKind.Syn]]]);
  });

  it('passes and counts every truncation of a SYN frame that XDP can receive, without an event', () => {
    for (const [src, dst] of [
      [ATTACKER, VICTIM],
      [ATTACKER6, VICTIM6],
    ] as const) {
      const full = synFrame(src, dst, 40000, 22, { vlans: [5] });
      for (let len = 14; len < full.length; len++) {
        const o = h.run(full.subarray(0, len));
        expect({ len, ...o }).toEqual({ len, verdict: XDP_PASS, events: [], counters: { frames: 1n, malformed: 1n } });
      }
    }
  });

  it('cannot be handed a frame shorter than an Ethernet header: the kernel refuses it with EINVAL', () => {
    const full = synFrame(ATTACKER, VICTIM, 40000, 22);
    for (let len = 0; len < 14; len++) {
      let err: unknown;
      try {
        h.dp.program.testRun({ data: full.subarray(0, len) });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BpfError);
      expect((err as BpfError).code).toBe('EINVAL');
    }
  });

  it('counts as malformed a TCP data offset below 5 words or beyond the packet', () => {
    const bad = synFrame(ATTACKER, VICTIM, 1, 2);
    const tcpOff = 14 + 20;
    bad[tcpOff + 12] = 4 << 4;
    expectPassNoEvent(h.run(bad), 'malformed');
    bad[tcpOff + 12] = 15 << 4;
    expectPassNoEvent(h.run(bad), 'malformed');
  });

  it('counts as malformed an IPv4 header with IHL below 5 or a total length shorter than the header', () => {
    const bad = synFrame(ATTACKER, VICTIM, 1, 2);
    bad[14] = 0x44;
    expectPassNoEvent(h.run(bad), 'malformed');
    const short = synFrame(ATTACKER, VICTIM, 1, 2);
    short.writeUInt16BE(19, 14 + 2);
    expectPassNoEvent(h.run(short), 'malformed');
  });

  it('drops a SYN from a blocked source and reports nothing', () => {
    h.dp.block(ATTACKER, { reason: BlockReason.Portscan });
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, syn: 1n, synDropped: 1n } });
  });

  it('drops a SYN from a blocked IPv6 source, and from every address of its /64 (the default prefix)', () => {
    h.dp.block(ATTACKER6);
    expect([...h.dp.blocklist.keys()].map(formatAddress)).toEqual(['2001:db8::']);
    expect(h.run(synFrame(ATTACKER6, VICTIM6, 1, 22)).verdict).toBe(XDP_DROP);
    expect(h.run(synFrame('2001:db8::8', VICTIM6, 1, 22))).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, syn: 1n, synDropped: 1n } });
    expect(h.run(synFrame('2001:db8::ffff:ffff:ffff:ffff', VICTIM6, 1, 22)).verdict).toBe(XDP_DROP);
    // The next /64 is another source.
    expect(h.run(synFrame('2001:db8:0:1::7', VICTIM6, 1, 22)).verdict).toBe(XDP_PASS);
  });

  it('passes an allowlisted address inside a blocked /64, and still drops the rest of it', () => {
    h.dp.block('2001:db8:5:6::1');
    h.dp.allow('2001:db8:5:6::99');
    const o = h.run(synFrame('2001:db8:5:6::99', VICTIM6, 1, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n, allowlisted: 1n });
    expect(h.run(synFrame('2001:db8:5:6::98', VICTIM6, 1, 22)).verdict).toBe(XDP_DROP);
    expect(h.run(tcpFrame('2001:db8:5:6::98', VICTIM6, 1, 22, TCP_FLAGS.FIN)).verdict).toBe(XDP_DROP);
  });

  it('does not confuse an IPv4 source with the IPv6 address of the same low 32 bits', () => {
    h.dp.block('::c000:207'); // ::192.0.2.7 (IPv4-compatible, not IPv4-mapped)
    expect(h.run(synFrame(ATTACKER, VICTIM, 1, 22)).verdict).toBe(XDP_PASS);
  });

  it('passes established traffic from a blocked source in the default mode', () => {
    h.dp.block(ATTACKER);
    const ack = ipFrame({ src: ATTACKER, dst: VICTIM, tcp: { sport: 1, dport: 22, flags: TCP_FLAGS.ACK } });
    expectPassNoEvent(h.run(ack), undefined);
    expectPassNoEvent(h.run(ipFrame({ src: ATTACKER, dst: VICTIM, udp: { sport: 1, dport: 2 } })), 'nonTcp');
  });

  it("does not enforce a block whose expiry passed longer ago than the program's clock can lag: the SYN passes and is reported", () => {
    const now = clock.boottimeNs();
    h.dp.blocklist.set(parseAddress(ATTACKER), { createdNs: now - 2_000_000_000n, expiresNs: now - COARSE_LAG_NS, reason: 1, flags: 0 });
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events).toHaveLength(1);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n, blockExpired: 1n });
  });

  it('enforces a block whose expiry is still ahead', () => {
    h.dp.block(ATTACKER, { ttlSeconds: 3600 });
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
  });

  it('never drops an allowlisted source, even when it is blocked, and still reports it', () => {
    h.dp.block(ATTACKER);
    h.dp.allow('192.0.2.0/24');
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events).toHaveLength(1);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n, allowlisted: 1n });
    h.dp.disallow('192.0.2.0/24');
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
  });

  it('passes a source allowlisted after its SYNs were dropped (and cached as dropped): the insertion moves the generation', () => {
    h.dp.block(ATTACKER);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    h.dp.allow(ATTACKER);
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n, allowlisted: 1n });
  });

  it('drops a source again from its cache slot while the generation stands, and takes the full path once it moves', () => {
    h.dp.block(ATTACKER);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    // Written to the map directly, past Datapath: the generation stands, and so does the cached drop.
    h.dp.allowlist.map.update(encode(lpmKeyCodec, { prefixLen: 128, addr: parseAddress(ATTACKER) }), Buffer.from([1]));
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    const gen = h.dp.generation.value;
    h.dp.generation.bump();
    expect(h.dp.generation.value > gen).toBe(true);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_PASS);
  });

  it('passes a source at once when it is unblocked after drops', () => {
    h.dp.block(ATTACKER);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    expect(h.dp.unblock(ATTACKER)).toBe(true);
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n });
  });

  it('follows a block rewritten after drops: an expiry moved into the past lets the source through', () => {
    h.dp.block(ATTACKER);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    const now = clock.boottimeNs();
    h.dp.blocklist.set(parseAddress(ATTACKER), { createdNs: now - 2_000_000_000n, expiresNs: now - COARSE_LAG_NS, reason: 1, flags: 0 });
    const o = h.run(synFrame(ATTACKER, VICTIM, 40000, 22));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n, blockExpired: 1n });
  });

  it('keeps apart blocked sources that share a cache slot', () => {
    // 64 blocked sources among the 4,096 of 10.0.0.0/20, as many as the cache has slots: many share one.
    const source = (i: number) => `10.0.${i >> 8}.${i & 0xff}`;
    const blocked = Array.from({ length: 64 }, (_, i) => source((i * 61) % 4096));
    for (const a of blocked) h.dp.block(a);
    for (let round = 0; round < 2; round++) {
      for (const a of blocked) expect(h.run(synFrame(a, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    }
    for (let i = 0; i < 4096; i++) {
      const a = source(i);
      if (blocked.includes(a)) continue;
      const { retval } = h.dp.program.testRun({ data: synFrame(a, VICTIM, 40000, 22) });
      if (retval !== XDP_PASS) expect.fail(`${a} was dropped, never blocked`);
    }
    h.reader.consume();
  });

  it('checks a block rewritten by user space against the allowlist again', () => {
    h.dp.block(ATTACKER);
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_DROP);
    h.dp.allowlist.map.update(encode(lpmKeyCodec, { prefixLen: 128, addr: parseAddress(ATTACKER) }), Buffer.from([1]));
    h.dp.block(ATTACKER, { ttlSeconds: 3600 });
    expect(h.run(synFrame(ATTACKER, VICTIM, 40000, 22)).verdict).toBe(XDP_PASS);
  });

  it('matches IPv6 allowlist prefixes', () => {
    h.dp.block(ATTACKER6);
    h.dp.allow('2001:db8::/32');
    expect(h.run(synFrame(ATTACKER6, VICTIM6, 1, 22)).verdict).toBe(XDP_PASS);
  });
});

describe('drop-all mode', () => {
  let h: Harness;
  beforeAll(() => {
    h = new Harness(Datapath.load({ dropMode: DropMode.All }));
  });
  afterAll(() => h.close());
  beforeEach(() => {
    for (const k of [...h.dp.blocklist.keys()]) h.dp.blocklist.delete(k);
  });

  it('drops every frame of a blocked source: ACKs, UDP and fragments too', () => {
    h.dp.block(ATTACKER);
    const ack = ipFrame({ src: ATTACKER, dst: VICTIM, tcp: { sport: 1, dport: 22, flags: TCP_FLAGS.ACK } });
    expect(h.run(ack)).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, otherDropped: 1n } });
    const udp = ipFrame({ src: ATTACKER, dst: VICTIM, udp: { sport: 1, dport: 2 } });
    expect(h.run(udp)).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, nonTcp: 1n, otherDropped: 1n } });
    const frag = ipFrame({ src: ATTACKER, dst: VICTIM, fragmentOffset: 10, udp: { sport: 1, dport: 2 } });
    expect(h.run(frag).verdict).toBe(XDP_DROP);
    expect(h.run(synFrame(ATTACKER, VICTIM, 1, 22)).verdict).toBe(XDP_DROP);
  });

  it('passes the traffic of other sources', () => {
    h.dp.block(ATTACKER);
    const ack = ipFrame({ src: '192.0.2.99', dst: VICTIM, tcp: { sport: 1, dport: 22, flags: TCP_FLAGS.ACK } });
    expectPassNoEvent(h.run(ack), undefined);
  });
});

const ACK = TCP_FLAGS.ACK;
const FIN = TCP_FLAGS.FIN;
const SYN = TCP_FLAGS.SYN;
const RST = TCP_FLAGS.RST;
const XMAS = TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG;
const FIRST_FRAGMENT6 = [{ type: 44 as const, fragmentOffset: 0, moreFragments: true }];

describe.each([
  ['syn', DropMode.Syn],
  ['drop-all', DropMode.All],
] as const)('probes and evasions from sources not blocked (%s mode: the same outcome)', (_mode, dropMode) => {
  const harness = harnessPerDescribe(dropMode);

  const stealth: [string, number][] = [
    ['FIN', FIN],
    ['NULL', 0],
    ['XMAS (FIN|PSH|URG)', XMAS],
    ['SYN+FIN', SYN | FIN],
    ['SYN+RST', SYN | RST],
    ['FIN+RST', FIN | RST],
    ['PSH alone', TCP_FLAGS.PSH],
    ['URG alone', TCP_FLAGS.URG],
  ];
  it.each(stealth)('reports a %s segment as a stealth probe with its flags, counted stealth (not syn), and passes it', (_name, flags) => {
    const o = harness().run(tcpFrame(ATTACKER, VICTIM, 1234, 80, flags));
    expect(o.verdict).toBe(XDP_PASS);
    expect(o.events.map((e) => ({ kind: e.kind, tcpFlags: e.tcpFlags, sport: e.sport, dport: e.dport }))).toEqual([
      { kind: ProbeKind.Stealth, tcpFlags: flags, sport: 1234, dport: 80 },
    ]);
    expect(o.counters).toEqual({ frames: 1n, stealth: 1n, events: 1n });
  });

  it('reports an ECN SYN (SYN|ECE|CWR) and a SYN with PSH|URG as SYNs', () => {
    for (const flags of [SYN | TCP_FLAGS.ECE | TCP_FLAGS.CWR, SYN | TCP_FLAGS.PSH | TCP_FLAGS.URG]) {
      const o = harness().run(tcpFrame(ATTACKER6, VICTIM6, 1234, 443, flags));
      expect(o.verdict).toBe(XDP_PASS);
      expect(o.events.map((e) => [e.kind, e.tcpFlags, e.dport])).toEqual([[ProbeKind.Syn, flags, 443]]);
      expect(o.counters).toEqual({ frames: 1n, syn: 1n, events: 1n });
    }
  });

  it('passes a bare RST without an event: not a probe', () => {
    expectPassNoEvent(harness().run(tcpFrame(ATTACKER, VICTIM, 1234, 80, RST)), undefined);
    expectPassNoEvent(harness().run(tcpFrame(ATTACKER6, VICTIM6, 1234, 80, RST)), undefined);
  });

  it('drops an IPv4 first fragment with 8 bytes of TCP (RFC 1858) and reports it as a fragment probe of its port', () => {
    const o = harness().run(tcpFrame(ATTACKER, VICTIM, 40000, 22, SYN, { moreFragments: true, l4Bytes: 8 }));
    expect(o.verdict).toBe(XDP_DROP);
    expect(o.events).toHaveLength(1);
    expect(formatAddress(o.events[0]!.saddr)).toBe(ATTACKER);
    expect(o.events[0]).toMatchObject({ kind: ProbeKind.Fragment, tcpFlags: 0, sport: 40000, dport: 22, ipVersion: 4, scan: ScanVerdict.None });
    expect(o.counters).toEqual({ frames: 1n, tinyFragments: 1n, events: 1n });
  });

  it('drops every IPv4 TCP first fragment of 4 to 19 bytes with a fragment event, and of 0 to 3 bytes without one', () => {
    for (let n = 0; n < 20; n++) {
      const o = harness().run(tcpFrame(ATTACKER, VICTIM, 40000, 1000 + n, XMAS, { moreFragments: true, l4Bytes: n }));
      const events = n >= 4 ? [[ProbeKind.Fragment, 1000 + n]] : [];
      expect({ n, verdict: o.verdict, events: o.events.map((e) => [e.kind, e.dport]), counters: o.counters }).toEqual({
        n,
        verdict: XDP_DROP,
        events,
        counters: n >= 4 ? { frames: 1n, tinyFragments: 1n, events: 1n } : { frames: 1n, tinyFragments: 1n },
      });
    }
  });

  it("judges an IPv4 first fragment's TCP bytes by its total length, not by the Ethernet padding after it", () => {
    const o = harness().run(tcpFrame(ATTACKER, VICTIM, 40000, 22, SYN, { moreFragments: true, l4Bytes: 8, trailer: Buffer.alloc(32) }));
    expect([o.verdict, o.events.map((e) => e.kind), o.counters]).toEqual([XDP_DROP, [ProbeKind.Fragment], { frames: 1n, tinyFragments: 1n, events: 1n }]);
    // And by the frame when the frame ends first.
    const cut = synFrame(ATTACKER, VICTIM, 40000, 23, { moreFragments: true }).subarray(0, 14 + 20 + 8);
    const c = harness().run(cut);
    expect([c.verdict, c.events.map((e) => [e.kind, e.dport]), c.counters]).toEqual([XDP_DROP, [[ProbeKind.Fragment, 23]], { frames: 1n, tinyFragments: 1n, events: 1n }]);
  });

  it('drops an IPv4 TCP fragment at offset 1 (8 bytes: it can only rewrite the flags, RFC 3128) without an event', () => {
    const o = harness().run(tcpFrame(ATTACKER, VICTIM, 1, 2, ACK, { fragmentOffset: 1, l4Bytes: 12 }));
    expect(o).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, tinyFragments: 1n } });
    expect(harness().run(tcpFrame(ATTACKER, VICTIM, 1, 2, ACK, { fragmentOffset: 1, moreFragments: true, l4Bytes: 16 })).counters).toEqual({ frames: 1n, tinyFragments: 1n });
    // Not TCP, or further along: an ordinary non-first fragment.
    expectPassNoEvent(harness().run(ipFrame({ src: ATTACKER, dst: VICTIM, fragmentOffset: 1, udp: { sport: 1, dport: 2 } })), 'fragments');
    expectPassNoEvent(harness().run(tcpFrame(ATTACKER, VICTIM, 1, 2, ACK, { fragmentOffset: 2 })), 'fragments');
  });

  it('drops an IPv6 first fragment with 8 bytes of TCP (RFC 7112) and reports it as a fragment probe', () => {
    const o = harness().run(tcpFrame(ATTACKER6, VICTIM6, 40000, 8443, SYN, { ipv6ExtHeaders: FIRST_FRAGMENT6, l4Bytes: 8 }));
    expect(o.verdict).toBe(XDP_DROP);
    expect(o.events.map((e) => ({ kind: e.kind, tcpFlags: e.tcpFlags, sport: e.sport, dport: e.dport, ipVersion: e.ipVersion }))).toEqual([
      { kind: ProbeKind.Fragment, tcpFlags: 0, sport: 40000, dport: 8443, ipVersion: 6 },
    ]);
    expect(o.counters).toEqual({ frames: 1n, tinyFragments: 1n, events: 1n });
    expect(harness().run(tcpFrame(ATTACKER6, VICTIM6, 40000, 8443, SYN, { ipv6ExtHeaders: FIRST_FRAGMENT6, l4Bytes: 3 }))).toEqual({
      verdict: XDP_DROP,
      events: [],
      counters: { frames: 1n, tinyFragments: 1n },
    });
  });

  it('drops an IPv6 first fragment whose header chain stops short of the upper layer, without an event', () => {
    const full = synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: [...FIRST_FRAGMENT6, { type: 60 }] });
    const o = harness().run(full.subarray(0, 14 + 40 + 8 + 4));
    expect(o).toEqual({ verdict: XDP_DROP, events: [], counters: { frames: 1n, tinyFragments: 1n } });
  });

  it('passes an IPv6 first fragment of UDP, and an atomic fragment (offset 0, M clear) as whole', () => {
    expectPassNoEvent(harness().run(ipFrame({ src: ATTACKER6, dst: VICTIM6, ipv6ExtHeaders: FIRST_FRAGMENT6, udp: { sport: 1, dport: 2 } })), 'nonTcp');
    const atomic = harness().run(synFrame(ATTACKER6, VICTIM6, 1, 2, { ipv6ExtHeaders: [{ type: 44, fragmentOffset: 0 }] }));
    expect([atomic.verdict, atomic.events.map((e) => e.kind)]).toEqual([XDP_PASS, [ProbeKind.Syn]]);
  });

  it('passes as malformed a TCP header cut short in an unfragmented packet (not a fragment: the stack drops it)', () => {
    expectPassNoEvent(harness().run(tcpFrame(ATTACKER, VICTIM, 1, 2, SYN, { l4Bytes: 8 })), 'malformed');
  });

  it('drops IPv6 frames from IPv4-mapped and IPv4-compatible sources before anything else: no event', () => {
    for (const src of ['::ffff:10.204.0.105', '::10.204.0.105', '::2', '::ffff:0.0.0.0']) {
      expect({ src, ...harness().run(synFrame(src, VICTIM6, 1, 22)) }).toEqual({ src, verdict: XDP_DROP, events: [], counters: { frames: 1n, bogusSources: 1n } });
      expect(harness().run(ipFrame({ src, dst: VICTIM6, udp: { sport: 1, dport: 2 } })).counters).toEqual({ frames: 1n, bogusSources: 1n });
    }
    // Allowlisted or not.
    harness().dp.allow('::ffff:10.204.0.0/112');
    expect(harness().run(synFrame('::ffff:10.204.0.105', VICTIM6, 1, 22)).counters).toEqual({ frames: 1n, bogusSources: 1n });
  });

  it('takes ::1 and :: as sources like any other (neither is IPv4-compatible)', () => {
    for (const src of ['::1', '::']) {
      const o = harness().run(synFrame(src, VICTIM6, 1, 22));
      expect({ src, verdict: o.verdict, events: o.events.map((e) => formatAddress(e.saddr)), counters: o.counters }).toEqual({
        src,
        verdict: XDP_PASS,
        events: [src],
        counters: { frames: 1n, syn: 1n, events: 1n },
      });
    }
  });
});

// Shadow mode (PW_ENFORCE=False) runs the same frames: what a block drops
// enforcing passes, counted wouldDrop in place of synDropped, probeDropped
// or otherDropped, still without an event; what is dropped whoever sends
// it (a tiny first fragment) is dropped all the same.
describe.each([
  ['syn', DropMode.Syn, false],
  ['drop-all', DropMode.All, false],
  ['syn, shadow', DropMode.Syn, true],
  ['drop-all, shadow', DropMode.All, true],
] as const)('a blocked source once its address is known (%s mode)', (_name, dropMode, shadow) => {
  const mode = dropMode === DropMode.Syn ? 'syn' : 'drop-all';
  const harness = harnessPerDescribe(
    dropMode,
    (h) => {
      h.dp.block(ATTACKER);
      h.dp.block(ATTACKER6);
    },
    shadow,
  );

  type Want = [verdict: number, counters: Partial<Counters>];
  /** A frame a block drops: enforcing, dropped with its counter; in shadow mode, passed (unless dropped for what it is) and counted wouldDrop. */
  const dropped = (c: Partial<Counters>): Want => {
    const { synDropped, probeDropped, otherDropped, ...rest } = c;
    if (!shadow || (synDropped ?? probeDropped ?? otherDropped) === undefined) return [XDP_DROP, { frames: 1n, ...c }];
    return [rest.tinyFragments ? XDP_DROP : XDP_PASS, { frames: 1n, ...rest, wouldDrop: 1n }];
  };
  const passed = (c: Partial<Counters>): Want => [XDP_PASS, { frames: 1n, ...c }];
  const truncatedV6Chain = synFrame(ATTACKER6, VICTIM6, 1, 22, { ipv6ExtHeaders: [{ type: 60 }, { type: 60 }] }).subarray(0, 14 + 40 + 8 + 4);
  const badOffset = synFrame(ATTACKER, VICTIM, 1, 22);
  badOffset[14 + 20 + 12] = 4 << 4;
  // [what, frame, outcome in syn mode, outcome in drop-all mode]
  const cases: [string, Buffer, Want, Want][] = [
    ['a SYN', synFrame(ATTACKER, VICTIM, 1, 22), dropped({ syn: 1n, synDropped: 1n }), dropped({ syn: 1n, synDropped: 1n })],
    ['an ECN SYN', tcpFrame(ATTACKER6, VICTIM6, 1, 22, SYN | TCP_FLAGS.ECE | TCP_FLAGS.CWR), dropped({ syn: 1n, synDropped: 1n }), dropped({ syn: 1n, synDropped: 1n })],
    ['a FIN probe', tcpFrame(ATTACKER, VICTIM, 1, 22, FIN), dropped({ stealth: 1n, probeDropped: 1n }), dropped({ stealth: 1n, probeDropped: 1n })],
    ['a NULL probe', tcpFrame(ATTACKER6, VICTIM6, 1, 22, 0), dropped({ stealth: 1n, probeDropped: 1n }), dropped({ stealth: 1n, probeDropped: 1n })],
    ['an XMAS probe', tcpFrame(ATTACKER, VICTIM, 1, 22, XMAS), dropped({ stealth: 1n, probeDropped: 1n }), dropped({ stealth: 1n, probeDropped: 1n })],
    ['a SYN+FIN probe', tcpFrame(ATTACKER, VICTIM, 1, 22, SYN | FIN), dropped({ stealth: 1n, probeDropped: 1n }), dropped({ stealth: 1n, probeDropped: 1n })],
    ['a bare RST', tcpFrame(ATTACKER, VICTIM, 1, 22, RST), dropped({ otherDropped: 1n }), dropped({ otherDropped: 1n })],
    ['an ACK segment', tcpFrame(ATTACKER, VICTIM, 1, 22, ACK), passed({}), dropped({ otherDropped: 1n })],
    ['an IPv6 RST-ACK', tcpFrame(ATTACKER6, VICTIM6, 1, 22, RST | ACK), passed({}), dropped({ otherDropped: 1n })],
    ['UDP', ipFrame({ src: ATTACKER, dst: VICTIM, udp: { sport: 1, dport: 53 } }), passed({ nonTcp: 1n }), dropped({ nonTcp: 1n, otherDropped: 1n })],
    ['an ICMP error', ipFrame({ src: ATTACKER, dst: VICTIM, icmp: { type: 3, code: 4 } }), passed({ nonTcp: 1n }), dropped({ nonTcp: 1n, otherDropped: 1n })],
    ['an ICMPv6 error', ipFrame({ src: ATTACKER6, dst: VICTIM6, icmp: { type: 2, code: 0 } }), passed({ nonTcp: 1n }), dropped({ nonTcp: 1n, otherDropped: 1n })],
    ['an 8-byte IPv4 TCP first fragment', tcpFrame(ATTACKER, VICTIM, 1, 22, SYN, { moreFragments: true, l4Bytes: 8 }), dropped({ tinyFragments: 1n, probeDropped: 1n }), dropped({ tinyFragments: 1n, probeDropped: 1n })],
    ['a 2-byte IPv4 TCP first fragment', tcpFrame(ATTACKER, VICTIM, 1, 22, SYN, { moreFragments: true, l4Bytes: 2 }), dropped({ tinyFragments: 1n }), dropped({ tinyFragments: 1n })],
    ['an 8-byte IPv6 TCP first fragment', tcpFrame(ATTACKER6, VICTIM6, 1, 22, SYN, { ipv6ExtHeaders: FIRST_FRAGMENT6, l4Bytes: 8 }), dropped({ tinyFragments: 1n, probeDropped: 1n }), dropped({ tinyFragments: 1n, probeDropped: 1n })],
    ['an IPv4 TCP fragment at offset 1', tcpFrame(ATTACKER, VICTIM, 1, 22, ACK, { fragmentOffset: 1 }), dropped({ tinyFragments: 1n }), dropped({ tinyFragments: 1n })],
    ['a non-first IPv4 TCP fragment', tcpFrame(ATTACKER, VICTIM, 1, 22, ACK, { fragmentOffset: 185 }), dropped({ fragments: 1n, otherDropped: 1n }), dropped({ fragments: 1n, otherDropped: 1n })],
    ['a non-first IPv4 UDP fragment', ipFrame({ src: ATTACKER, dst: VICTIM, fragmentOffset: 10, udp: { sport: 1, dport: 2 } }), dropped({ fragments: 1n, otherDropped: 1n }), dropped({ fragments: 1n, otherDropped: 1n })],
    ['a non-first IPv6 fragment', tcpFrame(ATTACKER6, VICTIM6, 1, 22, ACK, { ipv6ExtHeaders: [{ type: 44, fragmentOffset: 100 }] }), dropped({ fragments: 1n, otherDropped: 1n }), dropped({ fragments: 1n, otherDropped: 1n })],
    ['a first fragment holding a whole ACK segment', tcpFrame(ATTACKER, VICTIM, 1, 22, ACK, { moreFragments: true }), dropped({ otherDropped: 1n }), dropped({ otherDropped: 1n })],
    ['a first fragment holding a whole SYN', synFrame(ATTACKER, VICTIM, 1, 22, { moreFragments: true }), dropped({ syn: 1n, synDropped: 1n }), dropped({ syn: 1n, synDropped: 1n })],
    ['a first fragment of UDP', ipFrame({ src: ATTACKER, dst: VICTIM, moreFragments: true, udp: { sport: 1, dport: 2 } }), dropped({ nonTcp: 1n, otherDropped: 1n }), dropped({ nonTcp: 1n, otherDropped: 1n })],
    ['an IPv6 first fragment of UDP', ipFrame({ src: ATTACKER6, dst: VICTIM6, ipv6ExtHeaders: FIRST_FRAGMENT6, udp: { sport: 1, dport: 2 } }), dropped({ nonTcp: 1n, otherDropped: 1n }), dropped({ nonTcp: 1n, otherDropped: 1n })],
    ['TCP with a data offset below 5 words', badOffset, dropped({ malformed: 1n, otherDropped: 1n }), dropped({ malformed: 1n, otherDropped: 1n })],
    ['an unfragmented TCP header cut to 12 bytes', tcpFrame(ATTACKER, VICTIM, 1, 22, ACK, { l4Bytes: 12 }), dropped({ malformed: 1n, otherDropped: 1n }), dropped({ malformed: 1n, otherDropped: 1n })],
    ['an IPv6 header chain cut short', truncatedV6Chain, dropped({ malformed: 1n, otherDropped: 1n }), dropped({ malformed: 1n, otherDropped: 1n })],
    ['40 destination-options headers', synFrame(ATTACKER6, VICTIM6, 1, 22, { ipv6ExtHeaders: destinationOptions(40) }), dropped({ longChains: 1n }), dropped({ longChains: 1n })],
  ];
  it.each(cases)('%s', (_what, frame, syn, all) => {
    const [verdict, counters] = mode === 'syn' ? syn : all;
    expect(harness().run(frame)).toEqual({ verdict, events: [], counters });
  });

  it('drops every truncation of its SYN that still holds the IP header; passes (malformed) the shorter ones, whose source is not known', () => {
    for (const [src, dst, ipEnd] of [
      [ATTACKER, VICTIM, 14 + 4 + 20],
      [ATTACKER6, VICTIM6, 14 + 4 + 40],
    ] as const) {
      const full = synFrame(src, dst, 40000, 22, { vlans: [5] });
      for (let len = 14; len < full.length; len++) {
        const o = harness().run(full.subarray(0, len));
        const [verdict, counters] = len >= ipEnd ? dropped({ malformed: 1n, otherDropped: 1n }) : passed({ malformed: 1n });
        const want = { verdict, counters };
        expect({ src, len, ...o }).toEqual({ src, len, events: [], ...want });
      }
    }
  });

  it(`${shadow ? 'would drop' : 'drops'} any address of its IPv6 /64`, () => {
    const [verdict, counters] = dropped({ stealth: 1n, probeDropped: 1n });
    expect(harness().run(tcpFrame('2001:db8::1234', VICTIM6, 1, 22, FIN))).toEqual({ verdict, events: [], counters });
  });

  it('never drops an allowlisted address for its block: its probes are reported, its fragments pass', () => {
    harness().dp.allow(ATTACKER);
    const fin = harness().run(tcpFrame(ATTACKER, VICTIM, 1, 22, FIN));
    expect([fin.verdict, fin.events.map((e) => e.kind), fin.counters]).toEqual([XDP_PASS, [ProbeKind.Stealth], { frames: 1n, stealth: 1n, events: 1n, allowlisted: 1n }]);
    expect(harness().run(tcpFrame(ATTACKER, VICTIM, 1, 22, ACK, { fragmentOffset: 185 }))).toEqual({ verdict: XDP_PASS, events: [], counters: { frames: 1n, fragments: 1n, allowlisted: 1n } });
    // A tiny fragment is dropped all the same: not for the block, for what it is.
    const tiny = harness().run(tcpFrame(ATTACKER, VICTIM, 1, 22, SYN, { moreFragments: true, l4Bytes: 8 }));
    expect([tiny.verdict, tiny.events.map((e) => e.kind), tiny.counters]).toEqual([XDP_DROP, [ProbeKind.Fragment], { frames: 1n, tinyFragments: 1n, events: 1n, allowlisted: 1n }]);
  });

  if (mode === 'syn') {
    it('passes its ACK segments without a blocklist lookup (an allowlisted, blocked address is not even counted allowlisted)', () => {
      harness().dp.allow(ATTACKER);
      expect(harness().run(tcpFrame(ATTACKER, VICTIM, 1, 22, ACK))).toEqual({ verdict: XDP_PASS, events: [], counters: { frames: 1n } });
      expect(harness().run(ipFrame({ src: ATTACKER, dst: VICTIM, udp: { sport: 1, dport: 2 } }))).toEqual({ verdict: XDP_PASS, events: [], counters: { frames: 1n, nonTcp: 1n } });
    });
  }
});

describe('map sizes and constants', () => {
  it('takes the blocklist size set before load, and a full blocklist refuses more', () => {
    const dp = Datapath.load({ blocklistSize: 4, allowlistSize: 8, ringBufferBytes: 1 << 16 });
    try {
      expect(dp.blocklist.map.maxEntries).toBe(4);
      expect(dp.allowlist.map.maxEntries).toBe(8);
      expect(dp.events.maxEntries).toBe(1 << 16);
      for (let i = 1; i <= 4; i++) dp.block(`192.0.2.${i}`);
      expect(() => dp.block('192.0.2.5')).toThrow(expect.objectContaining({ name: 'MapFullError', code: 'E2BIG' }));
    } finally {
      dp.close();
    }
  });

  it('counts SYN events lost to a full ring buffer instead of blocking the packet', () => {
    const dp = Datapath.load({ ringBufferBytes: 4096 });
    try {
      // Records take 56 + 8 header bytes; a 4096-byte ring takes 63 of them, since
      // the kernel refuses a reservation that would make it exactly full.
      const frame = synFrame(ATTACKER, VICTIM, 1, 22);
      for (let i = 0; i < 100; i++) expect(dp.program.testRun({ data: frame }).retval).toBe(XDP_PASS);
      expect(dp.counters()).toMatchObject({ syn: 100n, events: 63n, ringbufFull: 37n });
    } finally {
      dp.close();
    }
  });
});

describe('in-kernel scan detection', () => {
  const run = (dp: Datapath, reader: RingBufferReader, frame: Buffer) => {
    const { retval } = dp.program.testRun({ data: frame });
    return { verdict: retval, scans: [...reader.consume()].map((r) => synEventCodec.read(r, 0).scan) };
  };

  it('is off by default: no scan verdicts, no kernel blocks', () => {
    withDatapath({}, (dp, r) => {
      for (const port of [1, 2, 3, 4, 5]) expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, port))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect([...dp.blocklist.keys()]).toEqual([]);
    });
  });

  it('blocks at the SYN that reaches N distinct ports within the window: that one passes, the next is dropped', () => {
    withDatapath({ scanPorts: 3, scanWindowSeconds: 60, scanBlockSeconds: 3600 }, (dp, r) => {
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, 22))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40001, 22))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40002, 23))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      const before = clock.boottimeNs();
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40003, 80))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      const after = clock.boottimeNs();
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40004, 443))).toEqual({ verdict: XDP_DROP, scans: [] });
      const entry = dp.blocklist.get(parseAddress(ATTACKER))!;
      expect(entry).toMatchObject({ reason: BlockReason.Portscan, flags: BLOCK_FLAGS.kernelDetected });
      expect(entry.expiresNs - entry.createdNs).toBe(3_600_000_000_000n);
      // Created by the crossing SYN's run.
      expect(entry.createdNs >= before - COARSE_LAG_NS && entry.createdNs <= after).toBe(true);
      expect(dp.counters()).toMatchObject({ scanBlocked: 1n, scanCapped: 0n, synDropped: 1n });
      // Other sources are untouched.
      expect(run(dp, r, synFrame('192.0.2.99', VICTIM, 1, 80))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
    });
  });

  it.each([
    ['syn', DropMode.Syn],
    ['drop-all', DropMode.All],
  ] as const)('in shadow mode (%s), still blocks at the crossing SYN, and then drops nothing: the next SYNs pass, counted wouldDrop, without events', (_mode, dropMode) => {
    withDatapath({ scanPorts: 3, scanWindowSeconds: 60, dropMode, shadow: true }, (dp, r) => {
      for (const port of [22, 23]) expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, port))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, 80))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      // The block is written as enforcing writes it: a later PW_ENFORCE=True enforces it without a new detection.
      expect(dp.blocklist.get(parseAddress(ATTACKER))).toMatchObject({ reason: BlockReason.Portscan, flags: BLOCK_FLAGS.kernelDetected });
      for (const port of [443, 8080]) expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, port))).toEqual({ verdict: XDP_PASS, scans: [] });
      expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, 22, ACK))).toEqual({ verdict: XDP_PASS, scans: [] });
      expect(dp.counters()).toMatchObject({ scanBlocked: 1n, synDropped: 0n, otherDropped: 0n, wouldDrop: dropMode === DropMode.All ? 3n : 2n });
    });
  });

  it('does not count ports hit further apart than the window', async () => {
    const windowNs = 500_000n;
    const dp = Datapath.load({ scanPorts: 3, scanWindowSeconds: Number(windowNs) / 1e9 });
    const reader = dp.reader();
    try {
      for (const port of [1, 2, 3, 4]) {
        expect(run(dp, reader, synFrame(ATTACKER, VICTIM, 40000, port))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
        // The time that must pass: the window, plus what the program's clock
        // may lag, so that its stamps of two hits are a window apart too.
        await until(clock.boottimeNs() + windowNs + COARSE_LAG_NS);
      }
      expect([...dp.blocklist.keys()]).toEqual([]);
    } finally {
      reader.close();
      dp.close();
    }
  });

  it('blocks at the first SYN with N = 1, and works for IPv6', () => {
    withDatapath({ scanPorts: 1 }, (dp, r) => {
      expect(run(dp, r, synFrame(ATTACKER6, VICTIM6, 1, 22))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      expect(run(dp, r, synFrame(ATTACKER6, VICTIM6, 1, 22))).toEqual({ verdict: XDP_DROP, scans: [] });
    });
  });

  it('never blocks an allowlisted source, and says so', () => {
    withDatapath({ scanPorts: 2 }, (dp, r) => {
      dp.allow('192.0.2.0/24');
      run(dp, r, synFrame(ATTACKER, VICTIM, 1, 1));
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 1, 2))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Allowlisted] });
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 1, 3)).verdict).toBe(XDP_PASS);
      expect([...dp.blocklist.keys()]).toEqual([]);
    });
  });

  it('blocks within the per-minute budget for the block TTL, and beyond it for the short capped TTL: never not at all', () => {
    withDatapath({ scanPorts: 2, scanBlocksPerMinute: 1, scanBlockSeconds: 3600, scanCappedBlockSeconds: 30 }, (dp, r) => {
      for (const src of ['192.0.2.1', '192.0.2.2']) run(dp, r, synFrame(src, VICTIM, 1, 1));
      expect(run(dp, r, synFrame('192.0.2.1', VICTIM, 1, 2)).scans).toEqual([ScanVerdict.Blocked]);
      expect(run(dp, r, synFrame('192.0.2.2', VICTIM, 1, 2)).scans).toEqual([ScanVerdict.Capped]);
      expect(dp.counters()).toMatchObject({ scanBlocked: 1n, scanCapped: 1n });
      const ttl = (ip: string) => {
        const e = dp.blocklist.get(parseAddress(ip))!;
        return (e.expiresNs - e.createdNs) / 1_000_000_000n;
      };
      expect({ within: ttl('192.0.2.1'), beyond: ttl('192.0.2.2') }).toEqual({ within: 3600n, beyond: 30n });
      // The capped source is dropped like any blocked one.
      expect(run(dp, r, synFrame('192.0.2.2', VICTIM, 2, 3))).toEqual({ verdict: XDP_DROP, scans: [] });
    });
  });

  it('keeps a block TTL shorter than the capped one for blocks beyond the budget too', () => {
    withDatapath({ scanPorts: 1, scanBlocksPerMinute: 1, scanBlockSeconds: 10, scanCappedBlockSeconds: 30 }, (dp, r) => {
      expect(run(dp, r, synFrame('192.0.2.1', VICTIM, 1, 1)).scans).toEqual([ScanVerdict.Blocked]);
      expect(run(dp, r, synFrame('192.0.2.2', VICTIM, 1, 1)).scans).toEqual([ScanVerdict.Capped]);
      const e = dp.blocklist.get(parseAddress('192.0.2.2'))!;
      expect(e.expiresNs - e.createdNs).toBe(10_000_000_000n);
    });
  });

  it('says so when the blocklist is full: detected, not blocked', () => {
    withDatapath({ scanPorts: 1, blocklistSize: 1 }, (dp, r) => {
      expect(run(dp, r, synFrame('192.0.2.1', VICTIM, 1, 1)).scans).toEqual([ScanVerdict.Blocked]);
      expect(run(dp, r, synFrame('192.0.2.2', VICTIM, 1, 1))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Full] });
      expect(dp.counters()).toMatchObject({ scanBlocked: 1n, scanCapped: 1n });
    });
  });

  it('ignores repeated hits on one port', () => {
    withDatapath({ scanPorts: 2 }, (dp, r) => {
      for (let i = 0; i < 20; i++) expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000 + i, 8086)).scans).toEqual([ScanVerdict.None]);
    });
  });

  it('keeps the blocklist count as it changes: its own writes, the program\'s blocks, a lapsed entry overwritten', () => {
    withDatapath({ scanPorts: 1, scanBlockSeconds: 3600 }, (dp, r) => {
      const walked = () => dp.blocklist.map.lookupAll().length;
      const expectCount = (n: number) => {
        expect(dp.blocklist.size).toBe(n);
        expect(walked()).toBe(n);
      };
      expectCount(0);
      dp.block('198.51.100.1');
      dp.block('198.51.100.1', { ttlSeconds: 60 }); // replaced, not added
      dp.block('2001:db8::1');
      expectCount(2);
      // The program blocks a new source, and overwrites a lapsed entry in place.
      run(dp, r, synFrame(ATTACKER, VICTIM, 1, 22));
      expectCount(3);
      dp.blocklist.set(parseAddress('192.0.2.70'), { createdNs: 1n, expiresNs: 2n, reason: BlockReason.Manual, flags: 0 });
      expectCount(4);
      expect(run(dp, r, synFrame('192.0.2.70', VICTIM, 1, 22)).scans).toEqual([ScanVerdict.Blocked]);
      expect(dp.blocklist.get(parseAddress('192.0.2.70'))!.reason).toBe(BlockReason.Portscan);
      expectCount(4);
      expect(dp.unblock('198.51.100.1')).toBe(true);
      expect(dp.unblock('198.51.100.1')).toBe(false);
      expectCount(3);
      // A write past this Datapath (another handle on the map) shows at the next walk.
      dp.blocklist.map.delete(dp.blocklist.map.lookupAll()[0]![0]);
      expect(dp.blocklist.size).toBe(3);
      expect(dp.blocklist.snapshot()).toHaveLength(2);
      expectCount(2);
    });
  });

  it('sweeps the blocklist a chunk at a time, deleting as it goes, and re-anchors the count only when nothing else moved it', async () => {
    const dp = Datapath.load({});
    try {
      const lapsed = { createdNs: 1n, expiresNs: 2n, reason: BlockReason.Manual, flags: 0 };
      const addr = (i: number) => parseAddress(`2001:db8::${(i + 1).toString(16)}`);
      for (let i = 0; i < 1000; i++) dp.blocklist.set(addr(i), i % 2 ? lapsed : { ...lapsed, expiresNs: 0n });
      expect(dp.blocklist.size).toBe(1000);
      const deleteLapsed = (chunk: [Buffer, BlockEntry][]) => {
        for (const [k, e] of chunk) if (e.expiresNs === 2n) dp.blocklist.delete(k);
      };
      // Writes past this Datapath, then a sweep that deletes what lapsed: the count is the walk's.
      for (let i = 1000; i < 1010; i++) dp.blocklist.map.update(addr(i), encode(blockCodec, lapsed));
      dp.blocklist.map.update(parseAddress('192.0.2.1'), encode(blockCodec, { ...lapsed, expiresNs: 0n }));
      let chunks = 0;
      await dp.blocklist.sweep((chunk) => {
        chunks++;
        deleteLapsed(chunk);
      });
      expect(chunks).toBeGreaterThan(1);
      expect(dp.blocklist.map.lookupAll()).toHaveLength(501);
      expect(dp.blocklist.size).toBe(501);
      // An addition of someone else's while the sweep is under way: the walk
      // may or may not have seen it, so the count kept so far stands.
      dp.blocklist.map.delete(parseAddress('192.0.2.1'));
      const sweep = dp.blocklist.sweep(() => undefined);
      dp.block('192.0.2.2');
      await sweep;
      expect(dp.blocklist.size).toBe(502);
      expect(dp.blocklist.map.lookupAll()).toHaveLength(501);
      // The next undisturbed sweep puts it right.
      await dp.blocklist.sweep(() => undefined);
      expect(dp.blocklist.size).toBe(501);
    } finally {
      dp.close();
    }
  });

  it('takes every N from 1 to 64 (the verifier accepts each) and blocks at the Nth distinct port', () => {
    const blockedAt: number[] = [];
    for (let n = 1; n <= SCAN_MAX_PORTS; n++) {
      withDatapath({ scanPorts: n }, (dp, r) => {
        expect(dp.collection.map('scanners').info().valueSize).toBe(scanStateSize(n));
        for (let port = 1; port <= n + 1; port++) {
          const { verdict, scans } = run(dp, r, synFrame(ATTACKER, VICTIM, 40000, port));
          if (verdict === XDP_DROP) break;
          if (scans[0] === ScanVerdict.Blocked) blockedAt.push(port);
        }
      });
    }
    expect(blockedAt).toEqual(Array.from({ length: SCAN_MAX_PORTS }, (_, i) => i + 1));
  });

  const writeHistory = (dp: Datapath, n: number, source: string, entries: [number, bigint][], head: Parameters<typeof encodeScanHistory>[2] = {}) =>
    dp.collection.map('scanners').update(parseAddress(source), encodeScanHistory(n, entries, head));
  const readHistory = (dp: Datapath, n: number, source: string) => decodeScanHistory(n, dp.collection.map('scanners').lookup(parseAddress(source))!);

  it('keeps a history in the layout of records.ts: a hit on the sixth port moves its time, a hit on the oldest crosses', () => {
    const s = 1_000_000_000n;
    withDatapath({ scanPorts: 6, scanWindowSeconds: 60 }, (dp, r) => {
      const now = clock.boottimeNs();
      const times = [now - 100n * s, now - 50n * s, now - 40n * s, now - 30n * s, now - 20n * s, now - 10n * s];
      writeHistory(dp, 6, ATTACKER, times.map((t, i) => [i + 1, t]));
      // Port 6 is entry 5, in the second word of ports: found, its time moves to the SYN's.
      const before = clock.boottimeNs();
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, 6))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      const after = readHistory(dp, 6, ATTACKER);
      expect(after.entries.slice(0, 5)).toEqual(times.slice(0, 5).map((t, i) => [i + 1, t]));
      const [port6, stamped] = after.entries[5] as [number, bigint];
      expect(port6).toBe(6);
      expect(stamped >= before - COARSE_LAG_NS && stamped <= clock.boottimeNs()).toBe(true);
      expect(after.head).toEqual({ lastNs: stamped, minNs: now - 100n * s, count: 6, minIdx: 0, seq: 0 });
      // Port 1, the oldest, refreshed: the six now span 50 s.
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40001, 1))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      expect(dp.collection.map('scanners').lookup(parseAddress(ATTACKER))).toBeUndefined();
    });
  });

  it('does not block on a history a race left wrong: a port kept twice, or a stale oldest time', () => {
    const s = 1_000_000_000n;
    withDatapath({ scanPorts: 3, scanWindowSeconds: 60 }, (dp, r) => {
      const now = clock.boottimeNs();
      // Two CPUs stored port 7 twice: 7 and 8 are two ports, not three.
      writeHistory(dp, 3, ATTACKER, [[7, now - 3n * s], [7, now - 2n * s], [8, now - 2n * s]]);
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, 8))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      // min_ns says 2 s ago, but port 1 was hit 100 s ago: the three span 100 s; min_ns is set right.
      writeHistory(dp, 3, '192.0.2.8', [[1, now - 100n * s], [2, now - 2n * s], [3, now - 1n * s]], { minNs: now - 2n * s, minIdx: 1 });
      expect(run(dp, r, synFrame('192.0.2.8', VICTIM, 40000, 3))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(readHistory(dp, 3, '192.0.2.8').head.minNs).toBe(now - 100n * s);
      expect([...dp.blocklist.keys()]).toEqual([]);
    });
  });

  it('counts stealth probes toward the scan rule like SYNs: FIN, NULL, XMAS on three ports block at the third, the next probe is dropped', () => {
    withDatapath({ scanPorts: 3, scanBlockSeconds: 3600 }, (dp, r) => {
      const before = dp.counters();
      expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, 21, TCP_FLAGS.FIN))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, 22, 0))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, 23, TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      expect(dp.blocklist.get(parseAddress(ATTACKER))).toMatchObject({ reason: BlockReason.Portscan, flags: BLOCK_FLAGS.kernelDetected });
      expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, 24, TCP_FLAGS.FIN))).toEqual({ verdict: XDP_DROP, scans: [] });
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 40000, 25))).toEqual({ verdict: XDP_DROP, scans: [] });
      const c = dp.counters();
      expect({ stealth: c.stealth - before.stealth, syn: c.syn, probeDropped: c.probeDropped, synDropped: c.synDropped, scanBlocked: c.scanBlocked, events: c.events }).toEqual({
        stealth: 4n,
        syn: 1n,
        probeDropped: 1n,
        synDropped: 1n,
        scanBlocked: 1n,
        events: 3n,
      });
    });
  });

  it('counts a tiny first fragment toward the scan rule by the port it carries (dropped all the same)', () => {
    withDatapath({ scanPorts: 2 }, (dp, r) => {
      expect(run(dp, r, synFrame(ATTACKER6, VICTIM6, 40000, 22))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.None] });
      const tiny = tcpFrame(ATTACKER6, VICTIM6, 40000, 23, TCP_FLAGS.SYN, { ipv6ExtHeaders: [{ type: 44, fragmentOffset: 0, moreFragments: true }], l4Bytes: 8 });
      expect(run(dp, r, tiny)).toEqual({ verdict: XDP_DROP, scans: [ScanVerdict.Blocked] });
      expect(run(dp, r, tiny)).toEqual({ verdict: XDP_DROP, scans: [] });
      expect(dp.counters()).toMatchObject({ tinyFragments: 2n, probeDropped: 1n, scanBlocked: 1n });
    });
  });

  it('does not count bare RSTs, ACKs or SYN-ACKs toward the scan rule', () => {
    withDatapath({ scanPorts: 2 }, (dp, r) => {
      for (let port = 1; port <= 10; port++) {
        for (const flags of [TCP_FLAGS.RST, TCP_FLAGS.ACK, TCP_FLAGS.SYN | TCP_FLAGS.ACK, TCP_FLAGS.FIN | TCP_FLAGS.ACK]) {
          expect(run(dp, r, tcpFrame(ATTACKER, VICTIM, 40000, port, flags))).toEqual({ verdict: XDP_PASS, scans: [] });
        }
      }
      expect([...dp.blocklist.keys()]).toEqual([]);
    });
  });

  it('neither reports nor blocks IPv4-mapped and IPv4-compatible IPv6 sources, even at N = 1; ::1 is an ordinary source', () => {
    withDatapath({ scanPorts: 1 }, (dp, r) => {
      for (const src of ['::ffff:10.204.0.105', '::10.204.0.105']) {
        expect(run(dp, r, synFrame(src, VICTIM6, 40000, 22))).toEqual({ verdict: XDP_DROP, scans: [] });
        expect(run(dp, r, tcpFrame(src, VICTIM6, 40000, 23, TCP_FLAGS.FIN))).toEqual({ verdict: XDP_DROP, scans: [] });
      }
      expect([...dp.blocklist.keys()]).toEqual([]);
      expect(dp.counters()).toMatchObject({ bogusSources: 4n, events: 0n, syn: 0n, stealth: 0n, scanBlocked: 0n });
      expect(run(dp, r, synFrame('::1', VICTIM6, 40000, 22))).toEqual({ verdict: XDP_PASS, scans: [ScanVerdict.Blocked] });
      expect([...dp.blocklist.keys()].map(formatAddress)).toEqual(['::']);
    });
  });

  it('keys blocks by the prefixes it was loaded with: whole IPv6 addresses at ipv6Prefix 128, an IPv4 /24 at ipv4Prefix 24', () => {
    withDatapath({ ipv6Prefix: 128, ipv4Prefix: 24 }, (dp, r) => {
      expect(dp.prefixes).toEqual({ ipv6: 128, ipv4: 24 });
      expect(formatAddress(dp.sourceKey(ATTACKER6))).toBe(ATTACKER6);
      expect(formatAddress(dp.sourceKey('192.0.2.77'))).toBe('192.0.2.0');
      dp.block(ATTACKER6);
      dp.block(ATTACKER);
      expect(run(dp, r, synFrame(ATTACKER6, VICTIM6, 1, 22)).verdict).toBe(XDP_DROP);
      expect(run(dp, r, synFrame('2001:db8::8', VICTIM6, 1, 22)).verdict).toBe(XDP_PASS);
      expect(run(dp, r, synFrame('192.0.2.200', VICTIM, 1, 22)).verdict).toBe(XDP_DROP);
      expect(run(dp, r, synFrame('192.0.3.7', VICTIM, 1, 22)).verdict).toBe(XDP_PASS);
      expect(dp.unblock('192.0.2.1')).toBe(true);
      expect(run(dp, r, synFrame(ATTACKER, VICTIM, 1, 22)).verdict).toBe(XDP_PASS);
    });
  });

  it('refuses more ports than it tracks', () => {
    expect(() => Datapath.load({ scanPorts: SCAN_MAX_PORTS + 1 })).toThrow(RangeError);
  });
});

// Closed mode (PW_PORTSCAN_COUNT=closed): a BPF_PROG_TEST_RUN frame arrives on
// the loopback device of this process's network namespace, where the program
// asks the kernel for a socket. A listener bound to 127.0.0.2 (or ::1) holds
// its port: nothing else can listen on that port's wildcard address while it
// does, so the same port at 127.0.0.3 (or 2001:db8::1) is closed whatever
// else runs on the machine.
describe('closed mode: a SYN counts only when nothing on the host accepts its port', () => {
  const OPEN4 = '127.0.0.2';
  const CLOSED4 = '127.0.0.3';
  const OPEN6 = '::1';
  const CLOSED6 = '2001:db8::1';
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  const listen = async (host: string): Promise<number> => {
    const srv = createServer((s) => sockets.push(s));
    servers.push(srv);
    await new Promise<void>((res, rej) => srv.once('error', rej).listen({ host, port: 0 }, res));
    return (srv.address() as AddressInfo).port;
  };
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  });
  const events = (dp: Datapath, r: RingBufferReader, frame: Buffer) => {
    const { retval } = dp.program.testRun({ data: frame });
    return { verdict: retval, events: [...r.consume()].map((b) => synEventCodec.read(b, 0)).map((e) => ({ port: e.dport, state: e.portState, scan: e.scan })) };
  };

  it('marks a SYN to a listening port open (IPv4 and IPv6, a specific and a wildcard listener) and one to a port without a listener closed, and counts the open ones', async () => {
    const p4 = await listen(OPEN4);
    const p6 = await listen(OPEN6);
    withDatapath({ countClosed: true }, (dp, r) => {
      expect(events(dp, r, synFrame('192.0.2.7', OPEN4, 40000, p4))).toEqual({ verdict: XDP_PASS, events: [{ port: p4, state: PortState.Open, scan: 0 }] });
      expect(events(dp, r, synFrame('192.0.2.7', CLOSED4, 40000, p4))).toEqual({ verdict: XDP_PASS, events: [{ port: p4, state: PortState.Closed, scan: 0 }] });
      expect(events(dp, r, synFrame('2001:db8::7', OPEN6, 40000, p6))).toEqual({ verdict: XDP_PASS, events: [{ port: p6, state: PortState.Open, scan: 0 }] });
      expect(events(dp, r, synFrame('2001:db8::7', CLOSED6, 40000, p6))).toEqual({ verdict: XDP_PASS, events: [{ port: p6, state: PortState.Closed, scan: 0 }] });
      expect(dp.counters()).toMatchObject({ syn: 4n, events: 4n, openPortSyn: 2n });
    });
  });

  it('looks nothing up in all mode (the default): every event says unknown', async () => {
    const p4 = await listen(OPEN4);
    withDatapath({}, (dp, r) => {
      expect(events(dp, r, synFrame('192.0.2.7', OPEN4, 40000, p4)).events).toEqual([{ port: p4, state: PortState.Unknown, scan: 0 }]);
      expect(dp.counters().openPortSyn).toBe(0n);
    });
  });

  it('counts only closed ports toward the scan rule: SYNs to three open ports never block, the third closed port does', async () => {
    const open = [await listen(OPEN4), await listen(OPEN4), await listen(OPEN4)];
    withDatapath({ countClosed: true, scanPorts: 3 }, (dp, r) => {
      for (const port of open) {
        for (const sport of [40000, 40001]) {
          expect(events(dp, r, synFrame('192.0.2.8', OPEN4, sport, port))).toEqual({ verdict: XDP_PASS, events: [{ port, state: PortState.Open, scan: 0 }] });
        }
      }
      // The same ports at an address nothing listens on are closed: the third crosses.
      expect(events(dp, r, synFrame('192.0.2.8', CLOSED4, 40002, open[0]!)).events).toEqual([{ port: open[0], state: PortState.Closed, scan: ScanVerdict.None }]);
      expect(events(dp, r, synFrame('192.0.2.8', CLOSED4, 40003, open[1]!)).events).toEqual([{ port: open[1], state: PortState.Closed, scan: ScanVerdict.None }]);
      expect(events(dp, r, synFrame('192.0.2.8', CLOSED4, 40004, open[2]!)).events).toEqual([{ port: open[2], state: PortState.Closed, scan: ScanVerdict.Blocked }]);
      // Blocked: even an open port's SYN is dropped now.
      expect(events(dp, r, synFrame('192.0.2.8', OPEN4, 40005, open[0]!))).toEqual({ verdict: XDP_DROP, events: [] });
      expect(dp.counters()).toMatchObject({ openPortSyn: 6n, scanBlocked: 1n, synDropped: 1n });
    });
  });

  it('counts stealth and fragment probes to an open port all the same (never looked up)', async () => {
    const p = await listen(OPEN4);
    withDatapath({ countClosed: true, scanPorts: 2 }, (dp, r) => {
      expect(events(dp, r, tcpFrame('192.0.2.9', OPEN4, 40000, p, TCP_FLAGS.FIN)).events).toEqual([{ port: p, state: PortState.Unknown, scan: 0 }]);
      expect(events(dp, r, tcpFrame('192.0.2.9', OPEN4, 40000, p + 1, 0)).events).toEqual([{ port: p + 1, state: PortState.Unknown, scan: ScanVerdict.Blocked }]);
      expect(dp.counters().openPortSyn).toBe(0n);
    });
  });

  it('takes an established connection of the same 4-tuple as open; a new connection to a port whose listener is gone is closed, whatever connections live on', async () => {
    const srv = createServer((s) => sockets.push(s));
    await new Promise<void>((res) => srv.listen({ host: OPEN4, port: 0 }, res));
    const port = (srv.address() as AddressInfo).port;
    const client = createConnection({ host: OPEN4, port, localAddress: '127.0.0.1' });
    sockets.push(client);
    await new Promise<void>((res) => client.once('connect', res));
    const local = client.localPort!;
    // The listener goes (close() waits for the accepted connection only to call back); the connection stays.
    srv.close();
    await new Promise((res) => setImmediate(res));
    expect(srv.listening).toBe(false);
    withDatapath({ countClosed: true }, (dp, r) => {
      expect(events(dp, r, synFrame('127.0.0.1', OPEN4, local, port)).events).toEqual([{ port, state: PortState.Open, scan: 0 }]);
      expect(events(dp, r, synFrame('127.0.0.1', OPEN4, local === 65535 ? 65534 : local + 1, port)).events).toEqual([{ port, state: PortState.Closed, scan: 0 }]);
    });
  });

  it('takes the ports declared open (PW_OPEN_PORTS) as open without a socket, and only those', async () => {
    withDatapath(
      {
        countClosed: true,
        scanPorts: 2,
        openPorts: [
          [8080, 8080],
          [30000, 30002],
        ],
      },
      (dp, r) => {
        for (const port of [8080, 30000, 30001, 30002]) {
          expect(events(dp, r, synFrame('192.0.2.10', CLOSED4, 40000, port)).events).toEqual([{ port, state: PortState.Open, scan: 0 }]);
          expect(events(dp, r, synFrame('2001:db8::10', CLOSED6, 40000, port)).events).toEqual([{ port, state: PortState.Open, scan: 0 }]);
        }
        expect(events(dp, r, synFrame('192.0.2.10', CLOSED4, 40000, 8081)).events).toEqual([{ port: 8081, state: PortState.Closed, scan: 0 }]);
        expect(events(dp, r, synFrame('192.0.2.10', CLOSED4, 40000, 30003)).events).toEqual([{ port: 30003, state: PortState.Closed, scan: ScanVerdict.Blocked }]);
        expect(dp.portCount.get(0)!.closed).toBe(1);
        expect(openPortRanges(dp.portCount.get(0)!.open)).toEqual([
          [8080, 8080],
          [30000, 30002],
        ]);
      },
    );
  });

  it('takes every N from 1 to 64 in closed mode too (the verifier accepts each)', () => {
    for (const n of [1, 2, 16, SCAN_MAX_PORTS]) {
      withDatapath({ countClosed: true, scanPorts: n }, (dp, r) => {
        let blockedAt = 0;
        for (let port = 1; port <= n; port++) if (events(dp, r, synFrame('192.0.2.11', CLOSED4, 40000, port)).events[0]!.scan === ScanVerdict.Blocked) blockedAt = port;
        expect(blockedAt).toBe(n);
      });
    }
  });

  it('refuses a declared open port out of range', () => {
    expect(() => Datapath.load({ countClosed: true, openPorts: [[0, 10]] })).toThrow(RangeError);
    expect(() => Datapath.load({ countClosed: true, openPorts: [[20, 10]] })).toThrow(RangeError);
  });
});
