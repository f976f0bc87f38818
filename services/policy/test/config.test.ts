import { hostname } from 'node:os';
import { ConfigError, MAX_TTL_SECONDS, loadConfig, parseDuration } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { probeSettings, validate as validateProbe } from '../../probe/src/config.js';
import { policySettings, probeConfigOf, validate } from '../src/config.js';

const load = (env: NodeJS.ProcessEnv = {}, argv: string[] = []) => loadConfig(policySettings, argv, env).config;
const loadProbe = (env: NodeJS.ProcessEnv = {}, argv: string[] = []) => loadConfig(probeSettings, argv, env).config;

/** The ConfigError thrown by fn (fails the test when none is). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('policy settings: defaults', () => {
  it("uses the seed's defaults when nothing is set", () => {
    const c = load();
    expect(c.timeThreshold).toBe(60);
    expect(c.portThreshold).toBe(3);
    expect(c.whitelistSelf).toBe(true);
    expect(c.prometheusPort).toBe(9091);
    expect(c.blockTtl).toBe(0);
  });

  it('uses the policy’s own defaults when nothing is set', () => {
    expect(load()).toEqual({
      timeThreshold: 60,
      portThreshold: 3,
      fleetThreshold: 10,
      whitelistSelf: true,
      enforce: true,
      enforceShadowDecisions: true,
      allowlist: '',
      blockTtl: 0,
      blockTtlFactor: '1',
      blockTtlMax: 0,
      stateDir: '/var/lib/packetwatch',
      socket: '/run/packetwatch/policy/policy.sock',
      socketGroup: undefined,
      reportSocket: '/run/packetwatch/report/policy.sock',
      controlGroup: undefined,
      tcpAddr: undefined,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsCa: undefined,
      insecureTcp: false,
      prometheusPort: 9091,
      metricsHost: '0.0.0.0',
      maxSources: 1_250_000,
      maxBlocksPerMinute: 120,
      cappedBlockTtl: 60,
      ipv6Prefix: 64,
      ipv4Prefix: 32,
      portscanCount: 'all',
      openPorts: [],
      decisionRetention: 30 * 86_400,
      reconcileSeconds: 60,
      logFormat: 'auto',
      logLevel: 'info',
    });
  });

  it('treats an empty or blank variable as unset', () => {
    const c = load({ PW_PORTSCAN_TIME_THRESHOLD: '', PW_PORTSCAN_PORT_THRESHOLD: '   ', PW_WHITELIST_SELF: '', PW_BLOCK_TTL: '' });
    expect(c.timeThreshold).toBe(60);
    expect(c.portThreshold).toBe(3);
    expect(c.whitelistSelf).toBe(true);
    expect(c.blockTtl).toBe(0);
  });

  it('reports positionals and --help', () => {
    const loaded = loadConfig(policySettings, ['--help', 'status'], {});
    expect(loaded.help).toBe(true);
    expect(loaded.positionals).toEqual(['status']);
    expect(loadConfig(policySettings, [], {}).help).toBe(false);
  });
});

describe('policy settings: values from the environment and flags', () => {
  it('reads the thresholds from the environment', () => {
    const c = load({ PW_PORTSCAN_TIME_THRESHOLD: '10', PW_PORTSCAN_PORT_THRESHOLD: '5', PW_POLICY_PROMETHEUS_PORT: '0' });
    expect(c.timeThreshold).toBe(10);
    expect(c.portThreshold).toBe(5);
    expect(c.prometheusPort).toBe(0);
  });

  it('accepts the bounds of the thresholds', () => {
    expect(load({ PW_PORTSCAN_TIME_THRESHOLD: '1', PW_PORTSCAN_PORT_THRESHOLD: '1' })).toMatchObject({ timeThreshold: 1, portThreshold: 1 });
    expect(load({ PW_PORTSCAN_TIME_THRESHOLD: '86400', PW_PORTSCAN_PORT_THRESHOLD: '255' })).toMatchObject({
      timeThreshold: 86_400,
      portThreshold: 255,
    });
  });

  it.each([
    ['True', true],
    ['False', false],
    ['true', true],
    ['false', false],
    ['1', true],
    ['0', false],
    ['TRUE', true],
    [' False ', false],
  ])('reads PW_WHITELIST_SELF=%j as %s', (raw, value) => {
    expect(load({ PW_WHITELIST_SELF: raw }).whitelistSelf).toBe(value);
  });

  it('lets a flag win over the environment', () => {
    const c = load({ PW_PORTSCAN_PORT_THRESHOLD: '5', PW_WHITELIST_SELF: 'True', PW_BLOCK_TTL: '1h' }, [
      '--port-threshold',
      '7',
      '--whitelist-self=False',
      '--block-ttl',
      '15m',
    ]);
    expect(c.portThreshold).toBe(7);
    expect(c.whitelistSelf).toBe(false);
    expect(c.blockTtl).toBe(900);
  });

  it('validates a flag like the variable, naming the variable', () => {
    expect(configError(() => load({}, ['--port-threshold', '0'])).message).toBe(
      'invalid PW_PORTSCAN_PORT_THRESHOLD="0": expected an integer from 1 to 255',
    );
  });

  it('turns a boolean setting on with its flag alone, as the help text shows (--insecure-tcp)', () => {
    expect(load({}, ['--insecure-tcp']).insecureTcp).toBe(true);
    expect(load({}, ['--whitelist-self=False', '--insecure-tcp']).insecureTcp).toBe(true);
  });

  it.each([
    ['90', 90],
    ['90s', 90],
    ['15m', 900],
    ['2h', 7200],
    ['1d', 86_400],
    ['0', 0],
    ['1.5m', 90],
  ])('reads PW_BLOCK_TTL=%j as %d seconds', (raw, seconds) => {
    expect(load({ PW_BLOCK_TTL: raw }).blockTtl).toBe(seconds);
    expect(parseDuration(raw)).toBe(seconds);
  });

  it('refuses an unknown flag as a ConfigError for the arguments', () => {
    const e = configError(() => load({}, ['--no-such-flag', 'x']));
    expect(e.setting).toBe('arguments');
    expect(e.value).toBe('--no-such-flag x');
    expect(e.message.startsWith('invalid arguments="--no-such-flag x": expected known flags (')).toBe(true);
    expect(e.message).toContain('--no-such-flag');
  });
});

describe('policy settings: the fleet rule (PW_FLEET_PORT_THRESHOLD)', () => {
  it('is 10 by default, and takes 0 (off), N and 255', () => {
    expect(validate(load()).fleetThreshold).toBe(10);
    expect(validate(load({ PW_FLEET_PORT_THRESHOLD: '0', PW_PORTSCAN_PORT_THRESHOLD: '255' })).fleetThreshold).toBe(0);
    expect(validate(load({ PW_FLEET_PORT_THRESHOLD: '5', PW_PORTSCAN_PORT_THRESHOLD: '5' })).fleetThreshold).toBe(5);
    expect(validate(load({}, ['--fleet-port-threshold', '255'])).fleetThreshold).toBe(255);
  });

  it.each(['256', '-1', 'ten', '2.5'])('refuses %j, naming it', (raw) => {
    const e = configError(() => load({ PW_FLEET_PORT_THRESHOLD: raw }));
    expect(e.message).toBe(`invalid PW_FLEET_PORT_THRESHOLD=${JSON.stringify(raw)}: expected an integer from 0 to 255`);
  });

  it('counts a threshold below PW_PORTSCAN_PORT_THRESHOLD as that, the default too, and leaves 0 off', () => {
    expect(validate(load({ PW_FLEET_PORT_THRESHOLD: '2' })).fleetThreshold).toBe(3);
    expect(validate(load({ PW_PORTSCAN_PORT_THRESHOLD: '16' })).fleetThreshold).toBe(16);
    expect(validate(load({ PW_PORTSCAN_PORT_THRESHOLD: '16', PW_FLEET_PORT_THRESHOLD: '0' })).fleetThreshold).toBe(0);
  });
});

describe('policy settings: closed mode (PW_PORTSCAN_COUNT, PW_OPEN_PORTS)', () => {
  it('counts every SYN by default and takes closed; sends both to the probes', () => {
    expect(probeConfigOf(load())).toMatchObject({ countClosed: false, openPorts: [] });
    expect(load({ PW_PORTSCAN_COUNT: 'closed' }).portscanCount).toBe('closed');
    expect(load({ PW_PORTSCAN_COUNT: 'ALL' }).portscanCount).toBe('all');
    expect(probeConfigOf(load({}, ['--portscan-count', 'closed', '--open-ports', '30000-32767, 8080']))).toMatchObject({
      countClosed: true,
      openPorts: [
        { first: 8080, last: 8080 },
        { first: 30000, last: 32767 },
      ],
    });
  });

  it('refuses a PW_PORTSCAN_COUNT other than all or closed, naming it', () => {
    const e = configError(() => load({ PW_PORTSCAN_COUNT: 'open' }));
    expect(e.setting).toBe('PW_PORTSCAN_COUNT');
    expect(e.message).toBe('invalid PW_PORTSCAN_COUNT="open": expected one of all, closed');
  });

  it('reads PW_OPEN_PORTS as sorted, merged ranges', () => {
    expect(load({ PW_OPEN_PORTS: '8080' }).openPorts).toEqual([[8080, 8080]]);
    expect(load({ PW_OPEN_PORTS: '1,65535' }).openPorts).toEqual([
      [1, 1],
      [65535, 65535],
    ]);
    expect(load({ PW_OPEN_PORTS: '9000-9010,8080,9005-9020,9021,443' }).openPorts).toEqual([
      [443, 443],
      [8080, 8080],
      [9000, 9021],
    ]);
  });

  it.each(['0', '65536', '0-10', '10-5', '80,', ',80', '80;443', 'http', '1-2-3', '-5', '8080-', '99999', '1e3'])('refuses PW_OPEN_PORTS=%j, naming it', (raw) => {
    const e = configError(() => load({ PW_OPEN_PORTS: raw }));
    expect(e.setting).toBe('PW_OPEN_PORTS');
    expect(e.message).toBe(`invalid PW_OPEN_PORTS=${JSON.stringify(raw)}: expected comma-separated ports and ranges of 1 to 65535 (8080,30000-32767)`);
  });
});

describe('policy settings: invalid values', () => {
  it('names the variable, the value and what it accepts', () => {
    const e = configError(() => load({ PW_PORTSCAN_PORT_THRESHOLD: '0' }));
    expect(e.name).toBe('ConfigError');
    expect(e.setting).toBe('PW_PORTSCAN_PORT_THRESHOLD');
    expect(e.value).toBe('0');
    expect(e.message).toBe('invalid PW_PORTSCAN_PORT_THRESHOLD="0": expected an integer from 1 to 255');
  });

  it.each([
    ['PW_PORTSCAN_TIME_THRESHOLD', '0'],
    ['PW_PORTSCAN_TIME_THRESHOLD', '86401'],
    ['PW_PORTSCAN_TIME_THRESHOLD', '1.5'],
    ['PW_PORTSCAN_TIME_THRESHOLD', '-5'],
    ['PW_PORTSCAN_TIME_THRESHOLD', '60s'],
    ['PW_PORTSCAN_PORT_THRESHOLD', '256'],
    ['PW_PORTSCAN_PORT_THRESHOLD', 'three'],
    ['PW_WHITELIST_SELF', 'maybe'],
    ['PW_WHITELIST_SELF', 'Tru'],
    ['PW_BLOCK_TTL', '-1'],
    ['PW_BLOCK_TTL', '1w'],
    ['PW_BLOCK_TTL', 'forever'],
    ['PW_BLOCK_TTL', '15 m'],
    ['PW_STATE_DIR', 'var/lib/packetwatch'],
    ['PW_POLICY_SOCKET', 'policy.sock'],
    ['PW_POLICY_PROMETHEUS_PORT', '65536'],
    ['PW_POLICY_PROMETHEUS_PORT', '-1'],
    ['PW_POLICY_PROMETHEUS_PORT', 'http'],
    ['PW_MAX_TRACKED_SOURCES', '0'],
    ['PW_RECONCILE_INTERVAL', '0'],
    ['PW_LOG_FORMAT', 'xml'],
    ['PW_LOG_LEVEL', 'verbose'],
  ])('refuses %s=%j with a ConfigError naming it', (name, raw) => {
    const e = configError(() => load({ [name]: raw }));
    expect(e.setting).toBe(name);
    expect(e.message.startsWith(`invalid ${name}=${JSON.stringify(raw)}: expected `)).toBe(true);
  });

  it('says what a boolean accepts', () => {
    expect(configError(() => load({ PW_WHITELIST_SELF: 'maybe' })).message).toBe(
      'invalid PW_WHITELIST_SELF="maybe": expected True or False (also true/false, 1/0, yes/no)',
    );
  });

  it('says what a duration accepts', () => {
    expect(configError(() => load({ PW_BLOCK_TTL: '1w' })).message).toBe(
      'invalid PW_BLOCK_TTL="1w": expected a duration: 0, or 1s to 3650d (seconds, or a number with s, m, h or d)',
    );
  });
});

describe('policy validate', () => {
  it('splits PW_ALLOWLIST into trimmed prefixes, skipping empty entries', () => {
    const c = validate(load({ PW_ALLOWLIST: ' 10.0.0.0/8 ,, 2001:db8::/32,192.0.2.7, ' }));
    expect(c.allowPrefixes).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7']);
  });

  it('has no allowlist prefixes by default', () => {
    expect(validate(load()).allowPrefixes).toEqual([]);
  });

  it.each(['10.0.0.0/8,bogus', '10.0.0.0/33', '2001:db8::/129', '192.0.2.0/'])('refuses PW_ALLOWLIST=%j', (raw) => {
    const e = configError(() => validate(load({ PW_ALLOWLIST: raw })));
    expect(e.setting).toBe('PW_ALLOWLIST');
    expect(e.value).toBe(raw);
  });

  it('names the bad entry of PW_ALLOWLIST', () => {
    expect(configError(() => validate(load({ PW_ALLOWLIST: '10.0.0.0/8,bogus' }))).message).toBe(
      `invalid PW_ALLOWLIST="10.0.0.0/8,bogus": expected comma-separated addresses or CIDRs ('bogus' is neither)`,
    );
  });

  it('refuses PW_POLICY_TCP_ADDR without mutual TLS and without PW_INSECURE_TCP', () => {
    const e = configError(() => validate(load({ PW_POLICY_TCP_ADDR: '0.0.0.0:50051' })));
    expect(e.setting).toBe('PW_POLICY_TCP_ADDR');
    expect(e.message).toBe('invalid PW_POLICY_TCP_ADDR="0.0.0.0:50051": expected PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True');
  });

  it('accepts PW_POLICY_TCP_ADDR with PW_INSECURE_TCP=True or with a certificate, key and CA', () => {
    expect(validate(load({ PW_POLICY_TCP_ADDR: '[::1]:50051', PW_INSECURE_TCP: 'True' })).tcpAddr).toBe('[::1]:50051');
    const tls = validate(load({ PW_POLICY_TCP_ADDR: '127.0.0.1:50051', PW_TLS_CERT: '/etc/pw/cert.pem', PW_TLS_KEY: '/etc/pw/key.pem', PW_TLS_CA: '/etc/pw/ca.pem' }));
    expect(tls.tcpAddr).toBe('127.0.0.1:50051');
  });

  it.each(['unix:/run/pw.sock', '50051', 'host:0'])('refuses PW_POLICY_TCP_ADDR=%j as not host:port', (raw) => {
    const e = configError(() => validate(load({ PW_POLICY_TCP_ADDR: raw, PW_INSECURE_TCP: 'True' })));
    expect(e.message).toBe(`invalid PW_POLICY_TCP_ADDR=${JSON.stringify(raw)}: expected host:port`);
  });

  it('refuses a certificate without a key, and a key without a certificate', () => {
    expect(configError(() => validate(load({ PW_TLS_CERT: '/etc/pw/cert.pem' }))).setting).toBe('PW_TLS_KEY');
    expect(configError(() => validate(load({ PW_TLS_KEY: '/etc/pw/key.pem' }))).setting).toBe('PW_TLS_CERT');
  });
});

describe('probe settings', () => {
  it("uses the seed's defaults when nothing is set", () => {
    const c = loadProbe();
    expect(c.ifdev).toBe('lo');
    expect(c.whitelistSelf).toBe(true);
    expect(c.prometheusPort).toBe(9090);
    expect(c.ringbufBytes).toBe(4 * 1024 * 1024);
    expect(c.policyAddr).toBe('unix:/run/packetwatch/report/policy.sock');
    expect(c.controlSocket).toBe('/run/packetwatch/control/probe.sock');
  });

  it('validates the defaults, naming the probe after the host and interface', () => {
    expect(validateProbe(loadProbe()).probeIdResolved).toBe(`${hostname()}/lo`);
    expect(validateProbe(loadProbe({ PW_IFDEV: 'eth0' })).probeIdResolved).toBe(`${hostname()}/eth0`);
    expect(validateProbe(loadProbe({ PW_PROBE_ID: 'edge-1' })).probeIdResolved).toBe('edge-1');
  });

  it('reads the interface from PW_IFDEV or --ifdev, the flag winning', () => {
    expect(loadProbe({ PW_IFDEV: 'eth0' }).ifdev).toBe('eth0');
    expect(loadProbe({ PW_IFDEV: 'eth0' }, ['--ifdev', 'ens3']).ifdev).toBe('ens3');
  });

  it.each(['eth/0', 'a-very-long-name', 'eth 0'])('refuses PW_IFDEV=%j', (raw) => {
    expect(configError(() => loadProbe({ PW_IFDEV: raw })).setting).toBe('PW_IFDEV');
  });

  it.each([4096, 8192, 1 << 20, 1 << 30])('accepts PW_RINGBUF_BYTES=%d, a power of two', (n) => {
    expect(validateProbe(loadProbe({ PW_RINGBUF_BYTES: String(n) })).ringbufBytes).toBe(n);
  });

  it.each(['6144', '12288', String((1 << 20) + 4096)])('refuses PW_RINGBUF_BYTES=%s, not a power of two', (raw) => {
    const e = configError(() => validateProbe(loadProbe({ PW_RINGBUF_BYTES: raw })));
    expect(e.message).toBe(`invalid PW_RINGBUF_BYTES="${raw}": expected a power of two from 4096`);
  });

  it('refuses PW_RINGBUF_BYTES below 4096', () => {
    expect(configError(() => loadProbe({ PW_RINGBUF_BYTES: '2048' })).setting).toBe('PW_RINGBUF_BYTES');
  });

  it('refuses PW_PROBE_TCP_ADDR without mutual TLS and without PW_INSECURE_TCP', () => {
    const e = configError(() => validateProbe(loadProbe({ PW_PROBE_TCP_ADDR: '0.0.0.0:50052' })));
    expect(e.message).toBe('invalid PW_PROBE_TCP_ADDR="0.0.0.0:50052": expected PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True');
  });

  it('accepts PW_PROBE_TCP_ADDR with PW_INSECURE_TCP=True or with a certificate, key and CA', () => {
    expect(validateProbe(loadProbe({ PW_PROBE_TCP_ADDR: '0.0.0.0:50052', PW_INSECURE_TCP: 'True' })).tcpAddr).toBe('0.0.0.0:50052');
    expect(
      validateProbe(loadProbe({ PW_PROBE_TCP_ADDR: '0.0.0.0:50052', PW_TLS_CERT: '/etc/pw/cert.pem', PW_TLS_KEY: '/etc/pw/key.pem', PW_TLS_CA: '/etc/pw/ca.pem' })).tcpAddr,
    ).toBe('0.0.0.0:50052');
  });

  it('refuses a PW_POLICY_ADDR or PW_PROBE_CALLBACK that is no endpoint', () => {
    expect(configError(() => validateProbe(loadProbe({ PW_POLICY_ADDR: 'policy' }))).message).toBe(
      'invalid PW_POLICY_ADDR="policy": expected unix:/path or host:port',
    );
    expect(configError(() => validateProbe(loadProbe({ PW_PROBE_CALLBACK: 'unix:relative' }))).setting).toBe('PW_PROBE_CALLBACK');
  });

  it('accepts a TCP policy address with a CA to check it by', () => {
    expect(validateProbe(loadProbe({ PW_POLICY_ADDR: 'policy.example:50051', PW_TLS_CA: '/etc/pw/ca.pem' })).policyAddr).toBe('policy.example:50051');
  });

  it.each([
    ['PW_PROMETHEUS_PORT', '65536'],
    ['PW_XDP_MODE', 'offload'],
    ['PW_DROP_MODE', 'rst'],
    ['PW_EVENT_QUEUE', '0'],
    ['PW_BATCH_EVENTS', '65537'],
    ['PW_EVENT_COALESCE_MS', '1001'],
    ['PW_BPF_PIN_DIR', 'sys/fs/bpf'],
    ['PW_ADDRESS_POLL_MS', '49'],
  ])('refuses %s=%j with a ConfigError naming it', (name, raw) => {
    const e = configError(() => loadProbe({ [name]: raw }));
    expect(e.setting).toBe(name);
    expect(e.message.startsWith(`invalid ${name}=${JSON.stringify(raw)}: expected `)).toBe(true);
  });
});

describe('shadow mode settings', () => {
  it('enforces by default, and makes shadow decisions blocks when it enforces again', () => {
    expect(load()).toMatchObject({ enforce: true, enforceShadowDecisions: true });
    expect(probeConfigOf(load()).shadow).toBe(false);
  });

  it('runs in shadow mode with PW_ENFORCE=False, and tells every probe (ProbeConfig.shadow)', () => {
    const c = load({ PW_ENFORCE: 'False', PW_ENFORCE_SHADOW_DECISIONS: 'false' });
    expect([c.enforce, c.enforceShadowDecisions]).toEqual([false, false]);
    expect(probeConfigOf(c).shadow).toBe(true);
    expect(load({}, ['--enforce=False']).enforce).toBe(false);
  });

  it.each([
    ['PW_ENFORCE', 'maybe'],
    ['PW_ENFORCE', 'shadow'],
    ['PW_ENFORCE_SHADOW_DECISIONS', '2'],
  ])('refuses %s=%s, naming it and what it accepts', (name, raw) => {
    expect(configError(() => load({ [name]: raw })).message).toBe(`invalid ${name}=${JSON.stringify(raw)}: expected True or False (also true/false, 1/0, yes/no)`);
  });
});

// Settings that used to pass validation and break things: each has a range,
// and a value outside it is a ConfigError naming the setting (exit code 2).
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
    ['PW_DECISION_RETENTION', '59m'], // under an hour: a kernel block could outlast the end that outranks it
    ['PW_DECISION_RETENTION', '3599'],
    ['PW_DECISION_RETENTION', '3651d'],
    ['PW_DECISION_RETENTION', '-1d'],
    ['PW_DECISION_RETENTION', 'forever'],
  ])('the policy refuses %s=%s, naming it', (name, raw) => {
    const e = configError(() => load({ [name]: raw }));
    expect(e.setting).toBe(name);
  });

  it.each([
    ['PW_IFDEV', '..'], // detach would remove the pin root's parent
    ['PW_IFDEV', '.'],
    ['PW_IFDEV', 'a/b'],
    ['PW_METRICS_HOST', 'x y'],
  ])('the probe refuses %s=%s, naming it', (name, raw) => {
    expect(configError(() => loadProbe({ [name]: raw })).setting).toBe(name);
  });

  it('takes the ends of each range', () => {
    expect(load({ PW_BLOCK_TTL: '3650d' }).blockTtl).toBe(MAX_TTL_SECONDS);
    expect(load({ PW_BLOCK_TTL: '1s' }).blockTtl).toBe(1);
    expect(load({ PW_BLOCK_TTL: '0' }).blockTtl).toBe(0);
    expect(load({ PW_MAX_BLOCKS_PER_MINUTE: '0' }).maxBlocksPerMinute).toBe(0);
    expect(load({ PW_DECISION_RETENTION: '0' }).decisionRetention).toBe(0);
    expect(load({ PW_DECISION_RETENTION: '1h' }).decisionRetention).toBe(3600);
    expect(load({ PW_DECISION_RETENTION: '3650d' }).decisionRetention).toBe(MAX_TTL_SECONDS);
    expect(load({}, ['--decision-retention', '90d']).decisionRetention).toBe(90 * 86_400);
    for (const host of ['127.0.0.1', '::1', 'localhost', 'metrics.example.internal', '0.0.0.0']) {
      expect(loadProbe({ PW_METRICS_HOST: host }).metricsHost).toBe(host);
    }
    expect(loadProbe({ PW_IFDEV: 'eth0.100' }).ifdev).toBe('eth0.100');
  });

  it('says what a duration accepts', () => {
    expect(configError(() => load({ PW_BLOCK_TTL: '1w' })).message).toBe(
      'invalid PW_BLOCK_TTL="1w": expected a duration: 0, or 1s to 3650d (seconds, or a number with s, m, h or d)',
    );
    expect(configError(() => load({ PW_DECISION_RETENTION: '30m' })).message).toBe(
      'invalid PW_DECISION_RETENTION="30m": expected a duration: 0, or 1h to 3650d (seconds, or a number with s, m, h or d)',
    );
  });
});

describe('TCP needs mutual TLS or the explicit insecure flag', () => {
  const certs = { PW_TLS_CERT: '/etc/pw/cert.pem', PW_TLS_KEY: '/etc/pw/key.pem' };
  const probeC = (env: Record<string, string>) => validateProbe(loadProbe(env));
  const policyC = (env: Record<string, string>) => validate(load(env));

  it('refuses a TCP listener with a certificate but no CA: anonymous clients would reach every call', () => {
    expect(configError(() => policyC({ PW_POLICY_TCP_ADDR: '127.0.0.1:7000', ...certs })).message).toBe(
      'invalid PW_POLICY_TCP_ADDR="127.0.0.1:7000": expected PW_TLS_CERT, PW_TLS_KEY and PW_TLS_CA set (mutual TLS), or PW_INSECURE_TCP=True',
    );
    expect(configError(() => probeC({ PW_PROBE_TCP_ADDR: '127.0.0.1:7000', ...certs })).setting).toBe('PW_PROBE_TCP_ADDR');
  });

  it('refuses a TCP policy address without a CA to check it by', () => {
    expect(configError(() => probeC({ PW_POLICY_ADDR: 'policy.internal:7000' })).message).toBe(
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

describe('escalation settings (PW_BLOCK_TTL_FACTOR, PW_BLOCK_TTL_MAX)', () => {
  const valid = (env: NodeJS.ProcessEnv) => validate(load(env));

  it('defaults to no escalation and no maximum', () => {
    const c = valid({});
    expect([c.ttlFactor, c.blockTtlMax]).toEqual([1, 0]);
  });

  it('takes a factor of 1 or more, fractional too, and a maximum of PW_BLOCK_TTL or more', () => {
    const c = valid({ PW_BLOCK_TTL: '1m', PW_BLOCK_TTL_FACTOR: '2.5', PW_BLOCK_TTL_MAX: '1d' });
    expect([c.blockTtl, c.ttlFactor, c.blockTtlMax]).toEqual([60, 2.5, 86_400]);
    expect(valid({ PW_BLOCK_TTL: '1m', PW_BLOCK_TTL_MAX: '60' }).blockTtlMax).toBe(60);
    expect(valid({ PW_BLOCK_TTL_FACTOR: '1000' }).ttlFactor).toBe(1000);
    // A permanent PW_BLOCK_TTL never escalates: any maximum goes.
    expect(valid({ PW_BLOCK_TTL: '0', PW_BLOCK_TTL_MAX: '1s' }).blockTtlMax).toBe(1);
  });

  it.each([
    [{ PW_BLOCK_TTL_FACTOR: '0.5' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_FACTOR: '0' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_FACTOR: '-2' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_FACTOR: 'two' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_FACTOR: '2x' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_FACTOR: '1001' }, 'PW_BLOCK_TTL_FACTOR'],
    [{ PW_BLOCK_TTL_MAX: 'soon' }, 'PW_BLOCK_TTL_MAX'],
    [{ PW_BLOCK_TTL_MAX: '-1h' }, 'PW_BLOCK_TTL_MAX'],
    [{ PW_BLOCK_TTL: '2h', PW_BLOCK_TTL_MAX: '1h' }, 'PW_BLOCK_TTL_MAX'],
  ])('refuses %j, naming %s', (env, name) => {
    expect(configError(() => valid(env)).setting).toBe(name);
  });

  it('says what the maximum must be', () => {
    expect(configError(() => valid({ PW_BLOCK_TTL: '2h', PW_BLOCK_TTL_MAX: '1h' })).message).toBe(
      'invalid PW_BLOCK_TTL_MAX="3600s": expected 0 (up to 3650d) or at least PW_BLOCK_TTL (7200s)',
    );
  });
});
