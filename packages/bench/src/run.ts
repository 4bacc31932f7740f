/**
 * One benchmark run: the suites in order (latency, burst, scale, restart on one node with the peers beside
 * nodenet; then the CNI plugin, the datapath, the cluster and the backends suites, each on a topology of its
 * own), the targets judged, and the files written:
 * bench-<date>.json (raw results), bench.md (the latest table), bench.svg (the plot).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { bundlePrograms } from '@nodenet/release';
import { TestScope, repoRoot } from '@nodenet/testkit';
import { describeEnvironment } from './environment.js';
import { NodeEnv, checkPeers } from './node-env.js';
import type { BenchOptions, SuiteName } from './options.js';
import { renderMarkdown } from './report/markdown.js';
import { renderSvg } from './report/svg.js';
import { RESULTS_SCHEMA, judgeTargets, type BenchResults } from './results.js';
import { runBackends } from './suites/backends.js';
import { runBurst } from './suites/burst.js';
import { runCluster } from './suites/cluster.js';
import { runCniPlugin } from './suites/cni-plugin.js';
import { runDatapath } from './suites/datapath.js';
import { runDualStack } from './suites/dual-stack.js';
import { runLatency } from './suites/latency.js';
import { daemonCommands, runRestart, type DaemonCommands, type RestartResult } from './suites/restart.js';
import { runScale } from './suites/scale.js';
import { probeWake } from './wake-probe.js';

export interface BenchOutput {
  readonly results: BenchResults;
  readonly markdown: string;
  readonly files: { readonly json: string; readonly markdown: string; readonly svg: string };
}

const NODE_SUITES: readonly SuiteName[] = ['latency', 'burst', 'scale', 'restart'];

async function timed<T>(results: BenchResults, suite: SuiteName, options: BenchOptions, run: () => Promise<T>): Promise<T> {
  options.log(`${suite}: starting`);
  const started = performance.now();
  try {
    return await run();
  } finally {
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    results.suiteSeconds[suite] = seconds;
    options.log(`${suite}: done in ${seconds} s`);
  }
}

interface SuiteContext {
  readonly wants: (s: SuiteName) => boolean;
  readonly peerNeeded: boolean;
  readonly peers: Awaited<ReturnType<typeof checkPeers>>;
  readonly skipped: BenchResults['skipped'];
  readonly commands: DaemonCommands | undefined;
}

async function runSuites(
  options: BenchOptions,
  results: BenchResults,
  { wants, peerNeeded, peers, skipped, commands }: SuiteContext,
): Promise<void> {
  if (NODE_SUITES.some(wants)) {
    const scope = await TestScope.create();
    try {
      const env = await NodeEnv.start(scope, { cni: peerNeeded && !peers.cni, netavark: peerNeeded && !peers.netavark });
      if (wants('latency')) results.latency = await timed(results, 'latency', options, () => runLatency(env, options));
      if (wants('burst')) results.burst = await timed(results, 'burst', options, () => runBurst(env, options));
      if (wants('scale')) results.scale = await timed(results, 'scale', options, () => runScale(env, options));
      if (wants('restart')) {
        const instances = results.scale?.instances ?? 0;
        results.restart = await timed(results, 'restart', options, () => runRestart(env, options, instances, commands!));
      }
    } finally {
      await scope.cleanup();
    }
  }
  if (wants('restart')) {
    const iproute2Seconds = results.suiteSeconds.restart ?? 0;
    const scope = await TestScope.create();
    try {
      results.restartOvs = await timed(results, 'restart', options, () => restartOvs(scope, options, results, commands!));
    } finally {
      await scope.cleanup();
    }
    results.suiteSeconds.restart = Math.round((iproute2Seconds + (results.suiteSeconds.restart ?? 0)) * 10) / 10;
  }
  if (wants('cni-plugin')) results.cniPlugin = await timed(results, 'cni-plugin', options, () => runCniPlugin(options));
  if (wants('datapath') && !skipped.iperf3) {
    const scope = await TestScope.create();
    try {
      results.datapath = await timed(results, 'datapath', options, () => runDatapath(scope, options));
    } finally {
      await scope.cleanup();
    }
  }

  if (wants('cluster')) {
    const scope = await TestScope.create();
    try {
      results.cluster = await timed(results, 'cluster', options, () => runCluster(scope, options));
    } finally {
      await scope.cleanup();
    }
  }
  if (wants('backends')) {
    const scope = await TestScope.create();
    try {
      results.backends = await timed(results, 'backends', options, () => runBackends(scope, options, results.scale));
    } finally {
      await scope.cleanup();
    }
  }

  if (wants('dual-stack')) {
    const scope = await TestScope.create();
    try {
      results.dualStack = await timed(results, 'dual-stack', options, () => runDualStack(scope, options));
    } finally {
      await scope.cleanup();
    }
  }
}

/**
 * The restart suite on the ovs backend: a node of its own (private Open vSwitch, userspace datapath) filled
 * to as many instances as the scale suite's node held (its last step when scale did not run).
 */
