import { header } from '@packetwatch/common';
import { type WatchEvent, WatchEventKind } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { watchJson, watchRow } from '../src/watch.js';

const AT = new Date(2026, 10, 25, 13, 3, 57);

function ev(kind: WatchEventKind, source: string, port = 0, message = ''): WatchEvent {
  return { time: AT, kind, source, port, probeId: 'host/lo', message, shadow: false };
}

describe('watch: rows as the policy prints them', () => {
  it('prints a connection under the seed header', () => {
    const line = watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_CONNECTION, '10.232.5.2', 8086), 0)!;
    expect(header()).toBe('TIME               SOURCE IP        PORT   MESSAGE');
    expect(line).toBe('13:03:57           10.232.5.2       8086');
    expect(line.indexOf('8086')).toBe(header().indexOf('PORT'));
  });

  it('marks a probe that is not a SYN with its kind under MESSAGE', () => {
    expect(watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_CONNECTION, '10.232.5.2', 8086, 'FIN'), 0)).toBe('13:03:57           10.232.5.2       8086   FIN probe');
  });

  it('prints "Added to blacklist", "Added to whitelist" and "Removed from blacklist"', () => {
    expect(watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_BLACKLIST, '10.232.5.2', 0, 'port scan'), 0)).toBe(
      '13:03:57           10.232.5.2              Added to blacklist',
    );
    expect(watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_WHITELIST, '10.0.0.0/8'), 0)).toBe('13:03:57           10.0.0.0/8              Added to whitelist');
    expect(watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_UNBLOCK, '10.232.5.2'), 0)).toBe('13:03:57           10.232.5.2              Removed from blacklist');
    // A shadow decision's event: the policy's table row, word for word.
    expect(watchRow({ ...ev(WatchEventKind.WATCH_EVENT_KIND_BLACKLIST, '10.232.5.2'), shadow: true }, 0)).toBe(
      '13:03:57           10.232.5.2              Would have been added to blacklist (shadow mode)',
    );
  });

  it('skips kinds it does not know', () => {
    expect(watchRow(ev(WatchEventKind.WATCH_EVENT_KIND_UNSPECIFIED, '10.0.0.1'), 0)).toBeUndefined();
    expect(watchRow(ev(WatchEventKind.UNRECOGNIZED, '10.0.0.1'), 0)).toBeUndefined();
  });
});

describe('watch: JSON lines', () => {
  it('has time, kind, source, port, probeId and message', () => {
    const e = { ...ev(WatchEventKind.WATCH_EVENT_KIND_CONNECTION, '2001:db8::7', 443), time: new Date('2026-11-25T12:03:57.123Z') };
    expect(watchJson(e)).toEqual({ time: '2026-11-25T12:03:57.123Z', kind: 'connection', source: '2001:db8::7', port: 443, probeId: 'host/lo', message: '', shadow: false });
    expect(JSON.stringify(watchJson(e))).not.toContain('\n');
  });
});
