/**
 * Who may call the daemon over mTLS: `tls.allow` names, per service, the client identities admitted.
 * An identity is written as OpenSSL prints it: `CN=NAME` (the certificate subject's common name),
 * `DNS:NAME` or `URI:URI` (subject alternative names). A client's certificate has every one of those it
 * carries; it is admitted when one of them is listed. A service without a list admits every client whose
 * certificate tls.ca signed (mTLS alone); health and reflection are always open to them.
 */
import type { PeerCertificate } from 'node:tls';
import type { ServerUnaryCall } from '@grpc/grpc-js';

/** grpc-js's auth context of a call (its type is not exported by name). */
type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>['getAuthContext']>;

/** The services `tls.allow` can restrict, by the short name used as the config key. */
export const GUARDED_SERVICES = ['Network', 'NetworkAdmin'] as const;
export type GuardedService = (typeof GUARDED_SERVICES)[number];

/** `tls.allow` after validation: service -> admitted identities. */
export type AllowList = { readonly [S in GuardedService]?: readonly string[] };

const IDENTITY_FORMS = 'CN=NAME, DNS:NAME or URI:URI (e.g. CN=orchestrator, DNS:scheduler.example.org, URI:spiffe://cluster/orchestrator)';

/**
 * Checks one `tls.allow` entry and returns it in its canonical form (the prefix as written above; DNS names
 * compare case-insensitively, so they are lower-cased). Throws an Error whose message says what is wrong.
 */
export function parseIdentity(entry: string): string {
  const m = /^(CN=|DNS:|URI:)(.*)$/i.exec(entry);
  if (!m) throw new Error(`'${entry}' is not a client identity: write ${IDENTITY_FORMS}`);
  const prefix = m[1]!.toUpperCase();
  const value = m[2]!;
  if (value === '' || value.length > 1024) throw new Error(`'${entry}': the name after ${prefix} must be 1..1024 characters`);
  if (/\p{Cc}/u.test(value)) throw new Error(`'${entry}': the name must not contain control characters`);
  if (prefix === 'DNS:') {
    if (!/^[A-Za-z0-9*]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(value)) {
      throw new Error(`'${entry}': '${value}' is not a DNS name`);
    }
    return `DNS:${value.toLowerCase()}`;
  }
  if (prefix === 'URI:' && !/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(value))
    throw new Error(`'${entry}': '${value}' is not a URI (scheme:rest, no spaces)`);
  return `${prefix}${value}`;
}

/**
 * Node's `subjectaltname`: `DNS:a, URI:b, IP Address:1.2.3.4`; an entry whose value could be mistaken for
 * the separator is a JSON string (`DNS:"a, b"`). Returns [type, value] pairs.
 */
export function parseSubjectAltName(san: string | undefined): [string, string][] {
  const out: [string, string][] = [];
  if (!san) return out;
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const type = san.slice(i, colon);
    let value: string;
    let next: number;
    if (san[colon + 1] === '"') {
      // A JSON string: find its closing quote (skipping escapes).
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(san.slice(colon + 1, j + 1)) as string;
      } catch {
        value = san.slice(colon + 2, j);
      }
      next = j + 1;
    } else {
      const end = san.indexOf(', ', colon + 1);
      next = end < 0 ? san.length : end;
      value = san.slice(colon + 1, next);
    }
    out.push([type, value]);
    i = san.startsWith(', ', next) ? next + 2 : next + 1;
  }
  return out;
}

/** Every identity a client certificate carries, in the canonical forms of parseIdentity. */
export function identitiesOf(cert: Pick<PeerCertificate, 'subject' | 'subjectaltname'>): string[] {
  const ids: string[] = [];
  const cn = (cert.subject as Record<string, string | string[] | undefined> | undefined)?.CN;
  for (const name of Array.isArray(cn) ? cn : cn !== undefined ? [cn] : []) ids.push(`CN=${name}`);
  for (const [type, value] of parseSubjectAltName(cert.subjectaltname)) {
    if (type === 'DNS') ids.push(`DNS:${value.toLowerCase()}`);
    else if (type === 'URI') ids.push(`URI:${value}`);
  }
  return ids;
}

/** The outcome of an access check: admitted, or refused with the message for the client. */
export type AccessDecision = { readonly admitted: true } | { readonly admitted: false; readonly message: string };

/**
 * Decides whether the caller of `service` (its grpc-js auth context) is admitted by `allow`. Without a list
 * for the service everyone who got through the TLS handshake is admitted.
 */
export function checkAccess(allow: AllowList | undefined, service: GuardedService, auth: AuthContext): AccessDecision {
  const listed = allow?.[service];
  if (listed === undefined) return { admitted: true };
  const cert = auth?.sslPeerCertificate;
  const fix = `add one of its identities to tls.allow.${service} in the daemon's config`;
  if (!cert) {
    return {
      admitted: false,
      message: `network.${service} admits only the client identities in tls.allow.${service}, and this client presented no certificate: ${fix}`,
    };
  }
  const ids = identitiesOf(cert);
  if (ids.some((id) => listed.includes(id))) return { admitted: true };
  const who = ids.length > 0 ? ids.join(', ') : 'a certificate with no CN, DNS or URI name';
  return { admitted: false, message: `client ${who} may not call network.${service}: it is not in tls.allow.${service}; ${fix}` };
}
