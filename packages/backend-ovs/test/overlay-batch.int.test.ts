/**
 * OvsOverlay's set operations against a real private Open vSwitch (userspace datapath): 200 peers programmed
 * in one call (one OpenFlow bundle on the long-lived connection, one `ip -batch`), the flows (by cookie), the
 * node's routes and neighbour entries read back, then 20 removed in one call leaving exactly the other 180.
 * One node of a testkit topology; the peers are simulated records on its underlay segment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Subnet, parseIpv4Address, vtepMacForUnderlay, type Ipv4Address } from '@nodenet/core';
import type { VxlanPeer } from '../src/vxlan-peers.js';
import { TestScope, Topology, ipJson } from '@nodenet/testkit';
import { OvsOverlay } from '../src/index.js';
import { cookieClassOf, COOKIE_CLASS, formatCookie, peerCookie } from '../src/flows.js';
import { cniSpecFor, ovsNode, type OvsNode } from './fixture.js';

/** The IPv4 peers these tests make. */
type NodeRecord = VxlanPeer & { readonly subnet: Subnet; readonly underlayAddress: Ipv4Address };

/** Peers at 198.18.0.10.. (this node is 198.18.0.1) with subnets 198.19.10.0/24.. (this node: 198.19.1.0/24). */
function simulatedPeers(count: number): NodeRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `sim-${i + 10}`,
    underlayAddress: parseIpv4Address(`198.18.0.${i + 10}`, 'underlay'),
    subnet: Subnet.of(`198.19.${i + 10}.0/24`),
  }));
}

describe('OvsOverlay peers in batches (netdev datapath)', () => {
  let scope: TestScope;
  let node: OvsNode;
  let overlay: OvsOverlay;
  let self: NodeRecord;

  beforeAll(async () => {
    scope = await TestScope.create();
    const topology = await Topology.create(scope, { nodes: 1 });
    node = await ovsNode(scope, topology.node(1));
    const host = await node.hostProbe.probeHost(parseIpv4Address(node.host.address, 'underlay'));
    const cni = { ...cniSpecFor(1), mtu: 1450 };
    await node.dataplane.ensureCni(cni);
    overlay = new OvsOverlay({ mode: 'vxlan', vni: 4242, port: 4789, host, ...node.ovs.config, netns: node.host.ns });
    scope.defer('close the overlay', () => overlay.close());
    self = { name: node.host.name, underlayAddress: parseIpv4Address(host.underlayAddress, 'underlay'), subnet: cni.ipv4!.subnet };
    await overlay.ensureEndpoint(self);
  });
  afterAll(() => scope?.cleanup());

  /** Peer flows by cookie (3 per peer), the node's routes (proto 78) and its VTEP neighbour entries on the CNI. */
  async function state(): Promise<{ flowsByPeer: Map<string, number>; routes: string[]; neighbours: string[] }> {
    const flowsByPeer = new Map<string, number>();
    for (const f of await node.ovs.flows('nodenet0')) {
      const cookie = /cookie=(0x[0-9a-f]+)/.exec(f)?.[1];
      if (!cookie || cookieClassOf(BigInt(cookie)) !== COOKIE_CLASS.peer) continue;
      flowsByPeer.set(cookie, (flowsByPeer.get(cookie) ?? 0) + 1);
    }
    const routes = await ipJson<{ dst: string; gateway?: string; dev?: string }[]>(node.host.ns, ['route', 'show', 'proto', '78']);
    const neighbours = await ipJson<{ dst: string; lladdr?: string; state?: string[] }[]>(node.host.ns, [
      'neigh',
      'show',
      'dev',
      'nodenet0',
    ]);
    return {
      flowsByPeer,
      routes: routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort(),
      neighbours: neighbours
        .filter((n) => n.state?.includes('PERMANENT'))
        .map((n) => `${n.dst} ${n.lladdr}`)
        .sort(),
    };
  }

  function expected(peers: readonly NodeRecord[]) {
    return {
      flowsByPeer: new Map(peers.map((p) => [formatCookie(peerCookie(p.underlayAddress)), 3])),
      routes: peers.map((p) => `${p.subnet} via ${p.subnet.network} dev nodenet0`).sort(),
      neighbours: peers.map((p) => `${p.subnet.network} ${vtepMacForUnderlay(p.underlayAddress)}`).sort(),
    };
  }

  it('200 peers in one call: 3 flows each by cookie, a route and a neighbour entry each; 20 removed in one call leave exactly the other 180', async () => {
    const peers = simulatedPeers(200);
    const added = await overlay.ensurePeers(peers);
    expect([...added.failed.keys()]).toEqual([]);
    expect(await state()).toEqual(expected(peers));
    // The flows carry what peerFlows builds (spot check on one peer: its subnet and tunnel destination).
    const one = peers[123]!;
    const flows = (await node.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(peerCookie(one.underlayAddress))));
    expect(flows.join('\n')).toContain(`nw_dst=${one.subnet}`);
    expect(flows.join('\n')).toContain(`${one.underlayAddress}->tun_dst`);

    // Ensuring the same set again changes nothing (a restart's restore, a resync).
    expect((await overlay.ensurePeers(peers)).failed.size).toBe(0);
    expect(await state()).toEqual(expected(peers));

    const leaving = peers.filter((_, i) => i % 10 === 7);
    expect(leaving).toHaveLength(20);
    expect((await overlay.removePeers(leaving)).failed.size).toBe(0);
    const staying = peers.filter((p) => !leaving.includes(p));
    expect(await state()).toEqual(expected(staying));
    expect(await overlay.removeStalePeers(staying)).toEqual([]);
  });

  it('a peer that cannot be programmed is reported by name; the rest of its batch is programmed', async () => {
    const peers = simulatedPeers(10);
    await overlay.removePeers(simulatedPeers(200));
    const bad: NodeRecord = { name: 'sim-self', underlayAddress: self.underlayAddress, subnet: Subnet.of('198.19.250.0/24') };
    const result = await overlay.ensurePeers([bad, ...peers]);
    expect([...result.failed.keys()]).toEqual(['sim-self']);
    expect(await state()).toEqual(expected(peers));
  });
});
