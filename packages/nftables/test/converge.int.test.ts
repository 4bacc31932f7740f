/**
 * The reconcile-side members on the real kernel (fixture.ts, bridge-nf-call-iptables=0): ensureBase writes
 * nothing when all is right and repairs (and reports) drift made by hand with nft; setClusterSubnets,
 * listElements and removeElements.
 *
 * Instance a publishes 8080 -> 80 (TCP and UDP); b publishes nothing; c is used by single tests.
 * The tests of the first block run in order: each leaves the tables right for the next.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FailedPreconditionError, Subnet, type IfName, type Ipv4Address } from '@nodenet/core';
import { NftPacketFilter, ensureBaseScript } from '../src/index.js';
import {
  NODE_UNDERLAY,
  WORLD,
  both,
  createFixture,
  deleteNamespaces,
  filterBase,
  inNs,
  ipBatch,
  listWithHandles,
  mapping,
  newNamespace,
  nft,
  recordingLogger,
  request,
  ruleHandle,
  rulesFor,
  snapshot,
  startMonitor,
  startServer,
  tableExists,
  type EchoServer,
  type Fixture,
} from './fixture.js';

/** An address of a third node's subnet (198.19.3.0/24), held by the world namespace. */
const THIRD_SUBNET_ADDRESS = '198.19.3.10';

const sorted = <T>(xs: readonly T[]) => [...xs].map((x) => JSON.stringify(x)).sort();

