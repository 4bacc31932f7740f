import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, stateWriteError } from '@nodenet/core';

const fsError = (code: string) => Object.assign(new Error(`${code}: something, open '/x'`), { code, errno: -1, syscall: 'open' });

describe('stateWriteError: what a refused write of a state file tells the client', () => {
  it.each([
    ['EROFS', 'UNAVAILABLE', /read-only .*remount it read-write/],
    ['EACCES', 'UNAVAILABLE', /may not write .*give the daemon \(root\) write access/],
    ['EPERM', 'UNAVAILABLE', /may not write .*write access/],
    ['ENOSPC', 'RESOURCE_EXHAUSTED', /full \(no space or no inodes left\).*free space on it/],
    ['EDQUOT', 'RESOURCE_EXHAUSTED', /quota .*raise the quota or free space/],
  ])('%s is %s, naming the step, the errno, the file and the fix', (errno, code, fix) => {
    const err = stateWriteError(fsError(errno), 'write the record of nni-1', '/var/lib/nodenet/instances/nni-1.json');
    expect(err.code).toBe(code);
    expect(err.message).toMatch(new RegExp(`^write the record of nni-1: .*\\(${errno} writing /var/lib/nodenet/instances/nni-1\\.json\\)`));
    expect(err.message).toMatch(fix);
    expect(err.message).toMatch(/then retry$/);
    expect((err as { cause?: unknown }).cause).toMatchObject({ code: errno });
  });

  it('any other failure is INTERNAL naming the step (an I/O error is not an operator fix)', () => {
    const err = stateWriteError(fsError('EIO'), 'write the CNI record', '/s/cni.json');
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toBe("write the CNI record: EIO: something, open '/x'");
    expect(stateWriteError('boom', 'x', '/p').code).toBe('INTERNAL');
  });

  it("keeps nodenet's own errors as they are", () => {
    const own = new FailedPreconditionError('state file is unreadable');
    expect(stateWriteError(own, 'x', '/p')).toBe(own);
  });
});
