import { parseAddress, parsePrefix } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { SourceKeys, addressAt } from '../src/sourcekey.js';

/** Whether the allowlist covers the address given as text. */
const covers = (a: Allowlist, text: string): boolean => a.has(parseAddress(text));

describe('Allowlist: configured IPv4 prefixes', () => {
  it('covers exactly the 256 addresses of a /24', () => {
    const a = new Allowlist(['192.0.2.0/24']);
    expect(covers(a, '192.0.1.255')).toBe(false);
    expect(covers(a, '192.0.2.0')).toBe(true);
    expect(covers(a, '192.0.2.128')).toBe(true);
    expect(covers(a, '192.0.2.255')).toBe(true);
    expect(covers(a, '192.0.3.0')).toBe(false);
  });

  it('covers exactly the lower and the upper half with a /25', () => {
    const low = new Allowlist(['192.0.2.0/25']);
    expect(covers(low, '192.0.2.0')).toBe(true);
    expect(covers(low, '192.0.2.127')).toBe(true);
    expect(covers(low, '192.0.2.128')).toBe(false);
    expect(covers(low, '192.0.1.255')).toBe(false);

    const high = new Allowlist(['192.0.2.128/25']);
    expect(covers(high, '192.0.2.127')).toBe(false);
    expect(covers(high, '192.0.2.128')).toBe(true);
    expect(covers(high, '192.0.2.255')).toBe(true);
    expect(covers(high, '192.0.3.0')).toBe(false);
  });

  it('covers exactly two addresses with a /31', () => {
    const a = new Allowlist(['198.51.100.6/31']);
    expect(covers(a, '198.51.100.5')).toBe(false);
    expect(covers(a, '198.51.100.6')).toBe(true);
    expect(covers(a, '198.51.100.7')).toBe(true);
    expect(covers(a, '198.51.100.8')).toBe(false);
  });

  it('masks host bits written in the prefix', () => {
    const a = new Allowlist(['198.51.100.77/24']);
    expect(covers(a, '198.51.100.0')).toBe(true);
    expect(covers(a, '198.51.100.255')).toBe(true);
    expect(covers(a, '198.51.101.77')).toBe(false);
  });

  it('covers only that address with a bare address or a /32', () => {
    for (const entry of ['203.0.113.9', '203.0.113.9/32']) {
      const a = new Allowlist([entry]);
      expect(covers(a, '203.0.113.8')).toBe(false);
      expect(covers(a, '203.0.113.9')).toBe(true);
      expect(covers(a, '203.0.113.10')).toBe(false);
    }
  });

  it('covers every IPv4 address with 0.0.0.0/0, and no IPv6 address', () => {
    const a = new Allowlist(['0.0.0.0/0']);
    expect(covers(a, '0.0.0.0')).toBe(true);
    expect(covers(a, '10.1.2.3')).toBe(true);
    expect(covers(a, '255.255.255.255')).toBe(true);
    expect(covers(a, '::')).toBe(false);
    expect(covers(a, '::1')).toBe(false);
    expect(covers(a, '2001:db8::1')).toBe(false);
    expect(covers(a, '::fffe:a01:203')).toBe(false);
  });
});

