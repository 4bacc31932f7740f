/** Reading conntrack's exit status and message (pure, unit-tested). */

/**
 * The three deletions flushConntrack runs in parallel: entries whose original source (`-s`), original
 * destination (`-d`) or reply source (`-r`) is the address. No `-p`: every protocol goes (TCP and UDP, and
 * ICMP too), so nothing stale of a reused address survives.
 */
export const CONNTRACK_FILTERS: readonly string[] = ['-s', '-d', '-r'];

/** How often one deletion is re-run after losing a race to its siblings (each run makes progress). */
export const CONNTRACK_ATTEMPTS = 5;

export type ConntrackOutcome = 'done' | 'retry' | 'failed';

/**
 * `conntrack -D` exits 1 both when nothing matched ("0 flow entries have been deleted") and when it aborted
 * because an entry it had listed was deleted meanwhile, e.g. by a parallel `-D` with another filter
 * ("such conntrack doesn't exist"): the first is success, the second needs another run.
 */
export function conntrackOutcome(exitCode: number, stderr: string): ConntrackOutcome {
  if (exitCode === 0) return 'done';
  if (/(?<!\d)0 flow entries have been deleted/.test(stderr)) return 'done';
  if (/such conntrack doesn't exist/.test(stderr)) return 'retry';
  return 'failed';
}
