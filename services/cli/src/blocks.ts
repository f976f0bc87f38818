// `packetwatchctl blocks`: the policy's decisions next to one probe's kernel
// blocklist. Where the two disagree the row carries a DRIFT mark: an active
// decision the kernel does not hold, or a kernel block without a decision.
import { type Block, BlockReason, type Decision, DecisionOrigin } from '@packetwatch/proto';
import { iso, plural, relative, table } from './format.js';
import type { CallFailure } from './status.js';

export type Drift = 'notInKernel' | 'noDecision';

export interface BlockRow {
  /** The decision's id; null for a kernel block without a decision. */
  decisionId: string | null;
  ip: string;
  reason: string;
  origin: 'detector' | 'manual' | 'kernel' | 'unspecified' | null;
  active: boolean;
  created: string | null;
  expires: string | null;
  ended: string | null;
  enforcedBy: string[];
  missingOn: string[];
  /** Whether the probe's kernel holds the block; null when not checked. */
  inKernel: boolean | null;
  drift: Drift | null;
  /** A change to the decision is held in the policy's memory: its store refused it (enforced all the same). */
  unrecorded: boolean;
  /** Made in shadow mode (PW_ENFORCE=False): no probe drops anything for it. */
  shadow: boolean;
  /** The source's offence count at this block (PW_BLOCK_TTL_FACTOR escalates by it); 0: none (an operator's block, a kernel block without a decision). */
  offence: number;
}

/** The probe's kernel view, or why there is none. */
export type KernelView =
  | { checked: true; address: string; probeId: string; blocks: Block[] }
  | { checked: false; address: string | null; error: CallFailure | null };

export interface BlocksJson {
  blocks: BlockRow[];
  kernel: { address: string | null; checked: boolean; probeId: string | null; error: CallFailure | null };
}

function originName(o: DecisionOrigin): BlockRow['origin'] {
  switch (o) {
    case DecisionOrigin.DECISION_ORIGIN_DETECTOR:
      return 'detector';
    case DecisionOrigin.DECISION_ORIGIN_MANUAL:
      return 'manual';
    case DecisionOrigin.DECISION_ORIGIN_KERNEL:
      return 'kernel';
    default:
      return 'unspecified';
  }
}

function kernelReason(r: BlockReason): string {
  switch (r) {
    case BlockReason.BLOCK_REASON_PORTSCAN:
      return 'port scan';
    case BlockReason.BLOCK_REASON_MANUAL:
      return 'manual';
    default:
      return 'unspecified';
  }
}

export function isActive(d: Decision, nowMs: number): boolean {
  return d.ended === undefined && (d.expires === undefined || d.expires.getTime() > nowMs);
}

/** One decision as a row; `held`: whether the kernel holds its block (null: not checked). */
export function decisionRow(d: Decision, nowMs: number, held: boolean | null = null): BlockRow {
  const active = isActive(d, nowMs);
  return {
    decisionId: String(d.id),
    ip: d.ip,
    reason: d.reason,
    origin: originName(d.origin),
    active,
    created: iso(d.created),
    expires: iso(d.expires),
    ended: iso(d.ended),
    enforcedBy: d.enforcedBy,
    missingOn: d.missingOn,
    inKernel: held,
    drift: active && held === false ? 'notInKernel' : null,
    unrecorded: d.unrecorded,
    shadow: d.shadow,
    offence: d.offence,
  };
}

/**
 * Decisions (as the policy listed them) joined with the kernel's blocks:
 * one row per decision, in the policy's order, then one per kernel block
 * that no active decision explains, by address.
 */
export function blockRows(decisions: readonly Decision[], kernel: KernelView, nowMs: number): BlockRow[] {
  const enforced = kernel.checked ? kernel.blocks.filter((b) => !b.expired && (b.expires === undefined || b.expires.getTime() > nowMs)) : [];
  const inKernel = new Set(enforced.map((b) => b.ip));
  const rows: BlockRow[] = decisions.map((d) => decisionRow(d, nowMs, kernel.checked ? inKernel.has(d.ip) : null));
  if (kernel.checked) {
    const decided = new Set(decisions.filter((d) => isActive(d, nowMs)).map((d) => d.ip));
    const orphans = enforced.filter((b) => !decided.has(b.ip)).sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
    for (const b of orphans) {
      rows.push({
        decisionId: null,
        ip: b.ip,
        reason: `kernel block without a decision (${kernelReason(b.reason)})`,
        origin: null,
        active: true,
        created: iso(b.created),
        expires: iso(b.expires),
        ended: null,
        enforcedBy: [kernel.probeId],
        missingOn: [],
        inKernel: true,
        drift: 'noDecision',
        unrecorded: false,
        shadow: false,
        offence: 0,
      });
    }
  }
  return rows;
}

