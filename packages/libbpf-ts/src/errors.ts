// Every failure of libbpf or the kernel surfaces as a BpfError carrying errno,
// its symbolic code, the operation that failed and libbpf's own messages.
// Subclasses name the failures callers handle differently.

interface NativeErrorShape {
  message: string;
  errno: number;
  code: string;
  op: string;
  log: string;
}

function isNativeError(e: unknown): e is Error & NativeErrorShape {
  return e instanceof Error && typeof (e as Partial<NativeErrorShape>).errno === 'number' && 'op' in e;
}

export class BpfError extends Error {
  readonly errno: number;
  readonly code: string;
  /** The libbpf function or syscall that failed. */
  readonly op: string;
  /** What libbpf printed while the operation ran (e.g. the verifier log). */
  readonly log: string;

  constructor(message: string, fields: { errno: number; code: string; op: string; log?: string }) {
    super(message);
    this.name = new.target.name;
    this.errno = fields.errno;
    this.code = fields.code;
    this.op = fields.op;
    this.log = fields.log ?? '';
  }
}

/** The kernel's verifier rejected a program; `log` holds the verifier's output. */
export class VerifierError extends BpfError {}

/** No network interface has the given name or index. */
export class InterfaceNotFoundError extends BpfError {}

/** A map update failed because the map holds max_entries elements. */
export class MapFullError extends BpfError {}

const E2BIG = 7;

function classify(e: Error & NativeErrorShape): BpfError {
  const fields = { errno: e.errno, code: e.code, op: e.op, log: e.log };
  if (e.op === 'bpf_object__load' && /BEGIN PROG LOAD LOG|verifier/i.test(e.log)) {
    return new VerifierError(`${e.message}: program rejected by the verifier`, fields);
  }
  if (e.op === 'if_nametoindex') return new InterfaceNotFoundError(e.message, fields);
  if ((e.op === 'bpf_map_update_elem' || e.op === 'bpf_map_update_batch') && e.errno === E2BIG) {
    return new MapFullError(`${e.message}: map is full`, fields);
  }
  return new BpfError(e.message, fields);
}

/** Runs a native call, turning the addon's errors into typed BpfErrors. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw isNativeError(e) ? classify(e) : e;
  }
}

export function bpfError(op: string, errno: number, code: string, message: string): BpfError {
  return new BpfError(`${op}: ${message}`, { errno, code, op });
}
