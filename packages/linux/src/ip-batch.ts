/**
 * Running `ip` in a network namespace: one `ip -batch -` process per namespace per request (lines on
 * stdin), and `ip -j` reads. Knows how iproute2 reports batch failures, so a failure names the line
 * (and thus the step) that failed.
 */
import { InternalError, type NetnsRef } from '@nodenet/core';
import { CommandError, runLean as run } from '@nodenet/sys';

/** One line of an `ip -batch` script: the arguments after `ip`, and what the line does (for errors). */
export interface IpLine {
  /** A short stable key the caller uses to map a failure of this line to a precise error. */
  readonly id: string;
  readonly args: readonly string[];
  /** What the line does, e.g. `create veth pair nnh-1a2b3c4d`; the step name of its failure. */
  readonly step: string;
}

/**
 * iproute2's batch reader splits a line on blanks, treats `'`/`"` as quotes, cuts at `#` and joins lines
 * ending in `\`. Every argument nodenet writes is a validated name or address, so none contains these; the
 * check makes that a guarantee instead of an assumption.
 */
const SAFE_TOKEN_RE = /^[A-Za-z0-9_.:/+=,@-]+$/;

export function formatIpBatch(lines: readonly IpLine[]): string {
  return lines
    .map((line) => {
      if (line.args.length === 0) throw new InternalError(line.step, 'empty ip batch line');
      for (const arg of line.args) {
        if (!SAFE_TOKEN_RE.test(arg)) {
          throw new InternalError(
            line.step,
            `refusing to write ${JSON.stringify(arg)} into an ip batch: it contains a character the batch reader would split or strip`,
          );
        }
      }
      return line.args.join(' ');
    })
    .join('\n')
    .concat('\n');
}

export interface IpBatchFailure {
  /** 1-based line number, or undefined when `ip` stopped without naming the line (it exits at once on a bad argument). */
  readonly line: number | undefined;
  /** What `ip` printed about it (may be several lines). */
  readonly message: string;
}

/**
 * Splits `ip -batch` stderr into failures. iproute2 prints the error, then `Command failed -:N` for each
 * failing line; an argument error (`Error: argument "x" is wrong: ...`) exits at once with no such marker,
 * so trailing text without a marker is a failure of an unknown line.
 */
export function parseIpBatchFailures(stderr: string): IpBatchFailure[] {
  const failures: IpBatchFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const text = raw.trim();
    if (text === '') continue;
    const marker = /^Command failed (?:-|\S+):(\d+)$/.exec(text);
    if (marker) {
      failures.push({ line: Number(marker[1]), message: pending.join('\n') });
      pending = [];
    } else {
      pending.push(text);
    }
  }
  if (pending.length > 0) failures.push({ line: undefined, message: pending.join('\n') });
  return failures;
}

/** A failed `ip -batch`: which line failed (when iproute2 said so) and what it printed. */
export class IpBatchError extends InternalError {
  constructor(
    step: string,
    readonly command: string,
    /** The line that failed, when known. */
    readonly failedLine: IpLine | undefined,
    /** The message `ip` printed for it. */
    readonly detail: string,
    readonly failures: readonly IpBatchFailure[],
    options?: { cause?: unknown },
  ) {
    super(failedLine?.step ?? step, `${command} failed: ${detail || 'no output'}`, options);
  }
}

/** Whether `e` is an `ip -batch` failure of the line with id `lineId`. */
export function failedAt(e: unknown, lineId: string): boolean {
  return e instanceof IpBatchError && e.failedLine?.id === lineId;
}

/** Whether `e` or one of its causes is an `ip -batch` failure whose message matches `re`. */
export function causedBy(e: unknown, re: RegExp): boolean {
  for (let c: unknown = e; c instanceof Error; c = c.cause) if (c instanceof IpBatchError && re.test(c.detail)) return true;
  return false;
}

/**
 * What iproute2 says when a delete finds nothing: no such device (ENODEV, or `link del group` finding none in
 * the group), route (ESRCH) or neighbour/FDB entry (ENOENT). Deletes are tolerant of these.
 */
export const ABSENT_RE = /Cannot find device|does not exist|No such device|No such process|No such file or directory/;

