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
