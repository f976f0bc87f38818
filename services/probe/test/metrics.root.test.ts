// The probe's /metrics over a real datapath: the kernel counters a scrape
// shows are the counters at that scrape, read once and shared by every
// kernel metric of it, never carried over to the next scrape.
import { Datapath, TCP_FLAGS, destinationOptions, synFrame, tcpFrame } from '@packetwatch/bpf';
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
        shadow: () => false,
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

  it('shows the evasion paths: stealth probes, tiny fragments, long chains, bogus sources, probes dropped from a blocked source', async () => {
    const before = await metrics.metrics();
    const run = (frame: Buffer) => dp.program.testRun({ data: frame });
    run(tcpFrame('192.0.2.9', '198.51.100.1', 40000, 22, TCP_FLAGS.FIN));
    run(tcpFrame('192.0.2.9', '198.51.100.1', 40000, 22, TCP_FLAGS.SYN, { moreFragments: true, l4Bytes: 8 }));
    run(synFrame('2001:db8::9', '2001:db8::1', 40000, 22, { ipv6ExtHeaders: destinationOptions(40) }));
    run(synFrame('::ffff:192.0.2.9', '2001:db8::1', 40000, 22));
    dp.block('192.0.2.10');
    run(tcpFrame('192.0.2.10', '198.51.100.1', 40000, 22, 0));
    dp.unblock('192.0.2.10');
    const after = await metrics.metrics();
    const moved = (name: string) => value(after, name) - value(before, name);
    expect({
      stealth: moved('packetwatch_probe_stealth_probes_total'),
      tiny: moved('packetwatch_probe_tiny_fragments_total'),
      long: moved('packetwatch_probe_long_chains_total'),
      bogus: moved('packetwatch_probe_bogus_sources_total'),
      probeDropped: moved('packetwatch_probe_dropped_total{kind="probe"}'),
      admitted: moved('packetwatch_probe_scan_admitted_total'),
    }).toEqual({ stealth: 2, tiny: 1, long: 1, bogus: 1, probeDropped: 1, admitted: 0 });
  });

  it('reads the counters map once per scrape', async () => {
    const at = reads;
    await metrics.metrics();
    expect(reads - at).toBe(1);
    await Promise.all([metrics.metrics(), metrics.metrics()]);
    expect(reads - at).toBe(3);
  });
});
