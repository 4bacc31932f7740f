/**
 * Routes to peers' subnets, as both backends' overlays install them: every route carries `proto 78`, so what
 * nodenet owns is visible in the kernel (`ip route show proto 78`), listable for reconciliation, and deleted
 * without touching a route someone else made. host-gw (HostGwOverlay) is nothing but such routes, via each
 * peer's underlay address: the same for every backend, written once here.
 */
import {
  InternalError,
  Ipv6Subnet,
  Mutex,
  Subnet,
  checkHostGwPeer,
  addressFamily,
  parseIfName,
  parseUnderlayAddress,
  parseNetnsRef,
  sameNodeRecord,
  silentLogger,
  subnetFamily,
  subnetsOfNode,
  type IpSubnet,
  type HostInfo,
  type IfName,
  type IpAddress,
  type Logger,
  type NetnsRef,
  type NodeRecord,
  type Overlay,
  type PeerBatchResult,
  mergeBatchResults,
  throwIfFailed,
} from '@nodenet/core';
import { IpRunner, type IpLine } from './ip-batch.js';
import { runPeerBatch, type PeerLines } from './peer-batch.js';
import { unexpectedFailure } from './link-failures.js';
import { parseIpRoutes, type IpRoute } from './ip-json.js';

/**
 * The routing protocol number nodenet writes on the peer routes it installs (0x4e, 'N'), so ownership is
 * visible in the kernel (`ip route show proto 78`) and deletes never touch a route someone else made.
 */
export const ROUTE_PROTOCOL = 78;
export const ROUTE_PROTO_ARGS: readonly string[] = ['proto', String(ROUTE_PROTOCOL)];

/** Line ids of peer routes (shared by every overlay's scripts). */
export const ROUTE_LINE = {
  peerRoute: 'peer-route',
  deleteRoute: 'delete-route',
} as const;

export function deleteRouteLine(subnet: IpSubnet | string): IpLine {
  // `proto` makes the kernel match only nodenet's route to that subnet, whichever device it uses.
  return {
    id: ROUTE_LINE.deleteRoute,
    args: ['route', 'del', String(subnet), ...ROUTE_PROTO_ARGS],
    step: `delete the route to ${String(subnet)}`,
  };
}

/**
 * The `via` arguments of a next hop: `via ADDR` within a family, `via inet6 ADDR` for an IPv4 route over an
 * IPv6 underlay (RFC 5549; the kernel has no IPv6 route via an IPv4 next hop, so checkHostGwPeer refuses that).
 */
export function viaArgs(destination: IpSubnet, nextHop: string): string[] {
  const dstFamily = subnetFamily(destination);
  if (dstFamily === addressFamily(nextHop)) return ['via', nextHop];
  return ['via', addressFamily(nextHop) === 6 ? 'inet6' : 'inet', nextHop];
}

/** The subnets `previous` routed that `peer` does not (a changed peer's superseded routes). */
export function supersededSubnets(peer: NodeRecord, previous: NodeRecord | undefined): IpSubnet[] {
  if (!previous) return [];
  const now = new Set(subnetsOfNode(peer).map(String));
  return subnetsOfNode(previous).filter((s) => !now.has(s.toString()));
}

/** host-gw: a plain route to each of the peer's subnets via its underlay address (replaces a changed one). */
export function hostGwPeerLines(peer: NodeRecord, underlayLink: IfName, previous?: NodeRecord): IpLine[] {
  const lines: IpLine[] = supersededSubnets(peer, previous).map((s) => deleteRouteLine(s));
  for (const subnet of subnetsOfNode(peer)) {
    lines.push({
      id: ROUTE_LINE.peerRoute,
      args: ['route', 'replace', subnet.toString(), ...viaArgs(subnet, peer.underlayAddress), 'dev', underlayLink, ...ROUTE_PROTO_ARGS],
      step: `route ${subnet} via ${peer.underlayAddress} on ${underlayLink} (${peer.name})`,
    });
  }
  return lines;
}

export interface ProgrammedPeer {
  readonly subnet: IpSubnet;
  /** The route's next hop: the peer's network address (vxlan) or underlay address (host-gw). */
  readonly via?: IpAddress;
  readonly dev?: string;
}

/** A route's destination as a subnet of its family (a host route has no prefix in `ip -j` output). */
function routeDestination(dst: string): IpSubnet {
  if (dst.includes(':')) return Ipv6Subnet.parse(dst.includes('/') ? dst : `${dst}/128`, 'route destination');
  return Subnet.parse(dst.includes('/') ? dst : `${dst}/32`, 'route destination');
}

/** nodenet's routes from `ip -j route show table main proto 78` (the kernel leaves `protocol` out when filtering by it). */
export function programmedPeersOf(routes: readonly IpRoute[]): ProgrammedPeer[] {
  return routes.map((r) => ({
    subnet: routeDestination(r.dst),
    ...(r.gateway !== undefined ? { via: parseUnderlayAddress(r.gateway, 'route gateway') } : {}),
    ...(r.dev !== undefined ? { dev: r.dev } : {}),
  }));
}

