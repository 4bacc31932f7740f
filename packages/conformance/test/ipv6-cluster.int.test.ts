// Conformance: IPv6 across the cluster (issue 18). Three nodes for each of: dual-stack instances over an IPv4
// underlay (VXLAN, etcd membership), dual-stack over an IPv6 underlay (host-gw: IPv4 routed via inet6), IPv6-only
// instances over an IPv6 underlay (VXLAN and host-gw), for both backends (ovs carries both families in its one
// flow-based tunnel port, over either underlay family, on the userspace datapath). Instances on different nodes
// reach each other with their own addresses, the largest DF packet for the MTU crosses (overhead 50 over IPv4, 70
// over IPv6) and one byte more is refused, egress to the world is masqueraded, and a peer leaving takes its routes
// with it. Also: a v1 etcd record (today's IPv4 format) stays readable; host-gw refuses an IPv6 peer over an IPv4
// underlay; a peer on an underlay of the other family is refused with FAILED_PRECONDITION.
// Underlay 198.18.0.0/24 and 2001:db8:18::/64; instance subnets 198.19.<i>.0/24 and fd19:0:0:<i>::/64.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetworkAdminClient, type NetworkAdminApiClient, type NetworkApiClient } from '@nodenet/api';
import {
  Daemon,
  EtcdServer,
  TestScope,
  Topology,
  addressesSettled,
  echo,
  ipBatch,
  nsExec,
  ping,
  rpcError,
  startEchoServer,
  type NodeHost,
} from '@nodenet/testkit';
import { NodeFixture, backendProfile, waitUntil } from '../src/index.js';

const WORLD6 = '2001:db8:18::100';
const ETCD_PREFIX = '/nodenet';
const underlay6 = (i: number) => `2001:db8:18::${i}`;
const subnet4 = (i: number) => `198.19.${i}.0/24`;
const subnet6 = (i: number) => `fd19:0:0:${i}::/64`;

type Stack = 'dual' | 'ipv6';
interface Variant {
  readonly backend: 'iproute2' | 'ovs';
  readonly stack: Stack;
  readonly underlay: 4 | 6;
  readonly overlay: 'vxlan' | 'host-gw';
  readonly membership: 'static' | 'etcd';
}

interface Node {
  readonly host: NodeHost;
  readonly index: number;
  readonly name: string;
  readonly underlayAddress: string;
  daemon: Daemon;
  readonly api: NetworkApiClient;
  readonly admin: NetworkAdminApiClient;
}

interface Instance {
  readonly node: Node;
  readonly ns: string;
  readonly v4?: string;
  readonly v6: string;
}

