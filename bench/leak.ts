// `make bench-leak`: how many SYNs a fast scanner (nmap -T5 from the attacker
// namespace) gets to the victim's stack after the one that makes it a scanner,
// with the in-kernel detector and with the policy alone, probe + policy as
// deployed (@packetwatch/test-support/stack). The policy's Watch feed gives the
// SYNs that passed in order, so the crossing one is found among them.
import { spawn } from 'node:child_process';
// Types only (erased): the modules themselves are imported once the build is checked.
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { WatchEvent } from '@packetwatch/proto';
import { Cleanup, type NamespacePair, sleep, waitFor } from '@packetwatch/test-support';
import type { DetectionMode, Setup, Stack } from '@packetwatch/test-support/stack';
import { loadBuilt, startStackBench } from './harness.js';
import {
  BenchError,
  type Machine,
  type ResultEntry,
  count,
  machineText,
  round2,
  runBench,
  table,
  today,
  SMOKE,
  publish,
  sectionFacts,
} from './report.js';

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

interface Libs {
  grpc: typeof import('@grpc/grpc-js');
  proto: typeof import('@packetwatch/proto');
  stack: typeof import('@packetwatch/test-support/stack');
  services: typeof import('@packetwatch/test-support/services');
}

interface NmapPorts {
  open: number;
  closed: number;
  filtered: number;
}

interface Row {
  mode: DetectionMode;
  /** N of both detectors. */
  n: number;
  nmapSeconds: number;
  /** Still scanning at NMAP_CAP_MS: stopped, its report lost. */
  nmapStopped: boolean;
  /** nmap's own "scanned in" figure. */
  nmapReportedSeconds: number;
  /** What nmap reported; undefined when it was stopped. */
  ports: NmapPorts | undefined;
  /** New-connection SYNs the program saw. */
  syn: number;
  /** SYNs the program let through (events counter), the crossing one and those before it included. */
  passed: number;
  /** The same from the kernel's other counters: syn - synDropped. */
  passedBySyn: number;
  dropped: number;
  ringbufFull: number;
  /** 1-based position of the crossing SYN among those that passed. */
  crossing: number;
  /** SYNs that passed after the crossing one. */
  leaked: number;
  /** Connection events the policy's feed showed for the attacker, and those it logged it skipped. */
  watched: number;
  feedSkipped: number;
  blocked: boolean;
}

async function loadLibs(): Promise<Libs> {
  const [grpc, proto, stack, services] = await loadBuilt(() =>
    Promise.all([import('@grpc/grpc-js'), import('@packetwatch/proto'), import('@packetwatch/test-support/stack'), import('@packetwatch/test-support/services')]),
  );
  return { grpc, proto, stack, services };
}

/** What nmap reported: explicit port lines and the "Not shown: N <state> tcp ports" summaries. */
function parseNmap(out: string): { ports: NmapPorts; seconds: number } {
  const ports: NmapPorts = { open: 0, closed: 0, filtered: 0 };
  const add = (state: string, n: number) => {
    // open|filtered and closed|filtered count as filtered: nmap got no answer that tells.
    if (state === 'open') ports.open += n;
    else if (state === 'closed') ports.closed += n;
    else ports.filtered += n;
  };
  for (const m of out.matchAll(/^\d+\/tcp\s+(\S+)/gm)) add(m[1] ?? '', 1);
  for (const line of out.split('\n').filter((l) => /^(Not shown|All \d+ scanned ports)/.test(l.trim()))) {
    for (const m of line.matchAll(/(\d+) (\S+) tcp ports/g)) add(m[2] ?? '', Number(m[1]));
  }
  const seconds = Number(/scanned in ([\d.]+) seconds/.exec(out)?.[1] ?? NaN);
  return { ports, seconds };
}

interface NmapRun {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  stopped: boolean;
}

