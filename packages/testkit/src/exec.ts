/**
 * Running commands for tests: argument arrays only (execa, never a shell), inside a network namespace
 * through `ip netns exec`. Failures throw a CommandFailed carrying the command line, exit code and output.
 */
import { execa } from 'execa';

export interface ExecOptions {
  /** Written to standard input. */
  readonly input?: string;
  /** Resolve with the result on a non-zero exit instead of throwing. */
  readonly allowFailure?: boolean;
  readonly timeoutMs?: number;
}

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export class CommandFailed extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${command} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${(stderr || stdout).trim() || 'no output'}`);
    this.name = 'CommandFailed';
  }
}

/** Namespace names the kit accepts from callers (it passes them to `ip`). */
const NAMESPACE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function assertNamespaceName(name: string): string {
  if (!NAMESPACE_NAME_RE.test(name) || name === '.' || name === '..') {
    throw new Error(`'${name}' is not a namespace name the test kit handles (letters, digits, '-', '_', '.')`);
  }
  return name;
}

/** Runs `file args...` in the caller's namespace. */
export async function exec(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const r = await execa(file, args, {
    input: options.input ?? '',
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    env: { LC_ALL: 'C' },
    extendEnv: true,
  });
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '');
  const commandLine = [file, ...args].join(' ');
  if (r.exitCode === undefined) {
    // Not started, killed or timed out: never a result a test should read.
    throw new CommandFailed(
      commandLine,
      undefined,
      stdout,
      r.timedOut ? `timed out after ${options.timeoutMs ?? 60_000} ms` : stderr || ((r as { message?: string }).message ?? 'no output'),
    );
  }
  if (r.exitCode !== 0 && !options.allowFailure) throw new CommandFailed(commandLine, r.exitCode, stdout, stderr);
  return { stdout, stderr, exitCode: r.exitCode };
}

/** Runs `file args...` inside namespace `ns`. */
export function nsExec(ns: string, file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return exec('ip', ['netns', 'exec', assertNamespaceName(ns), file, ...args], options);
}

/** Runs iproute2 commands in one process inside `ns` (`ip -n NS -batch -`): one spawn for many changes. */
export async function ipBatch(ns: string, lines: readonly string[], options: { force?: boolean } = {}): Promise<void> {
  if (lines.length === 0) return;
  for (const line of lines) {
    if (line.includes('\n')) throw new Error(`ip batch line contains a newline: ${JSON.stringify(line)}`);
  }
  const args = ['-n', assertNamespaceName(ns), ...(options.force ? ['-force'] : []), '-batch', '-'];
  await exec('ip', args, { input: `${lines.join('\n')}\n` });
}

/** `ip -j ...` inside `ns`, parsed. */
export async function ipJson<T = unknown>(ns: string, args: readonly string[]): Promise<T> {
  const r = await exec('ip', ['-n', assertNamespaceName(ns), '-j', ...args]);
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/** Reads sysctls inside `ns` (one process). */
export async function readSysctls(ns: string, keys: readonly string[]): Promise<Record<string, string>> {
  const r = await nsExec(ns, 'sysctl', ['-n', ...keys]);
  const values = r.stdout.trimEnd().split('\n');
  return Object.fromEntries(keys.map((k, i) => [k, (values[i] ?? '').trim()]));
}

/** Writes sysctls inside `ns` (one process). */
export async function writeSysctls(ns: string, values: Readonly<Record<string, string | number>>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  if (args.length > 0) await nsExec(ns, 'sysctl', ['-q', '-w', ...args]);
}
