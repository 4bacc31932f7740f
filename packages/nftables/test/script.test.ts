import { describe, expect, it } from 'vitest';
import {
  InternalError,
  InvalidArgumentError,
  Subnet,
  type FilterBase,
  type IfName,
  type InstanceRules,
  type Ipv4Address,
  type Port,
  type PortMapping,
} from '@nodenet/core';
import { addInstanceScript, ensureBaseScript } from '../src/index.js';
import {
  checkedElements,
  clusterSubnetElements,
  fullRepair,
  removeElementsScript,
  removeListedElementsScript,
  repairScript,
  setClusterSubnetsScript,
  conflictingKeys,
  removeBaseScript,
  removeInstanceScript,
  removeListedScript,
} from '../src/script.js';

const base = (clusterSubnets: string[] = ['198.19.1.0/24', '198.19.2.0/24']): FilterBase => ({
  cniName: 'nodenet0' as IfName,
  ipv4: { subnet: Subnet.of('198.19.1.0/24'), gateway: '198.19.1.1' as Ipv4Address },
  clusterSubnets: clusterSubnets.map((s) => Subnet.of(s)),
});

const tcp = (hostPort: number, instancePort = hostPort): PortMapping => ({
  protocol: 'tcp',
  hostPort: hostPort as Port,
  instancePort: instancePort as Port,
});
const udp = (hostPort: number, instancePort = hostPort): PortMapping => ({
  protocol: 'udp',
  hostPort: hostPort as Port,
  instancePort: instancePort as Port,
});

const rules = (
  ports: PortMapping[] = [tcp(8080, 80), udp(8080, 80)],
  hostIfname = 'nnh-0000abcd',
  address = '198.19.1.2',
): InstanceRules => ({
  hostIfname: hostIfname as IfName,
  ipv4: address as Ipv4Address,
  ports,
});

const lines = (script: string) => script.trimEnd().split('\n');

describe('ensureBaseScript', () => {
  const script = ensureBaseScript(base());

  it('converges with idempotent adds and chain flushes, never flushing or deleting a table, map or the allowed set', () => {
    for (const l of lines(script)) {
      expect(l).not.toMatch(/^(delete|destroy) /);
      expect(l).not.toMatch(/^flush (table|ruleset|map)/);
      if (l.startsWith('flush set')) expect(l).toBe('flush set ip nodenet cluster_subnets');
      if (l.startsWith('add table')) expect(l).toMatch(/^add table (ip|bridge) nodenet$/);
    }
    expect(script).toContain('add map ip nodenet published_ports { type inet_proto . inet_service : ipv4_addr . inet_service; }');
    expect(script).toContain('add set bridge nodenet allowed_sources { type ifname . ipv4_addr; }');
    // Every chain that gets rules is flushed first, in the same script, before its rules.
    for (const chain of [
      'ip nodenet guard',
      'ip nodenet prerouting',
      'ip nodenet output',
      'ip nodenet postrouting',
      'bridge nodenet prerouting',
      'bridge nodenet instance_port',
    ]) {
      const all = lines(script);
      const flush = all.indexOf(`flush chain ${chain}`);
      expect(flush, chain).toBeGreaterThan(all.findIndex((l) => l.startsWith(`add chain ${chain}`)));
      const firstRule = all.findIndex((l) => l.startsWith(`add rule ${chain} `));
      expect(firstRule, chain).toBeGreaterThan(flush);
    }
  });

  it('touches only the two nodenet tables', () => {
    for (const l of lines(script)) expect(l).toMatch(/^(add|flush) (table|chain|map|set|rule|element) (ip|bridge) nodenet( |$)/);
  });

  it('DNATs through the map only for local destinations, in prerouting and output', () => {
    const dnat = 'fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @published_ports';
    expect(script).toContain(`add rule ip nodenet prerouting ${dnat}`);
    expect(script).toContain(`add rule ip nodenet output ${dnat}`);
  });

  it('masquerades hairpin traffic and egress outside the cluster, named by the CNI and subnet', () => {
    expect(script).toContain(
      'add rule ip nodenet postrouting ct status dnat oifname "nodenet0" ip saddr { 198.19.1.0/24, 127.0.0.0/8 } masquerade',
    );
    expect(script).toContain(
      'add rule ip nodenet postrouting oifname != "nodenet0" ip saddr 198.19.1.0/24 ip daddr != @cluster_subnets masquerade',
    );
    expect(script).toContain('add element ip nodenet cluster_subnets { 198.19.1.0/24, 198.19.2.0/24 }');
    expect(script).toContain('add rule ip nodenet guard iifname "nodenet0" ip daddr 127.0.0.0/8 drop');
  });

  it('guards nnh-* and nni-* bridge ports default-deny with the allowed pairs', () => {
    expect(script).toContain('add rule bridge nodenet prerouting iifname "nnh-*" jump instance_port');
    expect(script).toContain('add rule bridge nodenet prerouting iifname "nni-*" jump instance_port');
    const guard = lines(script).filter((l) => l.startsWith('add rule bridge nodenet instance_port'));
    expect(guard).toHaveLength(3);
    expect(guard[0]).toContain('iifname . ip saddr @allowed_sources accept');
    expect(guard[1]).toContain('arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . arp saddr ip @allowed_sources accept');
    expect(guard[2]).toMatch(/instance_port drop/);
  });

  it("with loopbackGuard 'bridge-ports' the guard is the head of instance_port and the ip table has no guard chain", () => {
    const onPorts = ensureBaseScript({ ...base(), loopbackGuard: 'bridge-ports' });
    expect(onPorts).not.toMatch(/chain ip nodenet guard/);
    const portRules = lines(onPorts).filter((l) => l.startsWith('add rule bridge nodenet instance_port'));
    expect(portRules).toHaveLength(4);
    expect(portRules[0]).toBe(
      'add rule bridge nodenet instance_port ip daddr 127.0.0.0/8 drop comment "no instance reaches the node\'s loopback"',
    );
    expect(portRules.slice(1)).toEqual(lines(script).filter((l) => l.startsWith('add rule bridge nodenet instance_port')));
    // Everything else is the same as with the default (ip-prerouting).
    const rest = (s: string) => lines(s).filter((l) => !/ip nodenet guard|bridge nodenet instance_port/.test(l));
    expect(rest(onPorts)).toEqual(rest(script));
    expect(ensureBaseScript({ ...base(), loopbackGuard: 'ip-prerouting' })).toBe(script);
    expect(() => ensureBaseScript({ ...base(), loopbackGuard: 'nowhere' as never })).toThrow(
      /loopbackGuard "nowhere" is not one of ip-prerouting, bridge-ports/,
    );
  });

  it('has the same rules whatever the cluster, and no per-port or per-instance rule', () => {
    const ruleLines = (s: string) => lines(s).filter((l) => l.startsWith('add rule'));
    const many = ensureBaseScript(base(Array.from({ length: 50 }, (_, i) => `198.19.${i + 1}.0/24`)));
    expect(ruleLines(many)).toEqual(ruleLines(script));
    expect(ruleLines(script)).toHaveLength(12);
  });

  it('rejects a CNI name that is not an interface name', () => {
    expect(() => ensureBaseScript({ ...base(), cniName: 'bad name"' as IfName })).toThrow(InvalidArgumentError);
  });
});

