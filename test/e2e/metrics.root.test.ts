// Both services' /metrics as Prometheus's own linter reads them: a running
// stack (probe + policy in a namespace, as `make run` starts them) that has
// seen traffic, scraped and fed to `promtool check metrics`.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NamespacePair, createNamespacePair, waitFor } from '@packetwatch/test-support';
import { Services } from '@packetwatch/test-support/services';

const PORTS = { probe: 19090, policy: 19091 } as const;

describe('metrics endpoints', () => {
  let net: NamespacePair;
  let svc: Services;

  const scrape = async (port: number) => {
    const r = await net.inVictim('curl', ['-sSf', `http://127.0.0.1:${port}/metrics`]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    net = createNamespacePair(8);
    svc = new Services({
      netns: net.victimNs,
      ifdev: net.victimIf,
      env: { PW_PROMETHEUS_PORT: String(PORTS.probe), PW_POLICY_PROMETHEUS_PORT: String(PORTS.policy), PW_METRICS_HOST: '127.0.0.1' },
    });
    await svc.start();
    // A connection attempt (refused: nothing listens), so that the event counters have moved.
    await net.inAttacker('curl', ['-s', '--connect-timeout', '2', `http://${net.victimAddr}:9/`]);
    await waitFor('the event at the policy', async () => ((await svc.policyStatus()).eventsReceived > 0n ? true : undefined), 10_000);
  });

  afterAll(async () => {
    await svc?.destroy();
    net?.destroy();
  });

  it.each(Object.entries(PORTS))("the %s's /metrics passes promtool check metrics", async (_service, port) => {
    const text = await scrape(port);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: check.status, problems: `${check.stdout}${check.stderr}` }).toEqual({ status: 0, problems: '' });
    // The runtime's handle, request and resource counts stay, per type, under gauge names without _total.
    expect(text).toMatch(/^# TYPE nodejs_active_handles gauge$/m);
    expect(text).toMatch(/^nodejs_active_handles\{type="\w+"\} \d+$/m);
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);
  });
});
