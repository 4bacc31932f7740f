#!/usr/bin/env node
/**
 * Why nodenet costs what it costs (`node packages/bench/dist/profile.js [--fill N] [--ops K]`): on a node
 * like the benchmark's (no peers), after filling it with N instances,
 * - traces K sequential create + delete cycles with strace (if installed): which commands the daemon runs
 *   per request, how long each process lives and how long the daemon takes between them;
 * - measures CPU per create and per delete (the daemon and its commands), sequential and with 32 clients;
 * - restarts the daemon under `--cpu-prof` and sums the profile's self time by package: where start-up goes.
 * Prints a summary; the raw trace and profile stay in the output directory.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { TestScope, connectHealth, daemonNodeFlags, serverMainPath } from '@nodenet/testkit';
import { cpuTimes } from './cpu.js';
import { createNamespaces } from './namespaces.js';
import { NodeEnv } from './node-env.js';
import { DEFAULT_OUT_DIR } from './options.js';
import { rssMB } from './rss.js';
import { median, round } from './stats.js';
import { runBatch } from './suites/pool.js';
import { portsFor, type Slot, type Wired } from './systems/types.js';

interface Exec {
  readonly pid: number;
  readonly command: string;
  readonly start: number;
  end?: number;
}

/** Parses `strace -f -tt -e trace=execve` output: successful execs with start and exit times (seconds of day). */
function parseExecTrace(text: string): Exec[] {
  const seconds = (t: string) => {
    const [h, m, s] = t.split(':').map(Number);
    return h! * 3600 + m! * 60 + s!;
  };
  const byPid = new Map<number, Exec>();
  const execs: Exec[] = [];
  for (const line of text.split('\n')) {
    const exec = /^(\d+)\s+(\d\d:\d\d:\d\d\.\d+) execve\("[^"]*", \[(.*?)\], .*\) = 0/.exec(line);
    if (exec) {
      const args = [...exec[3]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
      const e: Exec = { pid: Number(exec[1]), command: args.slice(0, 4).join(' '), start: seconds(exec[2]!) };
      byPid.set(e.pid, e);
      execs.push(e);
      continue;
    }
    const exit = /^(\d+)\s+(\d\d:\d\d:\d\d\.\d+) \+\+\+ exited with/.exec(line);
    if (exit) {
      const e = byPid.get(Number(exit[1]));
      if (e && e.end === undefined) e.end = seconds(exit[2]!);
    }
  }
  return execs;
}

function commandKind(command: string): string {
  return command.replace(/nnt-\d+-\d+/g, 'NS').replace(/\d+\.\d+\.\d+\.\d+/g, 'ADDR');
}

async function traceCycles(env: NodeEnv, ops: number, outDir: string, ns: string, base: number): Promise<string[]> {
  const file = join(outDir, 'execve-trace.txt');
  const pid = env.daemon.pid!;
  const strace = spawn('strace', ['-f', '-tt', '-q', '-e', 'trace=execve', '-e', 'status=successful', '-o', file, '-p', String(pid)], {
    stdio: 'ignore',
  });
  let stopping = false;
  const failed = new Promise<boolean>((resolve) => {
    strace.once('error', () => resolve(true));
    strace.once('exit', () => resolve(!stopping));
  });
  await new Promise((r) => setTimeout(r, 1000));
  const lines: string[] = [];
  const nodenet = env.nodenet;
  const requestTimes: Array<{ create: number; delete: number }> = [];
  for (let k = 0; k < ops; k++) {
    const slot: Slot = { index: base + k, ns, ports: portsFor(nodenet, base + k) };
    const w = await nodenet.create(slot);
    const d = await nodenet.delete(slot, w);
    requestTimes.push({ create: w.ms, delete: d.ms });
  }
  await new Promise((r) => setTimeout(r, 500));
  stopping = true;
  strace.kill('SIGINT');
  if (await failed) {
    lines.push('strace is not available (or could not attach): no per-command trace');
    return lines;
  }
  const execs = parseExecTrace(await readFile(file, 'utf8'));
  const kinds = new Map<string, number[]>();
  for (const e of execs) {
    if (e.end === undefined) continue;
    const k = commandKind(e.command);
    kinds.set(k, [...(kinds.get(k) ?? []), (e.end - e.start) * 1000]);
  }
  lines.push(
    `${execs.length} commands for ${ops} create + delete cycles (${round(execs.length / ops, 1)} per cycle); request p50: create ${round(median(requestTimes.map((r) => r.create)))} ms, delete ${round(median(requestTimes.map((r) => r.delete)))} ms`,
  );
  for (const [k, durations] of [...kinds].sort((a, b) => b[1].length - a[1].length)) {
    lines.push(`  ${String(durations.length).padStart(4)} x ${k.padEnd(40)} lives p50 ${round(median(durations), 1)} ms`);
  }
  return lines;
}

async function cpuPerOp(env: NodeEnv, count: number, concurrency: number, base: number): Promise<string> {
  const nodenet = env.nodenet;
  nodenet.connect(concurrency);
  await nodenet.ready();
  const namespaces = await createNamespaces(env.scope, count);
  const slots: Slot[] = namespaces.map((ns, i) => ({ index: base + i, ns, ports: portsFor(nodenet, base + i) }));
  const pid = env.daemon.pid;
  const t0 = await cpuTimes(pid);
  const wired: Wired[] = [];
  const creates = await runBatch(count, concurrency, async (i, w) => (wired[i] = await nodenet.create(slots[i]!, w)));
  const t1 = await cpuTimes(pid);
  const deletes = await runBatch(count, concurrency, (i, w) => nodenet.delete(slots[i]!, wired[i]!, w));
  const t2 = await cpuTimes(pid);
  const ms = (a = t0!, b = t1!) => ({ self: (b.selfMs - a.selfMs) / count, children: (b.childrenMs - a.childrenMs) / count });
  const c = ms(t0, t1);
  const d = ms(t1, t2);
  return (
    `${concurrency} client(s): create ${round(count / creates.seconds, 1)}/s, CPU per create ${round(c.self + c.children, 1)} ms (daemon ${round(c.self, 1)}, its commands ${round(c.children, 1)}); ` +
    `delete ${round(count / deletes.seconds, 1)}/s, CPU per delete ${round(d.self + d.children, 1)} ms (daemon ${round(d.self, 1)}, its commands ${round(d.children, 1)})`
  );
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

/** Self time of a .cpuprofile by package (node_modules/<pkg>, packages/<pkg>, node internals, GC, idle). */
function selfTimeByPackage(
  profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] },
  window: { fromMs: number; toMs: number } = { fromMs: 0, toMs: Number.POSITIVE_INFINITY },
): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  let at = 0;
  profile.samples.forEach((id, i) => {
    at += (profile.timeDeltas[i] ?? 0) / 1000;
    if (at < window.fromMs || at >= window.toMs) return;
    const node = byId.get(id);
    const url = node?.callFrame.url ?? '';
    const name = node?.callFrame.functionName ?? '';
    let key: string;
    const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    const pkg = /\/packages\/([^/]+)\//.exec(url);
    if (mod) key = mod[1]!;
    else if (pkg) key = `@nodenet/${pkg[1]}`;
    else if (url.startsWith('node:')) key = 'node internals';
    else if (name.startsWith('(')) key = name;
    else key = url || '(native)';
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return totals;
}

async function waitServing(target: string, exited: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (exited()) throw new Error('the daemon exited before it was SERVING');
    const h = connectHealth(target);
    try {
      if ((await h.check('network.Network', 1000)) === 'SERVING') return;
    } catch {
      // not listening yet
    } finally {
      h.close();
    }
    if (performance.now() > deadline) throw new Error(`the daemon was not SERVING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Restarts the daemon once as `node --cpu-prof` (NODE_OPTIONS may not carry it), then normally again. */
async function profileRestart(env: NodeEnv, outDir: string, requests: number): Promise<string[]> {
  const dir = join(outDir, 'cpuprofile');
  await mkdir(dir, { recursive: true });
  const old = env.daemon;
  await old.stop(30_000);
  const started = performance.now();
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      env.node.ns,
      process.execPath,
      ...daemonNodeFlags,
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
      serverMainPath,
      '--config',
      old.launch.configPath,
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  env.scope.trackPid(child.pid);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const logs: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  await waitServing(old.target, () => exited, 120_000);
  const servingMs = performance.now() - started;
  const rss = await rssMB(child.pid);
  // Then sequential requests, so the profile also shows where a request's CPU goes.
  const requestsFrom = performance.now() - started;
  const [ns] = await createNamespaces(env.scope, 1);
  for (let k = 0; k < requests; k++) {
    const slot: Slot = { index: 3900 + k, ns: ns!, ports: portsFor(env.nodenet, 3900 + k) };
    await env.nodenet.delete(slot, await env.nodenet.create(slot));
  }
  const requestsTo = performance.now() - started;
  child.kill('SIGTERM'); // the profile is written at exit
  await exit;
  env.scope.untrackPid(child.pid);
  env.daemon = await old.restart();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  const lines = [`restart to SERVING (profiled, slower than without): ${round(servingMs, 0)} ms; RSS then ${round(rss, 0)} MB`];
  if (files.length === 0) return [...lines, 'no .cpuprofile written'];
  const profile = JSON.parse(await readFile(join(dir, files.sort().at(-1)!), 'utf8')) as Parameters<typeof selfTimeByPackage>[0] & {
    startTime: number;
    endTime: number;
  };
  const show = (title: string, totals: Map<string, number>, per = 1) => {
    lines.push(title);
    for (const [k, ms] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, 14))
      lines.push(`  ${k.padEnd(36)} ${round(ms / per, per === 1 ? 0 : 2)} ms`);
  };
  // The profile starts when node does, a little after the spawn: the windows are approximate.
  show(`CPU profile, start -> SERVING, self time by package:`, selfTimeByPackage(profile, { fromMs: 0, toMs: servingMs }));
  show(
    `CPU profile, ${requests} sequential create + delete cycles, self time by package per cycle:`,
    selfTimeByPackage(profile, { fromMs: requestsFrom, toMs: requestsTo }),
    requests,
  );
  const time = (event: string) => {
    const line = logs.find((l) => l.event === event);
    return line ? Date.parse(String(line.time)) : Number.NaN;
  };
  const restored = logs.find((l) => l.event === 'restored');
  lines.push(
    `daemon log: start -> restored ${time('restored') - time('start')} ms (restore itself ${typeof restored?.durationMs === 'number' ? restored.durationMs : '?'} ms), restored -> ready ${time('ready') - time('restored')} ms`,
  );
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { fill: { type: 'string', default: '500' }, ops: { type: 'string', default: '20' }, out: { type: 'string' } },
  });
  const fill = Number(values.fill);
  const ops = Number(values.ops);
  const outDir = values.out ?? join(DEFAULT_OUT_DIR, 'profile');
  await mkdir(outDir, { recursive: true });
  const report: string[] = [];
  const log = (line: string) => {
    report.push(line);
    process.stdout.write(`${line}\n`);
  };
  const scope = await TestScope.create();
  try {
    const env = await NodeEnv.start(scope, { cni: false, netavark: false });
    const [ns] = await createNamespaces(scope, 1);
    log(`== empty node`);
    for (const l of await traceCycles(env, ops, outDir, ns!, 3000)) log(l);
    log(await cpuPerOp(env, 64, 1, 3100));
    log(await cpuPerOp(env, 256, 32, 3200));
    log(`== filling the node to ${fill} instances`);
    const fillNs = await createNamespaces(scope, fill);
    const filled = await runBatch(
      fill,
      32,
      (i, w) => env.nodenet.create({ index: i, ns: fillNs[i]!, ports: portsFor(env.nodenet, i) }, w),
      { stopOnError: true },
    );
    log(
      `filled ${filled.results.filter(Boolean).length} at ${round(fill / filled.seconds, 1)}/s${filled.errors[0] ? `; stopped: ${filled.errors[0]}` : ''}; RSS ${round(await rssMB(env.daemon.pid), 0)} MB`,
    );
    for (const l of await traceCycles(env, ops, outDir, ns!, 3500)) log(l);
    log(`== restart with ${filled.results.filter(Boolean).length} instances`);
    for (const l of await profileRestart(env, outDir, ops)) log(l);
  } finally {
    await scope.cleanup();
  }
  await writeFile(join(outDir, 'profile.txt'), `${report.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`nodenet-bench-profile: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
