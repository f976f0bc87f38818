// The seed's human view: a banner, then one row per connection, whitelist
// and blacklist event: TIME, SOURCE IP, PORT, MESSAGE.
import type { FeedEvent } from './feed.js';

const COLUMNS = [19, 17, 7] as const;

export function header(): string {
  return `${'TIME'.padEnd(COLUMNS[0])}${'SOURCE IP'.padEnd(COLUMNS[1])}${'PORT'.padEnd(COLUMNS[2])}MESSAGE`;
}

function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

const MESSAGES = { connection: '', whitelist: 'Added to whitelist', blacklist: 'Added to blacklist', unblock: 'Removed from blacklist' };

export function row(e: FeedEvent): string {
  const port = e.kind === 'connection' ? String(e.port) : '';
  return `${clock(e.timeMs).padEnd(COLUMNS[0])}${e.source.padEnd(COLUMNS[1] - 1)} ${port.padEnd(COLUMNS[2])}${MESSAGES[e.kind]}`.trimEnd();
}

export function banner(opts: { interface: string; portThreshold: number; windowSeconds: number; whitelistSelf: boolean }): string {
  const self = opts.whitelistSelf
    ? `We will whitelist any incoming connections originating from our own IPs on ${opts.interface}!`
    : `We will NOT whitelist any incoming connections originating from our own IPs on ${opts.interface}, so play nice!`;
  return [
    'Welcome to Packetwatch!',
    `We will be logging all incoming connections on ${opts.interface}`,
    `Any source IPs that hit ${opts.portThreshold} different ports within ${opts.windowSeconds} second(s) will have their future connection attempts dropped!`,
    self,
  ].join('\n');
}
