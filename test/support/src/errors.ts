// A failure the user can act on (a missing build output or command, a
// service that did not start, a wait that timed out): the benches print it as
// one message without a stack (bench/report.ts runBench), the tests as any
// other error.

/** A failure the user can act on: its message says what failed and, where it can, what to do. */
export class HarnessError extends Error {}

/** A HarnessError for a failed command, with its stderr, or what to install when it is missing. */
export function commandError(what: string, e: unknown, missingHint = 'run make deps'): HarnessError {
  const err = e as NodeJS.ErrnoException & { stderr?: Buffer | string; path?: string };
  if (err.code === 'ENOENT') return new HarnessError(`${what}: ${err.path ?? 'command'} not found; ${missingHint}`);
  const detail = err.stderr?.toString().trim() || err.message;
  return new HarnessError(`${what}:\n${detail}`);
}
