/**
 * CNI error objects (SPEC "Error": code, msg, details) and the one table mapping nodenet's error codes to
 * the spec's well-known codes, so a runtime sees the same classes of failure as from any other plugin.
 */
import { clientError, isNodenetError, MissingCapabilityError, type ErrorCode } from '@nodenet/core';

/** The spec's well-known error codes, and nodenet's own (100 and up are plugin-specific). */
export const CNI_CODES = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidNetworkConfig: 7,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  /** The address or a host port asked for is taken (nodenet's ALREADY_EXISTS). */
  alreadyInUse: 100,
  /** The node cannot do it as things are (nodenet's FAILED_PRECONDITION: a reserved port, an attachment that exists, ...). */
  failedPrecondition: 101,
  /** CHECK found the attachment differing from what ADD made. */
  drifted: 102,
  /** The kernel refused a step for want of a capability of nodenetd (the message names it and what to do). */
  missingCapability: 103,
  internal: 999,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    readonly msg: string,
    readonly details?: string,
  ) {
    super(msg);
    this.name = 'CniError';
  }

  toJSON(): { code: number; msg: string; details?: string } {
    return { code: this.code, msg: this.msg, ...(this.details ? { details: this.details } : {}) };
  }
}

const CODE_OF: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: CNI_CODES.invalidNetworkConfig,
  FAILED_PRECONDITION: CNI_CODES.failedPrecondition,
  ALREADY_EXISTS: CNI_CODES.alreadyInUse,
  NOT_FOUND: CNI_CODES.unknownContainer,
  PERMISSION_DENIED: CNI_CODES.failedPrecondition,
  UNAVAILABLE: CNI_CODES.tryAgainLater,
  RESOURCE_EXHAUSTED: CNI_CODES.tryAgainLater,
  INTERNAL: CNI_CODES.internal,
};

/**
 * Any failure as a CNI error: a kernel refusal for want of a capability as 103 naming it (core's clientError,
 * as the gRPC API's FAILED_PRECONDITION), nodenet's errors by the table above, anything else as 999 with its message.
 */
export function asCniError(e: unknown, doing: string): CniError {
  if (e instanceof CniError) return e;
  const err = clientError(e, doing);
  if (err instanceof MissingCapabilityError) {
    return new CniError(CNI_CODES.missingCapability, err.message, `nodenet ${err.code} (${err.capability}) while trying to ${doing}`);
  }
  if (isNodenetError(e)) return new CniError(CODE_OF[e.code], e.message, `nodenet ${e.code} while trying to ${doing}`);
  return new CniError(CNI_CODES.internal, `${doing}: ${e instanceof Error ? e.message : String(e)}`);
}
