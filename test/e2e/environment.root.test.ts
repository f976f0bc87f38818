// One environment for both services, as `make run` and compose give them:
// each names, at start, every PW_ variable that no part of Packetwatch reads,
// with the setting it most likely misspells, and keeps running; neither
// complains about its sibling's settings.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair } from '@packetwatch/test-support';
import { Services } from '@packetwatch/test-support/services';

const MISSPELT = { PW_PORTSCAN_TIME_TRESHOLD: '5', PW_BLOK_TTL: '1h' }; // misspelt on purpose

describe('misspelt settings', () => {
  let net: NamespacePair;
  let svc: Services;

  beforeAll(async () => {
    net = createNamespacePair(10);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { ...MISSPELT, PW_ALLOWLIST: '192.0.2.0/24' },
    });
    await svc.start();
  });

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  const warnings = (lines: string[]) =>
    lines.flatMap((l) => {
      try {
        const o = JSON.parse(l) as { level?: string; msg?: string };
        return o.level === 'warn' && o.msg?.includes('is not a Packetwatch setting') ? [o.msg] : [];
      } catch {
        return [];
      }
    });
  const expected = [
    'PW_BLOK_TTL is not a Packetwatch setting and is ignored; did you mean PW_BLOCK_TTL?',
    'PW_PORTSCAN_TIME_TRESHOLD is not a Packetwatch setting and is ignored; did you mean PW_PORTSCAN_TIME_THRESHOLD?',
  ];

  it('the probe names each unknown variable with the setting meant, and runs', async () => {
    expect(warnings(svc.probe!.stdout)).toEqual(expected);
    expect((await svc.probeStatus()).interface).toBe(net.victimIf);
  });

  it('the policy does the same, and runs with the defaults for what was misspelt', async () => {
    expect(warnings(svc.policy!.stderr)).toEqual(expected);
    const st = await svc.policyStatus();
    expect({ window: st.window?.seconds, blockTtl: st.blockTtl?.seconds ?? 0n }).toEqual({ window: 60n, blockTtl: 0n });
  });
});
