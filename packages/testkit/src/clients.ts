/**
 * Clients for tests: the full API (`createNetworkClient` from @nodenet/api), a seed-only client built at
 * run time from seed.proto alone (as a user holding only the seed would), the gRPC health check, and
 * helpers that turn a failed call into `{ code, codeName, details }` so tests assert exact status codes.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createNetworkClient, seedProtoPath, type NetworkApiClient } from '@nodenet/api';

export { status } from '@grpc/grpc-js';

/** What a failed gRPC call tells the client. */
export interface RpcFailure {
  readonly code: grpc.status;
  /** The status's name, e.g. `ALREADY_EXISTS` (for readable assertion messages). */
  readonly codeName: string;
  readonly details: string;
}

export type RpcOutcome<T> = { readonly ok: true; readonly value: T } | ({ readonly ok: false } & RpcFailure);

export function statusName(code: number): string {
  return grpc.status[code] ?? `UNKNOWN_STATUS_${code}`;
}

function asFailure(e: unknown): RpcFailure {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'number') throw e; // not a gRPC status: a bug in the test or the kit, let it surface
  const details = (e as { details?: unknown }).details;
  return { code, codeName: statusName(code), details: typeof details === 'string' ? details : String((e as Error).message) };
}

/** Settles a call into `{ ok: true, value }` or `{ ok: false, code, codeName, details }`. */
export async function settle<T>(call: Promise<T>): Promise<RpcOutcome<T>> {
  try {
    return { ok: true, value: await call };
  } catch (e) {
    return { ok: false, ...asFailure(e) };
  }
}

/** The failure of a call that must fail; throws (naming the response) if it succeeded. */
export async function rpcError(call: Promise<unknown>): Promise<RpcFailure> {
  const outcome = await settle(call);
  if (outcome.ok) throw new Error(`expected the call to fail, but it succeeded with ${JSON.stringify(outcome.value)}`);
  const { code, codeName, details } = outcome;
  return { code, codeName, details };
}

/** The full API client for a daemon at `target` (`unix:///path` or, with `insecure`, `host:port`). */
export function connectNetwork(target: string, options: { insecure?: boolean } = {}): NetworkApiClient {
  return createNetworkClient(target, options.insecure ? { insecure: true } : {});
}

// ---------------------------------------------------------------------------------------------------
// The seed-only client

/** Messages as the seed writes them (field names as in seed.proto). */
export interface SeedCreateInterfaceRequest {
  ip_address?: string;
  ports?: number[];
}
export interface SeedCreateContainerNetworkInterfaceRequest {
  ip_address?: string;
  sub_network?: string;
}

/** The seed's three RPCs, with promises; failures reject with the grpc-js ServiceError. */
export interface SeedClient {
  createContainerNetworkInterface(request: SeedCreateContainerNetworkInterfaceRequest): Promise<{ interface_name: string }>;
  createInterface(request: SeedCreateInterfaceRequest): Promise<{ interface_name: string }>;
  deleteInterface(request: { interface_name?: string }): Promise<Record<string, never>>;
  close(): void;
}

type UnaryCallback<T> = (error: grpc.ServiceError | null, response: T) => void;
type CallbackClient = grpc.Client & Record<string, (request: unknown, callback: UnaryCallback<unknown>) => grpc.ClientUnaryCall>;

let seedConstructor: grpc.ServiceClientConstructor | undefined;

function seedServiceConstructor(): grpc.ServiceClientConstructor {
  if (!seedConstructor) {
    // keepCase: the seed's own field names; defaults: absent fields come back with their proto defaults.
    const definition = protoLoader.loadSync(seedProtoPath, { keepCase: true, defaults: true, enums: String, longs: Number });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as { network: { Network: grpc.ServiceClientConstructor } };
    seedConstructor = loaded.network.Network;
  }
  return seedConstructor;
}

function unary<T>(client: CallbackClient, method: string, request: unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fn = client[method];
    if (!fn) {
      reject(new Error(`the seed service has no method ${method}`));
      return;
    }
    fn.call(client, request, (error: grpc.ServiceError | null, response: unknown) => (error ? reject(error) : resolve(response as T)));
  });
}

/** A client that knows only the seed's proto (packages/api/proto/seed.proto). */
export function connectSeed(target: string): SeedClient {
  const Ctor = seedServiceConstructor();
  const client = new Ctor(target, grpc.credentials.createInsecure()) as unknown as CallbackClient;
  return {
    createContainerNetworkInterface: (request) => unary(client, 'CreateContainerNetworkInterface', request),
    createInterface: (request) => unary(client, 'CreateInterface', request),
    deleteInterface: (request) => unary(client, 'DeleteInterface', request),
    close: () => client.close(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Health

export const healthProtoPath: string = fileURLToPath(new URL('../proto/health.proto', import.meta.url));

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

let healthConstructor: grpc.ServiceClientConstructor | undefined;

function healthServiceConstructor(): grpc.ServiceClientConstructor {
  if (!healthConstructor) {
    const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, defaults: true, enums: String });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    healthConstructor = loaded.grpc.health.v1.Health;
  }
  return healthConstructor;
}

/** A grpc.health.v1 client; `check` rejects with the ServiceError when the call fails. */
export interface HealthClient {
  check(service?: string, timeoutMs?: number): Promise<ServingStatus>;
  close(): void;
}

export function connectHealth(target: string, options: { insecure?: boolean } = {}): HealthClient {
  void options; // plaintext for unix sockets and insecure TCP alike
  const Ctor = healthServiceConstructor();
  const client = new Ctor(target, grpc.credentials.createInsecure()) as unknown as CallbackClient;
  return {
    check: (service = '', timeoutMs = 2000) =>
      new Promise<ServingStatus>((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        (
          client.Check as unknown as (
            req: unknown,
            md: grpc.Metadata,
            opts: grpc.CallOptions,
            cb: UnaryCallback<{ status: ServingStatus }>,
          ) => void
        ).call(client, { service }, new grpc.Metadata(), { deadline }, (error, response) =>
          error ? reject(error) : resolve(response.status),
        );
      }),
    close: () => client.close(),
  };
}
