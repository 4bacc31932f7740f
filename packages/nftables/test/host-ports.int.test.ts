/**
 * Ports on one host address on the real kernel (fixture.ts): tables made by the previous version (no
 * published_host_ports, one DNAT rule per chain) are converged without losing their elements, then a port
 * on one host address is published next to a port on every address, listed back with its address, and
 * removed (also by removeElements, as an orphan).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ipv4Address, PublishedPort } from '@nodenet/core';
import { NftPacketFilter, ensureBaseScript } from '../src/index.js';
import {
  NODE_UNDERLAY,
  WORLD,
  both,
  createFixture,
  ipBatch,
  mapping,
  nft,
  request,
  rulesFor,
  startServer,
  type EchoServer,
  type Fixture,
} from './fixture.js';

/** A second address of the node on its underlay link. */
const SECOND = '198.18.0.201';

/** What the previous version installed: the same script without the host map and its rules. */
function previousVersionScript(script: string): string {
  return script
    .split('\n')
    .filter((l) => !l.includes('published_host_ports'))
    .join('\n');
}

describe('NftPacketFilter: ports on one host address', () => {
  let fx: Fixture;
  let filter: NftPacketFilter;
  const servers: EchoServer[] = [];

  beforeAll(async () => {
    fx = await createFixture({ bridgeNfCallIptables: 0, label: 'hp' });
    await ipBatch(fx.node, [`address add ${SECOND}/24 dev ul0`]);
    filter = new NftPacketFilter({ netns: fx.node });
    for (const [i, port] of [
      [0, 80],
      [1, 81],
    ] as const)
      servers.push(await startServer(fx.instances[i]!.ns, 'tcp', port, `i${i}-tcp${port}`));
  });
  afterAll(async () => {
    filter?.close();
    await Promise.allSettled(servers.map((s) => s.stop()));
    await fx?.destroy();
  });

  it("converges the previous version's tables: the map and its rules added, published_ports' elements kept", async () => {
    await nft(fx.node, previousVersionScript(ensureBaseScript(fx.base)));
    const a = fx.instances[0]!;
    await nft(
      fx.node,
      [
        `add element ip nodenet published_ports { tcp . 8080 : ${a.address} . 80 }`,
        `add element bridge nodenet allowed_sources { "${a.hostIfname}" . ${a.address} }`,
      ].join('\n') + '\n',
    );
    expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 8080, 'old')).toBe(`i0-tcp80 peer=${WORLD} got=old`);
    const repairs = await filter.ensureBase(fx.base);
    expect(repairs).toEqual(
      expect.arrayContaining([
        'map ip nodenet published_host_ports was missing',
        'chain ip nodenet prerouting had 1 rules, expected 2',
        'chain ip nodenet output had 1 rules, expected 2',
      ]),
    );
    expect(await filter.ensureBase(fx.base)).toEqual([]);
    expect((await filter.listElements()).ports).toEqual([{ protocol: 'tcp', hostPort: 8080, address: a.address, instancePort: 80 }]);
    expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 8080, 'kept')).toBe(`i0-tcp80 peer=${WORLD} got=kept`);
    await filter.removeInstance(rulesFor(a, [mapping('tcp', 8080, 80)]));
  });

  it('publishes one port on two host addresses to two instances, lists them with their address, removes them', async () => {
    const [a, b] = [fx.instances[0]!, fx.instances[1]!];
    const onNode = { ...mapping('tcp', 9000, 80), hostAddress: NODE_UNDERLAY as Ipv4Address };
    const onSecond = { ...mapping('tcp', 9000, 81), hostAddress: SECOND as Ipv4Address };
    await filter.addInstance(rulesFor(a, [onNode]));
    await filter.addInstance(rulesFor(b, [onSecond, ...both(9001, 81)]));
    expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9000, 'n')).toBe(`i0-tcp80 peer=${WORLD} got=n`);
    expect(await request(fx.world, 'tcp', SECOND, 9000, 's')).toBe(`i1-tcp81 peer=${WORLD} got=s`);
    // Every-address ports answer on both addresses.
    expect(await request(fx.world, 'tcp', SECOND, 9001, 'e')).toBe(`i1-tcp81 peer=${WORLD} got=e`);
    const listed = (await filter.listElements()).ports;
    const port = (p: PublishedPort) => JSON.stringify(p);
    expect(listed.map(port).sort()).toEqual(
      [
        { protocol: 'tcp', hostPort: 9000, address: a.address, instancePort: 80, hostAddress: NODE_UNDERLAY },
        { protocol: 'tcp', hostPort: 9000, address: b.address, instancePort: 81, hostAddress: SECOND },
        { protocol: 'tcp', hostPort: 9001, address: b.address, instancePort: 81 },
        { protocol: 'udp', hostPort: 9001, address: b.address, instancePort: 81 },
      ]
        .map((p) => port(p as PublishedPort))
        .sort(),
    );

    await filter.removeInstance(rulesFor(a, [onNode]));
    expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9000, 'gone')).toBeNull();
    expect(await request(fx.world, 'tcp', SECOND, 9000, 'still')).toBe(`i1-tcp81 peer=${WORLD} got=still`);
    // b's host port removed as an orphan element (what reconcile does), twice: absent elements are fine.
    const orphan = listed.filter((p) => p.hostAddress === SECOND);
    await filter.removeElements({ ports: orphan, sources: [] });
    await filter.removeElements({ ports: orphan, sources: [] });
    expect(await request(fx.world, 'tcp', SECOND, 9000, 'orphan')).toBeNull();
    expect((await filter.listElements()).ports.filter((p) => p.hostAddress !== undefined)).toEqual([]);
    await filter.removeInstance(rulesFor(b, both(9001, 81)));
  });
});
