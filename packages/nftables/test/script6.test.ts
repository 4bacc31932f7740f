// The IPv6 parts of the nft scripts: the ip6 table, the bridge table's IPv6 guards, per-family elements.
import { describe, expect, it } from 'vitest';
import { Ipv6Subnet, Subnet, type FilterBase, type IfName, type InstanceRules, type Ipv4Address, type Ipv6Address } from '@nodenet/core';
import { parseAllowedSources6 } from '../src/listing.js';
import {
  addInstanceScript,
  baseLayout,
  conflictingKeys,
  ensureBaseScript,
  ipv6AsHex,
  ipv6FromHex,
  removeElementsScript,
  removeInstanceScript,
  setClusterSubnetsScript,
} from '../src/script.js';

const v4 = { subnet: Subnet.of('198.19.1.0/24'), gateway: '198.19.1.1' as Ipv4Address };
const v6 = { subnet: Ipv6Subnet.of('fd19:0:0:1::/64'), gateway: 'fd19:0:0:1::1' as Ipv6Address };
const dual: FilterBase = {
  cniName: 'nodenet0' as IfName,
  ipv4: v4,
  ipv6: v6,
  clusterSubnets: [Ipv6Subnet.of('fd19:0:0:2::/64'), v4.subnet],
};
const only6: FilterBase = { cniName: 'nodenet0' as IfName, ipv6: v6, clusterSubnets: [] };
const lines = (script: string) => script.trimEnd().split('\n');
const tcp = (hostPort: number, instancePort = hostPort) =>
  ({ protocol: 'tcp' as const, hostPort, instancePort }) as InstanceRules['ports'][number];

const rules: InstanceRules = {
  hostIfname: 'nnh-0000abcd' as IfName,
  ipv4: '198.19.1.2' as Ipv4Address,
  ipv6: 'fd19:0:0:1::2' as Ipv6Address,
  ipv6LinkLocal: 'fe80::6e:c6ff:fe13:102' as Ipv6Address,
  ports: [tcp(8080, 80)],
};

describe('the IPv6 base', () => {
  it('has the ip6 table only with IPv6 and the ip table only with IPv4', () => {
    expect(baseLayout(dual).map((t) => t.family)).toEqual(['ip', 'ip6', 'bridge']);
    expect(baseLayout(only6).map((t) => t.family)).toEqual(['ip6', 'bridge']);
    expect(baseLayout({ ...dual, ipv6: undefined }).map((t) => t.family)).toEqual(['ip', 'bridge']);
  });

  it('publishes ports through one map, masquerades hairpin and (by default) egress, and fills each family its own cluster set', () => {
    const script = ensureBaseScript(dual);
    expect(script).toContain('add map ip6 nodenet published_ports { type inet_proto . inet_service : ipv6_addr . inet_service; }');
    expect(script).toContain(
      'add rule ip6 nodenet prerouting fib daddr type local meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @published_ports comment "published ports"',
    );
    expect(script).toContain(
      'add rule ip6 nodenet postrouting ct status dnat oifname "nodenet0" ip6 saddr fd19:0:0:1::/64 masquerade comment "hairpin"',
    );
    expect(script).toContain(
      'add rule ip6 nodenet postrouting oifname != "nodenet0" ip6 saddr fd19:0:0:1::/64 ip6 daddr != @cluster_subnets masquerade comment "egress"',
    );
    expect(script).toContain('add element ip6 nodenet cluster_subnets { fd19:0:0:1::/64, fd19:0:0:2::/64 }');
    expect(script).toContain('add element ip nodenet cluster_subnets { 198.19.1.0/24 }');
    expect(ensureBaseScript({ ...dual, ipv6Masquerade: false })).not.toContain('comment "egress"\nadd rule ip6');
    expect(
      lines(ensureBaseScript({ ...dual, ipv6Masquerade: false })).filter((l) => l.includes('ip6 saddr fd19:0:0:1::/64 ip6 daddr')),
    ).toEqual([]);
  });

  it('guards instance ports: no RA, redirect or DHCPv6 server, NA only for own addresses, then own sources only', () => {
    const port = lines(ensureBaseScript(dual)).filter((l) => l.startsWith('add rule bridge nodenet instance_port'));
    const at = (needle: string) => port.findIndex((l) => l.includes(needle));
    expect(at('nd-router-advert, nd-redirect } drop')).toBeGreaterThan(0);
    expect(at('ether type ip6 udp sport 547 drop')).toBeGreaterThan(0);
    expect(at('icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @nd_targets drop')).toBeGreaterThan(0);
    expect(at('iifname . ip6 saddr @allowed_sources6 accept')).toBeGreaterThan(at('@nd_targets drop'));
    expect(port.at(-1)).toContain('drop comment "default deny"');
  });

  it('splits cluster subnets by family for the tables there are', () => {
    expect(lines(setClusterSubnetsScript([Ipv6Subnet.of('fd19:0:0:2::/64'), Subnet.of('198.19.2.0/24')], ['ip', 'ip6']))).toEqual([
      'flush set ip nodenet cluster_subnets',
      'add element ip nodenet cluster_subnets { 198.19.2.0/24 }',
      'flush set ip6 nodenet cluster_subnets',
      'add element ip6 nodenet cluster_subnets { fd19:0:0:2::/64 }',
    ]);
  });
});

