// Conformance: ports published on one host address (PortMapping.host_address, the CNI portmap plugin's
// hostIP), on both backends. The node holds a second underlay address, so that "reached through that address
// and not through another one of the node" can be told apart; every check goes through real traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Protocol } from '@nodenet/api';
import { echo, ipBatch, nsExec, rpcError, startEchoServers, type EchoResult } from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NodeFixture, type Instance } from '../src/index.js';
import { consistencyProblems } from '../src/durability.js';

/** A second address of the node on its underlay link (the world reaches it through the fabric). */
const SECOND = '198.18.0.201';

function reached(r: EchoResult, what: string): void {
  expect(r.ok, `${what}: ${r.error ?? `reply ${JSON.stringify(r.reply)}`}`).toBe(true);
}

function notReached(r: EchoResult, what: string): void {
  expect(r.ok, `${what} was answered`).toBe(false);
}

describe.each(BACKENDS)('ports published on one host address (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend });
    await ipBatch(f.ns, [`addr add ${SECOND}/24 dev ${f.node.underlayIfname}`]);
  });
  afterAll(() => f?.close());

  /** An instance publishing `port` (TCP and UDP) on `hostAddress` only, with echo servers on it. */
  async function publishedOn(hostAddress: string, port = f.nextPort()) {
    const instance = await f.addInstance(undefined, {
      portMappings: [{ hostPort: port, instancePort: port, protocol: Protocol.TCP_AND_UDP, hostAddress }],
    });
    const servers = await startEchoServers(f.scope, instance.ns!, port);
    return { instance, port, ...servers };
  }

  const probe = (from: string, host: string, port: number, protocol: 'tcp' | 'udp' = 'tcp', timeoutMs?: number) =>
    echo(from, { protocol, host, port, ...(timeoutMs ? { timeoutMs } : {}) });

  it('is reached through that address only: from the world, from the node, from instances (hairpin, itself too)', async () => {
    const p = await publishedOn(f.node.address);
    const other: Instance = await f.addInstance();
    for (const protocol of ['tcp', 'udp'] as const) {
      const server = protocol === 'tcp' ? p.tcp : p.udp;
      const fromWorld = await probe(f.world.ns, f.node.address, p.port, protocol);
      reached(fromWorld, `${protocol} world -> ${f.node.address}:${p.port}`);
      expect(server.receivedPayload(fromWorld.payload).length).toBeGreaterThan(0);
      reached(await probe(f.ns, f.node.address, p.port, protocol), `${protocol} node -> ${f.node.address}:${p.port}`);
      reached(await probe(other.ns!, f.node.address, p.port, protocol), `${protocol} other instance -> ${f.node.address}:${p.port}`);
      reached(await probe(p.instance.ns!, f.node.address, p.port, protocol), `${protocol} itself -> ${f.node.address}:${p.port}`);
    }
    // The node's other addresses do not publish it: the second underlay address, the gateway, loopback.
    for (const [from, host] of [
      [f.world.ns, SECOND],
      [f.ns, SECOND],
      [f.ns, NODE_GATEWAY],
      [f.ns, '127.0.0.1'],
      [other.ns!, SECOND],
      [other.ns!, NODE_GATEWAY],
    ] as const) {
      notReached(await probe(from, host, p.port, 'tcp', 1000), `tcp ${from} -> ${host}:${p.port}`);
    }
  });

  it('two instances publish one port on two addresses, each reached through its own; every address is then ALREADY_EXISTS', async () => {
    const port = f.nextPort();
    const a = await publishedOn(f.node.address, port);
    const b = await publishedOn(SECOND, port);
    const toA = await probe(f.world.ns, f.node.address, port);
    const toB = await probe(f.world.ns, SECOND, port);
    reached(toA, `world -> ${f.node.address}:${port}`);
    reached(toB, `world -> ${SECOND}:${port}`);
    expect(a.tcp.receivedPayload(toA.payload).length).toBeGreaterThan(0);
    expect(b.tcp.receivedPayload(toB.payload).length).toBeGreaterThan(0);
    expect(a.tcp.receivedPayload(toB.payload)).toEqual([]);

    const before = (await f.inspect()).interfaces.length;
    const every = await rpcError(f.api.createInterface({ ipAddress: f.nextAddress(), portMappings: [{ hostPort: port }] }));
    expect(every.codeName).toBe('ALREADY_EXISTS');
    expect(every.details).toMatch(
      new RegExp(`port ${port}/(tcp|udp) is already published by interface nni-\\w+ on (${f.node.address}|${SECOND})`),
    );
    const same = await rpcError(
      f.api.createInterface({ ipAddress: f.nextAddress(), portMappings: [{ hostPort: port, hostAddress: SECOND }] }),
    );
    expect(same.codeName).toBe('ALREADY_EXISTS');
    expect(same.details).toContain(`on ${SECOND}`);
    expect((await f.inspect()).interfaces.length).toBe(before);

    const shown = (await f.inspect()).interfaces.find((i) => i.interfaceName === b.instance.handle);
    expect(shown?.portMappings.map((m) => [m.hostPort, m.protocol, m.hostAddress])).toEqual([
      [port, Protocol.TCP, SECOND],
      [port, Protocol.UDP, SECOND],
    ]);
  });

  it('a port on every address makes the same port on one address ALREADY_EXISTS; IPv6 (no IPv6 here) and non-unicast host addresses are INVALID_ARGUMENT', async () => {
    const port = f.nextPort();
    await f.addInstance(undefined, { ports: [port] });
    const one = await rpcError(
      f.api.createInterface({ ipAddress: f.nextAddress(), portMappings: [{ hostPort: port, hostAddress: f.node.address }] }),
    );
    expect(one.codeName).toBe('ALREADY_EXISTS');
    expect(one.details).toContain('on every address of the node');
    for (const [hostAddress, mentioned] of [
      ['::1', '::1 cannot publish a port'],
      // This node's CNI is IPv4-only: the instance has no IPv6 address to publish to (IPv6: host-address-ipv6).
      ['2001:db8:18::1', 'is an IPv6 address but the instance has no IPv6 address (only 198.19.1.'],
      ['224.0.0.1', 'not a unicast address'],
      ['198.18.0.01', 'not a canonical IPv4 address'],
    ] as const) {
      const e = await rpcError(
        f.api.createInterface({ ipAddress: f.nextAddress(), portMappings: [{ hostPort: f.nextPort(), hostAddress }] }),
      );
      expect(e.codeName, hostAddress).toBe('INVALID_ARGUMENT');
      expect(e.details).toContain('port_mappings[0].host_address');
      expect(e.details).toContain(mentioned);
    }
  });

  it('127.0.0.1: the node itself reaches it, nobody reaches it through the node address', async () => {
    const p = await publishedOn('127.0.0.1');
    for (const protocol of ['tcp', 'udp'] as const) {
      reached(await probe(f.ns, '127.0.0.1', p.port, protocol), `${protocol} node -> 127.0.0.1:${p.port}`);
    }
    notReached(await probe(f.ns, f.node.address, p.port, 'tcp', 1000), `node -> ${f.node.address}:${p.port}`);
    notReached(await probe(f.world.ns, f.node.address, p.port, 'tcp', 1000), `world -> ${f.node.address}:${p.port}`);
  });

  it('a daemon restart keeps it (its lost map element restored, its record format 2); DeleteInterface removes it', async () => {
    const p = await publishedOn(SECOND);
    await f.restartDaemon('stop', async () => {
      // Lost while the daemon was down: the restore puts it back from the record.
      await nsExec(f.ns, 'nft', ['flush', 'map', 'ip', 'nodenet', 'published_host_ports']);
    });
    reached(await probe(f.world.ns, SECOND, p.port), `after the restart: world -> ${SECOND}:${p.port}`);
    notReached(await probe(f.world.ns, f.node.address, p.port, 'tcp', 1000), `after the restart: world -> ${f.node.address}:${p.port}`);
    const state = await f.daemon.readState();
    const record = JSON.parse(state[`instances/${p.instance.handle}.json`]!) as { version: number; record: { ports: unknown[] } };
    expect(record.version).toBe(2);
    expect(record.record.ports).toContainEqual({ protocol: 'tcp', hostPort: p.port, instancePort: p.port, hostAddress: SECOND });
    // Records, links and elements add up, the element in published_host_ports.
    const owned = await f.ownedState();
    expect(consistencyProblems(owned)).toEqual([]);
    expect(owned.ports).toContainEqual({
      protocol: 'tcp',
      hostPort: p.port,
      address: p.instance.address,
      instancePort: p.port,
      hostAddress: SECOND,
    });

    await f.api.deleteInterface({ interfaceName: p.instance.handle });
    notReached(await probe(f.world.ns, SECOND, p.port, 'tcp', 1000), `after the delete: world -> ${SECOND}:${p.port}`);
    const map = (await nsExec(f.ns, 'nft', ['list', 'map', 'ip', 'nodenet', 'published_host_ports'])).stdout;
    expect(map).not.toContain(`${SECOND} . tcp . ${p.port}`);
  });
});
