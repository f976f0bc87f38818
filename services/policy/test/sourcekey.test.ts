import { formatAddress, parseAddress } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { addressKey, sourceKey } from '../src/sourcekey.js';

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
