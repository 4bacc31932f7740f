/**
 * NftPacketFilter on the real kernel, in a hand-built node namespace (see fixture.ts) with
 * bridge-nf-call-iptables=0. bridge-netfilter.int.test.ts repeats hairpin and anti-spoofing with 0 and 1.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InternalError, UnavailableError, type IfName, type Ipv4Address } from '@nodenet/core';
import { CommandError } from '@nodenet/sys';
import { NftPacketFilter } from '../src/index.js';
import {
  GATEWAY,
  NODE_UNDERLAY,
  PEER_SUBNET_ADDRESS,
  WORLD,
  both,
  conntrackEntries,
  createFixture,
  deleteNamespaces,
  filterBase,
  inNs,
  mapping,
  newNamespace,
  request,
  rulesFor,
  snapshot,
  startServer,
  tableExists,
  type EchoServer,
  type Fixture,
} from './fixture.js';

describe('NftPacketFilter in a node namespace (bridge-nf-call-iptables=0)', () => {
  let fx: Fixture;
  let filter: NftPacketFilter;
  const servers: EchoServer[] = [];

  beforeAll(async () => {
    fx = await createFixture({ bridgeNfCallIptables: 0, label: 'pf' });
    filter = new NftPacketFilter({ netns: fx.node });
    await filter.ensureBase(fx.base);
    const [a, b] = fx.instances;
    // Instance a publishes 8080 -> 80 (TCP and UDP) and 5353/udp -> 5353; b publishes nothing.
    await filter.addInstance(rulesFor(a!, [...both(8080, 80), mapping('udp', 5353)]));
    await filter.addInstance(rulesFor(b!, []));
    servers.push(
      await startServer(a!.ns, 'tcp', 80, 'a-tcp80'),
      await startServer(a!.ns, 'udp', 80, 'a-udp80'),
      await startServer(a!.ns, 'udp', 5353, 'a-udp5353'),
      await startServer(fx.world, 'tcp', 8080, 'world-tcp8080'),
      await startServer(fx.world, 'udp', 8080, 'world-udp8080'),
    );
  });

  afterAll(async () => {
    filter?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await fx?.destroy();
  });

  describe('published ports', () => {
    it('TCP and UDP from another host on the underlay reach the instance, which sees the client', async () => {
      expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 8080, 'w1')).toBe(`a-tcp80 peer=${WORLD} got=w1`);
      expect(await request(fx.world, 'udp', NODE_UNDERLAY, 8080, 'w2')).toBe(`a-udp80 peer=${WORLD} got=w2`);
      expect(await request(fx.world, 'udp', NODE_UNDERLAY, 5353, 'w3')).toBe(`a-udp5353 peer=${WORLD} got=w3`);
    });

    it('TCP and UDP from the node itself, to its underlay address and its gateway address', async () => {
      expect(await request(fx.node, 'tcp', NODE_UNDERLAY, 8080, 'n1')).toBe(`a-tcp80 peer=${NODE_UNDERLAY} got=n1`);
      expect(await request(fx.node, 'udp', NODE_UNDERLAY, 8080, 'n2')).toBe(`a-udp80 peer=${NODE_UNDERLAY} got=n2`);
      expect(await request(fx.node, 'tcp', GATEWAY, 8080, 'n3')).toBe(`a-tcp80 peer=${GATEWAY} got=n3`);
    });

    it('TCP and UDP from the node to 127.0.0.1 (route_localnet=1 on the CNI; masqueraded to the gateway)', async () => {
      expect(await request(fx.node, 'tcp', '127.0.0.1', 8080, 'l1')).toBe(`a-tcp80 peer=${GATEWAY} got=l1`);
      expect(await request(fx.node, 'udp', '127.0.0.1', 8080, 'l2')).toBe(`a-udp80 peer=${GATEWAY} got=l2`);
    });

    it('TCP and UDP from another instance (hairpin), masqueraded to the gateway', async () => {
      const b = fx.instances[1]!;
      for (const address of [NODE_UNDERLAY, GATEWAY]) {
        expect(await request(b.ns, 'tcp', address, 8080, 'h1')).toBe(`a-tcp80 peer=${GATEWAY} got=h1`);
        expect(await request(b.ns, 'udp', address, 8080, 'h2')).toBe(`a-udp80 peer=${GATEWAY} got=h2`);
      }
    });

    it('from the publishing instance itself (via the gateway)', async () => {
      const a = fx.instances[0]!;
      expect(await request(a.ns, 'tcp', GATEWAY, 8080, 's1')).toBe(`a-tcp80 peer=${GATEWAY} got=s1`);
    });

    it('traffic to other destinations on the same port is not rewritten', async () => {
      const [a, b] = fx.instances;
      // The world's own 8080 answers, from an instance (egress) and from the node.
      expect(await request(b!.ns, 'tcp', WORLD, 8080, 'o1')).toBe(`world-tcp8080 peer=${NODE_UNDERLAY} got=o1`);
      expect(await request(b!.ns, 'udp', WORLD, 8080, 'o2')).toBe(`world-udp8080 peer=${NODE_UNDERLAY} got=o2`);
      expect(await request(fx.node, 'tcp', WORLD, 8080, 'o3')).toBe(`world-tcp8080 peer=${NODE_UNDERLAY} got=o3`);
      // The instance's own address, port 80, directly: no DNAT, own source kept.
      expect(await request(b!.ns, 'tcp', a!.address, 80, 'o4')).toBe(`a-tcp80 peer=${b!.address} got=o4`);
      // A port nobody publishes is not forwarded.
      expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 8081, 'o5')).toBeNull();
      // 5353 is published for UDP only.
      expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 5353, 'o6')).toBeNull();
    });
  });

  describe('masquerade', () => {
    it("egress to a host outside the cluster is masqueraded to the node's underlay address", async () => {
      const b = fx.instances[1]!;
      const server = await startServer(fx.world, 'tcp', 7000, 'world-7000');
      try {
        expect(await request(b.ns, 'tcp', WORLD, 7000, 'e1')).toBe(`world-7000 peer=${NODE_UNDERLAY} got=e1`);
        expect(server.seen).toEqual([`world-7000 peer=${NODE_UNDERLAY} got=e1`]);
      } finally {
        await server.stop();
      }
    });

    it("traffic to another node's subnet (cluster_subnets) keeps the instance's address", async () => {
      const b = fx.instances[1]!;
      const server = await startServer(fx.world, 'udp', 7001, 'peer-7001', PEER_SUBNET_ADDRESS);
      try {
        expect(await request(b.ns, 'udp', PEER_SUBNET_ADDRESS, 7001, 'c1')).toBe(`peer-7001 peer=${b.address} got=c1`);
      } finally {
        await server.stop();
      }
    });
  });

  describe('removeInstance', () => {
    it('removes the ports (no longer reachable) and the admission; a second removal is fine', async () => {
      const c = fx.instances[2]!;
      const rules = rulesFor(c, both(9000));
      const server = await startServer(c.ns, 'tcp', 9000, 'c-9000');
      try {
        await filter.addInstance(rules);
        expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9000, 'r1')).toBe(`c-9000 peer=${WORLD} got=r1`);
        await filter.removeInstance(rules);
        expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9000, 'r2')).toBeNull();
        // Its port admits nothing any more (default deny): even its real address is dropped now.
        expect(await request(c.ns, 'tcp', fx.instances[0]!.address, 80, 'r3')).toBeNull();
        const after = await snapshot(fx.node);
        expect(after.ports.filter((p) => p.address === c.address)).toEqual([]);
        expect(after.sources.filter((s) => s.address === c.address)).toEqual([]);
        await filter.removeInstance(rules);
      } finally {
        await server.stop();
      }
    });

    it('of an instance never added changes nothing', async () => {
      const before = await snapshot(fx.node);
      await filter.removeInstance({ hostIfname: 'nnh-0000beef' as IfName, ipv4: '198.19.1.200' as Ipv4Address, ports: both(9999) });
      expect(await snapshot(fx.node)).toEqual(before);
    });

    it('leaves a host port that is now mapped to another address alone', async () => {
      const c = fx.instances[2]!;
      const stale = { hostIfname: 'nnh-0000dead' as IfName, ipv4: '198.19.1.201' as Ipv4Address, ports: both(9100) };
      await filter.addInstance(rulesFor(c, both(9100)));
      // stale claims 9100 too, but the map says 9100 belongs to c: removing stale must not touch it.
      await filter.removeInstance(stale);
      const listed = await snapshot(fx.node);
      expect(listed.ports.filter((p) => p.hostPort === 9100).map((p) => p.address)).toEqual([c.address, c.address]);
      await filter.removeInstance(rulesFor(c, both(9100)));
      expect((await snapshot(fx.node)).ports.filter((p) => p.hostPort === 9100)).toEqual([]);
    });
  });

  describe('addInstance', () => {
    it('is idempotent, and replaces a host port left mapped to another address', async () => {
      const c = fx.instances[2]!;
      const leftover = { hostIfname: 'nnh-0000dead' as IfName, ipv4: '198.19.1.201' as Ipv4Address, ports: [mapping('tcp', 9200)] };
      await filter.addInstance(leftover);
      await filter.addInstance(rulesFor(c, both(9200)));
      await filter.addInstance(rulesFor(c, both(9200)));
      const listed = await snapshot(fx.node);
      expect(listed.ports.filter((p) => p.hostPort === 9200)).toEqual([
        { protocol: 'tcp', hostPort: 9200, address: c.address, instancePort: 9200 },
        { protocol: 'udp', hostPort: 9200, address: c.address, instancePort: 9200 },
      ]);
      await filter.removeInstance(rulesFor(c, both(9200)));
      await filter.removeInstance(leftover);
    });
  });

  describe('ensureBase', () => {
    it('again (with another cluster subnet) keeps every element and the traffic', async () => {
      const before = await snapshot(fx.node);
      expect(before.ports.length).toBeGreaterThan(0);
      expect(await filter.ensureBase(filterBase(['198.19.3.0/24']))).toEqual([
        'cluster_subnets differed: held 198.19.1.0/24, 198.19.2.0/24, expected 198.19.1.0/24, 198.19.2.0/24, 198.19.3.0/24',
      ]);
      expect(await filter.ensureBase(filterBase(['198.19.3.0/24']))).toEqual([]);
      const after = await snapshot(fx.node);
      expect(after.ports).toEqual(before.ports);
      expect(after.sources).toEqual(before.sources);
      expect(after.rules).toBe(before.rules);
      expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 8080, 'eb')).toBe(`a-tcp80 peer=${WORLD} got=eb`);
      const subnets = await inNs(fx.node, ['nft', 'list', 'set', 'ip', 'nodenet', 'cluster_subnets']);
      expect(subnets.stdout).toContain('198.19.3.0/24');
      expect(await filter.ensureBase(fx.base)).toHaveLength(1);
    });
  });

  describe('flushConntrack', () => {
    it('deletes the entries of the address (original source, original destination, reply source) and no others', async () => {
      const [a, b] = fx.instances;
      // a as reply source (DNAT from the world), a as original source (egress), a as original destination (direct from b).
      expect(await request(fx.world, 'udp', NODE_UNDERLAY, 8080, 'ct1')).not.toBeNull();
      expect(await request(a!.ns, 'udp', WORLD, 8080, 'ct2')).not.toBeNull();
      expect(await request(b!.ns, 'udp', WORLD, 8080, 'ct3')).not.toBeNull();
      expect(await request(fx.node, 'tcp', a!.address, 80, 'ct4')).not.toBeNull();
      const before = (await conntrackEntries(fx.node, a!.address)).map(tuples);
      const shown = JSON.stringify(before);
      expect(
        before.some((t) => t.orig.src === WORLD && t.orig.dst === NODE_UNDERLAY && t.reply.src === a!.address),
        shown,
      ).toBe(true);
      expect(
        before.some((t) => t.orig.src === a!.address && t.orig.dst === WORLD && t.reply.dst === NODE_UNDERLAY),
        shown,
      ).toBe(true);
      expect(
        before.some((t) => t.orig.dst === a!.address && t.orig.src !== a!.address),
        shown,
      ).toBe(true);
      expect((await conntrackEntries(fx.node, b!.address)).length).toBeGreaterThan(0);

      await filter.flushConntrack([a!.address]);
      expect(await conntrackEntries(fx.node, a!.address)).toEqual([]);
      expect((await conntrackEntries(fx.node, b!.address)).length).toBeGreaterThan(0);
      // Nothing left to delete ("0 flow entries", exit 1) is fine.
      await filter.flushConntrack([a!.address]);
      await filter.flushConntrack(['198.19.1.250' as Ipv4Address]);
    });
  });
});

/** The original and reply addresses of a `conntrack -L` line (the first src/dst pair is the original). */
function tuples(line: string) {
  const [o, r] = [...line.matchAll(/src=(\S+) dst=(\S+)/g)];
  return { orig: { src: o?.[1], dst: o?.[2] }, reply: { src: r?.[1], dst: r?.[2] } };
}

