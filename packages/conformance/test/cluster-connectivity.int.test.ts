// Conformance: one private network across nodes (CONTRACT.md, "Cluster", and CreateContainerNetworkInterface:
// routes to every peer's subnet, masquerade only what leaves the cluster network). Three nodes, for each
// overlay and membership: every instance pair across nodes talks with its own addresses, full-size packets
// cross the vxlan overlay unfragmented, egress to the world is masqueraded while cross-node traffic is not,
// and a daemon restart on one node disturbs no cross-node traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, link, nsExec, ping, startEchoServer, startSocatEcho } from '@nodenet/testkit';
import {
  BACKENDS,
  ClusterFixture,
  ContinuousPing,
  backendProfile,
  TcpStream,
  crossNodePairs,
  probePairs,
  waitUntil,
  type ClusterInstance,
  type ClusterNode,
  type MembershipType,
  type OverlayMode,
} from '../src/index.js';

const VARIANTS: ReadonlyArray<{ overlay: OverlayMode; membership: MembershipType }> = [
  { overlay: 'vxlan', membership: 'static' },
  { overlay: 'host-gw', membership: 'static' },
  { overlay: 'vxlan', membership: 'etcd' },
];

/** IPv4 counters of a namespace (`/proc/net/snmp` shows the reading process's namespace). */
async function ipCounters(ns: string): Promise<Record<string, number>> {
  const text = (await nsExec(ns, 'cat', ['/proc/net/snmp'])).stdout;
  const [names, values] = text.split('\n').filter((l) => l.startsWith('Ip:'));
  const keys = names!.split(/\s+/).slice(1);
  const nums = values!.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(keys.map((k, i) => [k, nums[i]!]));
}

function measured(what: string, value: number | string | object): void {
  console.log(`[measured] ${what}: ${typeof value === 'number' ? `${Math.round(value)} ms` : JSON.stringify(value)}`);
}

