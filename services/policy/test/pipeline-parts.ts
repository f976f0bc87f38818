// The policy's pipeline as its unit tests build it: a decision store with
// probes connected (fake ones, answering BlockIp), event batches as a probe
// sends them, and the pipeline run over them (admitBatch, processRecords).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SYN_EVENT_SIZE, TCP_FLAGS, synEventCodec } from '@packetwatch/bpf/records';
import { parseAddress } from '@packetwatch/common';
import { EventBatch } from '@packetwatch/proto';
import type { Logger } from 'pino';
import { onTestFinished } from 'vitest';
import { PolicyMetrics } from '../src/metrics.js';
import { type PipelineContext, admitBatch, processRecords } from '../src/pipeline.js';
import { ProbeRegistry, type ProbeSession } from '../src/probes.js';
import { Recorder } from '../src/recorder.js';
import { DecisionStore } from '../src/store.js';
import { FakeProbe } from './fake-probe.js';
import { captureLog } from './store-faults.js';

export interface ConnectedProbes {
  store: DecisionStore;
  recorder: Recorder;
  metrics: PolicyMetrics;
  log: Logger;
  probe: FakeProbe;
  probes: ProbeRegistry;
  sessions: ProbeSession[];
}

/** A fresh decision store (seeded first if asked) and probes with these ids connected to one fake probe; all closed when the test ends. */
export async function connectedProbes(ids: readonly string[], seed?: (s: DecisionStore) => void): Promise<ConnectedProbes> {
  const dir = mkdtempSync(join(tmpdir(), 'pw-pipeline-'));
  const store = DecisionStore.open(dir).store;
  seed?.(store);
  const { log } = captureLog();
  const metrics = new PolicyMetrics();
  const recorder = new Recorder(store, metrics, log);
  const probe = new FakeProbe();
  await probe.start();
  const probes = new ProbeRegistry();
  const sessions = ids.map((id) => probe.session(id, log));
  for (const s of sessions) probes.add(s);
  onTestFinished(() => {
    for (const s of sessions) s.close();
    probe.stop();
    recorder.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, recorder, metrics, log, probe, probes, sessions };
}

/** SYN records of (source, port), the i-th stamped at startMs + i ms, to the victim of the source's family; portState as the kernel marked it (PortState, Unknown when left out). */
export function synBatch(syns: readonly [source: string, port: number, i: number, portState?: number][], startMs: number): EventBatch {
  const records = Buffer.alloc(syns.length * SYN_EVENT_SIZE);
  syns.forEach(([source, dport, i, portState = 0], k) => {
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
        portState,
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
