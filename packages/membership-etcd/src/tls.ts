/**
 * TLS towards etcd: the PEM material (a CA to verify etcd's server certificate, and optionally a client
 * certificate with its key), its checks, the rule that endpoint schemes fit the TLS settings, and
 * plain-language explanations of TLS handshake failures.
 * Everything here is pure except readEtcdTlsFiles(), which reads the files once at start-up.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';

/** Paths of the PEM files (the config's `membership.etcd.tls`). */
export interface EtcdTlsFiles {
  /** CA certificate(s) that signed etcd's server certificate; absent: the system's roots. */
  readonly ca?: string;
  /** Client certificate (chain) presented to etcd; needs `key`. */
  readonly cert?: string;
  /** Private key of `cert` (unencrypted PEM). */
  readonly key?: string;
}

/** PEM contents of the same files. */
export interface EtcdTlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** One problem with the TLS settings (or the endpoints' schemes): `key` is the config key it is about. */
export interface EtcdTlsProblem {
  readonly key: string;
  readonly message: string;
}

const TLS_KEY = 'membership.etcd.tls';
const ENDPOINTS_KEY = 'membership.etcd.endpoints';
const CERT_BLOCK_RE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const KEY_BEGIN_RE = /-----BEGIN (?:(?:RSA|EC|DSA|ENCRYPTED) )?PRIVATE KEY-----/;
const ENCRYPTED_KEY_RE = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;

function openSslReason(e: unknown): string {
  // "error:0480006C:PEM routines::no start line" -> "no start line"
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/^error:[0-9A-F]+:[^:]*:[^:]*:/, '').trim() || message;
}

/** The certificates of a PEM bundle, or a reason why it is not one. */
function parseCertificates(pem: string): { certs: X509Certificate[] } | { problem: string } {
  const blocks = pem.match(CERT_BLOCK_RE) ?? [];
  if (blocks.length === 0) return { problem: 'holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)' };
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch (e) {
      return {
        problem: `${blocks.length > 1 ? `certificate ${i + 1} of ${blocks.length}` : 'the certificate'} does not parse (${openSslReason(e)})`,
      };
    }
  }
  return { certs };
}

function parsePrivateKey(pem: string): { key: KeyObject } | { problem: string } {
  if (ENCRYPTED_KEY_RE.test(pem)) {
    return {
      problem:
        'holds an encrypted private key: give it unencrypted (protect the file with its permissions), e.g. openssl pkey -in ENCRYPTED -out PLAIN',
    };
  }
  if (!KEY_BEGIN_RE.test(pem)) return { problem: 'holds no PEM private key (no -----BEGIN PRIVATE KEY----- block)' };
  try {
    return { key: createPrivateKey(pem) };
  } catch (e) {
    return { problem: `holds a private key that does not parse (${openSslReason(e)})` };
  }
}

/** Problems with which of ca / cert / key are given (the same for files and for their contents): none, or cert without key. */
export function checkEtcdTlsShape(has: { readonly ca: boolean; readonly cert: boolean; readonly key: boolean }): EtcdTlsProblem[] {
  if (!has.ca && !has.cert && !has.key) {
    return [
      {
        key: TLS_KEY,
        message:
          "is empty: give ca (the CA that signed etcd's server certificate) and/or cert and key (a client certificate for etcd), or remove tls",
      },
    ];
  }
  const problems: EtcdTlsProblem[] = [];
  if (has.cert && !has.key) {
    problems.push({
      key: `${TLS_KEY}.key`,
      message: `is required with ${TLS_KEY}.cert: give the private key of the client certificate too (or remove cert to only verify etcd's certificate)`,
    });
  }
  if (has.key && !has.cert) {
    problems.push({
      key: `${TLS_KEY}.cert`,
      message: `is required with ${TLS_KEY}.key: give the client certificate that key belongs to (or remove key)`,
    });
  }
  return problems;
}

/**
 * Problems with the endpoints' schemes, given whether TLS settings are present: all endpoints use one
 * scheme, and TLS settings go with https:// endpoints. The one rule for both the config check at start-up
 * and the EtcdMembership constructor.
 */
export function checkEtcdEndpointSchemes(endpoints: readonly string[], tlsSet: boolean): EtcdTlsProblem[] {
  const problems: EtcdTlsProblem[] = [];
  const secure = endpoints.filter((e) => e.startsWith('https:')).length;
  if (secure !== 0 && secure !== endpoints.length) {
    problems.push({ key: ENDPOINTS_KEY, message: 'mixes http:// and https:// URLs: use one scheme for all endpoints' });
  }
  if (tlsSet && secure === 0) {
    problems.push({
      key: TLS_KEY,
      message: `is set but ${ENDPOINTS_KEY} are http:// (${endpoints.join(', ')}): TLS needs https:// endpoints: write them as https://HOST:PORT, or remove tls`,
    });
  }
  return problems;
}

