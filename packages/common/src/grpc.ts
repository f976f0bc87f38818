// gRPC plumbing shared by the services: endpoints, credentials, a server
// bootstrap (Unix socket with file-mode access control, optional TCP with
// TLS, health, reflection) and the one place errors become statuses.
import { existsSync, lchownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { dirname } from 'node:path';
import type { Http2SecureServer, Http2Server, ServerHttp2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { type PackageDefinition, loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { Logger } from './log.js';
import { type Role, roleInterceptor } from './roles.js';

export { status as GrpcStatus } from '@grpc/grpc-js';

/** An error that becomes the given gRPC status at the boundary. */
export class ServerError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
    this.name = 'ServerError';
  }
}

export type Endpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** "unix:/path", "unix:///path", "/path" (a Unix socket) or "host:port", "[v6]:port". */
export function parseEndpoint(text: string): Endpoint | undefined {
  if (text.startsWith('unix:')) {
    const path = text.slice(5).replace(/^\/\/(?=\/)/, '');
    return path.startsWith('/') ? { kind: 'unix', path } : undefined;
  }
  if (text.startsWith('/')) return { kind: 'unix', path: text };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined && !isIPv6(m[1])) return undefined;
  return { kind: 'tcp', host: m[1] ?? m[2] ?? '', port };
}

export function endpointTarget(e: Endpoint): string {
  if (e.kind === 'unix') return `unix://${e.path}`;
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function formatEndpoint(e: Endpoint): string {
  return e.kind === 'unix' ? `unix:${e.path}` : endpointTarget(e);
}

export interface TlsFiles {
  cert?: string | undefined;
  key?: string | undefined;
  /** With a CA, the server requires client certificates signed by it (mutual TLS). */
  ca?: string | undefined;
  /** Plaintext TCP (or, for a server, TLS without client certificates) explicitly allowed: PW_INSECURE_TCP. */
  insecure?: boolean | undefined;
}

/** Why TCP without a CA is refused, for the error a caller shows. */
export const TCP_NEEDS_CA = 'TCP needs PW_TLS_CA (TLS; a listener also PW_TLS_CERT and PW_TLS_KEY, and then requires client certificates), or PW_INSECURE_TCP=True';

const read = (p: string | undefined) => (p ? readFileSync(p) : null);

export function serverCredentials(tls: TlsFiles | undefined): grpc.ServerCredentials {
  if (!tls?.cert || !tls.key) return grpc.ServerCredentials.createInsecure();
  const ca = read(tls.ca);
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }], ca !== null);
}

/**
 * Credentials for calling an endpoint: none over a Unix socket; over TCP,
 * TLS with the configured CA, and plaintext only when explicitly allowed:
 * never a silent fall-back (throws otherwise).
 */
export function channelCredentials(e: Endpoint, tls: TlsFiles | undefined): grpc.ChannelCredentials {
  if (e.kind === 'unix') return grpc.credentials.createInsecure();
  if (tls?.ca) return grpc.credentials.createSsl(readFileSync(tls.ca), read(tls.key), read(tls.cert));
  if (tls?.insecure) return grpc.credentials.createInsecure();
  throw new Error(`calling ${endpointTarget(e)}: ${TCP_NEEDS_CA}`);
}

export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new Error(`no group named '${group}' in /etc/group`);
}

export interface ServiceBinding {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  /** Full name for health checks, e.g. 'packetwatch.v1.Probe'. */
  name: string;
  /** Which roles may call each method over TLS (roles.ts), by method name; every method is listed. */
  roles: Readonly<Record<string, readonly Role[]>>;
}

/** Method path → roles, for every method of the services; a method without roles is a mistake caught at start. */
function methodRoles(services: readonly ServiceBinding[]): Map<string, readonly Role[]> {
  const out = new Map<string, readonly Role[]>();
  for (const s of services) {
    for (const [name, method] of Object.entries(s.definition)) {
      const roles = s.roles[name];
      if (!roles) throw new Error(`${s.name}: no roles given for ${name}`);
      out.set(method.path, roles);
    }
  }
  return out;
}

