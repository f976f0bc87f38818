// The PW_ vocabulary: the list the services check their environment against
// is exactly what Packetwatch reads, and a misspelt name is told apart from
// a sibling's setting and pointed at the name meant.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { policySettings } from '../../../services/policy/src/config.js';
import { probeSettings } from '../../../services/probe/src/config.js';
import { PW_VARIABLES, unknownVariableMessage, unknownVariables } from '../src/variables.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

function files(dir: string, keep: (path: string) => boolean): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (['node_modules', 'dist', 'gen', 'build'].includes(name)) return [];
    return statSync(join(ROOT, path)).isDirectory() ? files(path, keep) : keep(path) ? [path] : [];
  });
}

/** PW_ names read (or set for a reader) outside the services' settings tables: in scripts, compose, make, and TypeScript env access. */
function namesReadElsewhere(): Map<string, string> {
  const found = new Map<string, string>();
  const note = (path: string, re: RegExp) => {
    // A line marked "misspelt on purpose" holds names a test uses as typos.
    const text = readFileSync(join(ROOT, path), 'utf8')
      .split('\n')
      .filter((l) => !l.includes('misspelt on purpose'))
      .join('\n');
    for (const m of text.matchAll(re)) {
      const name = m.slice(1).find(Boolean)!;
      if (!found.has(name)) found.set(name, path);
    }
  };
  const NAME = 'PW_[A-Z0-9_]*[A-Z0-9]';
  for (const path of [...files('deploy', (p) => p.endsWith('.sh') || p.endsWith('.yml')), 'Makefile']) {
    note(path, new RegExp(`\\$\\{?(${NAME})|\\b(?:export +|^\\s*-?\\s*)(${NAME})\\b`, 'gm'));
    note(path, new RegExp(`^\\s+(${NAME}):`, 'gm')); // compose environment entries
  }
  for (const path of [...files('services', (p) => p.endsWith('.ts')), ...files('packages', (p) => p.endsWith('.ts')), ...files('bench', (p) => p.endsWith('.ts')), ...files('test', (p) => p.endsWith('.ts')), ...files('bpf/test', (p) => p.endsWith('.ts'))]) {
    if (path.endsWith('variables.ts') || path.endsWith('variables.test.ts')) continue;
    note(path, new RegExp(`env(?:\\.|\\[')(${NAME})|\\.env\\('(${NAME})'\\)|\\b(${NAME}): |'(${NAME})'`, 'g'));
  }
  // Names of the C side (constants and build variants of bpf/), which TypeScript mentions too, are not variables.
  for (const path of ['bpf/packetwatch.h', 'bpf/packetwatch.bpf.c']) {
    for (const m of readFileSync(join(ROOT, path), 'utf8').matchAll(new RegExp(NAME, 'g'))) found.delete(m[0]);
  }
  return found;
}

describe('PW_VARIABLES', () => {
  it("holds every setting of the probe's and the policy's settings tables", () => {
    const settings = [...Object.values(probeSettings), ...Object.values(policySettings)].map((s) => s.env);
    expect(settings.filter((n) => !PW_VARIABLES.includes(n))).toEqual([]);
  });

  it('holds every PW_ variable the scripts, compose, make, the CLI, the benches and the tests read', () => {
    const missing = [...namesReadElsewhere()].filter(([n]) => !PW_VARIABLES.includes(n)).map(([n, where]) => `${n} (${where})`);
    expect(missing).toEqual([]);
  });

  it('holds nothing that nothing reads', () => {
    const read = new Set([...[...Object.values(probeSettings), ...Object.values(policySettings)].map((s) => s.env), ...namesReadElsewhere().keys()]);
    expect(PW_VARIABLES.filter((n) => !read.has(n))).toEqual([]);
  });

  it('has no duplicates', () => {
    expect(new Set(PW_VARIABLES).size).toBe(PW_VARIABLES.length);
  });
});

describe('unknownVariables', () => {
  it('names each unknown PW_ variable with the known name nearest to it, and nothing else', () => {
    const env = {
      PW_PORTSCAN_PORT_TRESHOLD: '5',
      PW_IFDEV: 'eth0',
      PW_PROBE_SOCKET: '/run/p.sock', // the probe's, in the policy's environment: known
      PW_BLOK_TTL: '1h',
      PW_FROBNICATE: '1',
      PATH: '/usr/bin',
      pw_ifdev: 'lower case is not ours',
    };
    expect(unknownVariables(env)).toEqual([
      { name: 'PW_BLOK_TTL', closest: 'PW_BLOCK_TTL', likely: true },
      { name: 'PW_FROBNICATE', closest: expect.any(String), likely: false },
      { name: 'PW_PORTSCAN_PORT_TRESHOLD', closest: 'PW_PORTSCAN_PORT_THRESHOLD', likely: true },
    ]);
  });

  it('says what is wrong and what was likely meant', () => {
    const [typo, stranger] = unknownVariables({ PW_WHITELIST_SEF: 'False', PW_QQQQQQQQQQ: '1' }).sort((a, b) => Number(b.likely) - Number(a.likely));
    expect(unknownVariableMessage(typo!)).toBe('PW_WHITELIST_SEF is not a Packetwatch setting and is ignored; did you mean PW_WHITELIST_SELF?');
    expect(unknownVariableMessage(stranger!)).toBe(`PW_QQQQQQQQQQ is not a Packetwatch setting and is ignored; the nearest known name is ${stranger!.closest}`);
  });
});
