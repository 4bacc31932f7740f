import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { nextName, ownerPidOf, isPidAlive } from '../src/scope.js';
import { parsePingSummary, pingArgs, randomPayload } from '../src/traffic.js';
import { withoutVolatile, summarizeLink } from '../src/inspect.js';
import { rpcError, settle, statusName } from '../src/clients.js';
import { assertNamespaceName } from '../src/exec.js';

describe('names', () => {
  it('are nnt-<pid>-<n>, unique and parseable back to the pid', () => {
    const a = nextName();
    const b = nextName();
    expect(a).toMatch(new RegExp(`^nnt-${process.pid}-\\d+$`));
    expect(b).not.toBe(a);
    expect(ownerPidOf(a)).toBe(process.pid);
  });

  it('recognises only kit names as its own', () => {
    expect(ownerPidOf('nnt-123-4')).toBe(123);
    expect(ownerPidOf('nnt-exp-a')).toBeUndefined();
    expect(ownerPidOf('nnt-123-keep')).toBeUndefined();
    expect(ownerPidOf('xnnt-123-4')).toBeUndefined();
    expect(ownerPidOf('nnt-123-4-abc')).toBeUndefined();
    expect(ownerPidOf('nnt-123-4-abc', 'tempdir')).toBe(123);
    expect(ownerPidOf('nnt-123-x-abc', 'tempdir')).toBeUndefined();
  });

  it('tells live from dead pids', () => {
    expect(isPidAlive(process.pid)).toBe(true);
    expect(isPidAlive(1)).toBe(true);
    expect(isPidAlive(2 ** 22 + 12345)).toBe(false); // above pid_max
  });

  it('refuses namespace names that are not plain', () => {
    expect(() => assertNamespaceName('a b')).toThrow();
    expect(() => assertNamespaceName('../x')).toThrow();
    expect(() => assertNamespaceName('-n')).toThrow(); // would read as an option
    expect(assertNamespaceName('nnt-1-2')).toBe('nnt-1-2');
  });
});

describe('ping', () => {
  it('builds its arguments', () => {
    expect(pingArgs('198.18.0.2')).toEqual(['-n', '-q', '-c', '1', '-W', '2', '-i', '0.2', '198.18.0.2']);
    expect(pingArgs('1.2.3.4', { count: 3, size: 1422, dontFragment: true, source: '10.0.0.1', timeoutSec: 1 })).toEqual([
      '-n',
      '-q',
      '-c',
      '3',
      '-W',
      '1',
      '-i',
      '0.2',
      '-s',
      '1422',
      '-M',
      'do',
      '-I',
      '10.0.0.1',
      '1.2.3.4',
    ]);
  });

  it('reads the summary', () => {
    expect(parsePingSummary('--- x ping statistics ---\n3 packets transmitted, 2 received, 33% packet loss, time 400ms')).toEqual({
      transmitted: 3,
      received: 2,
    });
    expect(parsePingSummary('1 packets transmitted, 0 received, +1 errors, 100% packet loss')).toEqual({ transmitted: 1, received: 0 });
    expect(parsePingSummary('connect: Network is unreachable')).toEqual({ transmitted: 0, received: 0 });
  });

  it('makes distinct payloads', () => {
    expect(randomPayload('x')).toMatch(/^x-[0-9a-f]{12}$/);
    expect(randomPayload()).not.toBe(randomPayload());
  });
});

describe('snapshots', () => {
  it('ignore counters and timeouts but nothing else', () => {
    const a = { nftables: [{ rule: { expr: [{ counter: { packets: 1, bytes: 80 } }], handle: 4 } }, { set: { elem: ['x'], expires: 3 } }] };
    const b = {
      nftables: [{ rule: { expr: [{ counter: { packets: 9, bytes: 900 } }], handle: 4 } }, { set: { elem: ['x'], expires: 1 } }],
    };
    const c = {
      nftables: [{ rule: { expr: [{ counter: { packets: 9, bytes: 900 } }], handle: 5 } }, { set: { elem: ['x'], expires: 1 } }],
    };
    expect(withoutVolatile(a)).toEqual(withoutVolatile(b));
    expect(withoutVolatile(a)).not.toEqual(withoutVolatile(c));
  });

  it('summarise links', () => {
    expect(
      summarizeLink({
        ifname: 'nnh-1',
        ifindex: 7,
        flags: ['UP'],
        mtu: 1450,
        master: 'nodenet0',
        ifalias: 'nodenet:nni-1',
        address: '02:00:00:00:00:01',
        linkinfo: { info_kind: 'veth' },
      }),
    ).toEqual({ ifname: 'nnh-1', kind: 'veth', master: 'nodenet0', alias: 'nodenet:nni-1', mac: '02:00:00:00:00:01', mtu: 1450, up: true });
  });
});

describe('rpc outcomes', () => {
  const failing = () =>
    Promise.reject(Object.assign(new Error('6 ALREADY_EXISTS: taken'), { code: status.ALREADY_EXISTS, details: 'taken' }));

  it('turn a gRPC failure into code, name and details', async () => {
    expect(await rpcError(failing())).toEqual({ code: status.ALREADY_EXISTS, codeName: 'ALREADY_EXISTS', details: 'taken' });
    expect(await settle(failing())).toEqual({ ok: false, code: 6, codeName: 'ALREADY_EXISTS', details: 'taken' });
    expect(await settle(Promise.resolve(3))).toEqual({ ok: true, value: 3 });
  });

  it('fail loudly when a call expected to fail succeeds, or fails without a status', async () => {
    await expect(rpcError(Promise.resolve({ interfaceName: 'nni-1' }))).rejects.toThrow(/succeeded with .*nni-1/);
    await expect(rpcError(Promise.reject(new TypeError('bug')))).rejects.toThrow(TypeError);
    expect(statusName(status.PERMISSION_DENIED)).toBe('PERMISSION_DENIED');
  });
});
