/**
 * Iproute2Overlay's set operations against the real kernel: 200 peers programmed in one call (one
 * `ip -batch` and one `bridge -batch`), the kernel's routes, neighbour and FDB entries read back, then 20
 * removed in one call leaving exactly the other 180; in vxlan and in host-gw mode. One node of the hand-built
 * fabric (overlay-fixture.ts); the peers are simulated records on its underlay segment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Subnet, VXLAN_OVERHEAD, parseIpv4Address, vtepMacOf, type NodeRecord } from '@nodenet/core';
import { Iproute2Overlay, OVERLAY_DEVICE } from '../src/index.js';
import { TestNamespaces } from './netns-fixture.js';
import { buildCluster, fdbOf, ipJsonIn, type TestNode } from './overlay-fixture.js';

/** Peers at 198.18.0.10.. (this node is 198.18.0.1) with subnets 198.19.10.0/24.. (this node: 198.19.1.0/24). */
function simulatedPeers(count: number): NodeRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `sim-${i + 10}`,
    underlayAddress: parseIpv4Address(`198.18.0.${i + 10}`, 'underlay'),
    subnet: Subnet.of(`198.19.${i + 10}.0/24`),
  }));
}

interface KernelPeerState {
  routes: string[];
  neighbours: string[];
  fdb: string[];
}

async function kernelState(node: TestNode, dev: string, withNeighbours: boolean): Promise<KernelPeerState> {
  const routes = await ipJsonIn<{ dst: string; gateway?: string; dev?: string }[]>(node.ns, ['route', 'show', 'proto', '78']);
  const neighbours = withNeighbours
    ? await ipJsonIn<{ dst: string; lladdr?: string; state?: string[] }[]>(node.ns, ['neigh', 'show', 'dev', dev])
    : [];
  const fdb = withNeighbours ? await fdbOf(node.ns, dev) : [];
  return {
    routes: routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort(),
    neighbours: neighbours
      .filter((n) => n.state?.includes('PERMANENT'))
      .map((n) => `${n.dst} ${n.lladdr}`)
      .sort(),
    fdb: fdb
      .filter((f) => f.state === 'permanent' && f.dst !== undefined)
      .map((f) => `${f.mac} ${f.dst}`)
      .sort(),
  };
}

function expectedVxlan(peers: readonly NodeRecord[]): KernelPeerState {
  return {
    routes: peers.map((p) => `${p.subnet} via ${String(p.subnet?.network)} dev ${OVERLAY_DEVICE}`).sort(),
    neighbours: peers.map((p) => `${String(p.subnet?.network)} ${vtepMacOf(p.underlayAddress)}`).sort(),
    fdb: peers.map((p) => `${vtepMacOf(p.underlayAddress)} ${p.underlayAddress}`).sort(),
  };
}

describe('Iproute2Overlay peers in batches (real kernel)', () => {
  const namespaces = new TestNamespaces();
  let node: TestNode;

  beforeAll(async () => {
    node = (await buildCluster(namespaces, 1, VXLAN_OVERHEAD)).nodes[0]!;
  });
  afterAll(() => namespaces.cleanup());

  it('vxlan: 200 peers in one call (routes, neighbour and FDB entries), 20 removed in one call leave exactly the other 180', async () => {
    const overlay = new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host: node.host, netns: node.ns });
    await overlay.ensureEndpoint(node.record);
    const peers = simulatedPeers(200);
    const added = await overlay.ensurePeers(peers);
    expect([...added.failed.keys()]).toEqual([]);
    expect(await kernelState(node, OVERLAY_DEVICE, true)).toEqual(expectedVxlan(peers));

    // Ensuring the same set again changes nothing (a restart's restore, a resync).
    expect((await overlay.ensurePeers(peers)).failed.size).toBe(0);
    expect(await kernelState(node, OVERLAY_DEVICE, true)).toEqual(expectedVxlan(peers));

    const leaving = peers.filter((_, i) => i % 10 === 3);
    expect(leaving).toHaveLength(20);
    expect((await overlay.removePeers(leaving)).failed.size).toBe(0);
    const staying = peers.filter((p) => !leaving.includes(p));
    expect(await kernelState(node, OVERLAY_DEVICE, true)).toEqual(expectedVxlan(staying));
    // Nothing stale is left for a reconcile pass to find.
    expect(await overlay.removeStalePeers(staying)).toEqual([]);
    expect((await overlay.removePeers(staying)).failed.size).toBe(0);
    expect(await kernelState(node, OVERLAY_DEVICE, true)).toEqual({ routes: [], neighbours: [], fdb: [] });
  });

  it('vxlan: a peer that cannot be programmed is reported by name; the rest of its batch is programmed', async () => {
    const overlay = new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host: node.host, netns: node.ns });
    await overlay.ensureEndpoint(node.record);
    const peers = simulatedPeers(20);
    // A record with this node's own underlay address: refused for this peer only.
    const bad: NodeRecord = { name: 'sim-self', underlayAddress: node.record.underlayAddress, subnet: Subnet.of('198.19.250.0/24') };
    const result = await overlay.ensurePeers([...peers.slice(0, 10), bad, ...peers.slice(10)]);
    expect([...result.failed.keys()]).toEqual(['sim-self']);
    expect(result.failed.get('sim-self')?.message).toMatch(/this node's own/);
    expect(await kernelState(node, OVERLAY_DEVICE, true)).toEqual(expectedVxlan(peers));
    await overlay.removePeers(peers);
  });

  it('host-gw: 200 peer routes in one call, 20 removed in one call leave exactly the other 180 (and the VXLAN device is gone)', async () => {
    const overlay = new Iproute2Overlay({ mode: 'host-gw', vni: 4242, port: 4789, host: node.host, netns: node.ns });
    await overlay.ensureEndpoint(node.record);
    const peers = simulatedPeers(200);
    expect((await overlay.ensurePeers(peers)).failed.size).toBe(0);
    const expected = (ps: readonly NodeRecord[]) => ps.map((p) => `${p.subnet} via ${p.underlayAddress} dev u0`).sort();
    expect((await kernelState(node, 'u0', false)).routes).toEqual(expected(peers));
    const leaving = peers.slice(100, 120);
    expect((await overlay.removePeers(leaving)).failed.size).toBe(0);
    expect((await kernelState(node, 'u0', false)).routes).toEqual(expected(peers.filter((p) => !leaving.includes(p))));
  });
});