/**
 * A Unix socket and the role of whoever reaches it: the socket's mode and
 * group (and its directory's) decide who connects, the role what they may
 * call (roles.ts).
 */
export interface SocketListener {
  path: string;
  mode: number;
  group?: string | undefined;
  role: Role;
}

export interface ServerOptions {
  sockets: SocketListener[];
  tcp?: { endpoint: Endpoint & { kind: 'tcp' }; tls?: TlsFiles | undefined; insecure: boolean } | undefined;
  services: ServiceBinding[];
  /** .proto files (and include root) served through reflection. */
  reflection: { root: string; files: string[] };
  log: Logger;
  /**
   * The HTTP/2 receive window of every connection and stream, in bytes
   * (default: HTTP/2's 65,535). A peer may send this much before the server
   * reads it; see setReceiveWindow().
   */
  receiveWindowBytes?: number | undefined;
}

export interface RunningServer {
  /** Sets the health of every service served, and of the server as a whole (''), to SERVING or NOT_SERVING. */
  setServing(serving: boolean): void;
  /** Stops accepting calls; waits up to graceMs for calls in progress, then cancels them. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The HTTP/2 receive window the policy (and a stand-in for it) offers its
 * probes. With HTTP/2's 65,535 bytes a probe's 256 KiB event batch waited for several window
 * updates, each sent only at a turn of the policy's event loop, and the
 * Report stream, not CPU, limited the pipeline: at 2M SYN/s the machine was
 * 61% idle while the probe's queue overflowed (make bench-pipeline:
 * 1.79M/s with zero loss; 2.49M/s with this window). 8 MiB holds about 32
 * full batches in flight; the policy still pauses the stream when its own
 * queue of batches is full, so this bounds what one connection may buffer.
 */
export const REPORT_WINDOW_BYTES = 8 << 20;

/**
 * Raises the HTTP/2 receive window of a bound server's connections and
 * streams. grpc-js takes no server option for it (only its client has
 * grpc-node.flow_control_window), so it is set on the HTTP/2 servers it
 * keeps, as Node's http2 API allows: the SETTINGS every new connection gets,
 * and the connection's own window. Fails loudly if grpc-js stops keeping
 * them, rather than silently serving with the small window (the test of
 * startServer checks what a client is offered).
 */
export function setReceiveWindow(server: grpc.Server, bytes: number): void {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) throw new Error('receiveWindowBytes: this grpc-js keeps no http2Servers map to set the window on');
  for (const h2 of servers.keys() as IterableIterator<Http2Server | Http2SecureServer>) {
    h2.updateSettings({ initialWindowSize: bytes });
    h2.on('session', (session: ServerHttp2Session) => session.setLocalWindowSize(bytes));
  }
}

async function bind(server: grpc.Server, target: string, creds: grpc.ServerCredentials, windowBytes: number | undefined): Promise<number> {
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(target, creds, (err, port) => (err ? reject(err) : resolve(port))));
  if (windowBytes !== undefined) setReceiveWindow(server, windowBytes);
  return port;
}

/**
 * Prepares the socket's directory and removes a stale socket left by a
 * crash. Nothing here or after the bind changes a file through its path in a
 * way a swapped-in symbolic link could redirect: modes come from the umask at
 * creation, ownership from lchown (which changes a link itself, never what it
 * points to). The layout (deploy/run.sh, the images) keeps others from
 * swapping anything in: the directory belongs to the socket's owner.
 */
function prepareSocketPath(path: string, group: number | undefined): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    if (group !== undefined) lchownSync(dir, process.getuid?.() ?? 0, group);
  }
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
    unlinkSync(path);
  }
}

