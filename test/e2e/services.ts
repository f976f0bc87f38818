// A describe's stack: a namespace pair, a pong server, and probe and policy as
// real processes inside the victim's namespace, as `make run` starts them
// (@packetwatch/test-support/services, shared with the benches).
import { afterAll, beforeAll } from 'vitest';
import { type NamespacePair, createNamespacePair } from '@packetwatch/test-support';
import { ServiceProcess, Services, listeningPongServer } from '@packetwatch/test-support/services';

/** What stackPerDescribe sets up: the namespace pair, a pong server in the victim, probe and policy. */
export interface Stack {
  net: NamespacePair;
  pong: ServiceProcess;
  svc: Services;
}

/**
 * Before a describe's tests: a namespace pair in `slot` (with the attacker's
 * extra addresses), a pong server listening on `ports` in the victim, probe
 * and policy started there with `env`; after them, all of it gone. The
 * returned function gives the stack to the tests.
 */
export function stackPerDescribe(o: {
  slot: number;
  ports: number[];
  /** The services' PW_ settings, or a function of the pair that gives them (for settings naming its addresses). */
  env: Record<string, string> | ((net: NamespacePair) => Record<string, string>);
  attackerAddresses?: (net: NamespacePair) => string[];
  timeoutMs: number;
}): () => Stack {
  let stack: Partial<Stack> = {};
  beforeAll(async () => {
    const net = createNamespacePair(o.slot);
    stack.net = net;
    for (const a of o.attackerAddresses?.(net) ?? []) net.addAttackerAddress(a);
    stack.pong = await listeningPongServer(net.victimNs, o.ports);
    stack.svc = new Services({ netns: net.victimNs, ifdev: net.victimIf, env: typeof o.env === 'function' ? o.env(net) : o.env });
    await stack.svc.start();
  }, o.timeoutMs);
  afterAll(async () => {
    await stack.svc?.destroy();
    await stack.pong?.stop('SIGKILL');
    stack.net?.destroy();
    stack = {};
  });
  return () => stack as Stack;
}
