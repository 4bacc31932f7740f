import { describe, expect, it } from 'vitest';
import { CommandError, run, runLean } from '@nodenet/sys';

// A stand-in command (node, no kernel): echoes its standard input upper-cased, exits 3 on "fail".
const ECHO =
  "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{if(s.includes('fail')){process.stderr.write('bad input');process.exit(3)}process.stdout.write(s.toUpperCase())})";

describe('runLean', () => {
  it('passes input, returns output; a non-zero exit is a CommandError with stderr, unless allowed', async () => {
    expect((await runLean(process.execPath, ['-e', ECHO], { step: 'echo', input: 'abc' })).stdout).toBe('ABC');
    const e = await runLean(process.execPath, ['-e', ECHO], { step: 'echo', input: 'fail' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CommandError);
    expect((e as CommandError).message).toMatch(/^echo: .* failed \(exit 3\): bad input$/);
    expect((await runLean(process.execPath, ['-e', ECHO], { step: 'echo', input: 'fail', okExitCodes: [3] })).exitCode).toBe(3);
  });

  it('inputLater: the process waits for its input; a rejected input kills it and rejects with that reason', async () => {
    let give!: (s: string) => void;
    const later = new Promise<string>((r) => (give = r));
    const running = runLean(process.execPath, ['-e', ECHO], { step: 'echo', inputLater: later });
    setTimeout(() => give('late'), 100);
    expect((await running).stdout).toBe('LATE');

    const reason = new Error('the work it waited for failed');
    await expect(
      runLean(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { step: 'wait', inputLater: Promise.reject(reason) }),
    ).rejects.toBe(reason);
  });

  it('a missing program is UNAVAILABLE naming what to install', async () => {
    await expect(runLean('nodenet-no-such-tool', [], { step: 'x' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('run (the same path without inputLater): output, exit codes, a timeout that kills the command', async () => {
    expect((await run(process.execPath, ['-e', ECHO], { step: 'echo', input: 'xyz' })).stdout).toBe('XYZ');
    await expect(run(process.execPath, ['-e', ECHO], { step: 'echo', input: 'fail' })).rejects.toThrow(/failed \(exit 3\): bad input$/);
    const started = performance.now();
    const e = await run(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { step: 'hang', timeoutMs: 300 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CommandError);
    expect((e as CommandError).message).toMatch(/^hang: .* timed out after 300 ms$/);
    expect(performance.now() - started).toBeLessThan(30_000);
    await expect(run('nodenet-no-such-tool', [], { step: 'x' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