/** Runs nmap in a namespace; stops it (SIGTERM) at NMAP_CAP_MS. */
async function nmap(ns: string, args: readonly string[], cleanup: Cleanup): Promise<NmapRun> {
  const child = spawn('ip', ['netns', 'exec', ns, 'nmap', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.add('stop nmap', () => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const start = performance.now();
  let stopped = false;
  const timer = setTimeout(() => {
    stopped = true;
    child.kill('SIGTERM');
  }, NMAP_CAP_MS);
  const code = await new Promise<number | null>((resolve) => {
    child.on('close', (c) => resolve(c));
    child.on('error', (e) => {
      stderr += e.message;
      resolve(null);
    });
  });
  clearTimeout(timer);
  return { code, stdout, stderr, seconds: (performance.now() - start) / 1000, stopped };
}

/** The policy's feed of connections from one source, from `sinceMs` on (replayed, then followed). */
class Feed {
  readonly ports: number[] = [];
  readonly #stream: ClientReadableStream<WatchEvent>;
  #error: Error | undefined;

  constructor(libs: Libs, stack: Stack, source: string, sinceMs: number) {
    const connection = libs.proto.WatchEventKind.WATCH_EVENT_KIND_CONNECTION;
    this.#stream = stack.svc.policyClient.watch({ source, since: new Date(sinceMs) });
    this.#stream.on('data', (e: WatchEvent) => {
      if (e.kind === connection) this.ports.push(e.port);
    });
    this.#stream.on('error', (e: Error & { code?: number }) => {
      if (e.code !== libs.grpc.status.CANCELLED) this.#error = e;
    });
  }

  get error(): Error | undefined {
    return this.#error;
  }

  close(): void {
    this.#stream.cancel();
  }
}

/** 1-based position of the event at which `n` distinct ports have been seen; 0 if never. */
function crossingIndex(ports: readonly number[], n: number): number {
  const seen = new Set<number>();
  for (const [i, p] of ports.entries()) {
    seen.add(p);
    if (seen.size >= n) return i + 1;
  }
  return 0;
}

/** One setup's stack, attacker feed and scan. */
class Run {
  private constructor(
    private readonly libs: Libs,
    readonly net: NamespacePair,
    readonly setup: Setup,
    readonly stack: Stack,
    private readonly feed: Feed,
    private readonly cleanup: Cleanup,
  ) {}

  get label(): string {
    return this.libs.stack.setupText(this.setup);
  }

  static async prepare(libs: Libs, net: NamespacePair, setup: Setup, cleanup: Cleanup): Promise<Run> {
    const stack = await libs.stack.Stack.start(net, setup.mode, cleanup, libs.stack.setupEnv(setup));
    const feed = new Feed(libs, stack, net.attackerAddr, Date.now() - 1000);
    cleanup.add('close the feed', () => feed.close());
    const run = new Run(libs, net, setup, stack, feed, cleanup);
    if ((await run.decisions()).length > 0) throw new BenchError(`setup check (${run.label}): the policy starts with decisions`);
    await run.warmUp();
    return run;
  }

  /**
   * Scans from WARM_SOURCES other (spoofed) sources first, each blocked in
   * turn, so that the scan meets services that have detected before, as a
   * deployment that has been running would: the first detection after a
   * start is slower (its code paths are cold).
   */
  async warmUp(): Promise<void> {
    const { net, label } = this;
    const { n } = this.setup;
    const sources = Array.from({ length: WARM_SOURCES }, (_, i) => `198.18.${SLOT}.${i + 1}`);
    const runs = await Promise.all(
      sources.map((src) =>
        net.inAttacker('hping3', ['-S', '-p', '++8001', '-c', String(n), '-i', 'u10000', '-a', src, net.victimAddr], 20_000),
      ),
    );
    const sent = new RegExp(`^${n} packets transmitted`, 'm');
    const failed = runs.find((r) => !sent.test(r.stdout + r.stderr));
    if (failed) throw new BenchError(`hping3 (warm-up, ${label}) did not send its SYNs (exit ${failed.code}):\n${(failed.stderr || failed.stdout).trim()}`);
    try {
      await waitFor(`the warm-up blocks (${label})`, async () => ((await this.decisions()).length >= sources.length ? true : undefined), 10_000);
    } catch {
      throw new BenchError(`setup check (${label}): ${(await this.decisions()).length} of ${sources.length} warm-up scanners were blocked`);
    }
  }

