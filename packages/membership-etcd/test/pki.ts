/**
 * A throw-away PKI for TLS tests, made with openssl (argument arrays through @nodenet/sys's run(), no
 * shell) in a temp dir that destroy() removes: a CA, a server certificate for 127.0.0.1 signed by it, a
 * client certificate signed by it, and a second, unrelated CA with its own server and client certificates
 * (what a wrong CA or a foreign client certificate looks like). EC P-256 keys: quick to make.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run } from '@nodenet/sys';

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

  static async create(): Promise<TestPki> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nnt-pki-'));
    try {
      const ca = await makeCa(dir, 'ca');
      const otherCa = await makeCa(dir, 'other-ca');
      const server = await makeLeaf(dir, 'server', ca, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
      const client = await makeLeaf(dir, 'client', ca, 'extendedKeyUsage=clientAuth\n');
      const otherServer = await makeLeaf(dir, 'other-server', otherCa, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
      const otherClient = await makeLeaf(dir, 'other-client', otherCa, 'extendedKeyUsage=clientAuth\n');
      return new TestPki(dir, ca, server, client, otherCa, otherServer, otherClient);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
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
  await run('openssl', ['req', '-x509', ...EC_KEY, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=nnt-${name}`], { step: `make test CA ${name}` });
  return { cert, key };
}

async function makeLeaf(dir: string, name: string, ca: CertAndKey, extensions: string): Promise<CertAndKey> {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  await run('openssl', ['req', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=nnt-${name}`], { step: `make test key ${name}` });
  await writeFile(ext, extensions); // -extfile takes a file
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext], {
    step: `sign test certificate ${name}`,
  });
  return { cert, key };
}
