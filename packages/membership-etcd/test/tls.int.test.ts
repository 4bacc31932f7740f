/**
 * EtcdMembership against a real etcd serving its clients over TLS with client-certificate auth
 * (--client-cert-auth, as production etcd usually runs), on a free loopback port like the plain tests.
 * The certificates come from a throw-away PKI made with openssl (test/pki.ts). Failures must be quick and
 * say what is wrong: each failing start() is bounded by HANG_BOUND_MS (a hang fails the test; the time
 * is printed, not asserted).
 */
import { copyFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { EtcdMembership, readEtcdTlsFiles, type EtcdTlsFiles, type EtcdTlsMaterial } from '../src/index.js';
import { TTL, measure, rec, useEtcd } from './etcd-suite.js';
import { EtcdServer, waitFor } from './harness.js';
import { TestPki } from './pki.js';

const HANG_BOUND_MS = 15_000;

let pki: TestPki;
/** The files etcd serves with (copies, so a test can swap in another certificate). */
let served: { cert: string; key: string };

const suite = useEtcd({
  prefixTag: 'tls',
  start: async () => {
    pki = await TestPki.create();
    served = { cert: pki.file('etcd-served.pem'), key: pki.file('etcd-served.key') };
    await serveCertificate(pki.server);
    return EtcdServer.create({ tls: { ...served, trustedCa: pki.ca.cert, clientCertAuth: true, probe: pki.client } });
  },
});
const { newPrefix, membership } = suite;

afterAll(async () => {
  await pki?.destroy();
});

async function serveCertificate(pair: { cert: string; key: string }): Promise<void> {
  await copyFile(pair.cert, served.cert);
  await copyFile(pair.key, served.key);
}

/** Reads the files the way the daemon does; the test fails if they have problems. */
function material(files: EtcdTlsFiles): EtcdTlsMaterial {
  const { material: m, problems } = readEtcdTlsFiles(files);
  expect(problems).toEqual([]);
  return m;
}

/** start()'s rejection, failing the test if start() succeeds or does not settle within HANG_BOUND_MS. */
async function startFailure(m: EtcdMembership, what: string): Promise<Error> {
  const t = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`start() did not settle within ${HANG_BOUND_MS} ms: it hangs`)), HANG_BOUND_MS);
  });
  try {
    await Promise.race([m.start(() => undefined), hung]);
  } catch (e) {
    measure(`start() ${what} -> error`, Date.now() - t);
    return e as Error;
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`start() ${what} succeeded; it should have been refused`);
}

const withClientCert = (): EtcdTlsFiles => ({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });

