// `make bench-leak`: how many SYNs a fast scanner (nmap -T5 from the attacker namespace) gets to the victim's stack after
// the one that makes it a scanner, with the in-kernel detector and with the policy alone, probe + policy as deployed
// (@packetwatch/test-support/stack). The policy's Watch feed gives the SYNs that passed in order: the crossing one is among them.
// Types only (erased): the modules themselves are imported once the build is checked.
import type { WatchEvent } from '@packetwatch/proto';
import { type Cleanup, type NamespacePair, sleep, waitFor } from '@packetwatch/test-support';
import type { DetectionMode, Setup } from '@packetwatch/test-support/stack';
import { type Column, type StackLibs, columnTable, loadStack, startStackBench, tableBlocks } from './harness.js';
import { BenchError, type Machine, commandError, type ResultEntry, SMOKE, count, entry, publish, round2, runBench, sectionFacts, sectionText, today } from './report.js';

const SECTION_HEADING = '## Ports leaked to a fast scanner';
const PORTS = SMOKE ? '1-200' : '1-10000';
const nmapArgs = (victim: string) => ['-n', '-Pn', '-sS', '-T5', '-p', PORTS, victim];
// Once blocked, nmap -T5 crawls (it takes the drops for congestion); its count is settled long before, so it is stopped at the cap.
const NMAP_CAP_MS = SMOKE ? 5000 : 120_000;
/** SYNs a scan may get past the crossing one: none with the in-kernel detector (at every N), 5 with the policy alone. */
const TARGET_LEAKED: Record<DetectionMode, number> = { 'in-kernel': 0, 'policy alone': 5 };
/** Sources (spoofed by hping3) each setup detects and blocks before the scan. */
const WARM_SOURCES = 20;
/** The next scan starts this long after the one before was blocked, or after STAGGER_MAX_MS. */
const STAGGER_AFTER_BLOCK_MS = 1000;
const STAGGER_MAX_MS = 10_000;
const SLOT = 241;

/** What nmap reported, its own "scanned in" seconds too; open|filtered and closed|filtered count as filtered (no answer that tells). */
type NmapReport = { open: number; closed: number; filtered: number; seconds: number };

/** A scan: the wall time of the nmap process; stopped: still scanning at NMAP_CAP_MS, its report lost. */
type NmapRun = { seconds: number; stopped: boolean; report?: NmapReport };

/** What nmap reported: explicit port lines and the "Not shown: N <state> tcp ports" summaries (also after "All N scanned ports"). */
function parseNmap(out: string): NmapReport {
  const report: NmapReport = { open: 0, closed: 0, filtered: 0, seconds: Number(/scanned in ([\d.]+) seconds/.exec(out)?.[1] ?? NaN) };
  const add = (state = '', n = 1) => (report[state === 'open' || state === 'closed' ? state : 'filtered'] += n);
  for (const m of out.matchAll(/^\d+\/tcp\s+(\S+)/gm)) add(m[1]);
  for (const m of out.matchAll(/(\d+) (\S+) tcp ports/g)) add(m[2], Number(m[1]));
  return report;
}

/** nmapArgs from the attacker namespace against the victim; stopped at NMAP_CAP_MS; fails on another exit than 0. */
async function nmap(net: NamespacePair, label: string): Promise<NmapRun> {
  const start = performance.now();
  const r = await net.inAttacker('nmap', nmapArgs(net.victimAddr), NMAP_CAP_MS).catch((e: Error & { killed?: boolean }) => {
    if (e.killed) return undefined; // the timeout's SIGTERM
    throw commandError(`nmap (${label}) did not run`, e);
  });
  const seconds = (performance.now() - start) / 1000;
  if (!r) return { seconds, stopped: true };
  if (r.code !== 0) throw new BenchError(`nmap ${nmapArgs(net.victimAddr).join(' ')} (${label}) exited with ${r.code}:\n${(r.stderr || r.stdout).trim()}`);
  return { seconds, stopped: false, report: parseNmap(r.stdout) };
}

