import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Endpoint, createLogger, endpointTarget, formatEndpoint, parseEndpoint, startServer } from '@packetwatch/common';
import { PROTO_FILES, PROTO_ROOT } from '@packetwatch/proto';
import { describe, expect, it } from 'vitest';

describe('parseEndpoint: Unix sockets', () => {
  it.each([
    ['unix:/run/packetwatch/policy.sock', '/run/packetwatch/policy.sock'],
    ['unix:///run/packetwatch/policy.sock', '/run/packetwatch/policy.sock'],
    ['/run/packetwatch/policy.sock', '/run/packetwatch/policy.sock'],
    ['unix:/x', '/x'],
  ])('reads %j as the socket %s', (text, path) => {
    expect(parseEndpoint(text)).toEqual({ kind: 'unix', path });
  });

  it.each(['unix:', 'unix:relative.sock', 'unix:run/policy.sock', 'policy.sock', './policy.sock'])(
    'refuses %j, which is not an absolute path',
    (text) => {
      expect(parseEndpoint(text)).toBeUndefined();
    },
  );
});

describe('parseEndpoint: TCP', () => {
  it.each([
    ['localhost:50051', 'localhost', 50051],
    ['127.0.0.1:50051', '127.0.0.1', 50051],
    ['0.0.0.0:1', '0.0.0.0', 1],
    ['policy.example.org:65535', 'policy.example.org', 65535],
    ['[::1]:50051', '::1', 50051],
    ['[2001:db8::7]:443', '2001:db8::7', 443],
    ['[::ffff:192.0.2.1]:80', '::ffff:192.0.2.1', 80],
    ['[::]:9090', '::', 9090],
  ])('reads %j as host %s, port %d', (text, host, port) => {
    expect(parseEndpoint(text)).toEqual({ kind: 'tcp', host, port });
  });

  it.each(['host:0', 'host:65536', 'host:99999', 'host:123456', '[::1]:0', '[::1]:70000'])('refuses %j, whose port is out of range', (text) => {
    expect(parseEndpoint(text)).toBeUndefined();
  });

  it.each([
    '',
    'host',
    'host:',
    ':50051',
    'host:port',
    'host:-1',
    'host:80:81',
    'host:80/path',
    '::1:50051',
    '::1',
    '[::1]',
    '[::1]:',
    '[::1]50051',
    '[]:50051',
    '[localhost]:50051',
    'http://host:80',
  ])('refuses %j, which is no endpoint', (text) => {
    expect(parseEndpoint(text)).toBeUndefined();
  });

  it('refuses brackets around anything but an IPv6 address', () => {
    const parsed = ['[192.0.2.1]:80', '[:]:80', '[12345]:80', '[1.2.3.4.5]:80'].map((text) => [text, parseEndpoint(text)]);
    expect(parsed).toEqual([
      ['[192.0.2.1]:80', undefined],
      ['[:]:80', undefined],
      ['[12345]:80', undefined],
      ['[1.2.3.4.5]:80', undefined],
    ]);
  });
});

describe('endpointTarget and formatEndpoint', () => {
  it('gives gRPC a unix:// target with an absolute path, and formats it as unix:/path', () => {
    const e: Endpoint = { kind: 'unix', path: '/run/packetwatch/probe.sock' };
    expect(endpointTarget(e)).toBe('unix:///run/packetwatch/probe.sock');
    expect(formatEndpoint(e)).toBe('unix:/run/packetwatch/probe.sock');
  });

  it('writes a TCP endpoint as host:port', () => {
    const e: Endpoint = { kind: 'tcp', host: 'policy.example.org', port: 50051 };
    expect(endpointTarget(e)).toBe('policy.example.org:50051');
    expect(formatEndpoint(e)).toBe('policy.example.org:50051');
    expect(endpointTarget({ kind: 'tcp', host: '192.0.2.1', port: 80 })).toBe('192.0.2.1:80');
  });

  it('puts an IPv6 host in brackets', () => {
    const e: Endpoint = { kind: 'tcp', host: '2001:db8::7', port: 443 };
    expect(endpointTarget(e)).toBe('[2001:db8::7]:443');
    expect(formatEndpoint(e)).toBe('[2001:db8::7]:443');
  });

  it.each(['unix:/run/pw.sock', 'unix:///run/pw.sock', '/run/pw.sock', 'localhost:50051', '[::1]:50051', '10.0.0.1:9'])(
    'parses the target and the formatted form of %j back to the same endpoint',
    (text) => {
      const e = parseEndpoint(text)!;
      expect(e).toBeDefined();
      expect(parseEndpoint(endpointTarget(e))).toEqual(e);
      expect(parseEndpoint(formatEndpoint(e))).toEqual(e);
    },
  );
});

describe('startServer: receiveWindowBytes', () => {
  // What a client is offered, read from a plain HTTP/2 connection to the socket:
  // the SETTINGS initial window (each stream) and the connection's own window.
  async function offered(path: string): Promise<{ stream: number; connection: number }> {
    const session = http2.connect('http://localhost', { createConnection: () => connect(path) });
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      // The connection's WINDOW_UPDATE follows the SETTINGS; a ping's answer comes after both.
      await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
      return { stream: settings.initialWindowSize ?? -1, connection: session.state.remoteWindowSize ?? -1 };
    } finally {
      session.destroy();
    }
  }

  async function serve(receiveWindowBytes: number | undefined): Promise<{ path: string; close: () => Promise<void> }> {
    const dir = mkdtempSync(join(tmpdir(), 'pw-grpc-window-'));
    const path = join(dir, 'api.sock');
    const server = await startServer({
      sockets: [{ path, mode: 0o600, role: 'operator' }],
      services: [],
      reflection: { root: PROTO_ROOT, files: PROTO_FILES },
      log: createLogger('test', 'silent'),
      receiveWindowBytes,
    });
    return { path, close: () => server.close(100).then(() => rmSync(dir, { recursive: true, force: true })) };
  }

  it('offers every connection and stream the window asked for', async () => {
    const s = await serve(8 << 20);
    try {
      expect(await offered(s.path)).toEqual({ stream: 8 << 20, connection: 8 << 20 });
    } finally {
      await s.close();
    }
  });

  it("offers HTTP/2's 65,535 bytes when none is asked for", async () => {
    const s = await serve(undefined);
    try {
      expect(await offered(s.path)).toEqual({ stream: 65_535, connection: 65_535 });
    } finally {
      await s.close();
    }
  });
});
