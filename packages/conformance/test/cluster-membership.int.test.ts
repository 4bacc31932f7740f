// Conformance: cluster membership at run time (CONTRACT.md, "Cluster"). Static: peers added and removed
// through NetworkAdmin AddPeer/RemovePeer. etcd: a node that joins gets routes everywhere; one whose daemon
// dies (SIGKILL) has its routes removed when its lease ends; one that comes back gets them again.
// Convergence times are measured and printed ("[measured] ...").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ping, rpcError } from '@nodenet/testkit';
import {
  BACKENDS,
  ClusterFixture,
  crossNodePairs,
  probePairs,
  reaches,
  waitUntil,
  type ClusterInstance,
  type ClusterNode,
} from '../src/index.js';

function measured(what: string, ms: number): void {
  console.log(`[measured] ${what}: ${Math.round(ms)} ms`);
}

/** Every pair between `newcomer` and the others talks (ping and TCP, addresses preserved). */
async function expectConnected(c: ClusterFixture, newcomer: ClusterInstance, others: readonly ClusterInstance[]): Promise<void> {
  const pairs = crossNodePairs([newcomer, ...others]).filter(([a, b]) => a === newcomer || b === newcomer);
  const results = await probePairs(c.scope, pairs, { pingCount: 1 });
  const failures = results
    .filter((r) => !r.ping.ok || !r.tcp.ok || r.tcp.seenSource !== r.from.address)
    .map(
      (r) =>
        `${r.from.address} -> ${r.to.address}: ping ${r.ping.ok}, tcp ${r.tcp.ok ? 'ok' : r.tcp.error}, server saw ${r.tcp.seenSource ?? 'nothing'}`,
    );
  expect(failures, `daemon incidents: ${JSON.stringify(c.incidents())}`).toEqual([]);
}

async function routesTo(nodes: readonly ClusterNode[], subnet: string): Promise<boolean[]> {
  return Promise.all(nodes.map(async (n) => (await n.routedSubnets()).includes(subnet)));
}

