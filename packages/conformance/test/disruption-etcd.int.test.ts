// etcd down and back: three nodes on etcd membership (lease TTL 3 s), etcd stopped for
// ETCD_OUTAGE_SECONDS (default 120, the 2 minutes; NODENET_ETCD_OUTAGE_SECONDS sets another) and
// started again on its data. Traffic runs throughout: a ping every 20 ms from an instance on node 1 to one
// on node 2, and a TCP echo every 50 ms from the world through a port node 1 publishes.
// - While etcd is down: nobody's routes are withdrawn (etcd being unreachable says nothing about the peers),
//   node 1 stays SERVING and serves its own instances (a create works), reports the lost connection
//   (nodenet_membership_connected 0, renewal failures counted) and logs it. Node 3's daemon is killed
//   meanwhile: it cannot be withdrawn yet either.
// - Once etcd is back: node 1's watch resumes (connected 1), its record is renewed on a live lease, node 3's
//   record expires with its lease and its routes go everywhere, and a node that joins now is routed.
// Times (from etcd's return) and replies lost are printed (`[disruption]` lines), never asserted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGetInNamespace, ping, startSocatEcho } from '@nodenet/testkit';
import {
  BACKENDS,
  ClusterFixture,
  PortProbe,
  ReplyLog,
  nodeSubnet,
  waitUntil,
  type ClusterInstance,
  type ClusterNode,
  type Outage,
} from '../src/index.js';
import { sleep } from '../src/durability.js';

const OUTAGE_SECONDS = Number(process.env.NODENET_ETCD_OUTAGE_SECONDS ?? 120);
const LEASE_TTL_SECONDS = 3;
const GIVE_UP_MS = 30_000;
const METRICS_PORT = 9842;

