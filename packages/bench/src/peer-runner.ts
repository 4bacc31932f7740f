/**
 * The client of scripts/peer-runner.mjs: one process inside a node namespace that spawns peers' commands
 * (CNI plugins, netavark) the way a runtime on the node would, timing each from spawn to exit.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { assertNamespaceName, type TestScope } from '@nodenet/testkit';

const runnerScript = fileURLToPath(new URL('../scripts/peer-runner.mjs', import.meta.url));

export interface RunRequest {
  readonly file: string;
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly input?: string;
}

export interface RunReply {
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** Spawn to exit, measured inside the namespace. */
  readonly ms: number;
  readonly stdout: string;
  readonly stderr: string;
}

export class CommandFailedError extends Error {
  constructor(
    readonly command: string,
    readonly reply: RunReply,
  ) {
    super(
      `${command} failed (exit ${reply.exitCode ?? reply.signal}): ${(reply.stderr || reply.stdout).trim().slice(0, 2000) || 'no output'}`,
    );
  }
}

export class PeerRunner {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: RunReply) => void; reject: (e: Error) => void }>();
  private exited = false;

  private constructor(
    readonly ns: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {}

  static async start(scope: TestScope, ns: string): Promise<PeerRunner> {
    const child = spawn('ip', ['netns', 'exec', assertNamespaceName(ns), process.execPath, runnerScript], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    scope.trackPid(child.pid);
    const runner = new PeerRunner(ns, child);
    scope.defer(`peer runner in ${ns}`, () => runner.stop());
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        const message = JSON.parse(line) as { id: number; ready?: boolean; error?: string } & RunReply;
        if (message.ready) {
          resolve();
          return;
        }
        const waiter = runner.pending.get(message.id);
        if (!waiter) return;
        runner.pending.delete(message.id);
        if (message.error !== undefined) waiter.reject(new Error(`peer runner: ${message.error}`));
        else waiter.resolve(message);
      });
      child.on('exit', () => {
        runner.exited = true;
        scope.untrackPid(child.pid);
        const error = new Error(`the peer runner in ${ns} exited: ${stderr.trim()}`);
        for (const w of runner.pending.values()) w.reject(error);
        runner.pending.clear();
        reject(error);
      });
    });
    return runner;
  }

  /** The runner's process (`ip netns exec` execs node in place: the same pid). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Runs a command; resolves with its reply whatever the exit code. */
  run(request: RunRequest): Promise<RunReply> {
    if (this.exited) return Promise.reject(new Error(`the peer runner in ${this.ns} has exited`));
    const id = this.nextId++;
    return new Promise<RunReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id, ...request })}\n`);
    });
  }

  /** Runs a command that must succeed. */
  async runOk(request: RunRequest, what: string): Promise<RunReply> {
    const reply = await this.run(request);
    if (reply.exitCode !== 0) throw new CommandFailedError(what, reply);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await done;
    clearTimeout(timer);
  }
}
