import { describe, expect, it } from 'vitest';
import { count, humanDuration, keyValues, plural, printable, relative, table } from '../src/format.js';

describe('format: human durations', () => {
  it.each([
    [0, '0s'],
    [0.9, '0s'],
    [45, '45s'],
    [59.99, '59s'],
    [60, '1m'],
    [3599, '59m'],
    [3600, '1h'],
    [5400, '1h 30m'],
    [86399, '23h 59m'],
    [86400, '1d'],
    [187200, '2d 4h'],
    [-5, '0s'],
  ])('%s s is "%s"', (s, text) => {
    expect(humanDuration(s)).toBe(text);
  });
});

describe('format: times relative to now', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  it('says "in 59m" for an hour-long block just after it started', () => {
    expect(relative(new Date(now + 3600_000 - 500), now)).toBe('in 59m');
  });
  it('says "5m ago" for the past', () => {
    expect(relative(new Date(now - 5 * 60_000), now)).toBe('5m ago');
  });
  it('says "just now" within a second', () => {
    expect(relative(new Date(now + 400), now)).toBe('just now');
    expect(relative(new Date(now - 999), now)).toBe('just now');
  });
  it('says "never" for an unset time, or the word given', () => {
    expect(relative(undefined, now)).toBe('never');
    expect(relative(undefined, now, '-')).toBe('-');
  });
});

describe('format: counts', () => {
  it('groups thousands', () => {
    expect(count(1234567)).toBe('1,234,567');
    expect(count(12n)).toBe('12');
    expect(count(10_000_000_000n)).toBe('10,000,000,000');
  });
  it('pluralises', () => {
    expect(plural(1, 'port')).toBe('1 port');
    expect(plural(3, 'port')).toBe('3 ports');
    expect(plural(1n, 'probe')).toBe('1 probe');
    expect(plural(0, 'entry', 'entries')).toBe('0 entries');
  });
});

describe('format: tables', () => {
  it('makes each column as wide as its widest cell, two spaces apart, without trailing spaces', () => {
    expect(table(['A', 'LONG HEADER', 'C'], [['xxxx', 'y', ''], ['z', 'yy', 'last']])).toBe(
      ['A     LONG HEADER  C', 'xxxx  y', 'z     yy           last'].join('\n'),
    );
  });
  it('prints the header alone when there are no rows', () => {
    expect(table(['SOURCE', 'REASON'], [])).toBe('SOURCE  REASON');
  });
  it('aligns every cell of a column at the same offset', () => {
    const t = table(['IP', 'X'], [['2001:db8::1', 'a'], ['10.0.0.1', 'b']]).split('\n');
    expect(t.map((l) => l.lastIndexOf(' ') + 1)).toEqual([13, 13, 13]);
  });
});

describe('format: key-value blocks', () => {
  it('pads keys to the widest', () => {
    expect(keyValues([['health', 'SERVING'], ['tracked sources', '2']])).toBe('  health           SERVING\n  tracked sources  2');
  });
});

describe('format: text a peer or an operator chose', () => {
  it('escapes control characters and bidi overrides, and leaves the rest', () => {
    expect(printable('evil\u001b[2J\u001b]0;owned\u0007 reason')).toBe('evil\\u001b[2J\\u001b]0;owned\\u0007 reason');
    expect(printable('\u202eexe.txt')).toBe('\\u202eexe.txt');
    expect(printable('a\r\nb\u007f\u009b')).toBe('a\\u000d\\u000ab\\u007f\\u009b');
    expect(printable('port scan: 3 ports (22, 80, 443) — détecté')).toBe('port scan: 3 ports (22, 80, 443) — détecté');
  });

  it('is applied to every table cell and key-value value', () => {
    expect(table(['IP', 'REASON'], [['192.0.2.7', 'x\u001b[31my']])).toBe('IP         REASON\n192.0.2.7  x\\u001b[31my');
    expect(keyValues([['probe', 'host/\u001b[2Jeth0']])).toBe('  probe  host/\\u001b[2Jeth0');
  });
});