describe.each(BACKENDS)('etcd down and back (%s backend)', (backend) => {
  let c: ClusterFixture;
  let a: ClusterInstance; // on node 1: publishes a port (echo server), pings b
  let b: ClusterInstance; // on node 2
  let port: number;
  let pings: ReplyLog;
  let probe: PortProbe;

  beforeAll(async () => {
    expect(OUTAGE_SECONDS, 'NODENET_ETCD_OUTAGE_SECONDS').toBeGreaterThan(LEASE_TTL_SECONDS * 2);
    c = await ClusterFixture.start({
      backend,
      nodes: 3,
      overlay: 'vxlan',
      membership: 'etcd',
      leaseTtlSeconds: LEASE_TTL_SECONDS,
      reconcileIntervalSeconds: 3600,
    });
    for (const n of c.nodes) {
      const others = c.nodes.filter((o) => o !== n).map((o) => o.subnet);
      await waitUntil(`${n.name} routes the other nodes`, async () => sameSet(await n.routedSubnets(), others), GIVE_UP_MS);
    }
    port = c.node(1).nextPort();
    a = await c.node(1).addInstance({ ports: [port] });
    b = await c.node(2).addInstance();
    await startSocatEcho(c.scope, a.ns, 'tcp', port);
    pings = ReplyLog.start(c.scope, a.ns, b.address);
    probe = PortProbe.start(c.scope, c.world.ns, c.node(1).address, port);
    const start = Date.now();
    await pings.settledOutage(start, GIVE_UP_MS);
    await probe.settledOutage(start, GIVE_UP_MS);
  }, 120_000);
  afterAll(async () => {
    await pings?.stop();
    await probe?.stop();
    await c?.close();
  });

  const metric = async (node: ClusterNode, name: string): Promise<number> => {
    const body = (await httpGetInNamespace(c.scope, node.ns, '127.0.0.1', METRICS_PORT, '/metrics')).body;
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
    if (!m) throw new Error(`${node.name} exports no ${name}`);
    return Number(m[1]);
  };
  const serving = async (node: ClusterNode) => {
    const health = node.daemon.health();
    try {
      return [await health.check('', 2000), await health.check('network.Network', 2000)];
    } finally {
      health.close();
    }
  };
  const leaseOf = async (name: string) => (await c.etcd!.list(`/nodenet/nodes/${name}`)).find((kv) => kv.key.endsWith(`/${name}`))?.lease;

  it(
    `etcd down ${OUTAGE_SECONDS} s: peers stay routed, traffic flows, SERVING; back: lease renewed, a peer that died meanwhile is withdrawn, a new one is routed`,
    async () => {
      const [node1, node2, node3] = [c.node(1), c.node(2), c.node(3)];
      const routedBefore = await node1.routedSubnets();
      expect(routedBefore).toEqual([node2.subnet, node3.subnet].sort());
      expect(await metric(node1, 'nodenet_membership_connected')).toBe(1);
      const leaseBefore = await leaseOf(node1.name);
      expect(leaseBefore).toMatch(/^[1-9]\d*$/);
      const mark = node1.daemon.logs.length;

      // etcd down.
      const downAt = Date.now();
      await c.etcd!.stop();
      await waitUntil(
        'node 1 reports membership disconnected',
        async () => (await metric(node1, 'nodenet_membership_connected')) === 0,
        GIVE_UP_MS,
        200,
      );
      const noticedMs = Date.now() - downAt;
      // A peer dies while etcd is down: nothing can tell the others yet.
      await node3.killDaemon();
      // Node 1 keeps serving its own instances meanwhile.
      const during = await node1.addInstance();
      expect(await ping(during.ns, a.address)).toMatchObject({ ok: true });
      let samples = 0;
      while (Date.now() - downAt < OUTAGE_SECONDS * 1000) {
        expect(await node1.routedSubnets(), 'no peer is withdrawn while etcd is unreachable').toEqual(routedBefore);
        expect(await node2.routedSubnets()).toEqual([node1.subnet, node3.subnet].sort());
        expect(await serving(node1)).toEqual(['SERVING', 'SERVING']);
        samples++;
        await sleep(Math.min(5_000, Math.max(0, OUTAGE_SECONDS * 1000 - (Date.now() - downAt))));
      }
      const renewFailures = await metric(node1, 'nodenet_membership_lease_renew_failures_total');
      expect(renewFailures).toBeGreaterThan(0);
      const logged = node1.daemon.logs.slice(mark).map((l) => String(l.msg));
      expect(logged.some((m) => m.startsWith('etcd watch disconnected'))).toBe(true);
      const outageLoss = await Promise.all([pings, probe].map((p) => p.settledOutage(downAt, GIVE_UP_MS)));

      // etcd back.
      await c.etcd!.restart();
      const backAt = performance.now();
      const backAtEpoch = Date.now();
      const since = (t: number) => Math.round(t - backAt);
      await waitUntil(
        'node 1 reports membership connected again',
        async () => (await metric(node1, 'nodenet_membership_connected')) === 1,
        GIVE_UP_MS,
        100,
      );
      const connectedMs = since(performance.now());
      await waitUntil(
        "node 1's record is on a new, live lease",
        async () => {
          const lease = await leaseOf(node1.name);
          return lease !== undefined && lease !== '0' && lease !== leaseBefore;
        },
        GIVE_UP_MS,
        100,
      );
      const leaseMs = since(performance.now());
      await waitUntil(
        'node 3 is withdrawn from node 1 and node 2',
        async () => {
          const [r1, r2] = await Promise.all([node1.routedSubnets(), node2.routedSubnets()]);
          return !r1.includes(node3.subnet) && !r2.includes(node3.subnet);
        },
        GIVE_UP_MS,
      );
      const withdrawnMs = since(performance.now());
      // A node that joins now is routed by node 1 (its watch delivers the new record) and reachable.
      const node4 = await c.addNode();
      const joinedMs = Math.round(
        await waitUntil(
          'node 1 routes node 4',
          async () => (await node1.routedSubnets()).includes(nodeSubnet(node4.index)),
          GIVE_UP_MS,
          50,
        ),
      );
      const d = await node4.addInstance();
      await waitUntil(
        'the instance on node 1 reaches the one on node 4',
        async () => (await ping(a.ns, d.address, { count: 1 })).ok,
        GIVE_UP_MS,
      );
      // The live nodes' records outlive their leases' TTL: they are renewed, not re-announced over and over.
      await sleep(LEASE_TTL_SECONDS * 2 * 1000);
      const records = await c.etcdNodeRecords();
      expect([...records.keys()].sort()).toEqual([node1.name, node2.name, node4.name]);
      expect(await node1.routedSubnets()).toEqual([node2.subnet, node4.subnet].sort());
      expect(await serving(node1)).toEqual(['SERVING', 'SERVING']);
      const afterLoss = await Promise.all([pings, probe].map((p) => p.settledOutage(backAtEpoch, GIVE_UP_MS)));

      const o = (x: Outage) => `${x.lost}/${x.sent} lost, first good reply after ${x.outageMs} ms`;
      console.log(
        `[disruption] ${backend} | etcd down ${OUTAGE_SECONDS} s and back | noticed ${noticedMs} ms | during (${samples} samples): ping ${o(outageLoss[0]!)}, port ${o(outageLoss[1]!)}, lease renewal failures ${renewFailures} | after etcd back: connected ${connectedMs} ms, new lease ${leaseMs} ms, dead peer withdrawn ${withdrawnMs} ms, a new peer routed ${joinedMs} ms after its CNI was made | ping ${o(afterLoss[0]!)} | port ${o(afterLoss[1]!)}`,
      );
    },
    OUTAGE_SECONDS * 1000 + 240_000,
  );
});

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}
