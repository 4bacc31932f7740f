/**
 * Restart with the node full (after the scale suite): SIGTERM the daemon, start it again with the same
 * config and state, and time spawn -> health SERVING for "" and "network.Network" (polled every 10 ms on a
 * fresh channel). The daemon's own log splits it: process start -> `restored` (state loaded, node
 * reconciled) -> `ready`.
 */
import { Daemon, connectHealth, type LogLine } from '@nodenet/testkit';
import type { NodeEnv } from '../node-env.js';
import type { BenchOptions } from '../options.js';
import { rssMB } from '../rss.js';
import { median, round } from '../stats.js';

export interface RestartRun {
  /** Spawn of the process to SERVING, as a client sees it. */
  readonly servingMs: number;
  /** The daemon's `restored` event: how long restore (reconcile) took. */
  readonly restoreMs: number | null;
  /** From the daemon's `start` log line to its `ready` line. */
  readonly startToReadyMs: number | null;
  readonly rssMB: number;
}

export interface RestartResult {
  readonly instances: number;
  readonly runs: RestartRun[];
  readonly servingMsMedian: number;
  readonly servingMsMax: number;
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

export async function runRestart(env: NodeEnv, options: BenchOptions, instances: number): Promise<RestartResult> {
  const runs: RestartRun[] = [];
  for (let r = 0; r < options.restart.runs; r++) {
    const old = env.daemon;
    const exit = await old.stop(30_000);
    if (exit.exitCode !== 0) throw new Error(`the daemon exited with ${JSON.stringify(exit)} on SIGTERM: ${old.diagnostics()}`);
    const started = performance.now();
    const next = await Daemon.spawn(old.options, old.launch);
    env.daemon = next;
    await waitServing(next, 60_000);
    const servingMs = performance.now() - started;
    const restored = eventLine(next.logs, 'restored');
    const start = timeOf(eventLine(next.logs, 'start'));
    const ready = timeOf(eventLine(next.logs, 'ready'));
    const run: RestartRun = {
      servingMs: round(servingMs, 1),
      restoreMs: typeof restored?.durationMs === 'number' ? restored.durationMs : null,
      startToReadyMs: start !== null && ready !== null ? ready - start : null,
      rssMB: round(await rssMB(next.pid), 1),
    };
    runs.push(run);
    options.log(
      `restart: ${instances} instances: SERVING after ${run.servingMs} ms (restore ${run.restoreMs ?? '?'} ms, start->ready ${run.startToReadyMs ?? '?'} ms)`,
    );
  }
  const serving = runs.map((r) => r.servingMs);
  return { instances, runs, servingMsMedian: round(median(serving), 1), servingMsMax: Math.max(...serving) };
}
