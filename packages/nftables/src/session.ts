/**
 * Talking to a long-lived `nft -i` (pure functions, unit-tested; the process is @nodenet/sys's CommandSession).
 *
 * `nft -i` reads its standard input line by line (libedit, also from a pipe) and runs each line as one
 * transaction: commands joined with `; ` on one line are committed together or not at all. It prints nothing
 * on success; an error is three lines on standard error: `Error: <message>`, the input line echoed, and a
 * caret line (`      ^^^^`) under the offending part. After each request the session writes a bare marker
 * line (`nnmark7`), which nft answers, without touching the kernel, with
 * `Error: syntax error, unexpected newline, expecting string`, the echoed `nnmark7` and a caret line; the
 * text before that is the request's own output. The marker's caret line may come in a later chunk, so it may
 * lead the next request's text: caret lines are never part of an answer.
 */
import { InternalError } from '@nodenet/core';
import type { SessionFraming } from '@nodenet/sys';

export const MARKER_PREFIX = 'nnmark';

/** A caret line: spaces, then `^` (the error's place) and `~` (related places). */
const CARET_LINE = /^[ \t]*[\^~][ \t^~]*$/;

/** How many characters of an echoed line an answer keeps around the place nft points at. */
const SHOWN = 240;

export const nftSessionFraming: SessionFraming = {
  marker: (seq) => `${MARKER_PREFIX}${seq}\n`,
  find: findAnswer,
};

/**
 * Request `seq`'s answer in `stderr`: the lines before the marker's own `Error:` line, each echoed input
 * line replaced by the command nft points at (see pointedCommand), caret and blank lines dropped; consumed
 * through the echoed marker's newline. Null while the echoed marker has not fully arrived.
 */
export function findAnswer(stderr: string, seq: number): { output: string; consumed: number } | null {
  const echo = `${MARKER_PREFIX}${seq}\n`;
  let at: number;
  for (let from = 0; ; from = at + 1) {
    at = stderr.indexOf(echo, from);
    if (at < 0) return null;
    if (at === 0 || stderr[at - 1] === '\n') break;
  }
  const lines = stderr.slice(0, at).split('\n');
  lines.pop(); // '' after the newline that ends the line before the echo
  const kept = lines.filter((l) => l.trim() !== '');
  // The marker's own complaint; if it is missing (it never is with nft 1.0.6), keep everything.
  if (kept.length > 0 && kept[kept.length - 1]!.startsWith('Error:')) kept.pop();
  return { output: condense(kept).join('\n'), consumed: at + echo.length };
}

/** Drops caret lines, folding each into the echoed line above it (which becomes the command it points at). */
function condense(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (CARET_LINE.test(line)) continue; // a caret line with no echo above it: a previous marker's
    const caret = lines[i + 1];
    if (!line.startsWith('Error:') && caret !== undefined && CARET_LINE.test(caret)) {
      out.push(pointedCommand(line, caret));
      i++;
      continue;
    }
    out.push(shorten(line, 0, line.length));
  }
  return out;
}

/**
 * The command of a `; `-joined echoed line that the caret line points into (with its first marked place
 * quoted when the command is too long to show whole): a request joins many commands, and the whole line
 * would bury the one that failed.
 */
export function pointedCommand(echoed: string, caret: string): string {
  const start = caret.search(/[\^~]/);
  const end = caret.trimEnd().length;
  if (start < 0 || start >= echoed.length) return shorten(echoed, 0, echoed.length);
  const from = echoed.lastIndexOf('; ', start);
  const next = echoed.indexOf('; ', start);
  const commandStart = from < 0 ? 0 : from + 2;
  const commandEnd = next < 0 ? echoed.length : next;
  const command = echoed.slice(commandStart, commandEnd);
  if (command.length <= SHOWN) return command;
  const marked = echoed.slice(start, Math.min(end, commandEnd));
  return `${shorten(command, 0, command.length)} (at "${shorten(marked, 0, marked.length)}")`;
}

function shorten(text: string, from: number, to: number): string {
  return to - from <= SHOWN ? text.slice(from, to) : `${text.slice(from, from + SHOWN)}... (${to - from} characters)`;
}

/** Whether an answer reports a failed transaction (nothing of it was applied). */
export function answerFailed(output: string): boolean {
  return /(^|\n)Error:/.test(output);
}

/**
 * A script of one-line commands (as script.ts builds them, each ending in a newline) as one `nft -i` line:
 * the commands joined with `; `, committed as one transaction. Refuses what would not stay one line or
 * would be read otherwise: a `#` (comment to the end of the line), a trailing `\` (continues the line),
 * control characters, `quit`, and the marker itself. Null when the script has no command.
 */
export function sessionLine(script: string, step: string): string | null {
  const commands = script.split('\n').filter((c) => c.trim() !== '');
  for (const c of commands) {
    if (/[#\\\p{Cc}]/u.test(c)) {
      throw new InternalError(
        step,
        `an nft command for the session holds a comment, a backslash or a control character: ${JSON.stringify(c.slice(0, 200))}`,
      );
    }
    if (c.trim() === 'quit' || c.trim().startsWith(MARKER_PREFIX)) {
      throw new InternalError(step, `${JSON.stringify(c.slice(0, 200))} is not an nft command for the session`);
    }
  }
  return commands.length === 0 ? null : commands.join('; ');
}