  async decisions(): Promise<string[]> {
    return (await this.libs.services.listAllDecisions(this.stack.svc.policyClient, false, 3000)).map((d) => d.ip);
  }

  async blocked(): Promise<boolean> {
    return (await this.decisions()).includes(this.net.attackerAddr);
  }

  async scan(): Promise<Row> {
    const { net, label, stack, feed } = this;
    const { mode, n } = this.setup;
    const st = this.libs.stack;
    const before = await stack.probeStatus();
    const r = await nmap(net.attackerNs, nmapArgs(net.victimAddr), this.cleanup);
    if (!r.stopped && r.code !== 0) throw new BenchError(`nmap ${nmapArgs(net.victimAddr).join(' ')} (${label}) exited with ${r.code}:\n${(r.stderr || r.stdout).trim()}`);
    const parsed = r.stopped ? undefined : parseNmap(r.stdout);

    let blocked = true;
    try {
      await waitFor(`the policy's decision on ${net.attackerAddr}`, async () => ((await this.blocked()) ? true : undefined), 10_000);
    } catch {
      blocked = false;
    }
    const after = await stack.probeStatus();
    const delta = (name: 'syn' | 'events' | 'synDropped' | 'ringbufFull') => st.counterDelta(before, after, name);
    if (delta('syn') === 0) throw new BenchError(`setup check (${label}): no SYN of the scan reached the XDP program on ${net.victimIf}`);
    const crossingNow = () => crossingIndex(feed.ports, n);
    try {
      await waitFor('the crossing SYN in the feed', () => (crossingNow() > 0 ? true : undefined), 5000);
    } catch {
      // reported: crossing none
    }
    await sleep(200); // the rest of the feed, for the checks
    feed.close();
    if (feed.error) throw new BenchError(`the policy's Watch feed failed (${label}): ${feed.error.message}`);
    const crossing = crossingNow();
    const passed = delta('events');
    return {
      mode,
      n,
      nmapSeconds: r.seconds,
      nmapStopped: r.stopped,
      nmapReportedSeconds: parsed?.seconds ?? NaN,
      ports: parsed?.ports,
      syn: delta('syn'),
      passed,
      passedBySyn: delta('syn') - delta('synDropped'),
      dropped: delta('synDropped'),
      ringbufFull: delta('ringbufFull'),
      crossing,
      leaked: crossing > 0 ? passed - crossing : passed,
      watched: feed.ports.length,
      feedSkipped: stack.policyLog('slow watcher missed feed events').reduce((n, rec) => n + (typeof rec.skipped === 'number' ? rec.skipped : 0), 0),
      blocked,
    };
  }
}

function met(r: Row): boolean {
  return r.blocked && r.crossing > 0 && r.leaked <= TARGET_LEAKED[r.mode];
}

function rowLabel(r: Row): string {
  return `${r.mode}, N = ${r.n}`;
}

function nmapTime(seconds: number, stopped: boolean): string {
  return stopped ? `> ${(NMAP_CAP_MS / 1000).toFixed(0)} (stopped)` : seconds.toFixed(1);
}

function portsText(p: NmapPorts | undefined): string {
  return p ? `${count(p.open)} open, ${count(p.closed)} closed, ${count(p.filtered)} filtered` : 'no report (stopped)';
}

function report(r: Row): void {
  console.log(
    `${rowLabel(r)}: nmap ${r.nmapStopped ? `stopped after ${r.nmapSeconds.toFixed(1)} s` : `took ${r.nmapSeconds.toFixed(1)} s`}; ` +
      `${count(r.syn)} SYNs, ${count(r.passed)} reached the victim (crossing SYN #${r.crossing}), ` +
      `${count(r.leaked)} after the crossing one, ${count(r.dropped)} dropped; nmap saw ${portsText(r.ports)}`,
  );
}

