// `make bench-pipeline`: how many SYN events a second the whole pipeline as
// deployed (XDP program, ring buffer, probe, Report stream, policy with its
// detector) carries for 10 s without losing one, probe + policy in a victim
// namespace (@packetwatch/test-support/stack). Drivers: A. bpftool runs the
// attached program at a paced rate on frames from many sources to two ports
// each (no scanner); B. hping3 --flood from the attacker namespace.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type NamespacePair, SLICE_MS, XDP_PASS, drive, runOnce, sleep, waitFor } from '@packetwatch/test-support';
import type { Stack } from '@packetwatch/test-support/stack';
import * as harness from './harness.js';
import { BENCH_DIR, BenchError, type Machine, type ResultEntry, SMOKE, count, entry, rateLabel, round2, runBench } from './report.js';

const NAME = 'pipeline';
const SECTION_HEADING = '## Event pipeline';
// PW_BENCH_SMOKE=1 (SMOKE): one low rate for 2 s and 1 s of hping3, nothing written.

const RATES = SMOKE ? [100_000] : [500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000];
const RUN_SECONDS = SMOKE ? 2 : 10;
const REFINE_STEPS = SMOKE ? 0 : 2;
const HPING_SECONDS = SMOKE ? 1 : 10;
const DRAIN_TIMEOUT_MS = 15_000;
const TARGET_RATE = 2_000_000;
const TARGET_TEXT = '>= 2,000,000 events/s zero loss';
const SLOT = 236;

// Driver A's frames: SOURCES sources (RFC 2544 benchmarking range, never a
// real peer), each to the same PORTS from its own source
// port. Fewer ports than the threshold N = 3: no source is ever a scanner,
// so every SYN travels the whole path to the detector and none is dropped.
const SOURCES = 64;
const PORTS = [80, 443];
const sourceOf = (i: number) => `198.18.${SLOT}.${i + 1}`;

/** Driver A's or B's run: children in its CPU shares is the driver (bpftool, which also pays for the XDP program, or hping3). */
type Run = harness.FlowRun<'probe' | 'policy', Counts> & { driver: string };
type Counts = harness.FlowCounts & { detections: number };

/** The books from the probe's and the policy's GetStatus. */
async function counts(stack: Stack): Promise<Counts> {
  const [probe, policy] = await Promise.all([stack.probeStatus(), stack.policyStatus()]);
  const [received, policyLost, detections] = [policy.eventsReceived, policy.eventsLost, policy.detections].map(Number) as [number, number, number];
  return { ...harness.probeCounts(probe), received, policyLost, gaps: 0, detections };
}

/** SYNs the program saw minus events the policy received or was told were lost: constant while nothing is in flight. */
const inFlight = (c: Counts) => c.syn - c.received - c.policyLost;

/** inFlight() once the setup SYN has arrived (the setup's own SYNs, none of them in flight). */
let settled = 0;

/** A run of `driver`, printed: `body` drives SYNs for a while and returns its wall seconds. */
async function measure(stack: Stack, driver: string, rate: number, body: () => Promise<number>): Promise<Run> {
  // A run starts once the previous one's events are all accounted for, so that none of them is counted in this one.
  await waitFor('the previous run\'s events to be accounted for', async () => (inFlight(await counts(stack)) <= settled ? true : undefined), 60_000);
  const pids = { probe: stack.svc.probe?.pid, policy: stack.svc.policy?.pid };
  const r = { driver, ...(await harness.measureFlow(rate, () => counts(stack), pids, () => stack.running, DRAIN_TIMEOUT_MS, body)) };
  harness.printRun(`${driver.padEnd(22)} ${rateLabel(rate).padStart(5)}`, r);
  return r;
}

/** Driver B's runs: their names and hping3's arguments besides the common ones. */
const HPING: [string, string[]][] = [['hping3, one source', []], ['hping3, random sources', ['--rand-source']]];

