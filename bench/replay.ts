// `make bench-replay`: how fast `packetwatchctl replay` runs a capture through
// the rule, in frames a second, the CLI binary timed as a user runs it (node's
// start included), on generated captures: mixed traffic (target 1,000,000
// frames/s) and every frame a SYN from a new source (the detector's heaviest path).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TCP_FLAGS, checksum, synFrame, tcpFrame } from '@packetwatch/bpf';
import { PcapWriter } from '@packetwatch/test-support';
import { RANGES, type SourceRange, SourceFrames } from './population.js';
import { BenchError, REPO_ROOT, SMOKE, count, entry, machine, median, publish, round2, runBench, sectionFacts, sectionText, table, today } from './report.js';

const NAME = 'replay';
const SECTION_HEADING = '## Replay';
const FRAMES = SMOKE ? 50_000 : 5_000_000;
const RUNS = SMOKE ? 1 : 3;
const TARGET = 1_000_000;
const CLI = join(REPO_ROOT, 'services/cli/dist/main.js');
const T0 = Date.UTC(2026, 10, 30, 12, 0, 0);
const SPAN_MS = 100_000;
const CLIENTS = 50_000;
const BENIGN = 500_000;
const SCANNERS = SMOKE ? 500 : 5_000;
/** The policy's defaults, but for the budget: without it every block is permanent and each scanner is decided on once (capped blocks of 60 s would let a scanner sweeping for 100 s be decided on again). */
const SETTINGS = { PW_MAX_BLOCKS_PER_MINUTE: '0' };

/** IPv4 10.0.0.0/8 and up, source i of population `tag` at ((10 + tag) << 24) + i; IPv6 a /64 each (keyed by PW_IPV6_PREFIX). */
const V4: SourceRange = { family: 4, base: 10 << 24, size: 2 ** 30, label: 'IPv4 from 10.0.0.0' };
/** SYN or ACK frames (patched in place) from a range to the host, from port 40000. */
const frames = (range: SourceRange, dst: string) => ({
  syn: new SourceFrames(range, (src, port) => synFrame(src, dst, 40000, port), checksum),
  ack: new SourceFrames(range, (src, port) => tcpFrame(src, dst, 40000, port, TCP_FLAGS.ACK), checksum),
});
const [FAM4, FAM6] = [frames(V4, '192.0.2.1'), frames(RANGES.v6, '2001:db8:ffff::1')];

/** A capture of FRAMES frames over SPAN_MS: frame n from make(n); returns how many were written. */
function capture(path: string, make: (n: number) => Buffer): number {
  const w = new PcapWriter(path, 1);
  for (let n = 0; n < FRAMES; n++) w.write(T0 + (n * SPAN_MS) / FRAMES, make(n));
  w.close();
  return w.frames;
}

/** Of every 100 frames: 60 ACKs of clients, 30 SYNs of benign sources (one port each), 10 of scanners sweeping ports. */
function mixed(path: string): number {
  const scannerPort = new Uint16Array(SCANNERS);
  return capture(path, (n) => {
    const [slot, i, s] = [n % 100, (n * 2654435761) >>> 0, (n / 100) % SCANNERS | 0];
    const [tag, k, syn, port] = slot < 60 ? [1, i % CLIENTS, false, 443] : slot < 90 ? [2, i % BENIGN, true, i % 2 ? 443 : 80] : [3, s, true, 1 + scannerPort[s]!++];
    const fam = k % 10 === 0 ? FAM6 : FAM4;
    return (syn ? fam.syn : fam.ack).frame((tag << 24) | k, port);
  });
}

const newSources = (path: string): number => capture(path, (n) => FAM4.syn.frame((20 << 24) | n, 443));

