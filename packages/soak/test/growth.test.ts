// The soak's growth rule on synthetic series: flat passes, a leak per operation fails, growth that follows
// the live instances passes, too few samples fail; and the verdict over whole samples judges daemon
// metrics per daemon lifetime (a restart resets them) and node metrics over all operations.
import { describe, expect, it } from 'vitest';
import {
  MIN_SAMPLES,
  RELEASED_LOG_CAP,
  fitSlopes,
  judgeGrowth,
  judgeSoak,
  renderSoakSvg,
  renderVerdictTable,
  type GrowthSample,
  type SoakSample,
} from '../src/index.js';

/** A deterministic wobble in [-1, 1] (no Math.random: the tests must not flake). */
const wobble = (i: number): number => Math.sin(i * 1.7) * Math.cos(i * 0.31);
/** Live instances walking between 4 and 12, independently of the operation count. */
const liveAt = (i: number): number => 8 + Math.round(4 * Math.sin(i / 3));

function series(n: number, value: (ops: number, live: number, i: number) => number): GrowthSample[] {
  return Array.from({ length: n }, (_, i) => {
    const ops = i * 10;
    const live = liveAt(i);
    return { ops, live, value: value(ops, live, i) };
  });
}

describe('judgeGrowth', () => {
  const tolerance = { absolute: 10, relative: 0.1 };

  it('passes a flat, noisy series', () => {
    const v = judgeGrowth(
      series(200, (_o, _l, i) => 80 + 3 * wobble(i)),
      tolerance,
    );
    expect(v.pass).toBe(true);
    expect(Math.abs(v.growth)).toBeLessThan(2);
    expect(v.samples).toBe(200);
    expect(v.opsSpan).toBe(1990);
  });

  it('fails a series that leaks a little with every operation, through the noise', () => {
    // 0.01 MB per operation: 20 MB over 2000 operations, above max(10, 10 % of ~90).
    const v = judgeGrowth(
      series(200, (ops, _l, i) => 80 + 0.01 * ops + 3 * wobble(i)),
      tolerance,
    );
    expect(v.pass).toBe(false);
    expect(v.perOp).toBeCloseTo(0.01, 3);
    expect(v.reason).toMatch(/grows with operations/);
  });

  it('passes a series that follows the live instances, however much it moves', () => {
    // 5 MB per live instance: swings of 40 MB, but nothing left behind by operations.
    const v = judgeGrowth(
      series(200, (_o, live, i) => 60 + 5 * live + wobble(i)),
      tolerance,
    );
    expect(v.pass).toBe(true);
    expect(v.perLive).toBeCloseTo(5, 1);
    expect(Math.abs(v.perOp)).toBeLessThan(1e-3);
  });

  it('tells a leak apart from live growth when both are there', () => {
    const v = judgeGrowth(
      series(200, (ops, live) => 2 * live + 0.002 * ops),
      { absolute: 0.5, relative: 0 },
    );
    expect(v.pass).toBe(false);
    expect(v.perOp).toBeCloseTo(0.002, 6);
    expect(v.perLive).toBeCloseTo(2, 6);
  });

  it('exact bookkeeping (elements = 2 per live instance) passes a tolerance below one element', () => {
    const v = judgeGrowth(
      series(50, (_o, live) => 2 * live),
      { absolute: 0.5, relative: 0 },
    );
    expect(v.pass).toBe(true);
    expect(v.growth).toBeCloseTo(0, 9);
  });

  it('one element more every 100 operations fails it', () => {
    const v = judgeGrowth(
      series(50, (ops, live) => 2 * live + Math.floor(ops / 100)),
      { absolute: 0.5, relative: 0 },
    );
    expect(v.pass).toBe(false);
  });

  it('fits on operations alone when live does not vary, so live growth cannot hide a leak', () => {
    const constant = Array.from({ length: 20 }, (_, i) => ({ ops: i * 10, live: 5, value: 100 + i }));
    expect(fitSlopes(constant).perLive).toBeUndefined();
    const v = judgeGrowth(constant, { absolute: 5, relative: 0 });
    expect(v.pass).toBe(false);
    expect(v.growth).toBeCloseTo(19, 6);
  });

  it(`fails with fewer than ${MIN_SAMPLES} samples: a run too short cannot pass`, () => {
    const v = judgeGrowth(
      series(MIN_SAMPLES - 1, () => 1),
      tolerance,
    );
    expect(v.pass).toBe(false);
    expect(v.reason).toMatch(/only 3 judged samples/);
  });
});

