// The CNI plugin driven by libcni on a dual-stack node (IPv4 198.19.1.0/24 and IPv6 fd19:0:0:1::/64, the
// underlay 2001:db8:18::/64 beside 198.18.0.0/24): the ADD result carries both families, the container reaches
// its IPv6 gateway, a published port answers over IPv6 from the world, CHECK passes and notices a removed
// IPv6 address, DEL frees the IPv6 address (a static ADD of it succeeds afterwards), and allocation goes on
// past a freed one. The conflist alone (no API call) makes a dual-stack node's CNI, whose containers reach each
// other and the gateways over both families, and an IPv6-only one: an IPv6 address and route only, a published
// port over IPv6, containers reaching each other; a conflist of other families than the node's is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, nsExec, ping, startEchoServer, type Daemon, type TestScope, type Topology } from '@nodenet/testkit';
import { NODE6, startCniNode, type CniNode } from './fixture.js';
import { add, driver, nodenetConflist, writeConflist, type CniResult } from './support.js';

const SUBNET = '198.19.1.0/24';
const GATEWAY = '198.19.1.1';
const SUBNET6 = 'fd19:0:0:1::/64';
const GATEWAY6 = 'fd19:0:0:1::1';
const ONLY_SUBNET6 = 'fd19:0:0:2::/64';
const ONLY_GATEWAY6 = 'fd19:0:0:2::1';
const netnsPath = (ns: string) => `/run/netns/${ns}`;
const ipv6Of = (r: CniResult) => r.ips.find((i) => i.address.includes(':'))!.address.split('/')[0]!;
const ipv4Of = (r: CniResult) => r.ips.find((i) => !i.address.includes(':'))!.address.split('/')[0]!;

/** The node's CNI record as the daemon stored it. */
async function cniRecord(daemon: Daemon): Promise<Record<string, unknown>> {
  const text = (await daemon.readState())['cni.json'];
  if (text === undefined) throw new Error('the daemon has no CNI record');
  return (JSON.parse(text) as { record: Record<string, unknown> }).record;
}

