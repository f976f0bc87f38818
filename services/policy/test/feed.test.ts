import { ProbeKind, TCP_FLAGS } from '@packetwatch/bpf/records';
import { parseAddress } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { Feed, type FeedEvent } from '../src/feed.js';

const T0 = Date.UTC(2026, 0, 1);

/** A connection event from 192.0.2.<n> to port n at T0 + n seconds. */
function ev(n: number, timeMs = T0 + n * 1000): FeedEvent {
  return { timeMs, kind: 'connection', source: `192.0.2.${n}`, port: n, probeId: 'host/lo', message: '' };
}

describe('Feed: subscribers', () => {
  it('delivers every published event to each subscriber, in order', () => {
    const feed = new Feed(10);
    const a: FeedEvent[] = [];
    const b: FeedEvent[] = [];
    feed.subscribe((e) => a.push(e));
    feed.subscribe((e) => b.push(e));
    const events = [ev(1), ev(2), ev(3)];
    for (const e of events) feed.publish(e);
    expect(a).toEqual(events);
    expect(b).toEqual(events);
  });

  it('delivers only events published after subscribing', () => {
    const feed = new Feed(10);
    feed.publish(ev(1));
    const got: FeedEvent[] = [];
    feed.subscribe((e) => got.push(e));
    feed.publish(ev(2));
    expect(got).toEqual([ev(2)]);
  });

  it('stops delivering to a subscriber that unsubscribed, and only to it', () => {
    const feed = new Feed(10);
    const a: FeedEvent[] = [];
    const b: FeedEvent[] = [];
    const unsubscribeA = feed.subscribe((e) => a.push(e));
    feed.subscribe((e) => b.push(e));
    feed.publish(ev(1));
    unsubscribeA();
    feed.publish(ev(2));
    expect(a).toEqual([ev(1)]);
    expect(b).toEqual([ev(1), ev(2)]);
  });

  it('tolerates unsubscribing twice', () => {
    const feed = new Feed(10);
    const got: FeedEvent[] = [];
    const unsubscribe = feed.subscribe((e) => got.push(e));
    unsubscribe();
    unsubscribe();
    feed.publish(ev(1));
    expect(got).toEqual([]);
  });

  it('lets a subscriber unsubscribe itself while an event is delivered', () => {
    const feed = new Feed(10);
    const once: FeedEvent[] = [];
    const other: FeedEvent[] = [];
    const unsubscribe = feed.subscribe((e) => {
      once.push(e);
      unsubscribe();
    });
    feed.subscribe((e) => other.push(e));
    feed.publish(ev(1));
    feed.publish(ev(2));
    expect(once).toEqual([ev(1)]);
    expect(other).toEqual([ev(1), ev(2)]);
  });
});

describe('Feed: recent events', () => {
  it('returns nothing before anything was published', () => {
    expect(new Feed(10).since(0)).toEqual([]);
  });

  it('returns recent events at or after the given time, oldest first', () => {
    const feed = new Feed(10);
    for (let n = 1; n <= 5; n++) feed.publish(ev(n));
    expect(feed.since(0)).toEqual([ev(1), ev(2), ev(3), ev(4), ev(5)]);
    expect(feed.since(T0 + 3000)).toEqual([ev(3), ev(4), ev(5)]);
    expect(feed.since(T0 + 3001)).toEqual([ev(4), ev(5)]);
    expect(feed.since(T0 + 6000)).toEqual([]);
  });

  it('keeps only the last `capacity` events, oldest first, once the ring wraps', () => {
    const feed = new Feed(3);
    for (let n = 1; n <= 7; n++) feed.publish(ev(n));
    expect(feed.since(0)).toEqual([ev(5), ev(6), ev(7)]);
    expect(feed.since(T0 + 6000)).toEqual([ev(6), ev(7)]);
  });

  it('keeps exactly `capacity` events when filled to the brim', () => {
    const feed = new Feed(3);
    for (let n = 1; n <= 3; n++) feed.publish(ev(n));
    expect(feed.since(0)).toEqual([ev(1), ev(2), ev(3)]);
    feed.publish(ev(4));
    expect(feed.since(0)).toEqual([ev(2), ev(3), ev(4)]);
  });

  it('keeps the last 5000 events by default', () => {
    const feed = new Feed();
    for (let n = 0; n < 5003; n++) feed.publish(ev(n, T0 + n));
    const recent = feed.since(0);
    expect(recent).toHaveLength(5000);
    expect(recent[0]).toEqual(ev(3, T0 + 3));
    expect(recent[4999]).toEqual(ev(5002, T0 + 5002));
  });

  it('orders recent events by publication, even when their times are not in order', () => {
    const feed = new Feed(5);
    feed.publish(ev(1, T0 + 2000));
    feed.publish(ev(2, T0 + 1000));
    feed.publish(ev(3, T0 + 3000));
    expect(feed.since(T0)).toEqual([ev(1, T0 + 2000), ev(2, T0 + 1000), ev(3, T0 + 3000)]);
    expect(feed.since(T0 + 1500)).toEqual([ev(1, T0 + 2000), ev(3, T0 + 3000)]);
  });
});

