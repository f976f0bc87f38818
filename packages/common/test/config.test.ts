// Settings that used to pass validation and break things: each has a range,
// and a value outside it is a ConfigError naming the setting (exit code 2).
import { describe, expect, it } from 'vitest';
import { policySettings, validate as validatePolicy } from '../../../services/policy/src/config.js';
import { probeSettings, validate as validateProbe } from '../../../services/probe/src/config.js';
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

describe('TCP needs mutual TLS or the explicit insecure flag', () => {
  const certs = { PW_TLS_CERT: '/etc/pw/cert.pem', PW_TLS_KEY: '/etc/pw/key.pem' };
  const probeC = (env: Record<string, string>) => validateProbe(probe(env));
  const policyC = (env: Record<string, string>) => validatePolicy(policy(env));

  it('refuses a TCP listener with a certificate but no CA: anonymous clients would reach every call', () => {
    expect(refusal(() => policyC({ PW_POLICY_TCP_ADDR: '127.0.0.1:7000', ...certs })).message).toBe(
      'invalid PW_POLICY_TCP_ADDR="127.0.0.1:7000": expected PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True',
    );
    expect(refusal(() => probeC({ PW_PROBE_TCP_ADDR: '127.0.0.1:7000', ...certs })).setting).toBe('PW_PROBE_TCP_ADDR');
  });

  it('refuses a TCP policy address without a CA to check it by', () => {
    expect(refusal(() => probeC({ PW_POLICY_ADDR: 'policy.internal:7000' })).message).toBe(
      'invalid PW_POLICY_ADDR="policy.internal:7000": expected unix:/path, or host:port with PW_TLS_CA (TLS) or PW_INSECURE_TCP=True (plaintext)',
    );
  });

  it('takes mutual TLS, or plaintext when PW_INSECURE_TCP says so', () => {
    expect(policyC({ PW_POLICY_TCP_ADDR: '127.0.0.1:7000', ...certs, PW_TLS_CA: '/etc/pw/ca.pem' }).tcpAddr).toBe('127.0.0.1:7000');
    expect(policyC({ PW_POLICY_TCP_ADDR: '127.0.0.1:7000', PW_INSECURE_TCP: 'True' }).tcpAddr).toBe('127.0.0.1:7000');
    expect(probeC({ PW_POLICY_ADDR: 'policy.internal:7000', PW_TLS_CA: '/etc/pw/ca.pem' }).policyAddr).toBe('policy.internal:7000');
    expect(probeC({ PW_POLICY_ADDR: 'policy.internal:7000', PW_INSECURE_TCP: 'True' }).policyAddr).toBe('policy.internal:7000');
  });
});
