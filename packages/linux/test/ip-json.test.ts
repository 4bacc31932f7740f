import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, InternalError, parseIpv4Address } from '@nodenet/core';
import { cniSysctls, parseIpAddrs, parseIpLinks } from '../src/index.js';
import { hostInfoFor, pickDefaultRoute } from '../src/host-probe.js';
import { parseIpRoutes } from '../src/ip-json.js';
import { sysctlArgs } from '../src/sysctl.js';

// Captured from iproute2 6.1 (`ip -j addr show`, `ip -j -d link show`, `ip -j route ...`), trimmed.
const ADDRS = [
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    mtu: 65536,
    operstate: 'UNKNOWN',
    address: '00:00:00:00:00:00',
    addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host', label: 'lo', valid_life_time: 4294967295 }],
  },
  {
    ifindex: 3,
    ifname: 'nodenet0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1450,
    address: '02:6e:c6:13:01:01',
    addr_info: [
      { family: 'inet', local: '198.19.1.1', prefixlen: 24, broadcast: '198.19.1.255', scope: 'global', label: 'nodenet0' },
      { family: 'inet6', local: 'fe80::6e:c6ff:fe13:101', prefixlen: 64, scope: 'link' },
    ],
  },
  {
    ifindex: 5,
    link: 'nni-2',
    ifname: 'nnh-2',
    flags: ['NO-CARRIER', 'BROADCAST', 'MULTICAST', 'UP'],
    mtu: 1450,
    master: 'nodenet0',
    addr_info: [],
  },
  {
    ifindex: 9,
    ifname: 'u0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 9000,
    address: 'aa:bb:cc:00:00:01',
    addr_info: [
      { family: 'inet', local: '198.18.0.1', prefixlen: 24, scope: 'global' },
      { family: 'inet', local: '10.8.0.1', prefixlen: 16, scope: 'global', secondary: true },
      { valid_life_time: 4294967295, preferred_life_time: 4294967295 },
    ],
  },
];

describe('ip -j parsers', () => {
  it('reads links with addresses, skipping address entries without a local address', () => {
    const links = parseIpAddrs(ADDRS);
    expect(links.map((l) => l.ifname)).toEqual(['lo', 'nodenet0', 'nnh-2', 'u0']);
    expect(links[3]!.addresses).toEqual([
      { family: 'inet', local: '198.18.0.1', prefixlen: 24, secondary: false },
      { family: 'inet', local: '10.8.0.1', prefixlen: 16, secondary: true },
    ]);
    expect(links[2]!.master).toBe('nodenet0');
  });

  it('reads alias (ifalias) and link kinds from ip -d', () => {
    const [link] = parseIpLinks([
      {
        ifindex: 16,
        ifname: 'nni-t',
        flags: ['UP'],
        mtu: 1450,
        master: 'nodenet0',
        ifalias: 'nodenet:nni-t',
        linkinfo: { info_kind: 'tun', info_data: { type: 'tap' }, info_slave_kind: 'bridge' },
      },
    ]);
    expect(link).toMatchObject({ ifname: 'nni-t', alias: 'nodenet:nni-t', linkinfo: { kind: 'tun', slaveKind: 'bridge' } });
  });

  it('fails loudly on output it does not understand', () => {
    expect(() => parseIpLinks({})).toThrow(InternalError);
    expect(() => parseIpLinks([{ ifindex: 1, ifname: 'lo', mtu: '1500' }])).toThrow(/field mtu/);
    expect(() => parseIpRoutes([{ gateway: '1.2.3.4' }])).toThrow(/field dst/);
  });

  it('reads routes; an absent metric is 0', () => {
    expect(parseIpRoutes([{ dst: 'default', gateway: '198.18.0.100', dev: 'u0', flags: [] }])).toEqual([
      { dst: 'default', gateway: '198.18.0.100', dev: 'u0', metric: 0 },
    ]);
  });
});

describe('host probe', () => {
  const links = parseIpAddrs(ADDRS);

  it('finds the underlay link and its MTU; local networks are every IPv4 network except the CNI', () => {
    const info = hostInfoFor(links, parseIpv4Address('198.18.0.1', 'u'), 'nodenet0');
    expect(info.underlayInterface).toBe('u0');
    expect(info.underlayMtu).toBe(9000);
    expect(info.localNetworks.map((n) => `${n.interface} ${n.subnet.toString()}`)).toEqual([
      'lo 127.0.0.0/8',
      'u0 198.18.0.0/24',
      'u0 10.8.0.0/16',
    ]);
  });

  it('names what to set when the address is not on the node', () => {
    const probe = () => hostInfoFor(links, parseIpv4Address('198.18.0.7', 'u'), 'nodenet0');
    expect(probe).toThrow(FailedPreconditionError);
    expect(probe).toThrow(/198\.18\.0\.7 is not assigned.*198\.18\.0\.1 on u0.*underlayAddress.*--underlay-address/);
  });

  it('refuses the CNI address as underlay', () => {
    expect(() => hostInfoFor(links, parseIpv4Address('198.19.1.1', 'u'), 'nodenet0')).toThrow(/nodenet's own bridge/);
  });

  it('picks the default route with the lowest metric, and explains a missing one', () => {
    const routes = parseIpRoutes([
      { dst: 'default', gateway: '10.8.0.254', dev: 'u0', metric: 200 },
      { dst: '198.18.0.0/24', dev: 'u0', prefsrc: '198.18.0.1' },
      { dst: 'default', gateway: '198.18.0.100', dev: 'u0', metric: 100 },
    ]);
    expect(pickDefaultRoute(routes).gateway).toBe('198.18.0.100');
    expect(() => pickDefaultRoute([])).toThrow(FailedPreconditionError);
    expect(() => pickDefaultRoute([])).toThrow(/`underlayAddress` in the config or pass --underlay-address/);
  });
});

describe('sysctls', () => {
  it('writes forwarding, route_localnet and (optionally) no IPv6 on the CNI, in path form so dots in names stay literal', () => {
    expect(sysctlArgs(cniSysctls('br.1'))).toEqual([
      '-q',
      '-w',
      '-e',
      'net/ipv4/ip_forward=1',
      'net/ipv4/conf/br.1/route_localnet=1',
      'net/ipv6/conf/br.1/disable_ipv6=1',
    ]);
  });
});
