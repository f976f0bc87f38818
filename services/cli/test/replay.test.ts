// `packetwatchctl replay` on captures written from the formats'
// specifications (@packetwatch/test-support capture.ts) with frames built as a sender builds
// them (@packetwatch/bpf frames): the rule on the capture's own clock (the
// window, a block's TTL, the blocks-per-minute budget), the settings and
// their errors, the link types, and damaged files. The agreement with the
// live services on real traffic is test/e2e/replay.root.test.ts.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { TCP_FLAGS, ipFrame, synFrame, tcpFrame } from '@packetwatch/bpf';
import { header, row } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { type CapturedFrame, pcapFile, pcapngSection, sll, sll2 } from '@packetwatch/test-support';
import { LINKTYPE } from '../src/capture.js';
import { type Io, run } from '../src/program.js';
import { tempFiles } from './tempfiles.js';

const { dir, file } = tempFiles('pw-replay-');

interface Result {
  code: number;
  out: string;
  err: string;
}

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  let out = '';
  let err = '';
  const io: Io = { out: (s) => (out += s), err: (s) => (err += s), env, now: () => 0, onInterrupt: () => () => undefined };
  const code = await run(argv, io);
  return { code, out, err };
}

interface Doc {
  error: string | null;
  settings: Record<string, unknown>;
  decisions: { source: string; reason: string; createdMs: number; expires: string | null; ports: number[]; port: number; capped: boolean; offence: number }[];
  summary: {
    capture: { format: string; frames: number; linkTypes: number[] };
    classes: Record<string, number>;
    outbound: number;
    unreadable: Record<string, number>;
    probes: { total: number; allowlisted: number; own: number; fromBlocked: number; openPort: number };
    answered: { address: string; port: number }[] | null;
  };
}

