import {
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  Metadata,
  type ServiceError,
  credentials,
  status,
} from '@grpc/grpc-js';
import {
  CreateContainerNetworkInterfaceRequest,
  type CreateContainerNetworkInterfaceResponse,
  CreateInterfaceRequest,
  type CreateInterfaceResponse,
  type DeepPartial,
  DeleteInterfaceRequest,
  Empty,
  type InspectResponse,
  type ListPeersResponse,
  NetworkAdminClient,
  NetworkClient,
  Peer,
  RemovePeerRequest,
  InspectRequest,
} from './gen/network.js';

/** TLS material as PEM (a string or a Buffer holding the PEM text, as in node:tls; not file names). */
export interface NetworkClientTlsOptions {
  /** CA certificate(s) that signed the daemon's certificate; default: the system's roots. */
  ca?: Buffer | string;
  /** Client certificate chain, for a daemon that requires client certificates (its config has `tls.ca`). Needs `key`. */
  cert?: Buffer | string;
  /** Private key of `cert`. */
  key?: Buffer | string;
  /** Verify the daemon's certificate against this name instead of the target's host (e.g. target 127.0.0.1:7443, certificate for "localhost"). */
  serverName?: string;
}

export interface CreateNetworkClientOptions {
  /** Connect with TLS. Required for a `host:port` target unless `insecure` is true; optional for `unix://`. */
  tls?: NetworkClientTlsOptions;
  /** Allow plaintext to a `host:port` target (the daemon must be configured with `insecure: true`). */
  insecure?: boolean;
  /** Extra grpc-js channel options (e.g. keepalive settings). */
  channelOptions?: ChannelOptions;
}

/** Per-call options of the promise-based client. */
export interface NetworkCallOptions {
  /** Request metadata: a grpc-js Metadata or plain ASCII key/value pairs. */
  metadata?: Metadata | Record<string, string>;
  /** Absolute deadline (a Date or milliseconds since the epoch); the call fails with DEADLINE_EXCEEDED after it. */
  deadline?: Date | number;
  /** Relative deadline in milliseconds; the earlier of `deadline` and `timeoutMs` wins. */
  timeoutMs?: number;
  /** Cancels the call (it then fails with CANCELLED). */
  signal?: AbortSignal;
}

/**
 * The nodenet API with promises. Requests are partial messages (absent fields take their proto defaults, so
 * `{ ipAddress: '198.19.1.2' }` is a complete CreateInterfaceRequest). A failed call rejects with the grpc-js
 * ServiceError: `code` is the gRPC status (`status.INVALID_ARGUMENT`, ...), `details` the daemon's message.
 */
export interface NetworkApiClient {
  createContainerNetworkInterface(
    request: DeepPartial<CreateContainerNetworkInterfaceRequest>,
    options?: NetworkCallOptions,
  ): Promise<CreateContainerNetworkInterfaceResponse>;
  createInterface(request: DeepPartial<CreateInterfaceRequest>, options?: NetworkCallOptions): Promise<CreateInterfaceResponse>;
  deleteInterface(request: DeepPartial<DeleteInterfaceRequest>, options?: NetworkCallOptions): Promise<Empty>;
  /** Resolves once the channel is connected; rejects if that has not happened by `deadline`. */
  waitForReady(deadline: Date | number): Promise<void>;
  /** Closes the channel; calls made afterwards reject. */
  close(): void;
  /** The underlying ts-proto/grpc-js client (callback API), e.g. for calls with other options. */
  readonly raw: NetworkClient;
}

/** True if `error` is a gRPC call error (optionally: with status `code`). */
export function isServiceError(error: unknown, code?: status): error is ServiceError {
  if (!(error instanceof Error)) return false;
  const errorCode = (error as Partial<ServiceError>).code;
  return typeof errorCode === 'number' && (code === undefined || errorCode === code);
}

function toBuffer(pem: Buffer | string): Buffer {
  return typeof pem === 'string' ? Buffer.from(pem) : pem;
}

function channelCredentials(target: string, options: CreateNetworkClientOptions): ChannelCredentials {
  const { tls, insecure } = options;
  if (tls !== undefined) {
    if (insecure === true) throw new Error('createNetworkClient: pass either tls or insecure: true, not both');
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error('createNetworkClient: tls.cert and tls.key go together: pass both for a client certificate, or neither');
    }
    return credentials.createSsl(
      tls.ca === undefined ? null : toBuffer(tls.ca),
      tls.key === undefined ? null : toBuffer(tls.key),
      tls.cert === undefined ? null : toBuffer(tls.cert),
    );
  }
  // A unix socket is protected by its file mode (0600); TCP is plaintext only when asked for, as on the daemon.
  if (!target.startsWith('unix:') && insecure !== true) {
    throw new Error(
      `createNetworkClient: target ${target} is TCP: pass tls: { ca, cert?, key? }, or insecure: true for a daemon configured with insecure: true`,
    );
  }
  return credentials.createInsecure();
}

