/**
 * What the soak records in every sample, which metrics it judges, with which tolerance, and the verdict
 * over a run's samples (pure: the same function judges a finished run again from its JSON file).
 */
import { MIN_SAMPLES, fmt, judgeGrowth, type GrowthVerdict, type Tolerance } from './growth.js';

export interface SoakSample {
  /** Seconds since the soak started. */
  readonly t: number;
  /** Operations done so far (creates + deletes). */
  readonly ops: number;
  /** Operations done since the current daemon process started. */
  readonly opsInLifetime: number;
  /** When (t) the current daemon process started. */
  readonly daemonStartedAt: number;
  /** Daemon processes started so far (1 = the first one). */
  readonly daemonGeneration: number;
  readonly live: number;
  readonly rssMB: number;
  readonly fds: number;
  readonly children: number;
  readonly publishedPorts: number;
  readonly allowedSources: number;
  /** Every file of the state directory. */
  readonly stateBytes: number;
  readonly stateFiles: number;
  /** The state directory without released.log: the records of the CNI and the instances. */
  readonly stateRecordBytes: number;
  /** Lines of released.log (the handles deleted so far, remembered up to a cap: see RELEASED_LOG_CAP). */
  readonly releasedLogLines: number;
  /** The machine's 1-minute load average (other work on the machine shows here). */
  readonly load1: number;
}

export type MetricKey =
  'rssMB' | 'fds' | 'children' | 'publishedPorts' | 'allowedSources' | 'stateRecordBytes' | 'stateFiles' | 'releasedLogLines';

/**
 * released.log is meant to grow with deletes: it remembers deleted handles so that a repeated
 * DeleteInterface answers NOT_FOUND (packages/state FileStateStore, maxReleased 10,000 by default) and is
 * compacted to the newest 10,000 once it holds twice that. It is judged by that bound, not by its slope.
 */
export const RELEASED_LOG_CAP = 20_000;

export interface MetricSpec {
  readonly key: MetricKey;
  readonly label: string;
  readonly unit: string;
  /**
   * `daemon`: a property of the daemon process, reset by a restart (judged against operations since the
   * daemon started, after its warm-up); `node`: outlives the daemon (judged against all operations).
   */
  readonly scope: 'daemon' | 'node';
  readonly tolerance: Tolerance;
  /** Judged by this upper bound instead of the growth rule (growth by design, capped). */
  readonly bound?: number;
}

/**
 * Tolerances: what may change over the judged span without being a leak. RSS moves with V8's heap and
 * garbage collection by several MB between samples of an idle daemon, hence 10 MB or 10 %. A descriptor or
 * a child process is sampled while a command may be running (an `ip`/`nft` child and its pipes), hence a
 * few. nftables elements and state files are exact bookkeeping (one element per published port and
 * protocol, one per instance; one record file per instance): any growth that live instances do not
 * explain is a leak, so the tolerance is below one element. The state files' bytes vary with the lengths
 * of names and numbers in a record: 5 % or 4 KiB. released.log is judged by its cap (RELEASED_LOG_CAP).
 */
export const METRICS: readonly MetricSpec[] = [
  { key: 'rssMB', label: 'daemon RSS', unit: 'MB', scope: 'daemon', tolerance: { absolute: 10, relative: 0.1 } },
  { key: 'fds', label: 'open fds', unit: 'fds', scope: 'daemon', tolerance: { absolute: 4, relative: 0 } },
  { key: 'children', label: 'child processes', unit: 'processes', scope: 'daemon', tolerance: { absolute: 1.5, relative: 0 } },
  { key: 'publishedPorts', label: 'published_ports elements', unit: 'elements', scope: 'node', tolerance: { absolute: 0.5, relative: 0 } },
  { key: 'allowedSources', label: 'allowed_sources elements', unit: 'elements', scope: 'node', tolerance: { absolute: 0.5, relative: 0 } },
  { key: 'stateRecordBytes', label: 'state records bytes', unit: 'bytes', scope: 'node', tolerance: { absolute: 4096, relative: 0.05 } },
  { key: 'stateFiles', label: 'state dir files', unit: 'files', scope: 'node', tolerance: { absolute: 0.5, relative: 0 } },
  {
    key: 'releasedLogLines',
    label: 'released.log lines',
    unit: 'lines',
    scope: 'node',
    tolerance: { absolute: 0, relative: 0 },
    bound: RELEASED_LOG_CAP,
  },
];