async function json(path: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Doc> {
  const r = await cli(['replay', '--json', ...flags, path], env);
  expect(r).toMatchObject({ code: 0, err: '' });
  return JSON.parse(r.out) as Doc;
}

const T0 = Date.UTC(2026, 10, 30, 11, 0, 0);
const VICTIM = '10.0.0.1';
const S = 1000;

/** SYNs from src to each port, the i-th at t0 + i * stepMs. */
function scan(src: string, ports: number[], t0: number, stepMs: number, dst = VICTIM): CapturedFrame[] {
  return ports.map((port, i) => ({ tsMs: t0 + i * stepMs, data: synFrame(src, dst, 40000 + i, port) }));
}

const byTime = (frames: CapturedFrame[]) => [...frames].sort((a, b) => a.tsMs - b.tsMs);

describe('replay: the rule on the capture', () => {
  it('a scan of 3 ports within the window is one decision at its 3rd probe, printed as the seed table', async () => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, [...scan('192.0.2.9', [22, 80, 443], T0, 100), ...scan('192.0.2.10', [80, 80, 443], T0 + S, 100)]));
    const doc = await json(path);
    expect(doc.decisions).toEqual([
      { source: '192.0.2.9', reason: 'port scan: 3 ports (22, 80, 443) within 0.200s', createdMs: T0 + 200, expires: null, ports: [22, 80, 443], port: 443, capped: false, offence: 1, created: new Date(T0 + 200).toISOString() },
    ]);
    expect(doc.summary.probes).toEqual({ total: 6, allowlisted: 0, own: 0, fromBlocked: 0, openPort: 0 });
    expect(doc.settings).toMatchObject({ PW_PORTSCAN_PORT_THRESHOLD: 3, PW_PORTSCAN_TIME_THRESHOLD: 60, PW_IPV6_PREFIX: 64, PW_BLOCK_TTL: 0 });
    const text = await cli(['replay', path]);
    expect(text.code).toBe(0);
    expect(text.out).toBe(`${header()}\n${row({ timeMs: T0 + 200, kind: 'blacklist', source: '192.0.2.9', port: 0 })}\n`);
    expect(text.err).toContain('6 frames over 1.200s');
    expect(text.err).toContain('probes 6 (SYN 6, stealth 0, fragment 0): 0 allowlisted, 0 from own addresses, 0 from blocked sources; 1 decisions');
  });

  it('the window slides on the capture\'s clock: ports 1.5 s apart are a scan within 4 s, not within 2 s (flag or PW_ variable)', async () => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, scan('192.0.2.9', [1, 2, 3], T0, 1500)));
    expect((await json(path, [], { PW_PORTSCAN_TIME_THRESHOLD: '2' })).decisions).toEqual([]);
    expect((await json(path, ['--time-threshold', '4'], { PW_PORTSCAN_TIME_THRESHOLD: '2' })).decisions.map((d) => d.source)).toEqual(['192.0.2.9']);
    expect((await json(path, ['--port-threshold', '4'])).decisions).toEqual([]);
  });

  it('a block lasts PW_BLOCK_TTL of capture time: probes while it holds are the blocked source\'s, a scan after it is decided again', async () => {
    const frames = [...scan('192.0.2.9', [1, 2, 3], T0, 10), ...scan('192.0.2.9', [4, 5, 6], T0 + 5 * S, 10), ...scan('192.0.2.9', [7, 8, 9], T0 + 11 * S, 10)];
    const doc = await json(file(pcapFile(LINKTYPE.ETHERNET, frames)), ['--block-ttl', '10s']);
    expect(doc.decisions.map((d) => [d.createdMs - T0, d.expires, d.ports])).toEqual([
      [20, new Date(T0 + 20 + 10 * S).toISOString(), [1, 2, 3]],
      [11 * S + 20, new Date(T0 + 11 * S + 20 + 10 * S).toISOString(), [7, 8, 9]],
    ]);
    expect(doc.summary.probes).toEqual({ total: 9, allowlisted: 0, own: 0, fromBlocked: 3, openPort: 0 });
    // Permanent (the default): everything after the first decision is the blocked source's.
    expect((await json(file(pcapFile(LINKTYPE.ETHERNET, frames)))).summary.probes.fromBlocked).toBe(6);
  });

  it('the blocks-per-minute budget counts on the capture\'s clock: beyond it a scanner is blocked for PW_CAPPED_BLOCK_TTL', async () => {
    const frames = byTime([...scan('192.0.2.1', [1, 2, 3], T0, 10), ...scan('192.0.2.2', [1, 2, 3], T0 + S, 10), ...scan('192.0.2.3', [1, 2, 3], T0 + 61 * S, 10)]);
    const doc = await json(file(pcapFile(LINKTYPE.ETHERNET, frames)), ['--max-blocks-per-minute', '1'], { PW_CAPPED_BLOCK_TTL: '30s' });
    expect(doc.decisions.map((d) => ({ source: d.source, capped: d.capped, expires: d.expires, reason: d.reason.replace(/^port scan: 3 ports \(1, 2, 3\) within 0\.020s/, '') }))).toEqual([
      { source: '192.0.2.1', capped: false, expires: null, reason: '' },
      { source: '192.0.2.2', capped: true, expires: new Date(T0 + S + 20 + 30 * S).toISOString(), reason: '; beyond the blocks-per-minute budget: 30s' },
      { source: '192.0.2.3', capped: false, expires: null, reason: '' },
    ]);
  });

  it('PW_ALLOWLIST: an allowlisted address is counted, never decided on', async () => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, [...scan('192.0.2.9', [1, 2, 3], T0, 10), ...scan('198.51.100.7', [1, 2, 3], T0, 10)]));
    const doc = await json(path, [], { PW_ALLOWLIST: '192.0.2.0/24, 2001:db8::/32' });
    expect(doc.decisions.map((d) => d.source)).toEqual(['198.51.100.7']);
    expect(doc.summary.probes).toMatchObject({ total: 6, allowlisted: 3 });
  });

  it('the host\'s own addresses (--own-addresses) with PW_WHITELIST_SELF: counted, never decided on; another address of the prefix is', async () => {
    const frames = byTime([...scan('2001:db8:1:2::1', [1, 2, 3], T0, 10), ...scan('192.0.2.1', [1, 2, 3], T0, 10), ...scan('192.0.2.2', [1, 2, 3], T0, 10)]);
    const path = file(pcapFile(LINKTYPE.ETHERNET, frames));
    const own = ['--own-addresses', '192.0.2.1, 2001:db8:1:2::1'];
    const doc = await json(path, own);
    expect(doc.decisions.map((d) => d.source)).toEqual(['192.0.2.2']);
    expect(doc.summary.probes).toEqual({ total: 9, allowlisted: 0, own: 6, fromBlocked: 0, openPort: 0 });
    expect((await json(path, own, { PW_WHITELIST_SELF: 'False' })).decisions.map((d) => d.source).sort()).toEqual(['192.0.2.1', '192.0.2.2', '2001:db8:1:2::/64']);
    // One address of a /64 is its own; another of the same /64 scanning is decided on, as the policy decides.
    const other = file(pcapFile(LINKTYPE.ETHERNET, scan('2001:db8:1:2::2', [1, 2, 3], T0, 10)));
    expect((await json(other, own)).decisions.map((d) => d.source)).toEqual(['2001:db8:1:2::/64']);
    const bad = await cli(['replay', '--own-addresses', '192.0.2.1,host.example', path]);
    expect(bad).toMatchObject({ code: 2, out: '', err: expect.stringMatching(/^packetwatchctl: invalid --own-addresses '192\.0\.2\.1,host\.example': expected comma-separated IPv4 or IPv6 addresses \('host\.example' is not one\)\n/) });
  });

  it('IPv6 sources by PW_IPV6_PREFIX, IPv4 by PW_IPV4_PREFIX: addresses rotating within a /64 or a /24 are one source', async () => {
    const frames = [
      ...['2001:db8:1:2::a', '2001:db8:1:2::b', '2001:db8:1:2::c'].map((a, i) => ({ tsMs: T0 + i, data: synFrame(a, '2001:db8::1', 40000, 8081 + i) })),
      ...['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((a, i) => ({ tsMs: T0 + 10 + i, data: synFrame(a, VICTIM, 40000, 8081 + i) })),
    ];
    const path = file(pcapFile(LINKTYPE.ETHERNET, frames));
    expect((await json(path)).decisions.map((d) => d.source)).toEqual(['2001:db8:1:2::/64']);
    expect((await json(path, ['--ipv6-prefix', '128', '--ipv4-prefix', '24'])).decisions.map((d) => d.source)).toEqual(['192.0.2.0/24']);
  });

  it('stealth probes and tiny first fragments count as the XDP program counts them; what it drops is counted by why', async () => {
    const frames: CapturedFrame[] = [
      { tsMs: T0, data: tcpFrame('192.0.2.9', VICTIM, 40000, 1, TCP_FLAGS.FIN) },
      { tsMs: T0 + 1, data: tcpFrame('192.0.2.9', VICTIM, 40000, 2, 0) },
      { tsMs: T0 + 2, data: tcpFrame('192.0.2.9', VICTIM, 40000, 3, TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG) },
      ...[1, 2, 3].map((port, i) => ({ tsMs: T0 + 10 + i, data: synFrame('192.0.2.10', VICTIM, 40000, port, { moreFragments: true, l4Bytes: 8 }) })),
      // Neither probes nor counted by the detector: an ACK, a bare RST, a UDP datagram, ARP.
      { tsMs: T0 + 20, data: tcpFrame('192.0.2.11', VICTIM, 40000, 4, TCP_FLAGS.ACK) },
      { tsMs: T0 + 21, data: tcpFrame('192.0.2.11', VICTIM, 40000, 5, TCP_FLAGS.RST) },
      { tsMs: T0 + 22, data: ipFrame({ src: '192.0.2.11', dst: VICTIM, udp: { sport: 53, dport: 6 } }) },
      // Dropped by the frame rule: an IPv4-mapped IPv6 source, a TCP fragment at offset 1.
      { tsMs: T0 + 30, data: synFrame('::ffff:192.0.2.12', '2001:db8::1', 40000, 7) },
      { tsMs: T0 + 31, data: synFrame('192.0.2.12', VICTIM, 40000, 8, { fragmentOffset: 1 }) },
      // Not parsed: an IPv4 header length below 20 bytes.
      { tsMs: T0 + 40, data: Buffer.concat([synFrame('192.0.2.13', VICTIM, 40000, 9).subarray(0, 14), Buffer.from([0x44]), Buffer.alloc(40)]) },
    ];
    const path = file(pcapFile(LINKTYPE.ETHERNET, frames));
    const doc = await json(path);
    expect(doc.decisions.map((d) => [d.source, d.ports])).toEqual([
      ['192.0.2.9', [1, 2, 3]],
      ['192.0.2.10', [1, 2, 3]],
    ]);
    expect(doc.summary.classes).toMatchObject({ stealth: 3, tinyProbe: 3, established: 1, rst: 1, nonTcp: 1, bogus: 1, tiny: 1, malformed: 1, syn: 0 });
    const text = await cli(['replay', path]);
    expect(text.err).toContain('probes 6 (SYN 0, stealth 3, fragment 3)');
    expect(text.err).toContain('dropped by the frame rule: 1 bogus sources, 0 long chains, 4 tiny fragments');
    expect(text.err).toContain('not parsed: 1 malformed before the source; 0 not IP; 0 outgoing (skipped)');
  });
});

