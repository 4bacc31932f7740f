/**
 * `ip` as a long-lived process in one namespace (`ip -force -batch -` fed on stdin): the per-request link
 * work of creates and deletes costs the kernel's time instead of a process start each (measured: 2-3 ms
 * per spawned `ip -batch` against 0.05 ms per line through the session).
 *
 * Each line is its own request, followed by a marker line `nnmarkN` that ip rejects at once (`Object
 * "nnmarkN" is unknown`, then `Command failed -:L`) without asking the kernel; what ip printed between two
 * markers is that line's failure. Without `force`, a script stops at its first failing line, as a plain
 * `ip -batch` would; its later lines are never written (they could act on a link someone else owns).
 *
 * ip remembers the interface index of every name it resolved (for `master X` among others), so a link
 * deleted and recreated behind the session's back would be addressed by its old index: callers reset the
 * session whenever they recreate a link it may have resolved (the CNI bridge), and the session is
 * replaced every few thousand requests.
 */
import { InternalError, type NetnsRef } from '@nodenet/core';
import { CommandSession, SessionExitedError, type SessionFraming } from '@nodenet/sys';
import { IpBatchError, commandInNamespace, formatIpBatch, type IpBatchFailure, type IpLine } from './ip-batch.js';

const MARKER_PREFIX = 'nnmark';

/** The framing of `ip -force -batch -`: see the file comment. Exported for tests. */
export const ipSessionFraming: SessionFraming = {
  marker: (seq) => `${MARKER_PREFIX}${seq}\n`,
  find(stderr, seq) {
    const object = `Object "${MARKER_PREFIX}${seq}" is unknown, try "ip help".\n`;
    const at = stderr.indexOf(object);
    if (at < 0) return null;
    const after = at + object.length;
    const end = stderr.indexOf('\n', after);
    if (end < 0 || !/^Command failed \S+:\d+$/.test(stderr.slice(after, end))) return null;
    return { output: stripLineMarkers(stderr.slice(0, at)), consumed: end + 1 };
  },
};

/** A line's failure text without ip's `Command failed -:N` lines (line numbers count the whole session). */
function stripLineMarkers(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^Command failed \S+:\d+$/.test(l.trim()))
    .join('\n');
}

export interface IpSessionOptions {
  readonly step: string;
  /** Run every line and return the failures (as `ip -force -batch`); default: stop at the first. */
  readonly force?: boolean;
}

export class IpSession {
  private readonly session: CommandSession;
  private readonly command: string;

  constructor(readonly netns: NetnsRef | undefined) {
    const { file, args } = commandInNamespace(netns, 'ip', ['-force', '-batch', '-']);
    this.command = [file, ...args].join(' ');
    this.session = new CommandSession({
      name: `${this.command} (session${netns ? ` in ${netns}` : ''})`,
      file,
      args,
      framing: ipSessionFraming,
      recycleAfter: 5_000,
    });
  }

  /**
   * Runs the lines in order. Without `force`, throws IpBatchError naming the first failing line (the rest are
   * not run); with it, runs them all (written at once, no waiting in between) and returns the failures.
   */
  async batch(lines: readonly IpLine[], options: IpSessionOptions): Promise<IpBatchFailure[]> {
    // Validates every token, as for a one-shot batch (a line must not split or smuggle a second line).
    const texts = formatIpBatch(lines).split('\n').slice(0, lines.length);
    if (options.force) {
      const outputs = await Promise.all(texts.map((t, i) => this.line(t, lines[i]!.step)));
      return outputs.flatMap((message, i) => (message === '' ? [] : [{ line: i + 1, message }]));
    }
    for (const [i, text] of texts.entries()) {
      const message = await this.line(text, lines[i]!.step);
      if (message !== '') {
        throw new IpBatchError(options.step, this.command, lines[i], message, [{ line: i + 1, message }]);
      }
    }
    return [];
  }

  /** Replaces the process after what was written to it (it may hold a stale index of a recreated link). */
  reset(): void {
    this.session.reset();
  }

  close(): void {
    this.session.close();
  }

  private async line(text: string, step: string): Promise<string> {
    try {
      return await this.session.request(`${text}\n`, step);
    } catch (e) {
      // ip exits at once on some malformed arguments (`Error: argument "x" is wrong`): that line failed.
      if (e instanceof SessionExitedError && e.output !== '') return stripLineMarkers(e.output);
      if (e instanceof SessionExitedError) throw new InternalError(step, e.reason, { cause: e });
      throw e;
    }
  }
}
