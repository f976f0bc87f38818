// deploy/compose.yml passes every PW_ setting of each service through, with
// the service's own default, so `PW_X=... docker compose up` works like the
// services' flags and `make run`. A setting added to a service's config.ts
// fails here until compose.yml carries it too.
import { readFileSync } from 'node:fs';
import type { Setting } from '@packetwatch/common';
import { describe, expect, it } from 'vitest';
import { policySettings } from '../../services/policy/src/config.js';
import { probeSettings } from '../../services/probe/src/config.js';

const COMPOSE = readFileSync(new URL('../../deploy/compose.yml', import.meta.url), 'utf8');

/** The environment block of one service: variable → value as written (undefined for `NAME:` alone). */
function environmentOf(service: string): Map<string, string | undefined> {
  const lines = COMPOSE.split('\n');
  const start = lines.indexOf(`  ${service}:`);
  if (start < 0) throw new Error(`no service ${service} in compose.yml`);
  const env = new Map<string, string | undefined>();
  let inEnv = false;
  for (const line of lines.slice(start + 1)) {
    if (/^ {2}\S/.test(line) || /^\S/.test(line)) break; // next service or top-level key
    if (/^ {4}\S/.test(line)) inEnv = line.trim() === 'environment:';
    const m = inEnv ? /^ {6}(PW_[A-Z0-9_]+):(?: (.*))?$/.exec(line) : null;
    if (m) env.set(m[1]!, m[2]);
  }
  return env;
}

// Set by the deployment itself (volumes, the shared socket group, metrics
// reachable on the compose network): not passed through.
const FIXED: Record<string, string[]> = {
  probe: ['PW_POLICY_ADDR', 'PW_PROBE_SOCKET', 'PW_PROBE_CONTROL_SOCKET', 'PW_SOCKET_GROUP', 'PW_CONTROL_GROUP'],
  policy: ['PW_STATE_DIR', 'PW_POLICY_SOCKET', 'PW_POLICY_REPORT_SOCKET', 'PW_SOCKET_GROUP', 'PW_CONTROL_GROUP', 'PW_METRICS_HOST'],
};

describe.each([
  ['probe', probeSettings],
  ['policy', policySettings],
] as const)('deploy/compose.yml: the %s service', (service, spec) => {
  const env = environmentOf(service);
  const settings = Object.values(spec) as Setting<unknown>[];

  it.each(settings.map((s) => [s.env, s] as const))('carries %s', (name, setting) => {
    expect(env.has(name), `${name} missing from the ${service} service's environment`).toBe(true);
    const value = env.get(name);
    if (FIXED[service]!.includes(name)) {
      expect(value).toBeDefined();
      expect(() => setting.parse(value!)).not.toThrow();
      return;
    }
    if (value === undefined) {
      // `NAME:` alone: passed when set, unset otherwise — for settings whose
      // default is "not set" (or empty).
      expect([undefined, '']).toContain(setting.default);
      return;
    }
    const m = /^\$\{([A-Z0-9_]+):-(.*)\}$/.exec(value);
    expect(m, `${name}: ${value} is not \${${name}:-default}`).not.toBeNull();
    expect(m![1]).toBe(name);
    expect(setting.parse(m![2]!)).toEqual(setting.default);
  });

  it('carries nothing the service does not read', () => {
    const known = new Set(settings.map((s) => s.env));
    expect([...env.keys()].filter((k) => !known.has(k))).toEqual([]);
  });
});

describe('deploy/compose.yml', () => {
  it('never leaves a variable without a default (no "variable is not set" warnings)', () => {
    const bare = [...COMPOSE.matchAll(/(?<!\$)\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]);
    expect(bare).toEqual([]);
  });
});
