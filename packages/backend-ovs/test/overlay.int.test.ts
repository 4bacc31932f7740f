/**
 * OvsOverlay against real private Open vSwitches (userspace datapath) in two node namespaces on one
 * underlay: the flow-based VXLAN port, per-peer flows with their cookies, the netdev uplink bridge, the
 * node's own routes to peers, peer changes and stale entries; then host-gw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIpv4Address, Subnet, type Ipv4Address } from '@nodenet/core';
import type { VxlanPeer } from '../src/vxlan-peers.js';
import {
  TestScope,
  Topology,
  completeUnderlayChecksums,
  echo,
  ipJson,
  ipv4AddressesOf,
  link,
  nftRuleset,
  nsExec,
  ping,
  startEchoServer,
  type NodeHost,
} from '@nodenet/testkit';
import type { OverlayMode } from '@nodenet/core';
import { OvsOverlay } from '../src/index.js';
import { formatCookie, peerCookie } from '../src/flows.js';
import { cniSpecFor, instanceSpec, ovsNode, type OvsNode } from './fixture.js';

/** The IPv4 peers these tests make. */
type NodeRecord = VxlanPeer & { readonly subnet: Subnet; readonly underlayAddress: Ipv4Address };

interface Member extends OvsNode {
  readonly record: NodeRecord;
  readonly overlay: OvsOverlay;
  /** An instance (netns extension) and its namespace. */
  instance: { ns: string; address: string };
}

async function member(scope: TestScope, topology: Topology, host: NodeHost, index: number, mode: OverlayMode): Promise<Member> {
  const n = await ovsNode(scope, host);
  const info = await n.hostProbe.probeHost(parseIpv4Address(host.address, 'underlay'));
  const overlay = new OvsOverlay({ mode, vni: 4242, port: 4789, host: info, ...n.ovs.config, netns: host.ns });
  const cni = { ...cniSpecFor(index), mtu: mode === 'vxlan' ? 1450 : 1500 };
  await n.dataplane.ensureCni(cni);
  const record: NodeRecord = { name: host.name, underlayAddress: parseIpv4Address(host.address, 'underlay'), subnet: cni.ipv4!.subnet };
  await overlay.ensureEndpoint(record);
  const ns = await topology.createInstanceNamespace();
  const spec = instanceSpec(cni, 10, { netns: ns });
  await n.dataplane.createInstance(spec);
  return { ...n, record, overlay, instance: { ns, address: spec.address } };
}

async function routesProto78(ns: string): Promise<Array<{ dst: string; gateway?: string; dev?: string }>> {
  return ipJson(ns, ['route', 'show', 'proto', '78']);
}