function leakTable(rows: readonly Row[]): string {
  return table(
    ['detection', 'nmap s', 'SYNs sent', 'reached the victim', 'crossing SYN', 'leaked after it', 'dropped by XDP', 'target', 'result'],
    rows.map((r) => [
      rowLabel(r),
      nmapTime(r.nmapSeconds, r.nmapStopped),
      count(r.syn),
      count(r.passed),
      r.crossing > 0 ? `#${r.crossing}` : 'none',
      count(r.leaked),
      count(r.dropped),
      `<= ${TARGET_LEAKED[r.mode]}`,
      met(r) ? 'met' : 'MISSED',
    ]),
    [false, true, true, true, true, true, true, true, false],
  );
}

function checksTable(rows: readonly Row[]): string {
  return table(
    ['detection', 'events (passed)', 'syn - synDropped', 'feed events', 'feed skipped', 'ringbufFull', 'decision', "nmap's report"],
    rows.map((r) => [
      rowLabel(r),
      count(r.passed),
      count(r.passedBySyn),
      count(r.watched),
      count(r.feedSkipped),
      count(r.ringbufFull),
      r.blocked ? 'yes' : 'NO',
      r.ports ? `${portsText(r.ports)} in ${r.nmapReportedSeconds.toFixed(2)} s` : 'none (stopped)',
    ]),
    [false, true, true, true, true, true, false, false],
  );
}

function baselineText(b: NmapRun, ports: NmapPorts | undefined): string {
  return `without Packetwatch (no probe, no policy on the victim) the same scan ${b.stopped ? `was still running after ${b.seconds.toFixed(1)} s` : `took ${b.seconds.toFixed(1)} s`} and nmap saw ${portsText(ports)}`;
}

function verdictText(rows: readonly Row[]): string {
  return rows.map((r) => `${rowLabel(r)}: ${count(r.leaked)} leaked vs <= ${TARGET_LEAKED[r.mode]}, ${met(r) ? 'met' : 'MISSED'}`).join('; ');
}

const methodText = (setups: readonly Setup[]) =>
  `Probe and policy as deployed (\`make run\`) in a victim namespace, N ports within 60 s for both detectors ` +
  `(${setups.map((x) => `${x.mode} at N = ${x.n}`).join(', ')}), no block cap, each setup with namespaces and services of its ` +
  `own, warmed by detecting ${WARM_SOURCES} spoofed sources (hping3) first. From the attacker namespace: ` +
  `\`nmap ${nmapArgs('<victim>').join(' ')}\` (nothing listens on the victim). "reached the victim" = SYNs the program let ` +
  `through (its events counter); the crossing SYN is the one of the policy's Watch feed that brings the distinct ports to N, ` +
  `"leaked after it" those that passed after it. A scan still running after ${NMAP_CAP_MS / 1000} s is stopped; each scan ` +
  `starts ${STAGGER_AFTER_BLOCK_MS / 1000} s after the one before was blocked.`;

function section(m: Machine, date: string, load: number, rows: readonly Row[], baseline: string, setups: readonly Setup[]): string {
  return [
    SECTION_HEADING,
    '',
    'How many SYNs of a fast scanner reach the victim after the one that makes it a scanner, with the in-kernel ' +
      `detector (at N = ${setups.filter((x) => x.mode === 'in-kernel').map((x) => x.n).join(', ')}) and with the policy alone.`,
    '',
    ...sectionFacts('leak', date, m, load),
    `- Method: ${methodText(setups)}`,
    '',
    '```text',
    leakTable(rows),
    '```',
    '',
    'Checks: the same count from other counters, the feed, and the decision:',
    '',
    '```text',
    checksTable(rows),
    '```',
    '',
    `For comparison, ${baseline}.`,
    '',
    `Targets (SYNs after the crossing one: none with the in-kernel detector at every N, <= ${TARGET_LEAKED['policy alone']} with the policy alone): ${verdictText(rows)}.`,
    '',
    '_This section is rewritten by `make bench-leak`._',
    '',
  ].join('\n');
}