describe('nodenet CNI plugin through libcni on a dual-stack node', () => {
  let scope: TestScope;
  let topo: Topology;
  let conflist: string;
  let cache: string;
  let counter = 0;
  const nodeNs = () => topo.node(1).ns;
  const containerId = () => `ctr6-${process.pid}-${++counter}`;

  beforeAll(async () => {
    // The CNI made through the API, and a conflist without subnet keys (it takes the node's CNI as it is).
    // No repair on change: CHECK must see the drift the test makes before anything puts it right.
    ({ scope, topo, conflist, cache } = await startCniNode({
      ipv6Underlay: true,
      daemonConfig: { repairOnChange: false },
      createCni: { ipAddress: GATEWAY, subNetwork: SUBNET, ipv6Address: GATEWAY6, ipv6SubNetwork: SUBNET6 },
    }));
  });
  afterAll(() => scope?.cleanup());

  it('ADD gives both families; IPv6 reaches the gateway and a published port; CHECK passes and notices a removed IPv6 address; DEL frees it', async () => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const ports = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }];
    const result = await add(nodeNs(), { conflist, id, netns: netnsPath(ns), cache, ports });
    expect(result.ips).toEqual([
      { address: expect.stringMatching(/^198\.19\.1\.\d+\/24$/) as unknown, gateway: GATEWAY, interface: 0 },
      { address: expect.stringMatching(/^fd19:0:0:1::[0-9a-f]+\/64$/) as unknown, gateway: GATEWAY6, interface: 0 },
    ]);
    expect(result.routes).toEqual([
      { dst: '0.0.0.0/0', gw: GATEWAY },
      { dst: '::/0', gw: GATEWAY6 },
    ]);
    const v6 = ipv6Of(result);
    const inside = JSON.parse((await nsExec(ns, 'ip', ['-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])).stdout) as {
      addr_info: { local?: string; prefixlen?: number }[];
    }[];
    // (`ip -j` also lists lifetime-only entries without `local`.)
    const held = inside[0]!.addr_info.filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen}`);
    expect(held).toEqual([`${v6}/64`]);
    const routes = JSON.parse((await nsExec(ns, 'ip', ['-j', '-6', 'route', 'show', 'default'])).stdout) as { gateway?: string }[];
    expect(routes.map((r) => r.gateway)).toEqual([GATEWAY6]);

    const toGateway = await ping(ns, GATEWAY6);
    expect(toGateway.ok, toGateway.output).toBe(true);

    // The published port, over IPv6: from the world to the node's IPv6 address (and still over IPv4).
    const server = await startEchoServer(scope, ns, { protocol: 'tcp', port: 80, host: '::' });
    const over6 = await echo(topo.world.ns, { protocol: 'tcp', host: NODE6, port: 8080 });
    expect(over6.ok, over6.error).toBe(true);
    expect(server.received.some((r) => r.localAddress?.endsWith(v6))).toBe(true);
    const over4 = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080 });
    expect(over4.ok, over4.error).toBe(true);

    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns: netnsPath(ns), cache, ports })).toEqual({ ok: true });
    await nsExec(ns, 'ip', ['addr', 'del', `${v6}/64`, 'dev', 'eth0']);
    const drifted = await driver(nodeNs(), { op: 'check', conflist, id, netns: netnsPath(ns), cache, ports });
    expect(drifted.ok).toBe(false);
    expect(drifted.error!.code).toBe(102);
    expect(drifted.error!.msg).toContain(`not ${v6}/64`);

    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    const gone = await echo(topo.world.ns, { protocol: 'tcp', host: NODE6, port: 8080, timeoutMs: 1000 });
    expect(gone.ok).toBe(false);

    // Freed: the next allocation goes on past it (no immediate reuse), and asking for it by name works.
    const next = await add(nodeNs(), { conflist, id: containerId(), netns: netnsPath(await topo.createInstanceNamespace()), cache });
    expect(ipv6Of(next)).not.toBe(v6);
    const again = await add(nodeNs(), {
      conflist,
      id: containerId(),
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: [`${v6}/64`],
    });
    expect(ipv6Of(again)).toBe(v6);
    expect(again.ips[0]!.address).toMatch(/^198\.19\.1\.\d+\/24$/);
  });

  it('an IPv6 address taken by another attachment, or of the wrong prefix length, is refused with a CNI error', async () => {
    const first = await add(nodeNs(), { conflist, id: containerId(), netns: netnsPath(await topo.createInstanceNamespace()), cache });
    const taken = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: containerId(),
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: [`${ipv6Of(first)}/64`],
    });
    expect(taken.error).toMatchObject({ code: 100, msg: expect.stringContaining(`${ipv6Of(first)} is already used`) as unknown });
    const prefix = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: containerId(),
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: ['fd19:0:0:1::99/96'],
    });
    expect(prefix.error).toMatchObject({ code: 7, msg: expect.stringContaining('the prefix length is 64') as unknown });
  });
});

/** A node (with the IPv6 underlay) whose CNI the first ADD makes from the conflist's `plugin` keys, for one describe block. */
function nodeFromConflist(plugin: Record<string, unknown>): () => CniNode {
  let node: CniNode | undefined;
  beforeAll(async () => {
    node = await startCniNode({ ipv6Underlay: true, plugin });
  });
  afterAll(() => node?.scope.cleanup());
  return () => node!;
}

describe('nodenet CNI plugin through libcni: the conflist alone makes a dual-stack node', () => {
  const node = nodeFromConflist({ subnet: SUBNET, gateway: GATEWAY, ipv6Subnet: SUBNET6, ipv6Gateway: GATEWAY6 });

  it('the first ADD creates the dual-stack CNI; two containers get both families and reach each other and the gateways', async () => {
    const { topo, daemon, conflist, cache } = node();
    const nodeNs = () => topo.node(1).ns;
    expect((await daemon.readState())['cni.json']).toBeUndefined();
    const [nsA, nsB] = [await topo.createInstanceNamespace(), await topo.createInstanceNamespace()];
    const a = await add(nodeNs(), { conflist, id: `dual-${process.pid}-a`, netns: netnsPath(nsA), cache });
    const b = await add(nodeNs(), { conflist, id: `dual-${process.pid}-b`, netns: netnsPath(nsB), cache });
    expect(await cniRecord(daemon)).toMatchObject({ gateway: GATEWAY, subnet: SUBNET, ipv6Gateway: GATEWAY6, ipv6Subnet: SUBNET6 });
    for (const r of [a, b]) {
      expect(r.ips).toEqual([
        { address: expect.stringMatching(/^198\.19\.1\.\d+\/24$/) as unknown, gateway: GATEWAY, interface: 0 },
        { address: expect.stringMatching(/^fd19:0:0:1::[0-9a-f]+\/64$/) as unknown, gateway: GATEWAY6, interface: 0 },
      ]);
    }
    for (const [ns, target] of [
      [nsA, GATEWAY6],
      [nsA, GATEWAY],
      [nsA, ipv6Of(b)],
      [nsA, ipv4Of(b)],
      [nsB, ipv6Of(a)],
    ] as const) {
      const r = await ping(ns, target);
      expect(r.ok, r.output).toBe(true);
    }
  });

  it("an IPv6-only conflist on this dual-stack node is fine (a family left out is the node's); other IPv6 keys are code 7 naming them", async () => {
    const { topo, daemon, dir, cache } = node();
    const nodeNs = () => topo.node(1).ns;
    const only6 = await writeConflist(
      dir,
      'only6.conflist',
      nodenetConflist({ socket: daemon.cniSocket, extra: { ipv6Subnet: SUBNET6, ipv6Gateway: GATEWAY6 } }),
    );
    const r = await add(nodeNs(), {
      conflist: only6,
      id: `dual-${process.pid}-c`,
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
    });
    expect(r.ips).toHaveLength(2);
    const other = await writeConflist(
      dir,
      'other6.conflist',
      nodenetConflist({ socket: daemon.cniSocket, extra: { ipv6Subnet: ONLY_SUBNET6, ipv6Gateway: ONLY_GATEWAY6 } }),
    );
    const refused = await driver(nodeNs(), {
      op: 'add',
      conflist: other,
      id: `dual-${process.pid}-d`,
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
    });
    expect(refused.error).toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        `'ipv6Subnet' ${ONLY_SUBNET6} and 'ipv6Gateway' ${ONLY_GATEWAY6}: the node's are ${SUBNET6} and ${GATEWAY6}`,
      ) as unknown,
    });
  });
});