/** 1-based position of the event at which `n` distinct ports have been seen; 0 if never. */
function crossingIndex(ports: readonly number[], n: number): number {
  const seen = new Set<number>();
  return ports.findIndex((p) => seen.add(p).size >= n) + 1;
}

/** One setup's stack, warmed up, with the policy's feed of the attacker's connections: its scan, and whether it is blocked. */
async function prepare({ grpc, proto, stack: st, services }: StackLibs, net: NamespacePair, setup: Setup, cleanup: Cleanup) {
  const label = st.setupText(setup);
  const { n } = setup;
  const stack = await st.Stack.start(net, setup.mode, cleanup, st.setupEnv(setup));
  const ports: number[] = [];
  let feedError: Error | undefined;
  const feed = stack.svc.policyClient.watch({ source: net.attackerAddr, since: new Date(Date.now() - 1000) });
  cleanup.add('close the feed', () => feed.cancel());
  feed.on('data', (e: WatchEvent) => {
    if (e.kind === proto.WatchEventKind.WATCH_EVENT_KIND_CONNECTION) ports.push(e.port);
  });
  feed.on('error', (e: Error & { code?: number }) => {
    if (e.code !== grpc.status.CANCELLED) feedError = e;
  });
  const decisions = async () => (await services.listAllDecisions(stack.svc.policyClient, false, 3000)).map((d) => d.ip);
  const blocked = async () => (await decisions()).includes(net.attackerAddr);
  if ((await decisions()).length > 0) throw new BenchError(`setup check (${label}): the policy starts with decisions`);

  // Scans from other (spoofed) sources first, each blocked in turn, so that the scan meets services that have detected
  // before, as a deployment that has been running would: the first detection after a start is slower (cold code paths).
  const sources = Array.from({ length: WARM_SOURCES }, (_, i) => `198.18.${SLOT}.${i + 1}`);
  const hping = (src: string) => net.inAttacker('hping3', ['-S', '-p', '++8001', '-c', String(n), '-i', 'u10000', '-a', src, net.victimAddr], 20_000);
  const sent = new RegExp(`^${n} packets transmitted`, 'm');
  const failed = (await Promise.all(sources.map(hping))).find((r) => !sent.test(r.stdout + r.stderr));
  if (failed) throw new BenchError(`hping3 (warm-up, ${label}) did not send its SYNs (exit ${failed.code}):\n${(failed.stderr || failed.stdout).trim()}`);
  await waitFor(`the warm-up blocks (${label})`, async () => ((await decisions()).length >= sources.length ? true : undefined), 10_000).catch(async () => {
    throw new BenchError(`setup check (${label}): ${(await decisions()).length} of ${sources.length} warm-up scanners were blocked`);
  });

  const scan = async () => {
    const before = await stack.probeStatus();
    const run = await nmap(net, label);
    const isBlocked = await waitFor(`the policy's decision on ${net.attackerAddr}`, async () => ((await blocked()) ? true : undefined), 10_000).catch(() => false);
    const after = await stack.probeStatus();
    const delta = (name: 'syn' | 'events' | 'synDropped' | 'ringbufFull') => st.counterDelta(before, after, name);
    if (delta('syn') === 0) throw new BenchError(`setup check (${label}): no SYN of the scan reached the XDP program on ${net.victimIf}`);
    await waitFor('the crossing SYN in the feed', () => (crossingIndex(ports, n) > 0 ? true : undefined), 5000).catch(() => undefined); // else: none
    await sleep(200); // the rest of the feed, for the checks
    feed.cancel();
    if (feedError) throw new BenchError(`the policy's Watch feed failed (${label}): ${feedError.message}`);
    const crossing = crossingIndex(ports, n);
    const skipped = stack.policyLog('slow watcher missed feed events').reduce((k, rec) => k + (typeof rec.skipped === 'number' ? rec.skipped : 0), 0);
    // passed: SYNs the program let through (events counter), the crossing one included; crossing: its 1-based position
    // among them (0: none); leaked: those after it; watched: connection events of the policy's feed for the attacker.
    return {
      setup,
      label,
      nmap: run,
      syn: delta('syn'),
      passed: delta('events'),
      dropped: delta('synDropped'),
      ringbufFull: delta('ringbufFull'),
      crossing,
      leaked: delta('events') - crossing,
      watched: ports.length,
      feedSkipped: skipped,
      blocked: isBlocked,
    };
  };
  return { stack, blocked, scan };
}

