/**
 * A TestScope owns everything a test makes: network namespaces (`nnt-<pid>-<n>`), temp directories
 * (`nnt-<pid>-<n>-*` under the OS temp dir), processes and arbitrary cleanup steps. `cleanup()` undoes all
 * of it (last made, first undone) and keeps going past failures; exit and signal handlers do the same
 * synchronously if the process ends first. On first use the kit sweeps leftovers of dead test processes:
 * only names of the form `nnt-<pid>-<n>` whose pid no longer runs, never anything else.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec } from './exec.js';

export const NAMESPACE_PREFIX = 'nnt-';
const NETNS_DIR = '/run/netns';
/** `nnt-<pid>-<counter>`: what the kit creates (namespaces; temp dirs add a `-suffix`). */
const OWN_NAME_RE = /^nnt-(\d+)-(\d+)(?:-.*)?$/;
const OWN_NAMESPACE_RE = /^nnt-(\d+)-(\d+)$/;

let counter = 0;
/** The next unique name for this process: `nnt-<pid>-<n>`. */
export function nextName(): string {
  counter += 1;
  return `${NAMESPACE_PREFIX}${process.pid}-${counter}`;
}

/** The pid a kit-made name carries, or undefined when the name is not one the kit makes. */
export function ownerPidOf(name: string, kind: 'namespace' | 'tempdir' = 'namespace'): number | undefined {
  const m = (kind === 'namespace' ? OWN_NAMESPACE_RE : OWN_NAME_RE).exec(name);
  return m ? Number(m[1]) : undefined;
}

export function isPidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Processes (pids) whose network namespace is `ns`. */
export async function pidsInNamespace(ns: string): Promise<number[]> {
  const r = await exec('ip', ['netns', 'pids', ns], { allowFailure: true });
  if (r.exitCode !== 0) return [];
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Kills every process inside `ns` and deletes it. Absent is fine. */
export async function destroyNamespace(ns: string): Promise<void> {
  for (const pid of await pidsInNamespace(ns)) killQuietly(pid, 'SIGKILL');
  const r = await exec('ip', ['netns', 'del', ns], { allowFailure: true });
  if (r.exitCode !== 0 && !/No such file|not exist/i.test(r.stderr)) {
    throw new Error(`ip netns del ${ns} failed: ${r.stderr.trim()}`);
  }
}

export async function listNamespaces(): Promise<string[]> {
  try {
    return await readdir(NETNS_DIR);
  } catch {
    return [];
  }
}

export interface SweepReport {
  readonly namespaces: string[];
  readonly tempDirs: string[];
}

/**
 * Removes namespaces and temp dirs named `nnt-<pid>-<n>...` whose pid is dead (left by a test process that
 * was killed). Anything else, including kit names of live processes, is left alone.
 */
export async function sweepStale(): Promise<SweepReport> {
  const namespaces: string[] = [];
  for (const name of await listNamespaces()) {
    const pid = ownerPidOf(name, 'namespace');
    if (pid === undefined || isPidAlive(pid)) continue;
    try {
      await destroyNamespace(name);
      namespaces.push(name);
    } catch {
      // another sweeper got there first, or it is busy: leave it for the next sweep
    }
  }
  const tempDirs: string[] = [];
  const tmp = tmpdir();
  for (const name of await readdir(tmp).catch(() => [] as string[])) {
    const pid = ownerPidOf(name, 'tempdir');
    if (pid === undefined || isPidAlive(pid)) continue;
    await rm(join(tmp, name), { recursive: true, force: true }).catch(() => undefined);
    tempDirs.push(name);
  }
  return { namespaces, tempDirs };
}

let sweepOnce: Promise<SweepReport> | undefined;
/** The start-of-run sweep, once per process. */
export function sweepStaleOnce(): Promise<SweepReport> {
  sweepOnce ??= sweepStale();
  return sweepOnce;
}

interface CleanupStep {
  readonly what: string;
  readonly run: () => Promise<void> | void;
}

/** Scopes not yet cleaned up, for the exit handlers. */
const liveScopes = new Set<TestScope>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const scope of liveScopes) scope.cleanupSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      for (const scope of liveScopes) scope.cleanupSync();
      process.removeListener(signal, handler);
      // Die of the same signal, as the process would have without us.
      process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

