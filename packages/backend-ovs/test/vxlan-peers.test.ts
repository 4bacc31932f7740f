import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, Ipv6Subnet, Subnet, parseIpv4Address, parseIpv6Address, type HostInfo } from '@nodenet/core';
import { checkOvsVxlanUnderlay, isVxlanPeer, vxlanPeerOf, vxlanPeerProblem } from '../src/vxlan-peers.js';

const v4 = parseIpv4Address('198.18.0.2', 'test');
const v6 = parseIpv6Address('2001:db8:18::2', 'test');

describe('which peers the ovs VXLAN overlay reaches', () => {
  it('any subnet family over an IPv4 underlay: IPv4-only, dual-stack and IPv6-only peers', () => {
    for (const peer of [
      { name: 'node-2', underlayAddress: v4, subnet: Subnet.of('198.19.2.0/24') },
      { name: 'node-2', underlayAddress: v4, subnet: Subnet.of('198.19.2.0/24'), ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') },
      { name: 'node-2', underlayAddress: v4, ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') },
    ]) {
      expect(vxlanPeerProblem(peer)).toBeNull();
      expect(isVxlanPeer(peer)).toBe(true);
      expect(vxlanPeerOf(peer)).toBe(peer);
    }
  });

  it('an IPv6 underlay is refused with FAILED_PRECONDITION, for a peer and for the node itself, saying what works instead', () => {
    const peer = { name: 'node-2', underlayAddress: v6, ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') };
    expect(() => vxlanPeerOf(peer)).toThrow(FailedPreconditionError);
    expect(vxlanPeerProblem(peer)).toBe(
      "peer node-2 has the IPv6 underlay address 2001:db8:18::2: the ovs backend's VXLAN overlay runs over an IPv4 underlay only; use backend iproute2 (which runs VXLAN over an IPv6 underlay) or overlay mode host-gw",
    );
    const host = { underlayAddress: v6, underlayInterface: 'eth0', underlayMtu: 1500, localNetworks: [] } as unknown as HostInfo;
    expect(() => checkOvsVxlanUnderlay(host)).toThrow(
      /the underlay address 2001:db8:18::2 is IPv6: the ovs backend's VXLAN overlay runs over an IPv4 underlay only/,
    );
    expect(() => checkOvsVxlanUnderlay({ ...host, underlayAddress: v4 })).not.toThrow();
  });
});
