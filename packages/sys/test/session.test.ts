import { describe, expect, it } from 'vitest';
import { CommandSession, SessionExitedError, type SessionFraming } from '@nodenet/sys';

/**
 * A stand-in tool (a small node program, no kernel): reads lines; `fail X` prints `error: X` on stderr,
 * `exit` exits 3 after printing `bye`, `sleep MS` answers after MS ms, a marker line `mark N` prints `done N`.
 */
const TOOL = `
const rl = require('node:readline').createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => { chain = chain.then(() => handle(line)); });
async function handle(line) {
  if (line.startsWith('fail ')) process.stderr.write('error: ' + line.slice(5) + '\\n');
  else if (line === 'exit') { process.stderr.write('bye\\n'); process.exit(3); }
  else if (line.startsWith('sleep ')) await new Promise((r) => setTimeout(r, Number(line.slice(6))));
  else if (line.startsWith('mark ')) process.stderr.write('done ' + line.slice(5) + '\\n');
}`;

const framing: SessionFraming = {
  marker: (seq) => `mark ${seq}\n`,
  find(stderr, seq) {
    const m = `done ${seq}\n`;
    const at = stderr.indexOf(m);
    return at < 0 ? null : { output: stderr.slice(0, at).trim(), consumed: at + m.length };
  },
};

function tool(extra: Partial<ConstructorParameters<typeof CommandSession>[0]> = {}): CommandSession {
  return new CommandSession({ name: 'test tool', file: process.execPath, args: ['-e', TOOL], framing, ...extra });
}

describe('CommandSession', () => {
  it('answers each request with its own output, in order, also when many are in flight', async () => {
    const s = tool();
    try {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => s.request(i % 3 === 0 ? `fail ${i}\n` : 'ok\n', `req ${i}`)));
      answers.forEach((a, i) => expect(a).toBe(i % 3 === 0 ? `error: ${i}` : ''));
    } finally {
      s.close();
    }
  });

  it('a request whose process exits fails with what it printed; queued ones fail; the next request starts a new process', async () => {
    const s = tool();
    try {
      const [dying, queued] = await Promise.allSettled([s.request('exit\n', 'die'), s.request('ok\n', 'after')]);
      expect(dying.status).toBe('rejected');
      const e = (dying as PromiseRejectedResult).reason as SessionExitedError;
      expect(e).toBeInstanceOf(SessionExitedError);
      expect(e.output).toBe('bye');
      expect(e.message).toMatch(/exited \(code 3\)/);
      expect(queued.status).toBe('rejected');
      expect(((queued as PromiseRejectedResult).reason as Error).message).toMatch(/before this request ran/);
      expect(await s.request('fail again\n', 'again')).toBe('error: again');
    } finally {
      s.close();
    }
  });

  it('kills a process that does not answer in time and says so', async () => {
    const s = tool({ timeoutMs: 1000 });
    try {
      await expect(s.request('sleep 60000\n', 'slow one')).rejects.toThrow(/^slow one: test tool did not answer within 1000 ms$/);
      expect(await s.request('ok\n', 'next')).toBe('');
    } finally {
      s.close();
    }
  });

  it('reset lets the old process answer what it was given; later requests go to a new one', async () => {
    const s = tool();
    try {
      const first = s.request('sleep 200\n', 'slow');
      s.reset();
      const second = s.request('fail new\n', 'new');
      await expect(first).resolves.toBe('');
      await expect(second).resolves.toBe('error: new');
    } finally {
      s.close();
    }
  });

  it('a missing program is UNAVAILABLE; a closed session refuses requests', async () => {
    const missing = new CommandSession({ name: 'nothing', file: 'nodenet-no-such-tool', args: [], framing });
    await expect(missing.request('x\n', 'x')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    missing.close();
    await expect(missing.request('x\n', 'x')).rejects.toThrow(/closed/);
  });
});

describe('CommandSession and the program that owns it', () => {
  it('holds the program open while a request is in flight, and lets it exit when idle (no close needed)', async () => {
    const { spawnSync } = await import('node:child_process');
    // Uses the built package (npm test builds first), as a program using a dataplane would.
    const program = `
      import { CommandSession } from '@nodenet/sys';
      const framing = ${`{ marker: (seq) => 'mark ' + seq + '\\n', find: (e, seq) => { const m = 'done ' + seq + '\\n'; const at = e.indexOf(m); return at < 0 ? null : { output: e.slice(0, at), consumed: at + m.length }; } }`};
      const s = new CommandSession({ name: 'tool', file: process.execPath, args: ['-e', process.argv[1]], framing });
      const answer = await s.request('sleep 300\\nfail late\\n', 'slow');
      console.log('answered:' + answer.trim());
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', program, TOOL], {
      cwd: process.cwd(),
      timeout: 20_000,
      encoding: 'utf8',
    });
    expect(r.error, 'the program did not exit on its own within 20 s').toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('answered:error: late');
    expect(r.status).toBe(0);
  });
});
