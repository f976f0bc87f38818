// The packetwatchctl command tree (commander) and what each command does.
// Everything reaches the outside through Io, so that usage errors, argument
// checks and exit codes are tested without a process or a server.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import {
  AddressError,
  ConfigError,
  type Endpoint,
  PAGE_SIZE,
  type TlsFiles,
  VERSION,
  header,
  formatAddress,
  formatPrefix,
  parseDuration,
  parseEndpoint,
  parsePrefix,
} from '@packetwatch/common';
import type {
  AddAllowResponse,
  BlockResponse,
  ExplainResponse,
  GetPolicyStatusResponse,
  GetStatusResponse,
  ListAllowResponse,
  ListBlocksResponse,
  ListDecisionsResponse,
  RemoveAllowResponse,
  UnblockResponse,
} from '@packetwatch/proto';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { allowJson, allowText } from './allow.js';
import { type BlockRow, type KernelView, blockRows, blocksJson, blocksText, decisionRow, expiresText, unrecordedNote } from './blocks.js';
import { bashCompletion } from './completion.js';
import { explainJson, explainText } from './explain.js';
import { plural } from './format.js';
import { type PolicyConnection, type ProbeConnection, RpcError, connectPolicy, connectProbe, watch } from './rpc.js';
import { replay, replayConfig, replayJson, replaySettings, replayText, summaryText } from './replay.js';
import { type Outcome, type ServiceReply, statusJson, statusText } from './status.js';
import { watchJson, watchRow } from './watch.js';

export const NAME = 'packetwatchctl';
export const DEFAULT_POLICY = 'unix:/run/packetwatch/policy/policy.sock';
export const DEFAULT_PROBE = 'unix:/run/packetwatch/probe.sock';

/** Exit codes: 0 done, 1 a service unreachable or refusing, 2 a usage error or invalid argument. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  now(): number;
  /** Calls fn on Ctrl-C (or SIGTERM); returns a function that stops listening. */
  onInterrupt(fn: () => void): () => void;
}

/** An error a person can act on: printed as one line, then the process exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    /** A misuse of the command rather than a bad value: its help follows the message. */
    readonly showHelp = false,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface GlobalOptions {
  policy: string;
  probe: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecureTcp?: boolean;
  json?: boolean;
  timeout: number;
}

function durationArg(what: string, allowZero: boolean) {
  return (raw: string): number => {
    const s = parseDuration(raw);
    if (s === undefined || (!allowZero && s <= 0)) {
      throw new InvalidArgumentError(`expected ${what}: seconds, or a number with s, m, h or d (90, 15m, 1h, 1d)`);
    }
    return s;
  };
}

/** What the commands share: the options, lazily opened connections, output. */
export class Context {
  readonly #opened: { close(): void }[] = [];
  #policy: PolicyConnection | undefined;
  #probe: ProbeConnection | undefined;

  constructor(
    readonly io: Io,
    readonly opts: GlobalOptions,
  ) {}

  get json(): boolean {
    return this.opts.json === true;
  }

  get timeoutMs(): number {
    return Math.round(this.opts.timeout * 1000);
  }

