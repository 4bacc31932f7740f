#!/usr/bin/env node
// The long version of durability-crash.int.test.ts: many rounds of kill -9 during bursts of concurrent
// creates and deletes against the real daemon in a test topology (namespaces nnt-<pid>-*, removed at the end).
// Runs on the built packages: `npm run build` at the repository root first. As root:
//
//   node packages/conformance/scripts/crash-stress.mjs [--rounds 200] [--seed N] [--burst 10]
//        [--spread-ms 200] [--max-kill-delay-ms 800] [--fixed-kill-delay] [--target-live 16] [--full-every 5]
//        [--modes daemon,group] [--interval 1] [--backend iproute2] [--keep-going]
//        [--restart-instances 0]
//
// --restart-instances N: afterwards, on a fresh node, create N instances and time start -> SERVING after a
// SIGTERM and after a kill -9.
// Exit code: 0 when every round held, 1 when one did not (its problems are printed), 2 on bad arguments.
import { parseArgs } from 'node:util';
import { settle } from '@nodenet/testkit';
import { NodeFixture } from '../dist/fixture.js';
import { CrashRounds, summarize } from '../dist/crash-rounds.js';
import { consistencyProblems, crashDaemon } from '../dist/durability.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '200' },
    seed: { type: 'string' },
    burst: { type: 'string', default: '10' },
    'spread-ms': { type: 'string', default: '200' },
    'max-kill-delay-ms': { type: 'string', default: '800' },
    'target-live': { type: 'string', default: '16' },
    'full-every': { type: 'string', default: '5' },
    modes: { type: 'string', default: 'daemon,group' },
    interval: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'iproute2' },
    'keep-going': { type: 'boolean', default: false },
    'fixed-kill-delay': { type: 'boolean', default: false },
    'restart-instances': { type: 'string', default: '0' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('see the comment at the top of packages/conformance/scripts/crash-stress.mjs');
  process.exit(0);
}
const int = (name) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a whole number, got ${values[name]}`);
    process.exit(2);
  }
  return n;
};
const modes = values.modes.split(',').map((m) => m.trim());
if (modes.length === 0 || modes.some((m) => m !== 'daemon' && m !== 'group')) {
  console.error(`--modes takes daemon and/or group, got ${values.modes}`);
  process.exit(2);
}
const rounds = int('rounds');
const restartInstances = int('restart-instances');

let failed = false;
const f = await NodeFixture.start({ backend: values.backend, config: { reconcileIntervalSeconds: Math.max(1, int('interval')) } });
try {
  const crash = new CrashRounds({
    fixture: f,
    ...(values.seed !== undefined ? { seed: int('seed') } : {}),
    burst: int('burst'),
    spreadMs: int('spread-ms'),
    maxKillDelayMs: int('max-kill-delay-ms'),
    fixedKillDelay: values['fixed-kill-delay'],
    targetLive: int('target-live'),
    fullCheckEvery: Math.max(1, int('full-every')),
    modes,
    log: (line) => console.log(line),
  });
  console.log(`crash-stress: ${rounds} rounds, seed ${crash.seed}, backend ${values.backend}, node ${f.ns}`);
  const reports = [];
  const started = performance.now();
  for (let i = 0; i < rounds; i++) {
    let report;
    try {
      report = await crash.round(i, { fullCheck: i === rounds - 1 });
    } catch (e) {
      failed = true;
      console.log(`round ${i} could not be run to its end: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      break;
    }
    reports.push(report);
    if (report.problems.length > 0) {
      failed = true;
      console.log(
        `round ${i} FAILED (${report.mode} crash after ${report.killDelayMs} ms; restore repairs: ${JSON.stringify(report.restoreRepairs)}; ` +
          `repairs by the crashed daemon's periodic passes during the burst: ${JSON.stringify(report.passRepairs)}):`,
      );
      for (const p of report.problems) console.log(`  - ${p}`);
      if (!values['keep-going']) break;
    }
  }
  const summary = summarize(reports);
  console.log(
    `crash-stress: ${summary.rounds - summary.roundsWithProblems} of ${summary.rounds} rounds held (seed ${crash.seed}) in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
  console.log(JSON.stringify(summary, null, 2));
} finally {
  await f.close();
}

if (restartInstances > 0) {
  const g = await NodeFixture.start({ backend: values.backend, cni: false });
  try {
    // A /20 (4094 hosts) from 198.19.16.0: room for up to 4000 instances.
    if (restartInstances > 4000) throw new Error('--restart-instances is at most 4000');
    await g.api.createContainerNetworkInterface({ ipAddress: '198.19.16.1', subNetwork: '198.19.16.0/20' });
    const addressOf = (i) => `198.19.${16 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}`;
    const t0 = performance.now();
    for (let i = 0; i < restartInstances; i += 25) {
      const batch = [];
      for (let j = i; j < Math.min(i + 25, restartInstances); j++)
        batch.push(settle(g.api.createInterface({ ipAddress: addressOf(j), ports: [20000 + j] })));
      const failures = (await Promise.all(batch)).filter((o) => !o.ok);
      if (failures.length > 0) throw new Error(`creates failed: ${JSON.stringify(failures.slice(0, 3))}`);
    }
    console.log(`restart-instances: ${restartInstances} creates took ${(performance.now() - t0).toFixed(0)} ms`);
    for (const [name, end] of [
      ['SIGTERM', (d) => d.stop()],
      ['kill -9', (d) => crashDaemon(d, 'daemon')],
    ]) {
      const { daemon, servingMs } = await g.restartDaemonWith(end);
      const restored = await daemon.waitForLog((l) => l.event === 'restored');
      const state = await g.ownedState();
      const problems = consistencyProblems(state);
      console.log(
        `restart-instances: after ${name}: start -> SERVING ${servingMs.toFixed(0)} ms with ${state.records.length} instances ` +
          `(restore ${restored.durationMs} ms, ${restored.repairs.length} repairs, ${problems.length} consistency problems)`,
      );
      if (problems.length > 0 || state.records.length !== restartInstances) failed = true;
    }
  } finally {
    await g.close();
  }
}
process.exit(failed ? 1 : 0);
