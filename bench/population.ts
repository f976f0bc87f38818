// What bench-memory and bench-scaling share: a population of many distinct sources fed through the attached program (one
// SYN each, BPF_PROG_TEST_RUN from this process, paced by what the policy has received so that nothing is lost), and the
// resident memory of a service process measured after a full garbage collection; bench-replay writes its frames too.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Program } from 'libbpf-ts';
import { BenchError, commandError } from './report.js';
import { XDP_PASS, sleep, waitFor } from '@packetwatch/test-support';

const run = promisify(execFile);
const CDP = import.meta.resolve('chrome-remote-interface');

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) throw new BenchError('no process to measure');
  let kb: string | undefined;
  try {
    kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    // No such process: kb stays undefined.
  }
  if (kb === undefined) throw new BenchError(`no VmRSS for process ${pid}: is it gone?`);
  return Number(kb) * 1024;
}

/**
 * A full garbage collection of a Node.js service, with nothing in the product for it: SIGUSR1 opens Node's inspector on
 * 127.0.0.1:9229 in the service's namespace, and a script there (chrome-remote-interface) asks it for
 * HeapProfiler.collectGarbage twice (the second frees what the first only unlinked); returns the RSS read afterwards:
 * live memory plus what V8 and the allocator keep mapped.
 */
export async function collectGarbage(netns: string, pid: number | undefined): Promise<number> {
  if (pid === undefined) throw new BenchError('no process to collect');
  process.kill(pid, 'SIGUSR1');
  const script = `import CDP from ${JSON.stringify(CDP)};
    const deadline = Date.now() + 10000;
    const connect = () => CDP({ port: 9229 }).catch((e) => { if (Date.now() > deadline) throw e; return new Promise((r) => setTimeout(r, 50)).then(connect); });
    const c = await connect();
    for (let i = 0; i < 2; i++) await c.HeapProfiler.collectGarbage();
    await c.close();`;
  await run('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', script], { timeout: 30_000 }).catch((e: unknown) => {
    throw commandError(`a garbage collection of process ${pid} through its inspector failed`, e);
  });
  // Pages V8 frees are returned by its background threads: let them finish.
  await sleep(500);
  return rssBytes(pid);
}

/**
 * Where a population's sources come from. IPv4: 100.64.0.0/10 (RFC 6598), below 2^31, or 240.0.0.0/4 (reserved), above:
 * a key holding the address as a number may cost more there. IPv6: 2001:db8::/32, each source in a /64 of its own
 * (2001:db8:hhhh:llll::1; at PW_IPV6_PREFIX's default a /64 is one source). Frames only run through the program in test runs.
 * base: the first address as a 32-bit number, IPv4's or IPv6's 32 bits after 2001:db8::/32; size: how many addresses.
 */
export type SourceRange = { family: 4 | 6; base: number; size: number; label: string };

export const RANGES = {
  v4Low: { family: 4, base: 0x64400000, size: 1 << 22, label: 'IPv4 100.64.0.0/10' },
  v4High: { family: 4, base: 0xf0000000, size: 1 << 28, label: 'IPv4 240.0.0.0/4' },
  v6: { family: 6, base: 0, size: 2 ** 32, label: 'IPv6 2001:db8::/32' },
} as const satisfies Record<string, SourceRange>;

/** Source i of a range. */
export function sourceAddress(range: SourceRange, i: number): string {
  if (i >= range.size) throw new RangeError(`population index ${i} beyond ${range.label}`);
  const a = (range.base + i) >>> 0;
  return range.family === 4 ? `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}` : `2001:db8:${(a >>> 16).toString(16)}:${(a & 0xffff).toString(16)}::1`;
}

/**
 * TCP frames (SYNs, or ACKs) from source i of a population to a port, made by patching one frame built with bpf/frames.ts
 * (7.8 µs a frame, too slow for a million) in place: the address, the port and the checksums; the same buffer each time.
 */
export class SourceFrames {
  readonly #frame: Buffer;
  /** Where the TCP header starts: after Ethernet 14 and IPv4 20 or IPv6 40 (the addresses, the pseudo header's, end there). */
  readonly #tcp: number;
  readonly #pseudoTail: Buffer;

  /**
   * build: the frame from a source to a port (bpf/frames.ts's synFrame or tcpFrame); checksum: its RFC 1071 checksum. Both come from
   * the built @packetwatch/bpf the bench loaded.
   */
  constructor(
    readonly range: SourceRange,
    readonly build: (src: string, dport: number) => Buffer,
    private readonly checksum: (...parts: Buffer[]) => number,
  ) {
    this.#frame = build(sourceAddress(range, 0), 0);
    this.#tcp = range.family === 4 ? 34 : 54;
    // Summed as words, zero and protocol 6, then the segment's length: what either family's pseudo header adds to its addresses.
    this.#pseudoTail = Buffer.from([0, 6, (this.#frame.length - this.#tcp) >> 8, (this.#frame.length - this.#tcp) & 0xff]);
    // Fails unless frame() makes byte for byte the frame the builder makes, for a few sources and ports.
    for (const [i, port] of [[1, 1], [255, 80], [65_537, 8080], [999_999, 65_535], [(1 << 22) - 1, 443]] as const) {
      if (!this.frame(i, port).equals(build(sourceAddress(range, i), port))) {
        throw new BenchError(`patched frame for source ${sourceAddress(range, i)} port ${port} differs from the one its builder makes`);
      }
    }
  }

  frame(i: number, dport: number): Buffer {
    const [f, tcp, v4] = [this.#frame, this.#tcp, this.range.family === 4];
    // Byte 26 either way: the IPv4 source (base + i), or bits 32 to 63 of the IPv6 one (its /64).
    f.writeUInt32BE((this.range.base + i) >>> 0, 26);
    f.writeUInt16BE(dport, tcp + 2);
    if (v4) {
      f.writeUInt16BE(0, 24);
      f.writeUInt16BE(this.checksum(f.subarray(14, tcp)), 24);
    }
    // The pseudo header: both addresses (right before the TCP header), then protocol 6 and the segment's length.
    f.writeUInt16BE(0, tcp + 16);
    f.writeUInt16BE(this.checksum(f.subarray(tcp - (v4 ? 8 : 32), tcp), this.#pseudoTail, f.subarray(tcp)), tcp + 16);
    return f;
  }
}

/** Runs at most this many SYNs ahead of what the policy has received: a quarter of the default ring buffer. */
const MAX_AHEAD = 16_384;
const CHUNK = 4096;

/**
 * One SYN from each source of the population (`count` from index `first`, source i's to port(i)), through the programs in
 * turn (a chunk each), each run checked for XDP_PASS.
 * Waits whenever more than MAX_AHEAD SYNs have not reached the policy (received(): its eventsReceived), so that neither
 * the ring buffer nor the probe's queue overflows, and at the end until it has them all; returns the seconds it took.
 */
export async function feedPopulation(
  programs: readonly Program[],
  pop: { frames: SourceFrames; first: number; count: number; port: (i: number) => number },
  received: () => Promise<number>,
): Promise<number> {
  if (programs.length === 0) throw new BenchError('no program to feed');
  const start = performance.now();
  const base = await received();
  let [got, sent, chunk] = [0, 0, 0];
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
  await waitFor(`the policy to receive all ${pop.count} SYN events fed`, async () => ((await received()) - base >= pop.count ? true : undefined), 30_000);
  return (performance.now() - start) / 1000;
}
