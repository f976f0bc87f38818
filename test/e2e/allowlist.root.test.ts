// The policy's allowlist is authoritative everywhere: it travels to every
// probe's kernel allowlist, so the XDP program never blocks an allowlisted
// source (no block made and lifted afterwards), the probe's BlockIp refuses
// one whoever asks, and a probe keeps the list across its own restarts while
// the policy is away.
import * as grpc from '@grpc/grpc-js';
import { type AddAllowResponse, type BlockIpResponse, BlockReason, type RemoveAllowResponse } from '@packetwatch/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, waitFor } from '@packetwatch/test-support';
import { type Services, call } from '@packetwatch/test-support/services';
import { stackPerDescribe } from './services.js';

const PORTS = [8086, 8087, 8088];
const OPERATOR_NET = '198.51.100.0/24';
/** Upper bound for what is slow on a loaded machine (a service starting, a message on its way): generous on purpose. */
const SLOW_MS = 60_000;
const deadline = () => ({ deadline: Date.now() + 5000 });

describe("the policy's allowlist in the kernel", () => {
  /** The attacker's second address, the one allowlisted. */
  const allowedOf = (pair: NamespacePair) => pair.attackerAddr.replace(/\.2$/, '.3');
  const stack = stackPerDescribe({
    slot: 15,
    ports: PORTS,
    // In-kernel detection on (the default): the kernel would block at the crossing SYN.
    env: (pair) => ({ PW_ALLOWLIST: `${allowedOf(pair)}/32` }),
    attackerAddresses: (pair) => [allowedOf(pair)],
    timeoutMs: SLOW_MS,
  });
  let net: NamespacePair;
  let svc: Services;
  beforeAll(() => {
    ({ net, svc } = stack());
  });
  /** A second address of the attacker's namespace, in PW_ALLOWLIST. */
  const allowed = () => allowedOf(net);

  /** BlockIp straight on the probe (as root, through its socket): the status code, or OK. */
  const blockOnProbe = (ip: string) =>
    call<BlockIpResponse>((cb) => svc.controlClient.blockIp({ ip, ttl: undefined, reason: BlockReason.BLOCK_REASON_MANUAL }, new grpc.Metadata(), deadline(), cb)).then(
      () => grpc.status.OK,
      (e: grpc.ServiceError) => e.code,
    );


  it('never blocks an allowlisted scanner in the kernel, so nothing is lifted afterwards', async () => {
    await svc.ensureRunning();
    await waitFor('the allowlist at the probe', async () => ((await blockOnProbe(allowed())) === grpc.status.FAILED_PRECONDITION ? true : undefined), SLOW_MS);
    const before = (await svc.probeStatus()).counters!;
    for (let round = 0; round < 2; round++) {
      for (const port of PORTS) {
        const r = await net.inAttacker('curl', ['-s', '--connect-timeout', '10', '--interface', allowed(), `http://${net.victimAddr}:${port}/`]);
        expect(r.stdout).toBe('pong');
      }
    }
    const after = (await svc.probeStatus()).counters!;
    // Six SYNs on three ports, each seen, none blocked or dropped by the kernel.
    expect(after.syn - before.syn).toBeGreaterThanOrEqual(6n);
    expect(after.scanBlocked - before.scanBlocked).toBe(0n);
    expect(after.synDropped - before.synDropped).toBe(0n);
    expect((await svc.probeStatus()).blocks).toBe(0);
  });

  it("refuses BlockIp of an allowlisted address on the probe itself, whoever asks", async () => {
    await svc.ensureRunning();
    await waitFor('the allowlist at the probe', async () => ((await blockOnProbe(allowed())) === grpc.status.FAILED_PRECONDITION ? true : undefined), SLOW_MS);
    expect((await svc.probeStatus()).blocks).toBe(0);
  });

  it("carries an operator's AddAllow to the kernel at once, and RemoveAllow out of it", async () => {
    await svc.ensureRunning();
    const ip = '198.51.100.5';
    const added = await call<AddAllowResponse>((cb) => svc.policyClient.addAllow({ prefix: OPERATOR_NET, note: 'partner' }, new grpc.Metadata(), deadline(), cb));
    expect(added.alreadyPresent).toBe(false);
    await waitFor('the entry at the probe', async () => ((await blockOnProbe(ip)) === grpc.status.FAILED_PRECONDITION ? true : undefined), SLOW_MS);
    const removed = await call<RemoveAllowResponse>((cb) => svc.policyClient.removeAllow({ prefix: OPERATOR_NET }, new grpc.Metadata(), deadline(), cb));
    expect(removed.removed).toBe(true);
    await waitFor('the entry gone from the probe', async () => ((await blockOnProbe(ip)) === grpc.status.OK ? true : undefined), SLOW_MS);
    await svc.unblockEverything();
    // The configured entry stayed through both updates.
    expect(await blockOnProbe(allowed())).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('keeps the list across its own restart while the policy is away', async () => {
    await svc.ensureRunning();
    await waitFor('the allowlist at the probe', async () => ((await blockOnProbe(allowed())) === grpc.status.FAILED_PRECONDITION ? true : undefined), SLOW_MS);
    await svc.policy!.stop('SIGKILL');
    await svc.probe!.stop('SIGKILL');
    await svc.startProbe();
    expect((await svc.probeStatus()).policyConnected).toBe(false);
    expect(await blockOnProbe(allowed())).toBe(grpc.status.FAILED_PRECONDITION);
    await svc.ensureRunning();
  }, 4 * SLOW_MS);
});
