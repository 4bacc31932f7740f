/**
 * The ovs overlay on the dataplane's long-lived connections, against a real private Open vSwitch (userspace
 * datapath): after the dataplane created an instance (its flows on the OpenFlow connection) and the overlay
 * programmed, primed, read and removed peers, ovs-vswitchd has exactly one connection on the CNI bridge's
 * management socket; the priming packet-outs (sent on that connection) make ovs-vswitchd resolve a real
 * peer's underlay MAC before any traffic, for one peer (awaited) and inside a large batch (in the
 * background); a join of 1,000 peers is programmed in one call and read back flow by flow.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Subnet, parseIpv4Address, type NodeRecord } from '@nodenet/core';
import { TestScope, Topology, exec } from '@nodenet/testkit';
import { OvsOverlay } from '../src/index.js';
import { COOKIE_CLASS, cookieClassOf } from '../src/flows.js';
import { cniSpecFor, instanceSpec, ovsNode, type OvsNode } from './fixture.js';

/** Simulated peers at 198.18.0.10 upwards (past .255 for more than 245), subnets 198.19.16.0/28 upwards. */
function simulatedPeers(count: number): NodeRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const u = 10 + i;
    const s = 256 + i;
    return {
      name: `sim-${i}`,
      underlayAddress: parseIpv4Address(`198.18.${u >> 8}.${u & 255}`, 'underlay'),
      subnet: Subnet.of(`198.19.${s >> 4}.${(s & 15) * 16}/28`),
    };
  });
}

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('OvsOverlay on the shared OpenFlow connection (netdev datapath)', () => {
  let scope: TestScope;
  let topology: Topology;
  let node: OvsNode;
  let overlay: OvsOverlay;
  /** Real nodes on the underlay (no daemon: they only answer ARP for their addresses). */
  let realPeer: NodeRecord;
  let realPeerInBatch: NodeRecord;

  /**
   * Connections ovs-vswitchd accepted on the bridge's management socket. An accepted unix socket belongs to
   * the connecting process's network namespace (this one's), where ss lists it under the socket's path.
   */
  async function mgmtConnections(): Promise<number> {
    const out = await exec('ss', ['-xH', 'state', 'connected']);
    const socket = `${node.ovs.config.runDir}/nodenet0.mgmt`;
    return out.stdout.split('\n').filter((l) => l.split(/\s+/).includes(socket)).length;
  }

  /** ovs-vswitchd's tunnel neighbour cache: the IPv4 addresses it has resolved. */
  async function resolvedNeighbours(): Promise<string[]> {
    const out = await exec('ovs-appctl', ['-t', node.ovs.vswitchdControl, 'tnl/neigh/show']);
    return out.stdout.split('\n').flatMap((l) => /^(\d+\.\d+\.\d+\.\d+)\s/.exec(l.trim())?.[1] ?? []);
  }

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 3 });
    node = await ovsNode(scope, topology.node(1));
    const host = await node.hostProbe.probeHost(parseIpv4Address(node.host.address, 'underlay'));
    const cni = { ...cniSpecFor(1), mtu: 1450 };
    await node.dataplane.ensureCni(cni);
    await node.dataplane.createInstance(instanceSpec(cni, 10));
    overlay = new OvsOverlay({ mode: 'vxlan', vni: 4242, port: 4789, host, ...node.ovs.config, netns: node.host.ns });
    scope.defer('close the overlay', () => overlay.close());
    await overlay.ensureEndpoint({ name: node.host.name, underlayAddress: host.underlayAddress, subnet: cni.ipv4!.subnet });
    const real = (i: number): NodeRecord => ({
      name: topology.node(i).name,
      underlayAddress: parseIpv4Address(topology.node(i).address, 'underlay'),
      subnet: Subnet.of(`198.19.${i}.0/24`),
    });
    [realPeer, realPeerInBatch] = [real(2), real(3)];
  });
  afterAll(() => scope?.cleanup());

  it('a single new peer is primed before ensurePeers returns: ovs-vswitchd has resolved its underlay MAC', async () => {
    expect(await resolvedNeighbours()).not.toContain(realPeer.underlayAddress);
    await overlay.ensurePeer(realPeer);
    expect(await resolvedNeighbours()).toContain(realPeer.underlayAddress);
  });

  it('1,000 peers join in one call (3 flows each, read back by cookie); the real one among them is primed in the background', async () => {
    expect(await resolvedNeighbours()).not.toContain(realPeerInBatch.underlayAddress);
    const peers = [...simulatedPeers(999), realPeerInBatch];
    const result = await overlay.ensurePeers(peers);
    expect([...result.failed.keys()]).toEqual([]);
    const cookies = new Map<string, number>();
    for (const f of await node.ovs.flows('nodenet0')) {
      const cookie = /cookie=(0x[0-9a-f]+)/.exec(f)?.[1];
      if (cookie && cookieClassOf(BigInt(cookie)) === COOKIE_CLASS.peer) cookies.set(cookie, (cookies.get(cookie) ?? 0) + 1);
    }
    expect(cookies.size).toBe(peers.length + 1); // and the first test's peer
    expect([...cookies.values()].every((n) => n === 3)).toBe(true);
    await until('the real peer resolved', resolvedNeighbours, (n) => n.includes(realPeerInBatch.underlayAddress));
    // A departure of 10% in one call; a stale sweep finds nothing left over.
    const leaving = peers.filter((_, i) => i % 10 === 3);
    expect((await overlay.removePeers(leaving)).failed.size).toBe(0);
    expect(await overlay.removeStalePeers([realPeer, ...peers.filter((p) => !leaving.includes(p))])).toEqual([]);
  });

  it('the dataplane and the overlay share one OpenFlow connection to the bridge', async () => {
    expect(await mgmtConnections()).toBe(1);
  });
});
