/**
 * Cluster scale, per backend (vxlan): a real etcd on the fabric holding N simulated nodes (records and
 * claims as nodenet writes them, cluster/etcd-records.ts), and a real daemon with etcd membership on a
 * fresh node of its own (ovs: its private Open vSwitch). Measured from the node's side, with its kernel and
 * switch watched (cluster/kernel-watch.ts: route + neighbour + FDB entry, or route + neighbour + flows):
 *
 * - join: from the CreateContainerNetworkInterface call until every one of the N peers is routed, for each
 *   size; growth = largest / smallest;
 * - at the largest size: one more record written -> routed, and deleted -> cleaned up, `repetitions` times;
 *   then 10% of the records deleted in one etcd transaction -> all of them cleaned up;
 * - the daemon's RSS after the join, its CPU (with the commands it ran) during the join, and idle with N peers.
 *
 * Every measurement ends with a dump of the kernel (and flows) checked against what the monitors said.
 */
import { Daemon, EtcdServer, PrivateOvs, Topology, completeUnderlayChecksums, type NodeHost, type TestScope } from '@nodenet/testkit';
import { EtcdGateway, SimulatedNodes } from '../cluster/etcd-records.js';
import { KernelWatch } from '../cluster/kernel-watch.js';
import { peerFacts, simulatedPeer, type BackendName, type FactWait } from '../cluster/peer-facts.js';
import { cpuTimes, type CpuTimes } from '../cpu.js';
import type { BenchOptions } from '../options.js';
import { rssMB } from '../rss.js';
import { ratio, round, roundSummary, summarize, type Summary } from '../stats.js';
import { firstErrors } from './pool.js';

export interface ClusterJoin {
  readonly peers: number;
  /** CreateContainerNetworkInterface called -> every peer routed, ms. */
  readonly joinMs: number;
  /** How long the CreateContainerNetworkInterface call itself took, ms. */
  readonly cniMs: number;
  /** The daemon's CPU (itself and its commands) from start to the end of the join, ms. */
  readonly cpuMs: number | null;
  readonly rssMB: number;
}

export interface ClusterBackendResult {
  readonly joins: ClusterJoin[];
  /** joinMs at the largest size / at the smallest. */
  readonly growth: number;
  /** At the largest size: a record written -> routed, and deleted -> cleaned up, ms. */
  readonly addRouted: Summary;
  readonly removeCleaned: Summary;
  readonly addSamples: number[];
  readonly removeSamples: number[];
  /** 10% of the records deleted in one transaction -> all cleaned up. */
  readonly leave: { readonly peers: number; readonly leaving: number; readonly ms: number } | null;
  /** CPU while idle with the largest size's peers (a share of one core, %), over `idleSeconds`. */
  readonly idleCpuPercent: number | null;
  readonly errors: number;
  readonly firstErrors: string[];
}

export interface ClusterResult {
  readonly sizes: readonly number[];
  readonly repetitions: number;
  readonly idleSeconds: number;
  readonly backends: Partial<Record<BackendName, ClusterBackendResult>>;
}

const NODE_SUBNET = '198.19.1.0/24';
const NODE_GATEWAY = '198.19.1.1';
const TIMEOUT_MS = 60_000;

const cpuUsed = (a: CpuTimes | undefined, b: CpuTimes | undefined) => (a && b ? b.selfMs - a.selfMs + b.childrenMs - a.childrenMs : null);

interface ClusterNode {
  readonly daemon: Daemon;
  readonly ovs: PrivateOvs | undefined;
  readonly watch: KernelWatch;
  readonly records: SimulatedNodes;
}

/** A fresh node on the fabric with its daemon (etcd membership under `prefix`), watched; no CNI yet. */
async function startNode(
  scope: TestScope,
  topology: Topology,
  etcd: EtcdServer,
  gateway: EtcdGateway,
  backend: BackendName,
  prefix: string,
): Promise<ClusterNode> {
  const node: NodeHost = await topology.addNode();
  let backendConfig: Record<string, unknown> = { backend: 'iproute2' };
  let ovs: PrivateOvs | undefined;
  if (backend === 'ovs') {
    // The userspace datapath takes the underlay: etcd's packets must reach it with complete checksums.
    await completeUnderlayChecksums(node.ns, node.underlayIfname);
    ovs = await PrivateOvs.start(scope, node.ns);
    backendConfig = { backend: 'ovs', ovs: ovs.config };
  }
  const daemon = await Daemon.start({
    scope,
    node,
    config: {
      ...backendConfig,
      overlay: { mode: 'vxlan' },
      membership: { type: 'etcd', etcd: { endpoints: [etcd.url], prefix, leaseTtlSeconds: 10 } },
      logLevel: 'warn',
    },
  });
  const watch = await KernelWatch.start(node.ns, backend, ovs?.dir);
  scope.defer(`stop the kernel watch of ${node.ns}`, () => watch.stop());
  return { daemon, ovs, watch, records: new SimulatedNodes(gateway, prefix) };
}

