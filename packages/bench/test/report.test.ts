// The pure parts of the harness: statistics, the targets' verdicts, and the rendered table and plot.
import { describe, expect, it } from 'vitest';
import {
  judgeTargets,
  linearTicks,
  logTicks,
  pairedRatio,
  percentile,
  ratio,
  renderMarkdown,
  renderSvg,
  summarize,
  RESULTS_SCHEMA,
  type BenchResults,
} from '../src/index.js';
import { quickOptions } from '../src/options.js';
import { parseProcStat } from '../src/cpu.js';

describe('statistics', () => {
  it('percentiles interpolate between closest ranks', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(sorted, 50)).toBe(5.5);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile(sorted, 100)).toBe(10);
    expect(percentile(sorted, 90)).toBeCloseTo(9.1, 10);
    expect(percentile([], 50)).toBeNaN();
  });
  it('summarize sorts its input and reports n, min, max and mean', () => {
    const s = summarize([3, 1, 2]);
    expect(s).toMatchObject({ n: 3, min: 1, p50: 2, max: 3, mean: 2 });
    expect(s.p90).toBeCloseTo(2.8, 10);
    expect(s.p99).toBeCloseTo(2.98, 10);
  });
  it('ratio is NaN when a side is missing or zero', () => {
    expect(ratio(1, 4)).toBe(0.25);
    expect(ratio(undefined, 4)).toBeNaN();
    expect(ratio(1, 0)).toBeNaN();
  });
  it('the paired ratio compares samples round by round, so a drift shared by both sides cancels out', () => {
    // Both sides slowed down together in rounds 4-5 and the subject alone in round 3: per round the subject
    // is 0.9 of the baseline but once, while the medians taken apart (4.5 and 10) would say 0.45.
    const subject = [9, 9, 4.5, 4.5, 4.5];
    const baseline = [10, 10, 10, 5, 5];
    expect(pairedRatio(subject, baseline)).toBeCloseTo(0.9, 10);
    expect(ratio(4.5, 10)).toBeCloseTo(0.45, 10);
    expect(pairedRatio([1, 2], [2, 0])).toBe(0.5); // a zero baseline round is left out
    expect(pairedRatio([], [])).toBeNaN();
    expect(() => pairedRatio([1], [1, 2])).toThrow(/differ in length/);
  });
});

describe('CPU accounting', () => {
  it('reads utime, stime, cutime and cstime after the command name, whatever it contains', () => {
    const stat = '1234 (node (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 1000 500 20 0 11 0 100 200';
    expect(parseProcStat(stat, 100)).toEqual({ selfMs: 3000, childrenMs: 15000 });
  });
});

describe('axis ticks', () => {
  it('log ticks are 1-2-5 steps inside the range', () => {
    expect(logTicks(1, 100)).toEqual([1, 2, 5, 10, 20, 50, 100]);
  });
  it('linear ticks start at 0 and cover the maximum', () => {
    const ticks = linearTicks(2000);
    expect(ticks[0]).toBe(0);
    expect(ticks[ticks.length - 1]).toBeGreaterThanOrEqual(2000);
  });
});

const summary = (p50: number, p99: number) => ({ n: 3, min: p50, p50, p90: p99, p99, max: p99, mean: p50 });