function results(rows: readonly Row[], baseline: NmapRun): ResultEntry[] {
  const out = rows.flatMap((r): ResultEntry[] => [
    {
      name: `SYNs leaked after the crossing one, ${rowLabel(r)}`,
      value: r.leaked,
      unit: 'SYNs',
      comparison: 'target',
      comparisonValue: TARGET_LEAKED[r.mode],
      target: `<= ${TARGET_LEAKED[r.mode]} SYNs after the crossing one`,
      met: met(r),
      ports: PORTS,
      synSent: r.syn,
      reachedVictim: r.passed,
      crossingSyn: r.crossing,
      droppedByXdp: r.dropped,
      nmapOpenOrClosed: r.ports ? r.ports.open + r.ports.closed : null,
      nmapFiltered: r.ports ? r.ports.filtered : null,
      blocked: r.blocked,
    },
    {
      name: `nmap duration, ${rowLabel(r)}`,
      value: round2(r.nmapSeconds),
      unit: 's',
      comparison: 'nmap duration without Packetwatch',
      comparisonValue: round2(baseline.seconds),
      nmapReportedSeconds: Number.isFinite(r.nmapReportedSeconds) ? r.nmapReportedSeconds : null,
      stopped: r.nmapStopped,
      stoppedAtSeconds: r.nmapStopped ? NMAP_CAP_MS / 1000 : null,
      ports: PORTS,
    },
  ]);
  out.push({
    name: 'nmap duration, without Packetwatch',
    value: round2(baseline.seconds),
    unit: 's',
    comparison: null,
    comparisonValue: null,
    stopped: baseline.stopped,
    ports: PORTS,
  });
  return out;
}

async function main(): Promise<void> {
  const { m, load, cleanup } = startStackBench('leak', [['nmap', ['--version']], ['hping3', ['--version']]]);
  const libs = await loadLibs();
  let baseline: NmapRun | undefined;
  const rows = await cleanup.around(async () => {
    // The scan against a victim nothing protects, for comparison.
    const bare = libs.stack.namespaces(SLOT + libs.stack.SETUPS.length, cleanup);
    baseline = await nmap(bare.attackerNs, nmapArgs(bare.victimAddr), cleanup);
    if (!baseline.stopped && baseline.code !== 0) throw new BenchError(`nmap (without Packetwatch) exited with ${baseline.code}:\n${(baseline.stderr || baseline.stdout).trim()}`);
    console.log(`without Packetwatch: nmap took ${baseline.seconds.toFixed(1)} s`);
    const runs: Run[] = [];
    for (const [i, setup] of libs.stack.SETUPS.entries()) runs.push(await Run.prepare(libs, libs.stack.namespaces(SLOT + i, cleanup), setup, cleanup));
    // A scan that is blocked early spends most of its time waiting on
    // filtered ports (about 100 s for 10,000 at -T5), so the scans overlap:
    // the next starts once the one before has been blocked, when all it
    // still sends is retries the program drops.
    const scans: Promise<Row>[] = [];
    for (const run of runs) {
      const scan = run.scan();
      scan.catch(() => {}); // awaited below
      scans.push(scan);
      if (run === runs.at(-1)) break;
      const blockedBy = Date.now() + STAGGER_MAX_MS;
      while (Date.now() < blockedBy && !(await run.blocked())) await sleep(50);
      await sleep(STAGGER_AFTER_BLOCK_MS);
    }
    const out: Row[] = [];
    for (const scan of scans) {
      const row = await scan;
      report(row);
      out.push(row);
    }
    for (const run of runs) await run.stack.stop();
    return out;
  });

  const date = today();
  console.log('');
  console.log(`Ports leaked to a fast scanner, ${date}: ${machineText(m)}; load average ${load.toFixed(2)} at the start${SMOKE ? ' (smoke run)' : ''}`);
  console.log('');
  console.log(leakTable(rows));
  console.log('');
  console.log(checksTable(rows));
  console.log('');
  if (!baseline) throw new BenchError('the scan without Packetwatch did not run');
  const baselineSummary = baselineText(baseline, baseline.stopped ? undefined : parseNmap(baseline.stdout).ports);
  console.log(baselineSummary);
  console.log(`target: ${verdictText(rows)}`);
  const ran = baseline;
  publish('leak', SECTION_HEADING, () => results(rows, ran), () => section(m, date, load, rows, baselineSummary, libs.stack.SETUPS), `-p ${PORTS}`);
}

await runBench('leak', main);