describe('replay: closed mode (PW_PORTSCAN_COUNT=closed)', () => {
  const CLOSED = { PW_PORTSCAN_COUNT: 'closed' };
  /** The host answering src's SYN to port with a SYN-ACK, 1 ms later, from `from` (the probed address by default). */
  const synAck = (src: string, port: number, tsMs: number, from = VICTIM): CapturedFrame => ({ tsMs: tsMs + 1, data: tcpFrame(from, src, port, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK) });
  /** The host refusing it with a RST (ACK set, as a closed port answers). */
  const rst = (src: string, port: number, tsMs: number): CapturedFrame => ({ tsMs: tsMs + 1, data: tcpFrame(VICTIM, src, port, 40000, TCP_FLAGS.RST | TCP_FLAGS.ACK) });
  /** A client using three of the host's services (each answered) and a scanner hitting two of them, then unanswered ports. */
  const traffic = (): CapturedFrame[] => {
    const client = scan('192.0.2.20', [22, 80, 443], T0, 100);
    const scanner = scan('192.0.2.9', [22, 80, 1, 2, 3, 4], T0 + S, 10);
    return byTime([
      ...client,
      ...client.map((f, i) => synAck('192.0.2.20', [22, 80, 443][i]!, f.tsMs)),
      ...scanner,
      ...scanner.map((f, i) => ([22, 80].includes([22, 80, 1, 2, 3, 4][i]!) ? synAck('192.0.2.9', [22, 80, 1, 2, 3, 4][i]!, f.tsMs) : rst('192.0.2.9', [22, 80, 1, 2, 3, 4][i]!, f.tsMs))),
    ]);
  };

  it('a port the capture shows the host answering with a SYN-ACK is open: a client of three services is not blocked, a scanner is at its Nth unanswered port', async () => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, traffic()));
    const doc = await json(path, [], CLOSED);
    expect(doc.decisions.map((d) => [d.source, d.ports, d.port, d.createdMs - T0])).toEqual([['192.0.2.9', [1, 2, 3], 3, S + 40]]);
    expect(doc.summary.answered).toEqual([
      { address: VICTIM, port: 22 },
      { address: VICTIM, port: 80 },
      { address: VICTIM, port: 443 },
    ]);
    // The client's 3 SYNs and the scanner's 2 to open ports; the scanner's 4th closed port is a blocked source's.
    expect(doc.summary.probes).toEqual({ total: 9, allowlisted: 0, own: 0, fromBlocked: 1, openPort: 5 });
    expect(doc.settings).toMatchObject({ PW_PORTSCAN_COUNT: 'closed', PW_OPEN_PORTS: [] });
    // The same capture in all mode: the client is a scanner too, and the scanner is decided at its 3rd port, open or not.
    expect((await json(path)).decisions.map((d) => [d.source, d.ports])).toEqual([
      ['192.0.2.20', [22, 80, 443]],
      ['192.0.2.9', [22, 80, 1]],
    ]);
    // The flag says it as the variable does.
    expect((await json(path, ['--portscan-count', 'closed'])).decisions.map((d) => d.source)).toEqual(['192.0.2.9']);
    const text = await cli(['replay', path], CLOSED);
    expect(text.err).toContain('probes 9 (SYN 9, stealth 0, fragment 0): 0 allowlisted, 0 from own addresses, 1 from blocked sources, 5 SYNs to open ports; 1 decisions');
    expect(text.err).toContain(`closed mode: 3 ports answered with a SYN-ACK in the capture (${VICTIM}:22, ${VICTIM}:80, ${VICTIM}:443); every other port counts as closed unless PW_OPEN_PORTS declares it`);
  });

  it('open at the address that answered: a SYN-ACK from another address, or to the host, opens nothing; the host\'s outgoing SYN-ACKs in a cooked capture are read', async () => {
    const frames = byTime([
      // 10.0.0.2 answers on 1-3; the probes go to VICTIM.
      ...[1, 2, 3].map((p, i) => synAck('192.0.2.30', p, T0 + i, '10.0.0.2')),
      // A server elsewhere answering the host's own connection from port 4.
      { tsMs: T0 + 5, data: tcpFrame('198.51.100.1', VICTIM, 4, 50000, TCP_FLAGS.SYN | TCP_FLAGS.ACK) },
      ...scan('192.0.2.9', [1, 2, 3, 4], T0 + S, 10),
    ]);
    const doc = await json(file(pcapFile(LINKTYPE.ETHERNET, frames)), [], CLOSED);
    expect(doc.decisions.map((d) => [d.source, d.ports])).toEqual([['192.0.2.9', [1, 2, 3]]]);
    // tcpdump -i any: the SYN-ACKs are the host's outgoing frames (skipped as probes, read for the ports answered).
    const ipOnly = (f: CapturedFrame) => f.data.subarray(14);
    const cooked = traffic().map((f) => ({ ...f, data: sll2(0x0800, ipOnly(f).readUInt32BE(12) === 0x0a000001 ? 4 : 0, ipOnly(f)) }));
    const c = await json(file(pcapFile(LINKTYPE.LINUX_SLL2, cooked)), [], CLOSED);
    expect(c.decisions.map((d) => [d.source, d.ports])).toEqual([['192.0.2.9', [1, 2, 3]]]);
    // The host's 5 SYN-ACKs and 4 RSTs.
    expect(c.summary.outbound).toBe(9);
    expect(c.summary.answered?.map((a) => a.port)).toEqual([22, 80, 443]);
  });

  it('PW_OPEN_PORTS (or --open-ports): declared ports are open whatever the capture shows; in all mode they change nothing', async () => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, scan('192.0.2.9', [8080, 30000, 30001, 1, 2, 3], T0, 10)));
    const declared = await json(path, [], { ...CLOSED, PW_OPEN_PORTS: '8080,30000-32767' });
    expect(declared.decisions.map((d) => [d.ports, d.port])).toEqual([[[1, 2, 3], 3]]);
    expect(declared.summary.probes.openPort).toBe(3);
    expect(declared.settings).toMatchObject({ PW_OPEN_PORTS: [[8080, 8080], [30000, 32767]] });
    expect((await json(path, ['--open-ports', '8080, 30000-30001'], CLOSED)).decisions.map((d) => d.ports)).toEqual([[1, 2, 3]]);
    expect((await json(path, [], CLOSED)).decisions.map((d) => d.ports)).toEqual([[8080, 30000, 30001]]);
    expect((await json(path, [], { PW_OPEN_PORTS: '8080,30000-32767' })).decisions.map((d) => d.ports)).toEqual([[8080, 30000, 30001]]);
  });

  it('stealth and fragment probes count in closed mode, at answered and declared ports alike', async () => {
    const frames = byTime([
      ...[22, 80].map((p) => synAck('192.0.2.20', p, T0)),
      { tsMs: T0 + 10, data: tcpFrame('192.0.2.9', VICTIM, 40000, 22, TCP_FLAGS.FIN) },
      { tsMs: T0 + 11, data: tcpFrame('192.0.2.9', VICTIM, 40000, 80, 0) },
      { tsMs: T0 + 12, data: tcpFrame('192.0.2.9', VICTIM, 40000, 8080, TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.URG) },
      ...[22, 80, 8080].map((port, i) => ({ tsMs: T0 + 20 + i, data: synFrame('192.0.2.10', VICTIM, 40000, port, { moreFragments: true, l4Bytes: 8 }) })),
    ]);
    const doc = await json(file(pcapFile(LINKTYPE.ETHERNET, frames)), [], { ...CLOSED, PW_OPEN_PORTS: '8080' });
    expect(doc.decisions.map((d) => [d.source, d.ports])).toEqual([
      ['192.0.2.9', [22, 80, 8080]],
      ['192.0.2.10', [22, 80, 8080]],
    ]);
    expect(doc.summary.probes.openPort).toBe(0);
  });

  it('a pipe: closed mode is refused (exit 2 naming PW_PORTSCAN_COUNT: the capture is read twice)', async () => {
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const r = await cli(['replay', fifo], CLOSED);
    expect(r).toMatchObject({ code: 2, out: '' });
    expect(r.err).toBe(
      `packetwatchctl: invalid PW_PORTSCAN_COUNT="closed": expected all for ${fifo}, which is not a regular file: closed mode reads the capture twice (the ports the host answered, then the rule); write it to a file first (tcpdump -w file)\n`,
    );
  });
});

