/** Ports published on one host address (portmap's hostIP), IPv4 and IPv6: their maps, rules, elements and listing. */
import { describe, expect, it } from 'vitest';
import {
  Ipv6Subnet,
  Subnet,
  type FilterBase,
  type IfName,
  type InstanceRules,
  type IpAddress,
  type Ipv4Address,
  type Ipv6Address,
  type Port,
  type PortMapping,
} from '@nodenet/core';
import { filterElements, parsePublishedHostPorts, parsePublishedPorts } from '../src/listing.js';
import {
  addInstanceScript,
  conflictingKeys,
  ensureBaseScript,
  removeElementsScript,
  removeInstanceScript,
  removeListedElementsScript,
  removeListedScript,
  type ListedPort,
} from '../src/script.js';

const base: FilterBase = {
  cniName: 'nodenet0' as IfName,
  ipv4: { subnet: Subnet.of('198.19.1.0/24'), gateway: '198.19.1.1' as Ipv4Address },
  clusterSubnets: [Subnet.of('198.19.1.0/24')],
};

const port = (protocol: 'tcp' | 'udp', hostPort: number, instancePort: number, hostAddress?: string): PortMapping => ({
  protocol,
  hostPort: hostPort as Port,
  instancePort: instancePort as Port,
  ...(hostAddress ? { hostAddress: hostAddress as IpAddress } : {}),
});

const rules = (ports: PortMapping[]): InstanceRules => ({
  hostIfname: 'nnh-0000abcd' as IfName,
  ipv4: '198.19.1.2' as Ipv4Address,
  ports,
});

const lines = (script: string) => script.trimEnd().split('\n');

describe('the published_host_ports map', () => {
  const script = ensureBaseScript(base);

  it('is declared keyed by the host address, and looked up before published_ports in prerouting and output', () => {
    expect(script).toContain(
      'add map ip nodenet published_host_ports { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }',
    );
    const host = 'fib daddr type local meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @published_host_ports';
    const every = 'fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @published_ports';
    for (const chain of ['prerouting', 'output']) {
      const chainRules = lines(script).filter((l) => l.startsWith(`add rule ip nodenet ${chain} `));
      expect(chainRules).toHaveLength(2);
      expect(chainRules[0]).toContain(host);
      expect(chainRules[1]).toContain(every);
    }
  });
});

