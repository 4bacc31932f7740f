// portMappings with a hostIP, through libcni (what podman sends for `-p 198.18.0.1:8080:80`): the port is
// published on that node address only, CHECK verifies it (host address included), a daemon restart keeps it,
// DEL removes it; an IPv6 hostIP on this IPv4-only node is a CNI error saying what to do instead (IPv6 on a
// dual-stack node: hostip-ipv6.int.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, echo, ipBatch, nsExec, startEchoServer, TestScope, Topology } from '@nodenet/testkit';
import { add, driver, nodenetConflist, writeConflist } from './support.js';

/** A second address of the node on its underlay link. */
const SECOND = '198.18.0.201';

describe('nodenet CNI plugin: portMappings with a hostIP', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let conflist: string;
  let cache: string;
  let counter = 0;
  const nodeNs = () => topo.node(1).ns;
  const nodeAddress = () => topo.node(1).address;
  const containerId = () => `hostip-${process.pid}-${++counter}`;

  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 1 });
    await ipBatch(nodeNs(), [`addr add ${SECOND}/24 dev ${topo.node(1).underlayIfname}`]);
    // No repair on change: CHECK must see the drift the test makes before anything puts it right.
    daemon = await Daemon.start({ scope, node: topo.node(1), config: { repairOnChange: false } });
    const dir = await scope.createTempDir();
    cache = await scope.createTempDir();
    conflist = await writeConflist(
      dir,
      'nodenet.conflist',
      nodenetConflist({ socket: daemon.cniSocket, extra: { subnet: '198.19.1.0/24', gateway: '198.19.1.1' } }),
    );
  });
  afterAll(() => scope?.cleanup());

  const world = (host: string, port: number, timeoutMs?: number) =>
    echo(topo.world.ns, { protocol: 'tcp', host, port, ...(timeoutMs ? { timeoutMs } : {}) });

  it('publishes on the hostIP only; CHECK verifies it and reports it gone; a restart restores it; DEL removes it', async () => {
    const ns = await topo.createInstanceNamespace();
    const netns = `/run/netns/${ns}`;
    const id = containerId();
    const ports = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: nodeAddress() }];
    await add(nodeNs(), { conflist, id, netns, cache, ports });
    const server = await startEchoServer(scope, ns, { protocol: 'tcp', port: 80 });
    const reply = await world(nodeAddress(), 8080);
    expect(reply.ok, reply.error).toBe(true);
    expect(server.receivedPayload(reply.payload).length).toBeGreaterThan(0);
    expect((await world(SECOND, 8080, 1000)).ok, `${SECOND}:8080 was answered`).toBe(false);
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports })).toEqual({ ok: true });

    // Another container may publish the same port on the node's other address; not on every address.
    const other = { id: containerId(), netns: `/run/netns/${await topo.createInstanceNamespace()}` };
    await add(nodeNs(), { conflist, ...other, cache, ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: SECOND }] });
    const every = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: containerId(),
      netns: `/run/netns/${await topo.createInstanceNamespace()}`,
      cache,
      ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    });
    expect(every.error).toMatchObject({ code: 100, msg: expect.stringContaining('port 8080/tcp is already published') as unknown });
    expect(await driver(nodeNs(), { op: 'del', conflist, ...other, cache })).toEqual({ ok: true });

    // Drift: the element is gone from the map; CHECK names the port with its address.
    await nsExec(nodeNs(), 'nft', ['delete', 'element', 'ip', 'nodenet', 'published_host_ports', `{ ${nodeAddress()} . tcp . 8080 }`]);
    const drifted = await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports });
    expect(drifted.error).toMatchObject({
      code: 102,
      msg: expect.stringContaining(`port ${nodeAddress()}:8080/tcp -> 80 is not published`) as unknown,
    });

    daemon = await daemon.restart(); // the restore puts the element back from the record
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns, cache, ports })).toEqual({ ok: true });
    expect((await world(nodeAddress(), 8080)).ok).toBe(true);
    expect((await world(SECOND, 8080, 1000)).ok).toBe(false);

    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns, cache })).toEqual({ ok: true });
    expect((await world(nodeAddress(), 8080, 1000)).ok).toBe(false);
    const map = (await nsExec(nodeNs(), 'nft', ['list', 'map', 'ip', 'nodenet', 'published_host_ports'])).stdout;
    expect(map).not.toContain('. tcp . 8080');
  });

  it('an IPv6 hostIP on an IPv4-only node is code 7 saying to give an IPv4 address or none; ::1 is code 7 too; nothing is attached', async () => {
    const attached = async () =>
      Object.keys(await daemon.readState()).filter((k) => k.startsWith('cni-attachments/') || k.startsWith('instances/'));
    const before = await attached();
    for (const [hostIP, mentioned] of [
      ['::1', "'runtimeConfig.portMappings[0].hostIP' ::1 cannot publish a port"],
      [
        '2001:db8:18::1',
        "runtimeConfig.portMappings[0].hostIP 2001:db8:18::1 is an IPv6 address, but this node's CNI holds only IPv4 198.19.1.0/24, so the container gets no IPv6 address to publish it to: give an IPv4 address of the node (podman: -p ADDRESS:8081:80), or none",
      ],
    ] as const) {
      const out = await driver(nodeNs(), {
        op: 'add',
        conflist,
        id: containerId(),
        netns: `/run/netns/${await topo.createInstanceNamespace()}`,
        cache,
        ports: [{ hostPort: 8081, containerPort: 80, protocol: 'tcp', hostIP }],
      });
      expect(out.error).toMatchObject({ code: 7, msg: expect.stringContaining(mentioned) as unknown });
    }
    expect(await attached()).toEqual(before);
  });
});