describe('replay: escalating blocks (PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX)', () => {
  it('a source detected again after its block lapsed within the capture gets the next step: 10 s, 20 s, then the maximum 30 s', async () => {
    const frames = byTime([
      ...scan('192.0.2.9', [1, 2, 3], T0, 10),
      // While the first block holds: the blocked source's.
      ...scan('192.0.2.9', [4, 5, 6], T0 + 5 * S, 10),
      ...scan('192.0.2.9', [7, 8, 9], T0 + 11 * S, 10),
      ...scan('192.0.2.9', [10, 11, 12], T0 + 40 * S, 10),
      // Another source's first offence.
      ...scan('192.0.2.10', [1, 2, 3], T0 + 41 * S, 10),
    ]);
    const path = file(pcapFile(LINKTYPE.ETHERNET, frames));
    const doc = await json(path, ['--block-ttl', '10s', '--block-ttl-max', '30s'], { PW_BLOCK_TTL_FACTOR: '2' });
    const at = (ms: number) => new Date(T0 + ms).toISOString();
    expect(doc.decisions.map((d) => [d.source, d.offence, d.createdMs - T0, d.expires])).toEqual([
      ['192.0.2.9', 1, 20, at(20 + 10 * S)],
      ['192.0.2.9', 2, 11 * S + 20, at(11 * S + 20 + 20 * S)],
      ['192.0.2.9', 3, 40 * S + 20, at(40 * S + 20 + 30 * S)],
      ['192.0.2.10', 1, 41 * S + 20, at(41 * S + 20 + 10 * S)],
    ]);
    expect(doc.summary.probes.fromBlocked).toBe(3);
    expect(doc.settings).toMatchObject({ PW_BLOCK_TTL: 10, PW_BLOCK_TTL_FACTOR: '2', PW_BLOCK_TTL_MAX: 30 });
    // Factor 1 (the default): every offence is counted, each for PW_BLOCK_TTL.
    const flat = await json(path, ['--block-ttl', '10s']);
    expect(flat.decisions.map((d) => [d.offence, d.expires])).toEqual([
      [1, at(20 + 10 * S)],
      [2, at(11 * S + 20 + 10 * S)],
      [3, at(40 * S + 20 + 10 * S)],
      [1, at(41 * S + 20 + 10 * S)],
    ]);
  });

  it('a block beyond the blocks-per-minute budget lasts the short TTL, and its offence counts', async () => {
    const frames = byTime([...scan('192.0.2.1', [1, 2, 3], T0, 10), ...scan('192.0.2.9', [1, 2, 3], T0 + S, 10), ...scan('192.0.2.9', [4, 5, 6], T0 + 120 * S, 10)]);
    const doc = await json(file(pcapFile(LINKTYPE.ETHERNET, frames)), ['--block-ttl', '100s', '--max-blocks-per-minute', '1', '--capped-block-ttl', '5s'], { PW_BLOCK_TTL_FACTOR: '3' });
    expect(doc.decisions.map((d) => [d.source, d.offence, d.capped, d.expires])).toEqual([
      ['192.0.2.1', 1, false, new Date(T0 + 20 + 100 * S).toISOString()],
      ['192.0.2.9', 1, true, new Date(T0 + S + 20 + 5 * S).toISOString()],
      ['192.0.2.9', 2, false, new Date(T0 + 120 * S + 20 + 300 * S).toISOString()],
    ]);
  });
});

