/**
 * The soak itself: one node (a namespace with a real nodenetd from dist) and the world namespace of the
 * testkit's topology; a steady churn of creates and deletes keeping the live instances between `liveMin`
 * and `liveMax` (a bounded random walk, so live moves up and down independently of the operation count),
 * traffic (ping between instances, TCP and UDP through a published port from the world), daemon restarts
 * (SIGTERM, every `killEvery`-th one SIGKILL, then a new daemon adopts what is there) and disruptions in the
 * node namespace that the daemon's reconcile repairs. Everything runs in one sequential loop, so a sample
 * never sees a restart or a disruption half-way: it is the steady state after the last step.
 */
import { cpus, loadavg } from 'node:os';
import { backendProfile, ClusterFixture, seededRandom, type ClusterNode } from '@nodenet/conformance';
import { echo, ping } from '@nodenet/testkit';
import { join } from 'node:path';
import { stat } from 'node:fs/promises';
import { rssMB } from '@nodenet/bench';
import { childProcesses, directorySize, lineCount, nftElements, openFds } from './probe.js';
import { DISRUPTIONS, disrupt } from './disruptions.js';
import { InstancePool, type SoakInstance } from './instances.js';
import { judgeSoak, type SoakSample, type SoakVerdict } from './metrics.js';

export interface SoakOptions {
  readonly durationSeconds: number;
  readonly sampleSeconds: number;
  readonly liveMin: number;
  readonly liveMax: number;
  readonly restartEverySeconds: number;
  /** Every n-th restart is a SIGKILL instead of a SIGTERM. */
  readonly killEvery: number;
  readonly disruptEverySeconds: number;
  readonly reconcileIntervalSeconds: number;
  /** Daemon metrics: seconds after a daemon's start that are its warm-up (not judged). */
  readonly warmupSeconds: number;
  /** Pause between operations (ms). */
  readonly opPauseMs: number;
  /** A traffic round after every n-th operation. */
  readonly trafficEvery: number;
  readonly backend: string;
  readonly seed: number;
  readonly log: (line: string) => void;
}

export interface SoakEvent {
  readonly t: number;
  readonly kind: 'restart' | 'kill' | 'disruption' | 'op-error' | 'traffic-failure' | 'repair-timeout';
  readonly what: string;
  /** restart/kill: ms from the signal to SERVING again; disruption: ms until the repair was seen. */
  readonly ms?: number;
}

export interface TrafficCounts {
  attempts: number;
  failures: number;
}