/** Samples of a run of `n` samples, 10 s apart, 5 operations per sample, a daemon restart every 50 samples. */
function run(n: number, metric: (s: { ops: number; opsInLifetime: number; live: number; i: number }) => Partial<SoakSample>): SoakSample[] {
  return Array.from({ length: n }, (_, i) => {
    const ops = i * 5;
    const lifetimeStart = Math.floor(i / 50) * 50;
    const live = liveAt(i);
    const opsInLifetime = ops - lifetimeStart * 5;
    const base: SoakSample = {
      t: i * 10,
      ops,
      opsInLifetime,
      daemonStartedAt: lifetimeStart * 10,
      daemonGeneration: 1 + Math.floor(i / 50),
      live,
      rssMB: 80 + 2 * wobble(i),
      fds: 40 + live,
      children: 3,
      publishedPorts: 2 * live,
      allowedSources: live,
      stateBytes: 300 + 500 * live + 13 * ops,
      stateFiles: 2 + live,
      stateRecordBytes: 300 + 500 * live,
      releasedLogLines: ops / 2,
      load1: 20,
    };
    return { ...base, ...metric({ ops, opsInLifetime, live, i }) };
  });
}

describe('judgeSoak', () => {
  it('passes a healthy run and reports a verdict for every metric', () => {
    const samples = run(300, () => ({}));
    const v = judgeSoak(samples, { warmupSeconds: 60 });
    expect(v.pass).toBe(true);
    expect(v.metrics.map((m) => m.key)).toEqual([
      'rssMB',
      'fds',
      'children',
      'publishedPorts',
      'allowedSources',
      'stateRecordBytes',
      'stateFiles',
      'releasedLogLines',
    ]);
    expect(v.judgeFrom).toBe(1495);
    // Node metrics: every sample of the second half; daemon metrics: without each daemon's first 60 s.
    expect(v.metrics.find((m) => m.key === 'stateFiles')!.samples).toBe(150);
    expect(v.metrics.find((m) => m.key === 'rssMB')!.samples).toBe(150 - 3 * 6);
    expect(renderVerdictTable(v, samples)).toMatch(/verdict: PASS/);
  });

  it('catches a daemon leak that every restart hides from the total operation count', () => {
    // +0.1 fd per operation within each daemon's life, reset by the restart: a sawtooth.
    const samples = run(300, ({ opsInLifetime, live }) => ({ fds: 40 + live + Math.floor(opsInLifetime / 10) }));
    const v = judgeSoak(samples, { warmupSeconds: 60 });
    expect(v.pass).toBe(false);
    const fds = v.metrics.find((m) => m.key === 'fds')!;
    expect(fds.pass).toBe(false);
    expect(fds.against).toBe('operations since the daemon started');
    expect(v.metrics.filter((m) => !m.pass).map((m) => m.key)).toEqual(['fds']);
    expect(renderVerdictTable(v, samples)).toMatch(/verdict: FAIL\n {2}open fds: grows with operations/);
  });

  it('catches state files left behind by deletes', () => {
    const samples = run(300, ({ ops, live }) => ({ stateFiles: 1 + live + Math.floor(ops / 50) }));
    const v = judgeSoak(samples, { warmupSeconds: 60 });
    expect(v.metrics.find((m) => m.key === 'stateFiles')!.pass).toBe(false);
    expect(v.metrics.find((m) => m.key === 'stateRecordBytes')!.pass).toBe(true);
  });

  it('judges released.log by its cap: growth with deletes passes below it and fails above it', () => {
    const below = judgeSoak(
      run(300, () => ({})),
      { warmupSeconds: 60 },
    ).metrics.find((m) => m.key === 'releasedLogLines')!;
    expect(below.pass).toBe(true);
    expect(below.perOp).toBeCloseTo(0.5, 6);
    expect(below.allowed).toBe(RELEASED_LOG_CAP);
    const above = judgeSoak(
      run(300, ({ ops }) => ({ releasedLogLines: RELEASED_LOG_CAP - 500 + ops })),
      { warmupSeconds: 60 },
    ).metrics.find((m) => m.key === 'releasedLogLines')!;
    expect(above.pass).toBe(false);
    expect(above.reason).toMatch(/does not stay within its bound/);
  });

  it('draws one panel per metric plus live and operations, with the verdicts', () => {
    const samples = run(100, () => ({}));
    const v = judgeSoak(samples, { warmupSeconds: 60 });
    const svg = renderSoakSvg('test', samples, [{ t: 500, kind: 'kill', what: 'SIGKILL' }], v);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline /g)).toHaveLength(10);
    expect(svg.match(/>PASS: /g)).toHaveLength(8);
    expect(svg).toContain('stroke="#d33"');
  });
});
