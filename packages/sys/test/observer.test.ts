import { afterEach, describe, expect, it } from 'vitest';
import { CommandSession, observeCommands, run, runLean, toolOf, type CommandEvent, type SessionFraming } from '@nodenet/sys';

const events: CommandEvent[] = [];
let stop: (() => void) | undefined;
function observe(): void {
  events.length = 0;
  stop = observeCommands((e) => events.push(e));
}
afterEach(() => stop?.());

describe('command observers', () => {
  it('label tools by basename from a fixed set', () => {
    expect(toolOf('/usr/sbin/ip')).toBe('ip');
    expect(toolOf('ovs-vsctl')).toBe('ovs-vsctl');
    expect(toolOf('/usr/bin/perl')).toBe('perl');
    expect(toolOf('/tmp/anything-else')).toBe('other');
  });

  it('see every run and runLean with its outcome, and never change the result', async () => {
    observe();
    await run('true', [], { step: 'ok' });
    await expect(run('false', [], { step: 'exit' })).rejects.toThrow(/exit 1/);
    await expect(runLean('/nonexistent/ip', [], { step: 'missing' })).rejects.toThrow(/not installed/);
    await expect(runLean('sleep', ['5'], { step: 'slow', timeoutMs: 50 })).rejects.toThrow(/timed out/);
    // An observer that throws is ignored.
    const noisy = observeCommands(() => {
      throw new Error('observer bug');
    });
    await runLean('true', [], { step: 'ok' });
    noisy();
    // A command killed unread because what its input waited for failed is not a command failure.
    await expect(
      runLean('cat', [], { step: 'input', inputLater: Promise.reject(new Error('the record could not be written')) }),
    ).rejects.toThrow(/record/);
    expect(events).toEqual([
      { tool: 'other', outcome: 'ok' },
      { tool: 'other', outcome: 'exit' },
      { tool: 'ip', outcome: 'not_installed' },
      { tool: 'other', outcome: 'timeout' },
      { tool: 'other', outcome: 'ok' },
    ]);
  });

  it('see session requests: empty answer ok, output an error, a dead process session_exited', async () => {
    const framing: SessionFraming = {
      marker: (seq) => `mark ${seq}\n`,
      find(stderr, seq) {
        const m = `done ${seq}\n`;
        const at = stderr.indexOf(m);
        return at < 0 ? null : { output: stderr.slice(0, at).trim(), consumed: at + m.length };
      },
    };
    const tool = `require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
      if (l === 'exit') process.exit(3);
      if (l.startsWith('fail')) process.stderr.write('error\\n');
      if (l.startsWith('mark ')) process.stderr.write('done ' + l.slice(5) + '\\n');
    });`;
    const session = new CommandSession({ name: 'tool', file: process.execPath, args: ['-e', tool], framing });
    observe();
    try {
      expect(await session.request('ok\n', 'a')).toBe('');
      expect(await session.request('fail\n', 'b')).toBe('error');
      await expect(session.request('exit\n', 'c')).rejects.toThrow(/exited/);
    } finally {
      session.close();
    }
    expect(events.map((e) => e.outcome)).toEqual(['ok', 'error_output', 'session_exited']);
  });
});
