/**
 * The one place nodenet runs system commands: argument arrays only (never a shell), every failure wrapped
 * into core's error types. A missing binary is UNAVAILABLE (naming the package to install); a non-zero
 * exit is a CommandError (INTERNAL) carrying the command, exit code and stderr, and naming the step.
 */
import { execa, type ExecaError } from 'execa';
import { InternalError, UnavailableError } from '@nodenet/core';

/** Debian packages that provide the commands nodenet runs, for the "install X" hint. */
const PACKAGE_OF: Record<string, string> = {
  ip: 'iproute2',
  bridge: 'iproute2',
  nft: 'nftables',
  conntrack: 'conntrack',
  'ovs-vsctl': 'openvswitch-switch',
  'ovs-ofctl': 'openvswitch-switch',
  'ovs-appctl': 'openvswitch-switch',
  nsenter: 'util-linux',
  sysctl: 'procps',
};

export interface RunOptions {
  /** What nodenet was doing, for the error message (e.g. `create veth pair`). */
  readonly step: string;
  /** Written to the command's standard input. */
  readonly input?: string;
  /** Exit codes that are not failures (besides 0). */
  readonly okExitCodes?: readonly number[];
  readonly timeoutMs?: number;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export class CommandError extends InternalError {
  constructor(
    step: string,
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(step, `${command} failed${exitCode === undefined ? '' : ` (exit ${exitCode})`}: ${stderr.trim() || 'no output'}`, options);
  }
}

/** Runs `file args...` and returns its output; throws CommandError / UnavailableError. */
export async function run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  for (const a of args) {
    if (a.includes('\0')) throw new InternalError(options.step, `argument contains a NUL byte: ${JSON.stringify(a)}`);
  }
  try {
    const r = await execa(file, args, {
      input: options.input ?? '',
      reject: false,
      stripFinalNewline: false,
      timeout: options.timeoutMs ?? 30_000,
      env: { LC_ALL: 'C' },
      extendEnv: true,
    });
    if (r.failed && r.exitCode === undefined) throw r;
    const exitCode = r.exitCode ?? -1;
    if (exitCode !== 0 && !(options.okExitCodes ?? []).includes(exitCode)) {
      throw new CommandError(options.step, describe(file, args), exitCode, String(r.stderr || r.stdout));
    }
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode };
  } catch (e) {
    if (e instanceof CommandError) throw e;
    const err = e as ExecaError & { code?: string };
    if (err.code === 'ENOENT') {
      throw new UnavailableError(`${file} is not installed on this node: install ${PACKAGE_OF[file] ?? file}`, { cause: e });
    }
    if (err.timedOut) {
      throw new CommandError(options.step, describe(file, args), undefined, `timed out after ${options.timeoutMs ?? 30_000} ms`, { cause: e });
    }
    throw new CommandError(options.step, describe(file, args), err.exitCode, String(err.stderr ?? err.message), { cause: e });
  }
}

function describe(file: string, args: readonly string[]): string {
  const shown = args.length > 12 ? [...args.slice(0, 12), '...'] : args;
  return [file, ...shown].join(' ');
}
