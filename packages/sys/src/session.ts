/**
 * A long-lived command process fed one request at a time on its standard input (`ip -force -batch -`,
 * `nft -i`): what a request costs is then the kernel's work, not a process start (measured: 2-4 ms of
 * spawn per request against 0.05-0.3 ms through a session). Such tools print nothing on success, so after
 * each request the session writes a marker line that makes the tool print a recognisable error; the text
 * on standard error before that marker is the request's own output. Requests are answered in the order
 * they were written, by a tool that runs them one after another.
 *
 * The process starts on the first request and again after it exits (a tool may exit on a malformed line);
 * the request it was running fails with what it printed, the ones queued behind it with a note saying so.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { InternalError, UnavailableError } from '@nodenet/core';
import { reportCommand } from './observer.js';
import { notInstalled } from './run.js';

/** How one tool's session marks the end of a request and reads its output back. */
export interface SessionFraming {
  /** The marker line(s) written after request `seq` (ending in a newline). */
  marker(seq: number): string;
  /**
   * Looks for request `seq`'s marker in the standard error received so far: the request's output (text
   * before the marker) and how many characters of `stderr` to consume; null while the marker is not there.
   */
  find(stderr: string, seq: number): { output: string; consumed: number } | null;
}

/**
 * How nodenet's long-lived perl helpers (linux's namespace configurator, nftables' conntrack cleaner, backend-ovs's checksum helper) frame a request's answer on
 * stderr: whatever they printed before a whole `done N` line, N echoing the request's `mark N`.
 */
export const helperLineFraming: SessionFraming = {
  marker: (seq) => `mark ${seq}\n`,
  find(stderr, seq) {
    const done = `done ${seq}\n`;
    const at = stderr.indexOf(done);
    if (at < 0 || (at > 0 && stderr[at - 1] !== '\n')) return null;
    return { output: stderr.slice(0, at).trim(), consumed: at + done.length };
  },
};

export interface CommandSessionOptions {
  /** What the session runs requests for (error messages), e.g. `ip -batch session in the node namespace`. */
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
  readonly framing: SessionFraming;
  /** A request not answered in this time kills the process (it fails, and so do those behind it). */
  readonly timeoutMs?: number;
  /** After this many requests the process is replaced (a tool's caches grow with what it has seen). */
  readonly recycleAfter?: number;
  /** Environment variables set for the tool, on top of the daemon's (LC_ALL=C always). */
  readonly env?: Readonly<Record<string, string>>;
}

interface Pending {
  readonly seq: number;
  readonly resolve: (output: string) => void;
  readonly reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

/** Thrown for a request whose process exited (or was killed) before answering. */
export class SessionExitedError extends InternalError {
  constructor(
    step: string,
    /** What the process printed for the request it was running (empty for the ones queued behind it). */
    readonly output: string,
    readonly reason: string,
  ) {
    super(step, reason);
  }
}

export class CommandSession {
  private proc: ChildProcessWithoutNullStreams | undefined;
  /** The requests written to the current process, oldest first. */
  private pending: Pending[] = [];
  private seq = 0;
  private served = 0;
  private closed = false;

  constructor(private readonly options: CommandSessionOptions) {}

  /**
   * Writes `script` (complete lines) and resolves with what the tool printed on standard error for it ('' on
   * success). Rejects with SessionExitedError when the process dies before answering.
   */
  request(script: string, step: string): Promise<string> {
    if (this.closed) return Promise.reject(new InternalError(step, `${this.options.name} is closed`));
    if (script.includes('\0')) return Promise.reject(new InternalError(step, 'a session request contains a NUL byte'));
    const proc = this.process();
    const seq = ++this.seq;
    return new Promise<string>((resolve, reject) => {
      const entry: Pending = { seq, resolve, reject };
      entry.timer = setTimeout(() => this.kill(proc, `${this.options.name} did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
      entry.timer.unref();
      this.pending.push(entry);
      if (this.pending.length === 1) holdOpen(proc, true);
      proc.stdin.write(script + this.options.framing.marker(seq));
      if (++this.served >= (this.options.recycleAfter ?? 10_000)) this.retire();
    }).then(
      (output) => {
        // The tools nodenet runs in sessions print nothing for a request that succeeded.
        reportCommand(this.options.file, output === '' ? 'ok' : 'error_output');
        return output;
      },
      (e: unknown) => {
        reportCommand(this.options.file, e instanceof UnavailableError ? 'not_installed' : 'session_exited');
        if (e instanceof SessionExitedError) throw new SessionExitedError(step, e.output, e.reason);
        throw e;
      },
    );
  }

  /** Replaces the process after the requests already written (e.g. when what the tool cached went stale). */
  reset(): void {
    this.retire();
  }

  /** Ends the process; later requests fail. */
  close(): void {
    this.closed = true;
    this.retire();
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? 30_000;
  }

  private process(): ChildProcessWithoutNullStreams {
    if (this.proc) return this.proc;
    const proc = spawn(this.options.file, [...this.options.args], {
      env: { ...process.env, ...this.options.env, LC_ALL: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // The queue of this process: a retired process answers what was written to it, a new one starts empty.
    const mine: Pending[] = [];
    this.pending = mine;
    let stderr = '';
    proc.stdout.resume(); // prompts and listings are not read; keep the pipe from filling
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      for (;;) {
        const head = mine[0];
        if (!head) break;
        const found = this.options.framing.find(stderr, head.seq);
        if (!found) break;
        stderr = stderr.slice(found.consumed);
        mine.shift();
        clearTimeout(head.timer);
        head.resolve(found.output);
      }
      if (mine.length === 0) holdOpen(proc, false);
    });
    const fail = (why: string) => {
      if (this.proc === proc) this.proc = undefined;
      const text = stderr.trim();
      for (const [i, p] of mine.splice(0).entries()) {
        clearTimeout(p.timer);
        p.reject(
          new SessionExitedError(
            this.options.name,
            i === 0 ? text : '',
            i === 0 ? `${why}${text ? `: ${text}` : ''}` : `${why} before this request ran`,
          ),
        );
      }
    };
    proc.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') {
        if (this.proc === proc) this.proc = undefined;
        for (const p of mine.splice(0)) {
          clearTimeout(p.timer);
          p.reject(notInstalled(this.options.file, e));
        }
        return;
      }
      fail(`${this.options.name} failed: ${e.message}`);
    });
    proc.on('close', (code, signal) => fail(this.killed.get(proc) ?? `${this.options.name} exited (${signal ?? `code ${code}`})`));
    proc.stdin.on('error', () => {}); // EPIPE when the tool exits; 'close' reports it
    holdOpen(proc, false);
    this.proc = proc;
    return proc;
  }

  /** Lets the current process finish what was written to it, then exit; the next request starts a new one. */
  private retire(): void {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    this.served = 0;
    proc.stdin.end();
  }

  private readonly killed = new WeakMap<ChildProcessWithoutNullStreams, string>();

  private kill(proc: ChildProcessWithoutNullStreams, why: string): void {
    if (this.proc === proc) this.proc = undefined;
    this.killed.set(proc, why);
    proc.kill('SIGKILL');
  }
}

/**
 * An idle session must not keep its owner's process alive (a short-lived program using a dataplane would
 * never exit): the child and its pipes count for Node's event loop only while requests are in flight.
 */
function holdOpen(proc: ChildProcessWithoutNullStreams, hold: boolean): void {
  for (const handle of [proc, proc.stdin, proc.stdout, proc.stderr] as { ref?: () => void; unref?: () => void }[]) {
    if (hold) handle.ref?.();
    else handle.unref?.();
  }
}
