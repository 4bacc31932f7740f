/**
 * The `network.NetworkAdmin` extension service: inspect the node (CNI, interfaces with their kernel state,
 * peers, last reconcile) and manage static peers at run time.
 */
import {
  InterfaceKind,
  Protocol,
  type Empty,
  type InspectRequest,
  type InspectResponse,
  type InterfaceInfo,
  type ListPeersResponse,
  type NetworkAdminServer,
  type Peer,
  type PeerStatus,
  type RemovePeerRequest,
} from '@nodenet/api';
import {
  FailedPreconditionError,
  StaticMembership,
  parseNodeName,
  parseNodeRecord,
  cniNetsOfRecord,
  describeOverlap,
  nodeSubnetsOf,
  firstNodeOverlap,
  subnetsHeld,
  type Dataplane,
  type HostInfo,
  type NodeNetwork,
  type NodeRecord,
  type Overlay,
} from '@nodenet/core';
import type { ClusterLink } from './cluster-link.js';
import type { DaemonConfig } from './config.js';
import type { DaemonLogger } from './logger.js';
import { unaryHandlers, type InFlight, type RpcObserver } from './network-server.js';

export interface AdminContext {
  readonly network: NodeNetwork;
  readonly cluster: ClusterLink;
  readonly config: DaemonConfig;
  readonly host: HostInfo;
  readonly dataplane: Dataplane;
  /** Says whether it can reach a peer (Overlay.validatePeer), whatever the backend. */
  readonly overlay: Overlay;
}

export function createAdminServer(ctx: AdminContext, logger: DaemonLogger, inFlight: InFlight, observer?: RpcObserver): NetworkAdminServer {
  const unary = unaryHandlers(logger, inFlight, observer);

  const peerStatuses = (): PeerStatus[] => {
    const programmed = new Set(ctx.cluster.sync.current().map((p) => p.name));
    return ctx.cluster.membership.peers().map((p) => ({ peer: toPeer(p), programmed: programmed.has(p.name) }));
  };

  const staticMembership = (): StaticMembership => {
    const m = ctx.cluster.membership;
    if (!(m instanceof StaticMembership)) {
      throw new FailedPreconditionError(`membership is ${m.type}: peers come from etcd; AddPeer and RemovePeer are for static membership`);
    }
    return m;
  };

  return {
    inspect: unary('Inspect', async (_req: InspectRequest): Promise<InspectResponse> => {
      const present = new Set((await ctx.dataplane.listOwnedLinks()).map((l) => l.name));
      const cni = ctx.network.cniRecord;
      const report = ctx.network.lastReconcile;
      const interfaces: InterfaceInfo[] = ctx.network.listInstances().map((r) => ({
        interfaceName: r.handle,
        hostInterfaceName: r.hostIfname,
        kind: r.kind === 'tap' ? InterfaceKind.TAP : InterfaceKind.VETH,
        ipAddress: r.address,
        ...(r.ipv6Address ? { ipv6Address: r.ipv6Address } : {}),
        portMappings: r.ports.map((m) => ({
          hostPort: m.hostPort,
          instancePort: m.instancePort,
          protocol: m.protocol === 'tcp' ? Protocol.TCP : Protocol.UDP,
          ...(m.hostAddress ? { hostAddress: m.hostAddress } : {}),
        })),
        ...(r.netns ? { netns: r.netns } : {}),
        ...(r.ifname ? { ifname: r.ifname } : {}),
        macAddress: r.mac,
        mtu: r.mtu,
        state: present.has(r.hostIfname) ? 'present' : 'missing',
        createdAt: r.createdAt,
      }));
      return {
        nodeName: ctx.config.nodeName,
        underlayAddress: ctx.host.underlayAddress,
        backend: ctx.config.backend,
        overlayMode: ctx.config.overlay.mode,
        ...(cni
          ? {
              cni: {
                name: cni.name,
                gateway: cni.gateway,
                subNetwork: cni.subnet,
                mtu: cni.mtu,
                macAddress: cni.mac,
                ...(cni.ipv6Gateway ? { ipv6Gateway: cni.ipv6Gateway, ipv6SubNetwork: cni.ipv6Subnet } : {}),
              },
            }
          : {}),
        interfaces,
        peers: peerStatuses(),
        ...(report
          ? {
              lastReconcile: {
                startedAt: report.startedAt,
                durationMs: report.durationMs,
                repairs: [...report.repairs],
                errors: [...report.errors],
              },
            }
          : {}),
      };
    }),
    addPeer: unary('AddPeer', async (req: Peer): Promise<Empty> => {
      const membership = staticMembership();
      const peer = parseNodeRecord(
        { name: req.name, underlayAddress: req.underlayAddress, subnet: req.subnet, ipv6Subnet: req.ipv6Subnet },
        'peer',
      );
      checkPeerAgainstNode(peer, ctx);
      await membership.addPeer(peer);
      await ctx.cluster.sync.update(membership.peers());
      return {};
    }),
    removePeer: unary('RemovePeer', async (req: RemovePeerRequest): Promise<Empty> => {
      const membership = staticMembership();
      await membership.removePeer(parseNodeName(req.name, 'name'));
      await ctx.cluster.sync.update(membership.peers());
      return {};
    }),
    listPeers: unary('ListPeers', async (_req: Empty): Promise<ListPeersResponse> => ({
      peers: peerStatuses(),
      membership: ctx.cluster.membership.type,
    })),
  };
}

/** A peer must not be this node, nor overlap its subnet or its underlay network. */
export function checkPeerAgainstNode(peer: NodeRecord, ctx: AdminContext): void {
  if (peer.name === ctx.config.nodeName) throw new FailedPreconditionError(`peer ${peer.name} is this node's own name`);
  if (peer.underlayAddress === ctx.host.underlayAddress)
    throw new FailedPreconditionError(`peer ${peer.name}: ${peer.underlayAddress} is this node's own underlay address`);
  const cni = ctx.network.cniRecord;
  const clash = firstNodeOverlap(peer, subnetsHeld({ host: ctx.host, ...(cni ? { own: nodeSubnetsOf(cniNetsOfRecord(cni)) } : {}) }));
  if (clash) throw new FailedPreconditionError(`peer ${peer.name}: subnet ${clash.subnet} ${describeOverlap(clash.held)}`);
  ctx.overlay.validatePeer(peer);
}

function toPeer(p: NodeRecord): Peer {
  return {
    name: p.name,
    underlayAddress: p.underlayAddress,
    // An IPv6-only peer's subnet field carries its IPv6 subnet (as the seed's fields do on an IPv6-only node).
    subnet: (p.subnet ?? p.ipv6Subnet)?.toString() ?? '',
    ...(p.ipv6Subnet ? { ipv6Subnet: p.ipv6Subnet.toString() } : {}),
  };
}