/** Packets a namespace fragmented so far, IPv4 and IPv6 (`FragCreates` of /proc/net/snmp and /proc/net/snmp6). */
async function fragmentsCreated(ns: string): Promise<number> {
  const snmp = (await nsExec(ns, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Ip:'));
  const v4 = Number(snmp[1]!.split(/\s+/)[snmp[0]!.split(/\s+/).indexOf('FragCreates')]);
  const v6 = Number(/^Ip6FragCreates\s+(\d+)$/m.exec((await nsExec(ns, 'cat', ['/proc/net/snmp6'])).stdout)![1]);
  return v4 + v6;
}

/** nodenet's routes (proto 78) of both families: destination -> `via X dev Y`. */
async function overlayRoutes(ns: string): Promise<Map<string, string>> {
  const routes = new Map<string, string>();
  for (const family of ['-4', '-6']) {
    const r = await nsExec(ns, 'ip', ['-j', family, 'route', 'show', 'proto', '78']);
    for (const route of JSON.parse(r.stdout || '[]') as { dst: string; gateway?: string; via?: { host: string }; dev: string }[]) {
      routes.set(route.dst, `via ${route.gateway ?? route.via?.host ?? '-'} dev ${route.dev}`);
    }
  }
  return routes;
}

function subnetsOf(stack: Stack, i: number): string[] {
  return stack === 'dual' ? [subnet4(i), subnet6(i)] : [subnet6(i)];
}

function peerOf(stack: Stack, underlay: 4 | 6, i: number): Record<string, string> {
  const underlayAddress = underlay === 6 ? underlay6(i) : `198.18.0.${i}`;
  return stack === 'dual'
    ? { name: `node-${i}`, underlayAddress, subnet: subnet4(i), ipv6Subnet: subnet6(i) }
    : { name: `node-${i}`, underlayAddress, subnet: subnet6(i) };
}

const VARIANTS: readonly Variant[] = [
  { backend: 'iproute2', stack: 'dual', underlay: 4, overlay: 'vxlan', membership: 'etcd' },
  { backend: 'iproute2', stack: 'dual', underlay: 6, overlay: 'host-gw', membership: 'static' },
  { backend: 'iproute2', stack: 'ipv6', underlay: 6, overlay: 'vxlan', membership: 'static' },
  { backend: 'iproute2', stack: 'ipv6', underlay: 6, overlay: 'host-gw', membership: 'static' },
  { backend: 'ovs', stack: 'dual', underlay: 4, overlay: 'vxlan', membership: 'etcd' },
  { backend: 'ovs', stack: 'dual', underlay: 6, overlay: 'host-gw', membership: 'static' },
  { backend: 'ovs', stack: 'ipv6', underlay: 6, overlay: 'vxlan', membership: 'static' },
  { backend: 'ovs', stack: 'ipv6', underlay: 6, overlay: 'host-gw', membership: 'static' },
];

describe.each(VARIANTS)('IPv6 cluster of 3 nodes ($backend): $stack instances, IPv$underlay underlay, $overlay, $membership', (variant) => {
  const { backend, stack, underlay, overlay, membership } = variant;
  // The node's route to a peer's subnet goes through the VXLAN device (iproute2) or into the CNI bridge (ovs).
  const vxlanDev = backend === 'ovs' ? 'nodenet0' : 'nodenet-vx';
  let scope: TestScope;
  let topology: Topology;
  let etcd: EtcdServer | undefined;
  const nodes: Node[] = [];
  const instances: Instance[] = [];
  const expectedMtu = 1500 - (overlay === 'vxlan' ? (underlay === 6 ? 70 : 50) : 0);

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 3 });
    etcd = membership === 'etcd' ? await EtcdServer.startOnFabric(scope, topology) : undefined;
    // Every node and the world get the IPv6 underlay as well (IPv6 egress to the world goes over it in every variant).
    await ipBatch(topology.world.ns, [`addr add ${WORLD6}/64 dev eth0 nodad`]);
    for (const host of topology.nodes) {
      await ipBatch(host.ns, [`addr add ${underlay6(host.index)}/64 dev ${host.underlayIfname} nodad`, `route add ::/0 via ${WORLD6}`]);
    }
    await Promise.all(
      topology.nodes.map(async (host) => {
        const peers = topology.nodes.filter((o) => o !== host).map((o) => peerOf(stack, underlay, o.index));
        const daemon = await Daemon.start({
          scope,
          node: host,
          backend,
          config: {
            ...(await backendProfile(backend).prepareNode(scope, host)),
            ...(underlay === 6 ? { underlayAddress: underlay6(host.index) } : {}),
            overlay: { mode: overlay },
            reconcileIntervalSeconds: 2,
            membership: etcd
              ? { type: 'etcd', etcd: { endpoints: [etcd.url], prefix: ETCD_PREFIX, leaseTtlSeconds: 3 } }
              : { type: 'static', peers },
          },
        });
        const admin = createNetworkAdminClient(daemon.target);
        scope.defer(`close the admin client of ${host.name}`, () => admin.close());
        const node: Node = {
          host,
          index: host.index,
          name: host.name,
          underlayAddress: underlay === 6 ? underlay6(host.index) : host.address,
          daemon,
          api: daemon.network(),
          admin,
        };
        nodes.push(node);
        const i = host.index;
        await node.api.createContainerNetworkInterface(
          stack === 'dual'
            ? { ipAddress: `198.19.${i}.1`, subNetwork: subnet4(i), ipv6Address: `fd19:0:0:${i}::1`, ipv6SubNetwork: subnet6(i) }
            : { ipAddress: `fd19:0:0:${i}::1`, subNetwork: subnet6(i) },
        );
        const ns = await topology.createInstanceNamespace();
        const v6 = `fd19:0:0:${i}::11`;
        const v4 = stack === 'dual' ? `198.19.${i}.11` : undefined;
        const response = await node.api.createInterface(v4 ? { ipAddress: v4, ipv6Address: v6, netns: ns } : { ipAddress: v6, netns: ns });
        expect(response.mtu).toBe(expectedMtu);
        instances.push({ node, ns, v6, ...(v4 ? { v4 } : {}) });
      }),
    );
    nodes.sort((a, b) => a.index - b.index);
    instances.sort((a, b) => a.node.index - b.node.index);
    await addressesSettled(...nodes.map((n) => n.host.ns), ...instances.map((x) => x.ns));
  }, 240_000);
  afterAll(() => scope?.cleanup());

  const others = (n: Node) => nodes.filter((o) => o !== n);
  const incidents = () =>
    nodes.flatMap((n) =>
      n.daemon.logs
        .filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 40 || l.level === 50)
        .map((l) => `${n.name}: ${String(l.msg)}`),
    );

  it("every node routes the other nodes' subnets of both families (proto 78), over VXLAN or via their underlay address", async () => {
    const want = (n: Node) =>
      others(n)
        .flatMap((o) => subnetsOf(stack, o.index))
        .sort();
    await waitUntil(
      "every node has routes to exactly the other nodes' subnets",
      async () =>
        (
          await Promise.all(
            nodes.map(async (n) => JSON.stringify([...(await overlayRoutes(n.host.ns)).keys()].sort()) === JSON.stringify(want(n))),
          )
        ).every(Boolean),
      20_000,
    );
    console.log(
      `[routes] ${backend}/${stack}/IPv${underlay}/${overlay} on ${nodes[0]!.name}: ${JSON.stringify([...(await overlayRoutes(nodes[0]!.host.ns))])}`,
    );
    for (const n of nodes) {
      const routes = await overlayRoutes(n.host.ns);
      for (const o of others(n)) {
        for (const s of subnetsOf(stack, o.index)) {
          const route = routes.get(s) ?? 'none';
          if (overlay === 'vxlan')
            expect(route, `${n.name} -> ${s}; ${JSON.stringify(incidents())}`).toMatch(new RegExp(` dev ${vxlanDev}$`));
          else expect(route, `${n.name} -> ${s}; ${JSON.stringify(incidents())}`).toBe(`via ${o.underlayAddress} dev eth0`);
        }
      }
      const peers = await n.admin.listPeers();
      expect(
        peers.peers.map((p) => `${p.peer?.name} ${p.peer?.underlayAddress} ${p.peer?.ipv6Subnet ?? '-'} ${p.programmed}`).sort(),
      ).toEqual(others(n).map((o) => `${o.name} ${o.underlayAddress} ${subnet6(o.index)} true`));
    }
  });

  it("instances on different nodes ping each other over IPv6 (and IPv4 on dual stack), and TCP arrives with the sender's own address", async () => {
    const failures: string[] = [];
    const port = 7100;
    const servers = new Map<string, Awaited<ReturnType<typeof startEchoServer>>>();
    for (const x of instances) {
      servers.set(`${x.ns}|6`, await startEchoServer(scope, x.ns, { protocol: 'tcp', port, host: '::' }));
    }
    for (const a of instances) {
      for (const b of instances) {
        if (a.node === b.node) continue;
        const families: Array<[string, string]> = [[a.v6, b.v6], ...(a.v4 && b.v4 ? [[a.v4, b.v4] as [string, string]] : [])];
        for (const [from, to] of families) {
          const p = await ping(a.ns, to, { count: 2, intervalSec: 0.2, timeoutSec: 2 });
          if (!p.ok) failures.push(`ping ${from} -> ${to}: ${p.output}`);
        }
        const r = await echo(a.ns, { protocol: 'tcp', host: b.v6, port });
        const seen = servers.get(`${b.ns}|6`)!.receivedPayload(r.payload)[0]?.peerAddress;
        if (!r.ok || seen !== a.v6) failures.push(`tcp ${a.v6} -> ${b.v6}: ${r.ok ? 'ok' : r.error}, the server saw ${seen ?? 'nothing'}`);
        if (a.v4 && b.v4) {
          const r4 = await echo(a.ns, { protocol: 'tcp', host: b.v4, port });
          // One server on [::] takes IPv4 too, as an IPv4-mapped address.
          const seen4 = servers.get(`${b.ns}|6`)!.receivedPayload(r4.payload)[0]?.peerAddress;
          if (!r4.ok || seen4 !== `::ffff:${a.v4}`)
            failures.push(`tcp ${a.v4} -> ${b.v4}: ${r4.ok ? 'ok' : r4.error}, the server saw ${seen4 ?? 'nothing'}`);
        }
      }
    }
    expect(failures, JSON.stringify(incidents())).toEqual([]);
  });

  it(`a DF packet of the largest size for the MTU (${expectedMtu}) crosses between nodes and one byte more is refused`, async () => {
    const [a, b] = [instances[0]!, instances[1]!];
    const largest6 = expectedMtu - 48; // IPv6 (40) + ICMPv6 (8)
    const fragmentedBefore = await Promise.all([fragmentsCreated(a.node.host.ns), fragmentsCreated(b.node.host.ns)]);
    const fits = await ping(a.ns, b.v6, { size: largest6, dontFragment: true, count: 3, intervalSec: 0.2 });
    expect(fits.received, fits.output).toBe(3);
    const tooBig = await ping(a.ns, b.v6, { size: largest6 + 1, dontFragment: true, count: 1, timeoutSec: 1 });
    expect(tooBig.received, tooBig.output).toBe(0);
    const measured: Record<string, number | string> = { mtu: expectedMtu, largestIcmp6Payload: largest6 };
    if (a.v4 && b.v4) {
      const largest4 = expectedMtu - 28; // IPv4 (20) + ICMP (8)
      const fits4 = await ping(a.ns, b.v4, { size: largest4, dontFragment: true, count: 3, intervalSec: 0.2 });
      expect(fits4.received, fits4.output).toBe(3);
      const tooBig4 = await ping(a.ns, b.v4, { size: largest4 + 1, dontFragment: true, count: 1, timeoutSec: 1 });
      expect(tooBig4.received, tooBig4.output).toBe(0);
      measured.largestIcmp4Payload = largest4;
    }
    // Unfragmented on the way: an overhead too small for the underlay would have the nodes fragment the outer packets.
    expect(await Promise.all([fragmentsCreated(a.node.host.ns), fragmentsCreated(b.node.host.ns)])).toEqual(fragmentedBefore);
    // The instance's own link has the overlay's MTU (where ping -M do refuses the byte more).
    const link = JSON.parse((await nsExec(a.ns, 'ip', ['-j', 'link', 'show', 'eth0'])).stdout) as { mtu: number }[];
    expect(link[0]!.mtu).toBe(expectedMtu);
    console.log(`[measured] ${backend}/${stack}/IPv${underlay} underlay/${overlay}: ${JSON.stringify(measured)}`);
  });

  it("egress to the world is masqueraded as the node's IPv6 underlay address; traffic between nodes is not", async () => {
    const port = 7200;
    const world = await startEchoServer(scope, topology.world.ns, { protocol: 'tcp', port, host: '::' });
    for (const x of instances) {
      const r = await echo(x.ns, { protocol: 'tcp', host: WORLD6, port });
      expect(r.ok, r.error).toBe(true);
      expect(world.receivedPayload(r.payload)[0]?.peerAddress, `the world sees ${x.node.name}'s address, not ${x.v6}`).toBe(
        underlay6(x.node.index),
      );
    }
  });

  if (membership === 'etcd') {
    it('etcd holds version-2 records with the IPv6 subnet and a claim per subnet; a version-1 record (IPv4 only) stays readable', async () => {
      const records = new Map(
        (await etcd!.list(`${ETCD_PREFIX}/nodes/`)).map((kv) => [kv.key.split('/').pop()!, JSON.parse(kv.value) as unknown]),
      );
      for (const n of nodes) {
        expect(records.get(n.name)).toEqual({
          version: 2,
          name: n.name,
          underlayAddress: n.underlayAddress,
          subnet: subnet4(n.index),
          ipv6Subnet: subnet6(n.index),
        });
      }
      const claims = (await etcd!.list(`${ETCD_PREFIX}/subnets/`))
        .map((kv) => `${kv.key.slice(`${ETCD_PREFIX}/subnets/`.length)}=${kv.value}`)
        .sort();
      expect(claims).toEqual(nodes.flatMap((n) => [`198.19.${n.index}.0_24=${n.name}`, `fd19:0:0:${n.index}::_64=${n.name}`]).sort());
      // A node of the current version writes an IPv4-only record exactly like this (version 1).
      const v1 = JSON.stringify({ version: 1, name: 'node-9', underlayAddress: '198.18.0.9', subnet: '198.19.9.0/24' });
      await etcdPut(etcd!, `${ETCD_PREFIX}/nodes/node-9`, v1);
      await etcdPut(etcd!, `${ETCD_PREFIX}/subnets/198.19.9.0_24`, 'node-9');
      await waitUntil(
        "every node routes node-9's subnet",
        async () => (await Promise.all(nodes.map(async (n) => (await overlayRoutes(n.host.ns)).has('198.19.9.0/24')))).every(Boolean),
        15_000,
      );
      const listed = (await nodes[0]!.admin.listPeers()).peers.find((p) => p.peer?.name === 'node-9');
      expect(listed?.peer).toMatchObject({ underlayAddress: '198.18.0.9', subnet: '198.19.9.0/24' });
      expect(listed?.peer?.ipv6Subnet ?? '').toBe('');
      await etcdDelete(etcd!, `${ETCD_PREFIX}/nodes/node-9`);
      await etcdDelete(etcd!, `${ETCD_PREFIX}/subnets/198.19.9.0_24`);
    });
  }

  it('a peer leaving removes its routes of both families from the other nodes', async () => {
    const leaving = nodes[2]!;
    if (membership === 'etcd') {
      await leaving.daemon.kill(); // its lease expires: the record goes (no restart grace after a kill)
    } else {
      for (const n of others(leaving)) await n.admin.removePeer({ name: leaving.name });
    }
    const gone = subnetsOf(stack, leaving.index);
    await waitUntil(
      `no node routes ${gone.join(', ')} any more`,
      async () =>
        (
          await Promise.all(others(leaving).map(async (n) => [...(await overlayRoutes(n.host.ns)).keys()].every((d) => !gone.includes(d))))
        ).every(Boolean),
      20_000,
    );
    for (const n of others(leaving)) {
      const routes = await overlayRoutes(n.host.ns);
      expect([...routes.keys()].sort()).toEqual(
        others(n)
          .filter((o) => o !== leaving)
          .flatMap((o) => subnetsOf(stack, o.index))
          .sort(),
      );
    }
    // The two remaining nodes still reach each other over IPv6.
    const p = await ping(instances[0]!.ns, instances[1]!.v6, { count: 2 });
    expect(p.ok, p.output).toBe(true);
  });
});

