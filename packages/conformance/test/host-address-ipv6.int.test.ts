// Conformance: ports published on one IPv6 host address (PortMapping.host_address, the CNI portmap plugin's
// hostIP), on both backends, on a dual-stack node. The node holds a second IPv6 underlay address, so that
// "reached through that address and not through another one of the node" can be told apart; every check goes
// through real traffic. A port on one address goes to the instance's address of that family only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Protocol } from '@nodenet/api';
import { echo, ipBatch, nsExec, rpcError, startEchoServers, type EchoResult } from '@nodenet/testkit';
import { BACKENDS, DUAL_GATEWAY6, NODE6, NODE_GATEWAY, NodeFixture, type Instance } from '../src/index.js';
import { consistencyProblems } from '../src/durability.js';

/** A second IPv6 address of the node on its underlay link (the world reaches it through the fabric). */
const SECOND6 = '2001:db8:18::201';

function reached(r: EchoResult, what: string): void {
  expect(r.ok, `${what}: ${r.error ?? `reply ${JSON.stringify(r.reply)}`}`).toBe(true);
}

function notReached(r: EchoResult, what: string): void {
  expect(r.ok, `${what} was answered`).toBe(false);
}

describe.each(BACKENDS)('ports published on one IPv6 host address (%s backend)', (backend) => {
  let f: NodeFixture;
  let next = 0x20;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend, families: 'dual' });
    await ipBatch(f.ns, [`addr add ${SECOND6}/64 dev ${f.node.underlayIfname} nodad`]);
  });
  afterAll(() => f?.close());

  /** A dual-stack instance placed by the daemon, publishing `port` (TCP and UDP) on `hostAddress`, with echo servers on it. */
  async function publishedOn(hostAddress: string, port = f.nextPort()) {
    next += 1;
    const address = `198.19.1.${next}`;
    const ipv6Address = `fd19:0:0:1::${next.toString(16)}`;
    const ns = await f.topology.createInstanceNamespace();
    const response = await f.api.createInterface({
      ipAddress: address,
      ipv6Address,
      netns: ns,
      portMappings: [{ hostPort: port, instancePort: port, protocol: Protocol.TCP_AND_UDP, hostAddress }],
    });
    const instance: Instance = { handle: response.interfaceName, address, ipv6Address, ns, ifname: 'eth0', response };
    const servers = await startEchoServers(f.scope, ns, port, '::');
    return { instance, port, ...servers };
  }

  const probe = (from: string, host: string, port: number, protocol: 'tcp' | 'udp' = 'tcp', timeoutMs?: number) =>
    echo(from, { protocol, host, port, ...(timeoutMs ? { timeoutMs } : {}) });

  it('is reached through that IPv6 address only: from the world, from the node, from instances (hairpin, itself too)', async () => {
    const p = await publishedOn(SECOND6);
    const other = await publishedOn(NODE6); // another dual-stack instance, hairpin source
    for (const protocol of ['tcp', 'udp'] as const) {
      const server = protocol === 'tcp' ? p.tcp : p.udp;
      const fromWorld = await probe(f.world.ns, SECOND6, p.port, protocol);
      reached(fromWorld, `${protocol} world -> [${SECOND6}]:${p.port}`);
      expect(server.receivedPayload(fromWorld.payload).length).toBeGreaterThan(0);
      reached(await probe(f.ns, SECOND6, p.port, protocol), `${protocol} node -> [${SECOND6}]:${p.port}`);
      reached(await probe(other.instance.ns!, SECOND6, p.port, protocol), `${protocol} other instance -> [${SECOND6}]:${p.port}`);
      reached(await probe(p.instance.ns!, SECOND6, p.port, protocol), `${protocol} itself -> [${SECOND6}]:${p.port}`);
    }
    // The node's other addresses do not publish it: its other IPv6 address, the IPv6 gateway, ::1, and IPv4.
    for (const [from, host] of [
      [f.world.ns, NODE6],
      [f.world.ns, f.node.address],
      [f.ns, NODE6],
      [f.ns, DUAL_GATEWAY6],
      [f.ns, '::1'],
      [f.ns, f.node.address],
      [other.instance.ns!, NODE6],
      [other.instance.ns!, NODE_GATEWAY],
    ] as const) {
      notReached(await probe(from, host, p.port, 'tcp', 1000), `tcp ${from} -> ${host}:${p.port}`);
    }
    // Its element is in the ip6 table's map, keyed by the address; the ip table holds nothing of it.
    const map6 = (await nsExec(f.ns, 'nft', ['list', 'map', 'ip6', 'nodenet', 'published_host_ports'])).stdout;
    expect(map6).toContain(`${SECOND6} . tcp . ${p.port} : ${p.instance.ipv6Address} . ${p.port}`);
    const map4 = (await nsExec(f.ns, 'nft', ['list', 'map', 'ip', 'nodenet', 'published_host_ports'])).stdout;
    expect(map4).not.toContain(`. ${p.port} :`);
    const shown = (await f.inspect()).interfaces.find((i) => i.interfaceName === p.instance.handle);
    expect(shown?.portMappings.map((m) => [m.hostPort, m.protocol, m.hostAddress])).toEqual([
      [p.port, Protocol.TCP, SECOND6],
      [p.port, Protocol.UDP, SECOND6],
    ]);
  });

  it('an IPv4 host address on a dual-stack instance publishes over IPv4 only; one port coexists on an IPv4 and an IPv6 address', async () => {
    const port = f.nextPort();
    const v4 = await publishedOn(f.node.address, port);
    const v6 = await publishedOn(SECOND6, port);
    const toV4 = await probe(f.world.ns, f.node.address, port);
    reached(toV4, `world -> ${f.node.address}:${port}`);
    expect(v4.tcp.receivedPayload(toV4.payload).length).toBeGreaterThan(0);
    const toV6 = await probe(f.world.ns, SECOND6, port);
    reached(toV6, `world -> [${SECOND6}]:${port}`);
    expect(v6.tcp.receivedPayload(toV6.payload).length).toBeGreaterThan(0);
    expect(v4.tcp.receivedPayload(toV6.payload)).toEqual([]);
    // The IPv4-bound one has no IPv6 element: NODE6 publishes nothing on this port.
    notReached(await probe(f.world.ns, NODE6, port, 'tcp', 1000), `world -> [${NODE6}]:${port}`);

    // Every address of the node is then taken for this port; the same IPv6 address too.
    const every = await rpcError(
      f.api.createInterface({ ipAddress: '198.19.1.250', ipv6Address: 'fd19:0:0:1::fa', portMappings: [{ hostPort: port }] }),
    );
    expect(every.codeName).toBe('ALREADY_EXISTS');
    const same = await rpcError(
      f.api.createInterface({
        ipAddress: '198.19.1.250',
        ipv6Address: 'fd19:0:0:1::fa',
        portMappings: [{ hostPort: port, hostAddress: SECOND6 }],
      }),
    );
    expect(same.codeName).toBe('ALREADY_EXISTS');
    expect(same.details).toContain(`port [${SECOND6}]:${port}/`);
    expect(same.details).toContain(`on ${SECOND6}`);
  });

  it(':: publishes on every address of both families; bad IPv6 host addresses and one for an instance without IPv6 are INVALID_ARGUMENT', async () => {
    const p = await publishedOn('::');
    for (const host of [NODE6, SECOND6, f.node.address]) reached(await probe(f.world.ns, host, p.port), `world -> ${host}:${p.port}`);
    const shown = (await f.inspect()).interfaces.find((i) => i.interfaceName === p.instance.handle);
    expect(shown?.portMappings.every((m) => !m.hostAddress)).toBe(true);

    const before = (await f.inspect()).interfaces.length;
    for (const [request, mentioned] of [
      [{ ipAddress: '198.19.1.251', hostAddress: SECOND6 }, 'but the instance has no IPv6 address (only 198.19.1.251)'],
      [{ ipAddress: '198.19.1.251', ipv6Address: 'fd19:0:0:1::fb', hostAddress: '::1' }, '::1 cannot publish a port'],
      [{ ipAddress: '198.19.1.251', ipv6Address: 'fd19:0:0:1::fb', hostAddress: 'fe80::1' }, 'is a link-local address'],
      [{ ipAddress: '198.19.1.251', ipv6Address: 'fd19:0:0:1::fb', hostAddress: 'ff02::1' }, 'is a multicast address'],
      [{ ipAddress: '198.19.1.251', ipv6Address: 'fd19:0:0:1::fb', hostAddress: '2001:DB8:18::201' }, `write ${SECOND6}`],
    ] as const) {
      const { hostAddress, ...addresses } = request;
      const e = await rpcError(f.api.createInterface({ ...addresses, portMappings: [{ hostPort: f.nextPort(), hostAddress }] }));
      expect(e.codeName, hostAddress).toBe('INVALID_ARGUMENT');
      expect(e.details).toContain('port_mappings[0].host_address');
      expect(e.details).toContain(mentioned);
    }
    expect((await f.inspect()).interfaces.length).toBe(before);
  });

  it("a daemon restart keeps it (the previous version's ip6 table converged, the element restored, the record format 3); DeleteInterface removes it", async () => {
    const p = await publishedOn(SECOND6);
    await f.restartDaemon('stop', async () => {
      // As the previous version left the ip6 table: no published_host_ports and one DNAT rule per chain.
      for (const chain of ['prerouting', 'output']) {
        const listed = (await nsExec(f.ns, 'nft', ['-a', 'list', 'chain', 'ip6', 'nodenet', chain])).stdout;
        const handle = /@published_host_ports .*# handle (\d+)/.exec(listed)?.[1];
        expect(handle, `${chain}: ${listed}`).toBeDefined();
        await nsExec(f.ns, 'nft', ['delete', 'rule', 'ip6', 'nodenet', chain, 'handle', handle!]);
      }
      await nsExec(f.ns, 'nft', ['delete', 'map', 'ip6', 'nodenet', 'published_host_ports']);
    });
    reached(await probe(f.world.ns, SECOND6, p.port), `after the restart: world -> [${SECOND6}]:${p.port}`);
    reached(await probe(f.ns, SECOND6, p.port, 'udp'), `after the restart: node -> [${SECOND6}]:${p.port} udp`);
    notReached(await probe(f.world.ns, NODE6, p.port, 'tcp', 1000), `after the restart: world -> [${NODE6}]:${p.port}`);
    const state = await f.daemon.readState();
    const record = JSON.parse(state[`instances/${p.instance.handle}.json`]!) as { version: number; record: { ports: unknown[] } };
    expect(record.version).toBe(3);
    expect(record.record.ports).toContainEqual({ protocol: 'tcp', hostPort: p.port, instancePort: p.port, hostAddress: SECOND6 });
    const owned = await f.ownedState();
    expect(consistencyProblems(owned)).toEqual([]);
    expect(owned.ports6).toContainEqual({
      protocol: 'tcp',
      hostPort: p.port,
      address: p.instance.ipv6Address,
      instancePort: p.port,
      hostAddress: SECOND6,
    });

    await f.api.deleteInterface({ interfaceName: p.instance.handle });
    notReached(await probe(f.world.ns, SECOND6, p.port, 'tcp', 1000), `after the delete: world -> [${SECOND6}]:${p.port}`);
    const map = (await nsExec(f.ns, 'nft', ['list', 'map', 'ip6', 'nodenet', 'published_host_ports'])).stdout;
    expect(map).not.toContain(`${SECOND6} . tcp . ${p.port}`);
  });
});