describe('EtcdMembership with etcd over TLS and client-certificate auth', () => {
  it('two nodes with the client certificate see each other', async () => {
    const p = newPrefix();
    const a = membership(p, 'a', { tls: material(withClientCert()) });
    const b = membership(p, 'b', { tls: material(withClientCert()) });
    const t = Date.now();
    await a.m.start(a.peers.listener);
    measure('start() over TLS with a client certificate', Date.now() - t);
    await b.m.start(b.peers.listener);
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => a.peers.summary().join() === 'b=198.18.0.2@198.19.2.0/24', 5000);
    await waitFor('b to see a', () => b.peers.summary().join() === 'a=198.18.0.1@198.19.1.0/24', 5000);
    expect(a.m.leaseInfo()?.id).toBeTruthy();
  });

  it('without a client certificate etcd refuses the connection, and start() says a client certificate is required', async () => {
    const { m } = membership(newPrefix(), 'a', { tls: material({ ca: pki.ca.cert }) });
    const err = await startFailure(m, 'without a client certificate');
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(
      `etcd at ${suite.etcd.url}: the TLS handshake failed: etcd requires a client certificate and this node has none`,
    );
    expect(err.message).toContain('set membership.etcd.tls.cert and membership.etcd.tls.key');
  });

  it('a client certificate from a CA etcd does not trust is refused, and start() says so', async () => {
    const { m } = membership(newPrefix(), 'a', {
      tls: material({ ca: pki.ca.cert, cert: pki.otherClient.cert, key: pki.otherClient.key }),
    });
    const err = await startFailure(m, 'with a foreign client certificate');
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(`etcd at ${suite.etcd.url}: the TLS handshake failed: etcd refused this node's client certificate`);
    expect(err.message).toContain("membership.etcd.tls.cert must be signed by a CA in etcd's --trusted-ca-file");
  });

  it("a wrong CA: start() says etcd's server certificate is not trusted and to fix membership.etcd.tls.ca", async () => {
    const { m } = membership(newPrefix(), 'a', { tls: material({ ...withClientCert(), ca: pki.otherCa.cert }) });
    const err = await startFailure(m, 'with the wrong CA');
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(
      `etcd at ${suite.etcd.url}: the TLS handshake failed: etcd's server certificate is not trusted (unable to verify the first certificate)`,
    );
    expect(err.message).toContain('set membership.etcd.tls.ca to the CA that signed it');
  });

  it('https without tls verifies against the system roots: a private CA is not trusted, said plainly', async () => {
    const { m } = membership(newPrefix(), 'a', {});
    const err = await startFailure(m, 'with the system roots');
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toContain(`etcd at ${suite.etcd.url}: the TLS handshake failed: etcd's server certificate is not trusted`);
  });

  it('a failed start() can be retried: it succeeds once the handshake does', async () => {
    await suite.etcd.stop();
    try {
      const a = membership(newPrefix(), 'a', { tls: material(withClientCert()) });
      const err = await startFailure(a.m, 'while etcd is down');
      expect(err.message).toContain(`etcd is not reachable at ${suite.etcd.url}`);
      await suite.etcd.start();
      await a.m.start(a.peers.listener);
      expect(a.peers.latest()).toEqual([]);
    } finally {
      await suite.etcd.start();
    }
  });

  it("etcd's certificate replaced at run time by one this node does not trust: log lines name etcd, the endpoint and the cause; restoring it heals", async () => {
    const p = newPrefix();
    const a = membership(p, 'a', { tls: material(withClientCert()) });
    const b = membership(p, 'b', { tls: material(withClientCert()) });
    await a.m.start(a.peers.listener);
    await b.m.start(b.peers.listener);
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => a.peers.summary().length === 1, 5000);

    await suite.etcd.stop();
    try {
      await serveCertificate(pki.otherServer);
      await suite.etcd.start();
      const t = Date.now();
      const watchLine = await waitFor(
        'the watch to report the handshake failure',
        () => a.log.find('error', 'etcd watch cannot reconnect'),
        20_000,
      );
      measure('etcd restarted with an untrusted certificate -> watch error logged', Date.now() - t);
      expect(watchLine.fields).toMatchObject({ endpoints: [suite.etcd.url] });
      expect(String((watchLine.fields as { err?: unknown }).err)).toContain(
        "the TLS handshake failed: etcd's server certificate is not trusted",
      );
      // The lease cannot be renewed either: after the TTL the node keeps trying to re-announce, saying why.
      const announceLine = await waitFor(
        're-announce attempts to report the handshake failure',
        () =>
          a.log.lines.find(
            (l) =>
              l.level === 'warn' &&
              l.msg.includes('could not re-announce') &&
              String((l.fields as { err?: unknown }).err).includes('TLS handshake failed'),
          ),
        TTL * 1000 + 20_000,
      );
      expect(String((announceLine.fields as { err?: unknown }).err)).toContain(`etcd at ${suite.etcd.url} could not`);
    } finally {
      await suite.etcd.stop();
      await serveCertificate(pki.server);
      await suite.etcd.start();
    }
    const t = Date.now();
    await waitFor('a to resume its watch', () => a.log.find('info', 'etcd watch resumed'), 20_000);
    await waitFor(
      'a to be back in etcd and seen by b',
      () => b.peers.summary().join() === 'a=198.18.0.1@198.19.1.0/24' && a.m.leaseInfo() !== null,
      20_000,
    );
    measure('trusted certificate restored -> watch resumed and a re-announced', Date.now() - t);
    expect(a.peers.summary()).toEqual(['b=198.18.0.2@198.19.2.0/24']);
  });
});