/** Driver B: hping3 --flood from the attacker namespace for HPING_SECONDS, stopped with SIGINT (then it exits 0, or 1 when no reply came). */
async function floodRun(stack: Stack, net: NamespacePair, name: string, args: string[]): Promise<Run> {
  return measure(stack, name, NaN, async () => {
    const start = performance.now();
    const argv = ['--preserve-status', '-s', 'INT', String(HPING_SECONDS), 'hping3', '-q', '-S', '--flood', '-p', '8080', ...args, net.victimAddr];
    const r = await net.inAttacker('timeout', argv, HPING_SECONDS * 1000 + 10_000);
    if (r.code !== 0 && r.code !== 1) throw new BenchError(`timeout ${argv.join(' ')} exited with ${r.code}:\n${(r.stdout + r.stderr).trim()}`);
    return (performance.now() - start) / 1000;
  });
}

const CPU_COLUMNS: harness.Column<Run>[] = [
  ['driver', false, (r) => r.driver],
  ['target/s', false, (r) => rateLabel(r.rate)],
  ['probe', true, (r) => harness.pct(r.cpu.probe)],
  ['probe CPU s/M', true, (r) => r.perM.probe.toFixed(2)],
  ['policy', true, (r) => harness.pct(r.cpu.policy)],
  ['policy CPU s/M', true, (r) => r.perM.policy.toFixed(2)],
  ['driver CPU', true, (r) => harness.pct(r.cpu.children)],
  ['bench', true, (r) => harness.pct(r.cpu.bench)],
];

const bpftoolRuns = (runs: readonly Run[]) => runs.filter((r) => r.driver === 'bpftool');

/** bench-probe's highest zero-loss rate to a counting receiver (bench/results/probe.json), if it ran. */
function probeOnly(): number | undefined {
  try {
    const entries = JSON.parse(readFileSync(join(BENCH_DIR, 'results', 'probe.json'), 'utf8')) as ResultEntry[];
    return entries.find((x) => x.name === 'highest zero-loss event rate')?.value || undefined;
  } catch {
    return undefined;
  }
}

const METHOD =
  `Probe and policy as deployed (\`make run\`) in a victim namespace, in-kernel detection on, N = 3 ports within 60 s. Driver A: ` +
  `\`bpftool batch file -\` runs the attached program every ${SLICE_MS} ms for the events owed so far, on 74-byte IPv4 SYNs from ${SOURCES} ` +
  `sources, each to ports ${PORTS.join(' and ')} (never a scanner), at ${RATES.map(rateLabel).join(', ')} for ${RUN_SECONDS} s each, then up ` +
  `to ${REFINE_STEPS} geometric bisections. Driver B: \`hping3 -q -S --flood -p 8080\` from the attacker namespace for ${HPING_SECONDS} s, ` +
  `from its own address and with --rand-source. ${harness.flowTerms(DRAIN_TIMEOUT_MS)} The target is met by an ok run offering at least ` +
  `99% of ${count(TARGET_RATE)}/s.`;

function verdictText(runs: readonly Run[], reference: number | undefined): string {
  const b = harness.bestRun(bpftoolRuns(runs));
  const ref = reference
    ? `; bench-probe's probe -> counting receiver: ${count(reference)} events/s, so the policy in the loop carries ` +
      `${((b ? b.offered : 0) / reference).toFixed(2)}x that`
    : '';
  const target = `target ${TARGET_TEXT}: ${b && b.offered >= TARGET_RATE * 0.99 ? 'met' : 'MISSED'}`;
  return `${harness.carriedText(bpftoolRuns(runs), RUN_SECONDS, ', probe + policy')}${ref}. ${target}`;
}

function results(runs: readonly Run[], reference: number | undefined): ResultEntry[] {
  const out: ResultEntry[] = [];
  const b = harness.bestRun(bpftoolRuns(runs));
  const value = b ? Math.round(b.offered) : 0;
  const vs = reference ? (["bench-probe's highest zero-loss rate, probe -> counting receiver (bench/results/probe.json)", reference] as const) : null;
  out.push(
    entry('highest zero-loss event rate, probe + policy (bpftool driver)', value, 'events/s', vs, [TARGET_TEXT, value >= TARGET_RATE * 0.99], {
      seconds: RUN_SECONDS,
      probeCpuSecondsPerMillionEvents: b ? round2(b.perM.probe) : null,
      policyCpuSecondsPerMillionEvents: b ? round2(b.perM.policy) : null,
    }),
  );
  for (const r of runs) {
    const bpftool = r.driver === 'bpftool';
    out.push(
      entry(bpftool ? `events at ${rateLabel(r.rate)}/s offered (bpftool)` : r.driver, Math.round(r.delivered), 'events/s delivered to the policy',
        ['offered (SYNs the program counted)', r.offered], bpftool ? null : ['zero loss', r.zeroLoss], {
        offered: Math.round(r.offered),
        events: r.events,
        received: r.received,
        ...harness.flowFields(r),
      }),
    );
  }
  return out;
}