  #endpoint(flag: string, text: string): Endpoint {
    const e = parseEndpoint(text);
    if (!e) throw new CliError(`invalid ${flag} endpoint '${text}': expected unix:/path, /path or host:port`, EXIT.usage);
    // Never plaintext over TCP unless asked: a host:port needs a CA to check the service by.
    if (e.kind === 'tcp' && !this.#tls().ca && !this.opts.insecureTcp) {
      throw new CliError(`${flag} ${text} is TCP: give --tls-ca (TLS), or --insecure-tcp for plaintext`, EXIT.usage);
    }
    return e;
  }

  #tls(): TlsFiles {
    // Empty means unset, as for every PW_ setting (PW_TLS_CA= in an environment file).
    const given = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v);
    const tls: TlsFiles = { ca: given(this.opts.tlsCa), cert: given(this.opts.tlsCert), key: given(this.opts.tlsKey) };
    for (const [flag, path] of [['--tls-ca', tls.ca], ['--tls-cert', tls.cert], ['--tls-key', tls.key]] as const) {
      if (path === undefined) continue;
      try {
        readFileSync(path);
      } catch (e) {
        throw new CliError(`cannot read ${flag} file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.usage);
      }
    }
    if (Boolean(tls.cert) !== Boolean(tls.key)) throw new CliError('--tls-cert and --tls-key go together', EXIT.usage);
    // Without a CA the channel would be plaintext: never send a client certificate's owner there unprotected.
    if (tls.cert && !tls.ca) throw new CliError('--tls-cert and --tls-key need --tls-ca (the CA that signed the service certificate)', EXIT.usage);
    return { ...tls, insecure: this.opts.insecureTcp === true };
  }

  policy(): PolicyConnection {
    if (!this.#policy) {
      this.#policy = connectPolicy(this.opts.policy, this.#endpoint('--policy', this.opts.policy), this.#tls(), this.timeoutMs);
      this.#opened.push(this.#policy);
    }
    return this.#policy;
  }

  probe(): ProbeConnection {
    if (!this.#probe) {
      this.#probe = connectProbe(this.opts.probe, this.#endpoint('--probe', this.opts.probe), this.#tls(), this.timeoutMs);
      this.#opened.push(this.#probe);
    }
    return this.#probe;
  }

  print(text: string): void {
    this.io.out(text.endsWith('\n') ? text : `${text}\n`);
  }

  printJson(doc: unknown): void {
    this.io.out(`${JSON.stringify(doc, null, 2)}\n`);
  }

  warn(text: string): void {
    this.io.err(`${NAME}: ${text}\n`);
  }

  close(): void {
    for (const c of this.#opened) c.close();
  }
}

async function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    if (e instanceof RpcError) return { ok: false, error: { code: e.codeName, message: e.details } };
    throw e;
  }
}

function unreachableLine(service: string, address: string, r: Outcome<unknown>): string | undefined {
  return r.ok ? undefined : `${service} unreachable at ${address}: ${r.error.code} (${r.error.message})`;
}

/** An address or a prefix for block/unblock/watch --source; exit 2 naming the value otherwise. */
function sourceArg(text: string, what = 'address or prefix'): string {
  try {
    parsePrefix(text);
  } catch (e) {
    if (e instanceof AddressError) {
      throw new CliError(`invalid ${what} '${text}': ${text.includes('/') ? e.message.replace(/^invalid address '[^']*': /, '') : 'not an IPv4 or IPv6 address'}`, EXIT.usage);
    }
    throw e;
  }
  return text;
}

/**
 * What was named, when the source the policy decided on covers more (an
 * address blocks its /64): "the /64 holding 2001:db8:1:2::7"; empty when
 * the source is exactly what was named.
 */
export function widenedNote(named: string, source: string): string {
  const given = parsePrefix(named);
  const canonical = named.includes('/') ? formatPrefix(given) : formatAddress(given.addr);
  if (canonical === source) return '';
  const slash = source.lastIndexOf('/');
  const what = slash < 0 ? source : `/${source.slice(slash + 1)}`;
  return `the ${what} holding ${canonical}`;
}

function prefixArg(text: string): string {
  try {
    parsePrefix(text);
  } catch (e) {
    if (e instanceof AddressError) throw new CliError(`invalid address or CIDR '${text}': ${e.message.replace(/^invalid address '[^']*': /, '')}`, EXIT.usage);
    throw e;
  }
  return text;
}

function describeRow(r: BlockRow, nowMs: number, note = ''): string {
  const by = r.shadow
    ? 'SHADOW: not enforced (the policy runs with PW_ENFORCE=False, nothing is dropped)'
    : r.enforcedBy.length > 0
      ? `enforced by ${r.enforcedBy.join(', ')}`
      : 'not enforced by any probe yet';
  return `${r.ip}${note ? ` (${note})` : ''}: ${r.reason} (${r.origin ?? 'no decision'}), expires ${expiresText(r, nowMs)}, ${by}`;
}

/** The block or unblock was made; says on stderr when the policy could not record it. */
function warnUnrecorded(ctx: Context, rows: readonly BlockRow[]): void {
  const note = unrecordedNote(rows);
  if (note) ctx.warn(note);
}

async function status(ctx: Context): Promise<number> {
  const policy = ctx.policy();
  const probe = ctx.probe();
  const [ps, ph, rs, rh] = await Promise.all([
    outcome(policy.unary<GetPolicyStatusResponse>((c, m, o, cb) => c.getStatus({}, m, o, cb))),
    outcome(policy.health('packetwatch.v1.Policy')),
    outcome(probe.unary<GetStatusResponse>((c, m, o, cb) => c.getStatus({}, m, o, cb))),
    outcome(probe.health('packetwatch.v1.Probe')),
  ]);
  const policyReply: ServiceReply<GetPolicyStatusResponse> = { address: policy.address, status: ps, health: ph };
  const probeReply: ServiceReply<GetStatusResponse> = { address: probe.address, status: rs, health: rh };
  const now = ctx.io.now();
  const doc = statusJson(policyReply, probeReply, now);
  if (ctx.json) ctx.printJson(doc);
  else ctx.print(statusText(doc, now));
  let code: number = EXIT.ok;
  for (const [service, reply] of [['policy', policyReply], ['probe', probeReply]] as const) {
    const line = unreachableLine(service, reply.address, reply.status);
    if (line) {
      ctx.warn(line);
      code = EXIT.failed;
    } else if (reply.health.ok && reply.health.value !== 'SERVING') {
      ctx.warn(`${service} at ${reply.address} is reachable but its health is ${reply.health.value}`);
      code = EXIT.failed;
    }
  }
  return code;
}

async function blocks(ctx: Context, opts: { all?: boolean; drift: boolean }): Promise<number> {
  const policy = ctx.policy();
  const decisions = policy.list(
    (c, pageToken, m, o, cb) => c.listDecisions({ all: opts.all === true, pageSize: PAGE_SIZE.max, pageToken }, m, o, cb),
    (res: ListDecisionsResponse) => res.decisions,
  );
  let kernel: Promise<KernelView>;
  if (!opts.drift) {
    kernel = Promise.resolve({ checked: false, address: null, error: null });
  } else {
    const probe = ctx.probe();
    kernel = Promise.all([
      probe.list(
        (c, pageToken, m, o, cb) => c.listBlocks({ pageSize: PAGE_SIZE.max, pageToken }, m, o, cb),
        (res: ListBlocksResponse) => res.blocks,
      ),
      probe.unary<GetStatusResponse>((c, m, o, cb) => c.getStatus({}, m, o, cb)),
    ]).then(
      ([blocks, st]): KernelView => ({ checked: true, address: probe.address, probeId: st.probeId, blocks }),
      (e: unknown): KernelView => {
        if (!(e instanceof RpcError)) throw e;
        return { checked: false, address: probe.address, error: { code: e.codeName, message: e.details } };
      },
    );
  }
  const [list, view] = await Promise.all([decisions, kernel]);
  const now = ctx.io.now();
  const rows = blockRows(list, view, now);
  if (ctx.json) ctx.printJson(blocksJson(rows, view));
  else ctx.print(blocksText(rows, view, now, opts.all === true));
  if (!view.checked && view.error) {
    ctx.warn(
      `probe unreachable at ${view.address}: ${view.error.code} (${view.error.message}); ` +
        'drift not checked (DRIFT shows ?); give --probe, or --no-drift to skip the check',
    );
    return EXIT.failed;
  }
  return EXIT.ok;
}

async function block(ctx: Context, ipText: string, opts: { ttl?: number; reason?: string }): Promise<number> {
  const ip = sourceArg(ipText);
  const ttl = opts.ttl === undefined ? undefined : { seconds: BigInt(Math.floor(opts.ttl)), nanos: Math.round((opts.ttl % 1) * 1e9) };
  const res = await ctx
    .policy()
    .unary<BlockResponse>((c, m, o, cb) => c.block({ ip, ttl, reason: opts.reason ?? '' }, m, o, cb));
  const now = ctx.io.now();
  const row = res.decision ? decisionRow(res.decision, now) : undefined;
  if (ctx.json) {
    ctx.printJson({ decision: row ?? null, alreadyBlocked: res.alreadyBlocked, requested: ip });
  } else if (row) {
    const note = widenedNote(ip, row.ip);
    ctx.print(res.alreadyBlocked ? `Already blocked: ${describeRow(row, now, note)}` : `Blocked ${describeRow(row, now, note)}`);
  }
  warnUnrecorded(ctx, row ? [row] : []);
  return EXIT.ok;
}

async function explain(ctx: Context, sourceText: string): Promise<number> {
  const source = sourceArg(sourceText);
  const res = await ctx.policy().unary<ExplainResponse>((c, m, o, cb) => c.explain({ source }, m, o, cb));
  const now = ctx.io.now();
  const doc = explainJson(res, now);
  if (ctx.json) ctx.printJson(doc);
  else ctx.print(explainText(doc, now));
  return EXIT.ok;
}

async function unblock(ctx: Context, ipText: string | undefined, opts: { all?: boolean }): Promise<number> {
  if (opts.all && ipText !== undefined) throw new CliError('give an address or prefix, or --all, not both', EXIT.usage, true);
  if (!opts.all && ipText === undefined) throw new CliError('give the address or prefix to unblock, or --all', EXIT.usage, true);
  const ip = ipText === undefined ? '' : sourceArg(ipText);
  const res = await ctx
    .policy()
    .unary<UnblockResponse>((c, m, o, cb) => c.unblock({ ip, all: opts.all === true }, m, o, cb));
  const now = ctx.io.now();
  const ended = res.ended.map((d) => decisionRow(d, now));
  if (ctx.json) {
    ctx.printJson({ ended });
  } else if (ended.length === 0) {
    ctx.print(
      opts.all
        ? 'No active decisions: nothing to unblock.'
        : `No active decision on the source of ${ip}; the probes were told to remove any kernel block of it all the same.`,
    );
  } else {
    const note = opts.all ? '' : widenedNote(ip, ended[0]!.ip);
    ctx.print(`Unblocked ${plural(ended.length, 'source')}: ${ended.map((r) => `${r.ip}${note ? `, ${note}` : ''} (decision ${r.decisionId}, ${r.reason})`).join(', ')}`);
  }
  warnUnrecorded(ctx, ended);
  return EXIT.ok;
}

async function allowAdd(ctx: Context, prefixText: string, opts: { note?: string }): Promise<number> {
  const prefix = prefixArg(prefixText);
  const res = await ctx
    .policy()
    .unary<AddAllowResponse>((c, m, o, cb) => c.addAllow({ prefix, note: opts.note ?? '' }, m, o, cb));
  const now = ctx.io.now();
  const ended = res.ended.map((d) => decisionRow(d, now));
  if (ctx.json) {
    ctx.printJson({ entry: res.entry ? allowJson(res.entry) : null, alreadyPresent: res.alreadyPresent, ended });
    return EXIT.ok;
  }
  const text = res.entry?.prefix ?? prefix;
  const lines = [res.alreadyPresent ? `${text} was already on the allowlist.` : `Allowlisted ${text}.`];
  if (ended.length > 0) lines.push(`Ended the decisions it covers: ${ended.map((r) => r.ip).join(', ')}`);
  ctx.print(lines.join('\n'));
  return EXIT.ok;
}

async function allowRemove(ctx: Context, prefixText: string): Promise<number> {
  const prefix = prefixArg(prefixText);
  const res = await ctx
    .policy()
    .unary<RemoveAllowResponse>((c, m, o, cb) => c.removeAllow({ prefix }, m, o, cb));
  if (ctx.json) ctx.printJson({ removed: res.removed });
  else ctx.print(res.removed ? `Removed ${prefix} from the allowlist.` : `${prefix} is not an operator allowlist entry; nothing removed.`);
  return EXIT.ok;
}

async function allowList(ctx: Context): Promise<number> {
  const res = await ctx.policy().unary<ListAllowResponse>((c, m, o, cb) => c.listAllow({}, m, o, cb));
  const entries = res.entries.map(allowJson);
  if (ctx.json) ctx.printJson({ entries });
  else ctx.print(allowText(entries, ctx.io.now()));
  return EXIT.ok;
}

async function watchCommand(ctx: Context, opts: { since?: number; source?: string }): Promise<number> {
  const source = opts.source === undefined ? '' : sourceArg(opts.source, 'source address or prefix');
  const since = opts.since === undefined ? undefined : new Date(ctx.io.now() - opts.since * 1000);
  const policy = ctx.policy();
  if (!ctx.json) ctx.print(header());
  const handle = watch(policy, { since, source }, (e) => {
    if (ctx.json) {
      ctx.io.out(`${JSON.stringify(watchJson(e))}\n`);
      return;
    }
    const line = watchRow(e, ctx.io.now());
    if (line !== undefined) ctx.io.out(`${line}\n`);
  });
  const stop = ctx.io.onInterrupt(() => handle.cancel());
  try {
    await handle.done;
  } finally {
    stop();
  }
  return EXIT.ok;
}

/** --own-addresses: comma-separated addresses; exit 2 naming one that is not. */
function ownAddresses(text: string | undefined): string[] {
  if (text === undefined) return [];
  const list = text.split(',').map((a) => a.trim()).filter(Boolean);
  for (const a of list) {
    if (isIP(a) === 0) throw new CliError(`invalid --own-addresses '${text}': expected comma-separated IPv4 or IPv6 addresses ('${a}' is not one)`, EXIT.usage);
  }
  return list;
}

async function replayCommand(ctx: Context, path: string, flags: ReadonlyMap<string, string>, own: readonly string[]): Promise<number> {
  let config;
  try {
    config = replayConfig(flags, ctx.io.env);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message, EXIT.usage);
    throw e;
  }
  let result;
  try {
    result = replay(path, config, own);
  } catch (e) {
    // PW_ALLOWLIST is checked as the rule is made.
    if (e instanceof ConfigError) throw new CliError(e.message, EXIT.usage);
    throw e;
  }
  const { decisions, summary, error } = result;
  if (error !== undefined && summary.capture.frames === 0) {
    if (ctx.json) ctx.printJson(replayJson(decisions, summary, config, error));
    ctx.warn(error);
    return EXIT.failed;
  }
  if (ctx.json) {
    ctx.printJson(replayJson(decisions, summary, config, error));
  } else {
    ctx.print(replayText(decisions));
    ctx.io.err(`${summaryText(decisions, summary)}\n`);
  }
  if (error === undefined) return EXIT.ok;
  ctx.warn(`${error}; the decisions above are those of the frames before it`);
  return EXIT.failed;
}

