// BlockIp and UnblockIp by prefix (Blocks) over a stand-in for the kernel
// maps: the blocklist as a map from 16-byte keys to entries, the allowlist
// as an LPM trie answers (the longest entry no longer than the key's length
// that holds it). The XDP program looks a source up by its address masked to
// the configured length, so every block is written under that key.
import { BlockReason, type BlockEntry, type Datapath, blockCodec, lpmKeyCodec } from '@packetwatch/bpf';
import { GrpcStatus, type Prefix, type SourcePrefixes, formatAddress, parseAddress, parsePrefix } from '@packetwatch/common';
import { decode, encode } from 'libbpf-ts';
import { describe, expect, it } from 'vitest';
import { Blocks } from '../src/blocks.js';

/** The kernel maps as Blocks uses them, with what is in them. */
function kernel(allow: string[] = []) {
  const entries = new Map<string, BlockEntry>();
  const allowed: Prefix[] = allow.map(parsePrefix);
  const covers = (p: Prefix, addr: Buffer) => {
    for (let bit = 0; bit < p.prefixLen; bit++) {
      const m = 0x80 >> (bit & 7);
      if ((p.addr[bit >> 3]! & m) !== (addr[bit >> 3]! & m)) return false;
    }
    return true;
  };
  const dp = {
    blocklist: {
      get: (k: Buffer) => entries.get(k.toString('hex')),
      set: (k: Buffer, v: BlockEntry) => void entries.set(k.toString('hex'), { ...v }),
      delete: (k: Buffer) => entries.delete(k.toString('hex')),
      get size() {
        return entries.size;
      },
      map: {
        maxEntries: 65_536,
        lookupAll: () => [...entries].map(([k, v]) => [Buffer.from(k, 'hex'), encode(blockCodec, v)] as [Buffer, Buffer]),
      },
    },
    allowlist: {
      map: {
        lookup: (raw: Buffer) => {
          const key = decode(lpmKeyCodec, raw);
          return allowed.some((p) => p.prefixLen <= key.prefixLen && covers(p, key.addr)) ? Buffer.from([1]) : undefined;
        },
      },
    },
  } as unknown as Datapath;
  /** The blocklist's keys as addresses, sorted. */
  const keys = () => [...entries.keys()].map((k) => formatAddress(Buffer.from(k, 'hex'))).sort();
  const entry = (addr: string) => entries.get(parseAddress(addr).toString('hex'));
  return { dp, entries, keys, entry };
}

const BY_64: SourcePrefixes = { ipv6: 64, ipv4: 32 };
const MANUAL = BlockReason.Manual;

describe('BlockIp by prefix: the key is the source at the configured length', () => {
  it('blocks the /64 of an address, says it widened it, and lists the key as the /64', () => {
    const k = kernel();
    const blocks = new Blocks(k.dp, BY_64);
    const r = blocks.block('2001:db8:1:2::7', 0, MANUAL);
    expect(r).toMatchObject({ widened: true, alreadyBlocked: false, entry: { ip: '2001:db8:1:2::/64', reason: MANUAL } });
    expect(k.keys()).toEqual(['2001:db8:1:2::']);
    expect(blocks.page(undefined, 10).blocks.map((b) => b.ip)).toEqual(['2001:db8:1:2::/64']);
    // The /64 itself: the same key, not widened, blocked already.
    expect(blocks.block('2001:db8:1:2::/64', 0, MANUAL)).toMatchObject({ widened: false, alreadyBlocked: true, entry: { ip: '2001:db8:1:2::/64' } });
    // A longer prefix: widened to the same key.
    expect(blocks.block('2001:db8:1:2:8000::/65', 0, MANUAL)).toMatchObject({ widened: true, alreadyBlocked: true });
    expect(k.keys()).toEqual(['2001:db8:1:2::']);
  });

  it('refuses a prefix shorter than the configured length, naming it: no lookup at /64 matches a /48', () => {
    const blocks = new Blocks(kernel().dp, { ipv6: 64, ipv4: 24 });
    expect(() => blocks.block('2001:db8:1::/48', 0, MANUAL)).toThrow(
      expect.objectContaining({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: '2001:db8:1::/48 is shorter than the /64 IPv6 sources are blocked by (PW_IPV6_PREFIX): give a /64 or longer, or an address',
      }),
    );
    expect(() => blocks.block('198.51.0.0/16', 0, MANUAL)).toThrow(
      expect.objectContaining({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('shorter than the /24 IPv4 sources are blocked by (PW_IPV4_PREFIX') }),
    );
    expect(() => blocks.unblock('2001:db8:1::/48')).toThrow(expect.objectContaining({ code: GrpcStatus.INVALID_ARGUMENT }));
    expect(() => blocks.block('2001:db8::/200', 0, MANUAL)).toThrow(expect.objectContaining({ code: GrpcStatus.INVALID_ARGUMENT }));
    expect(() => blocks.block('not-an-address', 0, MANUAL)).toThrow(expect.objectContaining({ code: GrpcStatus.INVALID_ARGUMENT }));
  });

  it('keys IPv4 by its prefix: 198.51.100.7 under /24 is 198.51.100.0/24; under /32 it is the address', () => {
    const k = kernel();
    expect(new Blocks(k.dp, { ipv6: 64, ipv4: 24 }).block('198.51.100.7', 0, MANUAL).entry.ip).toBe('198.51.100.0/24');
    expect(k.keys()).toEqual(['198.51.100.0']);
    const w = kernel();
    expect(new Blocks(w.dp, BY_64).block('198.51.100.7', 0, MANUAL)).toMatchObject({ widened: false, entry: { ip: '198.51.100.7' } });
  });

  it("refuses an allowlisted address and a prefix the allowlist covers whole; blocks a prefix that only holds an allowlisted (own) address", () => {
    const k = kernel(['2001:db8:1:2::1/128', '2001:db8:9::/48']);
    const blocks = new Blocks(k.dp, BY_64);
    expect(() => blocks.block('2001:db8:1:2::1', 0, MANUAL)).toThrow(expect.objectContaining({ code: GrpcStatus.FAILED_PRECONDITION }));
    expect(() => blocks.block('2001:db8:9:1::/64', 0, MANUAL)).toThrow(expect.objectContaining({ code: GrpcStatus.FAILED_PRECONDITION }));
    expect(() => blocks.block('2001:db8:9:1::5', 0, MANUAL)).toThrow(expect.objectContaining({ code: GrpcStatus.FAILED_PRECONDITION }));
    // The /64 of the own address: the kernel passes the address itself (its allowlist goes by address), and drops the rest.
    expect(blocks.block('2001:db8:1:2::/64', 0, MANUAL).entry.ip).toBe('2001:db8:1:2::/64');
    expect(blocks.block('2001:db8:1:2::9', 0, MANUAL)).toMatchObject({ alreadyBlocked: true });
    expect(k.keys()).toEqual(['2001:db8:1:2::']);
  });

  it('unblocks the /64 by any address in it, or by the prefix, and names it', () => {
    const k = kernel();
    const blocks = new Blocks(k.dp, BY_64);
    blocks.block('2001:db8:1:2::7', 0, MANUAL);
    expect(blocks.unblock('2001:db8:1:2::ffff')).toEqual({ removed: true, text: '2001:db8:1:2::/64' });
    expect(blocks.unblock('2001:db8:1:2::/64')).toEqual({ removed: false, text: '2001:db8:1:2::/64' });
    expect(k.keys()).toEqual([]);
  });
});

