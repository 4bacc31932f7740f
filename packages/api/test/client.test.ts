// createNetworkClient against a small in-process grpc-js server (not the daemon) built from the generated
// NetworkService: proves the promise wrapper, per-call metadata/deadline/cancel, errors and TLS options.
import { Metadata, Server, ServerCredentials, type ServerUnaryCall, type ServiceError, status } from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type CreateInterfaceRequest,
  type NetworkApiClient,
  type NetworkServer,
  NetworkService,
  createNetworkClient,
  isServiceError,
} from '../src/index.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url));

/** A fake daemon: records what it received and answers from the request, so the tests see both directions. */
class FakeNetwork {
  readonly received: { method: string; request: unknown; metadata: Record<string, unknown> }[] = [];
  /** Calls held open (for deadline and cancel tests), released by releaseHeld(). */
  private readonly held: (() => void)[] = [];

  private record(method: string, call: ServerUnaryCall<unknown, unknown>): void {
    this.received.push({ method, request: call.request, metadata: call.metadata.getMap() });
  }

  releaseHeld(): void {
    for (const release of this.held.splice(0)) release();
  }

  readonly implementation: NetworkServer = {
    createContainerNetworkInterface: (call, callback) => {
      this.record('createContainerNetworkInterface', call);
      if (call.request.subNetwork === '') {
        callback({ code: status.INVALID_ARGUMENT, details: 'sub_network is empty: give the node subnet, e.g. 198.19.1.0/24' });
        return;
      }
      callback(null, { interfaceName: 'nodenet0' });
    },
    createInterface: (call, callback) => {
      this.record('createInterface', call);
      const request: CreateInterfaceRequest = call.request;
      if (request.ipAddress === '198.19.1.99') {
        // Never answered until released: the client's deadline or cancel must end the call.
        this.held.push(() => callback({ code: status.ABORTED, details: 'released by the test' }));
        return;
      }
      if (request.ports.includes(22)) {
        callback({ code: status.ALREADY_EXISTS, details: 'port 22 is published by nni-00000001' });
        return;
      }
      callback(null, {
        interfaceName: 'nni-0a1b2c3d',
        hostInterfaceName: 'nnh-0a1b2c3d',
        gateway: '198.19.1.1',
        prefixLength: 24,
      });
    },
    deleteInterface: (call, callback) => {
      this.record('deleteInterface', call);
      if (call.request.interfaceName === 'eth0') {
        callback({ code: status.PERMISSION_DENIED, details: 'eth0 was not created by nodenet' });
        return;
      }
      callback(null, {});
    },
  };
}

async function startServer(fake: FakeNetwork, address: string, credentials: ServerCredentials): Promise<{ server: Server; port: number }> {
  const server = new Server();
  server.addService(NetworkService, fake.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (error, boundPort) => (error ? reject(error) : resolve(boundPort))),
  );
  return { server, port };
}

async function expectServiceError(promise: Promise<unknown>, code: status): Promise<ServiceError> {
  const error: unknown = await promise.then(
    (value) => {
      throw new Error(`expected the call to fail with ${status[code]}, it returned ${JSON.stringify(value)}`);
    },
    (e: unknown) => e,
  );
  if (!isServiceError(error)) throw error;
  expect(status[error.code]).toBe(status[code]);
  return error;
}

