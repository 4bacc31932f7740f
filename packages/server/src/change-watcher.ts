/**
 * Event-driven repair: long-lived monitor processes follow the change notifications of the kernel (links,
 * addresses, routes, neighbour and FDB entries, nftables) in the daemon's network namespace and, with the
 * ovs backend, followers inside the daemon those of Open vSwitch (OVSDB rows, the bridge's flow table: see
 * ovs-change-sources.ts). A change to something nodenet owns (see change-events.ts) sets off a reconcile
 * pass through the RepairScheduler (coalesced, contest back-off), limited to the part the changes concern
 * (the node's, the overlay's, or both). A monitor that dies is started again with back-off, a follower
 * reconnects; when either is back, a full pass runs (changes may have been missed meanwhile: an OVSDB
 * session after ovsdb-server restarted, the flow table after ovs-vswitchd restarted, sees a switch that may
 * have forgotten everything). The periodic pass stays.
 */
import { RepairScheduler, type Logger, type ReconcileCause, type RepairKind, type RepairPolicyOptions } from '@nodenet/core';
import { LineMonitor } from '@nodenet/sys';
import {
  classifyFdbMonitorLine,
  classifyIpMonitorLine,
  classifyNftMonitorLine,
  scopeOfChange,
  widenScope,
  type ChangeScope,
} from './change-events.js';
import type { PassResult } from './cluster-link.js';
import type { DaemonConfig } from './config.js';
import type { ChangeSink, ChangeSource } from './ovs-change-sources.js';
import { subjectsOfChange, subjectsOfNftLine, type OwnChanges } from './own-changes.js';

export interface MonitorSpec {
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
  /** The relevant changes a line reports (none: []). */
  classify(line: string): readonly string[];
  /** What a change of this line names, to tell nodenet's own from drift (see own-changes.ts; default: subjectsOfChange). */
  subjects?(line: string, change: string): readonly string[];
}

const one = (s: string | null): readonly string[] => (s === null ? [] : [s]);

/** The monitor processes for a config: the kernel's (OVS's changes are followed in-process: ovs-change-sources.ts). */
export function monitorSpecs(config: Pick<DaemonConfig, 'backend' | 'overlay'>): MonitorSpec[] {
  const specs: MonitorSpec[] = [
    {
      name: 'ip monitor',
      file: 'ip',
      args: ['-o', 'monitor', 'link', 'address', 'route', 'neigh'],
      classify: (l) => one(classifyIpMonitorLine(l)),
    },
    // Deletions only: nodenet's own additions (every create) need no look.
    {
      name: 'nft monitor',
      file: 'nft',
      args: ['-j', 'monitor', 'destroy'],
      classify: (l) => one(classifyNftMonitorLine(l)),
      subjects: (l) => subjectsOfNftLine(l),
    },
  ];
  if (config.backend !== 'ovs' && config.overlay.mode === 'vxlan') {
    specs.push({
      name: 'bridge fdb monitor',
      file: 'bridge',
      args: ['monitor', 'fdb'],
      classify: (l) => one(classifyFdbMonitorLine(l)),
    });
  }
  return specs;
}

export interface ChangeWatcherOptions {
  readonly specs: readonly MonitorSpec[];
  /** Followers of changes inside the daemon (OVS's, over long-lived connections). */
  readonly sources?: readonly ChangeSource[];
  /** Runs one reconcile pass (node, overlay or both: `scope`); returns what it repaired and where the time went. */
  runPass(cause: ReconcileCause, scope: ChangeScope): Promise<PassResult>;
  readonly logger: Logger;
  readonly policy?: Partial<RepairPolicyOptions>;
  /**
   * Told, after an event pass that repaired something, how long it took from the first change seen to the
   * end of the pass (seconds) and the kinds it repaired (nodenet_repair_latency_seconds).
   */
  onRepaired?(latencySeconds: number, kinds: readonly RepairKind[]): void;
  /** nodenet's own deletions in progress or just done: changes they explain set off no pass. */
  readonly ownChanges?: OwnChanges;
}

/** The first change seen of the events a coming pass serves: when (monotonic and wall clock) and what. */
interface FirstChange {
  readonly at: number;
  readonly wallAt: number;
  readonly cause: string;
}

export class ChangeWatcher {
  private readonly monitors: LineMonitor[] = [];
  private readonly scheduler: RepairScheduler;
  private passes = 0;
  private stopped = false;
  /** The first change of those the next pass serves (null: none waiting). */
  private firstChange: FirstChange | null = null;
  /** The part of a pass the changes waiting call for (every change counts, also those the log leaves out). */
  private pendingScope: ChangeScope | null = null;

