import { describe, expect, it } from 'vitest';
import { LineMonitor } from '@nodenet/sys';

/** A stand-in monitor (a small node program): prints `line 1`, `line 2`, then exits with code 7 after ARG ms. */
const TOOL = `
process.stdout.write('line 1\\nline 2\\n');
process.stderr.write('lost the connection\\n');
setTimeout(() => process.exit(7), Number(process.argv[1] ?? 0));`;

const until = async (check: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('LineMonitor', () => {
  it('delivers lines, restarts the command with a growing back-off, reports starts and exits', async () => {
    const lines: string[] = [];
    const starts: boolean[] = [];
    const exits: { code: number | null; stderr: string; retryInMs: number | null }[] = [];
    const m = new LineMonitor({
      name: 'test monitor',
      file: process.execPath,
      args: ['-e', TOOL, '0'],
      onLine: (l) => lines.push(l),
      onStart: ({ restart }) => starts.push(restart),
      onExit: (e) => exits.push(e),
    });
    m.start();
    await until(() => exits.length >= 3);
    await m.stop();
    expect(starts.slice(0, 3)).toEqual([false, true, true]);
    expect(lines.slice(0, 4)).toEqual(['line 1', 'line 2', 'line 1', 'line 2']);
    expect(exits[0]).toMatchObject({ code: 7, stderr: 'lost the connection', retryInMs: 100 });
    expect(exits.slice(0, 3).map((e) => e.retryInMs)).toEqual([100, 200, 400]);
  });

  it('stop ends a running process and it is not started again', async () => {
    const starts: boolean[] = [];
    const m = new LineMonitor({
      name: 'test monitor',
      file: process.execPath,
      args: ['-e', TOOL, '60000'],
      onLine: () => undefined,
      onStart: ({ restart }) => starts.push(restart),
    });
    m.start();
    await until(() => m.pid !== undefined && starts.length === 1);
    const pid = m.pid!;
    await m.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    await new Promise((r) => setTimeout(r, 300));
    expect(starts).toEqual([false]);
  });

  it('a missing program is reported once and not retried', async () => {
    const exits: { stderr: string; retryInMs: number | null }[] = [];
    const m = new LineMonitor({
      name: 'test monitor',
      file: '/nonexistent/monitor-tool',
      args: [],
      onLine: () => undefined,
      onExit: (e) => exits.push(e),
    });
    m.start();
    await until(() => exits.length === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(exits).toEqual([expect.objectContaining({ retryInMs: null, stderr: '/nonexistent/monitor-tool is not installed' })]);
    await m.stop();
  });
});
