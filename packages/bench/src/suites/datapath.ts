/**
 * Datapath throughput (iperf3, TCP, one stream): what nodenet builds against the same topology built by
 * hand with `ip` in namespaces of its own on the same underlay.
 * - same node: instance -> instance on node 1 (nodenet) vs on node 3 (a bridge and veths by hand);
 * - across nodes: node 1 -> node 2 over nodenet's VXLAN overlay vs node 3 -> node 4 over a hand-built
 *   kernel VXLAN path of the same shape (L3: onlink route, static neighbour and FDB entry; MTU 1450);
 * - published port vs direct: the world host -> node 1's underlay address on the published port (DNAT to
 *   the instance) vs the world host -> the instance address routed via node 1;
 * - (no target; explains the cross-node ratio) what nodenet's netfilter rules alone cost on that path: node
 *   5 -> node 6, built by hand like 3 -> 4, with nodenet's nftables tables loaded as the daemon loads them
 *   (published ports and masquerade, so conntrack, and the anti-spoofing of the instance ports) vs the bare
 *   3 -> 4. The bare baseline has no firewall at all; this pair shows how much of the overlay's ratio is the
 *   rules the contract requires rather than the dataplane.
 * Each pair is measured `rounds` times, subject and baseline back to back (alternating which goes first).
 * The ratio is the median of the per-round ratios: a round's two runs share the machine's state at that
 * moment, which the medians of the two sides taken apart do not (on this shared machine a side varies
 * +-15% between rounds; 35 paired rounds put a ratio within +-0.02-0.03).
 */
import { spawn } from 'node:child_process';
import { HOST_PREFIX, Subnet, type IfName, type Ipv4Address } from '@nodenet/core';
import { addInstanceScript, ensureBaseScript } from '@nodenet/nftables';
import { Daemon, Topology, exec, ipBatch, nsExec, ping, writeSysctls, type NodeHost, type TestScope } from '@nodenet/testkit';
import { createNamespaces } from '../namespaces.js';
import type { BenchOptions } from '../options.js';
import { median, pairedRatio, ratio, round } from '../stats.js';
import { NodenetSystem } from '../systems/nodenet.js';

const IPERF_PORT = 5201;
const INSTANCE_MTU = 1450;
const VNI = 4242;
const VXLAN_PORT = 4789;

export interface Throughput {
  readonly label: string;
  /** Gbit/s per round. */
  readonly gbps: number[];
  readonly medianGbps: number;
}

export interface DatapathPair {
  readonly name: 'same-node' | 'cross-node' | 'published-port' | 'rules-only';
  readonly subject: Throughput;
  readonly baseline: Throughput;
  /** Median of the per-round ratios subject / baseline. */
  readonly ratio: number;
  /** subject median / baseline median (the same data, unpaired; for comparison). */
  readonly ratioOfMedians: number;
}

export interface DatapathResult {
  readonly seconds: number;
  readonly omitSeconds: number;
  readonly rounds: number;
  readonly pairs: DatapathPair[];
  /** Connections node 5 tracked after the rounds: proof that the rules-only pair ran through conntrack. */
  readonly rulesOnlyTrackedConnections: number;
}

function subnetOf(index: number): string {
  return `198.19.${index}.0/24`;
}

