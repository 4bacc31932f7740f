/** The pure parts of reconciling: sysctl reads and drift, namespace identity, owned links and their deletion. */
import { describe, expect, it } from 'vitest';
import { parseIpLinks } from '../src/index.js';
import { formatNetnsId } from '../src/netns-identity.js';
import { DELETE_GROUP_BASE, classifyForDeletion, deleteLinksScript, ownedLinksOf, pickUnusedGroup } from '../src/scripts.js';
import {
  cniSysctls,
  describeSysctlRepair,
  parseSysctlOutput,
  sysctlDrift,
  sysctlKey,
  sysctlReadArgs,
} from '../src/sysctl.js';

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

// Captured from iproute2 6.1 `ip -j -d link show` (trimmed): a CNI, a veth pair (host end tagged), a TAP,
// a foreign bridge with another alias and one whose alias only contains the prefix.
const LINKS = parseIpLinks([
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK'], mtu: 65536, operstate: 'DOWN' },
  { ifindex: 2, ifname: 'nodenet0', flags: ['UP'], mtu: 1450, operstate: 'DOWN', ifalias: 'nodenet:cni', linkinfo: { info_kind: 'bridge' } },
  { ifindex: 3, ifname: 'nni-1', flags: ['M-DOWN'], mtu: 1450, operstate: 'DOWN', linkinfo: { info_kind: 'veth' } },
  { ifindex: 4, ifname: 'nnh-1', flags: ['UP'], mtu: 1450, operstate: 'UP', master: 'nodenet0', ifalias: 'nodenet:nni-1', linkinfo: { info_kind: 'veth', info_slave_kind: 'bridge' } },
  { ifindex: 5, ifname: 'nni-2', flags: [], mtu: 1450, operstate: 'DOWN', master: 'nodenet0', ifalias: 'nodenet:nni-2', linkinfo: { info_kind: 'tun', info_slave_kind: 'bridge' } },
  { ifindex: 6, ifname: 'br-x', flags: [], mtu: 1500, ifalias: 'someone:else' },
  { ifindex: 7, ifname: 'br-y', flags: [], mtu: 1500, ifalias: 'mine-not-nodenet:cni' },
]);

describe('owned links', () => {
  it('are the links whose alias starts with nodenet:, with kind, master (empty for none) and operstate', () => {
    expect(ownedLinksOf(LINKS)).toEqual([
      { name: 'nodenet0', ownerTag: 'nodenet:cni', kind: 'bridge', master: '', operstate: 'DOWN' },
      { name: 'nnh-1', ownerTag: 'nodenet:nni-1', kind: 'veth', master: 'nodenet0', operstate: 'UP' },
      { name: 'nni-2', ownerTag: 'nodenet:nni-2', kind: 'tun', master: 'nodenet0', operstate: 'DOWN' },
    ]);
  });

  it('deletion keeps tagged links, refuses untagged ones (naming their alias) and lets absent ones be, once each', () => {
    expect(classifyForDeletion(['nnh-1', 'nni-1', 'br-x', 'gone0', 'nni-2', 'nnh-1', 'lo'], LINKS)).toEqual({
      owned: ['nnh-1', 'nni-2'],
      foreign: [
        { name: 'nni-1', alias: undefined },
        { name: 'br-x', alias: 'someone:else' },
        { name: 'lo', alias: undefined },
      ],
      absent: ['gone0'],
    });
    expect(classifyForDeletion([], LINKS)).toEqual({ owned: [], foreign: [], absent: [] });
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
    expect(pickUnusedGroup(LINKS)).toBe(DELETE_GROUP_BASE);
    const taken = parseIpLinks([
      { ifindex: 1, ifname: 'a', flags: [], mtu: 1500, group: String(DELETE_GROUP_BASE) },
      { ifindex: 2, ifname: 'b', flags: [], mtu: 1500, group: String(DELETE_GROUP_BASE + 1) },
      { ifindex: 3, ifname: 'c', flags: [], mtu: 1500, group: 'default' },
    ]);
    expect(pickUnusedGroup(taken)).toBe(DELETE_GROUP_BASE + 2);
  });
});

describe('ownerTagOf: what counts as nodenet\'s link', () => {
  it('is the alias, or nodenet\'s naming scheme on the CNI (a create cut short before its alias line)', async () => {
    const { ownerTagOf } = await import('../src/scripts.js');
    const link = (ifname: string, extra: Record<string, unknown> = {}) => ({ ifname, ...extra }) as never;
    expect(ownerTagOf(link('nnh-0a1b2c3d', { alias: 'nodenet:nni-0a1b2c3d' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nnh-0a1b2c3d', { master: 'nodenet0' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nni-0a1b2c3d', { master: 'nodenet0' }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nnh-0a1b2c3d'))).toBeUndefined(); // not on the CNI
    expect(ownerTagOf(link('nnh-0a1b2c3d', { master: 'br0' }))).toBeUndefined();
    expect(ownerTagOf(link('nnh-0A1B2C3D', { master: 'nodenet0' }))).toBeUndefined();
    expect(ownerTagOf(link('veth123', { master: 'nodenet0' }))).toBeUndefined();
    expect(ownerTagOf(link('eth0', { alias: 'uplink' }))).toBeUndefined();
  });

  it('claims a TAP cut short between `tuntap add` and its tag (a tun named with a handle, on no bridge), never a veth end', async () => {
    const { ownerTagOf } = await import('../src/scripts.js');
    const link = (ifname: string, extra: Record<string, unknown> = {}) => ({ ifname, ...extra }) as never;
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'tun' } }))).toBe('nodenet:nni-0a1b2c3d');
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'veth' } }))).toBeUndefined();
    expect(ownerTagOf(link('nni-0a1b2c3d'))).toBeUndefined(); // kind unknown (no -d)
    expect(ownerTagOf(link('nnh-0a1b2c3d', { linkinfo: { kind: 'tun' } }))).toBeUndefined();
    expect(ownerTagOf(link('nni-0a1b2c3d', { linkinfo: { kind: 'tun' }, master: 'br0' }))).toBeUndefined();
    expect(ownerTagOf(link('tap0', { linkinfo: { kind: 'tun' } }))).toBeUndefined();
  });
});
