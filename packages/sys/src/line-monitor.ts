/**
 * A long-lived command whose standard output is a stream of lines (`ip -o monitor`, `nft -j monitor`,
 * `ovsdb-client monitor`, `ovs-ofctl monitor`): each line goes to a callback as it arrives. The process is
 * started again when it exits, after a back-off that grows while it keeps failing (100 ms doubling up to a
 * cap) and starts over once it has run for a while; a missing program is reported once and not retried.
 * Each start after the first is reported (the monitor may have missed changes while it was down), as is
 * every exit, with the end of what the process printed on standard error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface LineMonitorOptions {
  /** What the monitor watches (log lines), e.g. `ip monitor in the node namespace`. */
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
  /** Environment variables set for the command, on top of the daemon's (LC_ALL=C always). */
  readonly env?: Readonly<Record<string, string>>;
  onLine(line: string): void;
  /** The process (re)started; `restart` is false for the first start. */
  onStart?(info: { restart: boolean }): void;
  /** The process exited (or could not start); `retryInMs` is null when it will not be started again. */
  onExit?(info: { code: number | null; signal: string | null; stderr: string; retryInMs: number | null }): void;
  /** Back-off cap while the command keeps failing (default 2 s). */
  readonly maxBackoffMs?: number;
  /** A run this long resets the back-off (default 5 s). */
  readonly stableAfterMs?: number;
}

const FIRST_BACKOFF_MS = 100;
const STDERR_KEPT = 2_000;

export class LineMonitor {
  private proc: ChildProcess | undefined;
  private started = false;
  private stopped = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private starts = 0;

  constructor(private readonly options: LineMonitorOptions) {}

  /** Starts the command (again after each exit) until stop(). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.spawnNow();
  }

  /** How many times the process was started. */
  get startCount(): number {
    return this.starts;
  }

  /** The process's id while it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Ends the process (SIGTERM) and stops restarting it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('close', () => resolve());
      proc.kill('SIGTERM');
    });
  }

  private spawnNow(): void {
    if (this.stopped) return;
    const startedAt = performance.now();
    const restart = this.starts > 0;
    this.starts++;
    let stderr = '';
    let spawnError: NodeJS.ErrnoException | undefined;
    // A monitor reads no stdin, so unlike a session it would outlive a daemon killed with SIGKILL (until its
    // next write): setpriv --pdeathsig ends it with its parent.
    const proc = spawn('setpriv', ['--pdeathsig', 'KILL', '--', this.options.file, ...this.options.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.options.env, LC_ALL: 'C' },
    });
    this.proc = proc;
    proc.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_KEPT);
    });
    const lines = createInterface({ input: proc.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => {
      try {
        this.options.onLine(line);
      } catch {
        // A consumer's bug must not end the monitor; consumers log their own failures.
      }
    });
    proc.once('spawn', () => this.options.onStart?.({ restart }));
    proc.once('close', (code, signal) => {
      lines.close();
      if (this.proc === proc) this.proc = undefined;
      if (this.stopped) return;
      if (spawnError?.code === 'ENOENT') {
        this.options.onExit?.({
          code,
          signal,
          stderr: `setpriv (util-linux) is not installed: it runs ${this.options.file}`,
          retryInMs: null,
        });
        return;
      }
      if (code === 127 && /failed to execute .*No such file or directory/.test(stderr)) {
        this.options.onExit?.({ code, signal, stderr: `${this.options.file} is not installed`, retryInMs: null });
        return;
      }
      if (performance.now() - startedAt >= (this.options.stableAfterMs ?? 5_000)) this.failures = 0;
      const retryInMs = Math.min(FIRST_BACKOFF_MS * 2 ** this.failures, this.options.maxBackoffMs ?? 2_000);
      this.failures++;
      this.options.onExit?.({ code, signal, stderr: (spawnError ? spawnError.message : stderr).trim(), retryInMs });
      this.retryTimer = setTimeout(() => this.spawnNow(), retryInMs);
      this.retryTimer.unref();
    });
  }
}