/** A scan's row. */
type Row = Awaited<ReturnType<Awaited<ReturnType<typeof prepare>>['scan']>>;

const target = (r: Row) => TARGET_LEAKED[r.setup.mode];
const met = (r: Row) => r.blocked && r.crossing > 0 && r.leaked <= target(r);
const portsText = (p: NmapReport | undefined) => (p ? `${count(p.open)} open, ${count(p.closed)} closed, ${count(p.filtered)} filtered` : 'no report (stopped)');

const LEAK: Column<Row>[] = [
  ['detection', false, (r) => r.label],
  ['nmap s', true, (r) => (r.nmap.stopped ? `> ${(NMAP_CAP_MS / 1000).toFixed(0)} (stopped)` : r.nmap.seconds.toFixed(1))],
  ['SYNs sent', true, (r) => count(r.syn)],
  ['reached the victim', true, (r) => count(r.passed)],
  ['crossing SYN', true, (r) => (r.crossing > 0 ? `#${r.crossing}` : 'none')],
  ['leaked after it', true, (r) => count(r.leaked)],
  ['dropped by XDP', true, (r) => count(r.dropped)],
  ['target', true, (r) => `<= ${target(r)}`],
  ['result', false, (r) => (met(r) ? 'met' : 'MISSED')],
];
const CHECKS: Column<Row>[] = [
  ['detection', false, (r) => r.label],
  ['events (passed)', true, (r) => count(r.passed)],
  ['syn - synDropped', true, (r) => count(r.syn - r.dropped)],
  ['feed events', true, (r) => count(r.watched)],
  ['feed skipped', true, (r) => count(r.feedSkipped)],
  ['ringbufFull', true, (r) => count(r.ringbufFull)],
  ['decision', false, (r) => (r.blocked ? 'yes' : 'NO')],
  ["nmap's report", false, ({ nmap: { report } }) => (report ? `${portsText(report)} in ${report.seconds.toFixed(2)} s` : 'none (stopped)')],
];

const methodText = (setups: readonly Setup[]) =>
  `Probe and policy as deployed (\`make run\`) in a victim namespace, N ports within 60 s for both detectors (${setups.map(setupLabel).join(', ')}), ` +
  `no block cap, each setup with namespaces and services of its own, warmed by detecting ${WARM_SOURCES} spoofed sources (hping3) first. ` +
  `From the attacker namespace: \`nmap ${nmapArgs('<victim>').join(' ')}\` (nothing listens on the victim). "reached the victim" = SYNs the ` +
  "program let through (its events counter); the crossing SYN is the one of the policy's Watch feed that brings the distinct ports to N, " +
  `"leaked after it" those that passed after it. A scan still running after ${NMAP_CAP_MS / 1000} s is stopped; each scan starts ` +
  `${STAGGER_AFTER_BLOCK_MS / 1000} s after the one before was blocked.`;
const setupLabel = (x: Setup) => `${x.mode} at N = ${x.n}`;

