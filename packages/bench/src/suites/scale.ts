/**
 * Cost as the node fills (nodenet): the node is filled with instances (each in its own namespace, made
 * along with it; two published ports) up to each step; at each step `samples` creates are measured, each followed by its delete
 * so the count stays at the step. The daemon's RSS is read at each step. The instances stay for the restart
 * suite.
 */
import type { NodeEnv } from '../node-env.js';
import { createNamespaces } from '../namespaces.js';
import type { BenchOptions } from '../options.js';
import { rssMB } from '../rss.js';
import { ratio, round, roundSummary, summarize, type Summary } from '../stats.js';
import { portsFor } from '../systems/types.js';
import { firstErrors, runBatch } from './pool.js';

export interface ScaleStep {
  /** Instances present while the samples were taken. */
  readonly existing: number;
  readonly create: Summary;
  readonly delete: Summary;
  readonly createSamples: number[];
  readonly rssMB: number;
  /** How fast the fill up to this step went (instances/s), for information. */
  readonly fillPerSecond: number;
}

export interface ScaleResult {
  readonly samplesPerStep: number;
  readonly steps: ScaleStep[];
  /** create p50 at the last step sampled / at the first. */
  readonly p50Ratio: number;
  /** Instances present at the end (the restart suite measures with these), and the daemon's RSS then. */
  readonly instances: number;
  readonly finalRssMB: number;
  /** The largest step asked for. */
  readonly requested: number;
  /** Set when the node could not be filled to a step: how far it got and why. */
  readonly limit?: { readonly requested: number; readonly reached: number; readonly error: string };
  readonly errors: number;
  readonly firstErrors: string[];
}

/** Sample instances use indices from here (their addresses and ports never collide with the fill's). */
function sampleIndexBase(maxStep: number): number {
  return maxStep + 100;
}

export async function runScale(env: NodeEnv, options: BenchOptions): Promise<ScaleResult> {
  const { steps, samples, fillConcurrency } = options.scale;
  const maxStep = Math.max(...steps);
  const nodenet = env.nodenet;
  nodenet.connect(fillConcurrency);
  await nodenet.ready();
  // Namespaces are made step by step with their instances: a host with n instances has n namespace mounts,
  // and what the daemon runs may cost more with every mount (e.g. `ip -n` copies the mount table).
  const fillNamespaces: string[] = [];
  const [sampleNs] = await createNamespaces(env.scope, 1);
  const errors: string[] = [];
  const results: ScaleStep[] = [];
  let filled = 0;
  let limit: ScaleResult['limit'];
  for (const step of [...steps].sort((a, b) => a - b)) {
    const from = filled;
    fillNamespaces.push(...(await createNamespaces(env.scope, step - from)));
    const fill = await runBatch(
      step - from,
      fillConcurrency,
      (i, worker) => {
        const index = from + i;
        return nodenet.create({ index, ns: fillNamespaces[index]!, ports: portsFor(nodenet, index) }, worker);
      },
      { stopOnError: true },
    );
    filled = from + fill.results.filter((r) => r !== undefined).length;
    if (fill.errors.length > 0) {
      // e.g. every bridge the backend may use is full, or the subnet is: the node is full.
      limit = { requested: step, reached: filled, error: fill.errors[0]!.slice(0, 500) };
      options.log(`scale: the node took ${filled} instances, not ${step}: ${limit.error}`);
      break;
    }
    const creates: number[] = [];
    const deletes: number[] = [];
    for (let j = 0; j < samples; j++) {
      const index = sampleIndexBase(maxStep) + j;
      const slot = { index, ns: sampleNs!, ports: portsFor(nodenet, index) };
      try {
        const wired = await nodenet.create(slot);
        creates.push(wired.ms);
        deletes.push((await nodenet.delete(slot, wired)).ms);
      } catch (e) {
        errors.push(`at ${step} #${j}: ${(e as Error).message}`);
      }
    }
    const rss = await rssMB(env.daemon.pid);
    results.push({
      existing: step,
      create: roundSummary(summarize(creates)),
      delete: roundSummary(summarize(deletes)),
      createSamples: creates.map((v) => round(v)),
      rssMB: round(rss, 1),
      fillPerSecond: round((step - from) / fill.seconds, 1),
    });
    const last = results[results.length - 1]!;
    options.log(
      `scale: ${step} instances: create p50 ${last.create.p50} ms, p99 ${last.create.p99} ms, RSS ${last.rssMB} MB (filled at ${last.fillPerSecond}/s)`,
    );
  }
  return {
    samplesPerStep: samples,
    steps: results,
    p50Ratio: round(ratio(results[results.length - 1]?.create.p50, results[0]?.create.p50), 3),
    instances: filled,
    finalRssMB: round(await rssMB(env.daemon.pid), 1),
    requested: maxStep,
    ...(limit ? { limit } : {}),
    errors: errors.length,
    firstErrors: firstErrors(errors),
  };
}