  constructor(private readonly options: ChangeWatcherOptions) {
    const logger = options.logger;
    this.scheduler = new RepairScheduler(
      {
        runPass: async (causes) => {
          const started = performance.now();
          // Changes seen from now on are served by the next pass (this one may have listed before them).
          const first = this.firstChange;
          const scope = this.pendingScope ?? 'all';
          this.firstChange = null;
          this.pendingScope = null;
          this.passes++;
          const result = await options.runPass({ trigger: 'event', causes }, scope);
          const ended = performance.now();
          const timing = first
            ? {
                firstChangeAt: new Date(first.wallAt).toISOString(),
                firstChange: first.cause,
                waitMs: Math.round(started - first.at),
                latencyMs: Math.round(ended - first.at),
              }
            : {};
          logger.info(
            {
              event: 'event-pass',
              causes,
              repairs: result.repairs.length,
              scope,
              durationMs: Math.round(ended - started),
              ...timing,
              phases: result.phases,
            },
            `event pass after ${causes[0] ?? 'a change'}: ${result.repairs.length} repairs`,
          );
          const kinds = (Object.keys(result.repairCounts) as RepairKind[]).filter((k) => (result.repairCounts[k] ?? 0) > 0);
          if (first && kinds.length > 0) options.onRepaired?.((ended - first.at) / 1000, kinds);
          return { repairs: result.repairs };
        },
        onContested: (c) =>
          logger.warn(
            { event: 'repair-contested', repair: c.repair, count: c.count, windowSeconds: c.windowMs / 1000, backoffMs: c.backoffMs },
            `another program keeps undoing a repair (${c.count} times in ${c.windowMs / 1000} s): ${c.repair}; event repairs now wait ${c.backoffMs} ms`,
          ),
        onError: (e) =>
          logger.error(
            { event: 'reconcile-error', trigger: 'event', err: e instanceof Error ? e.message : String(e) },
            'event pass failed',
          ),
      },
      options.policy,
    );
    for (const spec of options.specs) this.monitors.push(this.monitorOf(spec));
  }

  /** Event passes run so far. */
  get passCount(): number {
    return this.passes;
  }

  start(): void {
    for (const m of this.monitors) m.start();
    for (const source of this.options.sources ?? []) source.start(this.sinkOf(source));
    const names = [...this.options.specs, ...(this.options.sources ?? [])].map((s) => s.name);
    this.options.logger.info({ event: 'watching', monitors: names }, `repairing on change: ${names.join(', ')}`);
  }

  /** Stops the monitors and waits for a pass in flight (up to `waitMs`). */
  async stop(waitMs = Infinity): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.monitors.map((m) => m.stop()), ...(this.options.sources ?? []).map((s) => s.stop())]);
    await this.scheduler.stop(waitMs);
  }

  private sinkOf(source: ChangeSource): ChangeSink {
    const logger = this.options.logger;
    return {
      logger,
      change: (cause) => {
        if (this.isOwn(source.name, subjectsOfChange(cause), cause)) return;
        logger.debug({ event: 'change-seen', monitor: source.name, change: cause }, `change seen: ${cause}`);
        this.notify(cause);
      },
      reconnected: () => {
        if (this.stopped) return;
        logger.info({ event: 'monitor-reconnected', monitor: source.name }, `${source.name} is back`);
        this.notify(`${source.name} reconnected`);
      },
    };
  }

  /** Whether a change is one of nodenet's own deletions (then it needs no pass). */
  private isOwn(monitor: string, subjects: readonly string[], cause: string): boolean {
    if (!this.options.ownChanges?.explains(subjects)) return false;
    this.options.logger.debug({ event: 'own-change-seen', monitor, change: cause }, `own change seen: ${cause}`);
    return true;
  }

  /** A relevant change: remembered as the first of the coming pass's if none waits, and handed to the scheduler. */
  notify(cause: string): void {
    if (this.stopped) return;
    this.firstChange ??= { at: performance.now(), wallAt: Date.now(), cause };
    this.pendingScope = widenScope(this.pendingScope, scopeOfChange(cause));
    this.scheduler.notify(cause);
  }

  private monitorOf(spec: MonitorSpec): LineMonitor {
    const logger = this.options.logger;
    let lastExit = '';
    return new LineMonitor({
      name: spec.name,
      file: spec.file,
      args: spec.args,
      // The kernel's monitors cannot fail to connect: once restarted, they watch again.
      onStart: ({ restart }) => {
        if (restart) this.notify(`${spec.name} restarted`);
      },
      onLine: (line) => {
        for (const cause of spec.classify(line)) {
          if (this.isOwn(spec.name, spec.subjects ? spec.subjects(line, cause) : subjectsOfChange(cause), cause)) continue;
          logger.debug({ event: 'change-seen', monitor: spec.name, change: cause }, `change seen: ${cause}`);
          this.notify(cause);
        }
      },
      onExit: ({ code, signal, stderr, retryInMs }) => {
        // The same failure again and again (a monitor that keeps failing) is logged once.
        const summary = `${code ?? signal}: ${stderr.split('\n').pop() ?? ''}`;
        const fields = { event: 'monitor-exit', monitor: spec.name, code, signal, stderr: stderr.slice(-500), retryInMs };
        if (summary !== lastExit)
          logger.warn(
            fields,
            retryInMs === null ? `${spec.name} cannot run: ${stderr}` : `${spec.name} exited; starting it again in ${retryInMs} ms`,
          );
        else logger.debug(fields, `${spec.name} exited again`);
        lastExit = summary;
      },
    });
  }
}
