/**
 * Restart with the node full (after the scale suite, and on an ovs node filled as full): SIGTERM the daemon,
 * start it again with the same config and state, and time spawn -> health SERVING for "" and
 * "network.Network" (polled every 10 ms on a fresh channel). Each run restarts the daemon twice, as it is
 * installed (the release's bundle, one file) and as built (packages/server/dist, unbundled), back to back:
 * the figure judged is the bundled one, the unbundled one shows what loading the modules costs. The daemon's
 * log splits it: process start -> `restored` (state loaded, node reconciled; its phases) -> `ready`.
 */
import { loadavg } from 'node:os';
import { Daemon, connectHealth, daemonNodeFlags, serverMainPath, type LogLine } from '@nodenet/testkit';
import { cpuTimes } from '../cpu.js';
import type { NodeEnv } from '../node-env.js';
import type { BenchOptions } from '../options.js';
import { rssMB } from '../rss.js';
import { median, round } from '../stats.js';

/** How the daemon is started: the release's bundle, or the compiled workspace. */
export type DaemonBuild = 'bundled' | 'unbundled';

export interface RestartRun {
  readonly build: DaemonBuild;
  /** Spawn of the process to SERVING, as a client sees it. */
  readonly servingMs: number;
  /** CPU the daemon used from its spawn to SERVING (user + system, its reaped children's included), ms. */
  readonly cpuMs: number | null;
  /** The daemon's `restored` event: how long restore (reconcile) took. */
  readonly restoreMs: number | null;
  /** The restore's phases (converge the CNI, the filter, list, fix), ms. */
  readonly restorePhases?: Readonly<Record<string, number>>;
  /** From the daemon's `start` log line to its `ready` line. */
  readonly startToReadyMs: number | null;
  readonly rssMB: number;
}

export interface RestartBuildSummary {
  readonly servingMsMedian: number;
  readonly servingMsMax: number;
  readonly cpuMsMedian: number | null;
  readonly restoreMsMedian: number | null;
}

export interface RestartResult {
  readonly backend?: 'iproute2' | 'ovs';
  readonly instances: number;
  /** Bundled and unbundled, alternating (older results: unbundled only, without `build`). */
  readonly runs: RestartRun[];
  /** The bundled daemon's (the unbundled one's in results from before the bundle was measured). */
  readonly servingMsMedian: number;
  readonly servingMsMax: number;
  readonly builds?: Partial<Record<DaemonBuild, RestartBuildSummary>>;
  /** The daemon's CPU load average when the suite ended. */
  readonly loadAverage?: number;
}

/** The command lines that start each build (before `--config FILE`). */
export type DaemonCommands = Readonly<Record<DaemonBuild, readonly [string, ...string[]]>>;

export function daemonCommands(bundledDaemon: string): DaemonCommands {
  return {
    bundled: [process.execPath, ...daemonNodeFlags, bundledDaemon],
    unbundled: [process.execPath, ...daemonNodeFlags, serverMainPath],
  };
}

async function waitServing(daemon: Daemon, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (daemon.exit) throw new Error(`the daemon exited before SERVING: ${daemon.diagnostics()}`);
    const health = connectHealth(daemon.target);
    try {
      const [all, network] = await Promise.all([health.check('', 1000), health.check('network.Network', 1000)]);
      if (all === 'SERVING' && network === 'SERVING') return;
    } catch {
      // not listening yet
    } finally {
      health.close();
    }
    if (performance.now() > deadline) throw new Error(`the daemon was not SERVING within ${timeoutMs} ms: ${daemon.diagnostics()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function eventLine(logs: readonly LogLine[], event: string): LogLine | undefined {
  return logs.find((l) => l.event === event);
}

function timeOf(line: LogLine | undefined): number | null {
  const t = line?.time ?? line?.timestamp;
  if (typeof t === 'number') return t;
  if (typeof t === 'string') {
    const parsed = Date.parse(t);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

async function restartOnce(env: NodeEnv, build: DaemonBuild, command: readonly [string, ...string[]]): Promise<RestartRun> {
  const old = env.daemon;
  // 60 s: under load (30+) an ovs daemon just filled with 2,000 instances was seen to need more than 30.
  const exit = await old.stop(60_000);
  if (exit.exitCode !== 0) throw new Error(`the daemon exited with ${JSON.stringify(exit)} on SIGTERM: ${old.diagnostics()}`);
  const started = performance.now();
  const next = await Daemon.spawn({ ...old.options, command }, old.launch);
  env.daemon = next;
  await waitServing(next, 60_000);
  const servingMs = performance.now() - started;
  const cpu = await cpuTimes(next.pid);
  const restored = eventLine(next.logs, 'restored');
  const start = timeOf(eventLine(next.logs, 'start'));
  const ready = timeOf(eventLine(next.logs, 'ready'));
  const phases = restored?.phases;
  return {
    build,
    servingMs: round(servingMs, 1),
    cpuMs: cpu ? round(cpu.selfMs + cpu.childrenMs, 0) : null,
    restoreMs: typeof restored?.durationMs === 'number' ? restored.durationMs : null,
    ...(phases && typeof phases === 'object' ? { restorePhases: phases as Record<string, number> } : {}),
    startToReadyMs: start !== null && ready !== null ? ready - start : null,
    rssMB: round(await rssMB(next.pid), 1),
  };
}

function summarizeBuild(runs: readonly RestartRun[]): RestartBuildSummary | undefined {
  if (runs.length === 0) return undefined;
  const numbers = (xs: readonly (number | null)[]) => xs.filter((x): x is number => x !== null);
  const cpu = numbers(runs.map((r) => r.cpuMs));
  const restore = numbers(runs.map((r) => r.restoreMs));
  return {
    servingMsMedian: round(median(runs.map((r) => r.servingMs)), 1),
    servingMsMax: Math.max(...runs.map((r) => r.servingMs)),
    cpuMsMedian: cpu.length > 0 ? round(median(cpu), 0) : null,
    restoreMsMedian: restore.length > 0 ? round(median(restore), 0) : null,
  };
}

export async function runRestart(
  env: NodeEnv,
  options: BenchOptions,
  instances: number,
  commands: DaemonCommands,
  backend: 'iproute2' | 'ovs' = 'iproute2',
): Promise<RestartResult> {
  const runs: RestartRun[] = [];
  for (let r = 0; r < options.restart.runs; r++) {
    // Alternating which goes first, so neither always follows the other's page cache and heap.
    const order: DaemonBuild[] = r % 2 === 0 ? ['bundled', 'unbundled'] : ['unbundled', 'bundled'];
    for (const build of order) {
      const run = await restartOnce(env, build, commands[build]);
      runs.push(run);
      options.log(
        `restart (${backend}, ${build}): ${instances} instances: SERVING after ${run.servingMs} ms, CPU ${run.cpuMs ?? '?'} ms (restore ${run.restoreMs ?? '?'} ms ${JSON.stringify(run.restorePhases ?? {})}, start->ready ${run.startToReadyMs ?? '?'} ms)`,
      );
    }
  }
  const bundled = summarizeBuild(runs.filter((r) => r.build === 'bundled'))!;
  const unbundled = summarizeBuild(runs.filter((r) => r.build === 'unbundled'));
  return {
    backend,
    instances,
    runs,
    servingMsMedian: bundled.servingMsMedian,
    servingMsMax: bundled.servingMsMax,
    builds: { bundled, ...(unbundled ? { unbundled } : {}) },
    loadAverage: round(loadavg()[0]!, 2),
  };
}
