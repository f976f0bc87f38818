import { describe, expect, it } from 'vitest';
import { PortState, ProbeKind, TCP_FLAGS, probeLabel } from '@packetwatch/bpf/records';
import type { FeedEvent, FeedKind } from '../src/feed.js';
import { banner, header, row } from '../src/table.js';

/** 13:03:57 local time, as the table prints it. */
const AT = new Date(2026, 10, 25, 13, 3, 57).getTime();

function event(kind: FeedKind, source: string, port = 0, timeMs = AT, marker = ''): FeedEvent {
  // The table prints its own words for whitelist, blacklist and unblock events; a connection's message is its marker.
  return { timeMs, kind, source, port, probeId: 'host/lo', message: kind === 'connection' ? marker : 'ignored by the table' };
}

describe('table: the header', () => {
  it('has TIME in 19 columns, SOURCE IP in 17, PORT in 7, then MESSAGE', () => {
    expect(header()).toBe('TIME               SOURCE IP        PORT   MESSAGE');
    expect(header().indexOf('SOURCE IP')).toBe(19);
    expect(header().indexOf('PORT')).toBe(36);
    expect(header().indexOf('MESSAGE')).toBe(43);
  });
});

describe('table: rows in the seed layout', () => {
  it('prints a connection as time, source and port, without trailing spaces', () => {
    expect(row(event('connection', '127.0.0.1', 1))).toBe('13:03:57           127.0.0.1        1');
  });

  it('marks a probe that is not a SYN under MESSAGE, in the same layout', () => {
    const line = row(event('connection', '192.0.2.7', 80, AT, 'XMAS'));
    expect(line).toBe('13:03:57           192.0.2.7        80     XMAS probe');
    expect(line.indexOf('XMAS')).toBe(header().indexOf('MESSAGE'));
    expect(row(event('connection', '192.0.2.7', 81, AT, 'fragment'))).toBe('13:03:57           192.0.2.7        81     fragment probe');
  });

  it('marks a SYN to an open port (closed mode) as it is, not as a probe', () => {
    expect(row(event('connection', '192.0.2.8', 8086, AT, probeLabel(ProbeKind.Syn, TCP_FLAGS.SYN, PortState.Open)))).toBe('13:03:57           192.0.2.8        8086   open port');
    expect(row(event('connection', '192.0.2.8', 8086, AT, probeLabel(ProbeKind.Syn, TCP_FLAGS.SYN, PortState.Closed)))).toBe('13:03:57           192.0.2.8        8086');
    // A stealth probe of an open port is a probe all the same.
    expect(row(event('connection', '192.0.2.8', 8086, AT, probeLabel(ProbeKind.Stealth, TCP_FLAGS.FIN, PortState.Unknown)))).toBe('13:03:57           192.0.2.8        8086   FIN probe');
  });

  it('puts the port under PORT and the source under SOURCE IP', () => {
    const line = row(event('connection', '192.0.2.7', 65535));
    expect(line).toBe('13:03:57           192.0.2.7        65535');
    expect(line.indexOf('192.0.2.7')).toBe(header().indexOf('SOURCE IP'));
    expect(line.indexOf('65535')).toBe(header().indexOf('PORT'));
  });

  it('prints a blacklist event with an empty port and the message under MESSAGE', () => {
    const line = row(event('blacklist', '127.0.0.1'));
    expect(line).toBe('13:03:57           127.0.0.1               Added to blacklist');
    expect(line.indexOf('Added')).toBe(header().indexOf('MESSAGE'));
  });

  it('prints a whitelist event as "Added to whitelist"', () => {
    expect(row(event('whitelist', '10.0.0.0/8'))).toBe('13:03:57           10.0.0.0/8              Added to whitelist');
  });

  it('prints an unblock as "Removed from blacklist"', () => {
    expect(row(event('unblock', '2001:db8::7'))).toBe('13:03:57           2001:db8::7             Removed from blacklist');
  });

  it('ignores the port of a non-connection event', () => {
    expect(row(event('blacklist', '127.0.0.1', 22))).toBe('13:03:57           127.0.0.1               Added to blacklist');
  });

  it('says a shadow decision would have added the source to the blacklist, and nothing else changes', () => {
    expect(row({ ...event('blacklist', '10.232.9.2'), shadow: true })).toBe('13:03:57           10.232.9.2              Would have been added to blacklist (shadow mode)');
    expect(row({ ...event('blacklist', '10.232.9.2'), shadow: false })).toBe('13:03:57           10.232.9.2              Added to blacklist');
    expect(row({ ...event('unblock', '10.232.9.2'), shadow: true })).toBe('13:03:57           10.232.9.2              Removed from blacklist');
  });

  it('zero-pads hours, minutes and seconds of the local time', () => {
    const early = new Date(2026, 0, 2, 4, 5, 6, 999).getTime();
    expect(row(event('connection', '127.0.0.1', 80, early))).toBe('04:05:06           127.0.0.1        80');
    const midnight = new Date(2026, 0, 2, 0, 0, 0).getTime();
    expect(row(event('connection', '127.0.0.1', 80, midnight))).toBe('00:00:00           127.0.0.1        80');
  });

  it('keeps a source of exactly 16 characters separated from the port', () => {
    expect(row(event('connection', '2001:db8:1:2::ab', 443))).toBe('13:03:57           2001:db8:1:2::ab 443');
  });

  it('keeps a long IPv6 source separated from the port by a space', () => {
    const source = '2001:db8:1234:5678:9abc:def0:1234:5678';
    expect(row(event('connection', source, 8080))).toBe(`13:03:57           ${source} 8080`);
    expect(row(event('blacklist', source))).toBe(`13:03:57           ${source}        Added to blacklist`);
  });
});

describe('table: the banner', () => {
  const opts = { interface: 'eth0', portThreshold: 3, windowSeconds: 60 };

  it('promises to whitelist own addresses when whitelistSelf is true', () => {
    expect(banner({ ...opts, whitelistSelf: true })).toBe(
      [
        'Welcome to Packetwatch!',
        'We will be logging all incoming connections on eth0',
        'Any source IPs that hit 3 different ports within 60 second(s) will have their future connection attempts dropped!',
        'We will whitelist any incoming connections originating from our own IPs on eth0!',
      ].join('\n'),
    );
  });

  it('says shadow mode in the threshold line: would, and nothing is dropped', () => {
    expect(banner({ ...opts, whitelistSelf: true, shadow: true }).split('\n')[2]).toBe(
      'Any source IPs that hit 3 different ports within 60 second(s) would have their future connection attempts dropped, but this is SHADOW MODE (PW_ENFORCE=False): nothing is dropped!',
    );
  });

  it('warns that own addresses are not whitelisted when whitelistSelf is false', () => {
    expect(banner({ interface: 'lo', portThreshold: 5, windowSeconds: 1, whitelistSelf: false })).toBe(
      [
        'Welcome to Packetwatch!',
        'We will be logging all incoming connections on lo',
        'Any source IPs that hit 5 different ports within 1 second(s) will have their future connection attempts dropped!',
        'We will NOT whitelist any incoming connections originating from our own IPs on lo, so play nice!',
      ].join('\n'),
    );
  });
});