describe('elements of ports on one host address', () => {
  const mixed = [port('tcp', 8080, 80, '198.18.0.5'), port('tcp', 8080, 80, '127.0.0.1'), port('udp', 53, 53)];

  it('addInstanceScript puts each in its map, one element per mapping', () => {
    expect(lines(addInstanceScript(rules(mixed)))).toEqual([
      'add element ip nodenet published_ports { udp . 53 : 198.19.1.2 . 53 }',
      'add element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 : 198.19.1.2 . 80, 127.0.0.1 . tcp . 8080 : 198.19.1.2 . 80 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('addInstanceScript with only address-bound ports leaves published_ports alone; stale keys are deleted from their map', () => {
    const stale: ListedPort = { protocol: 'tcp', hostPort: 8080, address: '198.19.1.9', instancePort: 80, hostAddress: '198.18.0.5' };
    expect(lines(addInstanceScript(rules([port('tcp', 8080, 80, '198.18.0.5')]), [stale]))).toEqual([
      'delete element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 }',
      'add element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 : 198.19.1.2 . 80 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('removeInstanceScript adds, then deletes, in each map', () => {
    expect(lines(removeInstanceScript(rules(mixed)))).toEqual([
      'add element ip nodenet published_ports { udp . 53 : 198.19.1.2 . 53 }',
      'add element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 : 198.19.1.2 . 80, 127.0.0.1 . tcp . 8080 : 198.19.1.2 . 80 }',
      'delete element ip nodenet published_ports { udp . 53 }',
      'delete element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080, 127.0.0.1 . tcp . 8080 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
      'delete element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('the fallbacks tell the same port on another address (or on every address) apart', () => {
    const listed: ListedPort[] = [
      { protocol: 'tcp', hostPort: 8080, address: '198.19.1.2', instancePort: 80, hostAddress: '198.18.0.5' },
      { protocol: 'tcp', hostPort: 8080, address: '198.19.1.7', instancePort: 80, hostAddress: '127.0.0.1' },
      { protocol: 'tcp', hostPort: 8080, address: '198.19.1.8', instancePort: 80 },
    ];
    expect(conflictingKeys(rules(mixed), listed)).toEqual([listed[1]]);
    expect(lines(removeListedScript(rules(mixed), { publishedPorts: listed, allowedSources: [] }))).toEqual([
      'delete element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 }',
    ]);
    const orphans = {
      ports: [{ ...listed[0]!, address: '198.19.1.2' as Ipv4Address, hostAddress: '198.18.0.5' as Ipv4Address }],
      sources: [],
    };
    expect(lines(removeElementsScript(orphans))).toEqual([
      'add element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 : 198.19.1.2 . 80 }',
      'delete element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 }',
    ]);
    expect(lines(removeListedElementsScript(orphans, { publishedPorts: listed, allowedSources: [] }))).toEqual([
      'delete element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8080 }',
    ]);
  });

  it('a host address that is not a canonical IPv4 address never reaches a script', () => {
    expect(() => addInstanceScript(rules([{ ...port('tcp', 1, 1), hostAddress: '1.2.3.4 } ; flush ruleset' as Ipv4Address }]))).toThrow(
      /not a canonical IPv4 address/,
    );
  });
});

describe('listing published_host_ports', () => {
  // Captured from `nft -j list map ip nodenet published_host_ports` (nftables 1.0.6).
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
      {
        map: {
          family: 'ip',
          name: 'published_host_ports',
          table: 'nodenet',
          type: ['ipv4_addr', 'inet_proto', 'inet_service'],
          handle: 2,
          map: 'ipv4_addr . inet_service',
          elem: [
            [{ concat: ['127.0.0.1', 'udp', 53] }, { concat: ['198.19.1.3', 53] }],
            [{ concat: ['198.18.0.5', 'tcp', 8080] }, { concat: ['198.19.1.2', 80] }],
            // Garbage is skipped: a key without the address, a non-address.
            [{ concat: ['tcp', 8080] }, { concat: ['198.19.1.2', 80] }],
            [{ concat: [7, 'tcp', 8080] }, { concat: ['198.19.1.2', 80] }],
          ],
        },
      },
    ],
  });

  it('reads its elements with their host address; published_ports is another map', () => {
    expect(parsePublishedHostPorts(json)).toEqual([
      { protocol: 'udp', hostPort: 53, address: '198.19.1.3', instancePort: 53, hostAddress: '127.0.0.1' },
      { protocol: 'tcp', hostPort: 8080, address: '198.19.1.2', instancePort: 80, hostAddress: '198.18.0.5' },
    ]);
    expect(parsePublishedPorts(json)).toBeNull();
  });

  it('filterElements keeps the host address and skips an element whose host address does not parse', () => {
    const ports = filterElements({
      publishedPorts: [
        { protocol: 'tcp', hostPort: 8080, address: '198.19.1.2', instancePort: 80, hostAddress: '198.18.0.5' },
        { protocol: 'tcp', hostPort: 8081, address: '198.19.1.2', instancePort: 80, hostAddress: '198.18.0.05' },
      ],
      allowedSources: null,
    }).ports;
    expect(ports).toEqual([{ protocol: 'tcp', hostPort: 8080, address: '198.19.1.2', instancePort: 80, hostAddress: '198.18.0.5' }]);
  });
});

describe('ports on one IPv6 host address', () => {
  const dual: FilterBase = {
    ...base,
    ipv6: { subnet: Ipv6Subnet.of('fd19:0:0:1::/64'), gateway: 'fd19:0:0:1::1' as Ipv6Address },
    clusterSubnets: [Subnet.of('198.19.1.0/24'), Ipv6Subnet.of('fd19:0:0:1::/64')],
  };
  const dualRules = (ports: PortMapping[]): InstanceRules => ({
    ...rules(ports),
    ipv6: 'fd19:0:0:1::2' as Ipv6Address,
    ipv6LinkLocal: 'fe80::6e:c6ff:fe13:102' as Ipv6Address,
  });
  const portLines = (script: string) => lines(script).filter((l) => l.includes('published_'));

  it('the ip6 table declares its own published_host_ports, looked up before published_ports in prerouting and output', () => {
    const script = ensureBaseScript(dual);
    expect(script).toContain(
      'add map ip6 nodenet published_host_ports { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }',
    );
    const host = 'fib daddr type local meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @published_host_ports';
    const every = 'fib daddr type local meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @published_ports';
    for (const chain of ['prerouting', 'output']) {
      const chainRules = lines(script).filter((l) => l.startsWith(`add rule ip6 nodenet ${chain} `));
      expect(chainRules).toHaveLength(2);
      expect(chainRules[0]).toContain(host);
      expect(chainRules[1]).toContain(every);
    }
  });

  it('a dual-stack instance: an IPv6 host address goes to its IPv6 address only, an IPv4 one to its IPv4 address only, every address to both', () => {
    const ports = [port('tcp', 8080, 80, '2001:db8:18::5'), port('tcp', 8081, 81, '198.18.0.5'), port('udp', 53, 53)];
    expect(portLines(addInstanceScript(dualRules(ports)))).toEqual([
      'add element ip nodenet published_ports { udp . 53 : 198.19.1.2 . 53 }',
      'add element ip nodenet published_host_ports { 198.18.0.5 . tcp . 8081 : 198.19.1.2 . 81 }',
      'add element ip6 nodenet published_ports { udp . 53 : fd19:0:0:1::2 . 53 }',
      'add element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 : fd19:0:0:1::2 . 80 }',
    ]);
    expect(portLines(removeInstanceScript(dualRules([port('tcp', 8080, 80, '2001:db8:18::5')])))).toEqual([
      'add element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 : fd19:0:0:1::2 . 80 }',
      'delete element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 }',
    ]);
  });

  it('the fallbacks and orphan removal find an IPv6 host port in the ip6 map', () => {
    const mine: ListedPort = { protocol: 'tcp', hostPort: 8080, address: 'fd19:0:0:1::2', instancePort: 80, hostAddress: '2001:db8:18::5' };
    const other: ListedPort = { ...mine, address: 'fd19:0:0:1::7' };
    const r = dualRules([port('tcp', 8080, 80, '2001:db8:18::5')]);
    expect(conflictingKeys(r, [other])).toEqual([other]);
    expect(conflictingKeys(r, [mine])).toEqual([]);
    // A stale key mapped to another instance is deleted from the ip6 map first.
    expect(portLines(addInstanceScript(r, [other]))).toEqual([
      'delete element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 }',
      'add element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 : fd19:0:0:1::2 . 80 }',
    ]);
    expect(lines(removeListedScript(r, { publishedPorts: [mine], allowedSources: [] }))).toEqual([
      'delete element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 }',
    ]);
    expect(removeListedScript(r, { publishedPorts: [other], allowedSources: [] })).toBe('');
    const orphans = {
      ports: [{ ...mine, address: mine.address as Ipv6Address, hostAddress: '2001:db8:18::5' as Ipv6Address }],
      sources: [],
    };
    expect(lines(removeElementsScript(orphans))).toEqual([
      'add element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 : fd19:0:0:1::2 . 80 }',
      'delete element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 }',
    ]);
    expect(lines(removeListedElementsScript(orphans, { publishedPorts: [mine], allowedSources: [] }))).toEqual([
      'delete element ip6 nodenet published_host_ports { 2001:db8:18::5 . tcp . 8080 }',
    ]);
  });

  it('an IPv6 host address not in RFC 5952 text never reaches a script', () => {
    expect(() => addInstanceScript(dualRules([port('tcp', 1, 1, '2001:DB8:18::5')]))).toThrow(/write 2001:db8:18::5/);
    expect(() => addInstanceScript(dualRules([port('tcp', 1, 1, '2001:db8:18::5 } ; flush ruleset')]))).toThrow(/not an IPv6 address/);
  });

  it('listing: reads the ip6 map; filterElements skips an element whose host address is of another family than its target', () => {
    // Shaped as `nft -j -p list map ip6 nodenet published_host_ports` prints it (protocols as numbers).
    const json = JSON.stringify({
      nftables: [
        {
          map: {
            family: 'ip6',
            name: 'published_host_ports',
            table: 'nodenet',
            type: ['ipv6_addr', 'inet_proto', 'inet_service'],
            handle: 3,
            map: ['ipv6_addr', 'inet_service'],
            elem: [[{ concat: ['2001:db8:18::5', 6, 8080] }, { concat: ['fd19:0:0:1::2', 80] }]],
          },
        },
      ],
    });
    const listed = parsePublishedHostPorts(json)!;
    expect(listed).toEqual([
      { protocol: 'tcp', hostPort: 8080, address: 'fd19:0:0:1::2', instancePort: 80, hostAddress: '2001:db8:18::5' },
    ]);
    const mixed: ListedPort = { ...listed[0]!, address: '198.19.1.2' };
    expect(filterElements({ publishedPorts: [...listed, mixed], allowedSources: null }).ports).toEqual(listed);
  });
});
