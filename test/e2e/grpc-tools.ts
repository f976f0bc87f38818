// What standard gRPC tooling sees of a service: the health protocol
// (grpc.health.v1) and server reflection (grpc.reflection.v1), called from
// their own published .proto files; and a call made as another user.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const HEALTH_PROTO = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto');
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    opts: Partial<grpc.CallOptions>,
    cb: (err: grpc.ServiceError | null, res: { status: string }) => void,
  ): void;
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
}

interface ReflectionClient extends grpc.Client {
  ServerReflectionInfo(opts: Partial<grpc.CallOptions>): grpc.ClientDuplexStream<{ list_services: string }, ReflectionResponse>;
}

function clientCtor<C>(protoFile: string, service: string): new (target: string, creds: grpc.ChannelCredentials) => C {
  const def = grpc.loadPackageDefinition(loadSync(protoFile, { keepCase: true, enums: String }));
  return service.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], def) as new (
    target: string,
    creds: grpc.ChannelCredentials,
  ) => C;
}

/** grpc.health.v1.Health/Check: 'SERVING', 'NOT_SERVING', ... */
export function healthCheck(target: string, service: string): Promise<string> {
  const Health = clientCtor<HealthClient>(HEALTH_PROTO, 'grpc.health.v1.Health');
  const client = new Health(target, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + 5000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}

/** The services a server lists through reflection. */
export function reflectedServices(target: string): Promise<string[]> {
  const Reflection = clientCtor<ReflectionClient>(REFLECTION_PROTO, 'grpc.reflection.v1.ServerReflection');
  const client = new Reflection(target, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo({ deadline: Date.now() + 5000 });
    call.on('data', (res) => {
      resolve((res.list_services_response?.service ?? []).map((s: { name: string }) => s.name).sort());
      call.end();
      client.close();
    });
    call.on('error', reject);
    call.write({ list_services: '*' });
  });
}

/** Whose process a call comes from: a user, with these groups (default: the user's own, from /etc/group). */
export interface Caller {
  user: string;
  groups?: string[];
}

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Calls a unary method of packetwatch.v1.Probe or .Policy on a Unix socket
 * from a separate process running as `who` (setpriv): 'ok', or the gRPC
 * status name (UNAVAILABLE when it cannot even connect).
 */
export function callAs(who: Caller, service: 'Probe' | 'Policy', socket: string, method: string, request: object): string {
  const script = `
    import * as grpc from '@grpc/grpc-js';
    import { ${service}Client as Client } from '${join(REPO, 'proto/dist/src/index.js')}';
    const c = new Client('unix://${socket}', grpc.credentials.createInsecure());
    c.${method}(${JSON.stringify(request)}, new grpc.Metadata(), { deadline: Date.now() + 10000 }, (err) => {
      console.log(err ? grpc.status[err.code] : 'ok');
      process.exit(0);
    });`;
  const gid = execFileSync('id', ['-g', who.user], { encoding: 'utf8' }).trim();
  const groups = who.groups ? [`--groups=${who.groups.join(',')}`] : ['--init-groups'];
  return execFileSync('setpriv', ['--reuid', who.user, '--regid', gid, ...groups, process.execPath, '--input-type=module', '-e', script], {
    cwd: REPO,
    encoding: 'utf8',
  }).trim();
}