async function etcdPut(etcd: EtcdServer, key: string, value: string): Promise<void> {
  const body = JSON.stringify({ key: Buffer.from(key).toString('base64'), value: Buffer.from(value).toString('base64') });
  await nsExec(etcd.ns, 'curl', ['-s', '--max-time', '2', '-X', 'POST', `${etcd.url}/v3/kv/put`, '-d', body]);
}

async function etcdDelete(etcd: EtcdServer, key: string): Promise<void> {
  const body = JSON.stringify({ key: Buffer.from(key).toString('base64') });
  await nsExec(etcd.ns, 'curl', ['-s', '--max-time', '2', '-X', 'POST', `${etcd.url}/v3/kv/deleterange`, '-d', body]);
}

describe('IPv6 peers the overlay cannot carry are refused with FAILED_PRECONDITION', () => {
  it('host-gw over an IPv4 underlay refuses a peer with an IPv6 subnet (IPv6 is not routed via an IPv4 next hop)', async () => {
    const f = await NodeFixture.start({ backend: 'iproute2', config: { overlay: { mode: 'host-gw' } } });
    const admin = createNetworkAdminClient(f.daemon.target);
    try {
      const err = await rpcError(
        admin.addPeer({ name: 'node-2', underlayAddress: '198.18.0.2', subnet: subnet4(2), ipv6Subnet: subnet6(2) }),
      );
      expect(err.codeName).toBe('FAILED_PRECONDITION');
      expect(err.details).toContain(`peer node-2 has IPv6 subnet ${subnet6(2)} but an IPv4 underlay address 198.18.0.2`);
      expect((await admin.listPeers()).peers).toEqual([]);
      // The same peer without IPv6 is fine.
      await admin.addPeer({ name: 'node-2', underlayAddress: '198.18.0.2', subnet: subnet4(2) });
      expect((await admin.listPeers()).peers.map((p) => p.peer?.name)).toEqual(['node-2']);
    } finally {
      admin.close();
      await f.close();
    }
  });

  it('the ovs backend (vxlan, IPv4 underlay) refuses a peer on an IPv6 underlay; an IPv4-only node takes the IPv4 part of a dual-stack peer', async () => {
    const f = await NodeFixture.start({ backend: 'ovs' });
    const admin = createNetworkAdminClient(f.daemon.target);
    try {
      await admin.addPeer({ name: 'node-2', underlayAddress: '198.18.0.2', subnet: subnet4(2), ipv6Subnet: subnet6(2) });
      const over6 = await rpcError(admin.addPeer({ name: 'node-3', underlayAddress: underlay6(3), subnet: subnet4(3) }));
      expect(over6.codeName).toBe('FAILED_PRECONDITION');
      expect(over6.details).toContain(`peer node-3 has underlay address ${underlay6(3)}, but this node's underlay is IPv4`);
      await waitUntil(
        'node-2 is programmed',
        async () => (await admin.listPeers()).peers.some((p) => p.peer?.name === 'node-2' && p.programmed),
        10_000,
      );
      expect((await admin.listPeers()).peers.map((p) => `${p.peer?.name} ${p.peer?.ipv6Subnet} ${p.programmed}`)).toEqual([
        `node-2 ${subnet6(2)} true`,
      ]);
      // This node's CNI is IPv4-only (IPv6 off on nodenet0): the peer's IPv4 subnet is routed, its IPv6 one is not.
      expect([...(await overlayRoutes(f.node.ns))]).toEqual([[subnet4(2), 'via 198.19.2.0 dev nodenet0']]);
      // Removing it removes what was programmed (deletes of the IPv6 part find nothing, which is fine).
      await admin.removePeer({ name: 'node-2' });
      expect([...(await overlayRoutes(f.node.ns))]).toEqual([]);
      expect(f.daemon.logs.filter((l) => l.level === 'error' || l.level === 50).map((l) => String(l.msg))).toEqual([]);
    } finally {
      admin.close();
      await f.close();
    }
  });
});