async function main(): Promise<void> {
  const { m, load, cleanup } = harness.startStackBench(NAME, [['hping3', ['--version']]]);
  const libs = await harness.loadStack();
  const runs = await cleanup.around(async () => {
    const dir = cleanup.tempDir();
    const net = libs.stack.namespaces(SLOT, cleanup);
    const stack = await libs.stack.Stack.start(net, 'in-kernel', cleanup);
    const programId = (await stack.probeStatus()).programId;
    let driver: ChildProcess | undefined;
    cleanup.add('stop the driver', () => driver?.kill('SIGKILL'));

    const frames = Array.from({ length: SOURCES }, (_, s) => s).flatMap((s) =>
      PORTS.map((port) => {
        const file = join(dir, `syn-${s}-${port}.bin`);
        writeFileSync(file, libs.bpf.synFrame(sourceOf(s), net.victimAddr, 40_000 + s, port));
        return file;
      }),
    );
    // Setup check: one frame passes and reaches the policy as one event.
    const c0 = await counts(stack);
    const verdict = runOnce(programId, frames[0]!);
    if (verdict !== XDP_PASS) throw new BenchError(`setup check: the program returned ${verdict} for a SYN, expected XDP_PASS`);
    await waitFor('the setup SYN at the policy', async () => ((await counts(stack)).received > c0.received ? true : undefined), 5000);
    settled = inFlight(await counts(stack));
    console.log(`setup: probe + policy up in ${net.victimNs} (program ${programId}); one SYN reached the policy`);

    const out = await harness.rateSearch(RATES, REFINE_STEPS, async (rate) => {
      // Driver A: bpftool over the rotation of frame files.
      const run = async () => (await drive(programId, frames, rate, RUN_SECONDS * 1000, (c) => (driver = c))).seconds;
      const r = await measure(stack, 'bpftool', rate, run);
      if (r.detections > 0) throw new BenchError(`driver A made ${r.detections} detections: its sources must never be scanners`);
      return r;
    });
    for (const [name, args] of SMOKE ? HPING.slice(1) : HPING) {
      await sleep(500);
      out.push(await floodRun(stack, net, name, args));
    }
    return out;
  });

  const reference = probeOnly();
  const smokeSize = `${RUN_SECONDS} s at ${rateLabel(RATES[0]!)}/s, ${HPING_SECONDS} s of hping3`;
  const report: harness.RateReport<Run> = {
    name: NAME,
    heading: SECTION_HEADING,
    intro:
      'The whole event pipeline with the policy in the loop: SYNs through the attached XDP program, the ring buffer, ' +
      "the probe, the Report stream and the policy's allowlist, decisions and detector, and how many a second it " +
      'carries for 10 s without losing one.',
    m,
    load,
    methods: [`Method: ${METHOD}`],
    tables: [['', harness.columnTable(runs, [['driver', false, (r) => r.driver], ...harness.flowColumns<Run>()])]],
    cpu: CPU_COLUMNS,
    result: verdictText(runs, reference),
    runs,
  };
  harness.publishReport(report, () => results(runs, reference), smokeSize);
  // A smoke run checks that the bpftool run lost nothing and that every run's events all arrived or were counted lost.
  const bad = runs.filter((r) => (r.driver === 'bpftool' && !r.zeroLoss) || !r.closed || r.events === 0);
  if (SMOKE && bad.length > 0) throw new BenchError(`smoke: ${bad.map((r) => `${r.driver}: ${harness.resultText(r)}, ${r.events} events`).join('; ')}`);
}

await runBench('pipeline', main);
