/**
 * The soak's growth rule (pure): does a metric grow with the number of operations done, rather than with
 * the number of live instances?
 *
 * For each metric, over the judged samples (the second half of the run; for metrics of the daemon process,
 * also only samples at least `warmupSeconds` after that daemon started), fit by least squares
 *
 *     value = a + b * ops + c * live
 *
 * where `ops` is the operation count the metric can accumulate over (all operations for what outlives the
 * daemon, such as the state directory and nftables; operations since the daemon started for its RSS, fds
 * and children, which a restart resets) and `live` the number of live instances. Because the churn keeps
 * `live` moving up and down independently of `ops`, `c` absorbs what live instances legitimately cost and
 * `b` is what every operation leaves behind. The metric LEAKS when the growth `b` predicts over the judged
 * span of operations exceeds its tolerance:
 *
 *     b * opsSpan > max(absolute, relative * median(value))
 *
 * When `live` barely varies in the judged samples (or follows `ops` too closely to tell them apart) the fit
 * uses `ops` alone, which is stricter (live growth then counts as operations growth).
 */

export interface GrowthSample {
  /** Operations the metric can have accumulated over (see above). */
  readonly ops: number;
  readonly live: number;
  readonly value: number;
}

export interface Tolerance {
  /** Allowed growth over the judged span, in the metric's unit. */
  readonly absolute: number;
  /** Allowed growth as a fraction of the metric's median over the judged samples. */
  readonly relative: number;
}

export interface GrowthVerdict {
  readonly samples: number;
  /** Fitted growth per operation (b). */
  readonly perOp: number;
  /** Fitted cost per live instance (c); undefined when live was left out of the fit. */
  readonly perLive: number | undefined;
  /** Operations spanned by the judged samples (max - min). */
  readonly opsSpan: number;
  /** perOp * opsSpan: the growth attributed to operations. */
  readonly growth: number;
  /** The tolerance applied: max(absolute, relative * median). */
  readonly allowed: number;
  readonly median: number;
  readonly first: number;
  readonly last: number;
  readonly pass: boolean;
  /** Why the verdict is what it is, in words. */
  readonly reason: string;
}

/** Fewer judged samples than this cannot show a trend: the verdict is a failure (the soak was too short). */
export const MIN_SAMPLES = 4;
/** |corr(ops, live)| above this: live cannot be told apart from ops; fit ops alone. */
const COLLINEAR = 0.95;

function mean(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Least squares of y on one or two centred regressors; returns their coefficients. */
export function fitSlopes(samples: readonly GrowthSample[]): { perOp: number; perLive: number | undefined } {
  const ops = samples.map((s) => s.ops);
  const live = samples.map((s) => s.live);
  const y = samples.map((s) => s.value);
  const mo = mean(ops);
  const ml = mean(live);
  const my = mean(y);
  let soo = 0;
  let sll = 0;
  let sol = 0;
  let soy = 0;
  let sly = 0;
  for (let i = 0; i < samples.length; i++) {
    const o = ops[i]! - mo;
    const l = live[i]! - ml;
    const v = y[i]! - my;
    soo += o * o;
    sll += l * l;
    sol += o * l;
    soy += o * v;
    sly += l * v;
  }
  if (soo === 0) return { perOp: 0, perLive: undefined };
  const det = soo * sll - sol * sol;
  const collinear = sll === 0 || (sol * sol) / (soo * sll) > COLLINEAR * COLLINEAR;
  if (collinear || det <= 0) return { perOp: soy / soo, perLive: undefined };
  return { perOp: (soy * sll - sly * sol) / det, perLive: (sly * soo - soy * sol) / det };
}

export function judgeGrowth(samples: readonly GrowthSample[], tolerance: Tolerance): GrowthVerdict {
  const n = samples.length;
  if (n < MIN_SAMPLES) {
    return {
      samples: n,
      perOp: Number.NaN,
      perLive: undefined,
      opsSpan: 0,
      growth: Number.NaN,
      allowed: tolerance.absolute,
      median: n > 0 ? median(samples.map((s) => s.value)) : Number.NaN,
      first: samples[0]?.value ?? Number.NaN,
      last: samples[n - 1]?.value ?? Number.NaN,
      pass: false,
      reason: `only ${n} judged samples (at least ${MIN_SAMPLES} needed): run the soak longer or sample more often`,
    };
  }
  const opsValues = samples.map((s) => s.ops);
  const opsSpan = Math.max(...opsValues) - Math.min(...opsValues);
  const { perOp, perLive } = fitSlopes(samples);
  const med = median(samples.map((s) => s.value));
  const allowed = Math.max(tolerance.absolute, tolerance.relative * Math.abs(med));
  const growth = perOp * opsSpan;
  const pass = growth <= allowed;
  const fit =
    perLive === undefined
      ? 'fit on ops alone (live did not vary independently)'
      : `fit on ops and live (${fmt(perLive)} per live instance)`;
  const reason = pass
    ? `growth with operations ${fmt(growth)} <= allowed ${fmt(allowed)} over ${opsSpan} operations; ${fit}`
    : `grows with operations: ${fmt(growth)} over ${opsSpan} operations (${fmt(perOp)} per operation) > allowed ${fmt(allowed)}; ${fit}`;
  return {
    samples: n,
    perOp,
    perLive,
    opsSpan,
    growth,
    allowed,
    median: med,
    first: samples[0]!.value,
    last: samples[n - 1]!.value,
    pass,
    reason,
  };
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 0.01 || a >= 1e6)) return x.toExponential(2);
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
