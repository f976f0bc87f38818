// Event batches as a probe sends them, and the pipeline run over them: the
// policy's unit tests feed SYNs through admitBatch and processRecords here.
import { SYN_EVENT_SIZE, TCP_FLAGS, synEventCodec } from '@packetwatch/bpf/records';
import { parseAddress } from '@packetwatch/common';
import { EventBatch } from '@packetwatch/proto';
import { type PipelineContext, admitBatch, processRecords } from '../src/pipeline.js';
import type { ProbeSession } from '../src/probes.js';

/** SYN records of (source, port), the i-th stamped at startMs + i ms, to the victim of the source's family. */
export function synBatch(syns: readonly [source: string, port: number, i: number][], startMs: number): EventBatch {
  const records = Buffer.alloc(syns.length * SYN_EVENT_SIZE);
  syns.forEach(([source, dport, i], k) => {
    const v6 = source.includes(':');
    synEventCodec.write(
      {
        tsNs: BigInt(startMs + i) * 1_000_000n,
        saddr: parseAddress(source),
        daddr: parseAddress(v6 ? '2001:db8:ffff::1' : '10.0.0.1'),
        sport: 40_000 + k,
        dport,
        ifindex: 2,
        tcpFlags: TCP_FLAGS.SYN,
        ipVersion: v6 ? 6 : 4,
        ttl: 64,
        scan: 0,
        vlanId: 0,
        kind: 0,
      },
      records,
      k * SYN_EVENT_SIZE,
    );
  });
  return EventBatch.fromPartial({ count: syns.length, recordSize: SYN_EVENT_SIZE, records });
}

/** Admits a batch from a probe and runs it from the start; returns where processing stopped, in records. */
export function runBatch(ctx: PipelineContext, session: ProbeSession, b: EventBatch): number {
  const admitted = admitBatch(ctx, session, b);
  if (!admitted) throw new Error('a batch with records was not admitted');
  return processRecords(ctx, session, admitted) / SYN_EVENT_SIZE;
}
