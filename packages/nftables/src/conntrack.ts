/**
 * Deleting connection-tracking entries with `conntrack -R` and reading its exit status (pure, unit-tested): the
 * way conntrack-flusher.ts takes where its ctnetlink helper cannot run.
 */
import { addressFamily, parseIpAddress, type IpAddress } from '@nodenet/core';

/**
 * The three deletions per address: entries whose original source (`-s`), original destination (`-d`) or
 * reply source (`-r`) is the address. No `-p`: every protocol goes (TCP and UDP, and ICMP too), so nothing
 * stale of a reused address survives.
 */
export const CONNTRACK_FILTERS: readonly string[] = ['-s', '-d', '-r'];

/** How often a deletion file is re-run after an entry vanished under it (each run makes progress). */
export const CONNTRACK_ATTEMPTS = 5;

/**
 * The file `conntrack -R FILE` runs: one `-D` line per filter and address, run one after another by one
 * process (each line is its own dump of the table, then deletions). conntrack 1.4.7 cannot read the file
 * from Node's standard input (a socket: "Failed to open file /dev/stdin"), hence a file.
 */
export function conntrackScript(addresses: readonly IpAddress[]): string {
  return addresses
    .flatMap((a, i) => {
      const address = parseIpAddress(a, `addresses[${i}]`);
      // conntrack lists IPv4 entries unless told the family: an IPv6 address needs -f ipv6.
      const family = addressFamily(address) === 6 ? '-f ipv6 ' : '';
      return CONNTRACK_FILTERS.map((f) => `-D ${family}${f} ${address}\n`);
    })
    .join('');
}

export type ConntrackOutcome = 'done' | 'retry' | 'failed';

/**
 * `conntrack -R` exits 0 when every line ran (deleting nothing is no error there), and 1 when a line
 * aborted the run. A `-D` aborts when an entry it had listed was deleted before its turn (by expiry or by
 * someone else; conntrack 1.4.8 skips those, 1.4.7 stops with "such conntrack doesn't exist"): running the
 * file again finishes the job. (A lone `conntrack -D` also exits 1 when nothing matched: "0 flow entries
 * have been deleted" is success too.)
 */
export function conntrackOutcome(exitCode: number, stderr: string): ConntrackOutcome {
  if (exitCode === 0) return 'done';
  if (/(?<!\d)0 flow entries have been deleted/.test(stderr)) return 'done';
  if (/such conntrack doesn't exist/.test(stderr)) return 'retry';
  return 'failed';
}
