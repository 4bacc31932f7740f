/**
 * membership.etcd.tls: parsing and cross-key rules (parseConfig), reading and checking the PEM files
 * (loadConfig, readEtcdTls), and the wiring that hands them to the etcd client (createMembership). The PEM
 * files are real, made by openssl in a temp dir removed afterwards.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@nodenet/core';
import * as etcdModule from '@nodenet/membership-etcd';
const { EtcdMembership } = etcdModule;
import { run } from '@nodenet/sys';
import { ConfigError, configSummary, loadConfig, parseConfig, readEtcdTls } from '../src/config.js';
import { BACKEND_NAMES, createMembership } from '../src/container.js';

const backends = ['iproute2'];
const HTTPS = ['https://198.18.0.5:2379'];

let dir: string;
/** A self-signed certificate (good as a CA and as a client certificate) and its key; another key. */
let cert: string;
let key: string;
let otherKey: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nodenet-etcd-tls-'));
  cert = join(dir, 'node.pem');
  key = join(dir, 'node.key');
  otherKey = join(dir, 'other.key');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=nnt-node'], {
    step: 'make a test certificate',
  });
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', otherKey], {
    step: 'make a test key',
  });
  await writeFile(join(dir, 'garbage.pem'), 'this is not PEM\n');
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, { backends });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

const etcdWith = (etcd: object) => ({ membership: { type: 'etcd', etcd } });

/** loadConfig on a YAML file holding `raw`; the ConfigError's problems if it refuses. */
async function load(raw: object): Promise<{ problems: string[]; exitCode?: number }> {
  const file = join(dir, 'nodenet.yaml');
  await writeFile(file, JSON.stringify(raw)); // JSON is valid YAML
  try {
    await loadConfig({ file, backends });
    return { problems: [] };
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return { problems: [...(e as ConfigError).problems], exitCode: (e as ConfigError).exitCode };
  }
}

describe('membership.etcd.tls in parseConfig', () => {
  it('is optional: https endpoints without it keep using the system roots', () => {
    const c = parseConfig(etcdWith({ endpoints: HTTPS }), { backends });
    expect(c.membership.etcd).toEqual({ endpoints: HTTPS, prefix: '/nodenet', leaseTtlSeconds: 15, restartGraceSeconds: 60 });
  });

  it('accepts ca alone, and ca with cert and key', () => {
    expect(parseConfig(etcdWith({ endpoints: HTTPS, tls: { ca: '/etc/etcd/ca.pem' } }), { backends }).membership.etcd.tls).toEqual({
      ca: '/etc/etcd/ca.pem',
    });
    const full = { ca: '/etc/etcd/ca.pem', cert: '/etc/etcd/client.pem', key: '/etc/etcd/client.key' };
    expect(parseConfig(etcdWith({ endpoints: HTTPS, tls: full }), { backends }).membership.etcd.tls).toEqual(full);
  });

  it('refuses cert without key, and key without cert, naming the missing key', () => {
    expect(problemsOf(etcdWith({ endpoints: HTTPS, tls: { ca: '/ca.pem', cert: '/client.pem' } }))).toEqual([
      "config: membership.etcd.tls.key: is required with membership.etcd.tls.cert: give the private key of the client certificate too (or remove cert to only verify etcd's certificate)",
    ]);
    expect(problemsOf(etcdWith({ endpoints: HTTPS, tls: { key: '/client.key' } }))).toEqual([
      'config: membership.etcd.tls.cert: is required with membership.etcd.tls.key: give the client certificate that key belongs to (or remove key)',
    ]);
  });

  it('refuses tls with http:// endpoints, saying what to fix (also with the default endpoint)', () => {
    expect(problemsOf(etcdWith({ endpoints: ['http://198.18.0.5:2379'], tls: { ca: '/ca.pem' } }))).toEqual([
      'config: membership.etcd.tls: is set but membership.etcd.endpoints are http:// (http://198.18.0.5:2379): TLS needs https:// endpoints: write them as https://HOST:PORT, or remove tls',
    ]);
    expect(problemsOf(etcdWith({ tls: { ca: '/ca.pem' } }))[0]).toContain('membership.etcd.endpoints are http:// (http://127.0.0.1:2379)');
  });

  it('refuses endpoints that mix http and https, an empty tls, a bad path and an unknown key', () => {
    expect(problemsOf(etcdWith({ endpoints: ['https://198.18.0.5:2379', 'http://198.18.0.6:2379'] }))).toEqual([
      'config: membership.etcd.endpoints: mixes http:// and https:// URLs: use one scheme for all endpoints',
    ]);
    expect(problemsOf(etcdWith({ endpoints: HTTPS, tls: {} }))).toEqual([
      "config: membership.etcd.tls: is empty: give ca (the CA that signed etcd's server certificate) and/or cert and key (a client certificate for etcd), or remove tls",
    ]);
    expect(problemsOf(etcdWith({ endpoints: HTTPS, tls: { ca: '' } }))).toEqual([
      'config: membership.etcd.tls.ca: must be the path of a PEM CA certificate file, not empty',
    ]);
    expect(problemsOf(etcdWith({ endpoints: HTTPS, tls: { ca: '/ca.pem', certFile: '/c.pem' } }))).toEqual([
      "config: membership.etcd.tls: unknown key 'certFile': valid keys are ca, cert, key",
    ]);
  });
});

