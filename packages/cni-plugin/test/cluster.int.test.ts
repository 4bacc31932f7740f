// Two containers on two nodes of a cluster, each attached through its node's CNI plugin (libcni), reach each
// other with their own addresses over the VXLAN overlay.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, echo, ping, startEchoServer, TestScope, Topology } from '@nodenet/testkit';
import { add, driver, nodenetConflist, writeConflist } from './support.js';

describe('containers on two nodes attached through the plugin', () => {
  let scope: TestScope;
  let topo: Topology;
  const daemons: Daemon[] = [];
  const subnetOf = (i: number) => `198.19.${i}.0/24`;

  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 2 });
    for (const i of [1, 2]) {
      const other = 3 - i;
      daemons.push(
        await Daemon.start({
          scope,
          node: topo.node(i),
          config: {
            membership: {
              type: 'static',
              peers: [{ name: `node-${other}`, underlayAddress: topo.node(other).address, subnet: subnetOf(other) }],
            },
          },
        }),
      );
    }
  });
  afterAll(() => scope?.cleanup());

  it('each ADD creates its node CNI from the conflist; the containers ping and talk TCP across nodes', async () => {
    const cache = await scope.createTempDir();
    const dir = await scope.createTempDir();
    const attached = [];
    for (const i of [1, 2]) {
      const conflist = await writeConflist(
        dir,
        `node-${i}.conflist`,
        nodenetConflist({ socket: daemons[i - 1]!.cniSocket, extra: { subnet: subnetOf(i), gateway: `198.19.${i}.1` } }),
      );
      const ns = await topo.createInstanceNamespace();
      const id = `ctr-${process.pid}-node-${i}`;
      const r = await add(topo.node(i).ns, { conflist, id, netns: `/run/netns/${ns}`, cache });
      attached.push({ ns, id, conflist, node: topo.node(i).ns, address: r.ips[0]!.address.split('/')[0]! });
    }
    const [a, b] = attached as [(typeof attached)[0], (typeof attached)[0]];
    expect(a.address).toMatch(/^198\.19\.1\./);
    expect(b.address).toMatch(/^198\.19\.2\./);
    const p = await ping(a.ns, b.address, { count: 3, timeoutSec: 5 });
    expect(p.received, JSON.stringify(p)).toBeGreaterThan(0);
    const server = await startEchoServer(scope, b.ns, { protocol: 'tcp', port: 7000 });
    const reply = await echo(a.ns, { protocol: 'tcp', host: b.address, port: 7000 });
    expect(reply.ok, reply.error).toBe(true);
    // Cross-node traffic keeps the container's own address (no masquerade inside the cluster).
    expect(server.received.map((r) => r.peerAddress)).toContain(a.address);
    for (const x of attached)
      expect(await driver(x.node, { op: 'del', conflist: x.conflist, id: x.id, netns: `/run/netns/${x.ns}`, cache })).toEqual({ ok: true });
  });
});
