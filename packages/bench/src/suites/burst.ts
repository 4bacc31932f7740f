/**
 * Burst throughput: N creates with C concurrent clients (each its own connection for nodenet; concurrent
 * invocations through the runner for the peers), then the N deletes. Instances per second over the
 * batch's wall time, and each operation's latency under that load.
 */
import { cpuTimes, type CpuTimes } from '../cpu.js';
import type { NodeEnv } from '../node-env.js';
import { createNamespaces, deleteNamespaces } from '../namespaces.js';
import type { BenchOptions } from '../options.js';
import { round, roundSummary, summarize, type Summary } from '../stats.js';
import { portsFor, type Slot, type SystemName, type Wired } from '../systems/types.js';
import { firstErrors, runBatch } from './pool.js';

export interface BurstPhase {
  readonly ok: number;
  /** CPU time per instance (see cpu.ts: the daemon and its commands; the peer's processes), ms. */
  readonly cpuMsPerInstance: number | null;
  readonly seconds: number;
  readonly perSecond: number;
  readonly latency: Summary;
  readonly errors: number;
  readonly firstErrors: string[];
}

export interface BurstSystemResult {
  readonly instances: number;
  readonly concurrency: number;
  readonly create: BurstPhase;
  readonly delete: BurstPhase;
}

export interface BurstResult {
  readonly systems: Partial<Record<SystemName, BurstSystemResult>>;
}

function phase(
  outcome: { seconds: number; results: Array<{ ms: number } | undefined>; errors: string[] },
  cpuMs: number | null,
): BurstPhase {
  const done = outcome.results.filter((r): r is { ms: number } => r !== undefined);
  return {
    ok: done.length,
    cpuMsPerInstance: cpuMs === null || done.length === 0 ? null : round(cpuMs / done.length, 2),
    seconds: round(outcome.seconds, 3),
    perSecond: round(done.length / outcome.seconds, 1),
    latency: roundSummary(summarize(done.map((r) => r.ms))),
    errors: outcome.errors.length,
    firstErrors: firstErrors(outcome.errors),
  };
}

export async function runBurst(env: NodeEnv, options: BenchOptions): Promise<BurstResult> {
  const { concurrency } = options.burst;
  const systems: Partial<Record<SystemName, BurstSystemResult>> = {};
  for (const system of env.systems()) {
    const wanted = system.name === 'nodenet' ? options.burst.nodenetInstances : options.burst.peerInstances;
    const count = Math.min(wanted, system.capacity);
    if (system.name === 'nodenet') {
      env.nodenet.connect(concurrency);
      await env.nodenet.ready();
    }
    const namespaces = await createNamespaces(env.scope, count);
    const slots: Slot[] = namespaces.map((ns, index) => ({ index, ns, ports: portsFor(system, index) }));
    const wired: Array<Wired | undefined> = Array.from({ length: count }, () => undefined);
    const account = system.cpuAccount();
    const cpuBeforeCreates = await cpuTimes(account.pid);
    const creates = await runBatch(count, concurrency, async (i, worker) => {
      const w = await system.create(slots[i]!, worker);
      wired[i] = w;
      return w;
    });
    const cpuAfterCreates = await cpuTimes(account.pid);
    const live = slots
      .map((s, i) => ({ slot: s, wired: wired[i] }))
      .filter((x): x is { slot: Slot; wired: Wired } => x.wired !== undefined);
    const deletes = await runBatch(live.length, concurrency, (i, worker) => system.delete(live[i]!.slot, live[i]!.wired, worker));
    const cpuAfterDeletes = await cpuTimes(account.pid);
    await deleteNamespaces(namespaces);
    const used = (a: CpuTimes | undefined, b: CpuTimes | undefined) =>
      a && b ? b.childrenMs - a.childrenMs + (account.includeSelf ? b.selfMs - a.selfMs : 0) : null;
    systems[system.name] = {
      instances: count,
      concurrency,
      create: phase(creates, used(cpuBeforeCreates, cpuAfterCreates)),
      delete: phase(deletes, used(cpuAfterCreates, cpuAfterDeletes)),
    };
    const r = systems[system.name]!;
    options.log(
      `burst: ${system.name} ${count} creates at ${r.create.perSecond}/s (${r.create.errors} errors, ${r.create.cpuMsPerInstance ?? '?'} ms CPU each), ` +
        `deletes at ${r.delete.perSecond}/s (${r.delete.errors} errors, ${r.delete.cpuMsPerInstance ?? '?'} ms CPU each)`,
    );
  }
  return { systems };
}
