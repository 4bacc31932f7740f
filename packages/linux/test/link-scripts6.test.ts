// The IPv6 lines of the link scripts: the bridge's gateways, the instance end, deletes, the CNI sysctls.
import { describe, expect, it } from 'vitest';
import {
  CNI_NAME,
  Ipv6Subnet,
  Subnet,
  linkLocalForMac,
  macForAddress,
  type CniSpec,
  type IfName,
  type Ipv4Address,
  type Ipv6Address,
} from '@nodenet/core';
import { cniAddressLines, cniSysctls, deleteInstanceScript, instanceNamespaceScript, repairCniScript } from '../src/index.js';
import { sysctlKey } from '../src/sysctl.js';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';

const gateway = '198.19.1.1' as Ipv4Address;
const dual: CniSpec = {
  name: CNI_NAME,
  ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') },
  ipv6: { gateway: 'fd19:0:0:1::1' as Ipv6Address, subnet: Ipv6Subnet.of('fd19:0:0:1::/64') },
  mtu: 1450,
  mac: macForAddress(gateway),
};
const only6: CniSpec = { name: CNI_NAME, ipv6: dual.ipv6, mtu: 1450, mac: macForAddress('fd19:0:0:1::1') };
const args = (lines: { args: readonly string[] }[]) => lines.map((l) => l.args.join(' '));

describe('IPv6 link scripts', () => {
  it('gives the bridge its IPv6 gateway and a link-local address, both without DAD', () => {
    expect(args(cniAddressLines(dual))).toEqual([
      'address add 198.19.1.1/24 broadcast + dev nodenet0',
      'address add fd19:0:0:1::1/64 dev nodenet0 nodad',
      `address add ${linkLocalForMac(dual.mac)}/64 dev nodenet0 nodad`,
    ]);
    expect(args(cniAddressLines(only6))).toHaveLength(2);
  });

  it('repairs a missing IPv6 gateway and removes a stale global IPv6 address, leaving other link-local ones', () => {
    const current = {
      ifname: 'nodenet0',
      mtu: 1450,
      address: dual.mac,
      flags: ['UP'],
      addresses: [
        { family: 'inet', local: '198.19.1.1', prefixlen: 24 },
        { family: 'inet6', local: 'fd19:0:0:9::1', prefixlen: 64 },
        { family: 'inet6', local: linkLocalForMac(dual.mac), prefixlen: 64 },
        { family: 'inet6', local: 'fe80::99', prefixlen: 64 },
      ],
    };
    const found = repairCniScript(dual, current as never).map((r) => r.found);
    expect(found).toEqual([
      'stale address fd19:0:0:9::1/64 was on nodenet0: removed',
      'address fd19:0:0:1::1/64 was missing on nodenet0: added',
    ]);
  });

  it('addresses the instance end in every family, without DAD, with a default route per family', () => {
    const spec = instanceSpecFor(dual, 1, 5, { netns: 'pod' });
    expect(spec).toMatchObject({ ipv4: '198.19.1.5', ipv6: 'fd19:0:0:1::5' });
    expect(args(instanceNamespaceScript(spec))).toEqual([
      `link set dev ${spec.handle} name eth0`,
      'address add 198.19.1.5/24 broadcast + dev eth0',
      'address add fd19:0:0:1::5/64 dev eth0 nodad',
      'link set dev eth0 up',
      'link set dev lo up',
      'route add default via 198.19.1.1 dev eth0',
      'route add ::/0 via fd19:0:0:1::1 dev eth0',
    ]);
    const v6only = instanceSpecFor(only6, 2, 7, { netns: 'pod' });
    expect(args(instanceNamespaceScript(v6only)).filter((l) => l.includes('address add') || l.includes('route add'))).toEqual([
      'address add fd19:0:0:1::7/64 dev eth0 nodad',
      'route add ::/0 via fd19:0:0:1::1 dev eth0',
    ]);
  });

  it('flushes the neighbour entries of both addresses on delete', () => {
    const lines = deleteInstanceScript(
      { hostIfname: 'nnh-1' as IfName, address: '198.19.1.5' as Ipv4Address, ipv6Address: 'fd19:0:0:1::5' as Ipv6Address },
      CNI_NAME,
    );
    expect(args(lines).slice(1)).toEqual(['neigh flush to 198.19.1.5 dev nodenet0', 'neigh flush to fd19:0:0:1::5 dev nodenet0']);
  });

  it('turns IPv6 forwarding on and router advertisements and SLAAC off on the bridge only with IPv6', () => {
    const keyed = (ipv6: boolean) => Object.fromEntries(cniSysctls('nodenet0', ipv6).map((s) => [sysctlKey(s), s.value]));
    expect(keyed(true)).toMatchObject({
      'net.ipv6.conf.all.forwarding': '1',
      'net.ipv6.conf.nodenet0.accept_ra': '0',
      'net.ipv6.conf.nodenet0.autoconf': '0',
      'net.ipv6.conf.nodenet0.disable_ipv6': '0',
    });
    expect(keyed(false)).toMatchObject({ 'net.ipv6.conf.nodenet0.disable_ipv6': '1' });
    expect(keyed(false)['net.ipv6.conf.all.forwarding']).toBeUndefined();
  });
});