describe.each(BACKENDS)('cluster of 3 nodes (%s backend)', (backend) => {
  describe.each(VARIANTS)('$overlay overlay, $membership membership', ({ overlay, membership }) => {
    let c: ClusterFixture;
    /** Two instances per node. */
    let instances: ClusterInstance[];
    const label = `${overlay}/${membership}`;

    beforeAll(async () => {
      c = await ClusterFixture.start({ backend, overlay, membership, leaseTtlSeconds: 3, reconcileIntervalSeconds: 2 });
      instances = (await Promise.all(c.nodes.map((n) => Promise.all([n.addInstance(), n.addInstance()])))).flat();
    });
    afterAll(() => c?.close());

    const others = (n: ClusterNode): ClusterNode[] => c.nodes.filter((o) => o !== n);

    it("every node routes the other nodes' subnets over the overlay (proto 78); ListPeers and Inspect show the peers programmed", async () => {
      // etcd: peers appear through the watch, so the first node may see the last one a moment later.
      const converged = await waitUntil(
        "every node has overlay routes to exactly the other nodes' subnets",
        async () => {
          const all = await Promise.all(
            c.nodes.map(
              async (n) =>
                JSON.stringify(await n.routedSubnets()) ===
                JSON.stringify(
                  others(n)
                    .map((o) => o.subnet)
                    .sort(),
                ),
            ),
          );
          return all.every(Boolean);
        },
        15_000,
      );
      measured(`${label}: CNIs created -> all overlay routes present`, converged);
      const incidents = `daemon incidents: ${JSON.stringify(c.incidents())}`;
      for (const n of c.nodes) {
        const routes = await n.overlayRoutes();
        for (const o of others(n)) {
          const r = routes.find((x) => x.dst === o.subnet);
          expect(r, `${n.name} routes ${o.subnet}`).toBeDefined();
          if (overlay === 'vxlan')
            expect(
              await backendProfile(backend).vxlanPathProblems(n.host, { subnet: o.subnet, underlayAddress: o.address }),
              `${n.name}: ${o.subnet} goes over the overlay`,
            ).toEqual([]);
          else expect(r, `${n.name}: ${o.subnet} goes via ${o.name}'s underlay address`).toMatchObject({ gateway: o.address, dev: 'eth0' });
        }
        const peers = await n.admin.listPeers();
        expect(peers.membership).toBe(membership);
        expect(peers.peers.map((p) => [p.peer?.name, p.peer?.underlayAddress, p.peer?.subnet, p.programmed]).sort(), incidents).toEqual(
          others(n)
            .map((o) => [o.name, o.address, o.subnet, true])
            .sort(),
        );
        const inspect = await n.admin.inspect();
        expect(inspect).toMatchObject({ nodeName: n.name, underlayAddress: n.address, backend, overlayMode: overlay });
        expect(inspect.cni).toMatchObject({ name: 'nodenet0', gateway: n.gateway, subNetwork: n.subnet, mtu: c.instanceMtu });
        expect(inspect.peers.map((p) => `${p.peer?.name}: ${p.programmed}`).sort(), incidents).toEqual(
          others(n).map((o) => `${o.name}: true`),
        );
        expect(inspect.interfaces.map((i) => i.ipAddress).sort()).toEqual(
          instances
            .filter((i) => i.node === n)
            .map((i) => i.address)
            .sort(),
        );
      }
    });

    it("every instance reaches every instance on the other nodes: ping and TCP, the server sees the client's own address", async () => {
      const pairs = crossNodePairs(instances);
      expect(pairs).toHaveLength(24);
      const results = await probePairs(c.scope, pairs);
      const failures = results
        .filter((r) => !r.ping.ok || !r.tcp.ok || r.tcp.seenSource !== r.from.address)
        .map(
          (r) =>
            `${r.from.address}(${r.from.node.name}) -> ${r.to.address}(${r.to.node.name}): ping ${r.ping.received}/${r.ping.transmitted}, tcp ${r.tcp.ok ? 'ok' : r.tcp.error}, server saw ${r.tcp.seenSource ?? 'nothing'}`,
        );
      expect(failures, `daemon incidents: ${JSON.stringify(c.incidents())}`).toEqual([]);
      const rtts = results.map((r) => r.ping.avgRttMs ?? NaN).sort((a, b) => a - b);
      measured(`${label}: cross-node ping rtt (ms) min/median/max`, [rtts[0], rtts[Math.floor(rtts.length / 2)], rtts.at(-1)]);
    });

    it("instances get the overlay's MTU; a full-size packet with DF set crosses unfragmented and one byte more is refused", async () => {
      const mtu = c.instanceMtu;
      expect(mtu).toBe(overlay === 'vxlan' ? 1450 : 1500);
      for (const i of instances) expect(i.response.mtu, `${i.handle} on ${i.node.name}`).toBe(mtu);
      const [a, b] = [instances[0]!, instances[2]!]; // node-1 and node-2
      const largest = mtu - 28; // IP (20) + ICMP (8) headers: 1422 on vxlan over a 1500 underlay
      const before = await Promise.all([ipCounters(a.node.ns), ipCounters(b.node.ns)]);
      const fits = await ping(a.ns, b.address, { size: largest, dontFragment: true, count: 3, intervalSec: 0.2 });
      expect(fits.received, fits.output).toBe(3);
      const after = await Promise.all([ipCounters(a.node.ns), ipCounters(b.node.ns)]);
      for (const k of [0, 1]) {
        expect(after[k]!.FragCreates! - before[k]!.FragCreates!, 'the nodes fragmented nothing on the way').toBe(0);
        expect(after[k]!.ReasmReqds! - before[k]!.ReasmReqds!, 'the nodes reassembled nothing').toBe(0);
      }
      const tooBig = await ping(a.ns, b.address, { size: largest + 1, dontFragment: true, count: 1, timeoutSec: 1 });
      expect(tooBig.received, tooBig.output).toBe(0);
      // Refused at the instance's own interface (ping -M do never fragments), which has the overlay's MTU.
      expect((await link(a.ns, 'eth0'))?.mtu).toBe(mtu);
    });

    it("egress to the world is masqueraded as the node's address, while cross-node traffic keeps the instance's address", async () => {
      const port = c.node(1).nextPort();
      const atWorld = await startEchoServer(c.scope, c.world.ns, { protocol: 'tcp', port });
      for (const n of c.nodes) {
        const inst = instances.find((i) => i.node === n)!;
        const p = await ping(inst.ns, c.world.internetAddress);
        expect(p.ok, p.output).toBe(true);
        const r = await echo(inst.ns, { protocol: 'tcp', host: c.world.internetAddress, port });
        expect(r.ok, r.error).toBe(true);
        expect(atWorld.receivedPayload(r.payload)[0]?.peerAddress, `the world sees ${n.name}'s underlay address, not ${inst.address}`).toBe(
          n.address,
        );
      }
      // The same instance to an instance of another node: not masqueraded.
      const [from, to] = [instances[0]!, instances[4]!];
      const atInstance = await startEchoServer(c.scope, to.ns, { protocol: 'tcp', port });
      const r = await echo(from.ns, { protocol: 'tcp', host: to.address, port });
      expect(r.ok, r.error).toBe(true);
      expect(atInstance.receivedPayload(r.payload)[0]?.peerAddress).toBe(from.address);
    });

    it('a port published on one node is reached from the world and from an instance of another node', async () => {
      const n1 = c.node(1);
      const port = n1.nextPort();
      const published = await n1.addInstance({ ports: [port] });
      const server = await startEchoServer(c.scope, published.ns, { protocol: 'tcp', port });
      const fromWorld = await echo(c.world.ns, { protocol: 'tcp', host: n1.address, port });
      expect(fromWorld.ok, fromWorld.error).toBe(true);
      expect(server.receivedPayload(fromWorld.payload)[0]?.peerAddress).toBe(c.world.address);
      const remote = instances.find((i) => i.node.index === 3)!;
      const fromRemote = await echo(remote.ns, { protocol: 'tcp', host: n1.address, port });
      expect(fromRemote.ok, fromRemote.error).toBe(true);
      expect(server.receivedPayload(fromRemote.payload)).toHaveLength(1);
      await n1.api.deleteInterface({ interfaceName: published.handle });
    });

    it('a daemon restart (SIGTERM + start) on one node disturbs no cross-node traffic: pings lose at most a few, a TCP connection survives', async () => {
      const n2 = c.node(2);
      const target = instances.find((i) => i.node === n2)!;
      const fromNode1 = instances.find((i) => i.node.index === 1)!;
      const fromNode3 = instances.find((i) => i.node.index === 3)!;
      const port = n2.nextPort();
      const server = await startSocatEcho(c.scope, target.ns, 'tcp', port);
      const stream = await TcpStream.start(c.scope, fromNode1.ns, target.address, port, 50);
      const pings = [
        ContinuousPing.start(c.scope, fromNode1.ns, target.address, 0.1),
        ContinuousPing.start(c.scope, fromNode3.ns, target.address, 0.1),
        ContinuousPing.start(c.scope, target.ns, fromNode3.address, 0.1), // and out of the restarted node
      ];
      await new Promise((resolve) => setTimeout(resolve, 500));
      const down = await n2.restartDaemon();
      // etcd: the old daemon's lease runs out now; the record the new daemon wrote must not go with it.
      await new Promise((resolve) => setTimeout(resolve, (membership === 'etcd' ? c.leaseTtlSeconds + 2 : 2) * 1000));
      const report = await stream.stop();
      const lost = await Promise.all(pings.map((p) => p.stop()));
      measured(`${label}: daemon restart on node-2 (stop -> SERVING)`, down);
      measured(`${label}: during the restart`, { tcp: report, pingsLost: lost.map((l) => `${l.lost}/${l.transmitted}`) });
      const incidents = `daemon incidents: ${JSON.stringify(c.incidents())}`;
      expect(report.error, `the TCP connection saw no error; ${incidents}`).toBeNull();
      expect(report.closed, 'the TCP connection is still open').toBe(false);
      expect(report.received, 'every line sent came back').toBe(report.sent);
      expect(report.localAddress).toBe(fromNode1.address);
      expect(server.peers).toContain(fromNode1.address);
      for (const l of lost) {
        expect(l.transmitted, l.output).toBeGreaterThan(20);
        expect(l.lost, `${l.output}; ${incidents}`).toBeLessThanOrEqual(3);
      }
      // Peers still route to node-2, and the restarted daemon still routes to them.
      for (const n of c.nodes) {
        expect(await n.routedSubnets(), n.name).toEqual(
          others(n)
            .map((o) => o.subnet)
            .sort(),
        );
      }
    });
  });
});
