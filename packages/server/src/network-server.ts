/**
 * The gRPC face of NodeNetwork: maps ts-proto messages to core's inputs and results back, and wraps every
 * call with a request id, a log line (method, code, duration) and the one error mapping of grpc-errors.ts.
 */
import { randomUUID } from 'node:crypto';
import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  InterfaceKind,
  Protocol,
  type CreateContainerNetworkInterfaceRequest,
  type CreateContainerNetworkInterfaceResponse,
  type CreateInterfaceRequest,
  type CreateInterfaceResponse,
  type DeleteInterfaceRequest,
  type Empty,
  type NetworkServer,
  type PortMapping,
} from '@nodenet/api';
import { InvalidArgumentError, type CreateInterfaceInput, type InstanceKind, type NodeNetwork, type PortMappingInput } from '@nodenet/core';
import { toGrpcFailure, toServiceError } from './grpc-errors.js';
import { requestContext, type DaemonLogger } from './logger.js';

export const REQUEST_ID_HEADER = 'x-request-id';

/** A client's request id is used as given when it is short printable ASCII; otherwise the daemon makes one. */
const REQUEST_ID_RE = /^[\x21-\x7e]{1,128}$/;

export function requestIdOf(metadata: Metadata): string {
  const given = metadata.get(REQUEST_ID_HEADER)[0];
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
}

export function kindOf(kind: InterfaceKind | undefined): InstanceKind | undefined {
  switch (kind) {
    case undefined:
      return undefined;
    case InterfaceKind.VETH:
      return 'veth';
    case InterfaceKind.TAP:
      return 'tap';
    default:
      throw new InvalidArgumentError('kind', `${String(kind)} is not an InterfaceKind: use VETH (0) or TAP (1)`);
  }
}

export function protocolOf(protocol: Protocol, field: string): 'tcp' | 'udp' | 'both' {
  switch (protocol) {
    case Protocol.TCP_AND_UDP:
      return 'both';
    case Protocol.TCP:
      return 'tcp';
    case Protocol.UDP:
      return 'udp';
    default:
      throw new InvalidArgumentError(field, `${String(protocol)} is not a Protocol: use TCP_AND_UDP (0), TCP (1) or UDP (2)`);
  }
}

export function toCreateInterfaceInput(req: CreateInterfaceRequest): CreateInterfaceInput {
  const portMappings: PortMappingInput[] = (req.portMappings ?? []).map((m: PortMapping, i) => ({
    hostPort: m.hostPort,
    instancePort: m.instancePort,
    protocol: protocolOf(m.protocol, `port_mappings[${i}].protocol`),
    ...(m.hostAddress !== undefined ? { hostAddress: m.hostAddress } : {}),
  }));
  const kind = kindOf(req.kind);
  return {
    ipAddress: req.ipAddress,
    ports: req.ports ?? [],
    portMappings,
    ...(kind !== undefined ? { kind } : {}),
    ...(req.netns !== undefined ? { netns: req.netns } : {}),
    ...(req.ifname !== undefined ? { ifname: req.ifname } : {}),
    ...(req.ipv6Address !== undefined ? { ipv6Address: req.ipv6Address } : {}),
  };
}

/** Counts calls being served, so the shutdown can say how many it waits for. */
export class InFlight {
  private count = 0;
  get size(): number {
    return this.count;
  }
  enter(): void {
    this.count++;
  }
  leave(): void {
    this.count--;
  }
}

/** Told of every method served and every call answered (metrics.ts); must not throw. */
export interface RpcObserver {
  rpcDeclared(method: string): void;
  /** `code`: the gRPC status name (OK, INVALID_ARGUMENT, ...). */
  rpcDone(method: string, code: string, seconds: number): void;
}

