// The command line without a real Packetwatch: usage errors, argument
// checks, exit codes, and the commands against an in-process fake policy
// on a Unix socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type Decision, DecisionOrigin, type PolicyServer, PolicyService } from '@packetwatch/proto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Io, run } from '../src/program.js';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);

interface Result {
  code: number;
  out: string;
  err: string;
}

async function cli(...argv: string[]): Promise<Result> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (s) => (out += s),
    err: (s) => (err += s),
    env: {},
    now: () => NOW,
    onInterrupt: () => () => undefined,
  };
  const code = await run(argv, io);
  return { code, out, err };
}

describe('packetwatchctl: usage', () => {
  it('prints help and exits 0 for --help', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage: packetwatchctl [options] [command]');
    for (const c of ['status', 'blocks|list', 'block [options] <ip>', 'unblock [options] [ip]', 'allow', 'watch [options]', 'completion']) expect(r.out).toContain(c);
  });

  it('has --help for every command, with the global options', async () => {
    for (const argv of [['status'], ['blocks'], ['block'], ['unblock'], ['allow'], ['allow', 'add'], ['allow', 'remove'], ['allow', 'list'], ['watch'], ['completion']]) {
      const r = await cli(...argv, '--help');
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.out).toContain(`Usage: packetwatchctl ${argv.join(' ')}`);
      if (argv[0] !== 'allow' || argv.length > 1) expect(r.out).toContain('--policy <endpoint>');
    }
  });

  it('prints the version', async () => {
    expect(await cli('--version')).toEqual({ code: 0, out: '0.1.0\n', err: '' });
  });

  it('exits 2 with help when no command is given', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.err).toContain('Usage: packetwatchctl');
  });

  it('exits 2 with help for an unknown command or option, a missing or extra argument', async () => {
    for (const argv of [['bogus'], ['blocks', '--bogus'], ['block'], ['status', 'extra'], ['allow'], ['allow', 'add']]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toContain('Usage: packetwatchctl');
      expect(r.out).toBe('');
    }
  });

  it('exits 2 for unblock with neither an address nor --all, or both', async () => {
    const neither = await cli('unblock');
    expect(neither.code).toBe(2);
    expect(neither.err).toContain('packetwatchctl: give the address or prefix to unblock, or --all');
    expect(neither.err).toContain('Usage: packetwatchctl unblock');
    const both = await cli('unblock', '10.0.0.1', '--all');
    expect(both.code).toBe(2);
    expect(both.err).toContain('give an address or prefix, or --all, not both');
  });

  it('exits 2 for a bad duration', async () => {
    for (const argv of [['--timeout', '0', 'status'], ['--timeout', 'soon', 'status'], ['block', '10.0.0.1', '--ttl', '-1'], ['watch', '--since', '5 minutes']]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err).toMatch(/argument '[^']*' is invalid/);
    }
  });

  it('prints a bash completion script built from the commands', async () => {
    const r = await cli('completion');
    expect(r.code).toBe(0);
    expect(r.out).toContain('complete -F _packetwatchctl packetwatchctl');
    expect(r.out).toContain('"allow") words="add remove rm list ls');
    expect(r.out).toContain('"blocks") words="--all --no-drift');
  });
});

