/**
 * The soak's command line and the cadence it derives from the duration (pure).
 */
import { parseArgs } from 'node:util';
import type { SoakOptions } from './run.js';

export const USAGE = `usage: npm run soak -- --hours H [options]
       npm run soak -- --judge results/soak-<date>.json

Runs one node (a network namespace with a real nodenetd from dist) and a world namespace: a churn of
creates and deletes (instances in their own namespaces with a published port, live count bounded),
traffic (ping between instances, TCP and UDP from the world through the published port), daemon restarts
(SIGTERM, every 3rd one SIGKILL, then adoption) and disruptions in the node namespace (nodenet's nftables
tables flushed or deleted, an instance's host veth end deleted) that the reconcile repairs. Every sample
records the daemon's RSS, open fds and child processes, the published_ports / allowed_sources elements and
the state directory's size. Writes results/soak-<date>.json and .svg; exit 1 when a metric grows with the
number of operations rather than with the number of live instances, or an operation failed.
Needs root and a build (npm run build).

  --hours H             duration (or --minutes M); required unless --judge
  --sample-seconds S    default: duration/360, 2..30
  --live-min N          default 4
  --live-max N          default 12
  --restart-seconds S   daemon restart every S seconds (default: duration/8, at least 30)
  --kill-every N        every N-th restart is SIGKILL (default 3)
  --disrupt-seconds S   a disruption every S seconds (default: duration/60, at least 10)
  --reconcile-seconds S the daemon's reconcileIntervalSeconds (default 5)
  --warmup-seconds S    daemon metrics are not judged in the first S s of each daemon (default: restart/4, at most 120)
  --backend NAME        iproute2 (default) or ovs
  --seed N              the churn's random seed (default 1)
  --out DIR             default results
  --judge FILE          judge the samples of a recorded run again (no run)

A full soak should also run the API fuzz test with 10,000 cases (packages/server/test/api-fuzz.int.test.ts):
  NODENET_FUZZ_RUNS=10000 npx vitest run --project integration packages/server/test/api-fuzz.int.test.ts`;

export class UsageError extends Error {}

export type Command =
  | { readonly kind: 'help' }
  | { readonly kind: 'judge'; readonly file: string }
  | { readonly kind: 'run'; readonly outDir: string; readonly options: Omit<SoakOptions, 'log'> };

/** The cadence of a run of `durationSeconds` (what the flags default to). */
export function defaultOptions(durationSeconds: number): Omit<SoakOptions, 'log'> {
  const restartEverySeconds = Math.max(30, Math.round(durationSeconds / 8));
  return {
    durationSeconds,
    sampleSeconds: Math.min(30, Math.max(2, Math.round(durationSeconds / 360))),
    liveMin: 4,
    liveMax: 12,
    restartEverySeconds,
    killEvery: 3,
    disruptEverySeconds: Math.max(10, Math.round(durationSeconds / 60)),
    reconcileIntervalSeconds: 5,
    warmupSeconds: Math.min(120, Math.round(restartEverySeconds / 4)),
    opPauseMs: 200,
    trafficEvery: 5,
    backend: 'iproute2',
    seed: 1,
  };
}

function positive(flag: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n > 0) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} must be a positive ${integer ? 'integer' : 'number'} (got '${value}')`);
  }
  return n;
}

export function parseCommand(argv: readonly string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        hours: { type: 'string' },
        minutes: { type: 'string' },
        'sample-seconds': { type: 'string' },
        'live-min': { type: 'string' },
        'live-max': { type: 'string' },
        'restart-seconds': { type: 'string' },
        'kill-every': { type: 'string' },
        'disrupt-seconds': { type: 'string' },
        'reconcile-seconds': { type: 'string' },
        'warmup-seconds': { type: 'string' },
        backend: { type: 'string', default: 'iproute2' },
        seed: { type: 'string' },
        out: { type: 'string', default: 'results' },
        judge: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return { kind: 'help' };
  if (v.judge !== undefined) return { kind: 'judge', file: v.judge };
  const hours = positive('hours', v.hours, false);
  const minutes = positive('minutes', v.minutes, false);
  if ((hours === undefined) === (minutes === undefined)) throw new UsageError('give the duration: --hours H or --minutes M (one of them)');
  const duration = Math.round(hours !== undefined ? hours * 3600 : minutes! * 60);
  if (!/^[a-z0-9-]+$/.test(v.backend)) throw new UsageError(`--backend: '${v.backend}' is not a backend name (e.g. iproute2, ovs)`);
  const d = defaultOptions(duration);
  const restart = positive('restart-seconds', v['restart-seconds'], false) ?? d.restartEverySeconds;
  const options = {
    ...d,
    sampleSeconds: positive('sample-seconds', v['sample-seconds'], false) ?? d.sampleSeconds,
    liveMin: positive('live-min', v['live-min'], true) ?? d.liveMin,
    liveMax: positive('live-max', v['live-max'], true) ?? d.liveMax,
    restartEverySeconds: restart,
    killEvery: positive('kill-every', v['kill-every'], true) ?? d.killEvery,
    disruptEverySeconds: positive('disrupt-seconds', v['disrupt-seconds'], false) ?? d.disruptEverySeconds,
    reconcileIntervalSeconds: positive('reconcile-seconds', v['reconcile-seconds'], true) ?? d.reconcileIntervalSeconds,
    warmupSeconds: positive('warmup-seconds', v['warmup-seconds'], false) ?? Math.min(120, Math.round(restart / 4)),
    backend: v.backend,
    seed: positive('seed', v.seed, true) ?? d.seed,
  };
  if (options.liveMax <= options.liveMin)
    throw new UsageError(`--live-max (${options.liveMax}) must be above --live-min (${options.liveMin})`);
  if (options.liveMax > 120) throw new UsageError(`--live-max must be at most 120 (the address pool holds twice the maximum in a /24)`);
  return { kind: 'run', outDir: v.out, options };
}
