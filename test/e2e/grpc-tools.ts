// What standard gRPC tooling sees of a service: the health protocol
// (grpc.health.v1) and server reflection (grpc.reflection.v1), called from
// their own published .proto files.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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