/** What `ip` (`argument "X" is wrong: Device does not exist`) and the namespace configurator say when device X is not there. */
export function deviceMissingRe(name: string): RegExp {
  return new RegExp(`"${name}" is wrong: Device does not exist|Cannot find device "${name}"`);
}

/**
 * How to run a program in a namespace. `ip -n NAME` (and `bridge -n NAME`) only take names (they always
 * prefix /run/netns), so a path such as /proc/PID/ns/net goes through `nsenter --net=PATH`; the process's
 * own namespace runs the program as is. Other programs run through `ip netns exec`.
 */
export function commandInNamespace(ns: NetnsRef | undefined, file: string, args: readonly string[]): { file: string; args: string[] } {
  if (ns === undefined) return { file, args: [...args] };
  if (ns.startsWith('/')) return { file: 'nsenter', args: [`--net=${ns}`, '--', file, ...args] };
  if (file === 'ip' || file === 'bridge') return { file, args: ['-n', ns, ...args] };
  return { file: 'ip', args: ['netns', 'exec', ns, file, ...args] };
}

export interface IpBatchOptions {
  /** What the whole batch does (used when the failing line is unknown). */
  readonly step: string;
  /** `ip -force -batch`: run every line; failures are returned instead of thrown. */
  readonly force?: boolean;
}

/**
 * Runs `ip` commands in one namespace (undefined: the process's own). With `program: 'bridge'` it runs
 * `bridge` instead (FDB entries): same batch format, same `Command failed -:N` markers.
 */
export class IpRunner {
  constructor(
    readonly netns: NetnsRef | undefined,
    readonly program: 'ip' | 'bridge' = 'ip',
  ) {}

  /** Runs the lines in one `ip -batch -` process. Without `force`, throws IpBatchError at the first failure. */
  async batch(lines: readonly IpLine[], options: IpBatchOptions): Promise<IpBatchFailure[]> {
    if (lines.length === 0) return [];
    const script = formatIpBatch(lines);
    const { file, args } = commandInNamespace(this.netns, this.program, options.force ? ['-force', '-batch', '-'] : ['-batch', '-']);
    try {
      const result = await run(file, args, { step: options.step, input: script, okExitCodes: options.force ? [1] : [] });
      if (result.exitCode === 0) return [];
      const failures = parseIpBatchFailures(result.stderr);
      // Exit 1 without a marker is not a per-line failure we can reason about.
      if (failures.some((f) => f.line === undefined) || failures.length === 0) {
        throw this.batchError(lines, options.step, file, args, result.stderr, undefined);
      }
      return failures;
    } catch (e) {
      if (e instanceof CommandError) throw this.batchError(lines, options.step, file, args, e.stderr, e);
      throw e;
    }
  }

  /** Runs `ip -j ARGS` (or `bridge -j ARGS`) and returns the parsed JSON; `null` when it says the device does not exist. */
  async json(ipArgs: readonly string[], step: string): Promise<unknown> {
    const { file, args } = commandInNamespace(this.netns, this.program, ['-j', ...ipArgs]);
    // `ip link/addr show` say `Device "X" does not exist.` (exit 1); `ip neigh show` and `bridge` say
    // `Cannot find device "X"` (exit 1 and 255).
    const result = await run(file, args, { step, okExitCodes: [1, 255] });
    if (result.exitCode !== 0) {
      if (/Device "[^"]*" does not exist|Cannot find device "[^"]*"/.test(result.stderr)) return null;
      throw new CommandError(step, [file, ...args].join(' '), result.exitCode, result.stderr);
    }
    // `ip -j` prints nothing at all (not `[]`) for some empty listings.
    if (result.stdout.trim() === '') return [];
    try {
      return JSON.parse(result.stdout) as unknown;
    } catch (e) {
      throw new InternalError(step, `${this.program} -j ${ipArgs.join(' ')} printed invalid JSON: ${(e as Error).message}`, { cause: e });
    }
  }

  private batchError(
    lines: readonly IpLine[],
    step: string,
    file: string,
    args: readonly string[],
    stderr: string,
    cause: unknown,
  ): IpBatchError {
    const failures = parseIpBatchFailures(stderr);
    const first = failures[0];
    const failedLine = first?.line === undefined ? undefined : lines[first.line - 1];
    const command = [file, ...args].join(' ');
    return new IpBatchError(step, command, failedLine, first?.message ?? stderr.trim(), failures, { cause });
  }
}
