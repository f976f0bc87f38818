// The policy's event pipeline called directly, as a Report stream would
// call it, with five probes (sessions on one stand-in probe endpoint): SYN
// records in, decisions and BlockIp calls out. A source that keeps under the
// per-host threshold on each probe is blocked on all five by the fleet rule;
// a client on one probe is not; the per-host rule still detects on one.
import { PortState } from '@packetwatch/bpf/records';
import { BlockReason, EventBatch } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';
import { Allowlist } from '../src/allowlist.js';
import { Decisions } from '../src/decisions.js';
import { Detector } from '../src/detector.js';
import { Feed } from '../src/feed.js';
import type { PipelineContext } from '../src/pipeline.js';
import { type ProbeSession } from '../src/probes.js';
import { connectedProbes, runBatch, synBatch } from './pipeline-parts.js';
import { FakeProbe } from './fake-probe.js';

const SCANNER = '198.51.100.7';
const CLIENT = '198.51.100.8';
const PROBE_IDS = ['web1/eth0', 'web2/eth0', 'web3/eth0', 'web4/eth0', 'web5/eth0'];

/** The pipeline's parts as the policy builds them, N = 3 and F as given, with five probes connected; closed when the test ends. */
async function fleet(pairThreshold: number): Promise<{ ctx: PipelineContext; sessions: ProbeSession[]; probe: FakeProbe }> {
  const { log, metrics, recorder, probe, probes, sessions } = await connectedProbes(PROBE_IDS);
  const detector = new Detector({ portThreshold: 3, windowSeconds: 60, maxSources: 1000, pairThreshold });
  const allowlist = new Allowlist([]);
  const feed = new Feed();
  const decisions = new Decisions({ recorder, probes, allowlist, detector, feed, metrics, log, detectorTtlSeconds: 0 });
  return { ctx: { detector, decisions, allowlist, feed, metrics, log, windowSeconds: 60 }, sessions, probe };
}

/** The time of the test's first SYN: a second ago, so that every event is on the policy's clock. */
const start = Date.now() - 1000;

/** A batch of SYN records of (source, port), the i-th at start + i ms. */
const batch = (syns: [source: string, port: number, i: number, portState?: number][]): EventBatch => synBatch(syns, start);

const run = runBatch;

describe('the pipeline: the fleet rule', () => {
  it('blocks a source that hits 2 ports on each of 5 probes on every probe, stopping just past the crossing SYN', async () => {
    const { ctx, sessions, probe } = await fleet(10);
    // Probes 1-4: 8086 and 8087; probe 5: the same, then one more SYN the pipeline leaves for the next turn.
    const stops = sessions.map((s, p) =>
      run(ctx, s, batch([[SCANNER, 8086, 2 * p], [SCANNER, 8087, 2 * p + 1], ...(p === 4 ? [[SCANNER, 8086, 10] as [string, number, number]] : [])])),
    );
    expect(stops).toEqual([2, 2, 2, 2, 2]);
    await expect.poll(() => ctx.decisions.enforcedBy(SCANNER)).toEqual(PROBE_IDS);
    expect(ctx.decisions.active()).toMatchObject([
      {
        ip: SCANNER,
        origin: 'detector',
        reason:
          'port scan across the fleet: 10 (probe, port) pairs on 5 probes within 0.009s ' +
          '(web1/eth0: 8086, 8087; web2/eth0: 8086, 8087; web3/eth0: 8086, 8087; web4/eth0: 8086, 8087; web5/eth0: 8086, 8087)',
      },
    ]);
    expect(probe.blocked).toEqual(PROBE_IDS.map(() => ({ ip: SCANNER, reason: BlockReason.BLOCK_REASON_PORTSCAN })));
    expect({ detections: ctx.metrics.counts.detections, received: ctx.metrics.counts.eventsReceived, tracked: ctx.detector.tracked }).toEqual({
      detections: 1,
      received: 11,
      tracked: 0,
    });
  });

  it('leaves a client that hits 2 ports on one probe alone', async () => {
    const { ctx, sessions } = await fleet(10);
    expect(run(ctx, sessions[0]!, batch([[CLIENT, 8086, 0], [CLIENT, 8087, 1], [CLIENT, 8086, 2]]))).toBe(3);
    expect(ctx.decisions.active()).toEqual([]);
    expect(ctx.detector.tracked).toBe(1);
  });

  it('with the fleet rule off, does not detect the same spread scan', async () => {
    const { ctx, sessions } = await fleet(0);
    expect(sessions.map((s, p) => run(ctx, s, batch([[SCANNER, 8086, 2 * p], [SCANNER, 8087, 2 * p + 1]])))).toEqual([2, 2, 2, 2, 2]);
    expect(ctx.decisions.active()).toEqual([]);
  });
});

describe('the pipeline: the per-host rule', () => {
  it('detects 3 ports on one probe as a port scan, blocked on every probe', async () => {
    const { ctx, sessions, probe } = await fleet(10);
    expect(run(ctx, sessions[2]!, batch([[SCANNER, 22, 0], [SCANNER, 80, 1], [SCANNER, 443, 2]]))).toBe(3);
    await expect.poll(() => ctx.decisions.enforcedBy(SCANNER)).toEqual(PROBE_IDS);
    expect(ctx.decisions.active()).toMatchObject([{ ip: SCANNER, reason: 'port scan: 3 ports (22, 80, 443) within 0.002s' }]);
    expect(probe.blocked).toHaveLength(5);
  });
});

describe('the pipeline: closed mode (the kernel marks each SYN with its port state)', () => {
  const { Open, Closed } = PortState;

  it('counts neither rule on SYNs to open ports: shown, marked, counted as open-port events, never detected', async () => {
    const { ctx, sessions, probe } = await fleet(10);
    const seen: string[] = [];
    ctx.feed.subscribe((e) => seen.push(`${e.port} ${e.message}`));
    // 3 open ports on one probe, 2 on each of five: a scan and a fleet scan, were they counted.
    expect(run(ctx, sessions[0]!, batch([[CLIENT, 22, 0, Open], [CLIENT, 80, 1, Open], [CLIENT, 443, 2, Open]]))).toBe(3);
    sessions.forEach((s, p) => run(ctx, s, batch([[CLIENT, 8086, 3 + 2 * p, Open], [CLIENT, 8087, 4 + 2 * p, Open]])));
    expect(ctx.decisions.active()).toEqual([]);
    expect(probe.blocked).toEqual([]);
    expect(ctx.detector.tracked).toBe(0);
    expect(ctx.metrics.counts.eventsOpenPort).toBe(13);
    expect(ctx.metrics.counts.eventsReceived).toBe(13);
    expect(seen.slice(0, 3)).toEqual(['22 open port', '80 open port', '443 open port']);
  });

  it('detects at the third closed port, whatever open ports come between', async () => {
    const { ctx, sessions } = await fleet(10);
    expect(
      run(ctx, sessions[0]!, batch([[SCANNER, 22, 0, Open], [SCANNER, 1, 1, Closed], [SCANNER, 80, 2, Open], [SCANNER, 2, 3, Closed], [SCANNER, 443, 4, Open], [SCANNER, 3, 5, Closed]])),
    ).toBe(6);
    await expect.poll(() => ctx.decisions.active().length).toBe(1);
    expect(ctx.decisions.active()).toMatchObject([{ ip: SCANNER, reason: 'port scan: 3 ports (1, 2, 3) within 0.004s' }]);
    expect(ctx.metrics.counts.eventsOpenPort).toBe(3);
  });
});
