/**
 * Which peers the ovs backend's VXLAN overlay reaches: any subnet family (IPv4, IPv6 or both, carried by the
 * one flow-based tunnel port), over an IPv4 underlay. An IPv6 underlay is refused with a message saying what
 * works instead. host-gw (kernel routes, @nodenet/linux) is not limited by this.
 */
import { FailedPreconditionError, addressFamily, type HostInfo, type Ipv4Address, type NodeRecord } from '@nodenet/core';

/** A peer the ovs VXLAN overlay can reach: an IPv4 underlay address, subnets of either family. */
export type VxlanPeer = NodeRecord & { readonly underlayAddress: Ipv4Address };

const INSTEAD = 'use backend iproute2 (which runs VXLAN over an IPv6 underlay) or overlay mode host-gw';

/** Why the ovs VXLAN overlay cannot reach `peer`, or null when it can. */
export function vxlanPeerProblem(peer: NodeRecord): string | null {
  if (addressFamily(peer.underlayAddress) === 6) {
    return `peer ${peer.name} has the IPv6 underlay address ${peer.underlayAddress}: the ovs backend's VXLAN overlay runs over an IPv4 underlay only; ${INSTEAD}`;
  }
  if (!peer.subnet && !peer.ipv6Subnet) return `peer ${peer.name} has no instance subnet: give it an IPv4 or an IPv6 subnet`;
  return null;
}

export function isVxlanPeer(peer: NodeRecord): peer is VxlanPeer {
  return vxlanPeerProblem(peer) === null;
}

/** The peer as the ovs VXLAN overlay handles it, or FAILED_PRECONDITION saying why it cannot. */
export function vxlanPeerOf(peer: NodeRecord): VxlanPeer {
  const problem = vxlanPeerProblem(peer);
  if (problem !== null) throw new FailedPreconditionError(problem);
  return peer as VxlanPeer;
}

/** An IPv6 underlay cannot carry the ovs VXLAN overlay: refused when the overlay is made (the daemon's start). */
export function checkOvsVxlanUnderlay(host: HostInfo): void {
  if (addressFamily(host.underlayAddress) === 6) {
    throw new FailedPreconditionError(
      `the underlay address ${host.underlayAddress} is IPv6: the ovs backend's VXLAN overlay runs over an IPv4 underlay only; ${INSTEAD}`,
    );
  }
}