describe('NftPacketFilter without a fixture', () => {
  const names: string[] = [];
  afterEach(async () => {
    await deleteNamespaces(names);
  });

  it('the rule count does not grow with instances (1 vs 200), elements do', async () => {
    const ns = await newNamespace('count', names);
    const filter = new NftPacketFilter({ netns: ns });
    await filter.ensureBase(filterBase());
    const instance = (i: number) => ({
      hostIfname: `nnh-${i.toString(16).padStart(8, '0')}` as IfName,
      ipv4: `198.19.1.${i + 2}` as Ipv4Address,
      ports: both(20000 + i),
    });
    await filter.addInstance(instance(0));
    const one = await snapshot(ns);
    for (let i = 1; i < 200; i++) await filter.addInstance(instance(i));
    const many = await snapshot(ns);
    expect(many.rules).toBe(one.rules);
    expect(one.ports).toHaveLength(2);
    expect(many.ports).toHaveLength(400);
    expect(many.sources).toHaveLength(200);
    await Promise.all(Array.from({ length: 200 }, (_, i) => filter.removeInstance(instance(i))));
    const none = await snapshot(ns);
    expect(none.ports).toEqual([]);
    expect(none.sources).toEqual([]);
    expect(none.rules).toBe(one.rules);
  });

  it('touches no other table, and removeBase removes only its own (twice is fine)', async () => {
    const ns = await newNamespace('other', names);
    await inNs(
      ns,
      ['nft', '-f', '-'],
      'add table ip other\nadd chain ip other c { type filter hook input priority 0; }\nadd rule ip other c counter\nadd table bridge other\n',
    );
    const filter = new NftPacketFilter({ netns: ns });
    await filter.ensureBase(filterBase());
    await filter.addInstance({ hostIfname: 'nni-00000001' as IfName, ipv4: '198.19.1.9' as Ipv4Address, ports: both(80) });
    await filter.removeBase();
    expect(await tableExists(ns, 'ip')).toBe(false);
    expect(await tableExists(ns, 'bridge')).toBe(false);
    await filter.removeBase();
    const other = await inNs(ns, ['nft', 'list', 'ruleset']);
    expect(other.stdout).toContain('table ip other');
    expect(other.stdout).toContain('table bridge other');
    expect(other.stdout).toMatch(/chain c \{[^}]*counter/);
    // removeInstance after removeBase: the tables are gone, nothing to do.
    await filter.removeInstance({ hostIfname: 'nni-00000001' as IfName, ipv4: '198.19.1.9' as Ipv4Address, ports: both(80) });
  });

  it('a failing nft is an INTERNAL CommandError naming the step', async () => {
    const ns = await newNamespace('fail', names);
    const filter = new NftPacketFilter({ netns: ns });
    const rules = { hostIfname: 'nnh-00000001' as IfName, ipv4: '198.19.1.9' as Ipv4Address, ports: both(80) };
    const err = await filter.addInstance(rules).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toBeInstanceOf(InternalError);
    expect((err as Error).message).toContain('publish the ports of 198.19.1.9 and admit it on nnh-00000001');
    expect((err as Error).message).toContain('No such file or directory');
  });

  it('a missing nft or conntrack is UNAVAILABLE, in a namespace and outside', async () => {
    const ns = await newNamespace('bin', names);
    // Without perl, conntrack deletes the entries: without both, that is UNAVAILABLE too.
    const commands = {
      nft: 'nft-not-installed',
      conntrack: 'conntrack-not-installed',
      conntrackHelper: ['perl-not-installed'] as [string],
    };
    for (const filter of [new NftPacketFilter({ netns: ns, commands }), new NftPacketFilter({ commands })]) {
      await expect(filter.ensureBase(filterBase())).rejects.toThrow(UnavailableError);
      await expect(filter.ensureBase(filterBase())).rejects.toThrow(/nft-not-installed is not installed/);
      await expect(filter.flushConntrack(['198.19.1.2' as Ipv4Address])).rejects.toThrow(UnavailableError);
      // The element changes go through an nft -i session: its process cannot start either.
      const rules = { hostIfname: 'nnh-00000001' as IfName, ipv4: '198.19.1.9' as Ipv4Address, ports: both(80) };
      await expect(filter.addInstance(rules)).rejects.toThrow(UnavailableError);
      await expect(filter.removeInstance(rules)).rejects.toThrow(
        /nft-not-installed is not installed on this node: install nft-not-installed/,
      );
      filter.close();
    }
  });
});
