/**
 * The one error hierarchy of nodenet. Every failure that can reach a client is a NodenetError with a
 * stable string code; the server maps codes to gRPC status codes in one table at the edge.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'ALREADY_EXISTS'
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED'
  | 'UNAVAILABLE'
  | 'RESOURCE_EXHAUSTED'
  | 'INTERNAL';

export abstract class NodenetError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed; `field` names the offending field (e.g. `ip_address`, `ports[2]`). */
export class InvalidArgumentError extends NodenetError {
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

export class FailedPreconditionError extends NodenetError {
  readonly code = 'FAILED_PRECONDITION' as const;
}

export class AlreadyExistsError extends NodenetError {
  readonly code = 'ALREADY_EXISTS' as const;
}

export class NotFoundError extends NodenetError {
  readonly code = 'NOT_FOUND' as const;
}

export class PermissionDeniedError extends NodenetError {
  readonly code = 'PERMISSION_DENIED' as const;
}

/** A system component nodenet needs (a command, OVS, etcd) is missing or not reachable. */
export class UnavailableError extends NodenetError {
  readonly code = 'UNAVAILABLE' as const;
}

/** A resource of the node ran out (no space left for the daemon's records): free some, then retry. */
export class ResourceExhaustedError extends NodenetError {
  readonly code = 'RESOURCE_EXHAUSTED' as const;
}

/** Unexpected failure; `step` names what nodenet was doing (e.g. `create veth pair`). */
export class InternalError extends NodenetError {
  readonly code = 'INTERNAL' as const;
  constructor(
    readonly step: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${step}: ${message}`, options);
  }
}

/**
 * Several steps of a teardown failed: every step was tried and every failure is listed (netavark's error
 * list), rather than the first one hiding the rest. The status is the first failure's.
 */
export class TeardownError extends NodenetError {
  readonly code: ErrorCode;
  constructor(
    readonly step: string,
    readonly failures: readonly NodenetError[],
  ) {
    super(`${step}: ${failures.length} steps failed: ${failures.map((f) => f.message).join('; ')}`, { cause: failures[0] });
    this.code = failures[0]?.code ?? 'INTERNAL';
  }
}

export function isNodenetError(e: unknown): e is NodenetError {
  return e instanceof NodenetError;
}

/** Wraps anything thrown into a NodenetError, naming the step for unexpected failures. */
export function asNodenetError(e: unknown, step: string): NodenetError {
  if (e instanceof NodenetError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new InternalError(step, message, { cause: e });
}