describe('Feed: raw connections', () => {
  /** An event record's source address at offset 8, as the service publishes it. */
  const record = (text: string): Buffer => {
    const buf = Buffer.alloc(56, 0x77);
    parseAddress(text).copy(buf, 8);
    return buf;
  };

  it('keeps connections raw and formats them when read, in publication order with other events', () => {
    const feed = new Feed(4);
    const rec = record('192.0.2.9');
    feed.publishConnection(T0 + 1, rec, 8, 443, 'host/eth0');
    rec.fill(0); // the feed copied the address: the batch's buffer may be reused
    const whitelist: FeedEvent = { timeMs: T0 + 2, kind: 'whitelist', source: '10.0.0.0/8', port: 0, probeId: '', message: 'PW_ALLOWLIST' };
    feed.publish(whitelist);
    feed.publishConnection(T0 + 3, record('2001:db8::9'), 8, 22, 'host/eth0');
    expect(feed.since(0)).toEqual([
      { timeMs: T0 + 1, kind: 'connection', source: '192.0.2.9', port: 443, probeId: 'host/eth0', message: '' },
      whitelist,
      { timeMs: T0 + 3, kind: 'connection', source: '2001:db8::9', port: 22, probeId: 'host/eth0', message: '' },
    ]);
    expect(feed.since(T0 + 2)).toHaveLength(2);
  });

  it("marks a connection that is not a SYN with its probe's kind", () => {
    const feed = new Feed(4);
    feed.publishConnection(T0, record('192.0.2.9'), 8, 80, 'p', ProbeKind.Stealth, TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG);
    feed.publishConnection(T0, record('192.0.2.9'), 8, 81, 'p', ProbeKind.Fragment, 0);
    feed.publishConnection(T0, record('192.0.2.9'), 8, 82, 'p', ProbeKind.Syn, TCP_FLAGS.SYN);
    expect(feed.since(0).map((e) => e.message)).toEqual(['XMAS', 'fragment', '']);
  });

  it('delivers formatted connections to subscribers, and says whether anyone watches', () => {
    const feed = new Feed(4);
    expect(feed.watched).toBe(false);
    const got: FeedEvent[] = [];
    const unsubscribe = feed.subscribe((e) => got.push(e));
    expect(feed.watched).toBe(true);
    feed.publishConnection(T0, record('198.51.100.1'), 8, 80, 'p');
    expect(got).toEqual([{ timeMs: T0, kind: 'connection', source: '198.51.100.1', port: 80, probeId: 'p', message: '' }]);
    unsubscribe();
    expect(feed.watched).toBe(false);
  });

  it('overwrites the oldest raw and object events alike once the ring wraps', () => {
    const feed = new Feed(2);
    feed.publish(ev(1));
    feed.publishConnection(T0 + 2000, record('192.0.2.2'), 8, 2, 'host/lo');
    feed.publishConnection(T0 + 3000, record('192.0.2.3'), 8, 3, 'host/lo');
    expect(feed.since(0)).toEqual([ev(2), ev(3)]);
    feed.publish(ev(4));
    expect(feed.since(0)).toEqual([ev(3), ev(4)]);
  });
});