describe('createNetworkClient over a unix socket', () => {
  const fake = new FakeNetwork();
  let dir: string;
  let server: Server;
  let target: string;
  const clients: NetworkApiClient[] = [];
  const newClient = (): NetworkApiClient => {
    const client = createNetworkClient(target);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nodenet-api-test-'));
    target = `unix://${join(dir, 'nodenet.sock')}`;
    ({ server } = await startServer(fake, target, ServerCredentials.createInsecure()));
  });

  afterEach(() => {
    fake.releaseHeld();
    fake.received.length = 0;
  });

  afterAll(() => {
    for (const client of clients) client.close();
    server?.forceShutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('createContainerNetworkInterface resolves with the response', async () => {
    const client = newClient();
    const response = await client.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    expect(response).toEqual({ interfaceName: 'nodenet0' });
    expect(fake.received[0]?.request).toEqual({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  });

  it('createInterface takes a partial request (absent fields are defaults) and returns extension fields', async () => {
    const client = newClient();
    const response = await client.createInterface({ ipAddress: '198.19.1.2' });
    expect(response).toEqual({
      interfaceName: 'nni-0a1b2c3d',
      hostInterfaceName: 'nnh-0a1b2c3d',
      macAddress: undefined,
      gateway: '198.19.1.1',
      prefixLength: 24,
      mtu: undefined,
    });
    expect(fake.received[0]?.request).toEqual({
      ipAddress: '198.19.1.2',
      ports: [],
      netns: undefined,
      ifname: undefined,
      kind: undefined,
      portMappings: [],
    });
  });

  it('deleteInterface resolves with Empty', async () => {
    await expect(newClient().deleteInterface({ interfaceName: 'nni-0a1b2c3d' })).resolves.toEqual({});
  });

  it('rejects with the gRPC status code and the server message', async () => {
    const client = newClient();
    const denied = await expectServiceError(client.deleteInterface({ interfaceName: 'eth0' }), status.PERMISSION_DENIED);
    expect(denied.details).toBe('eth0 was not created by nodenet');
    expect(isServiceError(denied, status.PERMISSION_DENIED)).toBe(true);
    expect(isServiceError(denied, status.NOT_FOUND)).toBe(false);
    await expectServiceError(client.createInterface({ ipAddress: '198.19.1.3', ports: [22] }), status.ALREADY_EXISTS);
    await expectServiceError(client.createContainerNetworkInterface({ ipAddress: '198.19.1.1' }), status.INVALID_ARGUMENT);
  });

  it('sends per-call metadata (plain object or Metadata)', async () => {
    const client = newClient();
    await client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { metadata: { 'x-request-id': 'req-1' } });
    const metadata = new Metadata();
    metadata.set('x-request-id', 'req-2');
    await client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { metadata });
    expect(fake.received.map((r) => r.metadata['x-request-id'])).toEqual(['req-1', 'req-2']);
  });

  it('a deadline ends a call the server does not answer (DEADLINE_EXCEEDED)', async () => {
    const client = newClient();
    await expectServiceError(client.createInterface({ ipAddress: '198.19.1.99' }, { timeoutMs: 100 }), status.DEADLINE_EXCEEDED);
    await expectServiceError(
      client.createInterface({ ipAddress: '198.19.1.99' }, { deadline: new Date(Date.now() + 100) }),
      status.DEADLINE_EXCEEDED,
    );
  });

  it('an AbortSignal cancels the call (CANCELLED)', async () => {
    const client = newClient();
    const controller = new AbortController();
    const pending = client.createInterface({ ipAddress: '198.19.1.99' }, { signal: controller.signal });
    // Abort once the server holds the call, so the cancel really crosses the wire.
    await client.waitForReady(Date.now() + 5_000);
    while (fake.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await expectServiceError(pending, status.CANCELLED);
    await expectServiceError(client.deleteInterface({ interfaceName: 'x' }, { signal: controller.signal }), status.CANCELLED);
  });

  it('close() ends the channel: later calls reject instead of throwing', async () => {
    const client = createNetworkClient(target);
    await client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' });
    client.close();
    let thrownSynchronously = false;
    let call: Promise<unknown> | undefined;
    try {
      call = client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' });
    } catch {
      thrownSynchronously = true;
    }
    expect(thrownSynchronously).toBe(false);
    await expect(call).rejects.toThrow(/shut down|closed/i);
  });

  it('exposes the raw grpc-js client (callback API)', async () => {
    const client = newClient();
    const response = await new Promise((resolve, reject) =>
      client.raw.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' }, (error, value) =>
        error ? reject(error) : resolve(value),
      ),
    );
    expect(response).toEqual({ interfaceName: 'nodenet0' });
  });

  it('reports UNAVAILABLE for a socket nobody listens on', async () => {
    const client = createNetworkClient(`unix://${join(dir, 'absent.sock')}`);
    clients.push(client);
    await expectServiceError(client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { timeoutMs: 5_000 }), status.UNAVAILABLE);
  });
});

describe('createNetworkClient over TCP', () => {
  const fake = new FakeNetwork();
  let server: Server;
  let port: number;
  const ca = fixture('ca.crt');
  const clientCert = fixture('client.crt');
  const clientKey = fixture('client.key');
  const clients: NetworkApiClient[] = [];
  const track = (client: NetworkApiClient): NetworkApiClient => (clients.push(client), client);

  beforeAll(async () => {
    // Mutual TLS, like a daemon whose config has tls: { cert, key, ca }.
    const credentials = ServerCredentials.createSsl(ca, [{ cert_chain: fixture('server.crt'), private_key: fixture('server.key') }], true);
    ({ server, port } = await startServer(fake, '127.0.0.1:0', credentials));
  });

  afterAll(() => {
    for (const client of clients) client.close();
    server?.forceShutdown();
  });

  it('refuses a TCP target without tls or insecure, and inconsistent tls options', () => {
    expect(() => createNetworkClient(`127.0.0.1:${port}`)).toThrow(/TCP: pass tls/);
    expect(() => createNetworkClient(`127.0.0.1:${port}`, { tls: { ca, cert: clientCert } })).toThrow(/cert and tls.key go together/);
    expect(() => createNetworkClient(`127.0.0.1:${port}`, { tls: { ca }, insecure: true })).toThrow(/either tls or insecure/);
    expect(() => createNetworkClient('')).toThrow(/target must be/);
  });

  it('calls with mutual TLS (PEM as Buffer or string)', async () => {
    const client = track(createNetworkClient(`127.0.0.1:${port}`, { tls: { ca: ca.toString(), cert: clientCert, key: clientKey } }));
    await expect(client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' })).resolves.toEqual({});
  });

  it('verifies the server name (serverName overrides the target host)', async () => {
    const client = track(
      createNetworkClient(`127.0.0.1:${port}`, { tls: { ca, cert: clientCert, key: clientKey, serverName: 'localhost' } }),
    );
    await expect(client.deleteInterface({ interfaceName: 'nni-0a1b2c3d' })).resolves.toEqual({});
    const wrongName = track(
      createNetworkClient(`127.0.0.1:${port}`, { tls: { ca, cert: clientCert, key: clientKey, serverName: 'not-the-daemon' } }),
    );
    await expectServiceError(wrongName.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { timeoutMs: 5_000 }), status.UNAVAILABLE);
  });

  it('fails without a client certificate or in plaintext against a TLS daemon', async () => {
    fake.received.length = 0;
    const noCert = track(createNetworkClient(`127.0.0.1:${port}`, { tls: { ca } }));
    await expectServiceError(noCert.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { timeoutMs: 5_000 }), status.UNAVAILABLE);
    const plaintext = track(createNetworkClient(`127.0.0.1:${port}`, { insecure: true }));
    await expectServiceError(plaintext.deleteInterface({ interfaceName: 'nni-0a1b2c3d' }, { timeoutMs: 5_000 }), status.UNAVAILABLE);
    expect(fake.received).toEqual([]);
  });
});
