// Settings come from PW_ environment variables (the seed's names and
// defaults) or from the matching command-line flag, which wins. Unset or
// empty means the default. A bad value is a ConfigError naming the setting
// and what it accepts; services turn it into exit code 2.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

/** The longest block (and any duration setting): ten years; a larger one is almost surely a unit mistake. */
export const MAX_TTL_SECONDS = 10 * 365 * 86400;

/** The largest kernel blocklist a probe may have (PW_BLOCKLIST_SIZE): no ListBlocks lists more. */
export const MAX_BLOCKLIST_SIZE = 16_777_216;

/** An RFC 1123 host name: labels of letters, digits and inner hyphens. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    readonly value: string,
    readonly accepts: string,
  ) {
    super(`invalid ${setting}=${JSON.stringify(value)}: expected ${accepts}`);
    this.name = 'ConfigError';
  }
}

export interface Setting<T> {
  env: string;
  /** A switch: `--flag` alone means true (`--flag=False` still works). */
  boolean?: boolean;
  /** Flag name without dashes, e.g. 'ifdev' for --ifdev. */
  flag: string;
  default: T;
  /** What the setting accepts, for error messages and --help. */
  accepts: string;
  describe: string;
  parse(raw: string): T;
}

type Spec = Record<string, Setting<unknown>>;
export type ConfigOf<S extends Spec> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

