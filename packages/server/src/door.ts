/**
 * The API's door: every call of Network and NetworkAdmin passes here before its handler runs. In order:
 * the caller's identity against `tls.allow` (PERMISSION_DENIED naming it), the request's bytes (a message
 * that does not decode is INVALID_ARGUMENT, not grpc-js's INTERNAL), and the number of calls in flight
 * (past `limits.maxInFlight` a call is refused at once with RESOURCE_EXHAUSTED: a flood costs a status
 * each, never a queue in memory). The message size limit is grpc-js's own (serverOptions). Health and
 * reflection do not pass here: they stay open to every client the transport admits.
 */
import {
  Metadata,
  status,
  type sendUnaryData,
  type ServerOptions,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { checkAccess, type AllowList, type GuardedService } from './access.js';
import type { Limits } from './door-config.js';
import type { DaemonLogger } from './logger.js';
import type { InFlight } from './network-server.js';

export interface DoorOptions {
  /** `tls.allow` (only with mTLS). */
  readonly allow?: AllowList;
  readonly limits: Limits;
  /** The calls being served (the handlers count themselves in and out). */
  readonly inFlight: InFlight;
  readonly logger: DaemonLogger;
}

/** A request whose bytes did not decode: the handler is never called with it. */
class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** HTTP/2 streams one connection may hold open: far above maxInFlight, so excess calls get their status at once instead of waiting in the client for a stream. */
const MIN_STREAMS_PER_CONNECTION = 1024;

/** grpc-js server options for the limits: the largest message accepted and the streams per connection. */
export function serverOptions(limits: Limits): ServerOptions {
  return {
    'grpc.max_receive_message_length': limits.maxMessageBytes,
    'grpc.max_concurrent_streams': Math.max(MIN_STREAMS_PER_CONNECTION, 4 * limits.maxInFlight),
  };
}

export class Door {
  private readonly logger: DaemonLogger;
  private shed = 0;
  private lastShedLog = 0;

  constructor(private readonly options: DoorOptions) {
    this.logger = options.logger.child({ component: 'door' });
  }

  /** The service's definition and implementation with every unary method behind the door (pass both to server.addService). */
  guard(
    service: GuardedService,
    definition: ServiceDefinition,
    implementation: UntypedServiceImplementation,
  ): [ServiceDefinition, UntypedServiceImplementation] {
    const guardedDefinition: Record<string, ServiceDefinition[string]> = {};
    const guardedImplementation: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name];
      if (method.requestStream || method.responseStream || typeof handler !== 'function') {
        throw new Error(`${service}.${name}: the door guards unary methods only`);
      }
      const decode: (bytes: Buffer) => unknown = method.requestDeserialize;
      guardedDefinition[name] = {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return decode(bytes);
          } catch (e) {
            return new MalformedRequest((e as Error).message);
          }
        },
      };
      const unary = handler as (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;
      const methodName = method.path.slice(method.path.lastIndexOf('/') + 1);
      guardedImplementation[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const refusal = this.check(service, methodName, call);
        if (refusal) callback({ code: refusal.code, details: refusal.details, metadata: new Metadata() });
        else unary(call, callback);
      };
    }
    return [guardedDefinition as ServiceDefinition, guardedImplementation];
  }

  private check(
    service: GuardedService,
    method: string,
    call: ServerUnaryCall<unknown, unknown>,
  ): { code: status; details: string } | undefined {
    const access = checkAccess(this.options.allow, service, call.getAuthContext());
    if (!access.admitted) {
      this.logger.warn(
        { event: 'refused', method, code: 'PERMISSION_DENIED', peer: call.getPeer(), err: access.message },
        'call refused: identity not allowed',
      );
      return { code: status.PERMISSION_DENIED, details: access.message };
    }
    if (call.request instanceof MalformedRequest) {
      const details = `the request is not a valid ${method} request message (${call.request.reason}): send a message encoded from network.proto`;
      this.logger.info({ event: 'refused', method, code: 'INVALID_ARGUMENT', err: details }, 'call refused: malformed request');
      return { code: status.INVALID_ARGUMENT, details };
    }
    const { maxInFlight } = this.options.limits;
    if (this.options.inFlight.size >= maxInFlight) {
      this.noteShed(method);
      return {
        code: status.RESOURCE_EXHAUSTED,
        details: `the daemon is serving ${maxInFlight} calls, its limit (limits.maxInFlight): retry after a short wait`,
      };
    }
    if (call.cancelled) return { code: status.CANCELLED, details: 'the call was cancelled before it started' };
    return undefined;
  }

  /** Counts refusals for load; logs at most one line a second (a flood must not become a flood of log lines). */
  private noteShed(method: string): void {
    this.shed++;
    const now = Date.now();
    if (now - this.lastShedLog < 1000) return;
    this.lastShedLog = now;
    this.logger.warn(
      { event: 'shed', method, code: 'RESOURCE_EXHAUSTED', shedTotal: this.shed, maxInFlight: this.options.limits.maxInFlight },
      `refusing calls beyond limits.maxInFlight (${this.shed} so far)`,
    );
  }
}