describe('packetwatchctl: invalid values exit 2 naming the value, before any call', () => {
  it.each([
    [['block', '10.0.0.300'], "invalid address or prefix '10.0.0.300': not an IPv4 or IPv6 address"],
    [['block', 'example.com'], "invalid address or prefix 'example.com'"],
    [['block', '10.0.0.0/33'], "invalid address or prefix '10.0.0.0/33': prefix length must be 0 to 32"],
    [['block', '2001:db8::/129'], "invalid address or prefix '2001:db8::/129': prefix length must be 0 to 128"],
    [['unblock', 'fe80::1%eth0'], "invalid address or prefix 'fe80::1%eth0'"],
    [['allow', 'add', '10.0.0.0/33'], "invalid address or CIDR '10.0.0.0/33': prefix length must be 0 to 32"],
    [['allow', 'remove', 'nope'], "invalid address or CIDR 'nope'"],
    [['watch', '--source', '1.2.3'], "invalid source address or prefix '1.2.3'"],
    [['--policy', 'nowhere', 'blocks'], "invalid --policy endpoint 'nowhere': expected unix:/path, /path or host:port"],
    [['--probe', 'unix:relative', 'status'], "invalid --probe endpoint 'unix:relative'"],
    [['--tls-ca', '/nonexistent/ca.pem', '--policy', 'localhost:1', 'blocks'], "cannot read --tls-ca file '/nonexistent/ca.pem': ENOENT"],
    [['--tls-cert', '/etc/passwd', '--policy', 'localhost:1', 'blocks'], '--tls-cert and --tls-key go together'],
    [['--tls-cert', '/etc/passwd', '--tls-key', '/etc/passwd', '--policy', 'localhost:1', 'blocks'], '--tls-cert and --tls-key need --tls-ca'],
    // Never plaintext over TCP unless asked.
    [['--policy', '127.0.0.1:1', 'blocks'], '--policy 127.0.0.1:1 is TCP: give --tls-ca (TLS), or --insecure-tcp for plaintext'],
    [['--probe', '[::1]:1', 'status'], '--probe [::1]:1 is TCP: give --tls-ca (TLS), or --insecure-tcp for plaintext'],
  ])('%j', async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`packetwatchctl: ${message}`);
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('packetwatchctl: unreachable services exit 1 naming the address and the status', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pwctl-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('blocks', async () => {
    const r = await cli('--policy', `unix:${dir}/policy.sock`, 'blocks');
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      `packetwatchctl: policy unreachable at unix:${dir}/policy.sock: UNAVAILABLE (connect ENOENT ${dir}/policy.sock: no socket there: is the service running, and is this its address?)\n`,
    );
  });

  it('plaintext TCP when asked for with --insecure-tcp', async () => {
    const r = await cli('--insecure-tcp', '--policy', '127.0.0.1:1', 'blocks');
    expect(r.code).toBe(1);
    expect(r.err).toContain('packetwatchctl: policy unreachable at 127.0.0.1:1: UNAVAILABLE');
  });

  it('status: both named, JSON still one document', async () => {
    const r = await cli('--policy', `${dir}/policy.sock`, '--probe', `unix:${dir}/probe.sock`, 'status', '--json');
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out) as { policy: { reachable: boolean; address: string; error: { code: string } }; probe: { reachable: boolean; address: string } };
    expect(doc.policy).toMatchObject({ reachable: false, address: `${dir}/policy.sock`, error: { code: 'UNAVAILABLE' } });
    expect(doc.probe).toMatchObject({ reachable: false, address: `unix:${dir}/probe.sock` });
    expect(r.err).toContain(`policy unreachable at ${dir}/policy.sock: UNAVAILABLE`);
    expect(r.err).toContain(`probe unreachable at unix:${dir}/probe.sock: UNAVAILABLE`);
  });

  it('takes the addresses from PW_CTL_POLICY_ADDR and PW_CTL_PROBE_ADDR, not from the probe\'s PW_POLICY_ADDR', async () => {
    process.env.PW_CTL_POLICY_ADDR = `unix:${dir}/env-policy.sock`;
    process.env.PW_POLICY_ADDR = `unix:${dir}/report.sock`;
    try {
      const r = await cli('allow', 'list');
      expect(r.code).toBe(1);
      expect(r.err).toContain(`policy unreachable at unix:${dir}/env-policy.sock`);
    } finally {
      delete process.env.PW_CTL_POLICY_ADDR;
      delete process.env.PW_POLICY_ADDR;
    }
  });
});