async function restartOvs(
  scope: TestScope,
  options: BenchOptions,
  results: BenchResults,
  commands: DaemonCommands,
): Promise<RestartResult> {
  const env = await NodeEnv.start(scope, { cni: false, netavark: false, backend: 'ovs' });
  const wanted = results.scale?.instances ?? Math.max(...options.scale.steps);
  const log = (line: string) => options.log(`restart (ovs): ${line}`);
  const fill = await runScale(env, { ...options, log, scale: { ...options.scale, steps: [wanted], samples: 1 } });
  if (fill.limit) log(`the node took ${fill.instances} instances, not ${wanted}: ${fill.limit.error}`);
  return runRestart(env, options, fill.instances, commands, 'ovs');
}

export async function runBench(options: BenchOptions): Promise<BenchOutput> {
  const started = new Date();
  const peers = await checkPeers();
  const wants = (s: SuiteName) => options.suites.includes(s);
  const skipped: BenchResults['skipped'] = {};
  const missing: string[] = [];
  const peerNeeded = NODE_SUITES.some((s) => s !== 'restart' && s !== 'scale' && wants(s));
  for (const [name, why] of [
    ['cni', peers.cni],
    ['netavark', peers.netavark],
  ] as const) {
    if (why && peerNeeded) {
      if (options.allowMissingPeers) skipped[name] = why;
      else missing.push(why);
    }
  }
  if (peers.iperf3 && wants('datapath')) {
    if (options.allowMissingPeers) skipped.iperf3 = peers.iperf3;
    else missing.push(peers.iperf3);
  }
  if (missing.length > 0) throw new Error(`cannot run the benchmark: ${missing.join('; ')}`);

  const { log: _log, outDir: _outDir, ...recordedOptions } = options;
  const results: BenchResults = {
    schema: RESULTS_SCHEMA,
    profile: options.profile,
    startedAt: started.toISOString(),
    finishedAt: '',
    durationSeconds: 0,
    options: recordedOptions,
    environment: await describeEnvironment(),
    skipped,
    suiteSeconds: {},
    targets: [],
  };
  results.environment.wakeStart = await probeWake(options.wakeProbe);

  // The restart suite runs the daemon as the release installs it (bundled), beside the compiled workspace.
  const bundleScope = await TestScope.create();
  try {
    const commands = wants('restart')
      ? daemonCommands((await bundlePrograms(repoRoot, join(await bundleScope.createTempDir(), 'lib'))).files.nodenetd)
      : undefined;
    await runSuites(options, results, { wants, peerNeeded, peers, skipped, commands });
  } finally {
    await bundleScope.cleanup();
  }

  const finished = new Date();
  results.finishedAt = finished.toISOString();
  results.durationSeconds = Math.round((finished.getTime() - started.getTime()) / 100) / 10;
  results.environment.loadEnd = Math.round(loadavg()[0]! * 100) / 100;
  results.environment.wakeEnd = await probeWake(options.wakeProbe);
  results.targets = judgeTargets(results);

  const markdown = renderMarkdown(results);
  await mkdir(options.outDir, { recursive: true });
  const stamp = started
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
  const files = {
    json: join(options.outDir, `bench-${stamp}.json`),
    markdown: join(options.outDir, 'bench.md'),
    svg: join(options.outDir, 'bench.svg'),
  };
  await writeFile(files.json, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(files.markdown, markdown);
  await writeFile(files.svg, renderSvg(results));
  return { results, markdown, files };
}
