/**
 * Wiring latency: per instance index, each system in turn (nodenet, CNI plugins, netavark: ABCABC...)
 * creates an instance interface in its own instance namespace, with address, default route and two
 * published ports (TCP and UDP each), then deletes it. One instance of a system exists at a time.
 */
import type { NodeEnv } from '../node-env.js';
import { createNamespaces } from '../namespaces.js';
import type { BenchOptions } from '../options.js';
import { roundSummary, summarize, type Summary } from '../stats.js';
import { portsFor, type SystemName } from '../systems/types.js';
import { firstErrors } from './pool.js';

export interface LatencySystemResult {
  readonly create: Summary;
  readonly delete: Summary;
  /** Milliseconds, in run order. */
  readonly createSamples: number[];
  readonly deleteSamples: number[];
  /** Per plugin for the CNI chain. */
  readonly createSteps?: Record<string, Summary>;
  readonly deleteSteps?: Record<string, Summary>;
  readonly errors: number;
  readonly firstErrors: string[];
}

export interface LatencyResult {
  readonly instances: number;
  readonly warmup: number;
  readonly order: SystemName[];
  readonly systems: Partial<Record<SystemName, LatencySystemResult>>;
}

function stepSummaries(steps: Map<string, number[]>): Record<string, Summary> | undefined {
  if (steps.size === 0) return undefined;
  return Object.fromEntries([...steps].map(([k, v]) => [k, roundSummary(summarize(v))]));
}

function pushSteps(into: Map<string, number[]>, steps: Readonly<Record<string, number>> | undefined): void {
  for (const [k, v] of Object.entries(steps ?? {})) {
    const list = into.get(k) ?? [];
    list.push(v);
    into.set(k, list);
  }
}

export async function runLatency(env: NodeEnv, options: BenchOptions): Promise<LatencyResult> {
  const { instances, warmup } = options.latency;
  const systems = env.systems();
  const namespaces = await createNamespaces(env.scope, systems.length);
  const acc = systems.map(() => ({
    create: [] as number[],
    delete: [] as number[],
    createSteps: new Map<string, number[]>(),
    deleteSteps: new Map<string, number[]>(),
    errors: [] as string[],
  }));
  const total = warmup + instances;
  for (let index = 0; index < total; index++) {
    const measured = index >= warmup;
    for (const [k, system] of systems.entries()) {
      const slot = { index, ns: namespaces[k]!, ports: portsFor(system, index) };
      const a = acc[k]!;
      try {
        const wired = await system.create(slot);
        const unwired = await system.delete(slot, wired);
        if (measured) {
          a.create.push(wired.ms);
          a.delete.push(unwired.ms);
          pushSteps(a.createSteps, wired.steps);
          pushSteps(a.deleteSteps, unwired.steps);
        }
      } catch (e) {
        a.errors.push(`${system.name} #${index}: ${(e as Error).message}`);
        if (a.errors.length > Math.max(5, total / 10))
          throw new Error(`too many failures of ${system.name}: ${a.errors.slice(0, 3).join('; ')}`, { cause: e });
      }
    }
    if ((index + 1) % 50 === 0) options.log(`latency: ${index + 1}/${total} cycles per system`);
  }
  const result: Partial<Record<SystemName, LatencySystemResult>> = {};
  for (const [k, system] of systems.entries()) {
    const a = acc[k]!;
    const createSteps = stepSummaries(a.createSteps);
    const deleteSteps = stepSummaries(a.deleteSteps);
    result[system.name] = {
      create: roundSummary(summarize(a.create)),
      delete: roundSummary(summarize(a.delete)),
      createSamples: a.create.map((v) => Math.round(v * 100) / 100),
      deleteSamples: a.delete.map((v) => Math.round(v * 100) / 100),
      ...(createSteps ? { createSteps } : {}),
      ...(deleteSteps ? { deleteSteps } : {}),
      errors: a.errors.length,
      firstErrors: firstErrors(a.errors),
    };
  }
  return { instances, warmup, order: systems.map((s) => s.name), systems: result };
}
