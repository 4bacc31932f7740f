/**
 * A throw-away PKI for TLS tests, made with openssl (argument arrays, no shell) in a temp dir that
 * destroy() removes: a CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by
 * it, and a second, unrelated CA with its own server and client certificates (what a wrong CA or a foreign
 * client certificate looks like); issueClient() makes more client certificates with a chosen subject CN and
 * SAN names (client identities). EC P-256 keys: quick to make.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { exec } from './exec.js';

export interface CertAndKey {
  readonly cert: string;
  readonly key: string;
}

export class TestPki {
  private constructor(
    readonly dir: string,
    /** The CA etcd trusts and that signed its server certificate. */
    readonly ca: CertAndKey,
    /** Server certificate for IP 127.0.0.1 (server and client auth: etcd's gateway dials itself with it). */
    readonly server: CertAndKey,
    /** Client certificate signed by `ca`. */
    readonly client: CertAndKey,
    /** An unrelated CA. */
    readonly otherCa: CertAndKey,
    /** Server certificate for 127.0.0.1 signed by `otherCa`. */
    readonly otherServer: CertAndKey,
    /** Client certificate signed by `otherCa`. */
    readonly otherClient: CertAndKey,
  ) {}

  /** `server` also names these IP addresses (besides 127.0.0.1) in its SAN, e.g. a node's underlay address. */
  static async create(options: { serverIps?: readonly string[] } = {}): Promise<TestPki> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nnt-pki-'));
    const ips = ['127.0.0.1', ...(options.serverIps ?? [])].map((ip) => `IP:${ip}`).join(',');
    try {
      const ca = await makeCa(dir, 'ca');
      const otherCa = await makeCa(dir, 'other-ca');
      const server = await makeLeaf(dir, 'server', ca, `subjectAltName=${ips}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      const client = await makeLeaf(dir, 'client', ca, 'extendedKeyUsage=clientAuth\n');
      const otherServer = await makeLeaf(
        dir,
        'other-server',
        otherCa,
        'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
      );
      const otherClient = await makeLeaf(dir, 'other-client', otherCa, 'extendedKeyUsage=clientAuth\n');
      return new TestPki(dir, ca, server, client, otherCa, otherServer, otherClient);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * A client certificate signed by `ca` (default) or `otherCa`, with subject CN `cn` and the given SAN DNS
   * names and URIs. `name` names its files (letters, digits, '-').
   */
  async issueClient(
    name: string,
    identity: { cn: string; dns?: readonly string[]; uri?: readonly string[] },
    signer: 'ca' | 'otherCa' = 'ca',
  ): Promise<CertAndKey> {
    if (!/^[A-Za-z0-9-]+$/.test(name)) throw new Error(`issueClient: '${name}' is not a usable file name`);
    const san = [...(identity.dns ?? []).map((d) => `DNS:${d}`), ...(identity.uri ?? []).map((u) => `URI:${u}`)];
    const ext = `${san.length > 0 ? `subjectAltName=${san.join(',')}\n` : ''}extendedKeyUsage=clientAuth\n`;
    return makeLeaf(this.dir, name, this[signer], ext, identity.cn);
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<CertAndKey> {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  await exec('openssl', ['req', '-x509', ...EC_KEY, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=nnt-${name}`]);
  return { cert, key };
}

async function makeLeaf(dir: string, name: string, ca: CertAndKey, extensions: string, cn = `nnt-${name}`): Promise<CertAndKey> {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  await exec('openssl', ['req', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  await writeFile(ext, extensions); // -extfile takes a file
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return { cert, key };
}
