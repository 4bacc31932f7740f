// Conformance: crash consistency (the issue "Durable node state": every acknowledged create survives a
// crash; one not acknowledged is wholly there or wholly gone after the restart; nothing half-made stays),
// and how long a restart takes with many instances recorded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settle } from '@nodenet/testkit';
import { BACKENDS, NodeFixture } from '../src/index.js';
import { runCrashRounds } from '../src/crash-rounds.js';
import { consistencyProblems, crashDaemon, type CrashMode } from '../src/durability.js';

const ROUNDS = Number(process.env.NODENET_CRASH_ROUNDS ?? 30);
const GROUP_ROUNDS = Number(process.env.NODENET_CRASH_GROUP_ROUNDS ?? 10);

/** Runs `count` rounds on a fresh node; stops at the first round that went wrong. */
async function runRounds(backend: string, f: NodeFixture, count: number, mode: CrashMode): Promise<void> {
  const { seed, summary: s } = await runCrashRounds(f, count, [mode]);
  console.log(`[measure] ${backend}: ${mode} crash rounds survived: ${s.rounds} (seed ${seed}); ${JSON.stringify(s)}`);
  // The rounds did crash the daemon in the middle of work, not only between calls, and work was acknowledged.
  expect(s.cutShort.createsThere + s.cutShort.createsGone + s.cutShort.deletesThere + s.cutShort.deletesGone).toBeGreaterThan(0);
  expect(s.acknowledgedCreates).toBeGreaterThan(0);
}

// Periodic reconcile passes are off here (they have their own test alongside creates and deletes, in
// durability-drift): what these rounds see is the crash and the restart's doing.
const NO_PERIODIC_PASS = { reconcileIntervalSeconds: 86_400, repairOnChange: false };

describe.each(BACKENDS)('durability: kill -9 of the daemon during bursts of creates and deletes (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, config: NO_PERIODIC_PASS });
  });
  afterAll(() => f?.close());

  it(
    `${ROUNDS} rounds: acknowledged work survives, cut-short work is whole or gone, nothing is left half-made`,
    { timeout: 400_000 },
    async () => {
      await runRounds(backend, f, ROUNDS, 'daemon');
    },
  );
});

describe.each(BACKENDS)(
  'durability: the daemon killed with its whole process group (as a supervisor does) during bursts (%s backend)',
  (backend) => {
    let f: NodeFixture;
    beforeAll(async () => {
      f = await NodeFixture.start({ backend, config: NO_PERIODIC_PASS });
    });
    afterAll(() => f?.close());

    it(`${GROUP_ROUNDS} rounds, the ip/nft commands in flight killed too: still nothing half-made`, { timeout: 200_000 }, async () => {
      await runRounds(backend, f, GROUP_ROUNDS, 'group');
    });
  },
);

describe.each(BACKENDS)('durability: restart with 500 instances (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, cni: false });
    // A /22: room for 500 instances.
    await f.api.createContainerNetworkInterface({ ipAddress: '198.19.4.1', subNetwork: '198.19.4.0/22' });
  });
  afterAll(() => f?.close());

  it('500 instances recorded: the restarted daemon adopts them all and reports SERVING (time measured)', { timeout: 300_000 }, async () => {
    const count = 500;
    const addresses = Array.from({ length: count }, (_, i) => `198.19.${4 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}`);
    const started = performance.now();
    const outcomes: Awaited<ReturnType<typeof settle>>[] = [];
    for (let i = 0; i < count; i += 25) {
      outcomes.push(
        ...(await Promise.all(
          addresses.slice(i, i + 25).map((a, j) => settle(f.api.createInterface({ ipAddress: a, ports: [40000 + i + j] }))),
        )),
      );
    }
    const createMs = performance.now() - started;
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    const before = await f.ownedState();
    expect(before.records).toHaveLength(count);
    expect(consistencyProblems(before)).toEqual([]);

    const graceful = await f.restartDaemonWith((d) => d.stop());
    const gracefulRestore = (await graceful.daemon.waitForLog((l) => l.event === 'restored')).durationMs;
    const crashed = await f.restartDaemonWith((d) => crashDaemon(d, 'daemon'));
    const crashedRestore = (await crashed.daemon.waitForLog((l) => l.event === 'restored')).durationMs;
    console.log(
      `[measure] ${backend}: ${count} creates (25 at a time, 1 port each) took ${createMs.toFixed(0)} ms; start -> SERVING with ${count} instances: ` +
        `${graceful.servingMs.toFixed(0)} ms after SIGTERM (restore ${String(gracefulRestore)} ms), ${crashed.servingMs.toFixed(0)} ms after kill -9 (restore ${String(crashedRestore)} ms)`,
    );

    const after = await f.ownedState();
    expect(after.records.map((r) => r.handle).sort()).toEqual(before.records.map((r) => r.handle).sort());
    expect(consistencyProblems(after)).toEqual([]);
    // Adopted, not recreated: the same links (indexes) as before.
    const index = (s: typeof before) => Object.fromEntries(s.instanceLinks.map((l) => [l.name, l.ifindex]));
    expect(index(after)).toEqual(index(before));
    const inspected = await f.inspect();
    expect(inspected.interfaces).toHaveLength(count);
    expect(inspected.interfaces.filter((i) => i.state !== 'present')).toEqual([]);
    expect(inspected.lastReconcile?.repairs, 'nothing needed repair').toEqual([]);
  });
});