export function blocksJson(rows: BlockRow[], kernel: KernelView): BlocksJson {
  return {
    blocks: rows,
    kernel: kernel.checked
      ? { address: kernel.address, checked: true, probeId: kernel.probeId, error: null }
      : { address: kernel.address, checked: false, probeId: null, error: kernel.error },
  };
}

const at = (text: string | null) => (text === null ? undefined : new Date(text));

export function expiresText(r: BlockRow, nowMs: number): string {
  if (r.ended !== null) return `ended ${relative(at(r.ended), nowMs)}`;
  if (r.expires === null) return 'never';
  const e = at(r.expires)!;
  return e.getTime() > nowMs ? relative(e, nowMs) : `expired ${relative(e, nowMs)}`;
}

const DRIFT_TEXT: Record<Drift, string> = { notInKernel: 'not in kernel', noDecision: 'no decision' };

/** The DRIFT cell: the mark, or '?' when the kernel could not be read (blank when not asked). */
function driftText(r: BlockRow, kernel: KernelView): string {
  if (r.drift) return `DRIFT: ${DRIFT_TEXT[r.drift]}`;
  const failed = !kernel.checked && kernel.error !== null;
  return r.active && failed ? '?' : '';
}

function enforcedText(r: BlockRow): string {
  if (!r.active) return '-';
  const by = r.enforcedBy.length > 0 ? r.enforcedBy.join(', ') : '-';
  return r.missingOn.length > 0 ? `${by} (missing on ${r.missingOn.join(', ')})` : by;
}

export const BLOCK_HEADERS = ['SOURCE', 'REASON', 'ORIGIN', 'OFFENCE', 'CREATED', 'EXPIRES', 'ENFORCED BY', 'DRIFT'] as const;

/** The table, or a sentence when there is nothing to show; a note under it when rows drift. */
export function blocksText(rows: readonly BlockRow[], kernel: KernelView, nowMs: number, all: boolean): string {
  if (rows.length === 0) return all ? 'No decisions.' : 'No active decisions.';
  const body = table(
    BLOCK_HEADERS,
    rows.map((r) => [
      r.ip,
      r.reason,
      r.origin === null ? '-' : r.shadow ? `${r.origin} (SHADOW)` : r.origin,
      r.offence > 0 ? String(r.offence) : '-',
      relative(at(r.created), nowMs, '-'),
      expiresText(r, nowMs),
      enforcedText(r),
      driftText(r, kernel),
    ]),
  );
  const notes = [shadowNote(rows), unrecordedNote(rows)];
  const drifting = rows.filter((r) => r.drift !== null).length;
  if (drifting > 0 && kernel.checked) {
    notes.push(
      `${plural(drifting, 'row')} marked DRIFT: the policy and the kernel of ${kernel.probeId} disagree. ` +
        'The policy repairs this on its next reconcile; `packetwatchctl unblock <ip>` removes a kernel block without a decision.',
    );
  }
  return [body, ...notes.filter((n) => n !== undefined)].join('\n\n');
}

/** What to say of shadow decisions (marked SHADOW); undefined when there are none. */
export function shadowNote(rows: readonly BlockRow[]): string | undefined {
  const n = rows.filter((r) => r.shadow && r.active).length;
  if (n === 0) return undefined;
  return (
    `${plural(n, 'active decision')} marked SHADOW ${n === 1 ? 'was' : 'were'} made in shadow mode (PW_ENFORCE=False): recorded and in the kernel, ` +
    'but NOT enforced: nothing is dropped for them. A policy restarted with PW_ENFORCE=True makes them blocks, or ends them with PW_ENFORCE_SHADOW_DECISIONS=False.'
  );
}

/** What to say when some decisions are enforced but not in the policy's store; undefined when all are. */
export function unrecordedNote(rows: readonly BlockRow[]): string | undefined {
  const n = rows.filter((r) => r.unrecorded).length;
  if (n === 0) return undefined;
  return (
    `${plural(n, 'decision')} ${n === 1 ? 'is' : 'are'} enforced but not recorded: the policy's decision store refuses writes ` +
    '(`packetwatchctl status` says why); recorded once it takes them again, lost if the policy stops first.'
  );
}
