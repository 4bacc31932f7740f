/**
 * When event-driven repair runs: change notifications (the kernel's, Open vSwitch's) arrive in bursts, and
 * one deleted bridge is dozens of them. The scheduler turns them into reconcile passes:
 * - coalesced: the first event starts a short quiet period (debounce); everything that arrives until the
 *   pass starts joins it, so a burst is one pass;
 * - one at a time: events during a pass schedule exactly one more pass after it (what the running pass
 *   listed may predate them);
 * - no loops: a pass's own changes come back as events; they set off one more pass, which finds nothing
 *   and writes nothing, so nothing comes back. Should something keep producing events anyway, empty passes
 *   in a row space the next ones out;
 * - contested objects: when another program keeps undoing the same repair (the same repair needed again and
 *   again within a window), event passes back off exponentially and the contest is reported. The periodic
 *   pass, the safety net, keeps its own interval.
 * Pure: time and timers are injected, so the policy is unit-tested without waiting.
 */

export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(timer: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimer: (t) => clearTimeout(t as NodeJS.Timeout),
};

export interface RepairPolicyOptions {
  /** Quiet period after the first event of a burst before the pass starts (ms). */
  readonly debounceMs: number;
  /** A repair needed this many times within `contestWindowMs` is contested. */
  readonly contestThreshold: number;
  readonly contestWindowMs: number;
  /** First back-off once contested; doubles with every contested pass, up to `maxBackoffMs`. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  /** Event passes in a row that repaired nothing before the next ones are spaced out (self-made events). */
  readonly emptyPassesBeforeSpacing: number;
}

export const DEFAULT_REPAIR_POLICY: RepairPolicyOptions = {
  debounceMs: 75,
  // Two or three repairs of one object in a row are ordinary (a restart of OVS is several); five in half a
  // minute is a fight.
  contestThreshold: 5,
  contestWindowMs: 30_000,
  initialBackoffMs: 1_000,
  maxBackoffMs: 60_000,
  emptyPassesBeforeSpacing: 20,
};

/** A repair another program keeps undoing. */
export interface Contest {
  /** The repair as the pass described it. */
  readonly repair: string;
  /** How often it was needed within the window. */
  readonly count: number;
  readonly windowMs: number;
  /** How long event passes now wait after an event. */
  readonly backoffMs: number;
}

/**
 * What counts as "the same repair": its text with the counts taken out (`3 removed, 5 added` differs from
 * pass to pass; the names and addresses it carries do not).
 */
export function repairKind(repair: string): string {
  return repair.replace(/\b\d+ (removed|added|port\(s\)|repairs?)(?!\w)/g, 'N $1');
}

/** Counts repairs per kind within a sliding window; says which are contested. */
export class ContestTracker {
  private readonly seen = new Map<string, number[]>();

  constructor(private readonly options: Pick<RepairPolicyOptions, 'contestThreshold' | 'contestWindowMs'>) {}

  /** Records a pass's repairs made at `now`; returns the contested ones with how often each was needed. */
  record(repairs: readonly string[], now: number): { repair: string; count: number }[] {
    const contested: { repair: string; count: number }[] = [];
    const since = now - this.options.contestWindowMs;
    for (const [kind, times] of this.seen) {
      const kept = times.filter((t) => t > since);
      if (kept.length === 0) this.seen.delete(kind);
      else this.seen.set(kind, kept);
    }
    for (const repair of new Set(repairs)) {
      const kind = repairKind(repair);
      const times = [...(this.seen.get(kind) ?? []), now];
      this.seen.set(kind, times);
      if (times.length >= this.options.contestThreshold) contested.push({ repair, count: times.length });
    }
    return contested;
  }

  /** Kinds tracked now (bounded by what was repaired within the window). */
  get size(): number {
    return this.seen.size;
  }
}

export interface PassOutcome {
  readonly repairs: readonly string[];
}

export interface RepairSchedulerHooks {
  /** Runs one pass for the events collected (their descriptions, deduplicated, oldest first). */
  runPass(causes: readonly string[]): Promise<PassOutcome>;
  /** A repair is contested (reported once per contested pass). */
  onContested?(contest: Contest): void;
  /** A pass failed (it is not retried by the scheduler: the next event or the periodic pass will). */
  onError?(error: unknown): void;
}

/** Empty passes further apart than this do not count as a run of echoes. */
const EMPTY_RUN_GAP_MS = 5_000;

