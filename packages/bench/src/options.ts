/** What a run measures and how much: the full profile (`npm run bench`) and the quick one (smoke test, `--quick`). */
import { join } from 'node:path';
import { repoRoot } from '@nodenet/testkit';
import type { BackendName } from './cluster/peer-facts.js';
import type { WakeProbeOptions } from './wake-probe.js';

export type SuiteName = 'latency' | 'burst' | 'scale' | 'restart' | 'datapath' | 'cni-plugin' | 'cluster' | 'backends' | 'dual-stack';
export const SUITE_NAMES: readonly SuiteName[] = [
  'latency',
  'burst',
  'scale',
  'restart',
  'datapath',
  'cni-plugin',
  'cluster',
  'backends',
  'dual-stack',
];

export interface BenchOptions {
  readonly profile: 'full' | 'quick';
  readonly suites: readonly SuiteName[];
  /** Where bench-<date>.json, bench.md and bench.svg go. */
  readonly outDir: string;
  readonly latency: {
    /** Measured create/delete cycles per system (interleaved nodenet, CNI, netavark per index). */
    readonly instances: number;
    /** Cycles per system before measuring (not recorded). */
    readonly warmup: number;
  };
  readonly burst: {
    readonly nodenetInstances: number;
    /** The peers' subnets are /24s: at most ~250 instances at once. */
    readonly peerInstances: number;
    readonly concurrency: number;
  };
  readonly scale: {
    /** Existing instances (2 ports each) at which create latency is sampled. */
    readonly steps: readonly number[];
    /** Creates (each followed by its delete) sampled per step. */
    readonly samples: number;
    /** Concurrent clients filling the node between steps. */
    readonly fillConcurrency: number;
  };
  readonly restart: {
    /** Restarts measured with the node at its last scale step. */
    readonly runs: number;
  };
  readonly datapath: {
    /** iperf3 -t per measurement. */
    readonly seconds: number;
    /** iperf3 -O: leading seconds left out (TCP slow start). */
    readonly omitSeconds: number;
    /** Each path is measured this many times, each time back to back with its baseline; the median of the per-round ratios counts. */
    readonly rounds: number;
  };
  readonly cniPlugin: {
    /** Interleaved ADD/DEL rounds through libcni per conflist (nodenet, stock chain), and plugin execs. */
    readonly rounds: number;
    /** Rounds before measuring (not recorded). */
    readonly warmup: number;
  };
  readonly cluster: {
    readonly backends: readonly BackendName[];
    /** Simulated nodes in etcd when the daemon joins (a fresh node per size). */
    readonly sizes: readonly number[];
    /** At the largest size: records added (then removed) one at a time. */
    readonly repetitions: number;
    /** At the largest size: how long the daemon's idle CPU is measured. */
    readonly idleSeconds: number;
  };
  readonly backends: {
    /** Interleaved create/delete cycles per backend on empty nodes. */
    readonly cycles: number;
    readonly warmup: number;
    /** Instances on the node while one more port's create + delete is sampled. */
    readonly existing: readonly number[];
    readonly samples: number;
    readonly fillConcurrency: number;
  };
  readonly dualStack: {
    /** Interleaved create/delete cycles per node (IPv4-only, dual-stack) on empty nodes. */
    readonly cycles: number;
    readonly warmup: number;
  };
  /** The idle wake-up probe recorded with the environment at the start and end of a run (wake-probe.ts). */
  readonly wakeProbe: WakeProbeOptions;
  /** Run without a peer whose binaries are missing (recorded as skipped) instead of failing. */
  readonly allowMissingPeers: boolean;
  /** Progress lines. */
  readonly log: (line: string) => void;
}

export const DEFAULT_OUT_DIR = join(repoRoot, 'results');

export function fullOptions(overrides: Partial<BenchOptions> = {}): BenchOptions {
  return {
    profile: 'full',
    suites: SUITE_NAMES,
    outDir: DEFAULT_OUT_DIR,
    latency: { instances: 200, warmup: 5 },
    burst: { nodenetInstances: 1000, peerInstances: 50, concurrency: 32 },
    scale: { steps: [100, 500, 1000, 2000], samples: 100, fillConcurrency: 32 },
    restart: { runs: 3 },
    datapath: { seconds: 4, omitSeconds: 1, rounds: 11 },
    cniPlugin: { rounds: 100, warmup: 5 },
    cluster: { backends: ['iproute2', 'ovs'], sizes: [100, 500, 1000], repetitions: 40, idleSeconds: 10 },
    backends: { cycles: 100, warmup: 5, existing: [100, 1000], samples: 30, fillConcurrency: 32 },
    dualStack: { cycles: 200, warmup: 5 },
    wakeProbe: { idleMs: 600, samples: 5 },
    allowMissingPeers: false,
    log: (line) => process.stderr.write(`${line}\n`),
    ...overrides,
  };
}

/** A few instances of everything, for the smoke test: checks the harness works, not how fast anything is. */
export function quickOptions(overrides: Partial<BenchOptions> = {}): BenchOptions {
  return fullOptions({
    profile: 'quick',
    latency: { instances: 4, warmup: 1 },
    burst: { nodenetInstances: 8, peerInstances: 4, concurrency: 4 },
    scale: { steps: [2, 6], samples: 2, fillConcurrency: 4 },
    restart: { runs: 1 },
    datapath: { seconds: 1, omitSeconds: 0, rounds: 1 },
    cniPlugin: { rounds: 2, warmup: 1 },
    cluster: { backends: ['iproute2', 'ovs'], sizes: [3, 6], repetitions: 2, idleSeconds: 0.5 },
    backends: { cycles: 3, warmup: 1, existing: [2, 6], samples: 2, fillConcurrency: 4 },
    dualStack: { cycles: 3, warmup: 1 },
    wakeProbe: { idleMs: 50, samples: 1 },
    ...overrides,
  });
}
