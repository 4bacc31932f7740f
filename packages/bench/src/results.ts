/** The results file (results/bench-<date>.json) and the targets the issue sets, judged from one run. */
import type { Environment } from './environment.js';
import type { BenchOptions, SuiteName } from './options.js';
import { ratio, round } from './stats.js';
import type { BackendsResult } from './suites/backends.js';
import type { BurstResult } from './suites/burst.js';
import type { ClusterResult } from './suites/cluster.js';
import type { DatapathResult } from './suites/datapath.js';
import type { DualStackResult } from './suites/dual-stack.js';
import type { LatencyResult } from './suites/latency.js';
import type { CniPluginResult } from './suites/cni-plugin.js';
import type { RestartResult } from './suites/restart.js';
import type { ScaleResult } from './suites/scale.js';
import type { SystemName } from './systems/types.js';
import { BACKEND_NAMES, type BackendName } from './cluster/peer-facts.js';

export const RESULTS_SCHEMA = 'nodenet-bench/1';

export interface Target {
  readonly id: string;
  readonly description: string;
  /** null when not measured in this run. */
  readonly measured: number | null;
  readonly limit: number;
  readonly comparator: '<=' | '>=';
  readonly unit: string;
  /** null: not measured (suite not run, or a peer missing). */
  readonly pass: boolean | null;
}

export interface BenchResults {
  readonly schema: typeof RESULTS_SCHEMA;
  readonly profile: BenchOptions['profile'];
  readonly startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  readonly options: Omit<BenchOptions, 'log' | 'outDir'>;
  readonly environment: Environment;
  /** Peers not run, and why. */
  readonly skipped: Partial<Record<SystemName | 'iperf3', string>>;
  /** Wall time of each suite, seconds. */
  readonly suiteSeconds: Partial<Record<SuiteName, number>>;
  latency?: LatencyResult;
  burst?: BurstResult;
  scale?: ScaleResult;
  restart?: RestartResult;
  /** The restart suite on an ovs node filled as full. */
  restartOvs?: RestartResult;
  datapath?: DatapathResult;
  cniPlugin?: CniPluginResult;
  cluster?: ClusterResult;
  backends?: BackendsResult;
  dualStack?: DualStackResult;
  targets: Target[];
}

function target(
  id: string,
  description: string,
  measured: number | undefined,
  comparator: Target['comparator'],
  limit: number,
  unit: string,
): Target {
  const value = measured ?? Number.NaN;
  const pass = Number.isFinite(value) ? (comparator === '<=' ? value <= limit : value >= limit) : null;
  return { id, description, measured: Number.isFinite(value) ? round(value, 3) : null, limit, comparator, unit, pass };
}

