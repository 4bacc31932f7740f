// The soak's 2-minute smoke (`npm run soak` itself is not part of `npm test`): a real nodenetd from dist in
// a node namespace, the churn with a fast cadence (restarts every 30 s, one of them SIGKILL; a disruption
// every 10 s; reconcile every 2 s), and the verdict machinery on the real samples: a verdict per metric,
// and it passes. It asserts nothing about time.
import { mkdtempSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listNamespaces } from '@nodenet/testkit';
import { METRICS, defaultOptions, renderSummary, runSoak, soakPassed, writeSoakResults, type SoakResult } from '../src/index.js';

const SMOKE_SECONDS = 120;

describe('soak smoke (2 minutes against the real daemon)', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'nodenet-soak-smoke-'));
  const log: string[] = [];
  let result: SoakResult;
  let files: { json: string; svg: string };

  beforeAll(async () => {
    result = await runSoak({
      ...defaultOptions(SMOKE_SECONDS),
      sampleSeconds: 2,
      restartEverySeconds: 30,
      killEvery: 2,
      disruptEverySeconds: 10,
      reconcileIntervalSeconds: 2,
      warmupSeconds: 8,
      log: (line) => log.push(line),
    });
    files = await writeSoakResults(result, outDir);
  }, 600_000);
  afterAll(() => rm(outDir, { recursive: true, force: true }));

  it('churned with traffic, restarts (SIGTERM and SIGKILL) and repaired disruptions, without a failed operation', () => {
    const t = result.totals;
    expect(t.opErrors, renderSummary(result)).toBe(0);
    expect(t.creates).toBeGreaterThan(10);
    expect(t.deletes).toBeGreaterThan(5);
    expect(t.restarts).toBeGreaterThanOrEqual(1);
    expect(t.kills).toBeGreaterThanOrEqual(1);
    expect(t.disruptions).toBeGreaterThanOrEqual(3);
    expect(t.repairTimeouts, renderSummary(result)).toBe(0);
    for (const kind of ['ping', 'tcp', 'udp'] as const) {
      expect(result.traffic[kind].attempts).toBeGreaterThan(0);
      // Probes run only in the steady state (after a restart is SERVING, after a repair was seen).
      expect(result.traffic[kind].failures, JSON.stringify(result.events.filter((e) => e.kind === 'traffic-failure'))).toBe(0);
    }
  });

  it('every sample is the steady state: nftables elements are exactly those of the live instances', () => {
    expect(result.samples.length).toBeGreaterThan(20);
    for (const s of result.samples) {
      // One published port per instance, for TCP and UDP; one allowed source per instance.
      expect(s.publishedPorts, JSON.stringify(s)).toBe(2 * s.live);
      expect(s.allowedSources, JSON.stringify(s)).toBe(s.live);
      expect(s.rssMB).toBeGreaterThan(10);
      expect(s.fds).toBeGreaterThan(3);
      expect(s.stateFiles).toBeGreaterThanOrEqual(s.live);
    }
    expect(new Set(result.samples.map((s) => s.live)).size).toBeGreaterThan(2);
    // released.log holds one line per delete (the soak ends far below its cap).
    expect(result.samples.at(-1)!.releasedLogLines).toBe(result.totals.deletes);
  });

  it('reports a verdict for every metric, and the real daemon passes', () => {
    expect(result.verdict.metrics.map((m) => m.key)).toEqual(METRICS.map((m) => m.key));
    for (const m of result.verdict.metrics) expect(m.samples, `${m.label}: ${m.reason}`).toBeGreaterThanOrEqual(4);
    expect(result.verdict.pass, renderSummary(result)).toBe(true);
    expect(soakPassed(result)).toBe(true);
  });

  it('writes the JSON and the SVG, and leaves no namespace behind', async () => {
    const recorded = JSON.parse(await readFile(files.json, 'utf8')) as SoakResult;
    expect(recorded.samples).toHaveLength(result.samples.length);
    expect(recorded.verdict.pass).toBe(true);
    const svg = await readFile(files.svg, 'utf8');
    expect(svg.match(/<polyline /g)).toHaveLength(METRICS.length + 2);
    const mine = (await listNamespaces()).filter((ns) => ns.startsWith(`nnt-${process.pid}-`));
    expect(mine).toEqual([]);
  });
});