/** At most this many causes are kept for one pass (a bridge deletion alone is dozens). */
const MAX_CAUSES = 8;

export class RepairScheduler {
  private readonly options: RepairPolicyOptions;
  private readonly contests: ContestTracker;
  private timer: unknown = null;
  private dueAt = 0;
  private running: Promise<void> | null = null;
  private causes: string[] = [];
  private droppedCauses = 0;
  private backoffMs = 0;
  private notBefore = 0;
  private emptyInARow = 0;
  private lastEmptyAt = -Infinity;
  private stopped = false;

  constructor(
    private readonly hooks: RepairSchedulerHooks,
    options: Partial<RepairPolicyOptions> = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.options = { ...DEFAULT_REPAIR_POLICY, ...options };
    this.contests = new ContestTracker(this.options);
  }

  /** A relevant change was seen: a pass follows within the debounce (or the back-off, when contested). */
  notify(cause: string): void {
    if (this.stopped) return;
    if (this.causes.length < MAX_CAUSES) {
      if (!this.causes.includes(cause)) this.causes.push(cause);
    } else this.droppedCauses++;
    // A pass running now picks this up after it ends (see afterPass).
    if (this.running) return;
    this.arm();
  }

  /** The back-off now in force for event passes (0: none). */
  get currentBackoffMs(): number {
    return this.backoffMs;
  }

  /** Whether a pass is scheduled or running. */
  get busy(): boolean {
    return this.timer !== null || this.running !== null;
  }

  /**
   * Cancels a scheduled pass and waits for a running one, up to `waitMs` (a pass held up by a hung command
   * must not hold a forced stop).
   */
  async stop(waitMs = Infinity): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    if (!this.running || waitMs <= 0) return;
    if (waitMs === Infinity) return this.running;
    let timer: unknown;
    await Promise.race([this.running, new Promise<void>((resolve) => (timer = this.clock.setTimer(resolve, waitMs)))]);
    this.clock.clearTimer(timer);
  }

  private arm(): void {
    const now = this.clock.now();
    const due = Math.max(now + this.options.debounceMs, this.notBefore);
    // Already armed for that time or earlier: the event joins the coming pass.
    if (this.timer !== null && this.dueAt <= due) return;
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.dueAt = due;
    this.timer = this.clock.setTimer(() => this.fire(), due - now);
  }

  private fire(): void {
    this.timer = null;
    if (this.stopped || this.running) return;
    const causes = this.droppedCauses > 0 ? [...this.causes, `and ${this.droppedCauses} more`] : this.causes;
    this.causes = [];
    this.droppedCauses = 0;
    this.running = this.hooks
      .runPass(causes)
      .then(
        (outcome) => this.afterPass(outcome.repairs),
        (e: unknown) => this.hooks.onError?.(e),
      )
      .finally(() => {
        this.running = null;
        if (this.causes.length > 0 && !this.stopped) this.arm();
      });
  }

  private afterPass(repairs: readonly string[]): void {
    const now = this.clock.now();
    const contested = this.contests.record(repairs, now);
    if (contested.length > 0) {
      this.backoffMs = this.backoffMs === 0 ? this.options.initialBackoffMs : Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
      this.notBefore = now + this.backoffMs;
      for (const c of contested) this.hooks.onContested?.({ ...c, windowMs: this.options.contestWindowMs, backoffMs: this.backoffMs });
      this.emptyInARow = 0;
      return;
    }
    if (repairs.length > 0) {
      // Repaired and not contested: the fight (if any) is over.
      this.backoffMs = 0;
      this.notBefore = 0;
      this.emptyInARow = 0;
      return;
    }
    if (this.contests.size === 0) this.backoffMs = 0;
    // Empty passes count as "in a row" only while they follow each other closely.
    if (now - this.lastEmptyAt > EMPTY_RUN_GAP_MS) this.emptyInARow = 0;
    this.lastEmptyAt = now;
    this.emptyInARow++;
    if (this.emptyInARow >= this.options.emptyPassesBeforeSpacing) {
      // Events keep coming and nothing needs repair: something (nodenet's own writes, a chatty neighbour)
      // echoes; space passes out by the debounce times the excess, up to a second.
      const spacing = Math.min(1_000, this.options.debounceMs * (this.emptyInARow - this.options.emptyPassesBeforeSpacing + 1));
      this.notBefore = Math.max(this.notBefore, now + spacing);
    } else if (this.backoffMs === 0) {
      this.notBefore = 0;
    }
  }
}
