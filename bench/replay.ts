// `make bench-replay`: how fast `packetwatchctl replay` runs a capture through the rule, in frames a second, the CLI
// binary timed as a user runs it (node's start included), on the captures of CASES.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TCP_FLAGS, checksum, synFrame, tcpFrame } from '@packetwatch/bpf';
import { PcapWriter } from '@packetwatch/test-support';
import { columnTable } from './harness.js';
import { RANGES, type SourceRange, SourceFrames } from './population.js';
import { BenchError, REPO_ROOT, commandError, SMOKE, count, entry, machine, median, publish, round2, runBench, sectionFacts, sectionText, today } from './report.js';

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

/** The mixed capture's frame n (CASES says what it holds): source k of population `tag`, a tenth of each IPv6. */
function mixed(): (n: number) => Buffer {
  const scannerPort = new Uint16Array(SCANNERS);
  return (n) => {
    const [slot, i, s] = [n % 100, (n * 2654435761) >>> 0, (n / 100) % SCANNERS | 0];
    const [tag, k, syn, port] = slot < 60 ? [1, i % CLIENTS, false, 443] : slot < 90 ? [2, i % BENIGN, true, i % 2 ? 443 : 80] : [3, s, true, 1 + scannerPort[s]!++];
    const fam = k % 10 === 0 ? FAM6 : FAM4;
    return (syn ? fam.syn : fam.ack).frame((tag << 24) | k, port);
  };
}

const newSources = () => (n: number) => FAM4.syn.frame((20 << 24) | n, 443);

/** The captures: name, its frames (n => frame n), the decisions expected (each scanner once), settings beside SETTINGS, what it is. */
const CASES = [
  ['mixed', mixed, SCANNERS, {}, `${count(FRAMES)} frames over 100 s, of every 100 frames 60 ACK segments of established connections (50,000 ` +
    `clients), 30 SYNs of benign clients (500,000 sources, one port each) and 10 SYNs of ${count(SCANNERS)} scanners sweeping ports; a tenth ` +
    `of each population IPv6.`],
  ['mixed (closed mode)', mixed, SCANNERS, { PW_PORTSCAN_COUNT: 'closed' }, "the same capture with PW_PORTSCAN_COUNT=closed, which reads the " +
    "file twice (the host's SYN-ACKs first, to learn which ports are open; this capture holds none, so every port counts as closed and the " +
    'decisions are the same).'],
  ['new sources', newSources, 0, {}, "every frame a SYN from a source never seen before, the detector's heaviest path (each an admission; " +
    'probation full and evicting from its 1,093,750th source on).'],
] as const;

function replayOnce(path: string, settings: Record<string, string>) {
  const start = process.hrtime.bigint();
  let out: string;
  try {
    out = execFileSync(process.execPath, [CLI, 'replay', '--json', path], { encoding: 'utf8', maxBuffer: 1 << 30, env: { ...process.env, ...SETTINGS, ...settings } });
  } catch (e) {
    throw commandError(`packetwatchctl replay ${path} failed`, e);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const doc = JSON.parse(out) as { decisions: unknown[]; summary: { probes: { total: number } } };
  return { seconds, decisions: doc.decisions.length, probes: doc.summary.probes.total };
}

function main(): void {
  const [m, load, date] = [machine(), loadavg()[0]!, today()];
  const dir = mkdtempSync(join(tmpdir(), 'pw-bench-replay-'));
  let cases;
  try {
    cases = CASES.map(([name, make, decisions, settings]) => {
      // FRAMES frames over SPAN_MS.
      const [path, frame] = [join(dir, 'capture.pcap'), make()];
      const w = new PcapWriter(path, 1);
      for (let n = 0; n < FRAMES; n++) w.write(T0 + (n * SPAN_MS) / FRAMES, frame(n));
      w.close();
      const runs = Array.from({ length: RUNS }, () => replayOnce(path, settings));
      for (const r of runs) if (r.decisions !== decisions) throw new BenchError(`${name}: ${r.decisions} decisions, expected ${decisions} (one a scanner)`);
      return { name, bytes: statSync(path).size, runs, rate: FRAMES / median(runs.map((r) => r.seconds)) };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const text = columnTable(cases, [
    ['capture', false, (c) => c.name],
    ['frames', true, () => count(FRAMES)],
    ['size', true, (c) => `${round2(c.bytes / 2 ** 20)} MiB`],
    ['probes', true, (c) => count(c.runs[0]!.probes)],
    ['decisions', true, (c) => count(c.runs[0]!.decisions)],
    ['runs', false, (c) => c.runs.map((r) => `${r.seconds.toFixed(2)}s`).join(', ')],
    ['median rate', true, (c) => `${count(Math.round(c.rate))} frames/s`],
  ]);
  console.log(text);
  const met = (c: (typeof cases)[number]) => c === cases[0] && ([`>= ${count(TARGET)} frames/s`, c.rate >= TARGET] as const);
  const results = () => cases.map((c) => entry(`replay rate, ${c.name} capture (${count(FRAMES)} frames)`, Math.round(c.rate), 'frames/s', null, met(c) || null));
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
        ...CASES.map(([name, , , , about], i) => {
          const goal = i === 0 && met(cases[0]!);
          return `- ${name}: ${about}${goal ? ` Target ${goal[0]}: ${goal[1] ? 'met' : 'MISSED'}.` : ''}`;
        }),
        '',
      ],
    );
  publish(NAME, SECTION_HEADING, results, section, `${count(FRAMES)} frames`);
}

await runBench('replay', main);
