import { beforeEach, describe, expect, it } from 'vitest';
import {
  NodeNetwork,
  PortClaims,
  normalizePorts,
  parseHostAddress,
  samePortMappings,
  type NodenetError,
  type PortMapping,
} from '@nodenet/core';
import { planReconcile } from '../src/reconcile.js';
import { FakeDataplane, type FakePacketFilter, type MemoryStateStore } from './fakes.js';
import { NodeNetworkHarness } from './node-network-harness.js';

function errorOf(f: () => unknown): NodenetError {
  try {
    f();
  } catch (e) {
    return e as NodenetError;
  }
  throw new Error('expected a failure');
}

async function rejection(p: Promise<unknown>): Promise<NodenetError> {
  try {
    await p;
  } catch (e) {
    return e as NodenetError;
  }
  throw new Error('expected a failure');
}

const tcp = (hostPort: number, hostAddress?: string): PortMapping =>
  ({ protocol: 'tcp', hostPort, instancePort: 80, ...(hostAddress ? { hostAddress } : {}) }) as PortMapping;

describe('host addresses (portmap hostIP)', () => {
  it('every address: absent, empty, 0.0.0.0, ::; any IPv4 unicast address, held by the node or not, loopback included', () => {
    for (const every of [undefined, null, '', '0.0.0.0', '::']) expect(parseHostAddress(every, 'f')).toBeUndefined();
    for (const one of ['198.18.0.5', '127.0.0.1', '203.0.113.7', '198.19.1.1']) expect(parseHostAddress(one, 'f')).toBe(one);
  });

  it('any IPv6 unicast address in RFC 5952 text: global, unique-local, the instance subnet too', () => {
    for (const one of ['2001:db8:18::5', 'fd19:0:0:1::1', '2001:db8:18:0:1:2:3:4', 'fd00::1:0:0:5'])
      expect(parseHostAddress(one, 'f')).toBe(one);
  });

  it.each([
    ['::1', /::1 cannot publish a port: IPv6 has no route_localnet/],
    ['fe80::1', /fe80::1 is a link-local address \(fe80::\/10\)/],
    ['ff02::1', /ff02::1 is a multicast address/],
    ['2001:DB8:18::5', /'2001:DB8:18::5' is not in canonical form \(RFC 5952\): write 2001:db8:18::5/],
    ['2001:db8:18:0:0:0:0:5', /write 2001:db8:18::5/],
    ['2001:db8:18::5%eth0', /carries a zone index/],
    ['::ffff:198.18.0.5', /IPv4-mapped IPv6 address: give the IPv4 address itself/],
    ['::c612:5', /::c612:5 is an IPv4-compatible IPv6 address \(::\/96, deprecated\)/],
    ['::2', /IPv4-compatible/],
    ['2001:db8::18::5', /is not an IPv6 address/],
    ['0.1.2.3', /not a unicast address the node could receive on/],
    ['224.0.0.1', /not a unicast address/],
    ['240.0.0.1', /not a unicast address/],
    ['255.255.255.255', /not a unicast address/],
    ['198.18.0.05', /not a canonical IPv4 address/],
    ['eth0', /not a canonical IPv4 address/],
  ])('refuses %s as INVALID_ARGUMENT naming the field', (input, message) => {
    const e = errorOf(() => parseHostAddress(input, 'port_mappings[0].host_address'));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^port_mappings\[0\]\.host_address: /);
    expect(e.message).toMatch(message);
  });

  it('normalizePorts keeps the host address, sorts by it, and lets one port sit on several addresses', () => {
    const ports = normalizePorts(
      [],
      [
        { hostPort: 8080, instancePort: 80, protocol: 'tcp', hostAddress: '198.18.0.5' },
        { hostPort: 8080, instancePort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' },
        { hostPort: 8081, protocol: 'udp', hostAddress: '0.0.0.0' },
      ],
    );
    expect(ports).toEqual([tcp(8080, '127.0.0.1'), tcp(8080, '198.18.0.5'), { protocol: 'udp', hostPort: 8081, instancePort: 8081 }]);
  });

  it('normalizePorts refuses one port on every address and on one address, and one address twice', () => {
    const both = errorOf(() => normalizePorts([8080], [{ hostPort: 8080, instancePort: 80, protocol: 'tcp', hostAddress: '198.18.0.5' }]));
    expect(both.code).toBe('INVALID_ARGUMENT');
    expect(both.message).toMatch(
      /^port_mappings\[0\]: port 198.18.0.5:8080\/tcp clashes with 8080\/tcp of ports\[0\]: a port is published either on every address or on chosen addresses, not both/,
    );
    const twice = errorOf(() =>
      normalizePorts(
        [],
        [
          { hostPort: 8080, protocol: 'tcp', hostAddress: '198.18.0.5' },
          { hostPort: 8080, instancePort: 81, protocol: 'tcp', hostAddress: '198.18.0.5' },
        ],
      ),
    );
    expect(twice.message).toMatch(/port 198.18.0.5:8080\/tcp appears more than once/);
    // Another protocol is another port.
    expect(
      normalizePorts(
        [],
        [
          { hostPort: 53, protocol: 'udp', hostAddress: '127.0.0.1' },
          { hostPort: 53, protocol: 'tcp' },
        ],
      ),
    ).toHaveLength(2);
  });

  it('samePortMappings tells a host address apart', () => {
    expect(samePortMappings([tcp(8080, '198.18.0.5')], [tcp(8080, '198.18.0.5')])).toBe(true);
    expect(samePortMappings([tcp(8080, '198.18.0.5')], [tcp(8080, '198.18.0.6')])).toBe(false);
    expect(samePortMappings([tcp(8080, '198.18.0.5')], [tcp(8080)])).toBe(false);
  });

  it('PortClaims: addresses coexist, every address overlaps them all, release only by the holder', () => {
    const claims = new PortClaims<string>();
    claims.claim(tcp(8080, '198.18.0.5'), 'a');
    expect(claims.conflict(tcp(8080, '198.18.0.6'))).toBeUndefined();
    claims.claim(tcp(8080, '198.18.0.6'), 'b');
    expect(claims.conflict(tcp(8080, '198.18.0.5'))?.holder).toBe('a');
    expect(claims.conflict(tcp(8080))?.holder).toMatch(/^[ab]$/);
    expect(claims.conflict({ ...tcp(8080), protocol: 'udp' })).toBeUndefined();
    claims.release(tcp(8080, '198.18.0.5'), 'b'); // not b's: kept
    expect(claims.conflict(tcp(8080, '198.18.0.5'))?.holder).toBe('a');
    expect([...claims.keysHeldBy((h) => h === 'b')]).toEqual(['tcp/8080']);
    claims.release(tcp(8080, '198.18.0.5'), 'a');
    claims.release(tcp(8080, '198.18.0.6'), 'b');
    expect(claims.conflict(tcp(8080))).toBeUndefined();
    claims.claim(tcp(8080), 'c');
    expect(claims.conflict(tcp(8080, '198.18.0.9'))).toEqual({ holder: 'c', mapping: tcp(8080) });
  });

  it('reconcile compares a port by its host address too: the same key on another address is missing, an element on none an orphan', () => {
    const record = {
      handle: 'nni-1',
      hostIfname: 'nnh-1',
      kind: 'veth',
      address: '198.19.1.2',
      ports: [tcp(8080, '198.18.0.5')],
      mac: '02:00:00:00:00:01',
      mtu: 1450,
      createdAt: '',
    } as never;
    const plan = (hostAddress?: string) =>
      planReconcile({
        records: [record],
        checkable: new Set(['nni-1']),
        cniName: 'nodenet0',
        infrastructureLinks: new Set(),
        links: [{ name: 'nnh-1', master: 'nodenet0' }],
        elements: {
          ports: [
            {
              protocol: 'tcp',
              hostPort: 8080,
              address: '198.19.1.2' as never,
              instancePort: 80,
              ...(hostAddress ? { hostAddress: hostAddress as never } : {}),
            },
          ],
          sources: [{ ifname: 'nnh-1', address: '198.19.1.2' as never }],
        },
        busy: { handles: new Set(), addresses: new Set(), portKeys: new Set() },
      });
    expect(plan('198.18.0.5')).toMatchObject({ missingRules: [], orphanElements: { ports: [] } });
    const onEvery = plan(undefined);
    expect(onEvery.missingRules).toEqual([record]);
    expect(onEvery.orphanElements.ports).toEqual([{ protocol: 'tcp', hostPort: 8080, address: '198.19.1.2', instancePort: 80 }]);
    expect(plan('198.18.0.6').missingRules).toEqual([record]);
  });

  it('reconcile: a dual-stack port on an IPv6 host address is one element, to the IPv6 address; the same on IPv4 is an orphan', () => {
    const record = {
      handle: 'nni-1',
      hostIfname: 'nnh-1',
      kind: 'veth',
      address: '198.19.1.2',
      ipv6Address: 'fd19:0:0:1::2',
      ports: [tcp(8080, '2001:db8:18::5')],
      mac: '02:6e:c6:13:01:02',
      mtu: 1450,
      createdAt: '',
    } as never;
    const linkLocal = 'fe80::6e:c6ff:fe13:102';
    const element = (address: string, hostAddress: string) => ({
      protocol: 'tcp' as const,
      hostPort: 8080,
      address: address as never,
      instancePort: 80,
      hostAddress: hostAddress as never,
    });
    const plan = (ports: ReturnType<typeof element>[]) =>
      planReconcile({
        records: [record],
        checkable: new Set(['nni-1']),
        cniName: 'nodenet0',
        infrastructureLinks: new Set(),
        links: [{ name: 'nnh-1', master: 'nodenet0' }],
        elements: {
          ports,
          sources: ['198.19.1.2', 'fd19:0:0:1::2', linkLocal].map((a) => ({ ifname: 'nnh-1', address: a as never })),
        },
        busy: { handles: new Set(), addresses: new Set(), portKeys: new Set() },
      });
    expect(plan([element('fd19:0:0:1::2', '2001:db8:18::5')])).toMatchObject({ missingRules: [], orphanElements: { ports: [] } });
    expect(plan([]).missingRules).toEqual([record]);
    const stray = element('198.19.1.2', '198.18.0.5');
    expect(plan([element('fd19:0:0:1::2', '2001:db8:18::5'), stray]).orphanElements.ports).toEqual([stray]);
  });
});

