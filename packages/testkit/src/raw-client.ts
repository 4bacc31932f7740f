/**
 * A gRPC client that sends request bytes as they are (a pass-through serializer) to any method of the
 * nodenet API, so tests can send mutated wire bytes, and that settles every call into its status instead
 * of throwing. Methods are named `Service/Method` (`Network/CreateInterface`, `NetworkAdmin/Inspect`).
 */
import * as grpc from '@grpc/grpc-js';
import { NetworkAdminService, NetworkService } from '@nodenet/api';

/** Every unary method of the API: name -> its definition (path, request encoder). */
export const API_METHODS: Readonly<
  Record<string, { readonly path: string; encode(request: never): Buffer; decode(bytes: Buffer): unknown }>
> = Object.fromEntries(
  (
    [
      ['Network', NetworkService],
      ['NetworkAdmin', NetworkAdminService],
    ] as const
  ).flatMap(([service, definition]) =>
    Object.values(
      definition as Record<string, { path: string; requestSerialize: (r: never) => Buffer; requestDeserialize: (b: Buffer) => unknown }>,
    ).map((m) => [
      `${service}/${m.path.slice(m.path.lastIndexOf('/') + 1)}`,
      { path: m.path, encode: m.requestSerialize, decode: m.requestDeserialize },
    ]),
  ),
);

export interface RawOutcome {
  readonly code: grpc.status;
  readonly codeName: string;
  readonly details: string;
  /** The response bytes of a call that succeeded. */
  readonly response?: Buffer;
}

export interface RawCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export class RawApiClient {
  private readonly client: grpc.Client;

  /** `credentials` default to insecure (a unix socket). */
  constructor(target: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(target, credentials, options);
  }

  /** Calls `method` (`Service/Method` or a full path) with `bytes` as the request message. */
  call(method: string, bytes: Uint8Array, options: RawCallOptions = {}): Promise<RawOutcome> {
    const path = API_METHODS[method]?.path ?? method;
    // grpc-js writes only Buffers (a plain Uint8Array, as ts-proto's encoders return, fails as INTERNAL "Failed to write message").
    const identity = (b: Uint8Array) => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    return new Promise((resolve) => {
      const call = this.client.makeUnaryRequest(
        path,
        identity,
        identity,
        bytes,
        new grpc.Metadata(),
        options.timeoutMs !== undefined ? { deadline: Date.now() + options.timeoutMs } : {},
        (err, response) => {
          if (err) resolve({ code: err.code, codeName: grpc.status[err.code] ?? String(err.code), details: err.details });
          else resolve({ code: grpc.status.OK, codeName: 'OK', details: '', ...(response ? { response: response } : {}) });
        },
      );
      options.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
  }

  close(): void {
    this.client.close();
  }
}
