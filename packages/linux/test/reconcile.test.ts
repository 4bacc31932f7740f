/** The pure parts of reconciling on Linux: sysctl reads and drift, namespace identity, deleting several links at once. */
import { describe, expect, it } from 'vitest';
import { cniSysctls, deleteLinksScript, describeSysctlRepair, parseIpLinks, pickUnusedGroup, sysctlDrift } from '../src/index.js';
import { DELETE_GROUP_BASE } from '../src/link-scripts.js';
import { formatNetnsId } from '../src/netns-identity.js';
import { parseSysctlOutput, sysctlKey, sysctlReadArgs } from '../src/sysctl.js';

describe('sysctl reads', () => {
  it('reads in path form and keys values the way sysctl prints them (a dot in a name shows as /)', () => {
    expect(sysctlReadArgs(cniSysctls('br.1'))).toEqual([
      '-e',
      'net/ipv4/ip_forward',
      'net/ipv4/conf/br.1/route_localnet',
      'net/ipv6/conf/br.1/disable_ipv6',
    ]);
    expect(cniSysctls('br.1').map(sysctlKey)).toEqual([
      'net.ipv4.ip_forward',
      'net.ipv4.conf.br/1.route_localnet',
      'net.ipv6.conf.br/1.disable_ipv6',
    ]);
  });

  it('parses `key = value` lines (procps 4 output), ignoring anything else', () => {
    // Captured from `sysctl -e net/ipv4/conf/a.b/route_localnet net/ipv4/ip_forward net/ipv6/conf/nope/disable_ipv6`.
    const values = parseSysctlOutput('net.ipv4.conf.a/b.route_localnet = 0\nnet.ipv4.ip_forward = 1\n\n');
    expect([...values]).toEqual([
      ['net.ipv4.conf.a/b.route_localnet', '0'],
      ['net.ipv4.ip_forward', '1'],
    ]);
    expect(parseSysctlOutput('')).toEqual(new Map());
  });
});

describe('sysctl drift', () => {
  const settings = cniSysctls('nodenet0');
  const all = (v: string) => new Map(settings.map((s) => [sysctlKey(s), v]));

  it('is empty when every value is right', () => {
    expect(sysctlDrift(settings, all('1'))).toEqual([]);
  });

  it('lists each wrong value with what was found, and absent keys with found undefined', () => {
    const current = new Map([
      ['net.ipv4.ip_forward', '0'],
      ['net.ipv4.conf.nodenet0.route_localnet', '1'],
    ]);
    const drift = sysctlDrift(settings, current);
    expect(drift.map((d) => [sysctlKey(d.setting), d.found])).toEqual([
      ['net.ipv4.ip_forward', '0'],
      ['net.ipv6.conf.nodenet0.disable_ipv6', undefined],
    ]);
    expect(drift.map(describeSysctlRepair)).toEqual([
      'net.ipv4.ip_forward was 0: set to 1',
      'net.ipv6.conf.nodenet0.disable_ipv6 was missing: set to 1',
    ]);
  });

  it('compares values as written by the kernel (trimmed strings), so "1" matches only "1"', () => {
    expect(sysctlDrift(settings, all('2')).map((d) => d.found)).toEqual(['2', '2', '2']);
  });
});

describe('namespace identity', () => {
  it('is DEV:INODE in decimal, exact for large numbers', () => {
    expect(formatNetnsId(4n, 4026532177n)).toBe('4:4026532177');
    expect(formatNetnsId(2n ** 40n, 2n ** 63n + 1n)).toBe('1099511627776:9223372036854775809');
  });
});

describe('deleting several links', () => {
  it('moves them into one unused link group and deletes the group; a single link is deleted directly', () => {
    expect(deleteLinksScript(['nnh-1', 'nni-2'], 7).map((l) => l.args.join(' '))).toEqual([
      'link set dev nnh-1 group 7',
      'link set dev nni-2 group 7',
      'link del group 7',
    ]);
    expect(deleteLinksScript(['nnh-1'], 7).map((l) => l.args.join(' '))).toEqual(['link del dev nnh-1']);
  });

  it('picks a group no link is in', () => {
    expect(pickUnusedGroup(parseIpLinks([{ ifindex: 1, ifname: 'lo', flags: [], mtu: 65536 }]))).toBe(DELETE_GROUP_BASE);
    const taken = parseIpLinks([
      { ifindex: 1, ifname: 'a', flags: [], mtu: 1500, group: String(DELETE_GROUP_BASE) },
      { ifindex: 2, ifname: 'b', flags: [], mtu: 1500, group: String(DELETE_GROUP_BASE + 1) },
      { ifindex: 3, ifname: 'c', flags: [], mtu: 1500, group: 'default' },
    ]);
    expect(pickUnusedGroup(taken)).toBe(DELETE_GROUP_BASE + 2);
  });
});