describe('Allowlist: configured IPv6 prefixes', () => {
  it('covers exactly the addresses of a /48', () => {
    const a = new Allowlist(['2001:db8:abcd::/48']);
    expect(covers(a, '2001:db8:abcc:ffff:ffff:ffff:ffff:ffff')).toBe(false);
    expect(covers(a, '2001:db8:abcd::')).toBe(true);
    expect(covers(a, '2001:db8:abcd:1::1')).toBe(true);
    expect(covers(a, '2001:db8:abcd:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(covers(a, '2001:db8:abce::')).toBe(false);
  });

  it('covers exactly two addresses with a /127', () => {
    const a = new Allowlist(['2001:db8::2/127']);
    expect(covers(a, '2001:db8::1')).toBe(false);
    expect(covers(a, '2001:db8::2')).toBe(true);
    expect(covers(a, '2001:db8::3')).toBe(true);
    expect(covers(a, '2001:db8::4')).toBe(false);
  });

  it('covers only that address with a /128 or a bare address', () => {
    for (const entry of ['2001:db8::1', '2001:db8::1/128']) {
      const a = new Allowlist([entry]);
      expect(covers(a, '2001:db8::')).toBe(false);
      expect(covers(a, '2001:db8::1')).toBe(true);
      expect(covers(a, '2001:db8::2')).toBe(false);
      expect(covers(a, '2001:db8::1:1')).toBe(false);
    }
  });

  it('covers every address, IPv4 included, with ::/0', () => {
    const a = new Allowlist(['::/0']);
    expect(covers(a, '::')).toBe(true);
    expect(covers(a, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(covers(a, '192.0.2.1')).toBe(true);
  });
});

describe('Allowlist: IPv4 and IPv4-mapped IPv6 are the same address', () => {
  it('covers the IPv4-mapped form of an address in an IPv4 prefix', () => {
    const a = new Allowlist(['10.0.0.0/8']);
    expect(covers(a, '::ffff:10.20.30.40')).toBe(true);
    expect(covers(a, '::ffff:11.0.0.0')).toBe(false);
  });

  it('covers an IPv4 address in an IPv4-mapped IPv6 prefix', () => {
    const a = new Allowlist(['::ffff:10.0.0.0/104']);
    expect(covers(a, '10.0.0.0')).toBe(true);
    expect(covers(a, '10.255.255.255')).toBe(true);
    expect(covers(a, '11.0.0.0')).toBe(false);
  });

  it('does not cover the IPv4-compatible or NAT64 forms of an IPv4 prefix', () => {
    const a = new Allowlist(['192.0.2.0/24']);
    expect(covers(a, '::192.0.2.1')).toBe(false);
    expect(covers(a, '64:ff9b::192.0.2.1')).toBe(false);
  });

  it('covers nothing when nothing is configured', () => {
    const a = new Allowlist([]);
    expect(covers(a, '127.0.0.1')).toBe(false);
    expect(covers(a, '::1')).toBe(false);
    expect(a.configured).toEqual([]);
    expect(a.entries()).toEqual([]);
  });

  it('refuses a malformed configured entry', () => {
    expect(() => new Allowlist(['192.0.2.0/33'])).toThrow("invalid address '192.0.2.0/33'");
    expect(() => new Allowlist(['not-an-ip'])).toThrow("invalid address 'not-an-ip'");
  });
});

describe("Allowlist: probes' own addresses", () => {
  const own = (a: Allowlist, probeId: string, text: string) => a.isOwnAddress(probeId, parseAddress(text));

  it("shields an own address on its probe only, never fleet-wide", () => {
    const a = new Allowlist([]);
    expect(own(a, 'host-a/eth0', '192.0.2.10')).toBe(false);
    a.setOwn('host-a/eth0', ['192.0.2.10', '2001:db8::10']);
    expect(own(a, 'host-a/eth0', '192.0.2.10')).toBe(true);
    expect(own(a, 'host-a/eth0', '2001:db8::10')).toBe(true);
    expect(own(a, 'host-a/eth0', '192.0.2.11')).toBe(false);
    expect(own(a, 'host-a/eth0', '2001:db8::11')).toBe(false);
    // Another probe, and the fleet-wide check, do not see it.
    expect(own(a, 'host-b/eth0', '192.0.2.10')).toBe(false);
    expect(covers(a, '192.0.2.10')).toBe(false);
    expect(covers(a, '2001:db8::10')).toBe(false);
  });

  it('returns from setOwn only the addresses the probe did not have', () => {
    const a = new Allowlist([]);
    expect(a.setOwn('p1', ['192.0.2.1', '192.0.2.2'])).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(a.setOwn('p1', ['192.0.2.2', '192.0.2.3'])).toEqual(['192.0.2.3']);
    expect(a.setOwn('p1', ['192.0.2.2', '192.0.2.3'])).toEqual([]);
  });

  it('replaces the previous set: an address a probe no longer has is no longer its own', () => {
    const a = new Allowlist([]);
    a.setOwn('p1', ['192.0.2.1', '192.0.2.2']);
    a.setOwn('p1', ['192.0.2.2']);
    expect(own(a, 'p1', '192.0.2.1')).toBe(false);
    expect(own(a, 'p1', '192.0.2.2')).toBe(true);
    expect(a.entries()).toEqual(['192.0.2.2']);
  });

  it('keeps the own addresses of each probe separately', () => {
    const a = new Allowlist([]);
    expect(a.setOwn('p1', ['192.0.2.1'])).toEqual(['192.0.2.1']);
    expect(a.setOwn('p2', ['192.0.2.1', '198.51.100.1'])).toEqual(['192.0.2.1', '198.51.100.1']);
    expect(own(a, 'p1', '198.51.100.1')).toBe(false);
    a.dropOwn('p1');
    expect(own(a, 'p1', '192.0.2.1')).toBe(false);
    expect(own(a, 'p2', '192.0.2.1')).toBe(true);
    expect(own(a, 'p2', '198.51.100.1')).toBe(true);
  });

  it('forgets a probe’s addresses after dropOwn', () => {
    const a = new Allowlist(['10.0.0.0/8']);
    a.setOwn('p1', ['192.0.2.1', '2001:db8::1']);
    a.dropOwn('p1');
    expect(own(a, 'p1', '192.0.2.1')).toBe(false);
    expect(own(a, 'p1', '2001:db8::1')).toBe(false);
    expect(covers(a, '10.0.0.1')).toBe(true);
    expect(a.entries()).toEqual(['10.0.0.0/8']);
    // After the drop, the same addresses count as new again.
    expect(a.setOwn('p1', ['192.0.2.1'])).toEqual(['192.0.2.1']);
  });

  it('ignores dropOwn of an unknown probe', () => {
    const a = new Allowlist(['10.0.0.0/8']);
    a.dropOwn('nobody');
    expect(a.entries()).toEqual(['10.0.0.0/8']);
  });

  it('with sources keyed by /64 and /24, shields the own address itself, not the rest of its prefix', () => {
    const keys = new SourceKeys({ ipv6: 64, ipv4: 24 });
    const a = new Allowlist([], keys);
    a.setOwn('p1', ['2001:db8:1:2::10', '192.0.2.10']);
    expect(own(a, 'p1', '2001:db8:1:2::10')).toBe(true);
    expect(own(a, 'p1', '192.0.2.10')).toBe(true);
    // Same /64, same /24: tracked like any source.
    expect(own(a, 'p1', '2001:db8:1:2::11')).toBe(false);
    expect(own(a, 'p1', '192.0.2.11')).toBe(false);
    // The per-event form: the source's key and the address in a record.
    const buf = Buffer.alloc(40, 0x5a);
    parseAddress('2001:db8:1:2::10').copy(buf, 8);
    expect(a.isOwn('p1', keys.at(buf, 8), buf, 8)).toBe(true);
    parseAddress('2001:db8:1:2::11').copy(buf, 8);
    expect(a.isOwn('p1', keys.at(buf, 8), buf, 8)).toBe(false);
  });

  it('lists in entries() the configured prefixes as written, then own addresses, each once', () => {
    const a = new Allowlist(['10.0.0.0/8', '2001:db8::/32']);
    a.setOwn('p1', ['192.0.2.1', '10.0.0.1']);
    a.setOwn('p2', ['192.0.2.1', '198.51.100.1']);
    expect(a.configured).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    expect(a.entries()).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1', '10.0.0.1', '198.51.100.1']);
  });
});

describe('Allowlist: whether a source prefix is covered whole (coversWhole)', () => {
  it('is true only for an entry as long as the prefix or shorter that holds it', () => {
    const a = new Allowlist(['2001:db8:1::/48', '2001:db8:2:3::7', '192.0.2.0/24']);
    expect(a.coversWhole(parsePrefix('2001:db8:1:2::/64'))).toBe(true);
    // An allowlisted address inside the /64: blocking the /64 still means something.
    expect(a.coversWhole(parsePrefix('2001:db8:2:3::/64'))).toBe(false);
    expect(a.coversWhole(parsePrefix('2001:db8:2:3::7'))).toBe(true);
    expect(a.coversWhole(parsePrefix('192.0.2.7'))).toBe(true);
    expect(a.coversWhole(parsePrefix('192.0.0.0/16'))).toBe(false);
    a.addOperator('2001:db8:2:3::/64', 0, '');
    expect(a.coversWhole(parsePrefix('2001:db8:2:3::/64'))).toBe(true);
  });
});

describe('Allowlist: the per-event check (hasSource)', () => {
  const check = (a: Allowlist, text: string, at = 24): boolean => {
    // The address inside a record, as the service passes it.
    const buf = Buffer.alloc(64, 0x5a);
    parseAddress(text).copy(buf, at);
    return a.hasSource(addressAt(buf, at), buf, at);
  };

  it('agrees with has() on IPv4 and IPv6 prefixes and operator entries, and leaves own addresses to isOwn', () => {
    const a = new Allowlist(['192.0.2.0/24', '2001:db8::/32', '10.0.0.0/8']);
    a.setOwn('p1', ['198.51.100.7', 'fe80::1']);
    a.addOperator('203.0.113.128/25', 0, '');
    const texts = ['192.0.2.1', '192.0.3.1', '10.255.255.255', '11.0.0.0', '198.51.100.7', '198.51.100.8', '203.0.113.128', '203.0.113.127',
      '2001:db8::1', '2001:db9::1', 'fe80::1', 'fe80::2', '::ffff:192.0.2.9', '::1'];
    for (const t of texts) expect([t, check(a, t)]).toEqual([t, covers(a, t)]);
    expect(texts.filter((t) => check(a, t))).toEqual(['192.0.2.1', '10.255.255.255', '203.0.113.128', '2001:db8::1', '::ffff:192.0.2.9']);
  });

  it('covers every IPv4 source with 0.0.0.0/0, and every source with ::/0', () => {
    const v4 = new Allowlist(['0.0.0.0/0']);
    expect(check(v4, '255.255.255.255')).toBe(true);
    expect(check(v4, '0.0.0.0')).toBe(true);
    expect(check(v4, '2001:db8::1')).toBe(false);
    const all = new Allowlist(['::/0']);
    expect(check(all, '192.0.2.1')).toBe(true);
    expect(check(all, '2001:db8::1')).toBe(true);
  });

  it('sees operator changes at once', () => {
    const a = new Allowlist([]);
    expect(check(a, '192.0.2.1')).toBe(false);
    a.addOperator('192.0.2.0/24', 0, '');
    expect(check(a, '192.0.2.1')).toBe(true);
    a.removeOperator('192.0.2.0/24');
    expect(check(a, '192.0.2.1')).toBe(false);
  });
});