describe('OvsOverlay vxlan (netdev datapath)', () => {
  let scope: TestScope;
  let topology: Topology;
  let a: Member;
  let b: Member;

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 2 });
    [a, b] = await Promise.all([
      member(scope, topology, topology.node(1), 1, 'vxlan'),
      member(scope, topology, topology.node(2), 2, 'vxlan'),
    ]);
  });
  afterAll(() => scope?.cleanup());

  it('the endpoint is one flow-based VXLAN port on the CNI bridge, tagged; no peer yet: the underlay is untouched', async () => {
    const opts = (await a.ovs.vsctl(['get', 'Interface', 'nodenet-tun', 'type', 'options', 'external_ids', 'ofport'])).stdout
      .trim()
      .split('\n');
    expect(opts[0]).toBe('vxlan');
    expect(opts[1]).toContain('remote_ip=flow');
    expect(opts[1]).toContain('key="4242"');
    expect(opts[2]).toContain('nodenet:overlay');
    expect(opts[3]).toBe('65000');
    expect(await link(a.host.ns, 'nodenet-phy')).toBeUndefined();
    expect(await ipv4AddressesOf(a.host.ns, 'eth0')).toEqual(['198.18.0.1/24']);
  });

  it('ensurePeer: flows with the peer cookie, the node route (proto 78) and neighbour; the uplink moves into nodenet-phy; instances talk across (ping, TCP, own addresses)', async () => {
    await Promise.all([a.overlay.ensurePeer(b.record), b.overlay.ensurePeer(a.record)]);
    const flows = (await a.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(peerCookie(b.record.underlayAddress))));
    expect(flows).toHaveLength(3);
    expect(await routesProto78(a.host.ns)).toEqual([
      expect.objectContaining({ dst: '198.19.2.0/24', gateway: '198.19.2.0', dev: 'nodenet0' }),
    ]);
    // netdev: the underlay address now lives on the uplink bridge, eth0 is its port, and the kernel ignores eth0.
    expect(await ipv4AddressesOf(a.host.ns, 'nodenet-phy')).toEqual(['198.18.0.1/24']);
    expect(await ipv4AddressesOf(a.host.ns, 'eth0')).toEqual([]);
    expect((await link(a.host.ns, 'nodenet-phy'))?.address).toBe((await link(a.host.ns, 'eth0'))?.address);
    expect(JSON.stringify(await nftRuleset(a.host.ns))).toContain('"family":"netdev"');
    expect((await ipJson<Array<{ dst: string; dev: string }>>(a.host.ns, ['route', 'show', 'default']))[0]?.dev).toBe('nodenet-phy');

    // The very first packet is answered: ensurePeer had the userspace datapath resolve the peer's MAC already.
    const p = await ping(a.instance.ns, b.instance.address, { count: 1, timeoutSec: 1 });
    expect(p.ok, p.output).toBe(true);
    const server = await startEchoServer(scope, b.instance.ns, { protocol: 'tcp', port: 7100 });
    const t = await echo(a.instance.ns, { protocol: 'tcp', host: b.instance.address, port: 7100 });
    expect(t.ok, t.error).toBe(true);
    expect(server.receivedPayload(t.payload)[0]?.peerAddress).toBe(a.instance.address);
    // The node itself reaches the remote instance through its route; the world still reaches the node.
    expect((await ping(a.host.ns, b.instance.address)).ok).toBe(true);
    expect((await ping(topology.world.ns, a.host.address)).ok).toBe(true);
  });

  it('a bulk TCP transfer and a full-size packet with DF set cross; the kernel answers a ping to the node once (no duplicates)', async () => {
    await nsExec(b.instance.ns, 'iperf3', ['-s', '-1', '-D', '-p', '7101']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const bulk = await nsExec(a.instance.ns, 'iperf3', ['-c', b.instance.address, '-p', '7101', '-n', '4M'], { allowFailure: true });
    expect(bulk.exitCode, bulk.stdout + bulk.stderr).toBe(0);
    const full = await ping(a.instance.ns, b.instance.address, { size: 1450 - 28, dontFragment: true, count: 2 });
    expect(full.received, full.output).toBe(2);
    const world = await nsExec(topology.world.ns, 'ping', ['-n', '-c', '3', '-i', '0.2', a.host.address]);
    expect(world.stdout).not.toContain('DUP');
  });

  it('with an underlay that delivers complete checksums (as a NIC does), the world reaches the node over TCP through the uplink bridge', async () => {
    await completeUnderlayChecksums(a.host.ns);
    const server = await startEchoServer(scope, a.host.ns, { protocol: 'tcp', port: 7102 });
    const t = await echo(topology.world.ns, { protocol: 'tcp', host: a.host.address, port: 7102 });
    expect(t.ok, t.error).toBe(true);
    expect(server.receivedPayload(t.payload)[0]?.peerAddress).toBe(topology.world.address);
  });

  it('ensureEndpoint and ensurePeer again change nothing that works (a daemon restart)', async () => {
    const fresh = new OvsOverlay({
      mode: 'vxlan',
      vni: 4242,
      port: 4789,
      host: await a.hostProbe.probeHost(a.record.underlayAddress),
      ...a.ovs.config,
      netns: a.host.ns,
    });
    const before = await a.ovs.flows('nodenet0');
    await fresh.ensureEndpoint(a.record);
    await fresh.ensurePeer(b.record);
    expect(await a.ovs.flows('nodenet0')).toEqual(before);
    expect((await ping(a.instance.ns, b.instance.address)).ok).toBe(true);
  });

  it('removePeer removes its flows and route: traffic to it stops; ensurePeer brings it back', async () => {
    await a.overlay.removePeer(b.record);
    expect((await a.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(peerCookie(b.record.underlayAddress))))).toEqual([]);
    expect(await routesProto78(a.host.ns)).toEqual([]);
    expect((await ping(a.instance.ns, b.instance.address, { timeoutSec: 1 })).ok).toBe(false);
    await a.overlay.ensurePeer(b.record);
    expect((await ping(a.instance.ns, b.instance.address, { count: 2 })).ok).toBe(true);
  });

  it('a peer whose subnet changes: the old route and flows go', async () => {
    const moved: NodeRecord = { ...b.record, subnet: Subnet.of('198.19.22.0/24') };
    await a.overlay.ensurePeer(moved);
    expect((await routesProto78(a.host.ns)).map((r) => r.dst)).toEqual(['198.19.22.0/24']);
    const flows = (await a.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(peerCookie(b.record.underlayAddress))));
    expect(flows.join('\n')).not.toContain('198.19.2.0/24');
    await a.overlay.ensurePeer(b.record);
  });

  it('removeStalePeers removes entries of peers that left while nobody watched (found by cookie, proto 78, VTEP MAC)', async () => {
    const ghost: NodeRecord = { name: 'ghost', underlayAddress: parseIpv4Address('198.18.0.77', 'u'), subnet: Subnet.of('198.19.77.0/24') };
    await a.overlay.ensurePeer(ghost);
    const other = new OvsOverlay({
      mode: 'vxlan',
      vni: 4242,
      port: 4789,
      host: await a.hostProbe.probeHost(a.record.underlayAddress),
      ...a.ovs.config,
      netns: a.host.ns,
    });
    const removed = await other.removeStalePeers([b.record]);
    expect(removed.join('\n')).toContain('198.18.0.77');
    expect(removed.join('\n')).toContain('198.19.77.0/24');
    expect((await routesProto78(a.host.ns)).map((r) => r.dst)).toEqual(['198.19.2.0/24']);
    expect((await a.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(peerCookie(ghost.underlayAddress))))).toEqual([]);
    expect(await other.removeStalePeers([b.record])).toEqual([]);
    expect((await ping(a.instance.ns, b.instance.address)).ok).toBe(true);
  });

  it('flows lost with an ovs-vswitchd restart come back with ensureEndpoint + ensurePeer (what a resync does)', async () => {
    await a.ovs.stopSwitch('exit');
    await a.ovs.startSwitch();
    await a.dataplane.ensureCni({ ...cniSpecFor(1), mtu: 1450 });
    await a.overlay.ensureEndpoint(a.record);
    await a.overlay.ensurePeer(b.record);
    const p = await ping(a.instance.ns, b.instance.address, { count: 3 });
    expect(p.ok, p.output).toBe(true);
  });
});

