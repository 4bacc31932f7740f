import { beforeEach, describe, expect, it, vi } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { CommandError, runLean } from '@nodenet/sys';
import { OvsRunner, explainOfctlFailure, explainVsctlFailure } from '../src/ovs-runner.js';

// ovs-vsctl and ovs-ofctl are not run here: `runLean` (their runner: they run per request) answers as they do.
vi.mock('@nodenet/sys', async (importOriginal) => {
  const real = await importOriginal<typeof import('@nodenet/sys')>();
  return { ...real, runLean: vi.fn() };
});
const runMock = vi.mocked(runLean);

const ovs = { db: 'unix:/run/x/db.sock', runDir: '/run/x', timeoutSeconds: 3 };
// The tools' path (clients: false): the long-lived connections are tested against a real switch.
const runner = new OvsRunner({ ...ovs, clients: false });

beforeEach(() => {
  runMock.mockReset();
  runMock.mockResolvedValue({ stdout: '', stderr: '', exitCode: 0 });
});

describe('OvsRunner', () => {
  it('passes the database and a timeout to ovs-vsctl, and waits for ovs-vswitchd unless told not to', async () => {
    await runner.vsctl(['--', 'add-br', 'b'], 'step');
    await runner.vsctl(['--', 'add-br', 'b'], 'step', { wait: false });
    expect(runMock.mock.calls.map((c) => c[1])).toEqual([
      ['--db=unix:/run/x/db.sock', '--timeout=3', '--', 'add-br', 'b'],
      ['--db=unix:/run/x/db.sock', '--timeout=3', '--no-wait', '--', 'add-br', 'b'],
    ]);
  });

  it('reaches a bridge through its management socket with OpenFlow 1.5', async () => {
    await runner.ofctl('add-flows', 'nodenet0', ['--bundle', '-'], 'step', 'add x\n');
    expect(runMock.mock.calls[0]![0]).toBe('ovs-ofctl');
    expect(runMock.mock.calls[0]![1]).toEqual([
      '-O',
      'OpenFlow15',
      '--timeout=3',
      'add-flows',
      'unix:/run/x/nodenet0.mgmt',
      '--bundle',
      '-',
    ]);
    expect(runMock.mock.calls[0]![2]).toMatchObject({ input: 'add x\n' });
  });

  it('concurrent transactions share one ovs-vsctl process, concurrent flow changes one bundle', async () => {
    await Promise.all([
      runner.transact(['--', 'add-port', 'b', 'p1'], 'add p1'),
      runner.transact(['--', 'add-port', 'b', 'p2'], 'add p2'),
      runner.transact(['--', 'add-port', 'b', 'p3'], 'add p3'),
    ]);
    // The first goes at once; the two that arrive while it runs go together.
    expect(runMock.mock.calls.map((c) => c[1].filter((a) => /^p\d$/.test(a)))).toEqual([['p1'], ['p2', 'p3']]);
    runMock.mockClear();
    await Promise.all([
      runner.modifyFlows('nodenet0', 'add a\n', 'a'),
      runner.modifyFlows('nodenet0', 'add b\n', 'b'),
      runner.modifyFlows('nodenet0', 'add c\n', 'c'),
    ]);
    expect(runMock.mock.calls.map((c) => c[2].input)).toEqual(['add a\n', 'add b\nadd c\n']);
    expect(runMock.mock.calls[1]![1]).toContain('--bundle');
  });
});

describe('what a failure means', () => {
  it('the database not reachable: UNAVAILABLE naming the socket that was tried', () => {
    const e = explainVsctlFailure(
      new CommandError('s', 'ovs-vsctl', 1, 'ovs-vsctl: unix:/run/x/db.sock: database connection failed (No such file or directory)\n'),
      'read OVSDB',
      ovs,
    );
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(
      /^read OVSDB: cannot reach the Open vSwitch database at unix:\/run\/x\/db\.sock \(unix:\/run\/x\/db\.sock: database connection failed/,
    );
  });

  it('ovs-vswitchd not applying a change within the timeout (ovs-vsctl dies of SIGALRM): UNAVAILABLE naming the timeout and run directory', () => {
    const cause = Object.assign(new Error('killed'), { signal: 'SIGALRM' });
    const e = explainVsctlFailure(
      new CommandError('s', 'ovs-vsctl', undefined, '...|fatal_signal|WARN|terminating with signal 14 (Alarm clock)', { cause }),
      'add p',
      ovs,
    );
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(
      /^add p: ovs-vswitchd did not apply the change within 3 s \(database unix:\/run\/x\/db\.sock, run directory \/run\/x\)/,
    );
    // runLean's form of the same death when ovs-vsctl printed nothing (no cause, the signal in the text).
    const silent = explainVsctlFailure(new CommandError('s', 'ovs-vsctl', undefined, 'killed by SIGALRM'), 'add p', ovs);
    expect(silent).toBeInstanceOf(UnavailableError);
  });

  it("a bridge's management socket not reachable: UNAVAILABLE naming it", () => {
    const e = explainOfctlFailure(
      new CommandError('s', 'ovs-ofctl', 1, 'ovs-ofctl: connecting to unix:/run/x/nodenet0.mgmt (No such file or directory)\n'),
      'list flows',
      'nodenet0',
      '/run/x',
    );
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toContain('at unix:/run/x/nodenet0.mgmt');
  });

  it('other failures stay what they are (INTERNAL, naming the step)', () => {
    const failure = new CommandError('add p', 'ovs-vsctl', 1, 'ovs-vsctl: no bridge named b\n');
    expect(explainVsctlFailure(failure, 'add p', ovs)).toBe(failure);
    expect(explainOfctlFailure(failure, 'add p', 'b', '/run/x')).toBe(failure);
    const other = new Error('x');
    expect(explainVsctlFailure(other, 's', ovs)).toBe(other);
  });
});
