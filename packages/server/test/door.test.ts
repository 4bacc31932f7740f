/**
 * The API's door, pure parts: the config keys socketMode, socketGroup, tls.allow and limits; client
 * identities from a certificate; the allowlist decision; and the Door's order of refusals on fake calls.
 */
import { Writable } from 'node:stream';
import { Metadata, status, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { NetworkService } from '@nodenet/api';
import { describe, expect, it } from 'vitest';
import { checkAccess, identitiesOf, parseIdentity, parseSubjectAltName } from '../src/access.js';
import { ConfigError, parseConfig } from '../src/config.js';
import { Door, serverOptions } from '../src/door.js';
import { createLogger } from '../src/logger.js';
import { InFlight } from '../src/network-server.js';

const backends = ['iproute2'];
const mtls = { listen: '0.0.0.0:7443', tls: { cert: '/c.pem', key: '/k.pem', ca: '/ca.pem' } };

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, { backends });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe('config: socketMode and socketGroup', () => {
  it('defaults to 0600 and no group; 0660 when a group is given', () => {
    const c = parseConfig({}, { backends });
    expect(c.socketMode).toBe(0o600);
    expect(c.socketGroup).toBeUndefined();
    expect(parseConfig({ socketGroup: 'nodenet' }, { backends })).toMatchObject({ socketMode: 0o660, socketGroup: 'nodenet' });
    expect(parseConfig({ socketGroup: 998 }, { backends }).socketGroup).toBe(998);
    expect(parseConfig({ socketGroup: '998' }, { backends }).socketGroup).toBe(998);
    expect(parseConfig({ socketGroup: 'ops', socketMode: '0640' }, { backends }).socketMode).toBe(0o640);
    expect(parseConfig({ socketMode: '600' }, { backends }).socketMode).toBe(0o600);
  });

  it('refuses world-accessible modes, unquoted YAML numbers, non-octal strings and bad group names, naming the key', () => {
    expect(problemsOf({ socketMode: '0666' })[0]).toMatch(/^config: socketMode: 0666 lets every user on the node reach the socket/);
    expect(problemsOf({ socketMode: '0661' })[0]).toMatch(/^config: socketMode: .*last digit must be 0/);
    expect(problemsOf({ socketMode: 660 })[0]).toMatch(/^config: socketMode: write the mode as a quoted octal string/);
    expect(problemsOf({ socketMode: 'rw-rw----' })[0]).toMatch(/^config: socketMode: must be an octal mode string/);
    expect(problemsOf({ socketMode: '0400' })[0]).toMatch(/^config: socketMode: 0400 must give the owner read and write/);
    expect(problemsOf({ socketGroup: 'bad group' })[0]).toMatch(/^config: socketGroup: must be a group name/);
    expect(problemsOf({ socketGroup: -1 })[0]).toMatch(/^config: socketGroup: /);
  });

  it('refuses socketMode and socketGroup with a TCP listen address', () => {
    const p = problemsOf({ listen: '0.0.0.0:7443', insecure: true, socketMode: '0660', socketGroup: 'ops' });
    expect(p).toContain(
      'config: socketMode: applies to a unix socket, but listen is 0.0.0.0:7443: remove socketMode or listen on unix:///PATH',
    );
    expect(p.some((m) => m.startsWith('config: socketGroup: applies to a unix socket'))).toBe(true);
  });
});

describe('config: TCP needs TLS unless insecure', () => {
  it('refuses TCP without tls and insecure, accepts either', () => {
    expect(problemsOf({ listen: '0.0.0.0:7443' })[0]).toMatch(/^config: listen: 0\.0\.0\.0:7443 is TCP without TLS, which is refused/);
    expect(parseConfig({ listen: '0.0.0.0:7443', insecure: true }, { backends }).insecure).toBe(true);
    expect(parseConfig(mtls, { backends }).tls?.ca).toBe('/ca.pem');
  });
});