function sampleResults(): BenchResults {
  const { log: _log, outDir: _outDir, ...options } = quickOptions();
  const r: BenchResults = {
    schema: RESULTS_SCHEMA,
    profile: 'quick',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    durationSeconds: 60,
    options,
    environment: {
      kernel: '6.1',
      cpus: 2,
      cpuModel: 'test cpu',
      memoryGiB: 4,
      node: 'v20',
      loadStart: 0.5,
      loadEnd: 0.6,
      wakeStart: { idleMs: 600, pipeRoundTripMs: { hot: 0.12, afterIdle: 2.9 }, pageTouchUs: { hot: 0.06, afterIdle: 14.5 } },
      wakeEnd: { idleMs: 600, pipeRoundTripMs: { hot: 0.1, afterIdle: 1.5 }, pageTouchUs: { hot: 0.05, afterIdle: 9 } },
      versions: { netavark: '1.4.0', iperf3: '3.12', 'containernetworking-plugins': '1.1.1' },
    },
    skipped: {},
    suiteSeconds: {},
    latency: {
      instances: 3,
      warmup: 1,
      order: ['nodenet', 'cni', 'netavark'],
      systems: {
        nodenet: {
          create: summary(10, 20),
          delete: summary(5, 9),
          createSamples: [9, 10, 20],
          deleteSamples: [4, 5, 9],
          errors: 0,
          firstErrors: [],
        },
        cni: {
          create: summary(100, 150),
          delete: summary(40, 60),
          createSamples: [90, 100, 150],
          deleteSamples: [30, 40, 60],
          errors: 0,
          firstErrors: [],
        },
        netavark: {
          create: summary(80, 120),
          delete: summary(200, 260),
          createSamples: [70, 80, 120],
          deleteSamples: [150, 200, 260],
          errors: 0,
          firstErrors: [],
        },
      },
    },
    burst: {
      systems: {
        nodenet: {
          instances: 1000,
          concurrency: 32,
          create: { ok: 1000, cpuMsPerInstance: 5, seconds: 2.5, perSecond: 400, latency: summary(50, 90), errors: 0, firstErrors: [] },
          delete: { ok: 1000, cpuMsPerInstance: 4, seconds: 2, perSecond: 500, latency: summary(40, 80), errors: 0, firstErrors: [] },
        },
      },
    },
    scale: {
      samplesPerStep: 3,
      steps: [
        { existing: 100, create: summary(10, 20), delete: summary(5, 9), createSamples: [10], rssMB: 90, fillPerSecond: 300 },
        { existing: 2000, create: summary(14, 30), delete: summary(6, 10), createSamples: [14], rssMB: 160, fillPerSecond: 280 },
      ],
      p50Ratio: 1.4,
      instances: 2000,
      finalRssMB: 160,
      requested: 2000,
      errors: 0,
      firstErrors: [],
    },
    restart: {
      backend: 'iproute2',
      instances: 2000,
      runs: [
        { build: 'bundled', servingMs: 900, cpuMs: 800, restoreMs: 400, startToReadyMs: 600, rssMB: 100 },
        { build: 'unbundled', servingMs: 1300, cpuMs: 1200, restoreMs: 420, startToReadyMs: 650, rssMB: 110 },
      ],
      servingMsMedian: 900,
      servingMsMax: 900,
    },
    restartOvs: {
      backend: 'ovs',
      instances: 2000,
      runs: [{ build: 'bundled', servingMs: 1200, cpuMs: 1000, restoreMs: 700, startToReadyMs: 900, rssMB: 120 }],
      servingMsMedian: 1200,
      servingMsMax: 1200,
    },
    datapath: {
      seconds: 1,
      omitSeconds: 0,
      rounds: 1,
      pairs: [
        {
          name: 'same-node',
          subject: { label: 'nodenet: a', gbps: [9], medianGbps: 9 },
          baseline: { label: 'b', gbps: [10], medianGbps: 10 },
          ratio: 0.9,
          ratioOfMedians: 0.9,
        },
        {
          name: 'cross-node',
          subject: { label: 'nodenet: c', gbps: [5], medianGbps: 5 },
          baseline: { label: 'd', gbps: [5], medianGbps: 5 },
          ratio: 1,
          ratioOfMedians: 1,
        },
        {
          name: 'rules-only',
          subject: { label: 'e', gbps: [4.5], medianGbps: 4.5 },
          baseline: { label: 'd', gbps: [5], medianGbps: 5 },
          ratio: 0.9,
          ratioOfMedians: 0.9,
        },
      ],
      rulesOnlyTrackedConnections: 3,
    },
    dualStack: {
      cycles: 3,
      warmup: 1,
      latency: {
        ipv4: { create: summary(10, 20), delete: summary(5, 9), createSamples: [10], deleteSamples: [5], errors: 0, firstErrors: [] },
        dual: { create: summary(12, 30), delete: summary(6, 9), createSamples: [12], deleteSamples: [6], errors: 0, firstErrors: [] },
      },
      createRatio: { p50: 1.2, p99: 1.5, paired: 1.19 },
      deleteRatio: { p50: 1.2, p99: 1, paired: 1.21 },
    },
    targets: [],
  };
  r.targets = judgeTargets(r);
  return r;
}

describe('targets', () => {
  it('judges each target from the run, and marks what was not measured', () => {
    const byId = Object.fromEntries(sampleResults().targets.map((t) => [t.id, t]));
    expect(byId['create-vs-cni']).toMatchObject({ measured: 0.1, pass: true });
    expect(byId['create-vs-netavark']).toMatchObject({ measured: 0.125, pass: false });
    expect(byId['delete-vs-cni']).toMatchObject({ measured: 0.125, pass: true });
    expect(byId['burst-creates']).toMatchObject({ measured: 400, pass: true });
    expect(byId['scale-capacity']).toMatchObject({ measured: 2000, limit: 2000, pass: true });
    expect(byId['scale-latency']).toMatchObject({ measured: 1.4, pass: false });
    expect(byId['scale-rss']).toMatchObject({ measured: 160, pass: false });
    expect(byId['restart']).toMatchObject({ measured: 900, limit: 1000, pass: true });
    expect(byId['restart-ovs']).toMatchObject({ measured: 1200, limit: 1000, pass: false });
    expect(byId['datapath-same-node']).toMatchObject({ measured: 0.9, pass: false });
    expect(byId['datapath-cross-node']).toMatchObject({ measured: 1, pass: true });
    expect(byId['datapath-published']).toMatchObject({ measured: null, pass: null });
    expect(byId['dual-stack-create']).toMatchObject({ measured: 1.2, limit: 1.3, pass: true });
  });
  it('a dual-stack create over 1.3 times the IPv4 one misses its target; without the suite it is not measured', () => {
    const r = sampleResults();
    r.dualStack = { ...r.dualStack!, createRatio: { p50: 1.31, p99: 1.2, paired: 1.3 } };
    expect(judgeTargets(r).find((t) => t.id === 'dual-stack-create')).toMatchObject({ measured: 1.31, pass: false });
    delete r.dualStack;
    expect(judgeTargets(r).find((t) => t.id === 'dual-stack-create')).toMatchObject({ measured: null, pass: null });
  });
});

