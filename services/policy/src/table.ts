// The seed's human view: a banner, then one row per connection, whitelist
// and blacklist event: TIME, SOURCE IP, PORT, MESSAGE.
// The rows themselves are @packetwatch/common's, shared with `packetwatchctl watch`.
export { header, row } from '@packetwatch/common';

export function banner(opts: { interface: string; portThreshold: number; windowSeconds: number; whitelistSelf: boolean; shadow?: boolean }): string {
  const self = opts.whitelistSelf
    ? `We will whitelist any incoming connections originating from our own IPs on ${opts.interface}!`
    : `We will NOT whitelist any incoming connections originating from our own IPs on ${opts.interface}, so play nice!`;
  return [
    'Welcome to Packetwatch!',
    `We will be logging all incoming connections on ${opts.interface}`,
    opts.shadow
      ? `Any source IPs that hit ${opts.portThreshold} different ports within ${opts.windowSeconds} second(s) would have their future connection attempts dropped, but this is SHADOW MODE (PW_ENFORCE=False): nothing is dropped!`
      : `Any source IPs that hit ${opts.portThreshold} different ports within ${opts.windowSeconds} second(s) will have their future connection attempts dropped!`,
    self,
  ].join('\n');
}