describe('membership.etcd.tls files in loadConfig', () => {
  it('resolves relative paths against the config file and reads the PEM files', async () => {
    const file = join(dir, 'nodenet.yaml');
    await writeFile(
      file,
      'membership:\n  type: etcd\n  etcd:\n    endpoints: [https://198.18.0.5:2379]\n    tls: { ca: node.pem, cert: node.pem, key: node.key }\n',
    );
    const c = await loadConfig({ file, backends });
    expect(c.membership.etcd.tls).toEqual({ ca: cert, cert, key });
    const material = readEtcdTls(c);
    expect(material?.ca?.toString()).toContain('-----BEGIN CERTIFICATE-----');
    expect(material?.key?.toString()).toContain('PRIVATE KEY-----');
    expect(configSummary(c)['membership']).toEqual({
      type: 'etcd',
      etcd: { endpoints: HTTPS, prefix: '/nodenet', leaseTtlSeconds: 15, restartGraceSeconds: 60, tls: { ca: cert, cert, key } },
    });
  });

  it('a missing file is a config error (exit code 2) naming the key and the path', async () => {
    const missing = join(dir, 'absent-ca.pem');
    const { problems, exitCode } = await load(etcdWith({ endpoints: HTTPS, tls: { ca: missing, cert, key } }));
    expect(problems).toEqual([`config: membership.etcd.tls.ca: cannot read ${missing}: no such file`]);
    expect(exitCode).toBe(2);
  });

  it('a PEM that does not parse is a config error naming the key and the path', async () => {
    const garbage = join(dir, 'garbage.pem');
    expect((await load(etcdWith({ endpoints: HTTPS, tls: { ca: garbage } }))).problems).toEqual([
      `config: membership.etcd.tls.ca: ${garbage} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM CA certificate that signed etcd's server certificate`,
    ]);
    expect((await load(etcdWith({ endpoints: HTTPS, tls: { cert: garbage, key: garbage } }))).problems).toEqual([
      `config: membership.etcd.tls.cert: ${garbage} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): give the PEM client certificate for etcd`,
      `config: membership.etcd.tls.key: ${garbage} holds no PEM private key (no -----BEGIN PRIVATE KEY----- block)`,
    ]);
  });

  it('a key that does not belong to the certificate is a config error naming both files', async () => {
    expect((await load(etcdWith({ endpoints: HTTPS, tls: { cert, key: otherKey } }))).problems).toEqual([
      `config: membership.etcd.tls.key: ${otherKey} is not the private key of the certificate ${cert} (CN=nnt-node): give the key that belongs to membership.etcd.tls.cert`,
    ]);
  });

  it('reads the files only for etcd membership', async () => {
    const missing = join(dir, 'absent.pem');
    expect((await load({ membership: { type: 'static', etcd: { endpoints: HTTPS, tls: { ca: missing } } } })).problems).toEqual([]);
  });
});

describe('createMembership with membership.etcd.tls', () => {
  const config = (etcd: object) => parseConfig({ nodeName: 'node-1', ...etcdWith(etcd) }, { backends: BACKEND_NAMES });

  it('builds the etcd membership with the PEM contents', async () => {
    const m = createMembership(config({ endpoints: HTTPS, tls: { ca: cert, cert, key } }), silentLogger, etcdModule);
    expect(m).toBeInstanceOf(EtcdMembership);
    await m.stop();
  });

  it('a file gone since the config was loaded: ConfigError naming the key and the path', () => {
    const missing = join(dir, 'gone.key');
    expect(() => createMembership(config({ endpoints: HTTPS, tls: { cert, key: missing } }), silentLogger, etcdModule)).toThrow(
      new ConfigError([`config: membership.etcd.tls.key: cannot read ${missing}: no such file`]),
    );
  });

  it("an endpoint etcd's client refuses (a URL path) is a ConfigError naming it", () => {
    expect(() => createMembership(config({ endpoints: ['https://198.18.0.5:2379/v3'] }), silentLogger, etcdModule)).toThrow(
      /^config: membership\.etcd\.endpoints\[0\]: 'https:\/\/198\.18\.0\.5:2379\/v3' is not an etcd URL/,
    );
  });
});