describe.each(BACKENDS)('cluster membership at run time (%s backend)', (backend) => {
  describe('static membership: AddPeer and RemovePeer', () => {
    let c: ClusterFixture;
    let instances: ClusterInstance[];
    beforeAll(async () => {
      c = await ClusterFixture.start({ backend, nodes: 3, overlay: 'vxlan', membership: 'static' });
      instances = await Promise.all(c.nodes.map((n) => n.addInstance()));
    });
    afterAll(() => c?.close());

    it('AddPeer refuses what cannot be a peer (FAILED_PRECONDITION / INVALID_ARGUMENT) and changes nothing', async () => {
      const n1 = c.node(1);
      const before = await n1.routedSubnets();
      const overlapping = await rpcError(n1.admin.addPeer({ name: 'node-x', underlayAddress: '198.18.0.77', subnet: '198.19.1.128/25' }));
      expect(overlapping.codeName).toBe('FAILED_PRECONDITION');
      expect(overlapping.details).toContain('198.19.1.');
      const itself = await rpcError(n1.admin.addPeer({ name: n1.name, underlayAddress: '198.18.0.77', subnet: '198.19.77.0/24' }));
      expect(itself.codeName).toBe('FAILED_PRECONDITION');
      const badAddress = await rpcError(n1.admin.addPeer({ name: 'node-x', underlayAddress: '198.18.0.077', subnet: '198.19.77.0/24' }));
      expect(badAddress.codeName).toBe('INVALID_ARGUMENT');
      const badSubnet = await rpcError(n1.admin.addPeer({ name: 'node-x', underlayAddress: '198.18.0.77', subnet: '198.19.77.1/24' }));
      expect(badSubnet.codeName).toBe('INVALID_ARGUMENT');
      expect(await n1.routedSubnets()).toEqual(before);
      expect((await n1.admin.listPeers()).peers.map((p) => p.peer?.name).sort()).toEqual(['node-2', 'node-3']);
      // Removing a peer nobody added is a no-op.
      await n1.admin.removePeer({ name: 'node-x' });
      expect(await n1.routedSubnets()).toEqual(before);
    });

    it('a 4th node added at run time is connected by AddPeer on every node, disconnected by RemovePeer, and reconnected by AddPeer again', async () => {
      const old = [...c.nodes];
      const n4 = await c.addNode(); // its own config lists nodes 1-3
      const i4 = await n4.addInstance();
      expect(await n4.routedSubnets()).toEqual(old.map((n) => n.subnet).sort());
      // The others do not know it yet: no route, no traffic.
      expect(await routesTo(old, n4.subnet)).toEqual([false, false, false]);
      expect(await reaches(instances[0]!, i4)).toBe(false);

      const t0 = performance.now();
      await Promise.all(old.map((n) => n.admin.addPeer(n4.peer)));
      const rpcDone = performance.now() - t0;
      await waitUntil(
        "every old node's instance reaches node-4's",
        async () => (await Promise.all(instances.map((i) => reaches(i, i4, 0.3)))).every(Boolean),
        10_000,
        20,
      );
      measured('static: AddPeer on 3 nodes (RPCs returned)', rpcDone);
      measured('static: AddPeer sent -> node-4 reachable from every node', performance.now() - t0);
      expect(await routesTo(old, n4.subnet)).toEqual([true, true, true]);
      for (const n of old) {
        const peers = await n.admin.listPeers();
        expect(peers.peers.find((p) => p.peer?.name === 'node-4')).toEqual({ peer: n4.peer, programmed: true });
      }
      await expectConnected(c, i4, instances);
      // AddPeer again with the same record: nothing changes.
      await c.node(1).admin.addPeer(n4.peer);
      expect(await routesTo(old, n4.subnet)).toEqual([true, true, true]);

      const t1 = performance.now();
      await Promise.all(old.map((n) => n.admin.removePeer({ name: n4.name })));
      measured('static: RemovePeer on 3 nodes (RPCs returned, routes gone)', performance.now() - t1);
      // Gone when the RPC returns.
      expect(await routesTo(old, n4.subnet)).toEqual([false, false, false]);
      for (const n of old) expect((await n.admin.listPeers()).peers.map((p) => p.peer?.name)).not.toContain('node-4');
      const cut = await ping(instances[0]!.ns, i4.address, { count: 2, timeoutSec: 1 });
      expect(cut.received, cut.output).toBe(0);
      // The rest of the cluster is untouched.
      expect(await reaches(instances[0]!, instances[1]!)).toBe(true);

      const t2 = performance.now();
      await Promise.all(old.map((n) => n.admin.addPeer(n4.peer)));
      await waitUntil(
        'node-4 is reachable again',
        async () => (await Promise.all(instances.map((i) => reaches(i, i4, 0.3)))).every(Boolean),
        10_000,
        20,
      );
      measured('static: AddPeer again -> node-4 reachable from every node', performance.now() - t2);
      await expectConnected(c, i4, instances);
    });
  });

  describe('etcd membership: join, lease expiry, return', () => {
    const ttl = 3;
    let c: ClusterFixture;
    let instances: ClusterInstance[];
    let n4: ClusterNode;
    let i4: ClusterInstance;
    beforeAll(async () => {
      c = await ClusterFixture.start({
        backend,
        nodes: 3,
        overlay: 'vxlan',
        membership: 'etcd',
        leaseTtlSeconds: ttl,
        reconcileIntervalSeconds: 1,
      });
      instances = await Promise.all(c.nodes.map((n) => n.addInstance()));
    });
    afterAll(() => c?.close());

    it('every node keeps its record in etcd; ListPeers says etcd; AddPeer/RemovePeer are refused (FAILED_PRECONDITION)', async () => {
      await waitUntil('etcd holds node-1..3', async () => (await c.etcdNodeRecords()).size === 3, 10_000);
      const records = await c.etcdNodeRecords();
      expect([...records.keys()].sort()).toEqual(['node-1', 'node-2', 'node-3']);
      for (const n of c.nodes) {
        expect(records.get(n.name)).toContain(n.address);
        expect(records.get(n.name)).toContain(n.subnet);
        expect((await n.admin.listPeers()).membership).toBe('etcd');
      }
      const add = await rpcError(c.node(1).admin.addPeer({ name: 'node-9', underlayAddress: '198.18.0.9', subnet: '198.19.9.0/24' }));
      expect(add.codeName).toBe('FAILED_PRECONDITION');
      const remove = await rpcError(c.node(1).admin.removePeer({ name: 'node-2' }));
      expect(remove.codeName).toBe('FAILED_PRECONDITION');
    });

    it('a node that joins at run time is reached from every node', async () => {
      n4 = await c.addNode({ cni: false });
      const t0 = performance.now();
      await n4.createCni();
      const cniDone = performance.now() - t0;
      await waitUntil(
        "every old node routes node-4's subnet",
        async () => (await routesTo(c.nodes.slice(0, 3), n4.subnet)).every(Boolean),
        15_000,
        20,
      );
      measured('etcd: node-4 CreateContainerNetworkInterface returned', cniDone);
      measured('etcd: node-4 CreateContainerNetworkInterface called -> routes on every old node', performance.now() - t0);
      i4 = await n4.addInstance();
      await waitUntil(
        "every node's instance reaches node-4's",
        async () => (await Promise.all(instances.map((i) => reaches(i, i4, 0.3)))).every(Boolean),
        15_000,
        20,
      );
      measured('etcd: node-4 CreateContainerNetworkInterface called -> its new instance reachable from every node', performance.now() - t0);
      expect(await routesTo(c.nodes.slice(0, 3), n4.subnet)).toEqual([true, true, true]);
      expect(await n4.routedSubnets()).toEqual(
        c.nodes
          .slice(0, 3)
          .map((n) => n.subnet)
          .sort(),
      );
      await expectConnected(c, i4, instances);
    });

    it(`its daemon killed (SIGKILL), its lease ends and every peer removes its routes (TTL ${ttl} s); restarted, it is reconnected`, async () => {
      const old = c.nodes.slice(0, 3);
      expect(await routesTo(old, n4.subnet)).toEqual([true, true, true]);
      const t0 = performance.now();
      await n4.killDaemon();
      let recordGoneAt: number | undefined;
      const watchRecord = waitUntil(
        'the etcd record of node-4 is gone',
        async () => !(await c.etcdNodeRecords()).has(n4.name),
        (ttl + 10) * 1000,
        50,
      ).then(() => {
        recordGoneAt = performance.now() - t0;
      });
      const routesGone = await waitUntil(
        "no old node routes node-4's subnet",
        async () => (await routesTo(old, n4.subnet)).every((has) => !has),
        (ttl + 10) * 1000,
        50,
      );
      await watchRecord;
      measured(`etcd: SIGKILL -> node-4's record gone (lease TTL ${ttl} s)`, recordGoneAt!);
      measured(
        `etcd: SIGKILL -> routes to node-4 removed on every peer (lease TTL ${ttl} s; contract bound TTL + 2 s = ${(ttl + 2) * 1000} ms)`,
        routesGone,
      );
      measured('etcd: record gone -> routes removed', routesGone - recordGoneAt!);
      for (const n of old) expect((await n.admin.listPeers()).peers.map((p) => p.peer?.name)).not.toContain('node-4');
      expect(await reaches(instances[0]!, i4)).toBe(false);
      // The others keep talking.
      expect(await reaches(instances[0]!, instances[2]!)).toBe(true);

      const t1 = performance.now();
      await n4.startDaemon();
      const serving = performance.now() - t1;
      const back = await waitUntil(
        'node-4 is reachable again from every node',
        async () => (await Promise.all(instances.map((i) => reaches(i, i4, 0.3)))).every(Boolean),
        15_000,
        20,
      );
      measured('etcd: node-4 daemon started -> SERVING', serving);
      measured('etcd: node-4 SERVING -> reachable from every node', back);
      expect(await routesTo(old, n4.subnet)).toEqual([true, true, true]);
      expect((await c.etcdNodeRecords()).has(n4.name)).toBe(true);
      await expectConnected(c, i4, instances);
    });
  });
});