function make<T>(accepts: string, parse: (raw: string) => T | undefined) {
  return (env: string, flag: string, def: T, describe: string): Setting<T> => ({
    env,
    flag,
    default: def,
    accepts,
    describe,
    parse(raw) {
      const v = parse(raw.trim());
      if (v === undefined) throw new ConfigError(env, raw, accepts);
      return v;
    },
  });
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

export const settings = {
  string: (env: string, flag: string, def: string, describe: string, pattern?: RegExp, accepts = 'a string') =>
    make<string>(accepts, (raw) => (pattern && !pattern.test(raw) ? undefined : raw))(env, flag, def, describe),
  optionalString: (env: string, flag: string, describe: string) =>
    make<string | undefined>('a string', (raw) => raw)(env, flag, undefined, describe),
  bool: (env: string, flag: string, def: boolean, describe: string): Setting<boolean> => ({
    ...make<boolean>('True or False (also true/false, 1/0, yes/no)', (raw) =>
      TRUE.has(raw.toLowerCase()) ? true : FALSE.has(raw.toLowerCase()) ? false : undefined,
    )(env, flag, def, describe),
    boolean: true,
  }),
  int: (env: string, flag: string, def: number, describe: string, min: number, max: number) =>
    make<number>(`an integer from ${min} to ${max}`, (raw) => {
      // No sign where none can be meant: "-0" is not a way to write 0.
      if (!(min < 0 ? /^-?\d+$/ : /^\d+$/).test(raw)) return undefined;
      const n = Number(raw);
      return n >= min && n <= max ? n : undefined;
    })(env, flag, def, describe),
  /** A TCP port, 0 meaning "off". */
  port: (env: string, flag: string, def: number, describe: string) =>
    make<number>('a port from 1 to 65535, or 0 to turn it off', (raw) => {
      if (!/^\d+$/.test(raw)) return undefined;
      const n = Number(raw);
      return n <= 65535 ? n : undefined;
    })(env, flag, def, describe),
  oneOf: <T extends string>(env: string, flag: string, def: T, describe: string, values: readonly T[]) =>
    make<T>(`one of ${values.join(', ')}`, (raw) => values.find((v) => v === raw.toLowerCase()))(env, flag, def, describe),
  /** Seconds, also with a unit: 90, 90s, 15m, 2h, 1d; 0 or from `min` (1 s) to MAX_TTL_SECONDS (ten years). */
  seconds: (env: string, flag: string, def: number, describe: string, min = 1) =>
    make<number>(`a duration: 0, or ${durationText(min)} to 3650d (seconds, or a number with s, m, h or d)`, (raw) => {
      const v = parseDuration(raw);
      // Under a second is no duration anyone means (0.0000000001 must not round to 0, "permanent").
      return v !== undefined && (v === 0 || (v >= Math.max(1, min) && v <= MAX_TTL_SECONDS)) ? v : undefined;
    })(env, flag, def, describe),
  /** Ports and inclusive ranges, comma-separated ("8080,30000-32767"): sorted, merged ranges [first, last]. */
  portRanges: (env: string, flag: string, describe: string) =>
    make<PortRange[]>('comma-separated ports and ranges of 1 to 65535 (8080,30000-32767)', parsePortRanges)(env, flag, [], describe),
  /** An address or host name to listen on. */
  host: (env: string, flag: string, def: string, describe: string) =>
    make<string>('an IPv4 or IPv6 address or a host name', (raw) => (isIP(raw) !== 0 || HOSTNAME.test(raw) ? raw : undefined))(env, flag, def, describe),
};

/** An inclusive port range [first, last], 1 <= first <= last <= 65535. */
export type PortRange = [first: number, last: number];

/** Sorted ranges with overlapping and adjacent ones merged: one spelling for each set of ports. */
export function mergePortRanges(ranges: readonly (readonly [number, number])[]): PortRange[] {
  const sorted = [...ranges].map(([a, b]): PortRange => [a, b]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

/**
 * "8080,30000-32767" → [[8080, 8080], [30000, 32767]] (merged); "" → [];
 * undefined for port 0, a port above 65535, a reversed range or anything
 * else. Spaces around items are allowed.
 */
export function parsePortRanges(raw: string): PortRange[] | undefined {
  if (raw.trim() === '') return [];
  const ranges: PortRange[] = [];
  for (const item of raw.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item.trim());
    if (!m) return undefined;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (first < 1 || last > 65535 || first > last) return undefined;
    ranges.push([first, last]);
  }
  return mergePortRanges(ranges);
}

/** Ranges as the setting writes them: "8080,30000-32767" ("" for none). */
export function formatPortRanges(ranges: readonly (readonly [number, number])[]): string {
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400 };

/** Whole seconds as the largest unit that divides them: 3600 → "1h", 90 → "90s". */
function durationText(seconds: number): string {
  for (const unit of ['d', 'h', 'm'] as const) {
    const size = UNIT_SECONDS[unit]!;
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** "90", "90s", "1.5m", "2h", "1d" → seconds; undefined when malformed or negative. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(raw.trim());
  if (!m) return undefined;
  return Number(m[1]) * (UNIT_SECONDS[m[2] ?? ''] ?? 1);
}

export interface LoadedConfig<S extends Spec> {
  config: ConfigOf<S>;
  /** Positional arguments (commands such as `detach`). */
  positionals: string[];
  help: boolean;
}

/** Reads every setting from flags, then the environment, then the default. */
export function loadConfig<S extends Spec>(spec: S, argv: string[], env: NodeJS.ProcessEnv): LoadedConfig<S> {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const s of Object.values(spec)) options[s.flag] = { type: 'string' };
  // A switch given alone (`--insecure-tcp`) means true; `--whitelist-self False`
  // and `--whitelist-self=False` still set it.
  const switches = new Set(Object.values(spec).filter((s) => s.boolean).map((s) => `--${s.flag}`));
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!switches.has(a)) {
      args.push(a);
      continue;
    }
    const next = argv[i + 1]?.toLowerCase();
    if (next !== undefined && (TRUE.has(next) || FALSE.has(next))) {
      args.push(`${a}=${argv[++i]}`);
    } else {
      args.push(`${a}=true`);
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError('arguments', argv.join(' '), `known flags (${(e as Error).message}); see --help`);
  }
  const config = {} as Record<string, unknown>;
  for (const [key, s] of Object.entries(spec)) {
    const flag = parsed.values[s.flag];
    if (typeof flag === 'string') {
      config[key] = s.parse(flag);
      continue;
    }
    const raw = env[s.env];
    config[key] = raw === undefined || raw.trim() === '' ? s.default : s.parse(raw);
  }
  return { config: config as ConfigOf<S>, positionals: parsed.positionals, help: parsed.values.help === true };
}

export function usage<S extends Spec>(name: string, synopsis: string, spec: S): string {
  const rows = Object.values(spec).map(
    (s) => `  --${s.flag.padEnd(24)} ${s.env.padEnd(30)} ${s.describe} (default: ${s.default === undefined ? 'unset' : String(s.default)})`,
  );
  return `usage: ${name} ${synopsis}\n\nSettings (flag, environment variable):\n${rows.join('\n')}\n`;
}
