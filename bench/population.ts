// What bench-memory and bench-scaling share: a population of many distinct
// sources fed through the attached program (one SYN each, BPF_PROG_TEST_RUN
// from this process, paced by what the policy has received so that nothing
// is lost), and the resident memory of a service process measured after a
// full garbage collection.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Program } from 'libbpf-ts';
import { BenchError, commandError } from './report.js';
import { XDP_PASS, sleep } from '@packetwatch/test-support';

const run = promisify(execFile);

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) throw new BenchError('no process to measure');
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    throw new BenchError(`process ${pid} is gone`);
  }
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new BenchError(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/**
 * A full garbage collection of a Node.js service, without anything in the
 * product for it: SIGUSR1 makes Node open its inspector on 127.0.0.1:9229 in
 * the service's network namespace (Node's own debugging feature), and a
 * short script in that namespace asks it for HeapProfiler.collectGarbage
 * twice (the second pass frees what the first only unlinked). RSS read
 * afterwards is the live memory plus what V8 and the allocator keep mapped,
 * not garbage waiting for the next collection.
 */
export async function collectGarbage(netns: string, pid: number | undefined): Promise<void> {
  if (pid === undefined) throw new BenchError('no process to collect');
  process.kill(pid, 'SIGUSR1');
  const script = `
    const deadline = Date.now() + 10000;
    let targets;
    while (!targets) {
      try { targets = await (await fetch('http://127.0.0.1:9229/json/list')).json(); }
      catch (e) { if (Date.now() > deadline) throw e; await new Promise((r) => setTimeout(r, 50)); }
    }
    const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('inspector refused the connection')); });
    let id = 0;
    const send = (method) => new Promise((resolve, reject) => {
      const my = ++id;
      ws.onmessage = (m) => { const r = JSON.parse(String(m.data)); if (r.id !== my) return; r.error ? reject(new Error(r.error.message)) : resolve(r.result); };
      ws.send(JSON.stringify({ id: my, method }));
    });
    await send('HeapProfiler.collectGarbage');
    await send('HeapProfiler.collectGarbage');
    ws.close();
  `;
  try {
    await run('ip', ['netns', 'exec', netns, process.execPath, '--experimental-websocket', '--no-warnings', '--input-type=module', '-e', script], {
      timeout: 30_000,
    });
  } catch (e) {
    throw commandError(`a garbage collection of process ${pid} through its inspector failed`, e);
  }
  // Pages V8 frees are returned by its background threads: let them finish.
  await sleep(500);
}

export type Family = 4 | 6;

/** The 16-bit words that change between frames: source address and destination port. */
interface Layout {
  srcOff: number;
  srcLen: number;
  dportOff: number;
  ipCsumOff: number | undefined;
  tcpCsumOff: number;
}

const LAYOUT: Record<Family, Layout> = {
  // Ethernet 14 + IPv4 20 + TCP 40 (synFrame: MSS, SACK, timestamps, window scale).
  4: { srcOff: 26, srcLen: 4, dportOff: 36, ipCsumOff: 24, tcpCsumOff: 50 },
  // Ethernet 14 + IPv6 40 + TCP 40.
  6: { srcOff: 22, srcLen: 16, dportOff: 56, ipCsumOff: undefined, tcpCsumOff: 70 },
};

/**
 * Where a population's sources come from. IPv4: 100.64.0.0/10 (RFC 6598),
 * whose addresses are below 2^31, or 240.0.0.0/4 (reserved), above: a key
 * that holds the address as a number may cost more there. IPv6: 2001:db8::/32
 * (documentation), each source in a /64 of its own (2001:db8:hhhh:llll::1):
 * with PW_IPV6_PREFIX at its default, the addresses of one /64 are one
 * source. None of them is ever sent anywhere: the frames only run through
 * the program in test runs.
 */
export interface SourceRange {
  family: Family;
  /** IPv4: the first address as a 32-bit number; IPv6: 0 (i in the 32 bits after 2001:db8::/32). */
  base: number;
  /** How many addresses the range has. */
  size: number;
  label: string;
}

export const RANGES = {
  v4Low: { family: 4, base: 0x64400000, size: 1 << 22, label: 'IPv4 100.64.0.0/10' },
  v4High: { family: 4, base: 0xf0000000, size: 1 << 28, label: 'IPv4 240.0.0.0/4' },
  v6: { family: 6, base: 0, size: 2 ** 32, label: 'IPv6 2001:db8::/32' },
} as const satisfies Record<string, SourceRange>;

/** Source i of a range. */
export function sourceAddress(range: SourceRange, i: number): string {
  if (i >= range.size) throw new RangeError(`population index ${i} beyond ${range.label}`);
  if (range.family === 4) {
    const a = range.base + i;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  return `2001:db8:${((i >>> 16) & 0xffff).toString(16)}:${(i & 0xffff).toString(16)}::1`;
}

/**
 * SYN frames from source i of a population to a port, made by patching one
 * frame built with bpf/frames.ts (7.8 µs a frame here, too slow for a million)
 * in place: the address, the port and the checksums, adjusted incrementally
 * (RFC 1624). frame() returns the same buffer each time.
 */
export class SourceFrames {
  readonly #frame: Buffer;
  readonly #layout: Layout;
  readonly #tcpBase: number;
  readonly #ipBase: number;

  constructor(
    readonly range: SourceRange,
    readonly build: (src: string, dport: number) => Buffer,
  ) {
    this.#layout = LAYOUT[range.family];
    this.#frame = build(sourceAddress(range, 0), 0);
    const f = this.#frame;
    const l = this.#layout;
    // ~C + sum(~old) for the words that vary: adding the new words gives ~C'.
    let tcp = ~f.readUInt16BE(l.tcpCsumOff) & 0xffff;
    let ip = l.ipCsumOff === undefined ? 0 : ~f.readUInt16BE(l.ipCsumOff) & 0xffff;
    for (let o = l.srcOff; o < l.srcOff + l.srcLen; o += 2) {
      const w = ~f.readUInt16BE(o) & 0xffff;
      tcp += w;
      ip += w;
    }
    tcp += ~f.readUInt16BE(l.dportOff) & 0xffff;
    this.#tcpBase = tcp;
    this.#ipBase = ip;
  }

  frame(i: number, dport: number): Buffer {
    const f = this.#frame;
    const l = this.#layout;
    // Population index in the last 32 bits of the IPv4 address (base + i),
    // in bits 32 to 63 of the IPv6 one (its /64).
    const lo = this.range.family === 4 ? this.range.base + i : i;
    const end = l.srcOff + l.srcLen;
    const at = this.range.family === 4 ? end - 4 : l.srcOff + 4;
    f.writeUInt32BE(lo >>> 0, at);
    f.writeUInt16BE(dport, l.dportOff);
    let tcp = this.#tcpBase + dport + (lo >>> 16) + (lo & 0xffff);
    let ip = this.#ipBase + (lo >>> 16) + (lo & 0xffff);
    if (this.range.family === 6) {
      // The other words of the address stay those of the template (2001:db8:0:0::1).
      for (let o = l.srcOff; o < end; o += 2) if (o < at || o >= at + 4) tcp += f.readUInt16BE(o);
    }
    f.writeUInt16BE(fold(tcp), l.tcpCsumOff);
    if (l.ipCsumOff !== undefined) f.writeUInt16BE(fold(ip), l.ipCsumOff);
    return f;
  }

  /** Fails unless frame() makes byte for byte the frame the builder makes, for a few sources and ports. */
  check(): void {
    for (const [i, port] of [
      [1, 1],
      [255, 80],
      [65_537, 8080],
      [999_999, 65_535],
      [(1 << 22) - 1, 443],
    ] as const) {
      const want = this.build(sourceAddress(this.range, i), port);
      const got = this.frame(i, port);
      if (!got.equals(want)) throw new BenchError(`patched SYN frame for source ${sourceAddress(this.range, i)} port ${port} differs from synFrame()`);
    }
  }
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Runs at most this many SYNs ahead of what the policy has received: a quarter of the default ring buffer. */
const MAX_AHEAD = 16_384;
const CHUNK = 4096;

export interface Population {
  frames: SourceFrames;
  /** First population index and how many sources. */
  first: number;
  count: number;
  /** Destination port of source i's one SYN. */
  port: (i: number) => number;
}

/**
 * One SYN from each source of the population, through the programs in turn
 * (a chunk each: one per probe), each run checked for XDP_PASS. Waits
 * whenever more than MAX_AHEAD SYNs have not reached the policy, so that
 * neither the ring buffer nor the probe's queue overflows, and at the end
 * until the policy has received all of them. received() is the policy's
 * eventsReceived; returns the seconds it took.
 */
export async function feedPopulation(programs: readonly Program[], pop: Population, received: () => Promise<number>): Promise<number> {
  if (programs.length === 0) throw new BenchError('no program to feed');
  const start = performance.now();
  const base = await received();
  let got = 0;
  let sent = 0;
  let chunk = 0;
  const end = pop.first + pop.count;
  for (let i = pop.first; i < end; chunk++) {
    while (sent - got > MAX_AHEAD) {
      await sleep(2);
      got = (await received()) - base;
    }
    const prog = programs[chunk % programs.length]!;
    const stop = Math.min(end, i + CHUNK);
    sent += stop - i;
    for (; i < stop; i++) {
      const r = prog.testRun({ data: pop.frames.frame(i, pop.port(i)) });
      if (r.retval !== XDP_PASS) throw new BenchError(`the program returned ${r.retval} for the SYN of ${sourceAddress(pop.frames.range, i)}, expected XDP_PASS`);
    }
    got = (await received()) - base;
  }
  const deadline = Date.now() + 30_000;
  while (got < pop.count) {
    if (Date.now() > deadline) throw new BenchError(`the policy received ${got} of ${pop.count} SYN events within 30 s of the last`);
    await sleep(5);
    got = (await received()) - base;
  }
  return (performance.now() - start) / 1000;
}