/**
 * Serves the services on each Unix socket (a gRPC server per socket, bound
 * to its role) and, when configured, on TCP (roles from client
 * certificates), with one health state and reflection on all of them.
 */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const allowed = methodRoles(opts.services);
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  // Reflection lists exactly what is served: our services and health.
  const packageDefinition: PackageDefinition = loadSync([...opts.reflection.files, healthProtoPath], {
    includeDirs: [opts.reflection.root, dirname(healthProtoPath)],
    keepCase: true,
  });
  const reflection = new ReflectionService(packageDefinition, {
    services: [...opts.services.map((s) => s.name), 'grpc.health.v1.Health'],
  });
  /** A gRPC server with everything on it; `role`: of every caller without a client certificate (undefined: plaintext TCP, no roles). */
  const newServer = (role: Role | undefined) => {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      interceptors: [roleInterceptor(allowed, role)],
    });
    health.addToServer(server);
    reflection.addToServer(server);
    for (const s of opts.services) server.addService(s.definition, s.implementation);
    return server;
  };
  const setServing = (serving: boolean) => {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    for (const s of opts.services) health.setStatus(s.name, status);
    health.setStatus('', status);
  };
  setServing(false);

  const servers: grpc.Server[] = [];
  for (const { path, mode, group, role } of opts.sockets) {
    const server = newServer(role);
    servers.push(server);
    const gid = group === undefined ? undefined : groupId(group);
    prepareSocketPath(path, gid);
    // The socket is created with the umask applied: set it so that the file
    // never exists, even for an instant, with more access than `mode`.
    const old = process.umask(0o777 & ~mode);
    try {
      await bind(server, `unix://${path}`, grpc.ServerCredentials.createInsecure(), opts.receiveWindowBytes);
    } finally {
      process.umask(old);
    }
    // A directory with the setgid bit (deploy/run.sh, the images) gives the
    // socket its group already; elsewhere it is set on the socket itself.
    if (gid !== undefined && lstatSync(path).gid !== gid) lchownSync(path, process.getuid?.() ?? 0, gid);
    opts.log.info({ socket: path, mode: mode.toString(8), group, role }, 'gRPC listening on Unix socket');
  }
  if (opts.tcp) {
    const { endpoint, tls, insecure } = opts.tcp;
    const mutual = Boolean(tls?.cert && tls.key && tls.ca);
    if (!mutual && !insecure) throw new Error(`a TCP listener: ${TCP_NEEDS_CA}`);
    if (!tls?.cert) opts.log.warn({ endpoint: endpointTarget(endpoint) }, 'gRPC on TCP WITHOUT TLS: anyone who reaches this port can call it');
    else if (!mutual) opts.log.warn({ endpoint: endpointTarget(endpoint) }, 'gRPC on TCP with TLS but WITHOUT client certificates: anyone who reaches this port can call it');
    const server = newServer(undefined);
    servers.push(server);
    const port = await bind(server, endpointTarget(endpoint), serverCredentials(tls), opts.receiveWindowBytes);
    opts.log.info({ host: endpoint.host, port, tls: Boolean(tls?.cert), mutual: Boolean(tls?.ca) }, 'gRPC listening on TCP');
  }
  setServing(true);

  const shutdown = (server: grpc.Server, graceMs: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  return {
    setServing,
    close: async (graceMs = 2000) => {
      setServing(false);
      const closed = Promise.all(servers.map((s) => shutdown(s, graceMs)));
      for (const { path } of opts.sockets) {
        try {
          if (existsSync(path)) unlinkSync(path);
        } catch {
          // removed by the server already
        }
      }
      await closed;
    },
  };
}

/**
 * Wraps a unary handler: a thrown ServerError becomes its status, anything
 * else is logged and becomes INTERNAL without leaking details.
 */
export function unary<Req, Res>(
  log: Logger,
  method: string,
  fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (err: unknown) => {
          if (err instanceof ServerError) {
            log.debug({ method, code: grpc.status[err.code], details: err.details }, 'call refused');
            callback({ code: err.code, details: err.details });
            return;
          }
          log.error({ err, method }, 'call failed');
          callback({ code: grpc.status.INTERNAL, details: `${method} failed; see the service log` });
        },
      );
  };
}