describe('config: tls.allow', () => {
  it('takes per-service lists of identities in canonical form', () => {
    const c = parseConfig(
      {
        ...mtls,
        tls: { ...mtls.tls, allow: { Network: ['CN=orchestrator', 'dns:Sched.Example.org'], NetworkAdmin: ['URI:spiffe://c/admin'] } },
      },
      { backends },
    );
    expect(c.tls?.allow).toEqual({ Network: ['CN=orchestrator', 'DNS:sched.example.org'], NetworkAdmin: ['URI:spiffe://c/admin'] });
    expect(parseConfig({ ...mtls, tls: { ...mtls.tls, allow: { NetworkAdmin: [] } } }, { backends }).tls?.allow).toEqual({
      NetworkAdmin: [],
    });
  });

  it('refuses bad identities, unknown services, and allow without tls.ca', () => {
    expect(problemsOf({ ...mtls, tls: { ...mtls.tls, allow: { Network: ['orchestrator'] } } })[0]).toMatch(
      /^config: tls\.allow\.Network\[0\]: 'orchestrator' is not a client identity: write CN=NAME, DNS:NAME or URI:URI/,
    );
    expect(problemsOf({ ...mtls, tls: { ...mtls.tls, allow: { Network: ['DNS:not a name'] } } })[0]).toMatch(
      /^config: tls\.allow\.Network\[0\]: .*is not a DNS name/,
    );
    expect(problemsOf({ ...mtls, tls: { ...mtls.tls, allow: { Health: ['CN=x'] } } })[0]).toBe(
      "config: tls.allow: unknown key 'Health': valid keys are Network, NetworkAdmin",
    );
    expect(problemsOf({ ...mtls, tls: { cert: '/c.pem', key: '/k.pem', allow: { Network: ['CN=x'] } } })[0]).toMatch(
      /^config: tls\.allow: names client identities, .*set tls\.ca/,
    );
  });
});

describe('config: limits', () => {
  it('defaults to 256 calls and 64 KiB; bounds are checked', () => {
    expect(parseConfig({}, { backends }).limits).toEqual({ maxInFlight: 256, maxMessageBytes: 65536 });
    expect(parseConfig({ limits: { maxInFlight: 16 } }, { backends }).limits).toEqual({ maxInFlight: 16, maxMessageBytes: 65536 });
    expect(problemsOf({ limits: { maxInFlight: 0 } })[0]).toMatch(/^config: limits\.maxInFlight: must be an integer 1\.\./);
    expect(problemsOf({ limits: { maxMessageBytes: 100 } })[0]).toMatch(/^config: limits\.maxMessageBytes: must be an integer 1024\.\./);
    expect(problemsOf({ limits: { maxQueue: 1 } })[0]).toBe(
      "config: limits: unknown key 'maxQueue': valid keys are maxInFlight, maxMessageBytes",
    );
  });

  it('become grpc-js server options', () => {
    expect(serverOptions({ maxInFlight: 16, maxMessageBytes: 65536 })).toEqual({
      'grpc.max_receive_message_length': 65536,
      'grpc.max_concurrent_streams': 1024,
    });
  });
});