describe('packetwatchctl: against a fake policy', () => {
  let dir: string;
  let server: grpc.Server;
  let policy: string;
  /** The calls the fake received in the current test. */
  const calls: { method: string; request: unknown }[] = [];
  /** For each GetStatus: how far ahead of the fake's clock the deadline it received was, in ms. */
  const statusDeadlines: number[] = [];
  const decision: Decision = {
    id: 7n,
    ip: '192.0.2.7',
    reason: 'by hand',
    origin: DecisionOrigin.DECISION_ORIGIN_MANUAL,
    created: new Date(NOW - 1000 * 10),
    expires: new Date(NOW + 3600_000 - 10_000),
    ended: undefined,
    enforcedBy: ['host/lo'],
    missingOn: [],
    unrecorded: false,
    shadow: false,
    offence: 0,
  };
  /** A second decision, on the second page of ListDecisions. */
  const second: Decision = { ...decision, id: 9n, ip: '2001:db8::9', reason: 'on page two' };
  /** How the fake pages ListDecisions: two pages, or pages that go round in a circle. */
  let paging: 'two pages' | 'circle' = 'two pages';
  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'fake' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pwctl-fake-'));
    policy = `unix:${join(dir, 'policy.sock')}`;
    const impl: PolicyServer = {
      report: (call) => call.end(),
      watch: (call) => call.end(),
      // Answers after the default --timeout (5 s) would have, long after 0.3 s.
      getStatus: (call, cb) => {
        statusDeadlines.push(Number(call.getDeadline()) - Date.now());
        setTimeout(() => cb({ code: grpc.status.INTERNAL, details: 'too late' }), 3000);
      },
      listDecisions: (call, cb) => {
        calls.push({ method: 'listDecisions', request: call.request });
        if (paging === 'circle') cb(null, { decisions: [decision], nextPageToken: 'again' });
        else if (call.request.pageToken === '') cb(null, { decisions: [decision], nextPageToken: 'page-2' });
        else cb(null, { decisions: [second], nextPageToken: '' });
      },
      block: (call, cb) => {
        calls.push({ method: 'block', request: call.request });
        if (call.request.ip === '192.0.2.1') {
          cb({ code: grpc.status.FAILED_PRECONDITION, details: '192.0.2.1 is allowlisted and cannot be blocked' });
          return;
        }
        // 2001:db8:1:2::<n>: a policy keying IPv6 sources by /64 decides on the prefix.
        if (call.request.ip.toLowerCase().startsWith('2001:db8:1:2:')) {
          cb(null, { decision: { ...decision, ip: '2001:db8:1:2::/64' }, alreadyBlocked: call.request.ip.endsWith('/64') });
          return;
        }
        // 192.0.2.9: a policy whose decision store refuses writes.
        cb(null, { decision: call.request.ip === '192.0.2.9' ? { ...decision, ip: '192.0.2.9', unrecorded: true } : decision, alreadyBlocked: false });
      },
      unblock: (call, cb) => {
        calls.push({ method: 'unblock', request: call.request });
        if (call.request.ip === '192.0.2.9') {
          cb(null, { ended: [{ ...decision, ip: '192.0.2.9', ended: new Date(NOW), unrecorded: true }] });
          return;
        }
        if (call.request.ip.startsWith('2001:db8:1:2:')) {
          cb(null, { ended: [{ ...decision, ip: '2001:db8:1:2::/64', ended: new Date(NOW) }] });
          return;
        }
        cb(null, { ended: call.request.all || call.request.ip === decision.ip ? [{ ...decision, ended: new Date(NOW) }] : [] });
      },
      addAllow: unimplemented,
      removeAllow: (call, cb) => cb(null, { removed: call.request.prefix === '10.0.0.0/8' }),
      listAllow: (_call, cb) => cb(null, { entries: [] }),
      explain: unimplemented,
    };
    server = new grpc.Server();
    server.addService(PolicyService, impl as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${join(dir, 'policy.sock')}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  });

  afterAll(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    calls.length = 0;
    statusDeadlines.length = 0;
    paging = 'two pages';
  });

  it('block sends the address, the TTL in seconds and the reason, and prints the decision', async () => {
    const r = await cli('--policy', policy, 'block', '192.0.2.7', '--ttl', '1h', '--reason', 'by hand');
    expect(r).toEqual({ code: 0, out: 'Blocked 192.0.2.7: by hand (manual), expires in 59m, enforced by host/lo\n', err: '' });
    expect(calls).toEqual([{ method: 'block', request: { ip: '192.0.2.7', ttl: { seconds: 3600n, nanos: 0 }, reason: 'by hand' } }]);
  });

  it('block without --ttl leaves the TTL to the policy; --ttl 0 is permanent', async () => {
    await cli('--policy', policy, 'block', '192.0.2.7');
    await cli('--policy', policy, 'block', '192.0.2.7', '--ttl', '0');
    expect(calls).toEqual([
      { method: 'block', request: { ip: '192.0.2.7', ttl: undefined, reason: '' } },
      { method: 'block', request: { ip: '192.0.2.7', ttl: { seconds: 0n, nanos: 0 }, reason: '' } },
    ]);
  });

  it('block --json prints the decision document', async () => {
    const r = await cli('--policy', policy, '--json', 'block', '192.0.2.7');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({
      decision: {
        decisionId: '7',
        ip: '192.0.2.7',
        reason: 'by hand',
        origin: 'manual',
        active: true,
        created: '2026-11-25T11:59:50.000Z',
        expires: '2026-11-25T12:59:50.000Z',
        ended: null,
        enforcedBy: ['host/lo'],
        missingOn: [],
        inKernel: null,
        drift: null,
        unrecorded: false,
        shadow: false,
        offence: 0,
      },
      alreadyBlocked: false,
      requested: '192.0.2.7',
    });
  });

  it('block of an address says which prefix it blocked; block of that prefix says it is blocked already', async () => {
    expect(await cli('--policy', policy, 'block', '2001:db8:1:2::7')).toEqual({
      code: 0,
      out: 'Blocked 2001:db8:1:2::/64 (the /64 holding 2001:db8:1:2::7): by hand (manual), expires in 59m, enforced by host/lo\n',
      err: '',
    });
    expect(await cli('--policy', policy, 'block', '2001:DB8:1:2:0::/64')).toEqual({
      code: 0,
      out: 'Already blocked: 2001:db8:1:2::/64: by hand (manual), expires in 59m, enforced by host/lo\n',
      err: '',
    });
    expect(calls.map((c) => (c.request as { ip: string }).ip)).toEqual(['2001:db8:1:2::7', '2001:DB8:1:2:0::/64']);
  });

  it('unblock of an address or a prefix ends the decision on its prefix and says so', async () => {
    expect((await cli('--policy', policy, 'unblock', '2001:db8:1:2::9')).out).toBe(
      'Unblocked 1 source: 2001:db8:1:2::/64, the /64 holding 2001:db8:1:2::9 (decision 7, by hand)\n',
    );
    expect((await cli('--policy', policy, 'unblock', '2001:db8:1:2::/64')).out).toBe('Unblocked 1 source: 2001:db8:1:2::/64 (decision 7, by hand)\n');
  });

  it('block and unblock that the policy made but could not record succeed, and say so on stderr', async () => {
    const note =
      "packetwatchctl: 1 decision is enforced but not recorded: the policy's decision store refuses writes (`packetwatchctl status` says why); recorded once it takes them again, lost if the policy stops first.\n";
    expect(await cli('--policy', policy, 'block', '192.0.2.9')).toEqual({ code: 0, out: 'Blocked 192.0.2.9: by hand (manual), expires in 59m, enforced by host/lo\n', err: note });
    expect(await cli('--policy', policy, 'unblock', '192.0.2.9')).toEqual({ code: 0, out: 'Unblocked 1 source: 192.0.2.9 (decision 7, by hand)\n', err: note });
  });

  it('a refusal exits 1 with what the policy said', async () => {
    const r = await cli('--policy', policy, 'block', '192.0.2.1');
    expect(r.code).toBe(1);
    expect(r.err).toBe(`packetwatchctl: policy at ${policy} refused: 192.0.2.1 is allowlisted and cannot be blocked (FAILED_PRECONDITION)\n`);
  });

  it('unblock and unblock --all', async () => {
    expect(await cli('--policy', policy, 'unblock', '192.0.2.7')).toEqual({ code: 0, out: 'Unblocked 1 source: 192.0.2.7 (decision 7, by hand)\n', err: '' });
    expect((await cli('--policy', policy, 'unblock', '192.0.2.8')).out).toBe(
      'No active decision on the source of 192.0.2.8; the probes were told to remove any kernel block of it all the same.\n',
    );
    await cli('--policy', policy, 'unblock', '--all');
    expect(calls).toEqual([
      { method: 'unblock', request: { ip: '192.0.2.7', all: false } },
      { method: 'unblock', request: { ip: '192.0.2.8', all: false } },
      { method: 'unblock', request: { ip: '', all: true } },
    ]);
  });

  it('blocks --no-drift does not call the probe, and lists every page of decisions', async () => {
    const r = await cli('--policy', policy, '--probe', `unix:${dir}/none.sock`, 'list', '--no-drift', '--all');
    expect(r.code).toBe(0);
    expect(calls).toEqual([
      { method: 'listDecisions', request: { all: true, pageSize: 10_000, pageToken: '' } },
      { method: 'listDecisions', request: { all: true, pageSize: 10_000, pageToken: 'page-2' } },
    ]);
    const lines = r.out.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^192\.0\.2\.7 +by hand +manual +- +10s ago +in 59m +host\/lo$/);
    expect(lines[2]).toMatch(/^2001:db8::9 +on page two +manual +- +10s ago +in 59m +host\/lo$/);
  });

  it('blocks --json holds the decisions of every page, in the shape of one', async () => {
    const r = await cli('--policy', policy, '--json', 'blocks', '--no-drift');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { blocks: { decisionId: string; ip: string }[]; kernel: unknown };
    expect(doc.blocks.map((b) => [b.decisionId, b.ip])).toEqual([
      ['7', '192.0.2.7'],
      ['9', '2001:db8::9'],
    ]);
    expect(doc.kernel).toEqual({ address: null, checked: false, probeId: null, error: null });
  });

  it('blocks against pages that go round in a circle stops and exits 1, naming the policy', async () => {
    paging = 'circle';
    const r = await cli('--policy', policy, 'blocks', '--no-drift');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(calls).toHaveLength(2);
    expect(r.err).toContain(`policy at ${policy}`);
    expect(r.err).toContain('its list pages do not add up: a next_page_token that was given before');
    expect(r.err).toContain('(INTERNAL)');
  });

  it('blocks with an unreachable probe prints the decisions, marks drift unknown and exits 1', async () => {
    const r = await cli('--policy', policy, '--probe', `unix:${dir}/none.sock`, 'blocks');
    expect(r.code).toBe(1);
    expect(r.out.split('\n')[1]).toMatch(/host\/lo +\?$/);
    expect(r.err).toContain(`probe unreachable at unix:${dir}/none.sock: UNAVAILABLE`);
    expect(r.err).toContain('drift not checked');
  });

  it('allow remove, allow list, and an unimplemented call', async () => {
    expect((await cli('--policy', policy, 'allow', 'rm', '10.0.0.0/8')).out).toBe('Removed 10.0.0.0/8 from the allowlist.\n');
    expect(await cli('--policy', policy, 'allow', 'list', '--json')).toEqual({ code: 0, out: '{\n  "entries": []\n}\n', err: '' });
    const r = await cli('--policy', policy, 'allow', 'add', '10.0.0.0/8');
    expect(r.code).toBe(1);
    expect(r.err).toContain('(UNIMPLEMENTED)');
  });

  it('every unary call carries the --timeout deadline', async () => {
    const r = await cli('--policy', policy, '--probe', `unix:${dir}/none.sock`, '--timeout', '0.3', 'status');
    expect(r.code).toBe(1);
    // The fake answers after 3 s: only a deadline shorter than that (not the default 5 s) ends the call so.
    expect(r.err).toContain(`policy unreachable at ${policy}: DEADLINE_EXCEEDED`);
    // What the call carried: grpc-timeout is what is left of the 300 ms when it is sent, so the
    // deadline the fake received is at most 300 ms ahead of its clock, however loaded the machine.
    expect(statusDeadlines).toHaveLength(1);
    expect(statusDeadlines[0]).toBeLessThanOrEqual(300);
  });
});
