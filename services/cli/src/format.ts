// Text for people: aligned tables, key-value blocks, human durations and
// counts. Pure functions of their arguments (the current time included), so
// that every view is unit-tested without a clock or a server.

/** 45 → "45s", 3599 → "59m", 5400 → "1h 30m", 187200 → "2d 4h". Floors; never negative. */
export function humanDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return m > 0 ? `${h}h ${m}m` : `${h}h`;
  }
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  return h > 0 ? `${d}d ${h}h` : `${d}d`;
}

/** A point in time relative to now: "in 59m", "5m ago", "just now"; unset is `unset` ("never" by default). */
export function relative(at: Date | undefined, nowMs: number, unset = 'never'): string {
  if (at === undefined) return unset;
  const delta = (at.getTime() - nowMs) / 1000;
  if (Math.abs(delta) < 1) return 'just now';
  return delta > 0 ? `in ${humanDuration(delta)}` : `${humanDuration(-delta)} ago`;
}

/** 1234567 → "1,234,567". */
export function count(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/** 2 → "2 probes", 1 → "1 probe". */
export function plural(n: number | bigint, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 || n === 1n ? one : many}`;
}

/**
 * Text a peer or an operator chose (probe ids, interfaces, reasons, notes),
 * safe to print on a terminal: control characters (C0, DEL, C1, which carry
 * escape sequences) and bidirectional overrides, which reorder what is shown,
 * become visible \u escapes.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Columns as wide as their widest cell, two spaces apart, no trailing
 * spaces. Every row must have as many cells as there are headers. Cells are
 * printed printable().
 */
export function table(headers: readonly string[], rawRows: readonly (readonly string[])[]): string {
  const rows = rawRows.map((r) => r.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export type KeyValue = readonly [key: string, value: string];

/** "  key    value" lines, keys padded to the widest key; values printed printable(). */
export function keyValues(rows: readonly KeyValue[], indent = '  '): string {
  const width = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${indent}${k.padEnd(width)}  ${printable(v)}`.trimEnd()).join('\n');
}

/** A Date as ISO-8601 for JSON, null when unset. */
export function iso(d: Date | undefined): string | null {
  return d === undefined ? null : d.toISOString();
}
