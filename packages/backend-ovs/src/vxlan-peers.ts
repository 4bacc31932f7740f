/**
 * Which peers the ovs backend's VXLAN overlay reaches: any subnet family (IPv4, IPv6 or both, carried by the
 * one flow-based tunnel port) over an underlay of either family (the same as this node's: checkPeerIsOther).
 * host-gw (kernel routes, @nodenet/linux) has rules of its own (checkHostGwPeer).
 */
import { FailedPreconditionError, type NodeRecord } from '@nodenet/core';

/** A peer the ovs VXLAN overlay can reach. */
export type VxlanPeer = NodeRecord;

/** Why the ovs VXLAN overlay cannot reach `peer`, or null when it can. */
export function vxlanPeerProblem(peer: NodeRecord): string | null {
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
  return peer;
}