/** The targets (ratios are nodenet / peer, so "1/5 of" is "<= 0.2"). */
export function judgeTargets(
  r: Pick<
    BenchResults,
    'latency' | 'burst' | 'scale' | 'restart' | 'restartOvs' | 'datapath' | 'cniPlugin' | 'cluster' | 'backends' | 'dualStack'
  >,
): Target[] {
  const lat = r.latency?.systems;
  const last = r.scale?.steps[r.scale.steps.length - 1];
  const pair = (name: string) => r.datapath?.pairs.find((p) => p.name === name)?.ratio;
  return [
    target(
      'create-vs-cni',
      'create p50: nodenet / CNI plugins ADD (bridge + portmap)',
      ratio(lat?.nodenet?.create.p50, lat?.cni?.create.p50),
      '<=',
      0.2,
      'ratio',
    ),
    target(
      'create-vs-netavark',
      'create p50: nodenet / netavark setup',
      ratio(lat?.nodenet?.create.p50, lat?.netavark?.create.p50),
      '<=',
      0.1,
      'ratio',
    ),
    target(
      'delete-vs-cni',
      'delete p50: nodenet / CNI plugins DEL',
      ratio(lat?.nodenet?.delete.p50, lat?.cni?.delete.p50),
      '<=',
      0.2,
      'ratio',
    ),
    target('burst-creates', 'burst creates per second (nodenet, 32 clients)', r.burst?.systems.nodenet?.create.perSecond, '>=', 400, '/s'),
    target(
      'scale-capacity',
      `instances the node holds (2 published ports each), of ${r.scale?.requested ?? 2000} asked`,
      r.scale?.instances,
      '>=',
      r.scale?.requested ?? 2000,
      'instances',
    ),
    target(
      'scale-latency',
      `create p50 at ${last?.existing ?? 2000} instances / at ${r.scale?.steps[0]?.existing ?? 100}`,
      r.scale?.p50Ratio,
      '<=',
      1.25,
      'ratio',
    ),
    target('scale-rss', `daemon RSS with ${r.scale?.instances ?? 2000} instances`, r.scale?.finalRssMB, '<=', 150, 'MB'),
    target(
      'restart',
      `restart to SERVING with ${r.restart?.instances ?? 2000} instances, iproute2 (median, bundled daemon)`,
      r.restart?.servingMsMedian,
      '<=',
      1000,
      'ms',
    ),
    target(
      'restart-ovs',
      `restart to SERVING with ${r.restartOvs?.instances ?? 2000} instances, ovs (median, bundled daemon)`,
      r.restartOvs?.servingMsMedian,
      '<=',
      1000,
      'ms',
    ),
    target('datapath-same-node', 'TCP throughput, one node: nodenet / by hand', pair('same-node'), '>=', 0.95, 'ratio'),
    target('datapath-cross-node', 'TCP throughput, two nodes: nodenet overlay / hand-built VXLAN', pair('cross-node'), '>=', 0.95, 'ratio'),
    target('datapath-published', 'TCP throughput: published port / direct', pair('published-port'), '>=', 0.95, 'ratio'),
    target(
      'cni-plugin-own-cost',
      'CNI plugin exec to exit, ADD against a stub daemon (p50)',
      r.cniPlugin?.pluginOwn.addAgainstStub.p50,
      '<=',
      5,
      'ms',
    ),
    ...clusterTargets(r),
    target('dual-stack-create', 'create p50 (2 published ports): dual-stack / IPv4-only', r.dualStack?.createRatio.p50, '<=', 1.3, 'ratio'),
  ];
}

const JOIN_LIMIT_MS: Readonly<Record<BackendName, number>> = { iproute2: 1000, ovs: 2000 };

/** Issue 16's cluster-scale targets, per backend, and the ovs backend's instance latency next to iproute2's. */
function clusterTargets(r: Pick<BenchResults, 'cluster' | 'backends'>): Target[] {
  const out: Target[] = [];
  const sizes = r.cluster?.sizes ?? [100, 500, 1000];
  const largest = Math.max(...sizes);
  const smallest = Math.min(...sizes);
  for (const b of BACKEND_NAMES) {
    const c = r.cluster?.backends[b];
    const join = c?.joins.find((j) => j.peers === largest)?.joinMs;
    out.push(
      target(`cluster-join-${b}`, `${b}: ${largest} peers in etcd, CNI call -> all routed`, join, '<=', JOIN_LIMIT_MS[b], 'ms'),
      target(`cluster-growth-${b}`, `${b}: join time at ${largest} peers / at ${smallest}`, c?.growth, '<=', 12, 'ratio'),
      target(`peer-add-${b}`, `${b}: one node's record written -> routed (p99, ${largest} peers)`, c?.addRouted.p99, '<=', 500, 'ms'),
      target(`peer-leave-${b}`, `${b}: 10% of ${largest} records deleted in one txn -> cleaned up`, c?.leave?.ms, '<=', 1000, 'ms'),
    );
  }
  const p = r.backends?.portCost;
  out.push(
    target('ovs-create-vs-iproute2', 'instance create p50: ovs / iproute2', r.backends?.createRatio, '<=', 2, 'ratio'),
    target('ovs-delete-vs-iproute2', 'instance delete p50: ovs / iproute2', r.backends?.deleteRatio, '<=', 1.5, 'ratio'),
    ...BACKEND_NAMES.map((b) => {
      const steps = p?.[b]?.steps ?? [];
      const from = steps[0]?.existing ?? 100;
      const to = steps[steps.length - 1]?.existing ?? 1000;
      return target(
        `port-cost-flat-${b}`,
        `${b}: one more port (create + delete p50) at ${to} instances / at ${from}`,
        p?.[b]?.ratio,
        '<=',
        1.2,
        'ratio',
      );
    }),
  );
  return out;
}
