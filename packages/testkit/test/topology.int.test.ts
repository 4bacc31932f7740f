import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestScope } from '../src/scope.js';
import { BRIDGE_NETFILTER_SYSCTLS, INTERNET_ADDRESS, Topology, WORLD_ADDRESS } from '../src/topology.js';
import { readSysctls } from '../src/exec.js';
import { ipv4AddressesOf, link, routes } from '../src/inspect.js';
import { addressesSettled, echo, ping, startEchoServer, startEchoServers } from '../src/traffic.js';
import { adoptInterface } from '../src/instance.js';
import { exec, ipBatch, nsExec } from '../src/exec.js';

describe('Topology', () => {
  let scope: TestScope;
  let topo: Topology;
  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 3 });
  });
  afterAll(() => scope.cleanup());

  it('puts node i at 198.18.0.i on eth0 with a default route via the world', async () => {
    expect(topo.nodes.map((n) => [n.index, n.name, n.address])).toEqual([
      [1, 'node-1', '198.18.0.1'],
      [2, 'node-2', '198.18.0.2'],
      [3, 'node-3', '198.18.0.3'],
    ]);
    for (const node of topo.nodes) {
      expect(await ipv4AddressesOf(node.ns, 'eth0')).toEqual([`${node.address}/24`]);
      expect(await routes(node.ns)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: WORLD_ADDRESS, dev: 'eth0' }));
      expect((await link(node.ns, 'lo'))?.flags).toContain('UP');
      expect((await link(node.ns, 'eth0'))?.mtu).toBe(1500);
    }
    expect(topo.node(2).ns).toBe(topo.nodes[1]!.ns);
    expect(() => topo.node(4)).toThrow(/no node 4/);
  });

  it('sets bridge-nf-call-* to 0 in node namespaces by default', async () => {
    for (const node of topo.nodes) {
      expect(Object.values(await readSysctls(node.ns, BRIDGE_NETFILTER_SYSCTLS))).toEqual(['0', '0', '0']);
    }
  });

  it('connects nodes to each other, the world and the internet address', async () => {
    const results = await Promise.all([
      ping(topo.node(1).ns, '198.18.0.2'),
      ping(topo.node(2).ns, '198.18.0.3'),
      ping(topo.node(3).ns, WORLD_ADDRESS),
      ping(topo.node(1).ns, INTERNET_ADDRESS),
      ping(topo.world.ns, '198.18.0.1'),
    ]);
    for (const r of results) expect(r.ok, r.output).toBe(true);
    const unreachable = await ping(topo.node(1).ns, '198.18.0.77', { timeoutSec: 1 });
    expect(unreachable.ok, unreachable.output).toBe(false);
  });

  it('carries full-size frames with DF set, and no bigger', async () => {
    expect((await ping(topo.node(1).ns, '198.18.0.2', { size: 1472, dontFragment: true })).ok).toBe(true);
    expect((await ping(topo.node(1).ns, '198.18.0.2', { size: 1473, dontFragment: true, timeoutSec: 1 })).ok).toBe(false);
  });

  it('adds nodes later', async () => {
    const node = await topo.addNode();
    expect(node.address).toBe('198.18.0.4');
    expect((await ping(node.ns, '198.18.0.1')).ok).toBe(true);
  });

  it('echoes TCP and UDP and reports the peer address the server saw', async () => {
    const { tcp, udp } = await startEchoServers(scope, topo.world.ns, 7000);
    const t = await echo(topo.node(1).ns, { protocol: 'tcp', host: WORLD_ADDRESS, port: 7000 });
    expect(t).toMatchObject({ ok: true, localAddress: '198.18.0.1' });
    expect(t.reply).toBe(t.payload);
    expect(tcp.receivedPayload(t.payload)).toEqual([expect.objectContaining({ peerAddress: '198.18.0.1', localAddress: WORLD_ADDRESS })]);

    const u = await echo(topo.node(2).ns, { protocol: 'udp', host: INTERNET_ADDRESS, port: 7000 });
    // A UDP server on 0.0.0.0 answers from the address routing picks (Node has no IP_PKTINFO).
    expect(u).toMatchObject({ ok: true, from: WORLD_ADDRESS });
    expect(await udp.waitFor((r) => r.payload === u.payload)).toMatchObject({ peerAddress: '198.18.0.2' });

    const refused = await echo(topo.node(1).ns, { protocol: 'tcp', host: WORLD_ADDRESS, port: 7001 });
    expect(refused).toMatchObject({ ok: false, error: 'ECONNREFUSED' });
    const lost = await echo(topo.node(1).ns, { protocol: 'udp', host: WORLD_ADDRESS, port: 7001, timeoutMs: 600 });
    expect(lost.ok).toBe(false);
    expect(lost.error).toMatch(/timeout/);
  });

  it('sends from a chosen local address', async () => {
    await ipBatch(topo.node(3).ns, ['addr add 198.18.0.33/24 dev eth0']);
    const server = await startEchoServer(scope, topo.world.ns, { protocol: 'udp', port: 7002 });
    const r = await echo(topo.node(3).ns, { protocol: 'udp', host: WORLD_ADDRESS, port: 7002, bind: '198.18.0.33' });
    expect(r.ok).toBe(true);
    expect(await server.waitFor((x) => x.payload === r.payload)).toMatchObject({ peerAddress: '198.18.0.33' });
  });

  it('waits until no IPv6 address of the namespaces is tentative (duplicate address detection over)', async () => {
    const [x, y] = [await topo.createInstanceNamespace(), await topo.createInstanceNamespace()];
    await ipBatch(x, [`link add eth0 type veth peer name eth0 netns ${y}`]);
    await ipBatch(x, ['addr add fd19:ff::a/64 dev eth0', 'link set eth0 up']);
    await ipBatch(y, ['addr add fd19:ff::b/64 dev eth0', 'link set eth0 up']);
    await addressesSettled(x, y);
    for (const ns of [x, y]) expect((await nsExec(ns, 'ip', ['-6', 'addr', 'show'])).stdout).not.toContain('tentative');
    expect((await ping(x, 'fd19:ff::b')).ok).toBe(true);
  });

  it('moves a veth into an instance namespace as a runtime would', async () => {
    const node = topo.node(1);
    const inst = await topo.createInstanceNamespace();
    await ipBatch(node.ns, ['link add test-h type veth peer name test-i', 'addr add 10.77.0.1/24 dev test-h', 'link set test-h up']);
    const name = await adoptInterface({
      nodeNs: node.ns,
      handle: 'test-i',
      instanceNs: inst,
      address: '10.77.0.2',
      prefixLength: 24,
      gateway: '10.77.0.1',
      rename: 'eth0',
    });
    expect(name).toBe('eth0');
    expect(await ipv4AddressesOf(inst, 'eth0')).toEqual(['10.77.0.2/24']);
    expect((await ping(inst, '10.77.0.1')).ok).toBe(true);
    await exec('ip', ['-n', node.ns, 'link', 'del', 'test-h']);
  });
});

describe('Topology with bridge netfilter kept on', () => {
  const scope = new TestScope();
  afterAll(() => scope.cleanup());

  it('leaves bridge-nf-call-* at 1', async () => {
    const topo = await Topology.create(scope, { nodes: 1, bridgeNfCall: true, underlayMtu: 9000 });
    expect(Object.values(await readSysctls(topo.node(1).ns, BRIDGE_NETFILTER_SYSCTLS))).toEqual(['1', '1', '1']);
    expect((await link(topo.node(1).ns, 'eth0'))?.mtu).toBe(9000);
    expect((await ping(topo.node(1).ns, WORLD_ADDRESS, { size: 8972, dontFragment: true })).ok).toBe(true);
  });
});