function section(m: Machine, date: string, load: number, rows: readonly Row[], baseline: NmapRun, setups: readonly Setup[]): string {
  const took = baseline.stopped ? `was still running after ${baseline.seconds.toFixed(1)} s` : `took ${baseline.seconds.toFixed(1)} s`;
  const verdicts = rows.map((r) => `${r.label}: ${count(r.leaked)} leaked vs <= ${target(r)}, ${met(r) ? 'met' : 'MISSED'}`).join('; ');
  const kernelNs = setups.filter((x) => x.mode === 'in-kernel').map((x) => x.n).join(', ');
  return sectionText(
    SECTION_HEADING,
    'leak',
    'How many SYNs of a fast scanner reach the victim after the one that makes it a scanner, with the in-kernel ' +
      `detector (at N = ${kernelNs}) and with the policy alone.`,
    [...sectionFacts('leak', date, m, load), `- Method: ${methodText(setups)}`],
    [
      ...tableBlocks([
        ['', columnTable(rows, LEAK)],
        ['Checks: the same count from other counters, the feed, and the decision:', columnTable(rows, CHECKS)],
      ]),
      `For comparison, without Packetwatch (no probe, no policy on the victim) the same scan ${took} and nmap saw ${portsText(baseline.report)}.`,
      '',
      `Targets (SYNs after the crossing one: none with the in-kernel detector at every N, <= ${TARGET_LEAKED['policy alone']} with the policy alone): ${verdicts}.`,
      '',
    ],
  );
}

function results(rows: readonly Row[], baseline: NmapRun): ResultEntry[] {
  const duration = (what: string, run: NmapRun, vs: [string, number] | null, details: object) =>
    entry(`nmap duration, ${what}`, round2(run.seconds), 's', vs, null, { ...details, stopped: run.stopped, ports: PORTS });
  return [
    ...rows.flatMap((r) => [
      entry(`SYNs leaked after the crossing one, ${r.label}`, r.leaked, 'SYNs', ['target', target(r)], [`<= ${target(r)} SYNs after the crossing one`, met(r)], {
        ports: PORTS,
        synSent: r.syn,
        reachedVictim: r.passed,
        crossingSyn: r.crossing,
        droppedByXdp: r.dropped,
        nmapOpenOrClosed: r.nmap.report ? r.nmap.report.open + r.nmap.report.closed : null,
        nmapFiltered: r.nmap.report?.filtered ?? null,
        blocked: r.blocked,
      }),
      duration(r.label, r.nmap, ['nmap duration without Packetwatch', baseline.seconds], {
        nmapReportedSeconds: Number.isFinite(r.nmap.report?.seconds) ? r.nmap.report!.seconds : null,
        stoppedAtSeconds: r.nmap.stopped ? NMAP_CAP_MS / 1000 : null,
      }),
    ]),
    duration('without Packetwatch', baseline, null, {}),
  ];
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench('leak', [['nmap', ['--version']], ['hping3', ['--version']]]);
  const libs = await loadStack();
  const setups = libs.stack.SETUPS;
  const [baseline, rows] = await cleanup.around(async () => {
    // The scan against a victim nothing protects, for comparison.
    const bare = await nmap(libs.stack.namespaces(SLOT + setups.length, cleanup), 'without Packetwatch');
    console.log(`without Packetwatch: nmap took ${bare.seconds.toFixed(1)} s`);
    const runs = [];
    for (const [i, setup] of setups.entries()) runs.push(await prepare(libs, libs.stack.namespaces(SLOT + i, cleanup), setup, cleanup));
    // A scan blocked early spends most of its time waiting on filtered ports (about 100 s for 10,000 at -T5), so the
    // scans overlap: the next starts once the one before has been blocked, when all it still sends is retries the program drops.
    const scans: Promise<Row>[] = [];
    for (const run of runs) {
      scans.push(run.scan());
      scans.at(-1)!.catch(() => {}); // awaited below
      if (run === runs.at(-1)) break;
      const blockedBy = Date.now() + STAGGER_MAX_MS;
      while (Date.now() < blockedBy && !(await run.blocked())) await sleep(50);
      await sleep(STAGGER_AFTER_BLOCK_MS);
    }
    const out = await Promise.all(scans);
    await Promise.all(runs.map((run) => run.stack.stop()));
    return [bare, out] as const;
  });
  const text = section(m, today(), load, rows, baseline, setups);
  console.log(`\n${text}`);
  publish('leak', SECTION_HEADING, () => results(rows, baseline), () => text, `-p ${PORTS}`);
}

await runBench('leak', main);