describe('NodeNetwork with host addresses', () => {
  let pf: FakePacketFilter;
  let store: MemoryStateStore;
  let net: NodeNetwork;

  beforeEach(async () => {
    const h = new NodeNetworkHarness({ reservedPorts: new Map([[22, 'listed in reservedPorts']]) });
    ({ pf, store } = h);
    net = await h.make();
    await net.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  });

  const on = (ip: string, hostAddress: string | undefined, hostPort = 8080) =>
    net.createInterface({ ipAddress: ip, portMappings: [{ hostPort, instancePort: 80, protocol: 'tcp', hostAddress }] });

  it('publishes on two addresses for two instances; every address then conflicts, and the reverse', async () => {
    const a = await on('198.19.1.2', '198.18.0.5');
    await on('198.19.1.3', '127.0.0.1');
    expect(pf.instances.get(a.hostInterfaceName)?.ports).toEqual([tcp(8080, '198.18.0.5')]);
    expect(store.state.instances.find((r) => r.handle === a.interfaceName)?.ports).toEqual([tcp(8080, '198.18.0.5')]);

    const every = await rejection(on('198.19.1.4', undefined));
    expect(every.code).toBe('ALREADY_EXISTS');
    expect(every.message).toMatch(
      /^port 8080\/tcp is already published by interface nni-\w+ on (198.18.0.5|127.0.0.1): choose another host port, or another host address$/,
    );
    const same = await rejection(on('198.19.1.4', '198.18.0.5'));
    expect(same.code).toBe('ALREADY_EXISTS');
    expect(same.message).toMatch(/port 198.18.0.5:8080\/tcp is already published by interface nni-\w+ on 198.18.0.5/);
    expect(net.listInstances()).toHaveLength(2); // the refused creates left nothing

    await on('198.19.1.5', undefined, 9090);
    const specific = await rejection(on('198.19.1.6', '198.18.0.5', 9090));
    expect(specific.code).toBe('ALREADY_EXISTS');
    expect(specific.message).toMatch(
      /port 198.18.0.5:9090\/tcp is already published by interface nni-\w+ on every address of the node: choose another host port$/,
    );
  });

  it('DeleteInterface frees the address-bound port; the reserved ports stay refused on any address; IPv6 is refused', async () => {
    const a = await on('198.19.1.2', '198.18.0.5');
    await net.deleteInterface({ interfaceName: a.interfaceName });
    await on('198.19.1.3', undefined);
    const reserved = await rejection(on('198.19.1.4', '198.18.0.5', 22));
    expect(reserved.code).toBe('FAILED_PRECONDITION');
    const v6 = await rejection(on('198.19.1.4', '2001:db8:18::5', 8081));
    expect(v6.code).toBe('INVALID_ARGUMENT');
    expect(v6.message).toBe(
      "port_mappings[0].host_address: 2001:db8:18::5 is an IPv6 address but the instance has no IPv6 address (only 198.19.1.4), so nothing would receive the port: publish on an IPv4 address of the node, or leave host_address out to publish on every address, or this node's CNI holds no IPv6 subnet (create it with ipv6_sub_network for dual-stack)",
    );
    expect(net.listInstances().map((r) => r.address)).toEqual(['198.19.1.3']);
  });

  it('an identical request is idempotent; another host address is another request', async () => {
    const a = await on('198.19.1.2', '198.18.0.5');
    expect((await on('198.19.1.2', '198.18.0.5')).interfaceName).toBe(a.interfaceName);
    expect((await rejection(on('198.19.1.2', '198.18.0.6'))).code).toBe('ALREADY_EXISTS');
  });

  it('a reload from the records keeps the host address and its claims', async () => {
    await on('198.19.1.2', '198.18.0.5');
    const dp = new FakeDataplane();
    const again = new NodeNetwork({
      dataplane: dp,
      namespaces: dp,
      packetFilter: pf,
      store,
      host: await dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
    });
    await again.load();
    expect(again.listInstances()[0]!.ports).toEqual([tcp(8080, '198.18.0.5')]);
    const every = await rejection(again.createInterface({ ipAddress: '198.19.1.3', portMappings: [{ hostPort: 8080, protocol: 'tcp' }] }));
    expect(every.code).toBe('ALREADY_EXISTS');
  });
});

