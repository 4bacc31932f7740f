// A smoke run of the benchmark harness (`--quick`: a few instances of every suite, real daemon, real peers
// when installed) so that it cannot rot. It checks the output files are produced and well-formed; it asserts
// nothing about time (machines are noisy).
import { readFile, readdir, rm } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listNamespaces } from '@nodenet/testkit';
import { RESULTS_SCHEMA, SUITE_NAMES, quickOptions, runBench, type BenchOutput, type BenchResults } from '../src/index.js';

const SMOKE_TIMEOUT_MS = 600_000;

describe('bench harness, quick run', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'nodenet-bench-smoke-'));
  const log: string[] = [];
  let output: BenchOutput;
  let results: BenchResults;

  beforeAll(async () => {
    output = await runBench(quickOptions({ outDir, allowMissingPeers: true, log: (line) => log.push(line) }));
    results = JSON.parse(await readFile(output.files.json, 'utf8')) as BenchResults;
  }, SMOKE_TIMEOUT_MS);
  afterAll(() => rm(outDir, { recursive: true, force: true }));

  it('writes bench-<date>.json, bench.md and bench.svg into the output folder', async () => {
    const files = (await readdir(outDir)).sort();
    expect(files).toHaveLength(3);
    expect(files[0]).toMatch(/^bench-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.json$/);
    expect(files.slice(1)).toEqual(['bench.md', 'bench.svg']);
  });

  it('the JSON holds every suite with the sizes asked for', () => {
    const o = quickOptions();
    expect(results.schema).toBe(RESULTS_SCHEMA);
    expect(results.profile).toBe('quick');
    expect(Object.keys(results.suiteSeconds).sort()).toEqual(
      SUITE_NAMES.filter((s) => s !== 'datapath' || results.skipped.iperf3 === undefined).sort(),
    );
    const nodenet = results.latency!.systems.nodenet!;
    expect(nodenet.errors).toBe(0);
    expect(nodenet.createSamples).toHaveLength(o.latency.instances);
    expect(nodenet.deleteSamples).toHaveLength(o.latency.instances);
    expect(nodenet.createSamples.every((v) => v > 0)).toBe(true);
    const burst = results.burst!.systems.nodenet!;
    expect(burst.create.ok).toBe(o.burst.nodenetInstances);
    expect(burst.delete.ok).toBe(o.burst.nodenetInstances);
    expect(results.scale!.steps.map((s) => s.existing)).toEqual([...o.scale.steps]);
    expect(results.scale!.steps.every((s) => s.create.n === o.scale.samples && s.rssMB > 0)).toBe(true);
    expect(results.scale!.instances).toBe(o.scale.steps.at(-1));
    expect(results.scale!.limit).toBeUndefined();
    expect(results.restart!.instances).toBe(o.scale.steps.at(-1));
    // Each run restarts the bundled daemon and the unbundled one, on iproute2 and on ovs (filled as full).
    for (const restart of [results.restart!, results.restartOvs!]) {
      expect(restart.runs.map((r) => r.build).sort()).toEqual(
        Array.from({ length: o.restart.runs }, () => ['bundled', 'unbundled'])
          .flat()
          .sort(),
      );
      expect(restart.runs.every((r) => r.servingMs > 0 && r.cpuMs !== null && r.cpuMs > 0)).toBe(true);
    }
    expect(results.restartOvs!).toMatchObject({ backend: 'ovs', instances: o.scale.steps.at(-1) });
    expect(results.targets.map((t) => t.id)).toHaveLength(26);
    // The cluster suite: each backend joined each size, added and removed peers, and saw 10% leave; the
    // kernel dumps agreed with what the watch said (no errors).
    for (const backend of o.cluster.backends) {
      const c = results.cluster!.backends[backend]!;
      expect(c.firstErrors).toEqual([]);
      expect(c.joins.map((j) => j.peers)).toEqual([...o.cluster.sizes]);
      expect(c.joins.every((j) => j.joinMs > 0 && j.rssMB > 0)).toBe(true);
      expect(c.addSamples).toHaveLength(o.cluster.repetitions);
      expect(c.removeSamples).toHaveLength(o.cluster.repetitions);
      expect(c.leave).toMatchObject({ peers: Math.max(...o.cluster.sizes), leaving: Math.ceil(Math.max(...o.cluster.sizes) / 10) });
    }
    // The backends suite: interleaved cycles on both, and one more port at each size asked for.
    for (const backend of ['iproute2', 'ovs'] as const) {
      const k = results.backends!;
      expect(k.latency[backend]!.create.n).toBe(o.backends.cycles);
      expect(k.latency[backend]!.errors).toBe(0);
      expect(k.portCost[backend]!.steps.map((s) => s.existing)).toEqual([...o.backends.existing]);
    }
    expect(results.backends!.createRatio).toBeGreaterThan(0);
    // The dual-stack suite: interleaved cycles on the IPv4-only and the dual-stack node, and their ratios.
    for (const side of ['ipv4', 'dual'] as const) {
      expect(results.dualStack!.latency[side]!.create.n).toBe(o.dualStack.cycles);
      expect(results.dualStack!.latency[side]!.errors).toBe(0);
    }
    expect(results.dualStack!.createRatio.p50).toBeGreaterThan(0);
    expect(results.dualStack!.createRatio.paired).toBeGreaterThan(0);
    // The CNI plugin suite: both conflists through libcni, and the plugin's own execs.
    const cni = results.cniPlugin!;
    for (const s of [cni.nodenet.add, cni.nodenet.del, cni.stock.add, cni.stock.del, cni.pluginOwn.version, cni.pluginOwn.addAgainstStub])
      expect(s.n).toBe(o.cniPlugin.rounds);
    expect(cni.addRatio).toBeGreaterThan(0);
    // The idle wake-up probe ran at both ends of the run, with numbers in it.
    for (const wake of [results.environment.wakeStart, results.environment.wakeEnd]) {
      expect(wake!.pipeRoundTripMs.hot).toBeGreaterThan(0);
      expect(wake!.pipeRoundTripMs.afterIdle).toBeGreaterThan(0);
      expect(wake!.pageTouchUs.afterIdle).toBeGreaterThan(0);
    }
  });

  it('the peers ran beside nodenet, or the file says why not', () => {
    for (const peer of ['cni', 'netavark'] as const) {
      if (results.skipped[peer] !== undefined) {
        expect(results.skipped[peer]).toMatch(/install-peers\.sh/);
        expect(results.latency!.systems[peer]).toBeUndefined();
        continue;
      }
      const s = results.latency!.systems[peer]!;
      expect(s.errors).toBe(0);
      expect(s.createSamples).toHaveLength(quickOptions().latency.instances);
      expect(results.burst!.systems[peer]!.create.ok).toBe(quickOptions().burst.peerInstances);
    }
    expect(results.latency!.systems.cni?.createSteps ?? { bridge: 1, portmap: 1 }).toHaveProperty('portmap');
  });

  it('the datapath measured each pair (or iperf3 is missing)', () => {
    if (results.skipped.iperf3 !== undefined) return expect(results.datapath).toBeUndefined();
    expect(results.datapath!.pairs.map((p) => p.name)).toEqual(['same-node', 'cross-node', 'published-port', 'rules-only']);
    // The rules-only pair's subject went through nodenet's rules: its node tracked the iperf3 connections.
    expect(results.datapath!.rulesOnlyTrackedConnections).toBeGreaterThan(0);
    for (const p of results.datapath!.pairs) {
      expect(p.subject.gbps.every((v) => v > 0)).toBe(true);
      expect(p.baseline.gbps.every((v) => v > 0)).toBe(true);
      expect(p.ratio).toBeGreaterThan(0);
    }
  });

  it('bench.md is the table runBench returned; bench.svg is a plot with curves', async () => {
    const md = await readFile(output.files.markdown, 'utf8');
    expect(md).toBe(output.markdown);
    expect(md).toContain('| create p50 (ms) |');
    expect(md).toContain('**Targets**');
    const svg = await readFile(output.files.svg, 'utf8');
    expect(svg.startsWith('<svg ')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect((svg.match(/<polyline /g) ?? []).length).toBeGreaterThanOrEqual(4);
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('leaves no namespace of this process behind', async () => {
    const mine = (await listNamespaces()).filter((ns) => ns.startsWith(`nnt-${process.pid}-`));
    expect(mine).toEqual([]);
    expect(log.some((l) => l.startsWith('latency: done'))).toBe(true);
  });
});
