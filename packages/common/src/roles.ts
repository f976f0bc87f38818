// Who may call what. Over TCP (mutual TLS) the caller's role is named by its
// certificate: the subject's organizational unit (OU), one of probe, policy
// or operator (deploy/certs.sh issues one certificate per role). Each service
// states which roles may call each of its methods, and every other caller
// gets PERMISSION_DENIED before the method runs. On Unix sockets there is
// no certificate: each role has a socket of its own, whose file mode and
// group (and its directory's) decide who connects, and whoever connects has
// that socket's role. Plaintext TCP (explicitly insecure) has no roles.
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

export const ROLES = ['probe', 'policy', 'operator'] as const;
export type Role = (typeof ROLES)[number];

/** The roles allowed to call each method, by the method's name in the service implementation. */
export type MethodRoles<Impl> = { readonly [M in keyof Impl]: readonly Role[] };

/** The role a client certificate names (its subject's single OU), or undefined. */
export function certificateRole(cert: PeerCertificate | undefined): Role | undefined {
  const ou: unknown = cert?.subject?.OU;
  return typeof ou === 'string' && (ROLES as readonly string[]).includes(ou) ? (ou as Role) : undefined;
}

/** The certificate's subject for a refusal: "CN=packetwatch-probe, OU=probe". */
function subjectText(cert: PeerCertificate | undefined): string {
  if (!cert?.subject) return 'no certificate';
  return Object.entries(cert.subject)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(', ');
}

/**
 * A server interceptor enforcing `allowed` (method path → roles). Over TLS
 * the caller's role is its certificate's; otherwise it is `listenerRole`,
 * the role of the Unix socket the call came in on (undefined: plaintext TCP,
 * explicitly insecure, where anyone may call anything). Paths it does not
 * list (health, reflection) are open to every caller.
 */
export function roleInterceptor(allowed: ReadonlyMap<string, readonly Role[]>, listenerRole: Role | undefined): grpc.ServerInterceptor {
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        const roles = allowed.get(method.path);
        const auth = call.getAuthContext();
        const tls = auth.transportSecurityType === 'ssl';
        if (roles === undefined || (!tls && listenerRole === undefined)) {
          next();
          return;
        }
        const cert = auth.sslPeerCertificate;
        const role = tls ? certificateRole(cert) : listenerRole;
        if (role !== undefined && roles.includes(role)) {
          next();
          return;
        }
        const who = tls
          ? `the client certificate (${subjectText(cert)}) ${role ? `has the ${role} role` : 'names no role (OU probe, policy or operator)'}`
          : `this socket serves the ${role} role`;
        call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details: `${method.path} is for the ${roles.join(' or ')} role; ${who}` });
      },
    });
}
