/**
 * The ovs backend next to iproute2, one bench node each (no peers; ovs with its private Open vSwitch):
 *
 * - instance latency on empty nodes: create/delete cycles interleaved between the two (AB AB ...), as the
 *   latency suite does between nodenet and the peers; p50 ovs / p50 iproute2;
 * - the cost of one more port (create + delete p50) with `existing` instances on the node: the scale
 *   suite's fill-and-sample (runScale) with those steps on each backend. iproute2's figures come from this
 *   run's scale suite when it ran and sampled those sizes.
 */
import type { BackendName } from '../cluster/peer-facts.js';
import { BACKEND_NAMES } from '../cluster/peer-facts.js';
import { NodeEnv } from '../node-env.js';
import { createNamespaces } from '../namespaces.js';
import type { BenchOptions } from '../options.js';
import { ratio, round, roundSummary, summarize, type Summary } from '../stats.js';
import { portsFor } from '../systems/types.js';
import type { TestScope } from '@nodenet/testkit';
import { firstErrors } from './pool.js';
import { runScale, type ScaleResult } from './scale.js';

export interface BackendCycles {
  readonly create: Summary;
  readonly delete: Summary;
  readonly createSamples: number[];
  readonly deleteSamples: number[];
  readonly errors: number;
  readonly firstErrors: string[];
}

export interface PortCostStep {
  readonly existing: number;
  readonly create: Summary;
  readonly delete: Summary;
  /** create p50 + delete p50, ms. */
  readonly portCostMs: number;
  readonly rssMB: number;
}

export interface BackendPortCost {
  readonly steps: PortCostStep[];
  /** portCostMs at the largest step / at the smallest. */
  readonly ratio: number;
  /** Taken from this run's scale suite rather than measured here. */
  readonly fromScaleSuite: boolean;
  readonly errors: number;
}

export interface BackendsResult {
  readonly cycles: number;
  readonly warmup: number;
  readonly latency: Partial<Record<BackendName, BackendCycles>>;
  /** p50 ovs / p50 iproute2. */
  readonly createRatio: number;
  readonly deleteRatio: number;
  readonly portCost: Partial<Record<BackendName, BackendPortCost>>;
}

/** The port-cost steps of a scale run, when it sampled every size wanted. */
export function portCostFromScale(
  scale: ScaleResult | undefined,
  existing: readonly number[],
  fromScaleSuite: boolean,
): BackendPortCost | undefined {
  if (!scale) return undefined;
  const steps = existing.map((e) => scale.steps.find((s) => s.existing === e));
  if (steps.some((s) => s === undefined)) return undefined;
  const cost = steps.map((s) => ({
    existing: s!.existing,
    create: s!.create,
    delete: s!.delete,
    portCostMs: round(s!.create.p50 + s!.delete.p50),
    rssMB: s!.rssMB,
  }));
  return {
    steps: cost,
    ratio: round(ratio(cost[cost.length - 1]?.portCostMs, cost[0]?.portCostMs), 3),
    fromScaleSuite,
    errors: scale.errors,
  };
}

/**
 * `cycles` create/delete cycles on each env's nodenet, interleaved (AB AB ...: each index on every env in
 * turn, so a drift of the machine hits every side alike), after `warmup` unrecorded ones.
 */
export async function interleavedCycles<K extends string>(
  envs: ReadonlyMap<K, NodeEnv>,
  scope: TestScope,
  { cycles, warmup }: { cycles: number; warmup: number },
): Promise<Partial<Record<K, BackendCycles>>> {
  const names = [...envs.keys()];
  const namespaces = await createNamespaces(scope, names.length);
  const acc = names.map(() => ({ create: [] as number[], delete: [] as number[], errors: [] as string[] }));
  for (let index = 0; index < warmup + cycles; index++) {
    for (const [k, name] of names.entries()) {
      const system = envs.get(name)!.nodenet;
      const slot = { index, ns: namespaces[k]!, ports: portsFor(system, index) };
      try {
        const wired = await system.create(slot);
        const unwired = await system.delete(slot, wired);
        if (index >= warmup) {
          acc[k]!.create.push(wired.ms);
          acc[k]!.delete.push(unwired.ms);
        }
      } catch (e) {
        acc[k]!.errors.push(`${name} #${index}: ${(e as Error).message}`);
        if (acc[k]!.errors.length > Math.max(5, cycles / 10))
          throw new Error(`too many failures of ${name}: ${acc[k]!.errors.slice(0, 3).join('; ')}`, { cause: e });
      }
    }
  }
  const latency: Partial<Record<K, BackendCycles>> = {};
  for (const [k, name] of names.entries()) {
    const a = acc[k]!;
    latency[name] = {
      create: roundSummary(summarize(a.create)),
      delete: roundSummary(summarize(a.delete)),
      createSamples: a.create.map((v) => round(v)),
      deleteSamples: a.delete.map((v) => round(v)),
      errors: a.errors.length,
      firstErrors: firstErrors(a.errors),
    };
  }
  return latency;
}

export async function runBackends(
  scope: TestScope,
  options: BenchOptions,
  scaleOfThisRun: ScaleResult | undefined,
): Promise<BackendsResult> {
  const envs = new Map<BackendName, NodeEnv>();
  for (const backend of BACKEND_NAMES) {
    const env = await NodeEnv.start(scope, { cni: false, netavark: false, backend });
    await env.nodenet.ready();
    envs.set(backend, env);
  }
  const latency = await interleavedCycles(envs, scope, options.backends);
  const p50 = (b: BackendName, which: 'create' | 'delete') => latency[b]?.[which].p50;
  options.log(
    `backends: create p50 ovs ${p50('ovs', 'create')} ms / iproute2 ${p50('iproute2', 'create')} ms, delete p50 ovs ${p50('ovs', 'delete')} ms / iproute2 ${p50('iproute2', 'delete')} ms`,
  );

  const { existing, samples, fillConcurrency } = options.backends;
  const portCost: Partial<Record<BackendName, BackendPortCost>> = {};
  for (const backend of BACKEND_NAMES) {
    const reused = backend === 'iproute2' ? portCostFromScale(scaleOfThisRun, existing, true) : undefined;
    if (reused) {
      portCost[backend] = reused;
      continue;
    }
    const log = (line: string) => options.log(`backends: ${backend}: ${line}`);
    const scale = await runScale(envs.get(backend)!, { ...options, log, scale: { steps: existing, samples, fillConcurrency } });
    portCost[backend] = portCostFromScale(scale, existing, false) ?? {
      steps: [],
      ratio: Number.NaN,
      fromScaleSuite: false,
      errors: scale.errors + 1,
    };
    if (scale.limit) log(`the node took ${scale.limit.reached} instances, not ${scale.limit.requested}: ${scale.limit.error}`);
  }
  return {
    cycles: options.backends.cycles,
    warmup: options.backends.warmup,
    latency,
    createRatio: round(ratio(p50('ovs', 'create'), p50('iproute2', 'create')), 3),
    deleteRatio: round(ratio(p50('ovs', 'delete'), p50('iproute2', 'delete')), 3),
    portCost,
  };
}
