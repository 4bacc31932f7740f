import { describe, expect, it } from 'vitest';
import { CNI_NAME, Ipv6Subnet, Subnet, macForAddress, parseIpv4Address, parseIpv6Address, type CniSpec } from '@nodenet/core';
import { cniRecordOf, instanceRecordOf, instanceSpecFor, instanceSpecMaker } from '../src/instance-specs.js';

const gateway = parseIpv4Address('198.19.3.1', 'gateway');
const cni: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.3.0/24') }, mtu: 1450, mac: macForAddress(gateway) };

describe('instance specs', () => {
  it('name a veth by its handle and host end, a TAP by its handle alone, as core does', () => {
    expect(instanceSpecFor(cni, 0xabcd, 7)).toEqual({
      handle: 'nni-0000abcd',
      hostIfname: 'nnh-0000abcd',
      kind: 'veth',
      address: '198.19.3.7',
      ipv4: '198.19.3.7',
      mac: '02:6e:c6:13:03:07',
      mtu: 1450,
      cni,
    });
    expect(instanceSpecFor(cni, 0x1_2345_6789, 9, { kind: 'tap' })).toMatchObject({
      handle: 'nni-23456789',
      hostIfname: 'nni-23456789',
      kind: 'tap',
    });
    expect(instanceSpecFor(cni, 1, 2, { netns: 'nnt-1-2' })).toMatchObject({ netns: 'nnt-1-2', ifname: 'eth0' });
  });

  it('a maker counts handles up from its base', () => {
    const make = instanceSpecMaker(cni, 0x5e000000);
    expect([make(2).handle, make(3, { ifname: 'x' }).handle]).toEqual(['nni-5e000001', 'nni-5e000002']);
  });

  it('records keep the namespace (and its identity) only for an instance placed in one', () => {
    const plain = instanceRecordOf(instanceSpecFor(cni, 1, 2), 'ignored');
    expect(plain).not.toHaveProperty('netns');
    expect(plain).not.toHaveProperty('netnsId');
    expect(plain).toMatchObject({ handle: 'nni-00000001', ports: [], mtu: 1450 });
    expect(instanceRecordOf(instanceSpecFor(cni, 1, 2, { netns: 'nnt-1-2', ifname: 'eth1' }), '4026532')).toMatchObject({
      netns: 'nnt-1-2',
      ifname: 'eth1',
      netnsId: '4026532',
    });
  });

  it("a CNI's record holds IPv4 in the seed fields and IPv6 beside it; an IPv6-only CNI's seed fields hold IPv6", () => {
    const ipv6 = { gateway: parseIpv6Address('fd19:0:0:3::1', 'gateway'), subnet: Ipv6Subnet.of('fd19:0:0:3::/64') };
    const { createdAt, ...ipv4Only } = cniRecordOf(cni);
    expect(ipv4Only).toEqual({ name: CNI_NAME, gateway, subnet: '198.19.3.0/24', mtu: 1450, mac: cni.mac });
    expect(Number.isNaN(Date.parse(createdAt))).toBe(false);
    expect(cniRecordOf({ ...cni, ipv6 })).toMatchObject({
      gateway,
      subnet: '198.19.3.0/24',
      ipv6Gateway: 'fd19:0:0:3::1',
      ipv6Subnet: 'fd19:0:0:3::/64',
    });
    const only = cniRecordOf({ name: CNI_NAME, ipv6, mtu: 1450, mac: cni.mac });
    expect(only).toMatchObject({ gateway: 'fd19:0:0:3::1', subnet: 'fd19:0:0:3::/64' });
    expect(only).not.toHaveProperty('ipv6Subnet');
  });
});