describe('clusterSubnetElements', () => {
  it('includes the own subnet, drops duplicates and subnets inside others, sorts numerically', () => {
    expect(clusterSubnetElements(base([]))).toEqual(['198.19.1.0/24']);
    expect(clusterSubnetElements(base(['198.19.10.0/24', '198.19.2.0/24', '198.19.1.0/24', '198.19.2.0/24']))).toEqual([
      '198.19.1.0/24',
      '198.19.2.0/24',
      '198.19.10.0/24',
    ]);
    expect(clusterSubnetElements(base(['198.19.0.0/16', '198.19.2.0/24']))).toEqual(['198.19.0.0/16']);
  });
});

describe('removeBaseScript', () => {
  it('deletes every table, adding them first so that absent ones are fine', () => {
    expect(lines(removeBaseScript())).toEqual([
      'add table ip nodenet',
      'delete table ip nodenet',
      'add table ip6 nodenet',
      'delete table ip6 nodenet',
      'add table bridge nodenet',
      'delete table bridge nodenet',
    ]);
  });
});

describe('addInstanceScript', () => {
  it('adds one map element per port mapping and the (port, address) pair', () => {
    expect(lines(addInstanceScript(rules()))).toEqual([
      'add element ip nodenet published_ports { tcp . 8080 : 198.19.1.2 . 80, udp . 8080 : 198.19.1.2 . 80 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('with no ports admits the address only; a TAP port (nni-*) is guarded too', () => {
    expect(lines(addInstanceScript(rules([], 'nni-0000abcd')))).toEqual([
      'add element bridge nodenet allowed_sources { "nni-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('deletes stale keys first when replacing', () => {
    const script = addInstanceScript(rules([tcp(8080, 80)]), [
      { protocol: 'tcp', hostPort: 8080, address: '198.19.1.9', instancePort: 80 },
    ]);
    expect(lines(script)).toEqual([
      'delete element ip nodenet published_ports { tcp . 8080 }',
      'add element ip nodenet published_ports { tcp . 8080 : 198.19.1.2 . 80 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it("grows with the instance's ports only", () => {
    const ports = Array.from({ length: 100 }, (_, i) => tcp(10000 + i));
    expect(lines(addInstanceScript(rules(ports)))).toHaveLength(2);
  });

  it('refuses what cannot be guarded or is malformed', () => {
    expect(() => addInstanceScript(rules(undefined, 'eth0'))).toThrow(InternalError);
    expect(() => addInstanceScript(rules(undefined, 'nnh-"; flush'))).toThrow(InvalidArgumentError);
    expect(() => addInstanceScript(rules(undefined, undefined, '198.19.01.2'))).toThrow(InvalidArgumentError);
    expect(() => addInstanceScript(rules([tcp(0)]))).toThrow(InvalidArgumentError);
    expect(() => addInstanceScript(rules([tcp(80), tcp(80, 81)]))).toThrow(InternalError);
    expect(() => addInstanceScript(rules([{ protocol: 'sctp' as never, hostPort: 80 as Port, instancePort: 80 as Port }]))).toThrow(
      InternalError,
    );
  });
});

describe('removeInstanceScript', () => {
  it('adds each element before deleting it, so that elements already gone are fine', () => {
    expect(lines(removeInstanceScript(rules()))).toEqual([
      'add element ip nodenet published_ports { tcp . 8080 : 198.19.1.2 . 80, udp . 8080 : 198.19.1.2 . 80 }',
      'delete element ip nodenet published_ports { tcp . 8080, udp . 8080 }',
      'add element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
      'delete element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });
});

describe('fallbacks from a listing', () => {
  const listedPorts = [
    { protocol: 'tcp' as const, hostPort: 8080, address: '198.19.1.2', instancePort: 80 },
    { protocol: 'udp' as const, hostPort: 8080, address: '198.19.1.9', instancePort: 80 },
    { protocol: 'tcp' as const, hostPort: 9090, address: '198.19.1.2', instancePort: 9090 },
  ];

  it('conflictingKeys: keys of the instance mapped elsewhere (other address or other instance port)', () => {
    expect(conflictingKeys(rules(), listedPorts)).toEqual([listedPorts[1]]);
    expect(conflictingKeys(rules([tcp(8080, 81)]), listedPorts)).toEqual([listedPorts[0]]);
    expect(conflictingKeys(rules([tcp(7000)]), listedPorts)).toEqual([]);
  });

  it("removeListedScript deletes only present elements that are the instance's own", () => {
    const script = removeListedScript(rules(), {
      publishedPorts: listedPorts,
      allowedSources: [{ ifname: 'nnh-0000abcd', address: '198.19.1.2' }],
    });
    expect(lines(script)).toEqual([
      'delete element ip nodenet published_ports { tcp . 8080 }',
      'delete element bridge nodenet allowed_sources { "nnh-0000abcd" . 198.19.1.2 }',
    ]);
  });

  it('removeListedScript is empty when nothing (or no table) is there', () => {
    expect(removeListedScript(rules(), { publishedPorts: null, allowedSources: null })).toBe('');
    expect(removeListedScript(rules(), { publishedPorts: [], allowedSources: [{ ifname: 'nnh-0000abcd', address: '198.19.1.3' }] })).toBe(
      '',
    );
  });
});

describe('repairScript', () => {
  it("of the full repair is the install script; a table's part covers that table only", () => {
    expect(repairScript(base(), fullRepair(base()))).toBe(ensureBaseScript(base()));
    const bridgeOnly = repairScript(base(), {
      tables: [{ family: 'bridge', flush: [], deleteChains: [], deleteSets: [], refill: ['instance_port'] }],
      clusterSubnets: false,
    });
    expect(lines(bridgeOnly)).toEqual([
      'add table bridge nodenet',
      'add set bridge nodenet allowed_sources { type ifname . ipv4_addr; }',
      'add chain bridge nodenet instance_port',
      'flush chain bridge nodenet instance_port',
      'add rule bridge nodenet instance_port iifname . ip saddr @allowed_sources accept comment "IPv4 from the port\'s own address"',
      'add rule bridge nodenet instance_port arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . arp saddr ip @allowed_sources accept comment "ARP for the port\'s own address"',
      'add rule bridge nodenet instance_port drop comment "default deny"',
    ]);
  });

  it('flushes, then deletes, then adds; never flushes the map or allowed_sources', () => {
    const script = lines(
      repairScript(base(), {
        tables: [
          {
            family: 'ip',
            flush: ['guard', 'extra'],
            deleteChains: ['extra'],
            deleteSets: [{ kind: 'map', name: 'published_ports' }],
            refill: ['guard'],
          },
        ],
        clusterSubnets: false,
      }),
    );
    expect(script.slice(0, 5)).toEqual([
      'flush chain ip nodenet guard',
      'flush chain ip nodenet extra',
      'delete chain ip nodenet extra',
      'delete map ip nodenet published_ports',
      'add table ip nodenet',
    ]);
    expect(script.filter((l) => /^flush (set|map)/.test(l))).toEqual([]);
  });

  it('refuses to write a listed name that is not a plain identifier', () => {
    const repair = (name: string) => ({
      tables: [{ family: 'ip' as const, flush: [name], deleteChains: [], deleteSets: [], refill: [] }],
      clusterSubnets: false,
    });
    expect(() => repairScript(base(), repair('x; flush ruleset'))).toThrow(InternalError);
    expect(() => repairScript(base(), repair('a"b'))).toThrow(InternalError);
    expect(repairScript(base(), repair('ok_name-1.x'))).toContain('flush chain ip nodenet ok_name-1.x');
  });
});

describe('setClusterSubnetsScript', () => {
  it('flushes and refills the set in one script, nested subnets dropped, sorted', () => {
    expect(lines(setClusterSubnetsScript([Subnet.of('198.19.10.0/24'), Subnet.of('198.19.0.0/16'), Subnet.of('10.0.0.0/8')]))).toEqual([
      'flush set ip nodenet cluster_subnets',
      'add element ip nodenet cluster_subnets { 10.0.0.0/8, 198.19.0.0/16 }',
    ]);
    expect(lines(setClusterSubnetsScript([]))).toEqual(['flush set ip nodenet cluster_subnets']);
  });
});

describe('removeElementsScript', () => {
  const port = (protocol: 'tcp' | 'udp', hostPort: number, address: string, instancePort = hostPort) => ({
    protocol,
    hostPort,
    address: address as Ipv4Address,
    instancePort,
  });
  const source = (ifname: string, address: string) => ({ ifname, address: address as Ipv4Address });

  it('adds each element before deleting it (absent ones are fine), duplicates once', () => {
    const script = removeElementsScript({
      ports: [port('tcp', 80, '198.19.1.2', 8080), port('udp', 53, '198.19.1.3'), port('tcp', 80, '198.19.1.2', 8080)],
      sources: [source('nnh-00000002', '198.19.1.2'), source('nni-00000003', '198.19.1.3')],
    });
    expect(lines(script)).toEqual([
      'add element ip nodenet published_ports { tcp . 80 : 198.19.1.2 . 8080, udp . 53 : 198.19.1.3 . 53 }',
      'delete element ip nodenet published_ports { tcp . 80, udp . 53 }',
      'add element bridge nodenet allowed_sources { "nnh-00000002" . 198.19.1.2, "nni-00000003" . 198.19.1.3 }',
      'delete element bridge nodenet allowed_sources { "nnh-00000002" . 198.19.1.2, "nni-00000003" . 198.19.1.3 }',
    ]);
    expect(lines(removeElementsScript({ ports: [], sources: [source('nnh-00000002', '198.19.1.2')] }))).toHaveLength(2);
  });

  it('the fallback deletes only elements present with the same value', () => {
    const script = removeListedElementsScript(
      {
        ports: [port('tcp', 80, '198.19.1.2', 8080), port('udp', 80, '198.19.1.2', 8080), port('tcp', 81, '198.19.1.2')],
        sources: [source('nnh-00000002', '198.19.1.2'), source('nnh-00000009', '198.19.1.9')],
      },
      {
        publishedPorts: [
          { protocol: 'tcp', hostPort: 80, address: '198.19.1.2', instancePort: 8080 },
          // Now mapped to another instance: not the given element, left alone.
          { protocol: 'udp', hostPort: 80, address: '198.19.1.7', instancePort: 8080 },
        ],
        allowedSources: [{ ifname: 'nnh-00000002', address: '198.19.1.2' }],
      },
    );
    expect(lines(script)).toEqual([
      'delete element ip nodenet published_ports { tcp . 80 }',
      'delete element bridge nodenet allowed_sources { "nnh-00000002" . 198.19.1.2 }',
    ]);
    expect(
      removeListedElementsScript({ ports: [port('tcp', 80, '198.19.1.2')], sources: [] }, { publishedPorts: null, allowedSources: null }),
    ).toBe('');
  });

  it('refuses malformed elements', () => {
    expect(() => checkedElements({ ports: [port('tcp', 0, '198.19.1.2')], sources: [] }, 'x')).toThrow(InvalidArgumentError);
    expect(() => checkedElements({ ports: [{ ...port('tcp', 1, '198.19.1.2'), protocol: 'sctp' as never }], sources: [] }, 'x')).toThrow(
      InternalError,
    );
    expect(() => checkedElements({ ports: [port('tcp', 1, '198.19.1.02')], sources: [] }, 'x')).toThrow(InvalidArgumentError);
    expect(() => checkedElements({ ports: [], sources: [source('nnh-"x', '198.19.1.2')] }, 'x')).toThrow(InvalidArgumentError);
  });
});