describe('a node that cannot hold every instance asked for', () => {
  it('misses the capacity target and says how far it got, in the table too', () => {
    const r = sampleResults();
    r.scale = {
      ...r.scale!,
      steps: r.scale!.steps.slice(0, 1),
      instances: 1023,
      limit: { requested: 2000, reached: 1023, error: 'RTNETLINK answers: Exchange full' },
    };
    r.targets = judgeTargets(r);
    expect(r.targets.find((t) => t.id === 'scale-capacity')).toMatchObject({ measured: 1023, limit: 2000, pass: false });
    expect(r.targets.find((t) => t.id === 'scale-latency')).toMatchObject({ description: 'create p50 at 100 instances / at 100' });
    expect(renderMarkdown(r)).toContain('The node took 1023 instances, not 2000: RTNETLINK answers: Exchange full.');
  });
});

describe('report', () => {
  it('the Markdown has the latency, scale, restart, datapath and target tables', () => {
    const md = renderMarkdown(sampleResults());
    expect(md).toContain('|  | nodenet | CNI plugins | netavark |');
    expect(md).toContain('| create p50 (ms) | 10.0 | 100.0 | 80.0 |');
    expect(md).toContain('| burst creates/s | 400 | – | – |');
    expect(md).toContain('| CPU per create / delete in the burst (ms) | 5.0 / 4.0 | – / – | – / – |');
    expect(md).toContain('| existing instances | 100 | 2000 |');
    expect(md).toContain('| daemon RSS (MB) | 90 | 160 |');
    // The restart suite: per backend, the bundled daemon beside the unbundled one (median (min-max)).
    expect(md).toContain(
      '| iproute2, 2000 instances | bundled | 1 | 900 (900-900) | 800 (800-800) | 400 (400-400) | 600 (600-600) | 100 (100-100) |',
    );
    expect(md).toContain('| iproute2, 2000 instances | unbundled | 1 | 1300 (1300-1300) | 1200 (1200-1200) |');
    expect(md).toContain('| ovs, 2000 instances | bundled | 1 | 1200 (1200-1200) |');
    expect(md).toContain('| same-node | a | 9.00 | b | 10.00 | 0.900 |');
    // The informational pair is a row of its own and judges no target.
    expect(md).toContain('| rules-only | e | 4.50 | d | 5.00 | 0.900 |');
    expect(md).not.toMatch(/^\| [^|]*rules[^|]*\| 0\.900 \| >= /m);
    expect(md).toContain('a round trip through a child process 0.12 / 0.10 ms back to back, 2.90 / 1.50 ms after 600 ms idle');
    expect(md).toContain('reading a page 0.06 / 0.05 µs hot, 14.50 / 9.00 µs after 600 ms idle');
    expect(md).toMatch(/\| create p50: nodenet \/ netavark setup \| 0\.125 \| <= 0\.1 \| \*\*missed\*\* \|/);
    expect(md).toMatch(/TCP throughput: published port \/ direct \| – \| >= 0\.95 \| not measured \|/);
    expect(md).toContain('| create | 10.0 / 20.0 | 12.0 / 30.0 | 1.200 | 1.500 | 1.190 |');
    expect(md).toContain('| delete | 5.0 / 9.0 | 6.0 / 9.0 | 1.200 | 1.000 | 1.210 |');
    expect(md).toMatch(/\| create p50 \(2 published ports\): dual-stack \/ IPv4-only \| 1\.200 \| <= 1\.3 \| met \|/);
  });
  it('the SVG is one well-formed document with a curve per system and kind, and the cost curve', () => {
    const svg = renderSvg(sampleResults());
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // 3 systems x (create, delete) CDFs + p50 and p99 cost curves
    expect(svg.match(/<polyline /g)).toHaveLength(8);
    expect(svg).not.toMatch(/NaN|undefined/);
    const opened = (svg.match(/<(polyline|text|svg)[ >]/g) ?? []).length;
    const closed = (svg.match(/<\/(polyline|text|svg)>/g) ?? []).length;
    expect(opened).toBe(closed);
  });
});
