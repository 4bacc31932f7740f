// nodenet's failures as CNI error objects: the table's codes, and a kernel refusal for want of a capability.
import { describe, expect, it } from 'vitest';
import { AlreadyExistsError, InternalError } from '@nodenet/core';
import { asCniError, CNI_CODES, CniError } from '../src/index.js';

describe('asCniError', () => {
  it('a refusal for want of a capability is code 103 naming the capability and what to do', () => {
    const e = asCniError(
      new InternalError(
        'create veth pair nnh-1/nni-1 in namespace /run/netns/c1',
        'perl netns-netlink.pl failed: setting the network namespace "/run/netns/c1" failed: Operation not permitted',
      ),
      'attach the container',
    );
    expect(e.code).toBe(CNI_CODES.missingCapability);
    expect(e.code).toBe(103);
    expect(e.msg).toMatch(
      /^nodenetd lacks CAP_SYS_ADMIN: create veth pair .*: Operation not permitted\. It needs CAP_SYS_ADMIN for entering/,
    );
    expect(e.msg).toContain('run it as root with CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE');
    expect(e.details).toBe('nodenet FAILED_PRECONDITION (CAP_SYS_ADMIN) while trying to attach the container');
    expect(asCniError(Object.assign(new Error('write'), { code: 'EPERM' }), 'create the CNI').code).toBe(103);
  });

  it("nodenet's other errors by the table; anything else is 999 with its message; a CniError stays", () => {
    expect(asCniError(new AlreadyExistsError('198.19.1.2 is already used'), 'x')).toMatchObject({ code: 100 });
    expect(asCniError(new InternalError('create bridge', 'RTNETLINK answers: File exists'), 'x')).toMatchObject({ code: 999 });
    expect(asCniError(new Error('kaput'), 'attach')).toMatchObject({ code: 999, msg: 'attach: kaput' });
    const own = new CniError(7, 'bad');
    expect(asCniError(own, 'x')).toBe(own);
  });
});
