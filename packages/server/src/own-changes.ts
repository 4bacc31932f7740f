/**
 * nodenet's own deletions, told apart from drift. Every instance nodenet deletes comes back from the change
 * monitors (its link deleted, its packet-filter elements deleted, its OVSDB rows deleted), and each set off a
 * repair pass that found nothing to do: with 32 clients deleting, a pass every few deletes, each listing every
 * link and element of the node, and the creates queued behind them waited (create p99 at 2,000 instances).
 *
 * The core says what a release is about to remove (OwnChangeNotice: the instance's link names and addresses,
 * which every link, address and element of that instance names) and when it is done; a change notification
 * about one of those subjects while the release runs, or up to a grace period after it (the monitors report
 * late on a loaded host), is nodenet's own. Anything else is drift as before: another instance's element, a
 * table, a chain, an infrastructure link. A create that gives a subject to a new instance ends its grace at
 * once, so a deletion of the new instance's things is drift again. A notification that comes later than the
 * grace costs one pass that finds nothing, as before.
 */
import type { OwnChangeNotice } from '@nodenet/core';

/** How long after a release its late notifications still count as nodenet's own. */
export const OWN_CHANGE_GRACE_MS = 10_000;

/** Instance link names (see change-events.ts): the only links an own change names. */
const INSTANCE_LINK = /^nn[hi]-[0-9a-f]{8}$/;

export class OwnChanges {
  /** Subjects of releases in progress, with how many releases name each. */
  private readonly inProgress = new Map<string, number>();
  /** Subjects of finished releases, each to the moment its grace ends (insertion order is expiry order). */
  private readonly lingering = new Map<string, number>();
  private ignored = 0;

  constructor(
    private readonly graceMs = OWN_CHANGE_GRACE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The core's notice (NodeNetworkOptions.onOwnChange). */
  note(notice: OwnChangeNotice): void {
    this.sweep();
    for (const subject of notice.subjects) {
      if (notice.phase === 'begin') {
        this.inProgress.set(subject, (this.inProgress.get(subject) ?? 0) + 1);
      } else if (notice.phase === 'end') {
        const left = (this.inProgress.get(subject) ?? 1) - 1;
        if (left > 0) this.inProgress.set(subject, left);
        else this.inProgress.delete(subject);
        // Re-inserted at the end, so the map stays in expiry order.
        this.lingering.delete(subject);
        this.lingering.set(subject, this.now() + this.graceMs);
      } else {
        this.lingering.delete(subject);
      }
    }
  }

  /** Whether a change naming `subjects` is nodenet's own (one of them is being released, or just was). */
  explains(subjects: readonly string[]): boolean {
    if (subjects.length === 0) return false;
    this.sweep();
    const own = subjects.some((s) => this.inProgress.has(s) || this.lingering.has(s));
    if (own) this.ignored++;
    return own;
  }

  /** Changes explained so far (for the log). */
  get explained(): number {
    return this.ignored;
  }

  /** Subjects remembered now (releases in progress and in their grace). */
  get size(): number {
    return this.inProgress.size + this.lingering.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [subject, until] of this.lingering) {
      if (until > now) break;
      this.lingering.delete(subject);
    }
  }
}

/**
 * The subjects a change (as change-events.ts's classifiers and the OVS followers describe it) names, when it
 * is of a kind an instance's release makes: an instance link deleted, an address deleted from one, an
 * instance's OVSDB row deleted. Anything else names none (never nodenet's own).
 */
export function subjectsOfChange(change: string): string[] {
  const m =
    /^link (\S+) deleted$/.exec(change) ??
    /^address \S+ deleted from (\S+)$/.exec(change) ??
    /^(?:Interface|Port) (\S+) deleted from OVSDB$/.exec(change);
  return m && INSTANCE_LINK.test(m[1]!) ? [m[1]!] : [];
}

/**
 * The subjects of a line of `nft -j monitor` that deletes an element of nodenet's tables: the strings of the
 * element (its key, and a map element's value), e.g. `["nnh-0a1b2c3d", "198.19.16.5"]` from allowed_sources or
 * `["tcp", "198.19.16.5"]` from published_ports. Anything else (a table, chain, rule or set deleted) names none.
 */
export function subjectsOfNftLine(line: string): string[] {
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return [];
  }
  const element = (event as { delete?: { element?: { table?: unknown; elem?: unknown } } } | null)?.delete?.element;
  if (typeof element !== 'object' || element === null || element.table !== 'nodenet') return [];
  const strings: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') strings.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
  };
  walk(element.elem);
  return strings;
}
