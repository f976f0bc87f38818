// The seed's live table: one row per connection, whitelist and blacklist
// event under TIME, SOURCE IP, PORT, MESSAGE (columns 19, 17 and 7 wide).
// Shared by the policy's table on stdout and `packetwatchctl watch`.

export type TableKind = 'connection' | 'whitelist' | 'blacklist' | 'unblock';

/** What a row shows of an event. */
export interface TableEvent {
  timeMs: number;
  kind: TableKind;
  source: string;
  /** Destination port of a connection; ignored for other kinds. */
  port: number;
  /**
   * A connection's marker in the MESSAGE column: the kind of a probe that is
   * not a SYN ("FIN", "NULL", "XMAS", "fragment", shown as "FIN probe"), or
   * OPEN_PORT_MARK for a SYN to a port the host accepts (closed mode).
   */
  message?: string;
  /** A blacklist event of a shadow decision (PW_ENFORCE=False): the source would have been added, nothing is dropped. */
  shadow?: boolean;
}

/** The marker of a SYN to a port the host accepts, in closed mode (PW_PORTSCAN_COUNT=closed): it does not count toward the scan rules. */
export const OPEN_PORT_MARK = 'open port';

const COLUMNS = [19, 17, 7] as const;

export function header(): string {
  return `${'TIME'.padEnd(COLUMNS[0])}${'SOURCE IP'.padEnd(COLUMNS[1])}${'PORT'.padEnd(COLUMNS[2])}MESSAGE`;
}

function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

const MESSAGES: Record<TableKind, string> = {
  connection: '',
  whitelist: 'Added to whitelist',
  blacklist: 'Added to blacklist',
  unblock: 'Removed from blacklist',
};

/** A shadow decision's row: the seed's words, said of what did not happen. */
export const SHADOW_BLACKLIST = 'Would have been added to blacklist (shadow mode)';

export function row(e: TableEvent): string {
  const port = e.kind === 'connection' ? String(e.port) : '';
  const message =
    e.kind === 'connection' && e.message
      ? e.message === OPEN_PORT_MARK
        ? e.message
        : `${e.message} probe`
      : e.kind === 'blacklist' && e.shadow
        ? SHADOW_BLACKLIST
        : MESSAGES[e.kind];
  return `${clock(e.timeMs).padEnd(COLUMNS[0])}${e.source.padEnd(COLUMNS[1] - 1)} ${port.padEnd(COLUMNS[2])}${message}`.trimEnd();
}