export interface SoakResult {
  readonly startedAt: string;
  readonly options: Omit<SoakOptions, 'log'>;
  readonly machine: {
    readonly cpus: number;
    readonly loadAtStart: readonly number[];
    readonly loadAtEnd: readonly number[];
    readonly load1: { readonly min: number; readonly median: number; readonly max: number };
  };
  readonly totals: {
    readonly seconds: number;
    readonly ops: number;
    readonly creates: number;
    readonly deletes: number;
    readonly opErrors: number;
    readonly restarts: number;
    readonly kills: number;
    readonly disruptions: number;
    readonly repairTimeouts: number;
  };
  readonly traffic: { readonly ping: TrafficCounts; readonly tcp: TrafficCounts; readonly udp: TrafficCounts };
  readonly repairMs: { readonly median: number; readonly max: number };
  readonly restartMs: { readonly median: number; readonly max: number };
  readonly events: readonly SoakEvent[];
  readonly samples: readonly SoakSample[];
  readonly verdict: SoakVerdict;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function spread(xs: readonly number[]): { median: number; max: number } {
  if (xs.length === 0) return { median: Number.NaN, max: Number.NaN };
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor((s.length - 1) / 2)]!, max: s[s.length - 1]! };
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { log } = options;
  const rand = seededRandom(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const startedAt = new Date();
  const t0 = performance.now();
  const now = (): number => (performance.now() - t0) / 1000;
  const loadAtStart = loadavg();

  const cluster = await ClusterFixture.start({
    backend: options.backend,
    nodes: 1,
    reconcileIntervalSeconds: options.reconcileIntervalSeconds,
  });
  const node: ClusterNode = cluster.nodes[0]!;
  const world = cluster.world;
  const events: SoakEvent[] = [];
  const samples: SoakSample[] = [];
  const traffic = { ping: { attempts: 0, failures: 0 }, tcp: { attempts: 0, failures: 0 }, udp: { attempts: 0, failures: 0 } };
  const repairMs: number[] = [];
  const restartMs: number[] = [];
  let ops = 0;
  let creates = 0;
  let deletes = 0;
  let opErrors = 0;
  let restarts = 0;
  let kills = 0;
  let disruptions = 0;
  let repairTimeouts = 0;
  let generation = 1;
  let daemonStartedAt = now();
  let opsAtDaemonStart = 0;
  const event = (e: Omit<SoakEvent, 't'>): void => {
    const full = { t: Math.round(now() * 10) / 10, ...e };
    events.push(full);
    if (e.kind !== 'restart' && e.kind !== 'kill' && e.kind !== 'disruption') log(`[${full.t}s] ${e.kind}: ${e.what}`);
  };

  const pool = new InstancePool(cluster.scope, node, options.liveMax * 2);

  const takeSample = async (): Promise<void> => {
    const pid = node.daemon.pid!;
    const releasedLog = join(node.daemon.stateDir, 'released.log');
    const [rss, fds, children, elements, state, releasedLines, releasedBytes] = await Promise.all([
      rssMB(pid),
      openFds(pid),
      childProcesses(pid),
      nftElements(node.ns),
      directorySize(node.daemon.stateDir),
      lineCount(releasedLog),
      stat(releasedLog).then(
        (s) => s.size,
        () => 0,
      ),
    ]);
    const s: SoakSample = {
      t: Math.round(now() * 10) / 10,
      ops,
      opsInLifetime: ops - opsAtDaemonStart,
      daemonStartedAt: Math.round(daemonStartedAt * 10) / 10,
      daemonGeneration: generation,
      live: pool.size,
      rssMB: Math.round(rss * 100) / 100,
      fds,
      children,
      publishedPorts: elements.publishedPorts,
      allowedSources: elements.allowedSources,
      stateBytes: state.bytes,
      stateFiles: state.files,
      stateRecordBytes: state.bytes - releasedBytes,
      releasedLogLines: releasedLines,
      load1: Math.round(loadavg()[0]! * 100) / 100,
    };
    samples.push(s);
    log(
      `[${s.t}s] ops ${s.ops} live ${s.live} rss ${s.rssMB} MB fds ${s.fds} children ${s.children} ports ${s.publishedPorts} sources ${s.allowedSources} state ${s.stateFiles} files/${s.stateBytes} B (records ${s.stateRecordBytes} B, released.log ${s.releasedLogLines} lines) load ${s.load1}`,
    );
  };

  /** Ping from another live instance, TCP and UDP from the world through the published port. */
  const probe = async (target: SoakInstance): Promise<void> => {
    const others = pool.live.filter((i) => i !== target);
    const checks: Array<Promise<void>> = [];
    if (others.length > 0) {
      const from = pick(others);
      checks.push(
        ping(from.ns, target.address, { count: 1, timeoutSec: 2 }).then((r) => {
          traffic.ping.attempts += 1;
          if (!r.ok) {
            traffic.ping.failures += 1;
            event({ kind: 'traffic-failure', what: `ping ${from.address} -> ${target.address}: ${r.output.slice(-200)}` });
          }
        }),
      );
    }
    for (const protocol of ['tcp', 'udp'] as const) {
      checks.push(
        echo(world.ns, { protocol, host: node.address, port: target.port, timeoutMs: 3000 }).then((r) => {
          traffic[protocol].attempts += 1;
          if (!r.ok) {
            traffic[protocol].failures += 1;
            event({
              kind: 'traffic-failure',
              what: `${protocol} world -> ${node.address}:${target.port} (${target.address}): ${r.error ?? 'no echo'}`,
            });
          }
        }),
      );
    }
    await Promise.all(checks);
  };

  const operate = async (): Promise<void> => {
    const live = pool.size;
    const grow = live <= options.liveMin ? true : live >= options.liveMax ? false : rand() < 0.5;
    try {
      if (grow) {
        const inst = await pool.create();
        creates += 1;
        ops += 1;
        if (ops % options.trafficEvery === 0) await probe(inst);
      } else {
        await pool.delete(pick(pool.live));
        deletes += 1;
        ops += 1;
        if (ops % options.trafficEvery === 0 && pool.size > 0) await probe(pick(pool.live));
      }
    } catch (e) {
      opErrors += 1;
      event({ kind: 'op-error', what: `${grow ? 'create' : 'delete'}: ${(e as Error).message.slice(0, 500)}` });
    }
  };

  const restart = async (): Promise<void> => {
    const hard = (restarts + kills + 1) % options.killEvery === 0;
    const started = performance.now();
    if (hard) await node.killDaemon();
    else await node.stopDaemon();
    await node.startDaemon();
    const ms = Math.round(performance.now() - started);
    restartMs.push(ms);
    if (hard) kills += 1;
    else restarts += 1;
    generation += 1;
    daemonStartedAt = now();
    opsAtDaemonStart = ops;
    event({ kind: hard ? 'kill' : 'restart', what: `${hard ? 'SIGKILL' : 'SIGTERM'}, a new daemon adopted ${pool.size} instances`, ms });
    if (pool.size > 0) await probe(pick(pool.live));
  };

  const disruptOnce = async (): Promise<void> => {
    let kind = DISRUPTIONS[disruptions % DISRUPTIONS.length]!;
    const victim = pool.size > 0 ? pick(pool.live) : undefined;
    if (kind === 'delete-host-veth' && !victim) kind = 'flush-ip-table';
    const profile = backendProfile(options.backend);
    const d = await disrupt(node.ns, kind, victim?.hostInterface, (ifname) => profile.switchOf(node.host, ifname));
    disruptions += 1;
    const started = performance.now();
    const timeoutMs = (options.reconcileIntervalSeconds * 4 + 10) * 1000;
    for (;;) {
      if (await d.repaired()) break;
      if (performance.now() - started > timeoutMs) {
        repairTimeouts += 1;
        event({ kind: 'repair-timeout', what: `${d.what}: not repaired within ${timeoutMs} ms` });
        return;
      }
      await sleep(100);
    }
    const ms = Math.round(performance.now() - started);
    repairMs.push(ms);
    event({ kind: 'disruption', what: d.what, ms });
    if (victim && pool.live.includes(victim)) await probe(victim);
  };

  try {
    log(
      `soak: ${options.durationSeconds} s, live ${options.liveMin}..${options.liveMax}, node ${node.ns}, daemon pid ${node.daemon.pid}, state ${node.daemon.stateDir}`,
    );
    await takeSample();
    let nextSample = now() + options.sampleSeconds;
    let nextRestart = now() + options.restartEverySeconds;
    let nextDisruption = now() + options.disruptEverySeconds;
    while (now() < options.durationSeconds) {
      await operate();
      if (now() >= nextRestart) {
        await restart();
        nextRestart = now() + options.restartEverySeconds;
      }
      if (now() >= nextDisruption) {
        await disruptOnce();
        nextDisruption = now() + options.disruptEverySeconds;
      }
      if (now() >= nextSample) {
        await takeSample();
        nextSample += options.sampleSeconds;
        if (nextSample < now()) nextSample = now() + options.sampleSeconds;
      }
      await sleep(options.opPauseMs);
    }
    await takeSample();
  } finally {
    await cluster.close();
  }

  const loads = samples.map((s) => s.load1).sort((a, b) => a - b);
  const { log: _log, ...recorded } = options;
  return {
    startedAt: startedAt.toISOString(),
    options: recorded,
    machine: {
      cpus: cpus().length,
      loadAtStart,
      loadAtEnd: loadavg(),
      load1: {
        min: loads[0] ?? Number.NaN,
        median: loads[Math.floor((loads.length - 1) / 2)] ?? Number.NaN,
        max: loads[loads.length - 1] ?? Number.NaN,
      },
    },
    totals: { seconds: Math.round(now()), ops, creates, deletes, opErrors, restarts, kills, disruptions, repairTimeouts },
    traffic,
    repairMs: spread(repairMs),
    restartMs: spread(restartMs),
    events,
    samples,
    verdict: judgeSoak(samples, { warmupSeconds: options.warmupSeconds }),
  };
}
