// Offering SYN events at a paced rate by running the attached program with
// bpftool (BPF_PROG_TEST_RUN), and running it once on a frame file.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { HarnessError, commandError } from './errors.js';

/** The verdict of a frame the program lets through. */
export const XDP_PASS = 2;
/** The driver hands bpftool one `prog run` per slice, for the events owed since the start. */
export const SLICE_MS = 10;
// A stall of this process must not turn into one burst larger than the ring
// holds (65,536 records at the default 4 MiB): events owed beyond a few slices
// are dropped from the schedule, and the row shows the rate actually offered.
export const MAX_SLICES_OWED = 3;
/** With several frame files, each slice runs at most this many of them (one `prog run` line each). */
export const FRAMES_PER_SLICE = 8;

/** Runs `bpftool prog run` on the frame file, once; returns the program's verdict. */
export function runOnce(programId: number, frameFile: string): number {
  let out: string;
  try {
    out = execFileSync('bpftool', ['prog', 'run', 'id', String(programId), 'data_in', frameFile, 'repeat', '1'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    throw commandError(`bpftool prog run id ${programId} failed`, e);
  }
  const m = /Return value: (\d+)/.exec(out);
  if (!m) throw new HarnessError(`bpftool prog run printed no verdict:\n${out}`);
  return Number(m[1]);
}

/**
 * Offers `rate` events/s for `ms` (or until `stop` is aborted) through one
 * long-lived `bpftool batch file -`: a process per 10 ms slice would cost more
 * than the events it makes (spawning bpftool takes about 12 ms here), whereas
 * a batch reads one `prog run ... repeat N` line per slice from its stdin and
 * runs it at once. Each slice asks for the events owed since the start, so
 * timer jitter evens out instead of accumulating.
 *
 * frames: one frame file, or several: then each slice's events are split
 * over up to FRAMES_PER_SLICE consecutive files of the list, and the next
 * slice goes on where this one stopped, so that over a second every file is
 * run about equally often (many sources and ports rather than one, as the
 * benches that feed the policy need).
 *
 * Descriptors: bpftool 7.1's batch mode keeps every data_in file it opens
 * open, one per line: a run of ms milliseconds needs about
 * ms / SLICE_MS * min(files, FRAMES_PER_SLICE) of them (8,000 for 10 s over
 * several files), more than a default soft limit of 1,024, so bpftool runs under prlimit
 * with room for that many, up to the hard limit; a run too long for that
 * (60 s over many files against a hard limit of 20,000) runs fewer files a
 * slice, still going round all of them.
 */
export async function drive(
  programId: number,
  frames: string | readonly string[],
  rate: number,
  ms: number,
  onChild: (c: ChildProcess | undefined) => void,
  stop?: AbortSignal,
): Promise<{ issued: number; seconds: number }> {
  const hardLimit = Number(/^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1024);
  // Lines (open files) the run may take: 1.5 per slice and file, 1,024 spare, within the hard limit.
  const linesPerFile = Math.ceil(ms / SLICE_MS) * 1.5;
  // ms may be an upper bound (a run stopped early by `stop`): one file a slice past the hard limit is left to bpftool.
  const fit = Math.max(1, Math.floor((hardLimit - 1024) / linesPerFile));
  const perSlice = typeof frames === 'string' ? 1 : Math.min(frames.length, FRAMES_PER_SLICE, fit);
  const nofile = Math.min(hardLimit, Math.ceil(linesPerFile * perSlice) + 1024);
  // prlimit sets the limit (up to the hard one: raising that needs CAP_SYS_RESOURCE) and execs bpftool in place: the child's pid is bpftool's.
  const child = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, 'bpftool', 'batch', 'file', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  onChild(child);
  let verdicts = 0;
  let wrong: string | undefined;
  let partial = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^Return value: (\d+)/.exec(l);
      if (!m) continue;
      verdicts++;
      if (Number(m[1]) !== XDP_PASS) wrong ??= l;
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  // 'close', not 'exit': by then its stdout has been read to the end, every verdict counted.
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => resolve(code));
    child.on('error', (e) => {
      stderr += e.message;
      resolve(null);
    });
  });
  child.stdin.on('error', () => {}); // a bpftool that died is reported by its exit code

  const files = typeof frames === 'string' ? [frames] : frames;
  if (files.length === 0) throw new HarnessError('drive() needs at least one frame file');
  let nextFile = 0;
  const start = performance.now();
  let issued = 0;
  let forgiven = 0;
  let lines = 0;
  const cap = Math.max(1, Math.round((rate * SLICE_MS * MAX_SLICES_OWED) / 1000));
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = Math.min(performance.now() - start, ms);
      let owed = Math.floor((rate * elapsed) / 1000) - forgiven - issued;
      // Owed events beyond the cap are forgiven, not carried: see MAX_SLICES_OWED.
      if (owed > cap) {
        forgiven += owed - cap;
        owed = cap;
      }
      if (owed > 0) {
        const parts = Math.min(perSlice, owed);
        let text = '';
        for (let p = 0; p < parts; p++) {
          // The first parts take the remainder: the slice runs exactly `owed` events.
          const n = Math.floor(owed / parts) + (p < owed % parts ? 1 : 0);
          text += `prog run id ${programId} data_in ${files[nextFile]} repeat ${n}\n`;
          nextFile = (nextFile + 1) % files.length;
          lines++;
        }
        child.stdin.write(text);
        issued += owed;
      }
      if (elapsed >= ms || stop?.aborted) resolve();
      else setTimeout(tick, SLICE_MS);
    };
    tick();
  });
  child.stdin.end();
  const code = await exited;
  const seconds = (performance.now() - start) / 1000;
  onChild(undefined);
  if (code !== 0) throw new HarnessError(`bpftool batch exited with ${code}:\n${stderr.trim()}`);
  if (wrong) throw new HarnessError(`the program returned another verdict than XDP_PASS: ${wrong}`);
  if (verdicts !== lines) throw new HarnessError(`bpftool ran ${verdicts} of ${lines} prog run commands:\n${stderr.trim()}`);
  return { issued, seconds };
}
