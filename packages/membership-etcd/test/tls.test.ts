/**
 * The TLS material checks and the handshake-failure explanations (pure logic), on real PEM files made by
 * openssl (test/pki.ts) and on error messages recorded from grpc-js 1.14 against etcd 3.4.
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@nodenet/core';
import { run } from '@nodenet/sys';
import {
  EtcdMembership,
  checkEtcdEndpointSchemes,
  checkEtcdTlsMaterial,
  explainEtcdTlsFailure,
  readEtcdTlsFiles,
  type EtcdTlsFiles,
} from '../src/index.js';
import { TestPki } from './pki.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await TestPki.create();
  await writeFile(pki.file('garbage.pem'), 'not a certificate\n');
  await writeFile(pki.file('empty.pem'), '');
});
afterAll(async () => {
  await pki?.destroy();
});

function problems(files: EtcdTlsFiles): string[] {
  return readEtcdTlsFiles(files).problems.map((p) => `${p.key}: ${p.message}`);
}

describe('readEtcdTlsFiles', () => {
  it('reads a CA alone, and a CA with a client certificate and its key', () => {
    const caOnly = readEtcdTlsFiles({ ca: pki.ca.cert });
    expect(caOnly.problems).toEqual([]);
    expect(caOnly.material.ca?.toString()).toContain('-----BEGIN CERTIFICATE-----');
    expect(caOnly.material.cert).toBeUndefined();
    const full = readEtcdTlsFiles({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    expect(full.problems).toEqual([]);
    expect(full.material.key?.toString()).toContain('PRIVATE KEY-----');
    expect(readEtcdTlsFiles({ cert: pki.client.cert, key: pki.client.key }).problems).toEqual([]); // system roots + client cert
  });

  it('refuses cert without key and key without cert, naming the missing key', () => {
    expect(problems({ ca: pki.ca.cert, cert: pki.client.cert })).toEqual([
      "membership.etcd.tls.key: is required with membership.etcd.tls.cert: give the private key of the client certificate too (or remove cert to only verify etcd's certificate)",
    ]);
    expect(problems({ key: pki.client.key })).toEqual([
      'membership.etcd.tls.cert: is required with membership.etcd.tls.key: give the client certificate that key belongs to (or remove key)',
    ]);
    expect(problems({})).toEqual([
      "membership.etcd.tls: is empty: give ca (the CA that signed etcd's server certificate) and/or cert and key (a client certificate for etcd), or remove tls",
    ]);
  });

  it('names the key and the path of a file it cannot read', () => {
    const missing = pki.file('absent.pem');
    expect(problems({ ca: missing })).toEqual([`membership.etcd.tls.ca: cannot read ${missing}: no such file`]);
    expect(problems({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.dir })).toEqual([
      `membership.etcd.tls.key: cannot read ${pki.dir}: it is a directory`,
    ]);
  });

  it('names the key and the path of a PEM that does not parse', () => {
    const garbage = pki.file('garbage.pem');
    expect(problems({ ca: garbage })).toEqual([
      `membership.etcd.tls.ca: ${garbage} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM CA certificate that signed etcd's server certificate`,
    ]);
    expect(problems({ cert: pki.file('empty.pem'), key: pki.client.key })).toEqual([
      `membership.etcd.tls.cert: ${pki.file('empty.pem')} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM client certificate for etcd`,
    ]);
    // A key file given as the certificate and the other way round.
    expect(problems({ cert: pki.client.key, key: pki.client.cert })).toEqual([
      `membership.etcd.tls.cert: ${pki.client.key} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM client certificate for etcd`,
      `membership.etcd.tls.key: ${pki.client.cert} holds no PEM private key (no -----BEGIN PRIVATE KEY----- block)`,
    ]);
  });

  it('refuses a certificate whose body is corrupt, and a key that does not belong to the certificate', async () => {
    const corrupt = pki.file('corrupt.pem');
    const pem = readFileSync(pki.ca.cert, 'utf8');
    const lines = pem.split('\n');
    lines[2] = 'A'.repeat(lines[2]!.length); // inside the base64 body
    await writeFile(corrupt, lines.join('\n'));
    const [p] = problems({ ca: corrupt });
    expect(p).toMatch(
      new RegExp(
        `^membership\\.etcd\\.tls\\.ca: ${corrupt.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} the certificate does not parse \\(.+\\): give the PEM CA certificate`,
      ),
    );

    expect(problems({ cert: pki.client.cert, key: pki.server.key })).toEqual([
      `membership.etcd.tls.key: ${pki.server.key} is not the private key of the certificate ${pki.client.cert} (CN=nnt-client): give the key that belongs to membership.etcd.tls.cert`,
    ]);
  });

  it('refuses an encrypted key, saying to give it unencrypted', async () => {
    const encrypted = pki.file('encrypted.key');
    await run('openssl', ['pkey', '-in', pki.client.key, '-aes256', '-passout', 'pass:secret', '-out', encrypted], {
      step: 'encrypt a test key',
    });
    expect(problems({ cert: pki.client.cert, key: encrypted })).toEqual([
      `membership.etcd.tls.key: ${encrypted} holds an encrypted private key: give it unencrypted (protect the file with its permissions), e.g. openssl pkey -in ENCRYPTED -out PLAIN`,
    ]);
  });
});

describe('checkEtcdTlsMaterial (contents without files)', () => {
  it('names keys but no paths', () => {
    expect(checkEtcdTlsMaterial({ ca: Buffer.from('nope') })).toEqual([
      {
        key: 'membership.etcd.tls.ca',
        message:
          "holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM CA certificate that signed etcd's server certificate",
      },
    ]);
  });
});

describe('checkEtcdEndpointSchemes (shared by the config check and the constructor)', () => {
  const texts = (endpoints: string[], tlsSet: boolean) => checkEtcdEndpointSchemes(endpoints, tlsSet).map((p) => `${p.key}: ${p.message}`);

  it('accepts one scheme throughout, with tls only on https', () => {
    expect(texts(['http://198.18.0.5:2379', 'http://198.18.0.6:2379'], false)).toEqual([]);
    expect(texts(['https://198.18.0.5:2379', 'https://198.18.0.6:2379'], false)).toEqual([]);
    expect(texts(['https://198.18.0.5:2379'], true)).toEqual([]);
  });

  it('refuses mixed schemes, and tls with http endpoints, naming the key to fix', () => {
    expect(texts(['https://198.18.0.5:2379', 'http://198.18.0.6:2379'], false)).toEqual([
      'membership.etcd.endpoints: mixes http:// and https:// URLs: use one scheme for all endpoints',
    ]);
    expect(texts(['http://198.18.0.5:2379'], true)).toEqual([
      'membership.etcd.tls: is set but membership.etcd.endpoints are http:// (http://198.18.0.5:2379): TLS needs https:// endpoints: write them as https://HOST:PORT, or remove tls',
    ]);
  });
});

describe('EtcdMembership refuses unusable TLS options', () => {
  const base = { prefix: '/nodenet', leaseTtlSeconds: 15, nodeName: 'a' };
  const refusal = (options: ConstructorParameters<typeof EtcdMembership>[0]): InvalidArgumentError => {
    try {
      new EtcdMembership(options).stop().catch(() => undefined);
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidArgumentError);
      return e as InvalidArgumentError;
    }
    throw new Error('expected the options to be refused');
  };

  it('tls with http endpoints', () => {
    const e = refusal({ ...base, endpoints: ['http://127.0.0.1:2379'], tls: readEtcdTlsFiles({ ca: pki.ca.cert }).material });
    expect(e.field).toBe('membership.etcd.tls');
    expect(e.message).toBe(
      'membership.etcd.tls: is set but membership.etcd.endpoints are http:// (http://127.0.0.1:2379): TLS needs https:// endpoints: write them as https://HOST:PORT, or remove tls',
    );
  });

  it('a certificate without its key, and a PEM that does not parse', () => {
    const { material } = readEtcdTlsFiles({ ca: pki.ca.cert, cert: pki.client.cert });
    expect(refusal({ ...base, endpoints: ['https://127.0.0.1:2379'], tls: material }).field).toBe('membership.etcd.tls.key');
    expect(refusal({ ...base, endpoints: ['https://127.0.0.1:2379'], tls: { ca: Buffer.from('x') } }).field).toBe('membership.etcd.tls.ca');
  });

  it('accepts https with a CA and a client certificate, and https without tls (system roots)', async () => {
    const { material } = readEtcdTlsFiles({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    await new EtcdMembership({ ...base, endpoints: ['https://127.0.0.1:2379'], tls: material }).stop();
    await new EtcdMembership({ ...base, endpoints: ['https://127.0.0.1:2379'], tls: { cert: material.cert!, key: material.key! } }).stop();
    await new EtcdMembership({ ...base, endpoints: ['https://127.0.0.1:2379'] }).stop();
  });
});

describe('explainEtcdTlsFailure', () => {
  // Recorded from etcd3 1.1.2 / grpc-js 1.14.7 against etcd 3.4.23 with --client-cert-auth.
  const noClientCert =
    '14 UNAVAILABLE: No connection established. Last error: 803CA6A8FC7E0000:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42\n (2026-11-28T21:32:06.188Z). Resolution note: ';
  const untrustedServer =
    '14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ';
  const plainEndpoint =
    '14 UNAVAILABLE: No connection established. Last error: Error: Client network socket disconnected before secure TLS connection was established. Resolution note: ';
  const refused = '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ';

  it('an untrusted server certificate points at membership.etcd.tls.ca, with the reason', () => {
    expect(explainEtcdTlsFailure(untrustedServer, true)).toBe(
      "the TLS handshake failed: etcd's server certificate is not trusted (unable to verify the first certificate): set membership.etcd.tls.ca to the CA that signed it, and check that the certificate names the endpoint's host or IP address and is valid now",
    );
  });

  it('a TLS alert from etcd: the missing or refused client certificate', () => {
    expect(explainEtcdTlsFailure(noClientCert, false)).toBe(
      'the TLS handshake failed: etcd requires a client certificate and this node has none (TLS alert "bad certificate"): set membership.etcd.tls.cert and membership.etcd.tls.key',
    );
    expect(explainEtcdTlsFailure(noClientCert, true)).toBe(
      `the TLS handshake failed: etcd refused this node's client certificate (TLS alert "bad certificate"): membership.etcd.tls.cert must be signed by a CA in etcd's --trusted-ca-file, be valid now and allow client authentication`,
    );
    expect(explainEtcdTlsFailure('... tlsv13 alert certificate required:../deps/x.c:1:SSL alert number 116', false)).toContain(
      '(TLS alert "certificate required")',
    );
  });

  it('an endpoint that does not answer in TLS', () => {
    expect(explainEtcdTlsFailure(plainEndpoint, false)).toBe(
      'the TLS handshake failed: the endpoint did not answer in TLS (Client network socket disconnected before secure TLS connection was established): if etcd serves plain http there, use an http:// endpoint (and no tls)',
    );
  });

  it('anything else is not a TLS failure', () => {
    expect(explainEtcdTlsFailure(refused, true)).toBeNull();
    expect(explainEtcdTlsFailure('4 DEADLINE_EXCEEDED: Deadline exceeded', false)).toBeNull();
  });
});