/** The delete lines of nodenet's routes to subnets no wanted peer has, with a description of each for the log. */
export function staleRouteLines(wanted: readonly NodeRecord[], routes: readonly ProgrammedPeer[]): { lines: IpLine[]; removed: string[] } {
  const subnets = new Set(wanted.flatMap((p) => subnetsOfNode(p).map(String)));
  const lines: IpLine[] = [];
  const removed: string[] = [];
  for (const r of routes) {
    if (subnets.has(r.subnet.toString())) continue;
    lines.push(deleteRouteLine(r.subnet));
    removed.push(`route ${r.subnet}${r.via ? ` via ${r.via}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`);
  }
  return { lines, removed };
}

/** nodenet's routes (proto 78) in the main table, IPv4 and IPv6: two `ip -j route show` processes, side by side. */
export async function readProgrammedPeers(ip: IpRunner): Promise<ProgrammedPeer[]> {
  const args = ['route', 'show', 'table', 'main', 'proto', String(ROUTE_PROTOCOL)];
  const [v4, v6] = await Promise.all([ip.json(args, "list nodenet's routes"), ip.json(['-6', ...args], "list nodenet's IPv6 routes")]);
  return [...programmedPeersOf(parseIpRoutes(v4 ?? [])), ...programmedPeersOf(parseIpRoutes(v6 ?? []))];
}

export interface HostGwOverlayOptions {
  /** The node's underlay, from HostProbe.probeHost. */
  readonly host: HostInfo;
  /** The node namespace to manage: a name under /run/netns or a path. Default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
}

/**
 * host-gw: per peer one route via the peer's underlay address on the underlay link (peers must share this
 * node's L2 segment). No device, no per-packet overhead. One `ip -batch` per peer change.
 */
export class HostGwOverlay implements Overlay {
  readonly mode = 'host-gw' as const;
  readonly overhead = 0;
  private readonly host: HostInfo;
  private readonly underlayLink: IfName;
  private readonly ip: IpRunner;
  private readonly logger: Logger;
  private readonly mutex = new Mutex();
  /** What this object programmed, by peer name (to delete a changed peer's superseded route). */
  private readonly programmed = new Map<string, NodeRecord>();

  constructor(options: HostGwOverlayOptions) {
    this.host = options.host;
    this.underlayLink = parseIfName(options.host.underlayInterface, 'underlay interface');
    const netns: NetnsRef | undefined = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.ip = new IpRunner(netns);
    this.logger = options.logger ?? silentLogger;
  }

  /** Nothing to create: the routes leave by the underlay link. */
  async ensureEndpoint(_self: NodeRecord): Promise<void> {}

  validatePeer(peer: NodeRecord): void {
    checkHostGwPeer(this.host, peer);
  }

  async ensurePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.ensurePeers([peer]), peer);
  }

  async removePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.removePeers([peer]), peer);
  }

  /** Every peer's route in one `ip -batch`; a peer whose line failed is reported and not remembered. */
  ensurePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    return this.mutex.run(async () => {
      const invalid = new Map<string, Error>();
      const parts: PeerLines[] = [];
      for (const peer of peers) {
        try {
          this.validatePeer(peer);
        } catch (e) {
          invalid.set(peer.name, e as Error);
          continue;
        }
        const previous = this.programmed.get(peer.name);
        parts.push({
          peer,
          lines: hostGwPeerLines(peer, this.underlayLink, previous && !sameNodeRecord(previous, peer) ? previous : undefined),
        });
      }
      const result = mergeBatchResults(
        { failed: invalid },
        await this.runPeers(parts, peers.length === 1 ? `program peer ${peers[0]!.name}` : `program ${parts.length} peers`),
      );
      for (const { peer } of parts) if (!result.failed.has(peer.name)) this.programmed.set(peer.name, peer);
      this.logger.debug({ peers: parts.length, failed: result.failed.size }, 'peers programmed');
      return result;
    });
  }

  /** Every peer's route (and a changed peer's remembered one) deleted in one `ip -batch`. */
  removePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    return this.mutex.run(async () => {
      const parts = peers.map((peer) => {
        const remembered = this.programmed.get(peer.name);
        const subnets = [...subnetsOfNode(peer), ...supersededSubnets(peer, remembered)];
        return { peer, lines: subnets.map((s) => deleteRouteLine(s)) };
      });
      const result = await this.runPeers(parts, peers.length === 1 ? `remove peer ${peers[0]!.name}` : `remove ${peers.length} peers`);
      for (const peer of peers) if (!result.failed.has(peer.name)) this.programmed.delete(peer.name);
      return result;
    });
  }

  /** The routes nodenet installed (proto 78): the input of reconciliation. */
  listProgrammedPeers(): Promise<ProgrammedPeer[]> {
    return this.mutex.run(() => readProgrammedPeers(this.ip));
  }

  /** Removes nodenet's routes to subnets no wanted peer has (also ones left by vxlan mode); returns what it removed. */
  removeStalePeers(wanted: readonly NodeRecord[]): Promise<string[]> {
    return this.mutex.run(async () => {
      const { lines, removed } = staleRouteLines(wanted, await readProgrammedPeers(this.ip));
      await this.run(lines, 'remove stale peer routes');
      const names = new Set(wanted.map((p) => p.name));
      for (const name of [...this.programmed.keys()]) if (!names.has(name)) this.programmed.delete(name);
      if (removed.length > 0) this.logger.info({ removed }, 'stale overlay entries removed');
      return removed;
    });
  }

  private runPeers(parts: readonly PeerLines[], step: string): Promise<PeerBatchResult> {
    return runPeerBatch(
      this.ip,
      parts,
      step,
      new Set([ROUTE_LINE.deleteRoute]),
      (failure, line) => new InternalError(line?.step ?? step, failure.message || 'ip failed without a message'),
    );
  }

  private async run(lines: readonly IpLine[], step: string): Promise<void> {
    if (lines.length === 0) return;
    const unexpected = unexpectedFailure(await this.ip.batch(lines, { step, force: true }), lines, new Set([ROUTE_LINE.deleteRoute]));
    if (!unexpected) return;
    const { failure, line } = unexpected;
    throw new InternalError(line?.step ?? step, failure.message || 'ip failed without a message');
  }
}