describe('the blocklist when the prefix lengths change (rekey)', () => {
  const entry = (createdNs: bigint, expiresNs: bigint, reason = BlockReason.Portscan): BlockEntry => ({ createdNs, expiresNs, reason, flags: 0 });

  it('widens address keys to their /64 when sources become /64s, merging those of one /64: earliest creation, permanent or later expiry wins', () => {
    const k = kernel();
    k.dp.blocklist.set(parseAddress('2001:db8:1:2::7'), entry(100n, 5000n));
    k.dp.blocklist.set(parseAddress('2001:db8:1:2::8'), entry(50n, 9000n, BlockReason.Manual));
    k.dp.blocklist.set(parseAddress('2001:db8:1:3::1'), entry(10n, 0n));
    k.dp.blocklist.set(parseAddress('2001:db8:1:3::2'), entry(20n, 7000n));
    k.dp.blocklist.set(parseAddress('192.0.2.7'), entry(30n, 0n));
    const blocks = new Blocks(k.dp, { ipv6: 128, ipv4: 32 });
    expect(blocks.rekey({ ipv6: 128, ipv4: 32 }, BY_64)).toEqual({ widened: 2, merged: 2, removed: 0 });
    expect(k.keys()).toEqual(['192.0.2.7', '2001:db8:1:2::', '2001:db8:1:3::']);
    expect(k.entry('2001:db8:1:2::')).toMatchObject({ createdNs: 50n, expiresNs: 9000n });
    expect(k.entry('2001:db8:1:3::')).toMatchObject({ createdNs: 10n, expiresNs: 0n });
    expect(blocks.prefixes).toEqual(BY_64);
    expect(blocks.page(undefined, 10).blocks.map((b) => b.ip)).toEqual(['192.0.2.7', '2001:db8:1:2::/64', '2001:db8:1:3::/64']);
  });

  it('removes /64 keys when sources become whole addresses (no lookup could match them), and keeps the other family', () => {
    const k = kernel();
    k.dp.blocklist.set(parseAddress('2001:db8:1:2::'), entry(1n, 0n));
    k.dp.blocklist.set(parseAddress('192.0.2.7'), entry(1n, 0n));
    const blocks = new Blocks(k.dp, BY_64);
    expect(blocks.rekey(BY_64, { ipv6: 128, ipv4: 32 })).toEqual({ widened: 0, merged: 0, removed: 1 });
    expect(k.keys()).toEqual(['192.0.2.7']);
  });

  it('at start (lengths written under unknown), moves only keys with bits beyond the length: pinned by a probe that keyed addresses', () => {
    const k = kernel();
    k.dp.blocklist.set(parseAddress('2001:db8:1:2::7'), entry(1n, 0n));
    k.dp.blocklist.set(parseAddress('2001:db8:1:3::'), entry(1n, 0n));
    const blocks = new Blocks(k.dp, BY_64);
    expect(blocks.rekey(undefined, BY_64)).toEqual({ widened: 1, merged: 0, removed: 0 });
    expect(k.keys()).toEqual(['2001:db8:1:2::', '2001:db8:1:3::']);
    expect(blocks.rekey(undefined, BY_64)).toEqual({ widened: 0, merged: 0, removed: 0 });
  });
});
