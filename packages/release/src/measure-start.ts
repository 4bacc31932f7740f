/**
 * Start to SERVING, bundled against unbundled: `node packages/release/dist/measure-start.js [RUNS]` (root;
 * after `npm run build`). Each run spawns the daemon in a fresh node namespace with a fresh state dir
 * (interleaved: bundled, unbundled, bundled, ...) and takes the time from the spawn to its `ready` log line
 * (written right after health is set to SERVING). Then `nodenetctl health` against one daemon, bundled and
 * not (process start to exit). Prints the medians, their ratios and the bundle sizes.
 */
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Daemon, TestScope, Topology, daemonNodeFlags } from '@nodenet/testkit';
import { bundlePrograms } from './bundle.js';

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const runs = Number(process.argv[2] ?? 9);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function startToServing(scope: TestScope, topology: Topology, command?: readonly [string, ...string[]]): Promise<number> {
  const node = await topology.addNode();
  const spawned = Date.now();
  const daemon = await Daemon.spawn({ scope, node, ...(command ? { command } : {}) });
  const ready = await daemon.waitForLog((l) => l.event === 'ready', 30_000);
  const ms = Date.parse(String(ready.time)) - spawned;
  await daemon.stop();
  return ms;
}

const scope = await TestScope.create();
try {
  const dir = await scope.createTempDir();
  const bundle = await bundlePrograms(repoRoot, join(dir, 'lib'));
  const bundled: [string, ...string[]] = [process.execPath, ...daemonNodeFlags, bundle.files.nodenetd];
  const topology = await Topology.create(scope, { nodes: 0 });
  const times = { bundled: [] as number[], unbundled: [] as number[] };
  // One of each first, not counted: the page cache holds both afterwards.
  await startToServing(scope, topology, bundled);
  await startToServing(scope, topology);
  for (let i = 0; i < runs; i++) {
    times.bundled.push(await startToServing(scope, topology, bundled));
    times.unbundled.push(await startToServing(scope, topology));
  }
  const b = median(times.bundled);
  const u = median(times.unbundled);

  const daemon = await Daemon.start({ scope, node: await topology.addNode() });
  const ctl = { bundled: [] as number[], unbundled: [] as number[] };
  const timeCtl = async (main: string) => {
    const started = performance.now();
    await execFileAsync(process.execPath, [main, '--target', daemon.target, 'health']);
    return Math.round(performance.now() - started);
  };
  for (let i = 0; i < runs; i++) {
    ctl.bundled.push(await timeCtl(bundle.files.nodenetctl));
    ctl.unbundled.push(await timeCtl(join(repoRoot, 'packages/cli/dist/main.js')));
  }
  await daemon.stop();
  const size = async (f: string) => ((await stat(f)).size / 1024).toFixed(0);
  process.stdout.write(
    [
      `start -> SERVING (spawn to the ready log line, empty state, ${runs} runs each, interleaved)`,
      `  bundled:   median ${b} ms  (${times.bundled.join(', ')})`,
      `  unbundled: median ${u} ms  (${times.unbundled.join(', ')})`,
      `  bundled / unbundled: ${(b / u).toFixed(2)}`,
      `nodenetctl health (process start to exit, ${runs} runs each, interleaved)`,
      `  bundled:   median ${median(ctl.bundled)} ms  (${ctl.bundled.join(', ')})`,
      `  unbundled: median ${median(ctl.unbundled)} ms  (${ctl.unbundled.join(', ')})`,
      `  bundled / unbundled: ${(median(ctl.bundled) / median(ctl.unbundled)).toFixed(2)}`,
      `bundle sizes: nodenetd.mjs ${await size(bundle.files.nodenetd)} KiB, nodenetctl.mjs ${await size(bundle.files.nodenetctl)} KiB`,
      '',
    ].join('\n'),
  );
} finally {
  await scope.cleanup();
}
