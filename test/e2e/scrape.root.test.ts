// Scrapes and status calls against a probe with a large blocklist, while a
// SYN flood runs: neither may hold up the event loop that drains the ring
// buffer. The count of blocks is kept as it changes (never a walk of the
// blocklist per call), and the sweep of lapsed blocks walks a chunk at a time.
import { blockCodec } from '@packetwatch/bpf';
import { BpfMap, encode } from 'libbpf-ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { ServiceProcess, Services } from '@packetwatch/test-support/services';

const METRICS_PORT = 19092;
/** Blocks written into the probe's blocklist: a walk of them takes about half a second (0.5 µs an entry). */
const BLOCKS = 1_000_000;
/**
 * A small ring buffer: 2,048 events of 64 bytes, 0.2 s of the flood below.
 * A reader held up longer than that by a walk of the blocklist loses events;
 * one that only serves scrapes and status calls between batches does not.
 */
const RINGBUF_BYTES = 128 * 1024;
/** hping3's interval between SYNs (µs): at most 10,000 a second. */
const FLOOD_INTERVAL_US = 100;
/** Each kind of call, at 100 a second (curl --rate, and a timer here). */
const CALLS = 300;
const SLOW_MS = 120_000;

describe('scrapes and status calls during a SYN flood, with a million blocks', () => {
  let net: NamespacePair;
  let svc: Services;

  beforeAll(async () => {
    net = createNamespacePair(14);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: {
        PW_BLOCKLIST_SIZE: String(1 << 20),
        PW_RINGBUF_BYTES: String(RINGBUF_BYTES),
        PW_PROMETHEUS_PORT: String(METRICS_PORT),
        PW_METRICS_HOST: '127.0.0.1',
      },
    });
    await svc.start();
    // Written past the probe, straight into its pinned map (BlockIp a million
    // times would take minutes): it counts them at its next sweep.
    const map = BpfMap.openPinned(`${svc.pinRoot}/${net.victimIf}/blocklist`);
    try {
      const value = encode(blockCodec, { createdNs: 1n, expiresNs: 1n << 62n, reason: 2, flags: 0 });
      for (let base = 0; base < BLOCKS; base += 10_000) {
        const batch = Array.from({ length: Math.min(10_000, BLOCKS - base) }, (_, i) => {
          const key = Buffer.alloc(16);
          key.writeUInt32BE(0x20010db8, 0);
          key.writeUInt32BE(base + i, 12);
          return [key, value] as const;
        });
        expect(map.updateBatch(batch)).toBe(batch.length);
      }
    } finally {
      map.close();
    }
    await waitFor('the probe to count the blocks', async () => ((await svc.probeStatus()).blocks === BLOCKS ? true : undefined), SLOW_MS);
  }, SLOW_MS);

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  it('loses no event while /metrics and GetStatus are called 100 times a second each', async () => {
    const [k0, sent0] = await svc.probeStatus().then((s) => [s.counters!, s.eventsLost] as const);
    const received0 = (await svc.policyStatus()).eventsReceived;
    const flood = new ServiceProcess(
      ['ip', 'netns', 'exec', net.attackerNs, 'hping3', '-q', '-S', '-p', '8086', '-i', `u${FLOOD_INTERVAL_US}`, net.victimAddr],
      {},
    );
    let statusCalls = 0;
    try {
      const scrapes = net.inVictim('curl', ['-sSf', '-o', '/dev/null', '--rate', '100/s', `http://127.0.0.1:${METRICS_PORT}/metrics?n=[1-${CALLS}]`]);
      const statuses = (async () => {
        for (const start = Date.now(); statusCalls < CALLS; statusCalls++) {
          const st = await svc.probeStatus();
          expect(st.blocks).toBe(BLOCKS);
          await new Promise((r) => setTimeout(r, Math.max(0, start + (statusCalls + 1) * 10 - Date.now())));
        }
      })();
      const [scraped] = await Promise.all([scrapes, statuses]);
      expect(scraped.code, scraped.stderr).toBe(0);
      expect(flood.exitCode).toBeUndefined();
    } finally {
      await flood.stop('SIGINT');
    }
    expect(statusCalls).toBe(CALLS);
    // Every event the kernel produced reached the policy: none lost to a
    // full ring buffer, none to the probe's queue.
    const account = async () => {
      const [probe, policy] = await Promise.all([svc.probeStatus(), svc.policyStatus()]);
      const k = probe.counters!;
      return {
        syn: k.syn - k0.syn,
        events: k.events - k0.events,
        ringbufFull: k.ringbufFull - k0.ringbufFull,
        lost: probe.eventsLost - sent0,
        received: policy.eventsReceived - received0,
      };
    };
    await waitFor('the events to drain', async () => {
      const a = await account();
      return a.received === a.events ? true : undefined;
    }, SLOW_MS).catch(() => undefined); // the assertion below says what is off
    const a = await account();
    console.log(`during ${CALLS} scrapes and status calls: ${a.syn} SYNs, ${a.events} events, ${a.received} received`);
    expect(a.syn).toBeGreaterThan(CALLS);
    expect(a).toEqual({ syn: a.syn, events: a.syn, ringbufFull: 0n, lost: 0n, received: a.syn });
  }, SLOW_MS);
});