describe('replay: link types and directions', () => {
  const scanOf = (src: string, t0: number) => scan(src, [1, 2, 3], t0, 10);
  const ipOnly = (f: CapturedFrame) => f.data.subarray(14);

  it('Linux cooked SLL and SLL2 (tcpdump -i any): the host\'s own outgoing frames are skipped, not counted as probes', async () => {
    for (const [linkType, cook] of [
      [LINKTYPE.LINUX_SLL, sll],
      [LINKTYPE.LINUX_SLL2, sll2],
    ] as const) {
      const frames = [
        ...scanOf('192.0.2.9', T0).map((f) => ({ ...f, data: cook(0x0800, 0, ipOnly(f)) })),
        ...scanOf(VICTIM, T0 + 100).map((f) => ({ ...f, data: cook(0x0800, 4, ipOnly(f)) })),
      ];
      const doc = await json(file(pcapFile(linkType, frames)));
      expect({ linkType, sources: doc.decisions.map((d) => d.source), outbound: doc.summary.outbound }).toEqual({ linkType, sources: ['192.0.2.9'], outbound: 3 });
    }
  });

  it('raw IP (LINKTYPE_RAW, IPv4 and IPv6 by the version), and pcapng with epb_flags outbound skipped, in nanoseconds', async () => {
    const raw = [...scanOf('192.0.2.9', T0), ...['2001:db8:1:2::a', '2001:db8:1:2::b', '2001:db8:1:2::c'].map((a, i) => ({ tsMs: T0 + i, data: synFrame(a, '2001:db8::1', 40000, 1 + i) }))].map((f) => ({
      ...f,
      data: ipOnly(f),
    }));
    expect((await json(file(pcapFile(LINKTYPE.RAW, byTime(raw))))).decisions.map((d) => d.source).sort()).toEqual(['192.0.2.9', '2001:db8:1:2::/64']);
    const ng = pcapngSection(
      [{ linkType: LINKTYPE.ETHERNET, tsresol: 9 }],
      [...scanOf('192.0.2.9', T0).map((f) => ({ ...f, flags: 1 })), ...scanOf('192.0.2.10', T0).map((f) => ({ ...f, flags: 2 }))],
    );
    const doc = await json(file(ng));
    expect(doc.decisions.map((d) => [d.source, d.createdMs])).toEqual([['192.0.2.9', T0 + 20]]);
    expect(doc.summary).toMatchObject({ capture: { format: 'pcapng', frames: 6, linkTypes: [1] }, outbound: 3 });
  });

  it('a link type it does not read is reported by frame count, with the decisions of the frames it reads', async () => {
    const ng = pcapngSection(
      [{ linkType: LINKTYPE.ETHERNET }, { linkType: 105 }],
      [...scanOf('192.0.2.9', T0), { tsMs: T0 + 1, data: Buffer.alloc(60), iface: 1 }, { tsMs: T0 + 2, data: Buffer.alloc(60), iface: 1 }],
    );
    const path = file(ng);
    const doc = await json(path);
    expect(doc.decisions.map((d) => d.source)).toEqual(['192.0.2.9']);
    expect(doc.summary.unreadable).toEqual({ 'link type 105 (not Ethernet, Linux cooked or raw IP)': 2 });
    expect((await cli(['replay', path])).err).toContain('not parsed: 0 malformed before the source, 2 link type 105 (not Ethernet, Linux cooked or raw IP)');
  });
});