/** The command tree. `exec` receives each command's action, so that run() owns errors and exit codes. */
export function buildProgram(io: Io, exec: (action: (ctx: Context) => Promise<number>, cmd: Command) => Promise<void>): Command {
  const program = new Command(NAME)
    .description('Operate Packetwatch: service status, block decisions, the allowlist and the live connection table.')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .exitOverride()
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .addOption(new Option('--policy <endpoint>', 'policy service: unix:/path, /path or host:port').env('PW_CTL_POLICY_ADDR').default(DEFAULT_POLICY))
    .addOption(new Option('--probe <endpoint>', 'probe service (status, drift): unix:/path, /path or host:port').env('PW_CTL_PROBE_ADDR').default(DEFAULT_PROBE))
    .addOption(new Option('--tls-ca <file>', 'CA (PEM) that signed the service certificate: TLS over TCP (without it, TCP is plaintext)').env('PW_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'client certificate (PEM) for mutual TLS').env('PW_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'client private key (PEM) for mutual TLS').env('PW_TLS_KEY'))
    .addOption(new Option('--insecure-tcp', 'allow plaintext TCP to a service (without it, a host:port needs --tls-ca)'))
    .addOption(new Option('--json', 'print one JSON document (watch: one JSON object per line)'))
    .addOption(new Option('--timeout <duration>', 'deadline of each call (5s, 1m)').default(5, '5s').argParser(durationArg('a positive duration', false)));

  const act =
    <A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<number>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      await exec((ctx) => fn(ctx, ...(args.slice(0, -1) as A)), cmd);
    };

  program
    .command('status')
    .description('health, version, interface, thresholds, counters and probes of both services (exit 1 if one is unreachable)')
    .action(act((ctx) => status(ctx)));

  program
    .command('blocks')
    .alias('list')
    .description("active decisions, with a DRIFT mark where the probe's kernel blocklist disagrees")
    .option('--all', 'include ended and expired decisions')
    .option('--no-drift', "do not compare with the probe's kernel blocklist")
    .action(act((ctx, opts: { all?: boolean; drift: boolean }) => blocks(ctx, opts)));

  program
    .command('block')
    .description('block a source on every probe: an address blocks its prefix (PW_IPV6_PREFIX, PW_IPV4_PREFIX)')
    .argument('<ip>', 'an IPv4 or IPv6 address, or a prefix at least as long as the policy keys sources by (2001:db8:1:2::/64)')
    .option('--ttl <duration>', "how long (1h, 30m, 1d; 0 = permanent); default: the policy's PW_BLOCK_TTL", durationArg('a duration', true))
    .option('--reason <text>', 'why, shown in blocks')
    .action(act((ctx, ip: string, opts: { ttl?: number; reason?: string }) => block(ctx, ip, opts)));

  program
    .command('explain')
    .description('why a source is, is not, or was blocked: the rule, the counted probes, the engine, the TTL and escalation step')
    .argument('<ip>', 'an address (explains its prefix) or a prefix')
    .action(act((ctx, ip: string) => explain(ctx, ip)));

  program
    .command('unblock')
    .description('end the decision on a source (or all) and unblock it on every probe')
    .argument('[ip]', 'an address (its prefix is unblocked) or a prefix')
    .option('--all', 'every active decision')
    .action(act((ctx, ip: string | undefined, opts: { all?: boolean }) => unblock(ctx, ip, opts)));

  const allow = program.command('allow').description('the allowlist: addresses and ranges never blocked');
  allow
    .command('add')
    .description('never block an address or CIDR; ends the active decisions it covers')
    .argument('<prefix>', 'an address or a CIDR (192.0.2.0/24, 2001:db8::/32)')
    .option('--note <text>', 'why, shown in allow list')
    .action(act((ctx, prefix: string, opts: { note?: string }) => allowAdd(ctx, prefix, opts)));
  allow
    .command('remove')
    .alias('rm')
    .description('remove an operator allowlist entry')
    .argument('<prefix>', 'the address or CIDR as added')
    .action(act((ctx, prefix: string) => allowRemove(ctx, prefix)));
  allow
    .command('list')
    .alias('ls')
    .description("every entry: PW_ALLOWLIST, operators', and the probes' own addresses")
    .action(act((ctx) => allowList(ctx)));

  program
    .command('watch')
    .description('the live table (TIME, SOURCE IP, PORT, MESSAGE) from the policy until Ctrl-C')
    .option('--since <duration>', 'replay the recent events of this long ago first (30s, 5m)', durationArg('a duration', true))
    .option('--source <ip>', 'only this address or prefix (and the blocks of the prefix an address falls in)')
    .action(act((ctx, opts: { since?: number; source?: string }) => watchCommand(ctx, opts)));

  const replayCmd = program
    .command('replay')
    .description(
      'run a capture through the rule the services run, on its own timestamps, with the policy\'s settings (flags or PW_ variables), ' +
        'and print the decisions they would have made; a summary of the frames goes to stderr (exit 1 for a capture that cannot be read whole)',
    )
    .argument('<capture>', 'a pcap or pcapng file (tcpdump -w): Ethernet, Linux cooked (SLL, SLL2: tcpdump -i any) or raw IP');
  /** Each setting's flag by commander's attribute name. */
  const settingFlags = new Map<string, string>();
  for (const s of Object.values(replaySettings)) {
    const o = new Option(`--${s.flag} <value>`, `${s.describe} (${s.env}; default ${String(s.default) === '' ? 'none' : String(s.default)})`);
    settingFlags.set(o.attributeName(), s.flag);
    replayCmd.addOption(o);
  }
  replayCmd.option(
    '--own-addresses <list>',
    "the capture's host's own addresses, comma-separated: with PW_WHITELIST_SELF their probes are not counted, as a probe's own addresses are not (default none)",
  );
  replayCmd.addHelpText(
    'after',
    [
      '',
      'Closed mode (PW_PORTSCAN_COUNT=closed): a capture does not say which sockets',
      'listened, so a port counts as open where the capture shows the host answering',
      'a SYN to it with a SYN-ACK (from the probed address), or where PW_OPEN_PORTS',
      'declares it; a port never answered in the capture counts as closed. Capture',
      "both directions (tcpdump's default, not -Q in). The file is read twice: a",
      'pipe is refused (exit 2).',
      'Escalation (PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX): a source detected again',
      "after its block lapsed within the capture gets its next offence's TTL.",
    ].join('\n'),
  );
  replayCmd.action(
    act((ctx, path: string, opts: Record<string, string | undefined>) => {
      const flags = new Map<string, string>();
      for (const [attr, flag] of settingFlags) if (opts[attr] !== undefined) flags.set(flag, opts[attr]);
      return replayCommand(ctx, path, flags, ownAddresses(opts.ownAddresses));
    }),
  );

  program
    .command('completion')
    .description('print a bash completion script: source <(packetwatchctl completion)')
    .action(async () => {
      io.out(bashCompletion(program));
    });

  return program;
}

