// Container health check: the standard gRPC health check (grpc.health.v1)
// against a service's Unix socket. Exit 0 when SERVING, 1 otherwise.
//   node healthcheck.mjs unix:///run/packetwatch/policy/policy.sock packetwatch.v1.Policy
// The two messages are encoded by hand (one field each), so this needs
// nothing but @grpc/grpc-js.
import * as grpc from '@grpc/grpc-js';

const [target = 'unix:///run/packetwatch/policy/policy.sock', service = ''] = process.argv.slice(2);
const SERVING = 1;

const encodeRequest = (name) => {
  const bytes = Buffer.from(name, 'utf8');
  return bytes.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, bytes.length]), bytes]);
};
// HealthCheckResponse { status = 1 (varint) }; an absent field is 0 (UNKNOWN).
const decodeStatus = (buf) => (buf.length >= 2 && buf[0] === 0x08 ? buf[1] : 0);

const client = new grpc.Client(target, grpc.credentials.createInsecure());
client.makeUnaryRequest(
  '/grpc.health.v1.Health/Check',
  encodeRequest,
  decodeStatus,
  service,
  new grpc.Metadata(),
  { deadline: Date.now() + 2000 },
  (err, status) => {
    client.close();
    if (err) {
      console.error(`${target} ${service}: ${err.message}`);
      process.exit(1);
    }
    console.log(`${target} ${service}: ${status === SERVING ? 'SERVING' : `status ${status}`}`);
    process.exit(status === SERVING ? 0 : 1);
  },
);