export class TestScope {
  private readonly namespaces: string[] = [];
  private readonly tempDirs: string[] = [];
  private readonly pids = new Set<number>();
  private steps: CleanupStep[] = [];
  private closed = false;

  /** Creates a scope and runs the start-of-run sweep (once per process). */
  static async create(): Promise<TestScope> {
    await sweepStaleOnce();
    return new TestScope();
  }

  constructor() {
    installExitHandlers();
    liveScopes.add(this);
  }

  /** Creates a namespace `nnt-<pid>-<n>` with `lo` up; `cleanup()` deletes it (and kills what runs in it). */
  async createNamespace(): Promise<string> {
    this.assertOpen();
    const name = nextName();
    this.namespaces.push(name);
    await exec('ip', ['netns', 'add', name]);
    await exec('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A fresh directory `<tmp>/nnt-<pid>-<n>-XXXXXX`, removed by `cleanup()`. */
  async createTempDir(): Promise<string> {
    this.assertOpen();
    const dir = await mkdtemp(join(tmpdir(), `${nextName()}-`));
    this.tempDirs.push(dir);
    return dir;
  }

  /** A process to SIGKILL if the test process exits before `cleanup()` (cleanup itself runs `defer`red stops). */
  trackPid(pid: number | undefined): void {
    this.assertOpen();
    if (pid !== undefined) this.pids.add(pid);
  }

  untrackPid(pid: number | undefined): void {
    if (pid !== undefined) this.pids.delete(pid);
  }

  /** Registers a cleanup step; steps run last-registered first, before namespaces and temp dirs go. */
  defer(what: string, run: () => Promise<void> | void): void {
    this.assertOpen();
    this.steps.push({ what, run });
  }

  /** Whether `ns` was made by this scope and is still registered. */
  owns(ns: string): boolean {
    return this.namespaces.includes(ns);
  }

  /** Undoes everything; throws an AggregateError naming every step that failed (after trying them all). */
  async cleanup(): Promise<void> {
    const errors: Error[] = [];
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step.run();
      } catch (e) {
        errors.push(new Error(`cleanup '${step.what}': ${(e as Error).message}`, { cause: e }));
      }
    }
    for (const pid of this.pids) killQuietly(pid, 'SIGKILL');
    this.pids.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        await destroyNamespace(ns);
      } catch (e) {
        errors.push(e as Error);
      }
    }
    for (const dir of this.tempDirs.splice(0)) {
      await rm(dir, { recursive: true, force: true }).catch((e: Error) => errors.push(e));
    }
    liveScopes.delete(this);
    if (errors.length > 0) throw new AggregateError(errors, `test cleanup failed: ${errors.map((e) => e.message).join('; ')}`);
  }

  /** Cleanup when the process is exiting: no awaits possible, so processes are killed and namespaces deleted directly. */
  cleanupSync(): void {
    this.closed = true;
    for (const pid of this.pids) killQuietly(pid, 'SIGKILL');
    for (const ns of this.namespaces.splice(0)) {
      const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
      for (const line of (r.stdout ?? '').split('\n')) {
        const pid = Number(line.trim());
        if (Number.isInteger(pid) && pid > 0) killQuietly(pid, 'SIGKILL');
      }
      spawnSync('ip', ['netns', 'del', ns]);
    }
    for (const dir of this.tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    liveScopes.delete(this);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('this TestScope was cleaned up at process exit');
    // A scope can be reused after cleanup() (e.g. one per file, cleaned after each test).
    liveScopes.add(this);
  }
}
