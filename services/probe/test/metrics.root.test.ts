// The probe's /metrics over a real datapath: the kernel counters a scrape
// shows are the counters at that scrape, read once and shared by every
// kernel metric of it, never carried over to the next scrape.
import { Datapath, synFrame } from '@packetwatch/bpf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProbeMetrics } from '../src/metrics.js';

const value = (text: string, name: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} missing`);
  return Number(line.slice(name.length + 1));
};

describe('probe metrics', () => {
  let dp: Datapath;
  let metrics: ProbeMetrics;
  let reads = 0;

  beforeAll(() => {
    dp = Datapath.load();
    // The real datapath, with its counters-map reads counted.
    const counted = new Proxy(dp, {
      get: (target, prop) =>
        prop === 'counters'
          ? () => {
              reads++;
              return target.counters();
            }
          : Reflect.get(target, prop),
    });
    metrics = new ProbeMetrics(
      {
        dp: counted,
        queueDepth: () => 0,
        queueCapacity: 1,
        eventsSent: () => 0,
        eventsLost: () => 0,
        policyConnected: () => false,
        blocks: () => 0,
        blockCapacity: 1,
      },
      { interface: 'lo', mode: 'generic', programId: 1, version: 'test', pinsPrivate: false },
    );
  });

  afterAll(() => dp?.close());

  it('shows every SYN at the very next scrape, however soon it follows the last one', async () => {
    let before = await metrics.metrics();
    for (let i = 0; i < 5; i++) {
      dp.program.testRun({ data: synFrame('192.0.2.7', '198.51.100.1', 40000 + i, 22) });
      const after = await metrics.metrics();
      for (const name of ['conn_count_total', 'packetwatch_probe_frames_total', 'packetwatch_probe_syn_total', 'packetwatch_probe_events_total']) {
        expect(value(after, name), name).toBe(value(before, name) + 1);
      }
      before = after;
    }
  });

  it('reads the counters map once per scrape', async () => {
    const at = reads;
    await metrics.metrics();
    expect(reads - at).toBe(1);
    await Promise.all([metrics.metrics(), metrics.metrics()]);
    expect(reads - at).toBe(3);
  });
});