async function waitOrThrow(wait: FactWait, what: string, watch: KernelWatch): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      wait.done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          wait.cancel();
          const why = [`still in the way: ${wait.missing().join(', ')}`, ...watch.problems].join('; ');
          reject(new Error(`${what}: not done within ${TIMEOUT_MS} ms (${why})`));
        }, TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function measureBackend(
  scope: TestScope,
  topology: Topology,
  etcd: EtcdServer,
  gateway: EtcdGateway,
  backend: BackendName,
  options: BenchOptions,
): Promise<ClusterBackendResult> {
  const { sizes, repetitions, idleSeconds } = options.cluster;
  const errors: string[] = [];
  const joins: ClusterJoin[] = [];
  const addSamples: number[] = [];
  const removeSamples: number[] = [];
  let leave: ClusterBackendResult['leave'] = null;
  let idleCpuPercent: number | null = null;
  const largest = Math.max(...sizes);
  for (const size of [...sizes].sort((a, b) => a - b)) {
    const prefix = `/bench-${backend}-${size}`;
    const n = await startNode(scope, topology, etcd, gateway, backend, prefix);
    try {
      const peers = Array.from({ length: size }, (_, i) => simulatedPeer(i));
      const facts = peers.map((p) => peerFacts(p, backend));
      await n.records.put(peers);
      const cpuBefore = await cpuTimes(n.daemon.pid);
      const joined = n.watch.tracker.when(facts, 'present', () => performance.now());
      const t0 = performance.now();
      await n.daemon.network().createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET });
      const cniMs = performance.now() - t0;
      const doneAt = await waitOrThrow(joined, `${backend}: ${size} peers routed`, n.watch);
      const cpuAfter = await cpuTimes(n.daemon.pid);
      errors.push(...(await n.watch.verify(facts)).map((p) => `${backend} join ${size}: ${p}`));
      const join: ClusterJoin = {
        peers: size,
        joinMs: round(doneAt - t0, 1),
        cniMs: round(cniMs, 1),
        cpuMs: cpuUsed(cpuBefore, cpuAfter),
        rssMB: round(await rssMB(n.daemon.pid), 1),
      };
      joins.push(join);
      options.log(
        `cluster: ${backend}: ${size} peers routed ${join.joinMs} ms after the CNI call (the call took ${join.cniMs} ms; CPU ${join.cpuMs ?? '?'} ms, RSS ${join.rssMB} MB)`,
      );
      if (size !== largest) continue;

      // One node more, one node less, at the largest size.
      for (let j = 0; j < repetitions; j++) {
        const peer = simulatedPeer(size + j);
        const one = [peerFacts(peer, backend)];
        try {
          const routed = n.watch.tracker.when(one, 'present', () => performance.now());
          let t = performance.now();
          await n.records.put([peer]);
          addSamples.push((await waitOrThrow(routed, `${backend}: ${peer.name} routed`, n.watch)) - t);
          const cleaned = n.watch.tracker.when(one, 'absent', () => performance.now());
          t = performance.now();
          await n.records.delete([peer]);
          removeSamples.push((await waitOrThrow(cleaned, `${backend}: ${peer.name} cleaned up`, n.watch)) - t);
        } catch (e) {
          errors.push(`${backend} add/remove #${j}: ${(e as Error).message}`);
        }
      }
      errors.push(...(await n.watch.verify(facts)).map((p) => `${backend} after add/remove: ${p}`));
      options.log(`cluster: ${backend}: ${repetitions} peers added and removed one at a time`);

      // CPU while idle with every peer routed.
      const idleBefore = await cpuTimes(n.daemon.pid);
      const idleStart = performance.now();
      await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
      const idleUsed = cpuUsed(idleBefore, await cpuTimes(n.daemon.pid));
      idleCpuPercent = idleUsed === null ? null : round((idleUsed / (performance.now() - idleStart)) * 100, 2);

      // 10% leave at once.
      const leaving = peers.filter((_, i) => i % 10 === 0);
      const leavingFacts = leaving.map((p) => peerFacts(p, backend));
      const cleaned = n.watch.tracker.when(leavingFacts, 'absent', () => performance.now());
      const t = performance.now();
      await n.records.delete(leaving);
      const leftAt = await waitOrThrow(cleaned, `${backend}: ${leaving.length} leaving peers cleaned up`, n.watch);
      leave = { peers: size, leaving: leaving.length, ms: round(leftAt - t, 1) };
      errors.push(...(await n.watch.verify(facts)).map((p) => `${backend} after the leave: ${p}`));
      const staying = facts.filter((_, i) => i % 10 !== 0);
      if (n.watch.tracker.count(staying, 'present') !== staying.length)
        errors.push(`${backend}: the leave took more than the leaving peers with it`);
      options.log(`cluster: ${backend}: ${leaving.length} of ${size} left at once, cleaned up in ${leave.ms} ms`);
    } catch (e) {
      errors.push(`${backend} at ${size}: ${(e as Error).message}`);
      options.log(`cluster: ${backend} at ${size}: ${(e as Error).message.slice(0, 300)}`);
    } finally {
      errors.push(...n.watch.problems);
      await n.watch.stop();
      await n.daemon.stop(30_000).catch((e: unknown) => errors.push(`${backend}: ${(e as Error).message}`));
      // Only the node being measured runs: the next one does not share the machine with this one's switch.
      await n.ovs?.stop('kill');
    }
  }
  return {
    joins,
    growth: round(ratio(joins[joins.length - 1]?.joinMs, joins[0]?.joinMs), 2),
    addRouted: roundSummary(summarize(addSamples)),
    removeCleaned: roundSummary(summarize(removeSamples)),
    addSamples: addSamples.map((v) => round(v)),
    removeSamples: removeSamples.map((v) => round(v)),
    leave,
    idleCpuPercent,
    errors: errors.length,
    firstErrors: firstErrors(errors),
  };
}

export async function runCluster(scope: TestScope, options: BenchOptions): Promise<ClusterResult> {
  const topology = await Topology.create(scope, { nodes: 0 });
  const etcd = await EtcdServer.startOnFabric(scope, topology);
  const gateway = await EtcdGateway.open(scope, etcd);
  const backends: Partial<Record<BackendName, ClusterBackendResult>> = {};
  for (const backend of options.cluster.backends)
    backends[backend] = await measureBackend(scope, topology, etcd, gateway, backend, options);
  const { sizes, repetitions, idleSeconds } = options.cluster;
  return { sizes, repetitions, idleSeconds, backends };
}
