import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, Ipv6Subnet, Subnet, parseIpv4Address, parseIpv6Address } from '@nodenet/core';
import { isVxlanPeer, vxlanPeerOf, vxlanPeerProblem } from '../src/vxlan-peers.js';

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

  it('over an IPv6 underlay too; a peer without any subnet is refused with FAILED_PRECONDITION', () => {
    const peer = { name: 'node-2', underlayAddress: v6, ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') };
    expect(vxlanPeerOf(peer)).toBe(peer);
    expect(() => vxlanPeerOf({ name: 'node-3', underlayAddress: v6 })).toThrow(FailedPreconditionError);
    expect(vxlanPeerProblem({ name: 'node-3', underlayAddress: v6 })).toBe(
      'peer node-3 has no instance subnet: give it an IPv4 or an IPv6 subnet',
    );
  });
});