describe('nodenet CNI plugin through libcni: the conflist alone makes an IPv6-only node', () => {
  const node = nodeFromConflist({ ipv6Subnet: ONLY_SUBNET6, ipv6Gateway: ONLY_GATEWAY6 });

  it('ADD gives an IPv6 address and route only; the gateway, another container and a published port answer; a static IPv4 address is refused; DEL', async () => {
    const { scope, topo, daemon, conflist, cache } = node();
    const nodeNs = () => topo.node(1).ns;
    const ns = await topo.createInstanceNamespace();
    const id = `only6-${process.pid}-1`;
    const ports = [{ hostPort: 8081, containerPort: 81, protocol: 'tcp' }];
    const result = await add(nodeNs(), { conflist, id, netns: netnsPath(ns), cache, ports });
    expect(await cniRecord(daemon)).toMatchObject({ gateway: ONLY_GATEWAY6, subnet: ONLY_SUBNET6 });
    expect(result.ips).toEqual([
      { address: expect.stringMatching(/^fd19:0:0:2::[0-9a-f]+\/64$/) as unknown, gateway: ONLY_GATEWAY6, interface: 0 },
    ]);
    expect(result.routes).toEqual([{ dst: '::/0', gw: ONLY_GATEWAY6 }]);
    expect((await nsExec(ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout.trim()).toBe('');
    const toGateway = await ping(ns, ONLY_GATEWAY6);
    expect(toGateway.ok, toGateway.output).toBe(true);
    const peerNs = await topo.createInstanceNamespace();
    const peer = await add(nodeNs(), { conflist, id: `only6-${process.pid}-peer`, netns: netnsPath(peerNs), cache });
    const toPeer = await ping(peerNs, ipv6Of(result));
    expect(toPeer.ok, toPeer.output).toBe(true);
    expect(ipv6Of(peer)).not.toBe(ipv6Of(result));
    await startEchoServer(scope, ns, { protocol: 'tcp', port: 81, host: '::' });
    const reply = await echo(topo.world.ns, { protocol: 'tcp', host: NODE6, port: 8081 });
    expect(reply.ok, reply.error).toBe(true);
    expect(await driver(nodeNs(), { op: 'check', conflist, id, netns: netnsPath(ns), cache, ports })).toEqual({ ok: true });

    const v4 = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: `only6-${process.pid}-2`,
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: ['198.19.1.5/24'],
    });
    expect(v4.error).toMatchObject({ code: 7, msg: expect.stringContaining(`holds IPv6 ${ONLY_SUBNET6} only`) as unknown });

    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    expect((await nsExec(ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], { allowFailure: true })).exitCode).not.toBe(0);
  });

  it('a dual-stack conflist on this IPv6-only node is code 7 naming its IPv4 keys', async () => {
    const { topo, daemon, dir, cache } = node();
    const nodeNs = () => topo.node(1).ns;
    const dual = await writeConflist(
      dir,
      'dual.conflist',
      nodenetConflist({
        socket: daemon.cniSocket,
        extra: { subnet: SUBNET, gateway: GATEWAY, ipv6Subnet: ONLY_SUBNET6, ipv6Gateway: ONLY_GATEWAY6 },
      }),
    );
    const refused = await driver(nodeNs(), {
      op: 'add',
      conflist: dual,
      id: `only6-${process.pid}-3`,
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
    });
    expect(refused.error).toMatchObject({
      code: 7,
      msg: expect.stringContaining(`'subnet' ${SUBNET} and 'gateway' ${GATEWAY}: the node's CNI has no IPv4 subnet`) as unknown,
    });
  });
});