/** Wraps a handler with the request id, the log line and the error mapping every RPC gets. */
export function unaryHandlers(logger: DaemonLogger, inFlight: InFlight, observer?: RpcObserver) {
  const rpcLogger = logger.child({ component: 'rpc' });
  // `signal` aborts when the client cancels or the deadline passes: a create not yet committed then rolls back.
  return function unary<Req, Res>(method: string, handle: (req: Req, signal: AbortSignal) => Promise<Res>) {
    observer?.rpcDeclared(method);
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const started = process.hrtime.bigint();
      const reqId = requestIdOf(call.metadata);
      // The request id goes back in the response headers, sent together with the response: headers sent
      // at once would be a frame of their own and wake the client one more time per call.
      const echo = new Metadata();
      echo.set(REQUEST_ID_HEADER, reqId);
      const cancelled = new AbortController();
      let replied = false;
      call.once('cancelled', () => {
        if (replied) return; // grpc-js reports every call as cancelled once it has ended
        cancelled.abort();
        rpcLogger.info(
          { event: 'cancelled', method },
          'the client cancelled the call or its deadline passed: work not yet committed rolls back',
        );
      });
      inFlight.enter();
      void requestContext.run({ reqId, method }, async () => {
        rpcLogger.debug({ method, peer: call.getPeer() }, 'request received');
        const durationMs = () => Number(process.hrtime.bigint() - started) / 1e6;
        const replyTo = async (request: Req): Promise<Parameters<sendUnaryData<Res>>> => {
          try {
            const response = await handle(request, cancelled.signal);
            const ms = durationMs();
            rpcLogger.info({ method, code: 'OK', durationMs: round(ms) }, 'rpc');
            observer?.rpcDone(method, 'OK', ms / 1000);
            return [null, response];
          } catch (e) {
            const failure = toGrpcFailure(e, method);
            const level = failure.code === status.INTERNAL ? 'error' : 'info';
            const ms = durationMs();
            rpcLogger[level]({ method, code: failure.errorCode, durationMs: round(ms), err: failure.details }, 'rpc');
            observer?.rpcDone(method, status[failure.code], ms / 1000);
            return [toServiceError(failure)];
          }
        };
        try {
          const reply = await replyTo(call.request);
          // Only now, whatever the outcome, so the headers leave with the reply (see above).
          call.sendMetadata(echo);
          replied = true;
          callback(...reply);
        } finally {
          inFlight.leave();
        }
      });
    };
  };
}

export function createNetworkServer(
  network: NodeNetwork,
  logger: DaemonLogger,
  inFlight = new InFlight(),
  observer?: RpcObserver,
): NetworkServer {
  const unary = unaryHandlers(logger, inFlight, observer);

  return {
    createContainerNetworkInterface: unary(
      'CreateContainerNetworkInterface',
      async (req: CreateContainerNetworkInterfaceRequest, signal): Promise<CreateContainerNetworkInterfaceResponse> => {
        const { interfaceName } = await network.createContainerNetworkInterface(
          {
            ipAddress: req.ipAddress,
            subNetwork: req.subNetwork,
            ...(req.ipv6Address !== undefined ? { ipv6Address: req.ipv6Address } : {}),
            ...(req.ipv6SubNetwork !== undefined ? { ipv6SubNetwork: req.ipv6SubNetwork } : {}),
          },
          { signal },
        );
        return { interfaceName };
      },
    ),
    createInterface: unary('CreateInterface', async (req: CreateInterfaceRequest, signal): Promise<CreateInterfaceResponse> => {
      const r = await network.createInterface(toCreateInterfaceInput(req), { signal });
      return {
        interfaceName: r.interfaceName,
        hostInterfaceName: r.hostInterfaceName,
        macAddress: r.macAddress,
        gateway: r.gateway,
        prefixLength: r.prefixLength,
        mtu: r.mtu,
        ...(r.ipv6Gateway !== undefined ? { ipv6Gateway: r.ipv6Gateway, ipv6PrefixLength: r.ipv6PrefixLength } : {}),
      };
    }),
    deleteInterface: unary('DeleteInterface', async (req: DeleteInterfaceRequest): Promise<Empty> => {
      await network.deleteInterface({ interfaceName: req.interfaceName });
      return {};
    }),
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