describe('client identities', () => {
  it('reads CN and SAN DNS/URI, including JSON-quoted SAN values', () => {
    expect(parseSubjectAltName('DNS:a.example, URI:spiffe://c/x, IP Address:127.0.0.1')).toEqual([
      ['DNS', 'a.example'],
      ['URI', 'spiffe://c/x'],
      ['IP Address', '127.0.0.1'],
    ]);
    expect(parseSubjectAltName('DNS:"a, b", URI:x:y')).toEqual([
      ['DNS', 'a, b'],
      ['URI', 'x:y'],
    ]);
    expect(identitiesOf({ subject: { CN: 'orch' }, subjectaltname: 'DNS:Orch.Example, URI:spiffe://c/o' })).toEqual([
      'CN=orch',
      'DNS:orch.example',
      'URI:spiffe://c/o',
    ]);
    expect(identitiesOf({ subject: { CN: ['a', 'b'] }, subjectaltname: undefined })).toEqual(['CN=a', 'CN=b']);
    expect(parseIdentity('cn=x')).toBe('CN=x');
  });

  it('admits a listed identity, refuses another naming it, and admits everyone where a service has no list', () => {
    const allow = { NetworkAdmin: ['CN=admin'] };
    const cert = (cn: string) => ({
      transportSecurityType: 'ssl',
      sslPeerCertificate: { subject: { CN: cn }, subjectaltname: 'DNS:h.example' } as never,
    });
    expect(checkAccess(allow, 'NetworkAdmin', cert('admin'))).toEqual({ admitted: true });
    const refused = checkAccess(allow, 'NetworkAdmin', cert('orchestrator'));
    expect(refused.admitted).toBe(false);
    expect(!refused.admitted && refused.message).toBe(
      "client CN=orchestrator, DNS:h.example may not call network.NetworkAdmin: it is not in tls.allow.NetworkAdmin; add one of its identities to tls.allow.NetworkAdmin in the daemon's config",
    );
    expect(checkAccess(allow, 'Network', cert('orchestrator'))).toEqual({ admitted: true });
    expect(checkAccess(undefined, 'NetworkAdmin', {})).toEqual({ admitted: true });
    expect(checkAccess(allow, 'NetworkAdmin', {}).admitted).toBe(false);
  });
});

describe('Door', () => {
  function setup(maxInFlight: number) {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const inFlight = new InFlight();
    const door = new Door({
      allow: { Network: ['CN=orch'] },
      limits: { maxInFlight, maxMessageBytes: 65536 },
      inFlight,
      logger: createLogger({ level: 'debug', destination }),
    });
    const calls: string[] = [];
    const impl = Object.fromEntries(
      Object.keys(NetworkService).map((name) => [
        name,
        (_call: ServerUnaryCall<unknown, unknown>, callback: (e: null, r: object) => void) => {
          calls.push(name);
          callback(null, {});
        },
      ]),
    );
    const [definition, implementation] = door.guard('Network', NetworkService, impl);
    return { definition, implementation, inFlight, calls, lines };
  }

  const fakeCall = (request: unknown, cn: string) =>
    ({
      request,
      metadata: new Metadata(),
      cancelled: false,
      getPeer: () => 'ipv4:198.18.0.100:5000',
      getAuthContext: () => ({ sslPeerCertificate: { subject: { CN: cn } } }),
    }) as never;

  function invoke(implementation: Record<string, unknown>, name: string, call: unknown): Promise<Partial<ServiceError> | null> {
    return new Promise((resolve) =>
      (implementation[name] as (c: unknown, cb: (e: Partial<ServiceError> | null) => void) => void)(call, (e) => resolve(e)),
    );
  }

  it('decodes malformed bytes to a refusal instead of throwing, and refuses in order: identity, bytes, load', async () => {
    const { definition, implementation, inFlight, calls } = setup(1);
    const decoded: unknown = definition.createInterface!.requestDeserialize(Buffer.from([0x0a, 0xff]));
    expect((decoded as object).constructor.name).toBe('MalformedRequest');

    const denied = await invoke(implementation, 'createInterface', fakeCall(decoded, 'rogue'));
    expect(denied).toMatchObject({
      code: status.PERMISSION_DENIED,
      details: expect.stringContaining('client CN=rogue may not call network.Network') as unknown,
    });
    const malformed = await invoke(implementation, 'createInterface', fakeCall(decoded, 'orch'));
    expect(malformed).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^the request is not a valid CreateInterface request message/) as unknown,
    });

    const good: unknown = definition.deleteInterface!.requestDeserialize(Buffer.from([0x0a, 0x01, 0x61]));
    inFlight.enter();
    const busy = await invoke(implementation, 'deleteInterface', fakeCall(good, 'orch'));
    expect(busy).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('limits.maxInFlight') as unknown });
    inFlight.leave();
    expect(await invoke(implementation, 'deleteInterface', fakeCall(good, 'orch'))).toBeNull();
    expect(calls).toEqual(['deleteInterface']);
  });
});
