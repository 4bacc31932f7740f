// portMappings with an IPv6 hostIP through libcni, on a dual-stack node (what podman sends for
// `-p [2001:db8:18::201]:8080:80`): the port is published on that node address only, to the container's IPv6
// address, from the world and from the node; CHECK verifies it (host address included) and names it when it
// is gone; a daemon restart restores it; DEL removes it. An IPv4 hostIP on the same dual-stack container
// publishes over IPv4 only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, echo, ipBatch, nsExec, startEchoServer, TestScope, Topology } from '@nodenet/testkit';
import { add, driver, nodenetConflist, writeConflist, type CniResult } from './support.js';

const WORLD6 = '2001:db8:18::100';
const NODE6 = '2001:db8:18::1';
/** A second IPv6 address of the node on its underlay link. */
const SECOND6 = '2001:db8:18::201';

describe('nodenet CNI plugin: portMappings with an IPv6 hostIP (dual-stack node)', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let conflist: string;
  let cache: string;
  let counter = 0;
  const nodeNs = () => topo.node(1).ns;
  const nodeAddress = () => topo.node(1).address;
  const containerId = () => `hostip6-${process.pid}-${++counter}`;
  const ipv6Of = (r: CniResult) => r.ips.find((i) => i.address.includes(':'))!.address.split('/')[0]!;

  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 1 });
    await ipBatch(topo.world.ns, [`addr add ${WORLD6}/64 dev eth0 nodad`]);
    const underlay = topo.node(1).underlayIfname;
    await ipBatch(nodeNs(), [`addr add ${NODE6}/64 dev ${underlay} nodad`, `addr add ${SECOND6}/64 dev ${underlay} nodad`]);
    // No repair on change: CHECK must see the drift the test makes before anything puts it right.
    daemon = await Daemon.start({ scope, node: topo.node(1), config: { repairOnChange: false } });
    await daemon.network().createContainerNetworkInterface({
      ipAddress: '198.19.1.1',
      subNetwork: '198.19.1.0/24',
      ipv6Address: 'fd19:0:0:1::1',
      ipv6SubNetwork: 'fd19:0:0:1::/64',
    });
    const dir = await scope.createTempDir();
    cache = await scope.createTempDir();
    conflist = await writeConflist(dir, 'nodenet.conflist', nodenetConflist({ socket: daemon.cniSocket }));
  });
  afterAll(() => scope?.cleanup());

  const probe = (from: string, host: string, port: number, timeoutMs?: number) =>
    echo(from, { protocol: 'tcp', host, port, ...(timeoutMs ? { timeoutMs } : {}) });

  it('publishes on the IPv6 hostIP only; CHECK verifies it and reports it gone; a restart restores it; DEL removes it', async () => {
    const ns = await topo.createInstanceNamespace();
    const netns = `/run/netns/${ns}`;
    const id = containerId();
    const ports = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: SECOND6 }];
    const result = await add(nodeNs(), { conflist, id, netns, cache, ports });
    const v6 = ipv6Of(result);
    const server = await startEchoServer(scope, ns, { protocol: 'tcp', port: 80, host: '::' });
    const fromWorld = await probe(topo.world.ns, SECOND6, 8080);
    expect(fromWorld.ok, fromWorld.error).toBe(true);
    expect(server.receivedPayload(fromWorld.payload).length).toBeGreaterThan(0);
    const fromNode = await probe(nodeNs(), SECOND6, 8080);
    expect(fromNode.ok, fromNode.error).toBe(true);
    for (const host of [NODE6, nodeAddress()])
      expect((await probe(topo.world.ns, host, 8080, 1000)).ok, `${host}:8080 was answered`).toBe(false);
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports })).toEqual({ ok: true });

    // Drift: the element is gone from the ip6 map; CHECK names the port with its address.
    await nsExec(nodeNs(), 'nft', ['delete', 'element', 'ip6', 'nodenet', 'published_host_ports', `{ ${SECOND6} . tcp . 8080 }`]);
    const drifted = await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports });
    expect(drifted.error).toMatchObject({
      code: 102,
      msg: expect.stringContaining(`port [${SECOND6}]:8080/tcp -> 80 is not published`) as unknown,
    });

    daemon = await daemon.restart(); // the restore puts the element back from the record
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports })).toEqual({ ok: true });
    expect((await probe(topo.world.ns, SECOND6, 8080)).ok).toBe(true);
    const map = async () => (await nsExec(nodeNs(), 'nft', ['list', 'map', 'ip6', 'nodenet', 'published_host_ports'])).stdout;
    expect(await map()).toContain(`${SECOND6} . tcp . 8080 : ${v6} . 80`);

    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns, cache })).toEqual({ ok: true });
    expect((await probe(topo.world.ns, SECOND6, 8080, 1000)).ok).toBe(false);
    expect(await map()).not.toContain('. tcp . 8080');
  });

  it('an IPv4 hostIP on the dual-stack container publishes over IPv4 only', async () => {
    const ns = await topo.createInstanceNamespace();
    const netns = `/run/netns/${ns}`;
    const id = containerId();
    const ports = [{ hostPort: 8090, containerPort: 90, protocol: 'tcp', hostIP: nodeAddress() }];
    await add(nodeNs(), { conflist, id, netns, cache, ports });
    await startEchoServer(scope, ns, { protocol: 'tcp', port: 90, host: '::' });
    const v4 = await probe(topo.world.ns, nodeAddress(), 8090);
    expect(v4.ok, v4.error).toBe(true);
    for (const host of [NODE6, SECOND6])
      expect((await probe(topo.world.ns, host, 8090, 1000)).ok, `[${host}]:8090 was answered`).toBe(false);
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports })).toEqual({ ok: true });
    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns, cache })).toEqual({ ok: true });
  });
});