function replayOnce(path: string, settings: Record<string, string>) {
  const start = process.hrtime.bigint();
  let out: string;
  try {
    out = execFileSync(process.execPath, [CLI, 'replay', '--json', path], { encoding: 'utf8', maxBuffer: 1 << 30, env: { ...process.env, ...SETTINGS, ...settings } });
  } catch (e) {
    throw new BenchError(`packetwatchctl replay ${path} failed: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const doc = JSON.parse(out) as { decisions: unknown[]; summary: { probes: { total: number } } };
  return { seconds, decisions: doc.decisions.length, probes: doc.summary.probes.total };
}

type Case = { name: string; frames: number; bytes: number; runs: ReturnType<typeof replayOnce>[]; rate: number };

function main(): void {
  const m = machine();
  const load = loadavg()[0]!;
  const date = today();
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-replay-'));
  const cases: Case[] = [];
  try {
    for (const [name, make, decisions] of [['mixed', mixed, SCANNERS], ['new sources', newSources, 0]] as const) {
      const path = join(dir, `${name.replace(' ', '-')}.pcap`);
      const frames = make(path);
      // The mixed capture again in closed mode (two passes over the file; no answers in it, so the same decisions).
      const modes = name === 'mixed' ? [['', {}], [' (closed mode)', { PW_PORTSCAN_COUNT: 'closed' }]] as const : [['', {}]] as const;
      for (const [suffix, settings] of modes) {
        const runs = Array.from({ length: RUNS }, () => replayOnce(path, settings));
        for (const r of runs) if (r.decisions !== decisions) throw new BenchError(`${name}${suffix}: ${r.decisions} decisions, expected ${decisions} (one a scanner)`);
        cases.push({ name: `${name}${suffix}`, frames, bytes: statSync(path).size, runs, rate: frames / median(runs.map((r) => r.seconds)) });
      }
      rmSync(path);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = cases.map((c) => [
    c.name,
    count(c.frames),
    `${round2(c.bytes / 2 ** 20)} MiB`,
    count(c.runs[0]!.probes),
    count(c.runs[0]!.decisions),
    c.runs.map((r) => `${r.seconds.toFixed(2)}s`).join(', '),
    `${count(Math.round(c.rate))} frames/s`,
  ]);
  const text = table(['capture', 'frames', 'size', 'probes', 'decisions', 'runs', 'median rate'], rows, [false, true, true, true, true, false, true]);
  console.log(text);
  const mixedRate = cases[0]!.rate;
  const results = () =>
    cases.map((c) => {
      const goal = c === cases[0] ? ([`>= ${count(TARGET)} frames/s`, c.rate >= TARGET] as const) : null;
      return entry(`replay rate, ${c.name} capture (${count(c.frames)} frames)`, Math.round(c.rate), 'frames/s', null, goal);
    });
  const section = () =>
    sectionText(
      SECTION_HEADING,
      NAME,
      'How fast `packetwatchctl replay` runs a capture through the rule (bench/replay.ts): the CLI binary as a user runs it, ' +
        "`--json`, node's start included, on pcap files of Ethernet frames written by the bench, with the policy's defaults " +
        'but PW_MAX_BLOCKS_PER_MINUTE=0 (each scanner decided on once); the median of three runs.',
      sectionFacts(NAME, date, m, load),
      [
        ...['```text', text, '```', ''],
        `- mixed: ${count(FRAMES)} frames over 100 s, of every 100 frames 60 ACK segments of established connections (50,000 ` +
          `clients), 30 SYNs of benign clients (500,000 sources, one port each) and 10 SYNs of ${count(SCANNERS)} scanners ` +
          `sweeping ports; a tenth of each population IPv6. Target >= ${count(TARGET)} frames/s: ${mixedRate >= TARGET ? 'met' : 'MISSED'}.`,
        '- mixed (closed mode): the same capture with PW_PORTSCAN_COUNT=closed, which reads the file twice (the host\'s SYN-ACKs ' +
          'first, to learn which ports are open; this capture holds none, so every port counts as closed and the decisions are the same).',
        "- new sources: every frame a SYN from a source never seen before, the detector's heaviest path (each an admission; " +
          'probation full and evicting from its 1,093,750th source on).',
        '',
      ],
    );
  publish(NAME, SECTION_HEADING, results, section, `${count(FRAMES)} frames`);
}

await runBench('replay', main);
