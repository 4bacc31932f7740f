/**
 * Event-driven repair: long-lived monitors follow the change notifications of the kernel (links, addresses,
 * routes, neighbour and FDB entries, nftables) and, with the ovs backend, of Open vSwitch (OVSDB rows, the
 * bridge's flow table), in the daemon's network namespace. A change to something nodenet owns (see
 * change-events.ts) sets off a reconcile pass through the RepairScheduler (coalesced, contest back-off).
 * A monitor that dies is started again with back-off; when it is back, a pass runs (changes may have been
 * missed meanwhile: an OVSDB monitor reconnecting after ovsdb-server restarted, the flow monitor after
 * ovs-vswitchd restarted, sees a switch that may have forgotten everything). The periodic pass stays.
 */
import { join } from 'node:path';
import { RepairScheduler, type Logger, type ReconcileCause, type RepairPolicyOptions } from '@nodenet/core';
import { LineMonitor } from '@nodenet/sys';
import {
  classifyFdbMonitorLine,
  classifyFlowMonitorLine,
  classifyIpMonitorLine,
  classifyNftMonitorLine,
  classifyOvsdbUpdate,
} from './change-events.js';
import type { DaemonConfig } from './config.js';

/** A restarted OVS monitor still running after this long is connected (they exit at once otherwise). */
const CONNECTED_AFTER_MS = 200;

/** The CNI bridge whose flow table the ovs backend watches. */
const CNI_BRIDGE = 'nodenet0';

export interface MonitorSpec {
  readonly name: string;
  readonly file: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** The relevant changes a line reports (none: []). */
  classify(line: string): readonly string[];
  /**
   * When a restarted monitor counts as connected (and a pass runs for what it may have missed): `spawn`,
   * once the process runs (ip and nft watch the kernel: they cannot fail to connect); `alive`, once it has
   * run for a moment without exiting (OVS tools exit at once when the switch is not there yet, and print
   * nothing on connecting to an empty database).
   */
  readonly connectedWhen: 'spawn' | 'alive';
}

const one = (s: string | null): readonly string[] => (s === null ? [] : [s]);

/** The monitors for a config: the kernel's always, OVS's with the ovs backend. */
export function monitorSpecs(config: Pick<DaemonConfig, 'backend' | 'ovs' | 'overlay'>): MonitorSpec[] {
  const specs: MonitorSpec[] = [
    {
      name: 'ip monitor',
      file: 'ip',
      args: ['-o', 'monitor', 'link', 'address', 'route', 'neigh'],
      classify: (l) => one(classifyIpMonitorLine(l)),
      connectedWhen: 'spawn',
    },
    // Deletions only: nodenet's own additions (every create) need no look.
    {
      name: 'nft monitor',
      file: 'nft',
      args: ['-j', 'monitor', 'destroy'],
      classify: (l) => one(classifyNftMonitorLine(l)),
      connectedWhen: 'spawn',
    },
  ];
  if (config.backend !== 'ovs' && config.overlay.mode === 'vxlan') {
    specs.push({
      name: 'bridge fdb monitor',
      file: 'bridge',
      args: ['monitor', 'fdb'],
      classify: (l) => one(classifyFdbMonitorLine(l)),
      connectedWhen: 'spawn',
    });
  }
  if (config.backend === 'ovs') {
    const db = config.ovs.db;
    // OVS's tools write to stdout through stdio, fully buffered on a pipe: a few change lines would sit in
    // the buffer until the process exits. stdbuf (coreutils) makes them line-buffered.
    const ovsdb = (table: string, columns: string): MonitorSpec => ({
      name: `OVSDB monitor of ${table}`,
      file: 'stdbuf',
      args: ['-oL', 'ovsdb-client', '--format=json', 'monitor', db, 'Open_vSwitch', table, columns],
      classify: (l) => classifyOvsdbUpdate(table, l),
      connectedWhen: 'alive',
    });
    specs.push(ovsdb('Bridge', 'name,external_ids,datapath_id'), ovsdb('Interface', 'name,external_ids,ofport'));
    specs.push({
      name: `flow monitor of ${CNI_BRIDGE}`,
      file: 'stdbuf',
      args: ['-oL', 'ovs-ofctl', 'monitor', `unix:${join(config.ovs.runDir, `${CNI_BRIDGE}.mgmt`)}`, 'watch:'],
      // ovs-ofctl monitor opens a control socket in the run directory.
      env: { OVS_RUNDIR: config.ovs.runDir },
      classify: (l) => one(classifyFlowMonitorLine(CNI_BRIDGE, l)),
      connectedWhen: 'alive',
    });
  }
  return specs;
}

export interface ChangeWatcherOptions {
  readonly specs: readonly MonitorSpec[];
  /** Runs one reconcile pass (node and overlay); returns what it repaired. */
  runPass(cause: ReconcileCause): Promise<readonly string[]>;
  readonly logger: Logger;
  readonly policy?: Partial<RepairPolicyOptions>;
}

export class ChangeWatcher {
  private readonly monitors: LineMonitor[] = [];
  private readonly scheduler: RepairScheduler;
  private passes = 0;
  private stopped = false;

  constructor(private readonly options: ChangeWatcherOptions) {
    const logger = options.logger;
    this.scheduler = new RepairScheduler(
      {
        runPass: async (causes) => {
          const started = performance.now();
          this.passes++;
          const repairs = await options.runPass({ trigger: 'event', causes });
          logger.info(
            { event: 'event-pass', causes, repairs: repairs.length, durationMs: Math.round(performance.now() - started) },
            `event pass after ${causes[0] ?? 'a change'}: ${repairs.length} repairs`,
          );
          return { repairs };
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
    this.options.logger.info(
      { event: 'watching', monitors: this.options.specs.map((s) => s.name) },
      `repairing on change: ${this.options.specs.map((s) => s.name).join(', ')}`,
    );
  }

  /** Stops the monitors and waits for a pass in flight (up to `waitMs`). */
  async stop(waitMs = Infinity): Promise<void> {
    this.stopped = true;
    await Promise.all(this.monitors.map((m) => m.stop()));
    await this.scheduler.stop(waitMs);
  }

  private monitorOf(spec: MonitorSpec): LineMonitor {
    const logger = this.options.logger;
    let exits = 0;
    let lastExit = '';
    return new LineMonitor({
      name: spec.name,
      file: spec.file,
      args: spec.args,
      ...(spec.env ? { env: spec.env } : {}),
      onStart: ({ restart }) => {
        if (!restart) return;
        if (spec.connectedWhen === 'spawn') {
          this.scheduler.notify(`${spec.name} restarted`);
          return;
        }
        const generation = exits;
        const timer = setTimeout(() => {
          if (exits !== generation || this.stopped) return;
          lastExit = '';
          logger.info({ event: 'monitor-reconnected', monitor: spec.name }, `${spec.name} is back`);
          this.scheduler.notify(`${spec.name} reconnected`);
        }, CONNECTED_AFTER_MS);
        timer.unref();
      },
      onLine: (line) => {
        for (const cause of spec.classify(line)) {
          logger.debug({ event: 'change-seen', monitor: spec.name, change: cause }, `change seen: ${cause}`);
          this.scheduler.notify(cause);
        }
      },
      onExit: ({ code, signal, stderr, retryInMs }) => {
        exits++;
        // The same failure again and again (a switch that stays down) is logged once.
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
