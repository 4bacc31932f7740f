/**
 * The ovs backend's VXLAN overlay carries IPv4 only (its tunnel flows, VTEP neighbour entries and routes
 * through the CNI are IPv4): peers carrying IPv6, and an IPv6 underlay, are refused with a message saying
 * what works instead. host-gw (kernel routes, @nodenet/linux) is not limited by this.
 */
import { FailedPreconditionError, addressFamily, type HostInfo, type Ipv4Address, type NodeRecord, type Subnet } from '@nodenet/core';

/** A peer the ovs VXLAN overlay can reach: IPv4 underlay address and IPv4 subnet. */
export type Ipv4Peer = NodeRecord & { readonly underlayAddress: Ipv4Address; readonly subnet: Subnet };

const INSTEAD = 'use backend iproute2 (which carries IPv6 peers over VXLAN) or overlay mode host-gw';

/** Why the ovs VXLAN overlay cannot reach `peer`, or null when it can. */
export function ipv6PeerProblem(peer: NodeRecord): string | null {
  if (addressFamily(peer.underlayAddress) === 6) {
    return `peer ${peer.name} has the IPv6 underlay address ${peer.underlayAddress}: the ovs backend's VXLAN overlay runs over an IPv4 underlay only; ${INSTEAD}`;
  }
  if (peer.ipv6Subnet) {
    return `peer ${peer.name} has the IPv6 subnet ${peer.ipv6Subnet}: the ovs backend's VXLAN overlay does not carry IPv6 between nodes yet; ${INSTEAD}`;
  }
  if (!peer.subnet) return `peer ${peer.name} has no IPv4 subnet: the ovs backend's VXLAN overlay carries IPv4 only; ${INSTEAD}`;
  return null;
}

export function isIpv4Peer(peer: NodeRecord): peer is Ipv4Peer {
  return ipv6PeerProblem(peer) === null;
}

/** The peer as the ovs VXLAN overlay handles it, or FAILED_PRECONDITION saying why it cannot. */
export function ipv4PeerOf(peer: NodeRecord): Ipv4Peer {
  const problem = ipv6PeerProblem(peer);
  if (problem !== null) throw new FailedPreconditionError(problem);
  return peer as Ipv4Peer;
}

/** An IPv6 underlay cannot carry the ovs VXLAN overlay: refused when the overlay is made (the daemon's start). */
export function checkOvsVxlanUnderlay(host: HostInfo): void {
  if (addressFamily(host.underlayAddress) === 6) {
    throw new FailedPreconditionError(
      `the underlay address ${host.underlayAddress} is IPv6: the ovs backend's VXLAN overlay runs over an IPv4 underlay only; ${INSTEAD}`,
    );
  }
}
