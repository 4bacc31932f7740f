/**
 * The daemon's Prometheus metrics: one registry per daemon, fed by hooks (the RPC wrapper, core's reconcile
 * observer, sys's command observer) and by the daemon's state, read at scrape time (instances, ports,
 * peers, membership), so nothing has to keep a copy in step. Names follow Prometheus conventions:
 * `nodenet_` prefix, `_total` for counters, base units (`_seconds`), label values from fixed sets.
 *
 * The process's default metrics keep their conventional names (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, ...): every client library exports
 * them unprefixed, and dashboards and alerts written for any process (`process_open_fds`, ...) then work
 * for nodenetd too; the `job` label tells processes apart. One default is left out: the event-loop lag
 * monitor samples on a 10 ms timer, which woke an idle daemon ~96 times a second (measured: 957 context
 * switches and 50 ms of CPU in 10 idle seconds, against 1 and 0 without it).
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  REPAIR_KINDS,
  REPAIR_TRIGGERS,
  type Membership,
  type NodeNetwork,
  type PeerSync,
  type ReconcileReport,
  type RepairKind,
  type RepairTrigger,
} from '@nodenet/core';
import { TOOLS, type CommandEvent } from '@nodenet/sys';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import version from 'prom-client/lib/metrics/version.js';
import gc from 'prom-client/lib/metrics/gc.js';

/** Seconds; from a fast create (~5 ms) to a slow ovs call (~1 s) and beyond. */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds; a pass takes tens of ms on a small node, seconds with thousands of instances. */
const RECONCILE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Event-driven repair's target is one second: finer around it. */
const REPAIR_LATENCY_BUCKETS = [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30];

const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * prom-client's default metrics (lib/defaultMetrics.js of the pinned 15.1.3) but `eventLoopLag`: each
 * module registers its family and reads the process at scrape time (gc: a PerformanceObserver), no timer.
 */
const PROCESS_METRIC_MODULES = [
  processCpuTotal,
  processStartTime,
  osMemoryHeap,
  processOpenFileDescriptors,
  processMaxFileDescriptors,
  processResources,
  processHandles,
  processRequests,
  heapSizeAndUsed,
  heapSpacesSizeAndUsed,
  version,
  gc,
];

function collectProcessMetrics(registry: Registry): void {
  // Static imports (not a require by computed name), so the esbuild bundle carries every module.
  for (const register of PROCESS_METRIC_MODULES) register(registry, {});
  // prom-client names three gauges `..._total`, which promtool rejects (`_total` is for counters); they are
  // the sums of nodejs_active_handles{type}, nodejs_active_requests{type} and nodejs_active_resources{type}.
  for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);
}

/** What the gauges read at scrape time (set once the daemon has built them). */
export interface MetricsSources {
  readonly network: NodeNetwork;
  readonly membership: Membership;
  readonly sync: PeerSync;
  /** When the peer set last changed (ms since the epoch), or null before membership reported one. */
  readonly lastPeerChangeAt: () => number | null;
}

export interface DaemonMetricsOptions {
  readonly backend: string;
  /** Default: the version of @nodenet/server. */
  readonly version?: string;
  /** The process's default metrics (process_*, nodejs_*); default true. Off in unit tests of names. */
  readonly defaultMetrics?: boolean;
}

export type ConfigReloadResult = 'applied' | 'rejected';

export class DaemonMetrics {
  readonly registry = new Registry();
  private sources: MetricsSources | null = null;

  private readonly rpcRequests: Counter<'method' | 'code'>;
  private readonly rpcDuration: Histogram<'method' | 'code'>;
  private readonly reconcileRuns: Counter<'result'>;
  private readonly reconcileDuration: Histogram<never>;
  private readonly reconcileRepairs: Counter<'kind' | 'trigger'>;
  private readonly reconcileLastRun: Gauge<never>;
  private readonly repairLatency: Histogram<'kind'>;
  private readonly commands: Counter<'tool'>;
  private readonly commandFailures: Counter<'tool' | 'reason'>;
  private readonly configReloads: Counter<'result'>;