describe('replay: errors', () => {
  it.each([
    [['--port-threshold', '0'], {}, 'PW_PORTSCAN_PORT_THRESHOLD'],
    [['--time-threshold', 'soon'], {}, 'PW_PORTSCAN_TIME_THRESHOLD'],
    [[], { PW_BLOCK_TTL: 'forever' }, 'PW_BLOCK_TTL'],
    [[], { PW_IPV6_PREFIX: '129' }, 'PW_IPV6_PREFIX'],
    [[], { PW_ALLOWLIST: '192.0.2.0/24,not-an-address' }, 'PW_ALLOWLIST'],
    [['--portscan-count', 'open'], {}, 'PW_PORTSCAN_COUNT'],
    [[], { PW_PORTSCAN_COUNT: 'closed', PW_OPEN_PORTS: '8080,0-10' }, 'PW_OPEN_PORTS'],
    [['--open-ports', '9000-8000'], {}, 'PW_OPEN_PORTS'],
    [[], { PW_BLOCK_TTL: '10s', PW_BLOCK_TTL_FACTOR: '0.5' }, 'PW_BLOCK_TTL_FACTOR'],
    [['--block-ttl', '10s', '--block-ttl-max', '5s'], {}, 'PW_BLOCK_TTL_MAX'],
  ])('%j %j: exit 2 naming %s', async (flags, env, name) => {
    const path = file(pcapFile(LINKTYPE.ETHERNET, scan('192.0.2.9', [1, 2, 3], T0, 10)));
    const r = await cli(['replay', ...flags, path], env);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(new RegExp(`^packetwatchctl: invalid ${name}=`));
  });

  it('a capture cut short: the decisions of the frames before the damage, the error, exit 1', async () => {
    const whole = pcapFile(LINKTYPE.ETHERNET, [...scan('192.0.2.9', [1, 2, 3], T0, 10), ...scan('192.0.2.10', [1, 2, 3], T0 + S, 10)]);
    const path = file(whole.subarray(0, whole.length - 5));
    const r = await cli(['replay', path]);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`${header()}\n${row({ timeMs: T0 + 20, kind: 'blacklist', source: '192.0.2.9', port: 0 })}\n`);
    expect(r.err).toMatch(/packetwatchctl: .*: cut short at byte \d+: a frame of \d+ bytes with \d+ in the file \(5 frames read\); the decisions above are those of the frames before it\n$/);
    const j = await cli(['replay', '--json', path]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ error: expect.stringMatching(/cut short/), decisions: [{ source: '192.0.2.9' }], summary: { capture: { frames: 5 } } });
  });

  it('not a capture, or no file: the error alone, exit 1; no file argument: a usage error, exit 2', async () => {
    const notCapture = await cli(['replay', file(Buffer.from('hello, this is text\n'))]);
    expect(notCapture).toMatchObject({ code: 1, out: '', err: expect.stringMatching(/: not a pcap or pcapng file \(magic 0x68656c6c\)\n$/) });
    const missing = await cli(['replay', join(dir, 'absent.pcap')]);
    expect(missing).toMatchObject({ code: 1, out: '', err: `packetwatchctl: cannot open ${join(dir, 'absent.pcap')}: ENOENT\n` });
    expect((await cli(['replay'])).code).toBe(2);
  });
});