describe('NodeNetwork with IPv6 host addresses', () => {
  let pf: FakePacketFilter;
  let store: MemoryStateStore;
  let net: NodeNetwork;

  async function start(cni: Record<string, string>): Promise<void> {
    const h = new NodeNetworkHarness();
    ({ pf, store } = h);
    net = await h.make();
    await net.createContainerNetworkInterface(cni);
  }
  const dualStack = {
    ipAddress: '198.19.1.1',
    subNetwork: '198.19.1.0/24',
    ipv6Address: 'fd19:0:0:1::1',
    ipv6SubNetwork: 'fd19:0:0:1::/64',
  };
  const on = (addresses: { ipAddress: string; ipv6Address?: string }, hostAddress: string, hostPort = 8080) =>
    net.createInterface({ ...addresses, portMappings: [{ hostPort, instancePort: 80, protocol: 'tcp', hostAddress }] });

  it('a dual-stack instance gets the port with its IPv6 host address; IPv4 and IPv6 addresses of one port coexist', async () => {
    await start(dualStack);
    const a = await on({ ipAddress: '198.19.1.2', ipv6Address: 'fd19:0:0:1::2' }, '2001:db8:18::5');
    expect(pf.instances.get(a.hostInterfaceName)?.ports).toEqual([tcp(8080, '2001:db8:18::5')]);
    expect(store.state.instances.find((r) => r.handle === a.interfaceName)?.ports).toEqual([tcp(8080, '2001:db8:18::5')]);
    await on({ ipAddress: '198.19.1.3', ipv6Address: 'fd19:0:0:1::3' }, '198.18.0.5');
    await on({ ipAddress: '198.19.1.4', ipv6Address: 'fd19:0:0:1::4' }, 'fd00::5');

    const same = await rejection(on({ ipAddress: '198.19.1.6', ipv6Address: 'fd19:0:0:1::6' }, '2001:db8:18::5'));
    expect(same.code).toBe('ALREADY_EXISTS');
    expect(same.message).toMatch(/^port \[2001:db8:18::5\]:8080\/tcp is already published by interface nni-\w+ on 2001:db8:18::5/);
    const every = await rejection(net.createInterface({ ipAddress: '198.19.1.6', ipv6Address: 'fd19:0:0:1::6', ports: [8080] }));
    expect(every.code).toBe('ALREADY_EXISTS');
    expect(net.listInstances()).toHaveLength(3);
  });

  it('an IPv6 host address for an instance without IPv6 on a dual-stack node: INVALID_ARGUMENT saying to give it one; nothing made', async () => {
    await start(dualStack);
    const e = await rejection(on({ ipAddress: '198.19.1.2' }, '2001:db8:18::5'));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(
      /^port_mappings\[0\]\.host_address: 2001:db8:18::5 is an IPv6 address but the instance has no IPv6 address \(only 198\.19\.1\.2\).*give the instance an IPv6 address too \(ipv6_address\)$/,
    );
    expect(net.listInstances()).toEqual([]);
    expect(pf.instances.size).toBe(0);
    // An IPv4 host address on a dual-stack instance is fine (published to its IPv4 address only, by the filter).
    await on({ ipAddress: '198.19.1.2', ipv6Address: 'fd19:0:0:1::2' }, '198.18.0.5');
  });

  it('an IPv6-only node: IPv6 host addresses publish, an IPv4 one is INVALID_ARGUMENT', async () => {
    await start({ ipAddress: 'fd19:0:0:1::1', subNetwork: 'fd19:0:0:1::/64' });
    const a = await on({ ipAddress: 'fd19:0:0:1::2' }, '2001:db8:18::5');
    expect(pf.instances.get(a.hostInterfaceName)?.ports).toEqual([tcp(8080, '2001:db8:18::5')]);
    const e = await rejection(on({ ipAddress: 'fd19:0:0:1::3' }, '198.18.0.5', 8081));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(
      /^port_mappings\[0\]\.host_address: 198\.18\.0\.5 is an IPv4 address but the instance has no IPv4 address \(only fd19:0:0:1::3\).*this node's CNI holds no IPv4 subnet$/,
    );
  });
});