describe('NftPacketFilter converging (bridge-nf-call-iptables=0)', () => {
  let fx: Fixture;
  let filter: NftPacketFilter;
  let firstRepairs: readonly string[] | void;
  const servers: EchoServer[] = [];

  const publishedReachable = async (label: string) => ({
    tcp: await request(fx.world, 'tcp', NODE_UNDERLAY, 8080, `${label}-t`),
    udp: await request(fx.world, 'udp', NODE_UNDERLAY, 8080, `${label}-u`),
  });
  const reachable = (label: string) => ({ tcp: `a-tcp80 peer=${WORLD} got=${label}-t`, udp: `a-udp80 peer=${WORLD} got=${label}-u` });
  const egressSeenAs = async (label: string) => request(fx.instances[1]!.ns, 'tcp', WORLD, 7000, label);

  beforeAll(async () => {
    fx = await createFixture({ bridgeNfCallIptables: 0, label: 'cv' });
    await ipBatch(fx.world, [`address add ${THIRD_SUBNET_ADDRESS}/32 dev lo`]);
    await ipBatch(fx.node, [`route add 198.19.3.0/24 via ${WORLD}`]);
    filter = new NftPacketFilter({ netns: fx.node });
    firstRepairs = await filter.ensureBase(fx.base);
    await filter.addInstance(rulesFor(fx.instances[0]!, both(8080, 80)));
    await filter.addInstance(rulesFor(fx.instances[1]!, []));
    servers.push(
      await startServer(fx.instances[0]!.ns, 'tcp', 80, 'a-tcp80'),
      await startServer(fx.instances[0]!.ns, 'udp', 80, 'a-udp80'),
      await startServer(fx.world, 'tcp', 7000, 'world-7000'),
      await startServer(fx.world, 'tcp', 7001, 'third-7001', THIRD_SUBNET_ADDRESS),
    );
  });

  afterAll(async () => {
    filter?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await fx?.destroy();
  });

  describe('ensureBase', () => {
    it('the first call reports the missing tables', () => {
      expect(firstRepairs).toEqual(['table ip nodenet was missing', 'table bridge nodenet was missing']);
    });

    it('again (same filter, and a fresh one as after a daemon restart) returns [] and writes nothing', async () => {
      const before = await listWithHandles(fx.node);
      expect(before).toMatch(/handle \d+/);
      const monitor = startMonitor(fx.node);
      const sentinels: string[] = [];
      const sentinel = async () => {
        const name = `nnt_sentinel_${sentinels.length}`;
        sentinels.push(name);
        await nft(fx.node, `add table ip ${name}\n`);
        return name;
      };
      try {
        // Sentinel changes before and after: the first seen proves the monitor listens (it gives no sign when
        // it starts), the last that it has seen everything committed in between.
        for (;;) {
          const name = await sentinel();
          const seen = await monitor.waitForCommit(new RegExp(`^add table ip ${name}$`), 300).then(
            () => true,
            () => false,
          );
          if (seen) break;
          if (sentinels.length > 30) throw new Error('nft monitor never showed a change');
        }
        const from = monitor.lines.length;
        const recorded = recordingLogger();
        const restarted = new NftPacketFilter({ netns: fx.node, logger: recorded.logger });
        expect(await filter.ensureBase(fx.base)).toEqual([]);
        expect(await restarted.ensureBase(fx.base)).toEqual([]);
        expect(await restarted.ensureBase(fx.base)).toEqual([]);
        const last = await sentinel();
        await monitor.waitForCommit(new RegExp(`^add table ip ${last}$`));
        const between = monitor.lines.slice(from);
        expect(between.filter((l) => !l.startsWith('# new generation'))).toEqual([`add table ip ${last}`]);
        expect(between.filter((l) => l.startsWith('# new generation'))).toHaveLength(1);
        // Not even a no-op transaction was attempted.
        expect(recorded.entries.filter((e) => e.msg === 'nft transaction')).toEqual([]);
        expect(await listWithHandles(fx.node)).toBe(before);

        // Control: the same monitor sees what the previous ensureBase did every time (flush and refill).
        await nft(fx.node, ensureBaseScript(fx.base));
        await monitor.waitFor(/^add rule ip nodenet postrouting/);
        expect(await listWithHandles(fx.node)).not.toBe(before);
      } finally {
        await monitor.stop();
        await nft(fx.node, sentinels.map((t) => `delete table ip ${t}\n`).join(''));
      }
      expect(await filter.ensureBase(fx.base)).toEqual([]);
    });

    it('a deleted rule: reported, repaired, the published port reachable again, elements kept', async () => {
      const elements = await snapshot(fx.node);
      await nft(fx.node, `delete rule ip nodenet prerouting handle ${await ruleHandle(fx.node, 'ip', 'prerouting', 'published ports')}\n`);
      expect(await publishedReachable('d1')).toEqual({ tcp: null, udp: null });
      expect(await filter.ensureBase(fx.base)).toEqual(['chain ip nodenet prerouting had 1 rules, expected 2']);
      expect(await publishedReachable('d2')).toEqual(reachable('d2'));
      expect(await snapshot(fx.node)).toEqual(elements);
      expect(await filter.ensureBase(fx.base)).toEqual([]);
    });

    it('a modified rule (same comment, DNAT for TCP only): reported, repaired, UDP reachable again', async () => {
      const handle = await ruleHandle(fx.node, 'ip', 'prerouting', 'published ports');
      await nft(
        fx.node,
        `replace rule ip nodenet prerouting handle ${handle} fib daddr type local meta l4proto tcp dnat ip to meta l4proto . th dport map @published_ports comment "published ports"\n`,
      );
      expect(await publishedReachable('m1')).toEqual({ tcp: reachable('m1').tcp, udp: null });
      expect(await filter.ensureBase(fx.base)).toEqual([
        'chain ip nodenet prerouting: rule 2 ("published ports") differed from what nodenet installs',
      ]);
      expect(await publishedReachable('m2')).toEqual(reachable('m2'));
      expect(await filter.ensureBase(fx.base)).toEqual([]);
    });

    it('a deleted egress rule: masquerade is back after the repair', async () => {
      const b = fx.instances[1]!;
      await nft(fx.node, `delete rule ip nodenet postrouting handle ${await ruleHandle(fx.node, 'ip', 'postrouting', 'egress')}\n`);
      // Without masquerade the instance's own address shows (the world routes 198.19.1.0/24 back to the node).
      expect(await egressSeenAs('e1')).toBe(`world-7000 peer=${b.address} got=e1`);
      expect(await filter.ensureBase(fx.base)).toEqual(['chain ip nodenet postrouting had 1 rules, expected 2']);
      expect(await egressSeenAs('e2')).toBe(`world-7000 peer=${NODE_UNDERLAY} got=e2`);
    });

    it('changed priority, policy and set flags, an unexpected chain jumped to, a dormant table: repaired in one call, elements kept', async () => {
      const elements = await snapshot(fx.node);
      await nft(
        fx.node,
        [
          'add chain ip nodenet sneaky',
          'add rule ip nodenet sneaky counter',
          'add rule ip nodenet guard jump sneaky',
          'delete chain ip nodenet output',
          'add chain ip nodenet output { type nat hook output priority -90; policy accept; }',
          'add chain bridge nodenet prerouting { type filter hook prerouting priority -400; policy drop; }',
          'flush chain ip nodenet postrouting',
          'delete set ip nodenet cluster_subnets',
          'add set ip nodenet cluster_subnets { type ipv4_addr; }',
          '',
        ].join('\n'),
      );
      // The kernel takes a table's dormant flag only in a transaction of its own.
      await nft(fx.node, 'add table ip nodenet { flags dormant; }\n');
      expect(await publishedReachable('x1')).toEqual({ tcp: null, udp: null });
      const repairs = await filter.ensureBase(fx.base);
      expect(repairs).toEqual([
        'table ip nodenet had attributes {"flags":"inet_proto"}, expected {}',
        'set ip nodenet cluster_subnets was declared type ipv4_addr, expected type ipv4_addr flags interval',
        'chain ip nodenet guard had 2 rules, expected 1',
        'chain ip nodenet output was type nat hook output priority -90 policy accept, expected type nat hook output priority -100 policy accept',
        'chain ip nodenet postrouting had 0 rules, expected 2',
        'unexpected chain ip nodenet sneaky: removed',
        'chain bridge nodenet prerouting was type filter hook prerouting priority -400 policy drop, expected type filter hook prerouting priority -400 policy accept',
      ]);
      expect(await filter.ensureBase(fx.base)).toEqual([]);
      expect(await snapshot(fx.node)).toEqual(elements);
      expect(await publishedReachable('x2')).toEqual(reachable('x2'));
      expect(await egressSeenAs('x3')).toBe(`world-7000 peer=${NODE_UNDERLAY} got=x3`);
    });

    it('after `nft delete table ip nodenet`: reported and rebuilt; the ports come back when re-added', async () => {
      await nft(fx.node, 'delete table ip nodenet\n');
      expect(await filter.ensureBase(fx.base)).toEqual(['table ip nodenet was missing']);
      expect(await egressSeenAs('t1')).toBe(`world-7000 peer=${NODE_UNDERLAY} got=t1`);
      // The map went with the table: the elements are core's to restore (its reconcile re-adds them).
      expect((await filter.listElements()).ports).toEqual([]);
      expect(await publishedReachable('t2')).toEqual({ tcp: null, udp: null });
      await filter.addInstance(rulesFor(fx.instances[0]!, both(8080, 80)));
      expect(await publishedReachable('t3')).toEqual(reachable('t3'));
      expect(await filter.ensureBase(fx.base)).toEqual([]);
    });

    it('after `nft flush ruleset`: both tables reported and rebuilt; traffic works once the elements are re-added', async () => {
      await nft(fx.node, 'flush ruleset\n');
      expect(await filter.listElements()).toEqual({ ports: [], sources: [] });
      expect(await filter.ensureBase(fx.base)).toEqual(['table ip nodenet was missing', 'table bridge nodenet was missing']);
      expect(await filter.ensureBase(fx.base)).toEqual([]);
      await filter.addInstance(rulesFor(fx.instances[0]!, both(8080, 80)));
      await filter.addInstance(rulesFor(fx.instances[1]!, []));
      expect(await publishedReachable('f1')).toEqual(reachable('f1'));
      expect(await egressSeenAs('f2')).toBe(`world-7000 peer=${NODE_UNDERLAY} got=f2`);
    });
  });

  describe('setClusterSubnets', () => {
    it('traffic to a newly added cluster subnet keeps its source; removed again, it is masqueraded', async () => {
      const b = fx.instances[1]!;
      const third = (label: string) => request(b.ns, 'tcp', THIRD_SUBNET_ADDRESS, 7001, label);
      expect(await third('s1')).toBe(`third-7001 peer=${NODE_UNDERLAY} got=s1`);
      const withThird = [...fx.base.clusterSubnets, Subnet.of('198.19.3.0/24')];
      await filter.setClusterSubnets(withThird);
      expect(await third('s2')).toBe(`third-7001 peer=${b.address} got=s2`);
      // ensureBase with the same cluster agrees; with the old one it reports (and undoes) the difference.
      expect(await filter.ensureBase(filterBase(['198.19.3.0/24']))).toEqual([]);
      expect(await filter.ensureBase(fx.base)).toEqual([
        'cluster_subnets differed: held 198.19.1.0/24, 198.19.2.0/24, 198.19.3.0/24, expected 198.19.1.0/24, 198.19.2.0/24',
      ]);
      expect(await third('s3')).toBe(`third-7001 peer=${NODE_UNDERLAY} got=s3`);
      await filter.setClusterSubnets(withThird);
      await filter.setClusterSubnets(fx.base.clusterSubnets);
      expect(await third('s4')).toBe(`third-7001 peer=${NODE_UNDERLAY} got=s4`);
      expect(await filter.ensureBase(fx.base)).toEqual([]);
    });
  });

  describe('listElements and removeElements', () => {
    it('listElements returns what addInstance added', async () => {
      const c = fx.instances[2]!;
      await filter.addInstance(rulesFor(c, [...both(9300, 93), mapping('udp', 9301)]));
      const listed = await filter.listElements();
      expect(sorted(listed.ports)).toEqual(
        sorted([
          { protocol: 'tcp', hostPort: 8080, address: fx.instances[0]!.address, instancePort: 80 },
          { protocol: 'udp', hostPort: 8080, address: fx.instances[0]!.address, instancePort: 80 },
          { protocol: 'tcp', hostPort: 9300, address: c.address, instancePort: 93 },
          { protocol: 'udp', hostPort: 9300, address: c.address, instancePort: 93 },
          { protocol: 'udp', hostPort: 9301, address: c.address, instancePort: 9301 },
        ]),
      );
      expect(sorted(listed.sources)).toEqual(sorted(fx.instances.map((i) => ({ ifname: i.hostIfname, address: i.address }))));
    });

    it('removeElements removes exactly what it is given; others keep working; absent ones are fine', async () => {
      const c = fx.instances[2]!;
      const server = await startServer(c.ns, 'tcp', 93, 'c-93');
      try {
        expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9300, 'r1')).toBe(`c-93 peer=${WORLD} got=r1`);
        const before = await filter.listElements();
        const ofC = {
          ports: before.ports.filter((p) => p.address === c.address),
          sources: before.sources.filter((s) => s.address === c.address),
        };
        expect(ofC.ports).toHaveLength(3);
        await filter.removeElements(ofC);
        const after = await filter.listElements();
        expect(sorted(after.ports)).toEqual(sorted(before.ports.filter((p) => p.address !== c.address)));
        expect(sorted(after.sources)).toEqual(sorted(before.sources.filter((s) => s.address !== c.address)));
        expect(await request(fx.world, 'tcp', NODE_UNDERLAY, 9300, 'r2')).toBeNull();
        expect(await publishedReachable('r3')).toEqual(reachable('r3'));
        // c's port now admits nothing: removing its source took its admission.
        expect(await request(c.ns, 'tcp', fx.instances[0]!.address, 80, 'r4')).toBeNull();

        // Again (all absent), and mixed with an element whose key now maps to another address (a's 8080):
        // that one is not the given element and stays.
        await filter.removeElements(ofC);
        await filter.removeElements({
          ports: [...ofC.ports, { protocol: 'tcp', hostPort: 8080, address: '198.19.1.99' as Ipv4Address, instancePort: 80 }],
          sources: [{ ifname: 'nnh-0000beef', address: '198.19.1.98' as Ipv4Address }],
        });
        expect(await filter.listElements()).toEqual(after);
        expect(await publishedReachable('r5')).toEqual(reachable('r5'));
        await filter.removeElements({ ports: [], sources: [] });
      } finally {
        await server.stop();
        await filter.addInstance(rulesFor(c, []));
      }
    });
  });

  it('moving the loopback guard (a daemon now configured with bridge-ports, and back) converges and keeps every element', async () => {
    const before = await snapshot(fx.node);
    const moved = new NftPacketFilter({ netns: fx.node, loopbackGuard: 'bridge-ports' });
    try {
      const repairs = await moved.ensureBase(fx.base);
      expect(repairs.length).toBeGreaterThan(0);
      const listing = await listWithHandles(fx.node);
      expect(listing).not.toMatch(/chain guard/);
      expect(listing).toMatch(/chain instance_port \{[^\n]*\n\s*ip daddr 127\.0\.0\.0\/8 drop/);
      expect(await moved.ensureBase(fx.base)).toEqual([]);
      const after = await snapshot(fx.node);
      expect(sorted(after.ports)).toEqual(sorted(before.ports));
      expect(sorted(after.sources)).toEqual(sorted(before.sources));
      expect(await publishedReachable('g1')).toEqual(reachable('g1'));
    } finally {
      moved.close();
    }
    // Back to the default place: the guard chain returns, instance_port loses the rule.
    expect((await filter.ensureBase(fx.base)).length).toBeGreaterThan(0);
    const listing = await listWithHandles(fx.node);
    expect(listing).toMatch(/chain guard \{/);
    expect(listing).not.toMatch(/chain instance_port \{[^\n]*\n\s*ip daddr 127/);
    expect(listing).toMatch(/chain guard \{[^\n]*\n[^\n]*hook prerouting[^\n]*\n\s*iifname "nodenet0" ip daddr 127\.0\.0\.0\/8 drop/);
    expect(await filter.ensureBase(fx.base)).toEqual([]);
  });
});

describe('NftPacketFilter converging, without tables', () => {
  const names: string[] = [];
  afterEach(async () => {
    await deleteNamespaces(names);
  });

  it('listElements and removeElements with the tables absent; setClusterSubnets is FAILED_PRECONDITION', async () => {
    const ns = await newNamespace('absent', names);
    const filter = new NftPacketFilter({ netns: ns });
    expect(await filter.listElements()).toEqual({ ports: [], sources: [] });
    await filter.removeElements({
      ports: [{ protocol: 'udp', hostPort: 53, address: '198.19.1.2' as Ipv4Address, instancePort: 53 }],
      sources: [{ ifname: 'nnh-00000002', address: '198.19.1.2' as Ipv4Address }],
    });
    expect(await tableExists(ns, 'ip')).toBe(false);
    await expect(filter.setClusterSubnets([Subnet.of('198.19.1.0/24')])).rejects.toThrow(FailedPreconditionError);
    await expect(filter.setClusterSubnets([Subnet.of('198.19.1.0/24')])).rejects.toThrow(/ensureBase/);
    // After removeBase too.
    await filter.ensureBase(filterBase());
    await filter.addInstance({ hostIfname: 'nnh-00000002' as IfName, ipv4: '198.19.1.2' as Ipv4Address, ports: both(53) });
    expect((await filter.listElements()).ports).toHaveLength(2);
    await filter.removeBase();
    expect(await filter.listElements()).toEqual({ ports: [], sources: [] });
  });

  it('another table of the node is neither compared nor touched', async () => {
    const ns = await newNamespace('others', names);
    await inNs(
      ns,
      ['nft', '-f', '-'],
      'add table ip other\nadd chain ip other c { type nat hook postrouting priority 50; }\nadd rule ip other c counter\n',
    );
    const filter = new NftPacketFilter({ netns: ns });
    expect(await filter.ensureBase(filterBase())).toEqual(['table ip nodenet was missing', 'table bridge nodenet was missing']);
    await inNs(ns, ['nft', 'add', 'rule', 'ip', 'other', 'c', 'counter']);
    expect(await filter.ensureBase(filterBase())).toEqual([]);
    expect((await inNs(ns, ['nft', 'list', 'chain', 'ip', 'other', 'c'])).stdout.match(/counter/g)).toHaveLength(2);
  });
});