function toMetadata(metadata: NetworkCallOptions['metadata']): Metadata {
  if (metadata instanceof Metadata) return metadata;
  const result = new Metadata();
  for (const [key, value] of Object.entries(metadata ?? {})) result.set(key, value);
  return result;
}

function toCallOptions(options: NetworkCallOptions): Partial<GrpcCallOptions> {
  const deadlines: number[] = [];
  if (options.deadline !== undefined) deadlines.push(options.deadline instanceof Date ? options.deadline.getTime() : options.deadline);
  if (options.timeoutMs !== undefined) deadlines.push(Date.now() + options.timeoutMs);
  return deadlines.length === 0 ? {} : { deadline: Math.min(...deadlines) };
}

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

function callUnary<Request, Response>(
  method: UnaryMethod<Request, Response>,
  request: Request,
  options: NetworkCallOptions = {},
): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    if (options.signal?.aborted) {
      // The same shape grpc-js gives a call cancelled in flight, so callers handle one kind of error.
      const details = 'Cancelled on client before the call started';
      const error: ServiceError = Object.assign(new Error(`${status.CANCELLED} CANCELLED: ${details}`), {
        code: status.CANCELLED,
        details,
        metadata: new Metadata(),
      });
      reject(error);
      return;
    }
    let call: ClientUnaryCall;
    try {
      // grpc-js throws synchronously for e.g. a closed channel: turn that into a rejection too.
      call = method(request, toMetadata(options.metadata), toCallOptions(options), (error, response) => {
        options.signal?.removeEventListener('abort', cancel);
        if (error) reject(error);
        else resolve(response);
      });
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    function cancel(): void {
      call.cancel();
    }
    options.signal?.addEventListener('abort', cancel, { once: true });
  });
}

/**
 * A promise-based client of the nodenet daemon. `target`: `unix:///run/nodenet/nodenet.sock` or `host:port`
 * (`host:port` needs `tls`, or `insecure: true`). The channel connects lazily, on the first call.
 */
export function createNetworkClient(target: string, options: CreateNetworkClientOptions = {}): NetworkApiClient {
  if (typeof target !== 'string' || target.trim() === '') {
    throw new Error('createNetworkClient: target must be unix:///path/to.sock or host:port');
  }
  const channelOptions: ChannelOptions = { ...options.channelOptions };
  const serverName = options.tls?.serverName;
  if (serverName !== undefined) {
    channelOptions['grpc.ssl_target_name_override'] = serverName;
    channelOptions['grpc.default_authority'] = serverName;
  }
  const raw = new NetworkClient(target, channelCredentials(target, options), channelOptions);
  return {
    raw,
    createContainerNetworkInterface: (request, callOptions) =>
      callUnary(raw.createContainerNetworkInterface.bind(raw), CreateContainerNetworkInterfaceRequest.fromPartial(request), callOptions),
    createInterface: (request, callOptions) =>
      callUnary(raw.createInterface.bind(raw), CreateInterfaceRequest.fromPartial(request), callOptions),
    deleteInterface: (request, callOptions) =>
      callUnary(raw.deleteInterface.bind(raw), DeleteInterfaceRequest.fromPartial(request), callOptions),
    waitForReady: (deadline) =>
      new Promise<void>((resolve, reject) => raw.waitForReady(deadline, (error) => (error ? reject(error) : resolve()))),
    close: () => raw.close(),
  };
}

/** A promise-based client of the daemon's `network.NetworkAdmin` extension service. */
export interface NetworkAdminApiClient {
  inspect(options?: NetworkCallOptions): Promise<InspectResponse>;
  addPeer(peer: DeepPartial<Peer>, options?: NetworkCallOptions): Promise<Empty>;
  removePeer(request: DeepPartial<RemovePeerRequest>, options?: NetworkCallOptions): Promise<Empty>;
  listPeers(options?: NetworkCallOptions): Promise<ListPeersResponse>;
  close(): void;
  readonly raw: NetworkAdminClient;
}

/** Like createNetworkClient, for the admin service (same target and options). */
export function createNetworkAdminClient(target: string, options: CreateNetworkClientOptions = {}): NetworkAdminApiClient {
  if (typeof target !== 'string' || target.trim() === '') {
    throw new Error('createNetworkAdminClient: target must be unix:///path/to.sock or host:port');
  }
  const channelOptions: ChannelOptions = { ...options.channelOptions };
  if (options.tls?.serverName !== undefined) {
    channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
    channelOptions['grpc.default_authority'] = options.tls.serverName;
  }
  const raw = new NetworkAdminClient(target, channelCredentials(target, options), channelOptions);
  return {
    raw,
    inspect: (callOptions) => callUnary(raw.inspect.bind(raw), InspectRequest.fromPartial({}), callOptions),
    addPeer: (peer, callOptions) => callUnary(raw.addPeer.bind(raw), Peer.fromPartial(peer), callOptions),
    removePeer: (request, callOptions) => callUnary(raw.removePeer.bind(raw), RemovePeerRequest.fromPartial(request), callOptions),
    listPeers: (callOptions) => callUnary(raw.listPeers.bind(raw), Empty.fromPartial({}), callOptions),
    close: () => raw.close(),
  };
}
