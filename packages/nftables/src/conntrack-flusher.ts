/**
 * Deleting the connection-tracking entries of released addresses. The first way is a long-lived helper
 * (helpers/conntrack-netlink.pl, perl-base only) that walks the table once over ctnetlink for every address
 * and both families: each `conntrack -D` line walks the kernel's whole conntrack hash, which all namespaces
 * share (5-45 ms a walk here, idle to loaded), and the three filters per address made that 3 walks for an
 * IPv4 instance and 6 for a dual-stack one, plus a process start. Where the helper cannot run (no perl), one
 * `conntrack -R` does the same deletions.
 */
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InternalError, type IpAddress, type Logger } from '@nodenet/core';
import {
  CommandError,
  CommandSession,
  GroupCommitter,
  SessionExitedError,
  helperLineFraming,
  type RunOptions,
  type RunResult,
} from '@nodenet/sys';
import { CONNTRACK_ATTEMPTS, conntrackOutcome, conntrackScript } from './conntrack.js';

/**
 * The helper program, found relative to this module: helpers/ sits beside src/ and dist/ in the package
 * (listed in its `files`), so it is found the same from the source tree, the build and an installed tarball.
 */
export const CONNTRACK_HELPER_PATH = fileURLToPath(new URL('../helpers/conntrack-netlink.pl', import.meta.url));

/** How the helper's start fails when it cannot run on this host (as opposed to a request failing). */
const HELPER_CANNOT_RUN = /Can't locate|Can't open perl script|nsenter: failed to execute/;

export interface ConntrackFlusherOptions {
  readonly logger: Logger;
  /** The helper's command line, already wrapped to run in the node namespace. */
  readonly helper: readonly [string, ...string[]];
  /** The `conntrack` command of the fallback. */
  readonly conntrack: string;
  /** Runs a one-shot command in the node namespace (missing there is UNAVAILABLE). */
  readonly exec: (file: string, args: readonly string[], options: RunOptions) => Promise<RunResult>;
}

export class ConntrackFlusher {
  /** Concurrent flushes share one walk (or one `conntrack` process); a failed group is retried flush by flush. */
  private readonly flushes = new GroupCommitter<readonly IpAddress[]>((groups) => this.flushNow(groups.flat()));
  /** The helper's process, started on first use. */
  private session: CommandSession | undefined;
  private readonly helperCommand: string;
  /** Why the helper cannot be used here (then `conntrack -R` is), once known. */
  private unusable: string | undefined;

  constructor(private readonly options: ConntrackFlusherOptions) {
    this.helperCommand = options.helper.join(' ');
  }

  /** Deletes the entries whose original source, original destination or reply source is one of `addresses`. */
  flush(addresses: readonly IpAddress[]): Promise<void> {
    return addresses.length === 0 ? Promise.resolve() : this.flushes.submit(addresses);
  }

  /** Ends the helper's process after what was already written to it; a later flush starts another. */
  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private async flushNow(addresses: readonly IpAddress[]): Promise<void> {
    const step =
      addresses.length <= 2
        ? `flush connection tracking of ${addresses.join(' and ')}`
        : `flush connection tracking of ${addresses.length} addresses`;
    if (this.unusable === undefined && (await this.flushByHelper(addresses, step))) return;
    await this.flushByCommand(addresses, step);
  }

  /** False when the helper cannot run here (it changed nothing); throws when it ran and failed. */
  private async flushByHelper(addresses: readonly IpAddress[], step: string): Promise<boolean> {
    let answer: string;
    try {
      answer = await this.helperSession().request(`flush\t${addresses.join('\t')}\n`, step);
    } catch (e) {
      // No perl (ENOENT is UNAVAILABLE; in another namespace nsenter says it could not execute it), or a
      // perl without what the helper needs.
      if ((e as { code?: string }).code === 'UNAVAILABLE' || (e instanceof SessionExitedError && HELPER_CANNOT_RUN.test(e.output))) {
        this.unusable = e instanceof SessionExitedError ? e.output : (e as Error).message;
        this.options.logger.warn({ reason: this.unusable }, 'the conntrack cleaner cannot run here: conntrack -R deletes the entries');
        return false;
      }
      throw e;
    }
    if (answer === '') return true;
    throw new CommandError(step, this.helperCommand, undefined, answer.replace(/^fail /, ''));
  }

  private helperSession(): CommandSession {
    if (this.session) return this.session;
    const [file, ...args] = this.options.helper;
    this.session = new CommandSession({ name: `the conntrack cleaner (${this.helperCommand})`, file, args, framing: helperLineFraming });
    return this.session;
  }

  /**
   * One `conntrack -R` (its three deletions per address run one after another in one process, where three
   * `conntrack -D` cost three process starts).
   */
  private async flushByCommand(addresses: readonly IpAddress[], step: string): Promise<void> {
    let dir: string | undefined;
    try {
      let file: string;
      try {
        dir = await mkdtemp(join(tmpdir(), 'nodenet-conntrack-'));
        file = join(dir, 'delete');
        await writeFile(file, conntrackScript(addresses), { mode: 0o600 });
      } catch (e) {
        throw new InternalError(
          step,
          `cannot write conntrack's deletions to a temporary file: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
      }
      const args = ['-R', file];
      for (let attempt = 1; ; attempt++) {
        const r = await this.options.exec(this.options.conntrack, args, { step, okExitCodes: [1] });
        const outcome = conntrackOutcome(r.exitCode, r.stderr);
        if (outcome === 'done') return;
        if (outcome === 'retry' && attempt < CONNTRACK_ATTEMPTS) continue;
        throw new CommandError(step, [this.options.conntrack, ...args].join(' '), r.exitCode, r.stderr || r.stdout);
      }
    } finally {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    }
  }
}