describe('IPv6 elements', () => {
  it('adds the ports in both maps and the sources (address and link-local) to allowed_sources6 and nd_targets', () => {
    expect(lines(addInstanceScript(rules))).toEqual([
      'add element ip nodenet published_ports { tcp . 8080 : 198.19.1.2 . 80 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
      'add element ip6 nodenet published_ports { tcp . 8080 : fd19:0:0:1::2 . 80 }',
      'add element bridge nodenet allowed_sources6 { "nnh-0000abcd" . fd19:0:0:1::2 }',
      'add element bridge nodenet nd_targets { "nnh-0000abcd" . 0xfd190000000000010000000000000002 }',
      'add element bridge nodenet allowed_sources6 { "nnh-0000abcd" . fe80::6e:c6ff:fe13:102 }',
      'add element bridge nodenet nd_targets { "nnh-0000abcd" . 0xfe80000000000000006ec6fffe130102 }',
    ]);
  });

  it('removes them tolerantly (add, then delete) in every set', () => {
    const script = lines(removeInstanceScript(rules));
    expect(script).toContain('delete element ip6 nodenet published_ports { tcp . 8080 }');
    expect(script).toContain('delete element bridge nodenet nd_targets { "nnh-0000abcd" . 0xfd190000000000010000000000000002 }');
    expect(
      lines(removeElementsScript({ ports: [], sources: [{ ifname: 'nnh-0000abcd', address: 'fd19:0:0:1::2' as Ipv6Address }] })),
    ).toEqual([
      'add element bridge nodenet allowed_sources6 { "nnh-0000abcd" . fd19:0:0:1::2 }',
      'delete element bridge nodenet allowed_sources6 { "nnh-0000abcd" . fd19:0:0:1::2 }',
      'add element bridge nodenet nd_targets { "nnh-0000abcd" . 0xfd190000000000010000000000000002 }',
      'delete element bridge nodenet nd_targets { "nnh-0000abcd" . 0xfd190000000000010000000000000002 }',
    ]);
  });

  it('finds conflicting keys per family', () => {
    const held = [{ protocol: 'tcp' as const, hostPort: 8080, address: 'fd19:0:0:1::9', instancePort: 80 }];
    expect(conflictingKeys(rules, held)).toEqual(held);
    expect(conflictingKeys({ ...rules, ipv6: undefined, ipv6LinkLocal: undefined }, held)).toEqual([]);
    expect(lines(addInstanceScript(rules, held))[0]).toBe('delete element ip6 nodenet published_ports { tcp . 8080 }');
  });

  it('reads a source back only when it is in allowed_sources6 and nd_targets both', () => {
    const set = (name: string, elem: unknown[]) =>
      JSON.stringify({ nftables: [{ set: { family: 'bridge', name, table: 'nodenet', elem } }] });
    const sources = set('allowed_sources6', [{ concat: ['nnh-1', 'fd19::2'] }, { concat: ['nnh-1', 'fd19::3'] }]);
    const targets = set('nd_targets', [{ concat: ['nnh-1', ipv6AsHex('fd19::2')] }]);
    expect(parseAllowedSources6(sources, targets)).toEqual([{ ifname: 'nnh-1', address: 'fd19::2' }]);
    expect(ipv6FromHex('0xfe80000000000000006ec6fffe130102')).toBe('fe80::6e:c6ff:fe13:102');
    expect(ipv6FromHex('0x1')).toBe('::1');
  });
});
