import { describe, expect, it } from 'vitest';
import { ContestTracker, RepairScheduler, repairKind, type Clock, type Contest, type PassOutcome } from '@nodenet/core';

/** A clock whose timers fire only when the test advances it. */
class ManualClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimer(timer: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== timer);
  }
  /** Advances time, firing due timers in order, letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
  get pending(): number {
    return this.timers.length;
  }
}

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function harness(outcomes: (causes: readonly string[]) => PassOutcome | Promise<PassOutcome> = () => ({ repairs: [] })) {
  const clock = new ManualClock();
  const passes: { at: number; causes: readonly string[] }[] = [];
  const contests: Contest[] = [];
  const scheduler = new RepairScheduler(
    {
      runPass: async (causes) => {
        passes.push({ at: clock.now(), causes });
        return outcomes(causes);
      },
      onContested: (c) => contests.push(c),
    },
    {
      debounceMs: 50,
      contestThreshold: 3,
      contestWindowMs: 10_000,
      initialBackoffMs: 1_000,
      maxBackoffMs: 8_000,
      emptyPassesBeforeSpacing: 5,
    },
    clock,
  );
  return { clock, passes, contests, scheduler };
}

describe('RepairScheduler', () => {
  it('coalesces a burst of events into one pass after the debounce, naming the causes once each', async () => {
    const { clock, passes, scheduler } = harness();
    for (let i = 0; i < 30; i++) {
      scheduler.notify(i % 2 === 0 ? 'link nodenet0 deleted' : 'table ip nodenet deleted');
      await clock.advance(1);
    }
    expect(passes).toEqual([]);
    await clock.advance(60);
    expect(passes).toHaveLength(1);
    expect(passes[0]!.at).toBe(50);
    expect(passes[0]!.causes).toEqual(['link nodenet0 deleted', 'table ip nodenet deleted']);
    await clock.advance(1_000);
    expect(passes).toHaveLength(1);
  });

  it('events during a running pass set off exactly one more pass after it', async () => {
    let release: (() => void) | undefined;
    const { clock, passes, scheduler } = harness(() => new Promise<PassOutcome>((r) => (release = () => r({ repairs: [] }))));
    scheduler.notify('a');
    await clock.advance(50);
    expect(passes).toHaveLength(1);
    scheduler.notify('b');
    scheduler.notify('c');
    await clock.advance(500);
    expect(passes).toHaveLength(1);
    release!();
    await flush();
    await clock.advance(50);
    expect(passes).toHaveLength(2);
    expect(passes[1]!.causes).toEqual(['b', 'c']);
  });

  it("a pass's own changes echoing back cause one more pass, not a loop", async () => {
    // The first pass repairs (its writes come back as an event); the second finds nothing and writes nothing.
    let n = 0;
    const h = harness(() => ({ repairs: n++ === 0 ? ['nodenet0 was missing: created'] : [] }));
    h.scheduler.notify('link nodenet0 deleted');
    await h.clock.advance(50);
    h.scheduler.notify('link nodenet0 created by the repair'); // the echo
    await h.clock.advance(50);
    await h.clock.advance(10_000);
    expect(h.passes).toHaveLength(2);
    expect(h.clock.pending).toBe(0);
  });

  it('a repair undone again and again is reported as contested and event passes back off exponentially', async () => {
    const { clock, passes, contests, scheduler } = harness(() => ({ repairs: ['rules of nni-1 (198.19.1.2) were missing: restored'] }));
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      // The other program undoes the repair right after each pass.
      const count = passes.length;
      const at = clock.now();
      scheduler.notify('element deleted');
      while (passes.length === count) await clock.advance(10);
      waits.push(passes[passes.length - 1]!.at - at);
    }
    expect(contests.map((c) => c.backoffMs)).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(contests[0]).toMatchObject({ repair: 'rules of nni-1 (198.19.1.2) were missing: restored', count: 3, windowMs: 10_000 });
    // Debounced at first; once contested, each event pass waits out the back-off in force.
    expect(waits.slice(0, 3)).toEqual([50, 50, 50]);
    expect(waits.slice(3).map((w) => Math.round(w / 1000) * 1000)).toEqual([1_000, 2_000, 4_000]);
  });

  it('the back-off ends once the contest window holds no repeated repair', async () => {
    let repairs = ['flows of nodenet0 differed from its ports: 1 removed, 2 added'];
    const { clock, passes, contests, scheduler } = harness(() => ({ repairs }));
    for (let i = 0; i < 3; i++) {
      scheduler.notify('flow deleted');
      await clock.advance(100);
    }
    expect(contests).toHaveLength(1);
    expect(scheduler.currentBackoffMs).toBe(1_000);
    repairs = [];
    await clock.advance(20_000); // the window empties
    scheduler.notify('flow deleted');
    await clock.advance(20_000);
    expect(scheduler.currentBackoffMs).toBe(0);
    const before = passes.length;
    scheduler.notify('flow deleted');
    await clock.advance(50);
    expect(passes.length).toBe(before + 1);
  });

  it('spaces passes out when events keep coming and no pass repairs anything', async () => {
    const { clock, passes, scheduler } = harness();
    for (let i = 0; i < 40; i++) {
      scheduler.notify('neighbour changed');
      await clock.advance(10);
      while (scheduler.busy) await clock.advance(10);
    }
    const waits = passes.slice(1).map((p, i) => p.at - passes[i]!.at);
    expect(waits.slice(0, 4).every((w) => w === 50 || w === 60)).toBe(true);
    expect(Math.max(...waits)).toBeGreaterThan(500);
    expect(Math.max(...waits)).toBeLessThanOrEqual(1_010);
  });

  it('stop cancels a scheduled pass', async () => {
    const { clock, passes, scheduler } = harness();
    scheduler.notify('x');
    await scheduler.stop();
    await clock.advance(1_000);
    scheduler.notify('y');
    await clock.advance(1_000);
    expect(passes).toEqual([]);
  });
});

describe('ContestTracker', () => {
  it('counts the same repair within the window only, whatever its counts', () => {
    const t = new ContestTracker({ contestThreshold: 3, contestWindowMs: 1_000 });
    expect(t.record(['flows of nodenet0 differed from its ports: 3 removed, 5 added'], 0)).toEqual([]);
    expect(t.record(['flows of nodenet0 differed from its ports: 1 removed, 1 added'], 500)).toEqual([]);
    expect(t.record(['flows of nodenet0 differed from its ports: 2 removed, 0 added'], 900)).toHaveLength(1);
    expect(t.record(['flows of nodenet0 differed from its ports: 2 removed, 0 added'], 5_000)).toEqual([]);
    expect(t.size).toBe(1);
  });

  it('keeps names and addresses apart', () => {
    expect(repairKind('rules of nni-1 (198.19.1.2) were missing: restored')).not.toBe(
      repairKind('rules of nni-2 (198.19.1.3) were missing: restored'),
    );
    expect(repairKind('bridge nodenet0 recreated with its 4 port(s)')).toBe(repairKind('bridge nodenet0 recreated with its 7 port(s)'));
  });
});