/** Problems with the PEM contents that are there: each parses, and the key belongs to the certificate. */
function pemProblems(material: EtcdTlsMaterial, files: EtcdTlsFiles): EtcdTlsProblem[] {
  const problems: EtcdTlsProblem[] = [];
  const where = (name: 'ca' | 'cert' | 'key') => (files[name] !== undefined ? `${files[name]} ` : '');
  const { ca, cert, key } = material;
  if (ca !== undefined) {
    const parsed = parseCertificates(ca.toString('utf8'));
    if ('problem' in parsed)
      problems.push({
        key: `${TLS_KEY}.ca`,
        message: `${where('ca')}${parsed.problem}: give the PEM CA certificate that signed etcd's server certificate`,
      });
  }
  let leaf: X509Certificate | undefined;
  if (cert !== undefined) {
    const parsed = parseCertificates(cert.toString('utf8'));
    if ('problem' in parsed)
      problems.push({ key: `${TLS_KEY}.cert`, message: `${where('cert')}${parsed.problem}: give the PEM client certificate for etcd` });
    else leaf = parsed.certs[0];
  }
  let privateKey: KeyObject | undefined;
  if (key !== undefined) {
    const parsed = parsePrivateKey(key.toString('utf8'));
    if ('problem' in parsed) problems.push({ key: `${TLS_KEY}.key`, message: `${where('key')}${parsed.problem}` });
    else privateKey = parsed.key;
  }
  if (leaf && privateKey && !leaf.checkPrivateKey(privateKey)) {
    problems.push({
      key: `${TLS_KEY}.key`,
      message: `${where('key')}is not the private key of the certificate ${files.cert ?? 'in cert'} (${leaf.subject.replace(/\n/g, ', ')}): give the key that belongs to ${TLS_KEY}.cert`,
    });
  }
  return problems;
}

/**
 * What is wrong with TLS material, each problem naming its config key (and its file when `files` names
 * it); [] if it is usable. Checks: something is given; cert and key come together; every PEM parses; the
 * key belongs to the certificate. Validity dates are not checked: a node whose clock is not set yet should
 * still start (etcd judges them at the handshake, and a failure there is explained).
 */
export function checkEtcdTlsMaterial(material: EtcdTlsMaterial, files: EtcdTlsFiles = {}): EtcdTlsProblem[] {
  const has = { ca: material.ca !== undefined, cert: material.cert !== undefined, key: material.key !== undefined };
  return [...checkEtcdTlsShape(has), ...pemProblems(material, files)];
}

/** Reads the PEM files (once, at start-up) and checks them; every file that cannot be read is a problem naming it. */
export function readEtcdTlsFiles(files: EtcdTlsFiles): { material: EtcdTlsMaterial; problems: EtcdTlsProblem[] } {
  const problems = checkEtcdTlsShape({ ca: files.ca !== undefined, cert: files.cert !== undefined, key: files.key !== undefined });
  const material: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const file = files[name];
    if (file === undefined) continue;
    try {
      material[name] = readFileSync(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'no such file'
          : code === 'EACCES'
            ? 'permission denied'
            : code === 'EISDIR'
              ? 'it is a directory'
              : (e as Error).message;
      problems.push({ key: `${TLS_KEY}.${name}`, message: `cannot read ${file}: ${why}` });
    }
  }
  return { material, problems: [...problems, ...pemProblems(material, files)] };
}

/** The short reason inside a grpc-js connection error ("... Last error: REASON. Resolution note: ..."). */
function lastError(message: string): string {
  const m = /Last error: (?:Error: )?([\s\S]*?)(?:\s*\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*(?:Resolution note:|$)/.exec(message);
  return (m?.[1] ?? message).trim();
}

const SERVER_CERT_RE =
  /unable to verify the first certificate|unable to get (?:local )?issuer certificate|self[- ]signed certificate|certificate has expired|certificate is not yet valid|Hostname\/IP does not match|certificate signature failure|unsupported certificate purpose|ERR_TLS_CERT_ALTNAME_INVALID/i;
const ALERT_RE = /(?:sslv3|tlsv1[0-9]*) alert ([a-z ]+?)(?=:|$)/i;
const NOT_TLS_RE = /wrong version number|packet length too long|http request|disconnected before secure TLS connection was established/i;

/**
 * A plain explanation of a TLS failure talking to etcd, or null if `message` (an etcd3 / grpc-js error
 * message) is not one. `clientCert`: whether this node presents a client certificate.
 */
export function explainEtcdTlsFailure(message: string, clientCert: boolean): string | null {
  const reason = lastError(message);
  if (SERVER_CERT_RE.test(message)) {
    return (
      `the TLS handshake failed: etcd's server certificate is not trusted (${reason}): ` +
      `set ${TLS_KEY}.ca to the CA that signed it, and check that the certificate names the endpoint's host or IP address and is valid now`
    );
  }
  const alert = ALERT_RE.exec(message);
  if (alert) {
    const what = `TLS alert "${alert[1]!.trim()}"`;
    return clientCert
      ? `the TLS handshake failed: etcd refused this node's client certificate (${what}): ` +
          `${TLS_KEY}.cert must be signed by a CA in etcd's --trusted-ca-file, be valid now and allow client authentication`
      : `the TLS handshake failed: etcd requires a client certificate and this node has none (${what}): set ${TLS_KEY}.cert and ${TLS_KEY}.key`;
  }
  if (NOT_TLS_RE.test(message)) {
    return `the TLS handshake failed: the endpoint did not answer in TLS (${reason}): if etcd serves plain http there, use an http:// endpoint (and no tls)`;
  }
  return null;
}