export interface JudgeOptions {
  /** Samples before this time (s) are warm-up for every metric. Default: half the last sample's time. */
  readonly judgeFrom?: number;
  /** Daemon metrics: samples within this many seconds of the daemon's start are its warm-up. */
  readonly warmupSeconds: number;
}

export interface MetricVerdict extends GrowthVerdict {
  readonly key: MetricKey;
  readonly label: string;
  readonly unit: string;
  readonly against: 'operations since the daemon started' | 'all operations';
}

export interface SoakVerdict {
  readonly pass: boolean;
  readonly judgeFrom: number;
  readonly warmupSeconds: number;
  readonly metrics: readonly MetricVerdict[];
}

export function judgeSoak(samples: readonly SoakSample[], options: JudgeOptions, metrics: readonly MetricSpec[] = METRICS): SoakVerdict {
  const end = samples.length > 0 ? samples[samples.length - 1]!.t : 0;
  const judgeFrom = options.judgeFrom ?? end / 2;
  const late = samples.filter((s) => s.t >= judgeFrom);
  const verdicts = metrics.map((m): MetricVerdict => {
    const daemon = m.scope === 'daemon';
    const judged = daemon ? late.filter((s) => s.t - s.daemonStartedAt >= options.warmupSeconds) : late;
    const series = judged
      .filter((s) => Number.isFinite(s[m.key]))
      .map((s) => ({ ops: daemon ? s.opsInLifetime : s.ops, live: s.live, value: s[m.key] }));
    const growth = judgeGrowth(series, m.tolerance);
    const v =
      m.bound === undefined
        ? growth
        : withinBound(
            growth,
            series.map((p) => p.value),
            m.bound,
          );
    return { ...v, key: m.key, label: m.label, unit: m.unit, against: daemon ? 'operations since the daemon started' : 'all operations' };
  });
  return { pass: verdicts.every((v) => v.pass), judgeFrom, warmupSeconds: options.warmupSeconds, metrics: verdicts };
}

function withinBound(v: GrowthVerdict, values: readonly number[], bound: number): GrowthVerdict {
  const max = Math.max(...values);
  const pass = values.length >= MIN_SAMPLES && max <= bound;
  const reason = `${pass ? 'stays' : 'does not stay'} within its bound: at most ${fmt(max)} <= ${fmt(bound)} (grows by design: ${fmt(v.perOp)} per operation)`;
  return { ...v, allowed: bound, pass, reason };
}

/** Values of a metric at the start, middle and end of the run (for the report). */
export function startMiddleEnd(samples: readonly SoakSample[], key: MetricKey): [number, number, number] {
  if (samples.length === 0) return [Number.NaN, Number.NaN, Number.NaN];
  return [samples[0]![key], samples[Math.floor((samples.length - 1) / 2)]![key], samples[samples.length - 1]![key]];
}

/** The verdict table, one row per metric, for the terminal. */
export function renderVerdictTable(verdict: SoakVerdict, samples: readonly SoakSample[]): string {
  const rows: string[][] = [['metric', 'start', 'middle', 'end', 'samples', 'per op', 'growth', 'allowed', 'verdict']];
  for (const v of verdict.metrics) {
    const [s, m, e] = startMiddleEnd(samples, v.key);
    rows.push([
      `${v.label} (${v.unit})`,
      fmt(s),
      fmt(m),
      fmt(e),
      String(v.samples),
      fmt(v.perOp),
      fmt(v.growth),
      fmt(v.allowed),
      v.pass ? 'PASS' : 'FAIL',
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const failures = verdict.metrics.filter((v) => !v.pass).map((v) => `  ${v.label}: ${v.reason}`);
  return [...lines, '', verdict.pass ? 'verdict: PASS (nothing grows with operations)' : 'verdict: FAIL', ...failures].join('\n');
}
