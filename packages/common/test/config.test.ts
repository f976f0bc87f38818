// Settings that used to pass validation and break things: each has a range,
// and a value outside it is a ConfigError naming the setting (exit code 2).
import { describe, expect, it } from 'vitest';
import { policySettings } from '../../../services/policy/src/config.js';
import { probeSettings } from '../../../services/probe/src/config.js';
import { ConfigError, MAX_TTL_SECONDS, loadConfig } from '../src/config.js';

const probe = (env: Record<string, string>) => loadConfig(probeSettings, [], env).config;
const policy = (env: Record<string, string>) => loadConfig(policySettings, [], env).config;
const refusal = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('no ConfigError');
};

describe('setting ranges', () => {
  it.each([
    ['PW_BLOCK_TTL', '3651d'], // over ten years: the probe would refuse every BlockIp
    ['PW_BLOCK_TTL', '213504d'], // wraps around 2^64 ns: kernel blocks would expire at once
    ['PW_BLOCK_TTL', '0.0000000001'], // would round to 0, "permanent"
    ['PW_BLOCK_TTL', '0.5'],
    ['PW_BLOCK_TTL', '9'.repeat(400)],
    ['PW_MAX_BLOCKS_PER_MINUTE', '-0'], // 0 is "no cap": a sign is not a way to write it
    ['PW_MAX_BLOCKS_PER_MINUTE', '+5'],
    ['PW_PORTSCAN_PORT_THRESHOLD', '9'.repeat(400)],
    ['PW_METRICS_HOST', 'not a host'],
    ['PW_METRICS_HOST', '0.0.0.0:9090'],
    ['PW_METRICS_HOST', '-leading.hyphen'],
  ])('the policy refuses %s=%s, naming it', (name, raw) => {
    const e = refusal(() => policy({ [name]: raw }));
    expect(e.setting).toBe(name);
  });

  it.each([
    ['PW_IFDEV', '..'], // detach would remove the pin root's parent
    ['PW_IFDEV', '.'],
    ['PW_IFDEV', 'a/b'],
    ['PW_BLOCK_TTL', '3651d'],
    ['PW_MAX_BLOCKS_PER_MINUTE', '-0'],
    ['PW_METRICS_HOST', 'x y'],
  ])('the probe refuses %s=%s, naming it', (name, raw) => {
    expect(refusal(() => probe({ [name]: raw })).setting).toBe(name);
  });

  it('takes the ends of each range', () => {
    expect(policy({ PW_BLOCK_TTL: '3650d' }).blockTtl).toBe(MAX_TTL_SECONDS);
    expect(policy({ PW_BLOCK_TTL: '1s' }).blockTtl).toBe(1);
    expect(policy({ PW_BLOCK_TTL: '0' }).blockTtl).toBe(0);
    expect(policy({ PW_MAX_BLOCKS_PER_MINUTE: '0' }).maxBlocksPerMinute).toBe(0);
    for (const host of ['127.0.0.1', '::1', 'localhost', 'metrics.example.internal', '0.0.0.0']) {
      expect(probe({ PW_METRICS_HOST: host }).metricsHost).toBe(host);
    }
    expect(probe({ PW_IFDEV: 'eth0.100' }).ifdev).toBe('eth0.100');
  });

  it('says what a duration accepts', () => {
    expect(refusal(() => policy({ PW_BLOCK_TTL: '1w' })).message).toBe(
      'invalid PW_BLOCK_TTL="1w": expected a duration: 0, or 1s to 3650d (seconds, or a number with s, m, h or d)',
    );
  });
});
