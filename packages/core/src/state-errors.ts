/**
 * What a failed write of the daemon's records means, decided in one place: the state store (and the CNI
 * attachment store) turn the file system's errno into the status a client gets and a message saying what to
 * fix. A read-only or inaccessible state directory is UNAVAILABLE (a dependency of the daemon is not usable:
 * retry once it is fixed); a full one is RESOURCE_EXHAUSTED (free space, then retry). Anything else stays
 * INTERNAL, naming the step. Pure logic: the errno comes from the adapter that did the I/O.
 */
import { ResourceExhaustedError, UnavailableError, asNodenetError, type NodenetError } from './errors.js';

/** errno codes of a state write and what each means for the client. */
const STATE_WRITE_FAILURES: Readonly<Record<string, { readonly exhausted: boolean; readonly what: string; readonly fix: string }>> = {
  EROFS: {
    exhausted: false,
    what: "the state directory's file system is read-only",
    fix: 'remount it read-write (or repair the disk the kernel remounted read-only)',
  },
  EACCES: { exhausted: false, what: 'the daemon may not write in the state directory', fix: 'give the daemon (root) write access to it' },
  EPERM: { exhausted: false, what: 'the daemon may not write in the state directory', fix: 'give the daemon (root) write access to it' },
  ENOSPC: {
    exhausted: true,
    what: "the state directory's file system is full (no space or no inodes left)",
    fix: 'free space on it',
  },
  EDQUOT: { exhausted: true, what: "the daemon's disk quota on the state directory is used up", fix: 'raise the quota or free space' },
};

/** The errno code of a Node.js system error (`EROFS`, ...), or undefined. */
function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/**
 * A failed write of `path` while doing `step` (e.g. `record the interface`) as the error a client gets:
 * UNAVAILABLE for EROFS / EACCES / EPERM, RESOURCE_EXHAUSTED for ENOSPC / EDQUOT, otherwise what
 * asNodenetError makes of it (a NodenetError stays as it is).
 */
export function stateWriteError(e: unknown, step: string, path: string): NodenetError {
  const errno = errnoOf(e);
  const failure = errno === undefined ? undefined : STATE_WRITE_FAILURES[errno];
  if (!failure) return asNodenetError(e, step);
  const message = `${step}: ${failure.what} (${errno} writing ${path}): ${failure.fix}, then retry`;
  return failure.exhausted ? new ResourceExhaustedError(message, { cause: e }) : new UnavailableError(message, { cause: e });
}