  constructor(options: DaemonMetricsOptions) {
    const registers = [this.registry];
    // One registration each (name, help, labels; buckets for histograms); `read` fills a gauge or counter at scrape time.
    const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], read?: (c: Counter<L>) => void) =>
      new Counter<L>({ name, help, labelNames, registers, ...(read ? { collect: collectWith(read) } : {}) });
    const gauge = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], read?: (g: Gauge<L>) => void) =>
      new Gauge<L>({ name, help, labelNames, registers, ...(read ? { collect: collectWith(read) } : {}) });
    const histogram = <L extends string = never>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []) =>
      new Histogram<L>({ name, help, labelNames, buckets, registers });
    const sources = () => this.sources;

    gauge('nodenet_build_info', 'Always 1; the labels say which nodenet runs here and with which dataplane backend.', [
      'version',
      'backend',
    ]).set({ version: options.version ?? serverVersion(), backend: options.backend }, 1);

    this.rpcRequests = counter(
      'nodenet_rpc_requests_total',
      'gRPC calls of the Network and NetworkAdmin services answered, by method and gRPC status code.',
      ['method', 'code'],
    );
    this.rpcDuration = histogram(
      'nodenet_rpc_duration_seconds',
      'Time from receiving a gRPC call to its answer, by method and gRPC status code.',
      RPC_BUCKETS,
      ['method', 'code'],
    );

    gauge('nodenet_instances', 'Instance interfaces recorded on this node, by kind.', ['kind'], (g) => {
      const counts = { veth: 0, tap: 0 };
      for (const r of sources()?.network.listInstances() ?? []) counts[r.kind]++;
      for (const [kind, n] of Object.entries(counts)) g.set({ kind }, n);
    });
    gauge(
      'nodenet_published_ports',
      'Ports published on this node for instances, by protocol (a port published for TCP and UDP counts once for each).',
      ['protocol'],
      (g) => {
        const counts = { tcp: 0, udp: 0 };
        for (const r of sources()?.network.listInstances() ?? []) for (const p of r.ports) counts[p.protocol]++;
        for (const [protocol, n] of Object.entries(counts)) g.set({ protocol }, n);
      },
    );
    gauge('nodenet_cni_present', '1 once this node has its CNI (CreateContainerNetworkInterface), else 0.', [], (g) =>
      g.set(sources()?.network.cniRecord ? 1 : 0),
    );
    gauge('nodenet_peers', 'Other nodes known to membership.', [], (g) => g.set(sources()?.membership.peers().length ?? 0));
    gauge(
      'nodenet_peers_programmed',
      'Other nodes whose subnet this node routes (overlay programmed); below nodenet_peers while a peer cannot be programmed.',
      [],
      (g) => g.set(sources()?.sync.current().length ?? 0),
    );

    gauge(
      'nodenet_membership_connected',
      '1 while membership is connected to its source (etcd: started and watching); static membership is always 1.',
      [],
      (g) => {
        const m = sources()?.membership;
        g.set(m ? ((m.status?.().connected ?? true) ? 1 : 0) : 0);
      },
    );
    let renewFailuresSeen = 0;
    counter('nodenet_membership_lease_renew_failures_total', "Renewals (keepalives) of this node's etcd lease that failed.", [], (c) => {
      const now = sources()?.membership.status?.().leaseRenewFailures ?? 0;
      if (now > renewFailuresSeen) c.inc(now - renewFailuresSeen);
      renewFailuresSeen = Math.max(now, renewFailuresSeen);
    });
    gauge(
      'nodenet_membership_last_peer_change_timestamp_seconds',
      'When the set of peers last changed (or was first learned), as a Unix time; 0 before membership reported peers.',
      [],
      (g) => {
        const at = sources()?.lastPeerChangeAt() ?? null;
        g.set(at === null ? 0 : at / 1000);
      },
    );

    this.reconcileRuns = counter(
      'nodenet_reconcile_runs_total',
      'Reconcile passes, by result: clean (nothing drifted), repaired (drift put right), errors (something could not be checked or repaired).',
      ['result'],
    );
    this.reconcileDuration = histogram(
      'nodenet_reconcile_duration_seconds',
      'Duration of a reconcile pass of the node (records against kernel state).',
      RECONCILE_BUCKETS,
    );
    this.reconcileRepairs = counter(
      'nodenet_reconcile_repairs_total',
      'Objects reconcile put right, by kind of repair and by what set the pass off (start, periodic, event).',
      ['kind', 'trigger'],
    );
    this.repairLatency = histogram(
      'nodenet_repair_latency_seconds',
      'Event-driven repair: from the first change notification seen to the end of the pass that repaired it, by kind of repair.',
      REPAIR_LATENCY_BUCKETS,
      ['kind'],
    );
    this.reconcileLastRun = gauge(
      'nodenet_reconcile_last_run_timestamp_seconds',
      'When the last reconcile pass ended, as a Unix time (0 before the first).',
    );

    this.commands = counter(
      'nodenet_commands_total',
      'System commands run and requests to long-lived command sessions (ip -batch, nft -i, the namespace helper), by tool.',
      ['tool'],
    );
    this.commandFailures = counter(
      'nodenet_command_failures_total',
      'System commands and session requests that failed, by tool and reason (exit, timeout, not_installed, error_output, session_exited, spawn_error).',
      ['tool', 'reason'],
    );

    this.configReloads = counter(
      'nodenet_config_reloads_total',
      'Config reloads on SIGHUP, by result: applied, or rejected (the new config is invalid; the old one stays).',
      ['result'],
    );

    // Series that exist from the start, so rate() and increase() see their first increment.
    for (const result of ['clean', 'repaired', 'errors']) this.reconcileRuns.inc({ result }, 0);
    for (const kind of REPAIR_KINDS) for (const trigger of REPAIR_TRIGGERS) this.reconcileRepairs.inc({ kind, trigger }, 0);
    for (const result of ['applied', 'rejected']) this.configReloads.inc({ result }, 0);
    for (const tool of TOOLS) this.commands.inc({ tool }, 0);

    if (options.defaultMetrics ?? true) collectProcessMetrics(this.registry);
  }

  /** Where the state gauges read from; before this they report 0. */
  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** A method the RPC wrapper serves: its OK series exists (at 0) before the first call. */
  rpcDeclared(method: string): void {
    this.rpcRequests.inc({ method, code: 'OK' }, 0);
  }

  /** One answered gRPC call; `code` is the gRPC status name (OK, INVALID_ARGUMENT, ...). */
  rpcDone(method: string, code: string, seconds: number): void {
    this.rpcRequests.inc({ method, code });
    this.rpcDuration.observe({ method, code }, seconds);
  }

  /** One reconcile pass of the node (core's onReconciled). */
  reconciled(report: ReconcileReport): void {
    const result = report.errors.length > 0 ? 'errors' : report.repairs.length > 0 ? 'repaired' : 'clean';
    this.reconcileRuns.inc({ result });
    this.reconcileDuration.observe(report.durationMs / 1000);
    for (const [kind, n] of Object.entries(report.repairCounts)) if (n) this.reconcileRepairs.inc({ kind, trigger: report.trigger }, n);
    this.reconcileLastRun.set(Date.now() / 1000);
  }

  /** An event pass repaired these kinds, `seconds` after the first change it served was seen. */
  repairedOnEvent(seconds: number, kinds: readonly RepairKind[]): void {
    for (const kind of kinds) this.repairLatency.observe({ kind }, seconds);
  }

  /** Stale overlay entries the cluster side removed in a pass. */
  overlayRepaired(count: number, trigger: RepairTrigger): void {
    if (count > 0) this.reconcileRepairs.inc({ kind: 'overlay', trigger }, count);
  }

  /** One system command or session request (sys's observer). */
  commandDone(event: CommandEvent): void {
    this.commands.inc({ tool: event.tool });
    if (event.outcome !== 'ok') this.commandFailures.inc({ tool: event.tool, reason: event.outcome });
  }

  configReloaded(result: ConfigReloadResult): void {
    this.configReloads.inc({ result });
  }
}

/** prom-client calls `collect` with the metric as `this`: hand it to `read` as an argument instead. */
function collectWith<M>(read: (metric: M) => void): (this: M) => void {
  return function (this: M) {
    read(this);
  };
}

function serverVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