async function startIperfServer(scope: TestScope, ns: string): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, 'iperf3', '-s', '-p', String(IPERF_PORT)], { stdio: 'ignore' });
  scope.trackPid(child.pid);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  scope.defer(`iperf3 server in ${ns}`, async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await nsExec(ns, 'ss', ['-Htln', `sport = :${IPERF_PORT}`]);
    if (r.stdout.trim() !== '') return;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`iperf3 did not start listening in ${ns}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One iperf3 TCP test from `ns` to host:port; Gbit/s received. */
async function iperf(ns: string, host: string, port: number, options: BenchOptions): Promise<number> {
  const { seconds, omitSeconds } = options.datapath;
  const args = ['-c', host, '-p', String(port), '-t', String(seconds), '-J', ...(omitSeconds > 0 ? ['-O', String(omitSeconds)] : [])];
  const r = await nsExec(ns, 'iperf3', args, { allowFailure: true, timeoutMs: (seconds + omitSeconds + 30) * 1000 });
  let report: { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    throw new Error(`iperf3 from ${ns} to ${host}:${port} printed no JSON (exit ${r.exitCode}): ${r.stderr.trim()}`);
  }
  const bps = report.end?.sum_received?.bits_per_second;
  if (report.error || typeof bps !== 'number')
    throw new Error(`iperf3 from ${ns} to ${host}:${port} failed: ${report.error ?? 'no sum_received'}`);
  return bps / 1e9;
}

/** A hand-built node: bridge with the gateway, the VXLAN device (L3 overlay like nodenet's), forwarding. */
async function buildHandNode(node: NodeHost, index: number, peer: { index: number; address: string }): Promise<void> {
  const vtepMac = (i: number) => `02:aa:00:00:00:${i.toString(16).padStart(2, '0')}`;
  await ipBatch(node.ns, [
    `link add hbr0 mtu ${INSTANCE_MTU} type bridge`,
    'link set hbr0 up',
    `addr add 198.19.${index}.1/24 dev hbr0`,
    `link add hvx0 address ${vtepMac(index)} mtu ${INSTANCE_MTU} type vxlan id ${VNI} dstport ${VXLAN_PORT} local ${node.address} dev ${node.underlayIfname} nolearning`,
    `addr add 198.19.${index}.0/32 dev hvx0`,
    'link set hvx0 up',
    `route add ${subnetOf(peer.index)} via 198.19.${peer.index}.0 dev hvx0 onlink`,
    `neigh replace 198.19.${peer.index}.0 lladdr ${vtepMac(peer.index)} dev hvx0 nud permanent`,
  ]);
  await exec('bridge', ['-n', node.ns, 'fdb', 'append', vtepMac(peer.index), 'dev', 'hvx0', 'dst', peer.address, 'self', 'permanent']);
  await writeSysctls(node.ns, { 'net.ipv4.ip_forward': 1 });
}

/** A hand-built instance: veth into `ns`, host end on the bridge, address and default route. */
async function buildHandInstance(node: NodeHost, nodeIndex: number, ns: string, host: number, hostEnd: string): Promise<string> {
  const address = `198.19.${nodeIndex}.${host}`;
  await ipBatch(node.ns, [
    `link add ${hostEnd} mtu ${INSTANCE_MTU} type veth peer name eth0 mtu ${INSTANCE_MTU} netns ${ns}`,
    `link set ${hostEnd} master hbr0`,
    `link set ${hostEnd} up`,
  ]);
  await ipBatch(ns, [
    `addr add ${address}/24 dev eth0`,
    'link set eth0 up',
    'link set lo up',
    `route add default via 198.19.${nodeIndex}.1`,
  ]);
  return address;
}

/**
 * Loads nodenet's nftables tables into a hand-built node as the daemon would for this bridge and subnet
 * (loopback guard on the bridge ports, as with the iproute2 backend) and admits its instances' addresses.
 */
async function loadNodenetRules(
  node: NodeHost,
  index: number,
  instances: readonly { hostEnd: string; address: string }[],
  clusterIndexes: readonly number[],
): Promise<void> {
  const base = ensureBaseScript({
    cniName: 'hbr0' as IfName,
    ipv4: { subnet: Subnet.of(subnetOf(index)), gateway: `198.19.${index}.1` as Ipv4Address },
    clusterSubnets: clusterIndexes.map((i) => Subnet.of(subnetOf(i))),
    loopbackGuard: 'bridge-ports',
  });
  const elements = instances.map((i) => addInstanceScript({ hostIfname: i.hostEnd as IfName, ipv4: i.address as Ipv4Address, ports: [] }));
  await nsExec(node.ns, 'nft', ['-f', '-'], { input: base + elements.join('') });
}

async function waitReachable(ns: string, address: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if ((await ping(ns, address, { count: 1, timeoutSec: 1 })).ok) return;
    if (Date.now() > deadline) throw new Error(`${address} is not reachable from ${ns}`);
  }
}

export async function runDatapath(scope: TestScope, options: BenchOptions): Promise<DatapathResult> {
  const topology = await Topology.create(scope, { nodes: 6 });
  const [n1, n2, n3, n4, n5, n6] = [1, 2, 3, 4, 5, 6].map((i) => topology.node(i));
  const peerOf = (n: NodeHost, index: number) => ({ name: n.name, underlayAddress: n.address, subnet: subnetOf(index) });
  const [d1, d2] = await Promise.all([
    Daemon.start({ scope, node: n1!, config: { membership: { type: 'static', peers: [peerOf(n2!, 2)] } } }),
    Daemon.start({ scope, node: n2!, config: { membership: { type: 'static', peers: [peerOf(n1!, 1)] } } }),
  ]);
  const api1 = new NodenetSystem(d1.target).api;
  const api2 = new NodenetSystem(d2.target).api;
  scope.defer('close datapath clients', () => {
    api1.close();
    api2.close();
  });
  await api1.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: subnetOf(1) });
  await api2.createContainerNetworkInterface({ ipAddress: '198.19.2.1', subNetwork: subnetOf(2) });
  const [n1a, n1b, n2a, h3a, h3b, h4a, h5b, h6a] = (await createNamespaces(scope, 8)) as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  await api1.createInterface({ ipAddress: '198.19.1.10', ports: [IPERF_PORT], netns: n1a });
  await api1.createInterface({ ipAddress: '198.19.1.11', netns: n1b });
  await api2.createInterface({ ipAddress: '198.19.2.10', netns: n2a });

  await buildHandNode(n3!, 3, { index: 4, address: n4!.address });
  await buildHandNode(n4!, 4, { index: 3, address: n3!.address });
  await buildHandInstance(n3!, 3, h3a, 10, 'hv3a');
  await buildHandInstance(n3!, 3, h3b, 11, 'hv3b');
  await buildHandInstance(n4!, 4, h4a, 10, 'hv4a');

  // Nodes 5 and 6: 3 and 4 again, with nodenet's rules (the instance ports named as nodenet names them, so
  // the anti-spoofing chain runs for them).
  await buildHandNode(n5!, 5, { index: 6, address: n6!.address });
  await buildHandNode(n6!, 6, { index: 5, address: n5!.address });
  const [h5, h6] = [`${HOST_PREFIX}0000b5b1`, `${HOST_PREFIX}0000b6a1`];
  await loadNodenetRules(n5!, 5, [{ hostEnd: h5, address: await buildHandInstance(n5!, 5, h5b, 11, h5) }], [5, 6]);
  await loadNodenetRules(n6!, 6, [{ hostEnd: h6, address: await buildHandInstance(n6!, 6, h6a, 10, h6) }], [5, 6]);

  // The world reaches node 1's instances directly through node 1 (the "direct" side of the published-port pair).
  await ipBatch(topology.world.ns, [`route add ${subnetOf(1)} via ${n1!.address}`]);

  await Promise.all([n1a, n2a, h3a, h4a, h6a].map((ns) => startIperfServer(scope, ns)));
  await Promise.all([
    waitReachable(n1b, '198.19.1.10'),
    waitReachable(n1b, '198.19.2.10'),
    waitReachable(h3b, '198.19.3.10'),
    waitReachable(h3b, '198.19.4.10'),
    waitReachable(h5b, '198.19.6.10'),
    waitReachable(topology.world.ns, '198.19.1.10'),
  ]);

  const world = topology.world.ns;
  const plan = [
    {
      name: 'same-node' as const,
      subject: { label: 'nodenet: instance -> instance, one node', run: () => iperf(n1b, '198.19.1.10', IPERF_PORT, options) },
      baseline: { label: 'by hand: bridge + veths', run: () => iperf(h3b, '198.19.3.10', IPERF_PORT, options) },
    },
    {
      name: 'cross-node' as const,
      subject: {
        label: 'nodenet: instance -> instance, two nodes (VXLAN overlay)',
        run: () => iperf(n1b, '198.19.2.10', IPERF_PORT, options),
      },
      baseline: {
        label: 'by hand: kernel VXLAN (onlink route, static neighbour + FDB)',
        run: () => iperf(h3b, '198.19.4.10', IPERF_PORT, options),
      },
    },
    {
      name: 'published-port' as const,
      subject: { label: 'nodenet: underlay host -> published port (DNAT)', run: () => iperf(world, n1!.address, IPERF_PORT, options) },
      baseline: {
        label: 'nodenet: underlay host -> instance address (routed, no DNAT)',
        run: () => iperf(world, '198.19.1.10', IPERF_PORT, options),
      },
    },
    {
      name: 'rules-only' as const,
      subject: {
        label: "by hand: kernel VXLAN with nodenet's nftables rules (conntrack, NAT, anti-spoofing)",
        run: () => iperf(h5b, '198.19.6.10', IPERF_PORT, options),
      },
      baseline: {
        label: 'by hand: kernel VXLAN (onlink route, static neighbour + FDB)',
        run: () => iperf(h3b, '198.19.4.10', IPERF_PORT, options),
      },
    },
  ];
  const samples = plan.map(() => ({ subject: [] as number[], baseline: [] as number[] }));
  for (let pass = 0; pass < options.datapath.rounds; pass++) {
    for (const [k, p] of plan.entries()) {
      // Alternate which side goes first, so neither always runs on a machine warmed (or disturbed) by the other.
      const order = pass % 2 === 0 ? (['subject', 'baseline'] as const) : (['baseline', 'subject'] as const);
      for (const side of order) samples[k]![side].push(await p[side].run());
    }
    options.log(
      `datapath: round ${pass + 1}/${options.datapath.rounds}: ${plan.map((p, k) => `${p.name} ${round(samples[k]!.subject.at(-1)!, 2)}/${round(samples[k]!.baseline.at(-1)!, 2)} Gbit/s`).join(', ')}`,
    );
  }
  const pairs: DatapathPair[] = plan.map((p, k) => {
    const s = samples[k]!;
    const subject: Throughput = {
      label: p.subject.label,
      gbps: s.subject.map((v) => round(v, 3)),
      medianGbps: round(median(s.subject), 3),
    };
    const baseline: Throughput = {
      label: p.baseline.label,
      gbps: s.baseline.map((v) => round(v, 3)),
      medianGbps: round(median(s.baseline), 3),
    };
    return {
      name: p.name,
      subject,
      baseline,
      ratio: round(pairedRatio(s.subject, s.baseline), 3),
      ratioOfMedians: round(ratio(median(s.subject), median(s.baseline)), 3),
    };
  });
  const tracked = await nsExec(n5!.ns, 'conntrack', ['-C']);
  return {
    seconds: options.datapath.seconds,
    omitSeconds: options.datapath.omitSeconds,
    rounds: options.datapath.rounds,
    pairs,
    rulesOnlyTrackedConnections: Number(tracked.stdout.trim()),
  };
}
