import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
  type ErrorCode,
} from '@nodenet/core';
import { CommandError } from '@nodenet/sys';
import { GRPC_STATUS_OF, toGrpcFailure, toServiceError } from '../src/grpc-errors.js';

describe('the error table', () => {
  const cases: [ErrorCode, Error, status][] = [
    ['INVALID_ARGUMENT', new InvalidArgumentError('ip_address', 'bad'), status.INVALID_ARGUMENT],
    ['FAILED_PRECONDITION', new FailedPreconditionError('no CNI'), status.FAILED_PRECONDITION],
    ['ALREADY_EXISTS', new AlreadyExistsError('taken'), status.ALREADY_EXISTS],
    ['NOT_FOUND', new NotFoundError('gone'), status.NOT_FOUND],
    ['PERMISSION_DENIED', new PermissionDeniedError('not ours'), status.PERMISSION_DENIED],
    ['UNAVAILABLE', new UnavailableError('ovs down'), status.UNAVAILABLE],
    ['RESOURCE_EXHAUSTED', new ResourceExhaustedError('state directory full'), status.RESOURCE_EXHAUSTED],
    ['INTERNAL', new InternalError('create veth pair', 'boom'), status.INTERNAL],
  ];

  it('covers every core error code exactly once', () => {
    expect(Object.keys(GRPC_STATUS_OF).sort()).toEqual(cases.map(([c]) => c).sort());
  });

  it.each(cases)('%s maps to the gRPC status of the same name, keeping the message', (code, err, expected) => {
    const f = toGrpcFailure(err, 'CreateInterface');
    expect(f.code).toBe(expected);
    expect(status[f.code]).toBe(code);
    expect(f.errorCode).toBe(code);
    expect(f.details).toBe(err.message);
  });

  it('keeps the field in INVALID_ARGUMENT messages and the step in INTERNAL ones', () => {
    expect(toGrpcFailure(new InvalidArgumentError('ports[1]', '0 is not a port'), 'X').details).toBe('ports[1]: 0 is not a port');
    expect(toGrpcFailure(new InternalError('create veth pair', 'RTNETLINK answers: File exists'), 'X').details).toBe(
      'create veth pair: RTNETLINK answers: File exists',
    );
  });

  it('a command failure from sys is INTERNAL naming its step and command', () => {
    const f = toGrpcFailure(
      new CommandError('add the bridge', 'ip link add nodenet0 type bridge', 2, 'RTNETLINK answers: Invalid argument'),
      'X',
    );
    expect(f.code).toBe(status.INTERNAL);
    expect(f.details).toContain('add the bridge: ip link add nodenet0 type bridge failed (exit 2): RTNETLINK answers: Invalid argument');
  });

  it('a kernel refusal for want of a capability is FAILED_PRECONDITION naming the capability and what to do', () => {
    const f = toGrpcFailure(
      new CommandError('add the bridge', 'ip link add nodenet0 type bridge', 2, 'RTNETLINK answers: Operation not permitted'),
      'X',
    );
    expect(f.code).toBe(status.FAILED_PRECONDITION);
    expect(f.details).toMatch(
      /^nodenetd lacks CAP_NET_ADMIN: add the bridge: ip link add nodenet0 type bridge failed \(exit 2\): RTNETLINK answers: Operation not permitted\. It needs CAP_NET_ADMIN for .*run it as root with CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE/,
    );
  });

  it('anything else is INTERNAL naming the step, never UNKNOWN', () => {
    for (const thrown of [new Error('kaput'), new TypeError('x is undefined'), 'a string', 42, undefined, null, { odd: true }]) {
      const f = toGrpcFailure(thrown, 'CreateInterface');
      expect(f.code).toBe(status.INTERNAL);
      expect(f.code).not.toBe(status.UNKNOWN);
      expect(f.details.startsWith('CreateInterface: ')).toBe(true);
    }
    expect(toGrpcFailure(new Error('kaput'), 'DeleteInterface').details).toBe('DeleteInterface: kaput');
  });

  it('builds the grpc-js error object', () => {
    const e = toServiceError(toGrpcFailure(new NotFoundError('no interface nni-00000000'), 'DeleteInterface'));
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.details).toBe('no interface nni-00000000');
    expect(e.metadata).toBeDefined();
  });
});