function describeRpc(e: RpcError): { message: string; code: number } {
  if (e.unreachable) return { message: `${e.service} unreachable at ${e.address}: ${e.codeName} (${e.details})`, code: EXIT.failed };
  if (e.code === 3 /* INVALID_ARGUMENT */) return { message: `${e.service} refused the request: ${e.details} (${e.codeName})`, code: EXIT.usage };
  return { message: `${e.service} at ${e.address} refused: ${e.details} (${e.codeName})`, code: EXIT.failed };
}

/** Parses argv (without node and the script), runs the command, returns the exit code. Never throws. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  let code: number = EXIT.ok;
  let ctx: Context | undefined;
  let current: Command | undefined;
  const program = buildProgram(io, async (action, cmd) => {
    current = cmd;
    ctx = new Context(io, cmd.optsWithGlobals<GlobalOptions>());
    code = await action(ctx);
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (e instanceof CliError) {
      io.err(`${NAME}: ${e.message}\n`);
      if (e.showHelp && current) io.err(`\n${current.helpInformation()}`);
      return e.exitCode;
    }
    if (e instanceof RpcError) {
      const { message, code: exit } = describeRpc(e);
      io.err(`${NAME}: ${message}\n`);
      return exit;
    }
    io.err(`${NAME}: ${e instanceof Error ? e.message : String(e)}\n`);
    if (io.env.PW_DEBUG) io.err(`${e instanceof Error ? e.stack : ''}\n`);
    return EXIT.failed;
  } finally {
    ctx?.close();
  }
}

