// Conformance: IPv6 on one node: a dual-stack and an IPv6-only node on each backend, with instances placed by
// the daemon (netns), their published ports over IPv6 from the world, the node and by hairpin, the IPv6
// anti-spoofing, ND inspection and RA guard (iproute2: the bridge table's rules; ovs: the port's OpenFlow
// flows), reuse of a freed address, a restart and drift repair.
// Underlay 2001:db8:18::/64 beside 198.18.0.0/24; instance subnets in fd19::/48, one /64 per node.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkLocalForMac } from '@nodenet/core';
import { addressesSettled, echo, ipBatch, nsExec, ping, rpcError, startEchoServers, type TestScope } from '@nodenet/testkit';
import {
  BACKENDS,
  DUAL_GATEWAY6,
  DUAL_SUBNET6,
  NODE6,
  NODE_GATEWAY,
  NODE_SUBNET,
  NodeFixture,
  privateOvsOf,
  ONLY_GATEWAY6,
  WORLD6,
  type Instance,
} from '../src/index.js';

const ND_FORGE = fileURLToPath(new URL('./fixtures/nd-forge.py', import.meta.url));

async function ipv6Addresses(ns: string, ifname = 'eth0'): Promise<string[]> {
  const r = await nsExec(ns, 'ip', ['-j', '-6', 'addr', 'show', 'dev', ifname]);
  const links = JSON.parse(r.stdout || '[]') as { addr_info: { local: string; prefixlen: number; scope: string; dynamic?: boolean }[] }[];
  return links.flatMap((l) => l.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`));
}

async function neighbourMac(ns: string, address: string, dev: string): Promise<string | undefined> {
  const r = await nsExec(ns, 'ip', ['-j', '-6', 'neigh', 'show', address, 'dev', dev]);
  return (JSON.parse(r.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr;
}

/** The node's IPv6 connection-tracking entries naming `address` (conntrack lists IPv4 unless told the family). */
async function conntrack6(ns: string, address: string): Promise<string[]> {
  const r = await nsExec(ns, 'conntrack', ['-L', '-f', 'ipv6']);
  return r.stdout.split('\n').filter((l) => new RegExp(`(?:src|dst)=${address}(?:\\s|$)`).test(l));
}

async function raRoutes(ns: string): Promise<unknown[]> {
  const r = await nsExec(ns, 'ip', ['-j', '-6', 'route', 'show', 'proto', 'ra']);
  return JSON.parse(r.stdout || '[]') as unknown[];
}

const forge = (ns: string, args: string[]) => nsExec(ns, 'python3', [ND_FORGE, ...args]);
const settle = () => new Promise((resolve) => setTimeout(resolve, 700));

/** Two plain namespaces joined by a veth, no nodenet: proves the forged messages are ones a host accepts. */
async function plainPair(scope: TestScope): Promise<{ x: string; y: string; xMac: string }> {
  const [x, y] = await Promise.all([scope.createNamespace(), scope.createNamespace()]);
  await ipBatch(x, [`link add eth0 address 02:00:00:00:00:0a type veth peer name eth0 address 02:00:00:00:00:0b netns ${y}`]);
  await ipBatch(x, ['addr add fd19:ff::a/64 dev eth0 nodad', 'link set eth0 up']);
  await ipBatch(y, ['addr add fd19:ff::b/64 dev eth0 nodad', 'link set eth0 up']);
  return { x, y, xMac: '02:00:00:00:00:0a' };
}

describe.each(BACKENDS)('IPv6 on one node (%s backend)', (backend) => {
  describe('a dual-stack node', () => {
    let f: NodeFixture;
    let next = 0x10;
    const pair = () => {
      next += 1;
      return { v4: `198.19.1.${next}`, v6: `fd19:0:0:1::${next.toString(16)}` };
    };
    /** An instance with both families, placed and configured by the daemon. */
    const dual = async (ports: number[] = []): Promise<Instance & { v6: string }> => {
      const { v4, v6 } = pair();
      const ns = await f.topology.createInstanceNamespace();
      const response = await f.api.createInterface({ ipAddress: v4, ipv6Address: v6, netns: ns, ports });
      return { handle: response.interfaceName, address: v4, v6, ns, ifname: 'eth0', response };
    };

    beforeAll(async () => {
      f = await NodeFixture.start({ backend, families: 'dual' });
    });
    afterAll(() => f?.close());

    it('gives the bridge both gateways and reports both per family; a create without ipv6_address gets IPv4 only', async () => {
      expect(await ipv6Addresses(f.ns, 'nodenet0')).toEqual([`${DUAL_GATEWAY6}/64`]);
      const cni = (await f.inspect()).cni!;
      expect(cni).toMatchObject({
        gateway: NODE_GATEWAY,
        subNetwork: NODE_SUBNET,
        ipv6Gateway: DUAL_GATEWAY6,
        ipv6SubNetwork: DUAL_SUBNET6,
      });
      const a = await dual();
      expect(a.response).toMatchObject({ gateway: NODE_GATEWAY, prefixLength: 24, ipv6Gateway: DUAL_GATEWAY6, ipv6PrefixLength: 64 });
      expect(await ipv6Addresses(a.ns!)).toEqual([`${a.v6}/64`]);
      const ns = await f.topology.createInstanceNamespace();
      const { v4 } = pair();
      const only4 = await f.api.createInterface({ ipAddress: v4, netns: ns });
      expect(only4.ipv6Gateway).toBeUndefined();
      expect(await ipv6Addresses(ns)).toEqual([]);
      expect((await ping(ns, v4 === a.address ? NODE_GATEWAY : a.address)).ok).toBe(true);
    });

    it('refuses non-canonical IPv6, an address outside the subnet and IPv6 in ip_address, changing nothing', async () => {
      const { v4 } = pair();
      const cases: [Record<string, string>, RegExp][] = [
        [{ ipAddress: v4, ipv6Address: 'FD19:0:0:1::99' }, /canonical form \(RFC 5952\): write fd19:0:0:1::99/],
        [{ ipAddress: v4, ipv6Address: 'fd19:0:0:1:0:0:0:99' }, /write fd19:0:0:1::99/],
        [{ ipAddress: v4, ipv6Address: 'fd19:0:0:2::99' }, /not a usable host address of the node's IPv6 subnet/],
        [{ ipAddress: 'fd19:0:0:1::99' }, /ipv6_address/],
      ];
      for (const [request, why] of cases) {
        const err = await rpcError(f.api.createInterface(request));
        expect(err.codeName, JSON.stringify(request)).toBe('INVALID_ARGUMENT');
        expect(err.details).toMatch(why);
      }
      expect((await f.inspect()).interfaces.some((i) => i.ipAddress === v4)).toBe(false);
    });

    it('instances reach each other, the gateway and the world over IPv6 (ping, TCP), sources preserved', async () => {
      const [a, b] = await Promise.all([dual(), dual()]);
      for (const target of [b.v6, DUAL_GATEWAY6, NODE6, WORLD6]) {
        const p = await ping(a.ns!, target);
        expect(p.ok, p.output).toBe(true);
      }
      const server = await startEchoServers(f.scope, b.ns!, 7100, '::');
      const r = await echo(a.ns!, { protocol: 'tcp', host: b.v6, port: 7100 });
      expect(r.ok, r.error).toBe(true);
      expect(server.tcp.receivedPayload(r.payload)[0]?.peerAddress).toBe(a.v6);
    });

    it('publishes TCP and UDP ports on the node IPv6 addresses: from the world, from the node and by hairpin', async () => {
      const port = f.nextPort();
      const [a, b] = await Promise.all([dual([port]), dual()]);
      const server = await startEchoServers(f.scope, a.ns!, port, '::');
      for (const protocol of ['tcp', 'udp'] as const) {
        const world = await echo(f.world.ns, { protocol, host: NODE6, port });
        expect(world.ok, `${protocol} from the world: ${world.error}`).toBe(true);
        expect(server[protocol].receivedPayload(world.payload)[0]?.peerAddress, 'the world source is preserved').toBe(WORLD6);
        const node = await echo(f.ns, { protocol, host: NODE6, port });
        expect(node.ok, `${protocol} from the node: ${node.error}`).toBe(true);
        const hairpin = await echo(b.ns!, { protocol, host: NODE6, port });
        expect(hairpin.ok, `${protocol} hairpin: ${hairpin.error}`).toBe(true);
        // And over IPv4 too: ports are published in every family the instance has.
        const v4 = await echo(f.world.ns, { protocol, host: f.node.address, port });
        expect(v4.ok, `${protocol} over IPv4: ${v4.error}`).toBe(true);
      }
    });

    it('masquerades IPv6 egress to the world, not traffic inside the cluster subnets', async () => {
      const a = await dual();
      const server = await startEchoServers(f.scope, f.world.ns, 7200, '::');
      const r = await echo(a.ns!, { protocol: 'tcp', host: WORLD6, port: 7200 });
      expect(r.ok, r.error).toBe(true);
      expect(server.tcp.receivedPayload(r.payload)[0]?.peerAddress).toBe(NODE6);
    });

    it('drops a spoofed IPv6 source, a neighbour advert for another instance and a router advert', async () => {
      const [a, b, c] = await Promise.all([dual(), dual(), dual()]);
      // Spoofed source: another address of the subnet put on a's interface by the instance itself.
      await ipBatch(a.ns!, ['addr add fd19:0:0:1::ee/64 dev eth0 nodad']);
      expect((await ping(a.ns!, DUAL_GATEWAY6, { source: a.v6 })).ok).toBe(true);
      const spoofed = await ping(a.ns!, DUAL_GATEWAY6, { source: 'fd19:0:0:1::ee' });
      expect(spoofed.ok, spoofed.output).toBe(false);

      // The forged messages work where nothing filters them (a plain veth pair).
      const plain = await plainPair(f.scope);
      expect((await ping(plain.y, 'fd19:ff::a')).ok).toBe(true);
      // Forging while a receiver's link-local address is still tentative would prove nothing (it is not taken).
      await addressesSettled(plain.x, plain.y, a.ns!, b.ns!, c.ns!, f.ns);
      await forge(plain.x, ['na', 'eth0', 'fd19:ff::a', '02:00:00:00:00:99']);
      await settle();
      expect(await neighbourMac(plain.y, 'fd19:ff::a', 'eth0')).toBe('02:00:00:00:00:99');
      await forge(plain.x, ['ra', 'eth0', linkLocalForMac(plain.xMac), 'fd19:ff:0:1::']);
      await settle();
      expect((await raRoutes(plain.y)).length, 'the control namespace took the router advert').toBeGreaterThan(0);

      // A neighbour advert from a claiming b's address at a's MAC: the node keeps b's MAC.
      expect((await ping(f.ns, b.v6)).ok).toBe(true);
      const bMac = b.response.macAddress!;
      expect(await neighbourMac(f.ns, b.v6, 'nodenet0')).toBe(bMac);
      await forge(a.ns!, ['na', 'eth0', b.v6, a.response.macAddress!]);
      await settle();
      expect(await neighbourMac(f.ns, b.v6, 'nodenet0')).toBe(bMac);
      // An advert for its own address passes (the node then still reaches a).
      await forge(a.ns!, ['na', 'eth0', a.v6, a.response.macAddress!]);
      expect((await ping(f.ns, a.v6)).ok).toBe(true);

      // A router advert from a (from its own link-local address): c takes no route or address from it.
      await forge(a.ns!, ['ra', 'eth0', linkLocalForMac(a.response.macAddress!), 'fd19:0:0:1::']);
      await settle();
      expect(await raRoutes(c.ns!)).toEqual([]);
      expect(await ipv6Addresses(c.ns!)).toEqual([`${c.v6}/64`]);
    });

    it('lets a freed IPv6 address be used again at once: no neighbour or connection-tracking entry of it is left', async () => {
      const a = await dual();
      expect((await ping(f.ns, a.v6)).ok).toBe(true);
      expect((await conntrack6(f.ns, a.v6)).length, 'conntrack saw the ping').toBeGreaterThan(0);
      await f.api.deleteInterface({ interfaceName: a.handle });
      expect(await conntrack6(f.ns, a.v6)).toEqual([]);
      expect(await neighbourMac(f.ns, a.v6, 'nodenet0')).toBeUndefined();
      const ns = await f.topology.createInstanceNamespace();
      const again = await f.api.createInterface({ ipAddress: a.address, ipv6Address: a.v6, netns: ns });
      expect(again.interfaceName).not.toBe(a.handle);
      const p = await ping(ns, DUAL_GATEWAY6);
      expect(p.ok, p.output).toBe(true);
      expect((await ping(f.ns, a.v6)).ok).toBe(true);
    });

    it('keeps the IPv6 state across a restart: nothing to repair, ports still published', async () => {
      const port = f.nextPort();
      const a = await dual([port]);
      await startEchoServers(f.scope, a.ns!, port, '::');
      const before = await f.ownedState();
      await f.restartDaemon('stop');
      expect(await f.ownedState()).toEqual(before);
      const report = (await f.inspect()).lastReconcile!;
      expect(report.repairs).toEqual([]);
      expect(report.errors).toEqual([]);
      expect((await echo(f.world.ns, { protocol: 'tcp', host: NODE6, port })).ok).toBe(true);
      expect((await f.inspect()).interfaces.find((i) => i.interfaceName === a.handle)?.ipv6Address).toBe(a.v6);
    });

    // The ovs backend's anti-spoofing is OpenFlow: reconciled like the rest of the bridge (iproute2's is the bridge table, below).
    if (backend === 'ovs')
      it("puts an instance's IPv6 flows back when they were deleted behind nodenet's back", async () => {
        const a = await dual();
        const ovs = privateOvsOf(f.ns)!;
        const cookie = `0x6e6e0100${a.handle.slice('nni-'.length)}`;
        const ipv6FlowsOf = async () =>
          (await ovs.flows('nodenet0')).filter((l) => l.includes(`cookie=${cookie}`) && /\b(ipv6|icmp6|udp6)\b/.test(l));
        const before = await ipv6FlowsOf();
        // Its own and its link-local source, the neighbour-advert targets, the RA / redirect / DHCPv6 drops.
        expect(before.some((l) => l.includes(`ipv6_src=${a.v6}`))).toBe(true);
        expect(before.some((l) => l.includes(`nd_target=${a.v6}`))).toBe(true);
        expect(before.some((l) => l.includes(`ipv6_src=${linkLocalForMac(a.response.macAddress!)}`))).toBe(true);
        // Deleted while the daemon is down: a running daemon's flow follower would put them back within a
        // second, before the control below could show that a sends no IPv6 without them.
        await f.restartDaemon('stop', async () => {
          await ovs.ofctl('del-flows', 'nodenet0', [`cookie=${cookie}/-1,ipv6`]);
          expect(await ipv6FlowsOf()).toEqual([]);
          expect((await ping(a.ns!, DUAL_GATEWAY6, { timeoutSec: 1 })).ok, 'without its flows a sends no IPv6').toBe(false);
        });
        // The pass at start puts them back.
        expect((await ipv6FlowsOf()).sort()).toEqual(before.sort());
        const p = await ping(a.ns!, DUAL_GATEWAY6);
        expect(p.ok, p.output).toBe(true);
      });

    it('puts deleted IPv6 elements back (drift repair)', async () => {
      const port = f.nextPort();
      const a = await dual([port]);
      await startEchoServers(f.scope, a.ns!, port, '::');
      await nsExec(f.ns, 'nft', ['flush', 'map', 'ip6', 'nodenet', 'published_ports']);
      await nsExec(f.ns, 'nft', ['flush', 'set', 'bridge', 'nodenet', 'allowed_sources6']);
      // Repaired by the change watcher (nft changes are notified) or, at the latest, by the pass at start.
      await f.restartDaemon('stop');
      const map = (await nsExec(f.ns, 'nft', ['list', 'map', 'ip6', 'nodenet', 'published_ports'])).stdout;
      expect(map).toContain(`tcp . ${port} : ${a.v6} . ${port}`);
      const sources = (await nsExec(f.ns, 'nft', ['list', 'set', 'bridge', 'nodenet', 'allowed_sources6'])).stdout;
      expect(sources).toContain(a.v6);
      expect((await echo(f.world.ns, { protocol: 'tcp', host: NODE6, port })).ok).toBe(true);
      expect((await ping(a.ns!, DUAL_GATEWAY6)).ok).toBe(true);
    });
  });

  describe('an IPv6-only node', () => {
    let f: NodeFixture;
    let next = 0x10;
    const only6 = async (ports: number[] = []) => {
      next += 1;
      const address = `fd19:0:0:2::${next.toString(16)}`;
      const ns = await f.topology.createInstanceNamespace();
      const response = await f.api.createInterface({ ipAddress: address, netns: ns, ports });
      return { handle: response.interfaceName, address, ns, response };
    };

    beforeAll(async () => {
      f = await NodeFixture.start({ backend, families: 'ipv6' });
    });
    afterAll(() => f?.close());

    it('carries IPv6 in the seed fields: instances reach each other and published ports, and IPv4 is refused', async () => {
      const port = f.nextPort();
      const [a, b] = await Promise.all([only6([port]), only6()]);
      expect(a.response).toMatchObject({ gateway: ONLY_GATEWAY6, prefixLength: 64 });
      expect(a.response.ipv6Gateway).toBeUndefined();
      expect(await ipv6Addresses(a.ns)).toEqual([`${a.address}/64`]);
      expect((await ping(b.ns, a.address)).ok).toBe(true);
      const server = await startEchoServers(f.scope, a.ns, port, '::');
      for (const protocol of ['tcp', 'udp'] as const) {
        const r = await echo(f.world.ns, { protocol, host: NODE6, port });
        expect(r.ok, `${protocol}: ${r.error}`).toBe(true);
        expect(server[protocol].receivedPayload(r.payload)[0]?.peerAddress).toBe(WORLD6);
        expect((await echo(b.ns, { protocol, host: NODE6, port })).ok, `${protocol} hairpin`).toBe(true);
      }
      const err = await rpcError(f.api.createInterface({ ipAddress: '198.19.1.50' }));
      expect(err.codeName).toBe('INVALID_ARGUMENT');
      expect(err.details).toMatch(/IPv6-only/);
      // No IPv4 table on an IPv6-only node; the ip6 and bridge tables are there.
      const tables = (await nsExec(f.ns, 'nft', ['list', 'tables'])).stdout;
      expect(tables).toContain('table ip6 nodenet');
      expect(tables).not.toContain('table ip nodenet');
    });
  });
});
