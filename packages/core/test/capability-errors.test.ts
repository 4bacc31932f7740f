// Kernel refusals as the capability the daemon lacks (the messages are what the daemon met without each
// capability, see packages/server/test/capabilities.int.test.ts), and what is left alone.
import { describe, expect, it } from 'vitest';
import {
  clientError,
  FailedPreconditionError,
  InternalError,
  MissingCapabilityError,
  missingCapabilityOf,
  NotFoundError,
  UnavailableError,
} from '../src/index.js';

/** A Node.js system error as fs throws it. */
function errno(code: string, syscall: string, path: string): Error {
  return Object.assign(new Error(`${code}: permission denied, ${syscall} '${path}'`), { code, syscall, path });
}

describe('missingCapabilityOf', () => {
  it.each([
    [
      'a netlink refusal',
      new InternalError('create bridge nodenet0', 'ip -batch - failed: RTNETLINK answers: Operation not permitted'),
      'CAP_NET_ADMIN',
    ],
    [
      'a netlink refusal in a step that names a namespace',
      new InternalError('create veth pair a/b in namespace x', 'ip -n x -batch - failed: RTNETLINK answers: Operation not permitted'),
      'CAP_NET_ADMIN',
    ],
    [
      "the namespace helper's setns",
      new InternalError(
        'create veth pair nnh-1/nni-1 in namespace nnt-1',
        'perl netns-netlink.pl failed: setting the network namespace "/run/netns/nnt-1" failed: Operation not permitted',
      ),
      'CAP_SYS_ADMIN',
    ],
    [
      "nsenter's setns",
      new InternalError('configure', "nsenter: reassociate to namespace 'ns/net' failed: Operation not permitted"),
      'CAP_SYS_ADMIN',
    ],
    ['ip netns exec mounting /sys', new InternalError('sysctl', 'mount of /sys failed: Operation not permitted'), 'CAP_SYS_ADMIN'],
    [
      "stat of another user's /proc/PID/ns/net",
      new InternalError('read the identity of namespace /proc/9/ns/net', 'stat failed', {
        cause: errno('EACCES', 'stat', '/proc/9/ns/net'),
      }),
      'CAP_SYS_PTRACE',
    ],
    [
      'the same, as text only',
      new InternalError('x', "stat /proc/9/ns/net failed: EACCES: permission denied, stat '/proc/9/ns/net'"),
      'CAP_SYS_PTRACE',
    ],
    ['a net sysctl write', errno('EACCES', 'open', '/proc/sys/net/ipv4/ip_forward'), 'CAP_NET_ADMIN'],
    [
      'nftables',
      new InternalError('install the packet-filter table', 'nft -f - failed: Error: Could not process rule: Operation not permitted'),
      'CAP_NET_ADMIN',
    ],
    ['a TAP', new InternalError('create tap', 'ioctl(TUNSETIFF): Operation not permitted'), 'CAP_NET_ADMIN'],
    ['a raw EPERM', Object.assign(new Error('x'), { code: 'EPERM' }), 'CAP_NET_ADMIN'],
  ])('%s: %s', (_what, e, capability) => {
    expect(missingCapabilityOf(e)).toBe(capability);
  });

  it.each([
    ['an unrelated INTERNAL', new InternalError('create bridge', 'RTNETLINK answers: File exists')],
    ['a permission error of a file that is no namespace or sysctl', errno('EACCES', 'open', '/var/lib/nodenet/cni.json')],
    ['a state directory the daemon may not write (already UNAVAILABLE)', new UnavailableError('record: EPERM writing /var/lib/nodenet')],
    ['IPv6 disabled in a namespace (already FAILED_PRECONDITION)', new FailedPreconditionError('Operation not permitted: enable IPv6')],
    ['a missing namespace', new NotFoundError('network namespace x does not exist')],
  ])('leaves alone %s', (_what, e) => {
    expect(missingCapabilityOf(e)).toBeUndefined();
  });
});

describe('clientError', () => {
  it('turns a refusal into FAILED_PRECONDITION naming the capability, what it is for and what to do; keeps the refused step', () => {
    const cause = new InternalError('create bridge nodenet0', 'ip -batch - failed: RTNETLINK answers: Operation not permitted');
    const e = clientError(cause, 'CreateContainerNetworkInterface');
    expect(e).toBeInstanceOf(MissingCapabilityError);
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect((e as MissingCapabilityError).capability).toBe('CAP_NET_ADMIN');
    expect(e.message).toBe(
      'nodenetd lacks CAP_NET_ADMIN: create bridge nodenet0: ip -batch - failed: RTNETLINK answers: Operation not permitted. ' +
        'It needs CAP_NET_ADMIN for links, addresses, routes, nftables, conntrack, net sysctls and TAP devices: run it as root with ' +
        'CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE (the packaged systemd unit grants them), or, if it has them, allow the ' +
        'operation in the security policy that refused it (AppArmor, SELinux, seccomp); then retry',
    );
    expect(e.cause).toBe(cause);
    // A thrown value that is no NodenetError is named by the step.
    expect(clientError(Object.assign(new Error('write failed'), { code: 'EPERM' }), 'set a sysctl').message).toContain(
      'nodenetd lacks CAP_NET_ADMIN: set a sysctl: write failed.',
    );
  });

  it('anything else is what asNodenetError makes of it', () => {
    const e = new NotFoundError('gone');
    expect(clientError(e, 'x')).toBe(e);
    expect(clientError(new Error('kaput'), 'DeleteInterface')).toMatchObject({ code: 'INTERNAL', message: 'DeleteInterface: kaput' });
  });
});
