import { AddressError, WHOLE_ADDRESSES, formatAddress, formatPrefix, formatSource, parseAddress, parsePrefix, sourcePrefix } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';

const hex = (b: Buffer) => b.toString('hex');

describe('addresses in the datapath form (16 bytes, IPv4-mapped)', () => {
  it('maps IPv4 to ::ffff:a.b.c.d', () => {
    expect(hex(parseAddress('192.0.2.7'))).toBe('00000000000000000000ffffc0000207');
  });

  it.each([
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['2001:db8::7', '20010db8000000000000000000000007'],
    ['fe80::1:2', 'fe800000000000000000000000010002'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['::ffff:192.0.2.7', '00000000000000000000ffffc0000207'],
    ['64:ff9b::192.0.2.33', '0064ff9b0000000000000000c0000221'],
  ])('parses IPv6 %s', (text, bytes) => {
    expect(hex(parseAddress(text))).toBe(bytes);
  });

  it.each(['', '1.2.3', '256.1.1.1', '1.2.3.4.5', 'fe80::1%eth0', '2001:db8::/32', 'gggg::', 'localhost', ' 1.2.3.4'])(
    'refuses %j with an AddressError naming it',
    (text) => {
      expect(() => parseAddress(text)).toThrow(AddressError);
      expect(() => parseAddress(text)).toThrow(`invalid address '${text}'`);
    },
  );

  it.each([
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0007', '2001:db8::7'],
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8'],
  ])('formats %s as %s (RFC 5952)', (input, text) => {
    expect(formatAddress(parseAddress(input))).toBe(text);
  });
});

describe('prefixes', () => {
  it('stores an IPv4 prefix as 96 + its length and clears host bits', () => {
    const p = parsePrefix('192.0.2.77/24');
    expect(p.prefixLen).toBe(120);
    expect(formatAddress(p.addr)).toBe('192.0.2.0');
    expect(formatPrefix(p)).toBe('192.0.2.0/24');
  });

  it('takes a bare address as a full-length prefix', () => {
    expect(parsePrefix('192.0.2.7').prefixLen).toBe(128);
    expect(parsePrefix('2001:db8::7').prefixLen).toBe(128);
    expect(formatPrefix(parsePrefix('2001:db8::7'))).toBe('2001:db8::7/128');
  });

  it('clears IPv6 host bits inside a byte', () => {
    expect(formatPrefix(parsePrefix('2001:db8:ffff::/35'))).toBe('2001:db8:e000::/35');
    expect(formatPrefix(parsePrefix('::/0'))).toBe('::/0');
  });

  it.each(['192.0.2.0/33', '2001:db8::/129', '10.0.0.0/-1', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/x'])(
    'refuses %s',
    (text) => {
      expect(() => parsePrefix(text)).toThrow(AddressError);
    },
  );
});

describe('sourcePrefix and formatSource', () => {
  it('keys an IPv6 source by its /64 and an IPv4 one by its whole address with the defaults', () => {
    const v6 = sourcePrefix(parseAddress('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), { ipv6: 64, ipv4: 32 });
    expect(formatSource(v6)).toBe('2001:db8:1:2::/64');
    expect(v6.addr.toString('hex')).toBe('20010db8000100020000000000000000');
    expect(formatSource(sourcePrefix(parseAddress('192.0.2.7'), { ipv6: 64, ipv4: 32 }))).toBe('192.0.2.7');
  });

  it('takes lengths inside a byte and whole addresses', () => {
    expect(formatSource(sourcePrefix(parseAddress('192.0.2.255'), { ipv6: 64, ipv4: 27 }))).toBe('192.0.2.224/27');
    expect(formatSource(sourcePrefix(parseAddress('2001:db8::ffff'), { ipv6: 121, ipv4: 32 }))).toBe('2001:db8::ff80/121');
    expect(formatSource(sourcePrefix(parseAddress('2001:db8::1'), WHOLE_ADDRESSES))).toBe('2001:db8::1');
  });
});
