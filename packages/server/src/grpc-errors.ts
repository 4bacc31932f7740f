/**
 * The edge between core's errors and gRPC: ONE table maps every NodenetError code to a gRPC status.
 * Anything that is not a NodenetError is INTERNAL with a message naming the step; never UNKNOWN.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { clientError, type ErrorCode } from '@nodenet/core';

export const GRPC_STATUS_OF: Readonly<Record<ErrorCode, status>> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  NOT_FOUND: status.NOT_FOUND,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAVAILABLE: status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  INTERNAL: status.INTERNAL,
};

export interface GrpcFailure {
  readonly code: status;
  /** The message for the client: what was wrong and what to do. */
  readonly details: string;
  /** core's code name (for logs). */
  readonly errorCode: ErrorCode;
}

/**
 * Maps anything thrown while serving `step` (e.g. the RPC's name) to a gRPC status and message; a kernel
 * refusal for want of a capability is FAILED_PRECONDITION naming it (core's clientError).
 */
export function toGrpcFailure(e: unknown, step: string): GrpcFailure {
  const err = clientError(e, step);
  return { code: GRPC_STATUS_OF[err.code] ?? status.INTERNAL, details: err.message, errorCode: err.code };
}

/** The error object grpc-js's unary callback takes. */
export function toServiceError(failure: GrpcFailure, metadata?: Metadata): Partial<ServiceError> {
  return { code: failure.code, details: failure.details, metadata: metadata ?? new Metadata() };
}
