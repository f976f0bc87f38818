import { formatAddress, parseAddress, parsePrefix } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { SourceKeys, V6, addressAt, addressKey, sourceKey } from '../src/sourcekey.js';

describe('sourceKey', () => {
  it('is the 32 bits of an IPv4(-mapped) address as a signed 32-bit integer', () => {
    expect(addressKey(parseAddress('0.0.0.0'))).toBe(0);
    expect(addressKey(parseAddress('127.255.255.255'))).toBe(0x7fffffff);
    expect(addressKey(parseAddress('128.0.0.0'))).toBe(-0x80000000);
    expect(addressKey(parseAddress('192.0.2.7'))).toBe(0xc0000207 | 0);
    expect(addressKey(parseAddress('255.255.255.255'))).toBe(-1);
    expect(addressKey(parseAddress('::ffff:192.0.2.7'))).toBe(0xc0000207 | 0);
  });

  it('is the 16 bytes as a latin1 string for any other IPv6 address', () => {
    for (const text of ['2001:db8::7', '::1', '::', '::fffe:c000:207', 'fe80::1', '64:ff9b::c000:207']) {
      const addr = parseAddress(text);
      const key = addressKey(addr);
      expect(typeof key).toBe('string');
      expect(Buffer.from(key as string, 'latin1').equals(addr)).toBe(true);
    }
  });

  it('reads the address at an offset inside a larger buffer (an event record)', () => {
    const buf = Buffer.alloc(56 * 3, 0xaa);
    parseAddress('198.51.100.9').copy(buf, 56 + 8);
    parseAddress('2001:db8::9').copy(buf, 112 + 8);
    expect(sourceKey(buf, 56 + 8)).toBe(addressKey(parseAddress('198.51.100.9')));
    expect(sourceKey(buf, 112 + 8)).toBe(addressKey(parseAddress('2001:db8::9')));
    expect(typeof sourceKey(buf, 8)).toBe('string');
  });

  it('gives distinct addresses distinct keys and equal addresses equal keys', () => {
    const texts = ['10.0.0.1', '10.0.0.2', '::ffff:10.0.0.1', '::a00:1', '2001:db8::1', '2001:db8::2'];
    const keys = texts.map((t) => addressKey(parseAddress(t)));
    // ::ffff:10.0.0.1 is 10.0.0.1; ::a00:1 (IPv4-compatible, not mapped) is another address.
    expect(keys[2]).toBe(keys[0]);
    const distinct = new Set(texts.map((t) => formatAddress(parseAddress(t))));
    expect(new Set(keys).size).toBe(distinct.size);
  });
});

describe('SourceKeys: the key of the source an address counts as', () => {
  const at = (keys: SourceKeys, text: string) => {
    // Inside a record, as the pipeline reads it; the record is never changed.
    const buf = Buffer.alloc(56, 0xaa);
    parseAddress(text).copy(buf, 8);
    const before = Buffer.from(buf);
    const key = keys.at(buf, 8);
    expect(buf.equals(before)).toBe(true);
    return key;
  };

  it('gives every address of one IPv6 /64 one key, the masked 16 bytes, and other /64s others', () => {
    const keys = new SourceKeys({ ipv6: 64, ipv4: 32 });
    const k = at(keys, '2001:db8:1:2::7');
    expect(at(keys, '2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe(k);
    expect(Buffer.from(k as string, 'latin1').equals(parseAddress('2001:db8:1:2::'))).toBe(true);
    expect(at(keys, '2001:db8:1:3::7')).not.toBe(k);
    expect(keys.ofText('2001:db8:1:2::/64')).toBe(k);
    expect(keys.textAt(Buffer.concat([Buffer.alloc(3), parseAddress('2001:db8:1:2::7')]), 3)).toBe('2001:db8:1:2::/64');
  });

  it('masks a length that is not a whole byte (/65, /57) bit by bit', () => {
    const k65 = new SourceKeys({ ipv6: 65, ipv4: 32 });
    expect(at(k65, '2001:db8:1:2:7fff::1')).toBe(at(k65, '2001:db8:1:2::'));
    expect(at(k65, '2001:db8:1:2:8000::1')).not.toBe(at(k65, '2001:db8:1:2::'));
    const k57 = new SourceKeys({ ipv6: 57, ipv4: 32 });
    expect(at(k57, '2001:db8:1:7f::')).toBe(at(k57, '2001:db8:1::'));
    expect(at(k57, '2001:db8:1:80::')).not.toBe(at(k57, '2001:db8:1::'));
  });

  it('keys IPv4 by its masked 32 bits as an int32: a /24 is one number, and /32 is the address key', () => {
    const keys = new SourceKeys({ ipv6: 64, ipv4: 24 });
    expect(at(keys, '198.51.100.7')).toBe(0xc6336400 | 0);
    expect(at(keys, '198.51.100.255')).toBe(0xc6336400 | 0);
    expect(at(keys, '198.51.101.7')).toBe(0xc6336500 | 0);
    expect(keys.textAt(parseAddress('198.51.100.7'), 0)).toBe('198.51.100.0/24');
    const whole = new SourceKeys();
    expect(at(whole, '255.255.255.255')).toBe(-1);
    expect(at(whole, '198.51.100.7')).toBe(addressKey(parseAddress('198.51.100.7')));
    expect(whole.textAt(parseAddress('198.51.100.7'), 0)).toBe('198.51.100.7');
  });

  it('at whole lengths is addressKey, and the source text is the bare address', () => {
    const keys = new SourceKeys();
    for (const t of ['2001:db8::7', '::1', '10.0.0.1', '::ffff:10.0.0.2']) expect(at(keys, t)).toBe(addressKey(parseAddress(t)));
    expect(keys.textAt(parseAddress('2001:db8::7'), 0)).toBe('2001:db8::7');
  });

  it('never mixes the families: the IPv4-mapped ::ffff:0:0/96 is IPv4, keyed by PW_IPV4_PREFIX', () => {
    const keys = new SourceKeys({ ipv6: 64, ipv4: 32 });
    expect(typeof at(keys, '10.0.0.1')).toBe('number');
    expect(at(keys, '10.0.0.1')).not.toBe(at(keys, '10.0.0.2'));
    expect(keys.lengthFor(parsePrefix('10.0.0.0/8'))).toBe(128);
    expect(keys.lengthFor(parsePrefix('2001:db8::/32'))).toBe(64);
  });

  it('gives addressAt the int32 of an IPv4 address and V6 for any other', () => {
    expect(addressAt(parseAddress('192.0.2.7'), 0)).toBe(0xc0000207 | 0);
    expect(addressAt(parseAddress('2001:db8::7'), 0)).toBe(V6);
  });
});