describe('OvsOverlay host-gw (netdev datapath)', () => {
  let scope: TestScope;
  let topology: Topology;
  let a: Member;
  let b: Member;

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 2 });
    [a, b] = await Promise.all([
      member(scope, topology, topology.node(1), 1, 'host-gw'),
      member(scope, topology, topology.node(2), 2, 'host-gw'),
    ]);
    await Promise.all([a.overlay.ensurePeer(b.record), b.overlay.ensurePeer(a.record)]);
  });
  afterAll(() => scope?.cleanup());

  it('routes peers via their underlay addresses (proto 78), no tunnel port; instances talk across with their own addresses', async () => {
    expect(await routesProto78(a.host.ns)).toEqual([expect.objectContaining({ dst: '198.19.2.0/24', gateway: '198.18.0.2', dev: 'eth0' })]);
    expect((await a.ovs.vsctl(['--if-exists', 'get', 'Interface', 'nodenet-tun', 'name'])).stdout.trim()).toBe('');
    const server = await startEchoServer(scope, b.instance.ns, { protocol: 'tcp', port: 7200 });
    const t = await echo(a.instance.ns, { protocol: 'tcp', host: b.instance.address, port: 7200 });
    expect(t.ok, t.error).toBe(true);
    expect(server.receivedPayload(t.payload)[0]?.peerAddress).toBe(a.instance.address);
  });

  it('switching a vxlan node to host-gw removes the tunnel port, the peer flows and the uplink bridge, and gives the underlay back', async () => {
    const host = await a.hostProbe.probeHost(a.record.underlayAddress);
    const vxlan = new OvsOverlay({ mode: 'vxlan', vni: 4242, port: 4789, host, ...a.ovs.config, netns: a.host.ns });
    await vxlan.ensureEndpoint(a.record);
    await vxlan.ensurePeer(b.record);
    expect(await ipv4AddressesOf(a.host.ns, 'nodenet-phy')).toEqual(['198.18.0.1/24']);
    const hostGw = new OvsOverlay({ mode: 'host-gw', vni: 4242, port: 4789, host, ...a.ovs.config, netns: a.host.ns });
    await hostGw.ensureEndpoint(a.record);
    await hostGw.ensurePeer(b.record);
    await hostGw.removeStalePeers([b.record]);
    expect(await link(a.host.ns, 'nodenet-phy')).toBeUndefined();
    expect(await ipv4AddressesOf(a.host.ns, 'eth0')).toEqual(['198.18.0.1/24']);
    expect(JSON.stringify(await nftRuleset(a.host.ns))).not.toContain('"family":"netdev"');
    expect((await a.ovs.flows('nodenet0')).filter((f) => f.includes('cookie=0x6e6e03'))).toEqual([]);
    expect(await routesProto78(a.host.ns)).toEqual([expect.objectContaining({ dst: '198.19.2.0/24', gateway: '198.18.0.2', dev: 'eth0' })]);
    const p = await ping(a.instance.ns, b.instance.address, { count: 2 });
    expect(p.ok, p.output).toBe(true);
    expect((await ping(topology.world.ns, a.host.address)).ok).toBe(true);
  });
});
