/**
 * The cost of IPv6: an instance create on a dual-stack node (IPv4 and IPv6 address, both default routes, two
 * published ports TCP+UDP in the ip and ip6 tables, the IPv6 guard's elements) next to the same create on an
 * IPv4-only node, one bench node each (iproute2, no peers), cycles interleaved AB AB ... as the latency and
 * backends suites do. Ratios dual / IPv4: p50 and p99 of each side, and the median of the per-cycle ratios
 * (each pair back to back, so a drift of the machine shared by both cancels out).
 */
import { NodeEnv } from '../node-env.js';
import type { BenchOptions } from '../options.js';
import { pairedRatio, ratio, round } from '../stats.js';
import type { TestScope } from '@nodenet/testkit';
import { interleavedCycles, type BackendCycles } from './backends.js';

export type DualStackSide = 'ipv4' | 'dual';

export interface DualStackResult {
  readonly cycles: number;
  readonly warmup: number;
  readonly latency: Partial<Record<DualStackSide, BackendCycles>>;
  /** Dual-stack / IPv4-only create: p50 over p50, p99 over p99, and the median of the per-cycle ratios. */
  readonly createRatio: { readonly p50: number; readonly p99: number; readonly paired: number };
  readonly deleteRatio: { readonly p50: number; readonly p99: number; readonly paired: number };
}

export async function runDualStack(scope: TestScope, options: BenchOptions): Promise<DualStackResult> {
  const envs = new Map<DualStackSide, NodeEnv>();
  for (const side of ['ipv4', 'dual'] as const) {
    const env = await NodeEnv.start(scope, { cni: false, netavark: false, ipv6: side === 'dual' });
    await env.nodenet.ready();
    envs.set(side, env);
  }
  const latency = await interleavedCycles(envs, scope, options.dualStack);
  const ratios = (which: 'create' | 'delete') => {
    const [dual, ipv4] = [latency.dual, latency.ipv4];
    const paired = dual && ipv4 && dual[`${which}Samples`].length === ipv4[`${which}Samples`].length;
    return {
      p50: round(ratio(dual?.[which].p50, ipv4?.[which].p50), 3),
      p99: round(ratio(dual?.[which].p99, ipv4?.[which].p99), 3),
      paired: paired ? round(pairedRatio(dual[`${which}Samples`], ipv4[`${which}Samples`]), 3) : Number.NaN,
    };
  };
  const result = {
    cycles: options.dualStack.cycles,
    warmup: options.dualStack.warmup,
    latency,
    createRatio: ratios('create'),
    deleteRatio: ratios('delete'),
  };
  for (const which of ['create', 'delete'] as const) {
    const r = which === 'create' ? result.createRatio : result.deleteRatio;
    options.log(
      `dual-stack: ${which} p50 dual ${latency.dual?.[which].p50} ms / IPv4 ${latency.ipv4?.[which].p50} ms (ratio p50 ${r.p50}, p99 ${r.p99}, paired ${r.paired})`,
    );
  }
  return result;
}
