/**
 * The ovs overlay: how this node's instances reach other nodes' subnets.
 *
 * vxlan (Antrea's model): one flow-based VXLAN port on the CNI bridge (`nodenet-tun`, remote_ip=flow, the
 * VNI as its key). Per peer, three flows carry its cookie (see flows.ts): one admits its tunnel packets,
 * two send traffic for its subnet to it by setting the tunnel destination. A set of peers coming or going
 * (PeerSync applies sets) is one OpenFlow bundle on the long-lived connection (OvsRunner.modifyFlows; the
 * dataplane's connection to the bridge, OvsSession.shared) plus one `ip -batch` for the node's own routes to
 * their subnets; no OVS tool runs for peers (flows are read back by flow stats, the netdev priming
 * packet-outs go over the same connection, the tunnel port through the OVSDB session). No port is added or
 * removed, so OVSDB and ovs-vswitchd's port configuration do not change with the peer set. Chosen over a
 * port per peer for that reason: peer churn is flow churn only, and the flows are found by cookie.
 * The node itself reaches peers' subnets through the kernel: a route `via PEER-NETWORK dev nodenet0 onlink
 * proto 78` and a permanent neighbour entry for that next hop (the peer's VTEP MAC), so such packets enter
 * the bridge from LOCAL and meet the same flows. IPv6 subnets the same way, in the same tunnel and batch:
 * per subnet of either family three flows, a route and a neighbour entry (no neighbour discovery crosses the
 * tunnel: instances resolve their gateway on the bridge, the node its next hop from the permanent entry).
 * The underlay is IPv4 or IPv6 (every node's the same family): over IPv6 the flows set and match the tunnel's
 * IPv6 fields, and (netdev) the uplink bridge holds the underlay's IPv6 address as it holds an IPv4 one.
 *
 * With the userspace datapath (netdev) the underlay interface is moved into an uplink bridge first (see
 * uplink.ts), once the first peer is programmed (with ovs-vsctl, once per node: bridges are made and removed
 * by the tool, as the dataplane's are).
 *
 * host-gw: no tunnel; the kernel routes peers' subnets via their underlay addresses (@nodenet/linux's
 * HostGwOverlay, the same as the iproute2 backend's), and leftovers of vxlan mode are removed.
 */
import {
  CNI_NAME,
  FailedPreconditionError,
  addressFamily,
  InternalError,
  InvalidArgumentError,
  Mutex,
  checkOverlaySettings,
  checkPeerForMode,
  checkPeerIsOther,
  checkVxlanUnderlay,
  parseIfName,
  parseNetnsRef,
  sameNodeRecord,
  silentLogger,
  subnetsOfNode,
  vtepMacOf,
  vxlanOverhead,
  type HostInfo,
  type IfName,
  type IpSubnet,
  type Logger,
  type NetnsRef,
  type NodeRecord,
  type Overlay,
  type OverlayMode,
  type PeerBatchResult,
  UnavailableError,
  allFailed,
  mergeBatchResults,
  throwIfFailed,
} from '@nodenet/core';
import {
  HostGwOverlay,
  IpRunner,
  ROUTE_LINE,
  ROUTE_PROTO_ARGS,
  commandInNamespace,
  readProgrammedPeers,
  staleRouteLines,
  supersededSubnets,
  deleteRouteLine,
  parseIpAddrs,
  parseIpLinks,
  runPeerBatch,
  unexpectedFailure,
  withNeighbourDeletes,
  type PeerLines,
  type IpBatchFailure,
  type IpLine,
} from '@nodenet/linux';
import { run } from '@nodenet/sys';
import { optionalOf } from '@nodenet/openvswitch';
import {
  COOKIE_CLASS,
  addFlowsScript,
  classCookieMatch,
  cookieClassOf,
  deleteCookiesScript,
  formatCookie,
  peerCookie,
  peerFlows,
  primingPacketOut,
  underlayOfPeerCookie,
} from './flows.js';
import { DATAPATH_TYPES, EXT, TUNNEL_OFPORT, TUNNEL_PORT, UPLINK_BRIDGE, type DatapathType } from './names.js';
import {
  cniSkeletonCommands,
  deleteBridgeCommands,
  tunnelColumns,
  tunnelPortOps,
  uplinkBridgeCommands,
  uplinkBridgeOf,
  type OvsState,
} from './ovsdb.js';
import { OvsRunner } from './ovs-runner.js';
import { checkOvsOptions, type OvsOptions } from './ovs-dataplane.js';
import {
  deleteGuardScript,
  guardScript,
  guardedDeviceOf,
  moveAddressingScript,
  parseRouteEntries,
  uplinkBridgeLinkScript,
  type RouteEntry,
} from './uplink.js';

export interface OvsOverlayOptions extends OvsOptions {
  readonly mode: OverlayMode;
  readonly vni: number;
  readonly port: number;
  /** The node's underlay, from HostProbe.probeHost. */
  readonly host: HostInfo;
}

import { isVxlanPeer, vxlanPeerOf, type VxlanPeer } from './vxlan-peers.js';

const DELETE_IDS: ReadonlySet<string> = new Set([ROUTE_LINE.deleteRoute, 'delete-neighbour']);
/**
 * Batches up to this size prime the userspace datapath's tunnel neighbour cache before they return (a
 * single new peer's first packet is not lost); larger ones (a join, a restore) prime in the background, so
 * the batch returns once its flows and routes are in.
 */
const PRIME_AWAITED_MAX = 16;
/** VTEP MACs (vtepMacOf) start with 02:6f. */
const VTEP_MAC_PREFIX = '02:6f:';

export class OvsOverlay implements Overlay {
  readonly mode: OverlayMode;
  readonly overhead: number;
  private readonly vni: number;
  private readonly port: number;
  private readonly host: HostInfo;
  private readonly datapathType: DatapathType;
  private readonly netns: NetnsRef | undefined;
  private readonly ovs: OvsRunner;
  private readonly ip: IpRunner;
  private readonly logger: Logger;
  private readonly mutex = new Mutex();
  private readonly options: OvsOverlayOptions;
  private hostGw: HostGwOverlay | undefined;
  /** The tunnel port's OpenFlow number (requested; read back in ensureEndpoint). */
  private tunnelOfport = TUNNEL_OFPORT;
  /** netdev: the uplink bridge has been converged by this object. */
  private uplinkReady = false;
  /**
   * The families this node's CNI carries (from ensureEndpoint's record; both until then). A peer's subnet of
   * another family is not programmed: no instance here could use it, and the CNI of an IPv4-only node has IPv6
   * turned off (the kernel refuses IPv6 routes through it).
   */
  private families = { ipv4: true, ipv6: true };
  /** What this object programmed, by peer name (to delete a changed peer's superseded entries). */
  private readonly programmed = new Map<string, VxlanPeer>();

  constructor(options: OvsOverlayOptions) {
    checkOverlaySettings(options);
    if (!DATAPATH_TYPES.includes(options.datapathType)) {
      throw new InvalidArgumentError('ovs.datapathType', `'${String(options.datapathType)}' is not a datapath type: use system or netdev`);
    }
    checkOvsOptions(options);
    this.options = options;
    this.mode = options.mode;
    this.overhead = options.mode === 'vxlan' ? vxlanOverhead(options.host.underlayAddress) : 0;
    this.vni = options.vni;
    this.port = options.port;
    this.host = options.host;
    this.datapathType = options.datapathType;
    this.netns = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.ovs = new OvsRunner({
      db: options.db,
      runDir: options.runDir,
      ...(options.timeoutSeconds ? { timeoutSeconds: options.timeoutSeconds } : {}),
    });
    this.ip = new IpRunner(this.netns);
    this.logger = options.logger ?? silentLogger;
  }

  /** Closes the long-lived OVSDB and OpenFlow connections (the daemon's exit closes them too). */
  close(): void {
    this.ovs.close();
  }

  // ---------------------------------------------------------------------------------------------------
  // Endpoint

  ensureEndpoint(self: NodeRecord): Promise<void> {
    return this.mutex.run(async () => {
      if (this.mode === 'host-gw') {
        await this.removeVxlanLeftovers();
        await (await this.hostGwOverlay()).ensureEndpoint(self);
        return;
      }
      checkVxlanUnderlay(self, this.host);
      this.families = { ipv4: self.subnet !== undefined, ipv6: self.ipv6Subnet !== undefined };
      const [state, cni] = await Promise.all([
        this.ovs.readState('read OVSDB for the overlay'),
        this.ip.json(['link', 'show', 'dev', CNI_NAME], `read ${CNI_NAME}`),
      ]);
      // The bridge normally exists (the CNI is created first); after a reboot the overlay may come first.
      if (!state.bridges.has(CNI_NAME)) await this.ovs.vsctl(cniSkeletonCommands(CNI_NAME, this.datapathType), `create ${CNI_NAME}`);
      const tunnel = state.interfaces.get(TUNNEL_PORT);
      const wanted = tunnelColumns({ vni: this.vni, port: this.port });
      const tunnelRight =
        tunnel !== undefined &&
        tunnel.bridge === CNI_NAME &&
        tunnel.type === wanted['type'] &&
        Object.entries(wanted).every(([k, v]) => !k.startsWith('options:') || tunnel.options[k.slice('options:'.length)] === v) &&
        tunnel.externalIds[EXT.owner] !== undefined;
      if (!tunnelRight) {
        const onBridge = tunnel?.bridge === CNI_NAME;
        if (tunnel !== undefined && !onBridge)
          await this.ovs.removePorts(tunnel.bridge ?? CNI_NAME, [TUNNEL_PORT], `move the tunnel port to ${CNI_NAME}`);
        await this.ovs.transactOps(tunnelPortOps(CNI_NAME, { vni: this.vni, port: this.port }, onBridge), 'create the tunnel port');
        this.logger.info(
          { port: TUNNEL_PORT, vni: this.vni, udp: this.port, datapath: this.datapathType },
          tunnel ? 'tunnel port repaired' : 'tunnel port created',
        );
      }
      this.tunnelOfport = tunnelRight && tunnel.ofport !== null && tunnel.ofport > 0 ? tunnel.ofport : await this.readTunnelOfport();
      // Routes through the CNI are onlink, which the kernel refuses on a device that is down.
      const link = cni === null ? undefined : parseIpLinks(cni)[0];
      if (link && !link.flags.includes('UP'))
        await this.ip.batch([{ id: 'cni-up', args: ['link', 'set', 'dev', CNI_NAME, 'up'], step: `bring ${CNI_NAME} up` }], {
          step: `bring ${CNI_NAME} up`,
        });
      if (this.datapathType === 'netdev' && uplinkBridgeOf(state) !== undefined) await this.ensureUplink(state);
    });
  }

  private async readTunnelOfport(): Promise<number> {
    const n = optionalOf(await this.ovs.interfaceColumn(TUNNEL_PORT, 'ofport', 'read the tunnel port number'));
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
      throw new InternalError(
        'create the tunnel port',
        `ovs-vswitchd gave ${TUNNEL_PORT} no usable port number (${JSON.stringify(n ?? null)}): check its log (is VXLAN supported by this datapath?)`,
      );
    }
    return n;
  }

  private async hostGwOverlay(): Promise<HostGwOverlay> {
    if (this.hostGw) return this.hostGw;
    const o = this.options;
    this.hostGw = new HostGwOverlay({ host: this.host, ...(o.netns === undefined ? {} : { netns: o.netns }), logger: this.logger });
    return this.hostGw;
  }

  // ---------------------------------------------------------------------------------------------------
  // Peers

  validatePeer(peer: NodeRecord): void {
    checkPeerForMode(this.mode, this.host, peer);
    if (this.mode === 'vxlan') vxlanPeerOf(peer);
  }

  async ensurePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.ensurePeers([peer]), peer);
  }

  async removePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.removePeers([peer]), peer);
  }

  /**
   * Every peer's flows in one OpenFlow bundle (atomic) on the long-lived connection, and their kernel routes
   * and neighbour entries in one `ip -batch`, side by side. A peer whose flows or lines failed is reported
   * and not remembered as programmed (flows are replaced by cookie on the retry, lines are `replace`).
   */
  ensurePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    if (this.mode === 'host-gw') return this.hostGwOverlay().then((o) => o.ensurePeers(peers));
    return this.mutex.run(async () => {
      const started = performance.now();
      const invalid = new Map<string, Error>();
      const valid: VxlanPeer[] = [];
      for (const peer of peers) {
        try {
          checkPeerIsOther(this.host, peer);
          valid.push(vxlanPeerOf(peer));
        } catch (e) {
          invalid.set(peer.name, e as Error);
        }
      }
      if (valid.length === 0) return { failed: invalid };
      if (this.datapathType === 'netdev' && !this.uplinkReady) {
        try {
          await this.ensureUplink();
        } catch (e) {
          return mergeBatchResults({ failed: invalid }, allFailed(valid, e));
        }
      }
      const flows: { peer: VxlanPeer; script: string }[] = [];
      const lines: PeerLines[] = [];
      for (const peer of valid) {
        const previous = this.programmed.get(peer.name);
        const stale = previous && !sameNodeRecord(previous, peer) ? previous : undefined;
        const carried = this.carriedPart(peer);
        const script =
          (stale && stale.underlayAddress !== peer.underlayAddress ? deleteCookiesScript([peerCookie(stale.underlayAddress)]) : '') +
          // Replacing by cookie first drops flows of this peer that no longer apply (e.g. another subnet).
          deleteCookiesScript([peerCookie(peer.underlayAddress)]) +
          (carried.subnet || carried.ipv6Subnet ? addFlowsScript(peerFlows(carried, this.tunnelOfport)) : '');
        flows.push({ peer, script });
        lines.push({
          peer,
          lines: [...supersededSubnets(peer, stale).flatMap(subnetRemovalLines), ...peerRouteLines(carried)],
        });
      }
      const step = valid.length === 1 ? `program peer ${valid[0]!.name}` : `program ${valid.length} peers`;
      const [flowResult, ipResult] = await Promise.all([
        this.bundlePeerFlows(flows, `${step}: flows`),
        this.runPeerLines(lines, `${step}: routes`),
      ]);
      const result = mergeBatchResults({ failed: invalid }, flowResult, ipResult);
      const done = valid.filter((p) => !result.failed.has(p.name));
      for (const peer of done) this.programmed.set(peer.name, peer);
      if (this.datapathType === 'netdev' && done.length > 0) {
        if (done.length <= PRIME_AWAITED_MAX) await this.primeTunnelNeighbours(done);
        else void this.primeTunnelNeighbours(done);
      }
      this.logger.debug(
        { peers: valid.length, failed: result.failed.size, ms: Math.round((performance.now() - started) * 10) / 10 },
        'peers programmed',
      );
      return result;
    });
  }

  /** Every peer's flows deleted (by cookie) in one bundle, their routes and neighbour entries in one `ip -batch`. */
  removePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    if (this.mode === 'host-gw') return this.hostGwOverlay().then((o) => o.removePeers(peers));
    return this.mutex.run(async () => {
      const batch = peers.map((peer) => {
        // A peer on an IPv6 underlay was never programmed by this overlay (ensurePeers refuses it); its remembered record may have been.
        const records: VxlanPeer[] = isVxlanPeer(peer) ? [peer] : [];
        const remembered = this.programmed.get(peer.name);
        if (remembered && !sameNodeRecord(remembered, peer)) records.push(remembered);
        return { peer, records };
      });
      const step = peers.length === 1 ? `remove peer ${peers[0]!.name}` : `remove ${peers.length} peers`;
      const [flowResult, ipResult] = await Promise.all([
        this.deletePeerFlows(
          batch.flatMap((b) => b.records.map((r) => peerCookie(r.underlayAddress))),
          `${step}: flows`,
        ).then(
          () => ({ failed: new Map<string, Error>() }),
          (e: unknown) => allFailed(peers, e),
        ),
        this.removePeerLines(
          batch.map((b) => ({ peer: b.peer, lines: b.records.flatMap(removeRouteLines) })),
          `${step}: routes`,
        ),
      ]);
      const result = mergeBatchResults(flowResult, ipResult);
      for (const peer of peers) if (!result.failed.has(peer.name)) this.programmed.delete(peer.name);
      return result;
    });
  }

  /** The peer with only the subnets of the families this node carries. */
  private carriedPart(peer: VxlanPeer): VxlanPeer {
    const { subnet, ipv6Subnet, ...rest } = peer;
    return {
      ...rest,
      ...(subnet && this.families.ipv4 ? { subnet } : {}),
      ...(ipv6Subnet && this.families.ipv6 ? { ipv6Subnet } : {}),
    };
  }

  /**
   * The peers' flow scripts as one bundle. A bundle is all or nothing: when it is refused, each peer's
   * flows go again in a bundle of their own, so one bad peer does not hold the others back (unless the
   * switch cannot be reached at all: then every peer failed).
   */
  private async bundlePeerFlows(flows: readonly { peer: NodeRecord; script: string }[], step: string): Promise<PeerBatchResult> {
    if (flows.length === 0) return { failed: new Map() };
    try {
      await this.ovs.modifyFlows(CNI_NAME, flows.map((f) => f.script).join(''), step);
      return { failed: new Map() };
    } catch (e) {
      if (flows.length === 1 || e instanceof UnavailableError)
        return allFailed(
          flows.map((f) => f.peer),
          e,
        );
    }
    const failed = new Map<string, Error>();
    for (const { peer, script } of flows) {
      try {
        await this.ovs.modifyFlows(CNI_NAME, script, `program the flows of peer ${peer.name}`);
      } catch (e) {
        failed.set(peer.name, e as Error);
      }
    }
    return { failed };
  }

  /** Removal lines; a batch of several peers reads the neighbour table once instead of a flush per peer. */
  private async removePeerLines(parts: readonly PeerLines[], step: string): Promise<PeerBatchResult> {
    if (parts.length <= 1) return this.runPeerLines(parts, step);
    try {
      return await this.runPeerLines(await withNeighbourDeletes(this.ip, CNI_NAME, parts, 'delete-neighbour'), step);
    } catch (e) {
      return allFailed(
        parts.map((p) => p.peer),
        e,
      );
    }
  }

  private runPeerLines(parts: readonly PeerLines[], step: string): Promise<PeerBatchResult> {
    return runPeerBatch(this.ip, parts, step, DELETE_IDS, (f, line) => this.explainIpFailure(f, line, step));
  }

  /**
   * netdev: one packet-out per peer, all of them back to back on the bridge's OpenFlow connection with one
   * barrier; a failure is logged (only a first packet is at stake).
   */
  private async primeTunnelNeighbours(peers: readonly VxlanPeer[]): Promise<void> {
    const step =
      peers.length === 1 ? `resolve the underlay MAC of peer ${peers[0]!.name}` : `resolve the underlay MACs of ${peers.length} peers`;
    await this.ovs
      .packetOuts(
        CNI_NAME,
        peers.map((p) => primingPacketOut(p.underlayAddress, this.tunnelOfport)),
        step,
      )
      .catch((e: unknown) =>
        this.logger.warn({ peers: peers.length, err: (e as Error).message }, 'could not prime the tunnel neighbour cache'),
      );
  }

  /**
   * Removes what nodenet programmed for peers not in `wanted`: peer flows (found by cookie), routes with
   * `proto 78` to other subnets, and VTEP neighbour entries on the CNI no wanted peer uses.
   */
  removeStalePeers(wanted: readonly NodeRecord[]): Promise<readonly string[]> {
    if (this.mode === 'host-gw') {
      return this.hostGwOverlay().then(async (o) => [
        ...(await o.removeStalePeers(wanted)),
        ...(await this.mutex.run(() => this.removeAllPeerFlows())),
      ]);
    }
    return this.mutex.run(async () => {
      const [dump, routes, neighJson] = await Promise.all([
        this.dumpPeerFlows(),
        readProgrammedPeers(this.ip),
        this.ip.json(['neigh', 'show', 'dev', CNI_NAME], `list the neighbour entries on ${CNI_NAME}`),
      ]);
      const reachable = wanted.filter(isVxlanPeer);
      const wantedCookies = new Set(reachable.map((p) => peerCookie(p.underlayAddress)));
      const nextHops = new Set(reachable.flatMap((p) => subnetsOfNode(p).map((s) => s.network as string)));
      const cookies = dump.filter((c) => !wantedCookies.has(c));
      const stale = staleRouteLines(reachable, routes);
      const removed: string[] = [...cookies.map((c) => `flows of peer ${this.peerOfCookie(c)}`), ...stale.removed];
      const lines: IpLine[] = [...stale.lines];
      for (const n of neighboursOf(neighJson)) {
        if (nextHops.has(n.dst) || !n.lladdr?.toLowerCase().startsWith(VTEP_MAC_PREFIX) || !n.state.includes('PERMANENT')) continue;
        lines.push(deleteNeighbourLine(n.dst));
        removed.push(`neighbour ${n.dst} lladdr ${n.lladdr}`);
      }
      await Promise.all([this.deletePeerFlows(cookies, 'remove stale peer flows'), this.runIp(lines, 'remove stale peer routes')]);
      const names = new Set(wanted.map((p) => p.name));
      for (const name of [...this.programmed.keys()]) if (!names.has(name)) this.programmed.delete(name);
      if (removed.length > 0) this.logger.info({ removed }, 'stale overlay entries removed');
      return removed;
    });
  }

  /** A peer cookie for the log: its underlay address (IPv4), or the cookie (over IPv6 it holds the last 32 bits). */
  private peerOfCookie(cookie: bigint): string {
    return addressFamily(this.host.underlayAddress) === 6 ? `cookie ${formatCookie(cookie)}` : underlayOfPeerCookie(cookie);
  }

  private async dumpPeerFlows(): Promise<bigint[]> {
    try {
      const flows = await this.ovs.dumpFlows(CNI_NAME, classCookieMatch(COOKIE_CLASS.peer), 'list the peer flows');
      return [...new Set(flows.map((f) => f.cookie))].filter((c) => cookieClassOf(c) === COOKIE_CLASS.peer);
    } catch (e) {
      if (OvsRunner.isUnreachable(e) && !(await this.ovs.readState('check the CNI bridge')).bridges.has(CNI_NAME)) return [];
      throw e;
    }
  }

  private async deletePeerFlows(cookies: readonly bigint[], step: string): Promise<void> {
    if (cookies.length === 0) return;
    try {
      await this.ovs.modifyFlows(CNI_NAME, deleteCookiesScript(cookies), step);
    } catch (e) {
      if (OvsRunner.isUnreachable(e) && !(await this.ovs.readState('check the CNI bridge')).bridges.has(CNI_NAME)) return;
      throw e;
    }
  }

  private async removeAllPeerFlows(): Promise<string[]> {
    const cookies = await this.dumpPeerFlows();
    await this.deletePeerFlows(cookies, 'remove peer flows left from vxlan mode');
    return cookies.map((c) => `flows of peer ${this.peerOfCookie(c)} (vxlan mode)`);
  }

  // ---------------------------------------------------------------------------------------------------
  // vxlan leftovers in host-gw mode

  /** The tunnel port, peer flows, the CNI's VTEP neighbour entries and (netdev) the uplink bridge of an earlier vxlan configuration. */
  private async removeVxlanLeftovers(): Promise<void> {
    const state = await this.ovs.readState('read OVSDB for vxlan leftovers');
    const tunnel = state.interfaces.get(TUNNEL_PORT);
    if (tunnel?.externalIds[EXT.owner] !== undefined && tunnel.bridge) {
      await this.ovs.removePorts(tunnel.bridge, [TUNNEL_PORT], 'remove the tunnel port left from vxlan mode');
      this.logger.info({ port: TUNNEL_PORT }, 'overlay mode is host-gw: removed the tunnel port left from vxlan mode');
    }
    if (uplinkBridgeOf(state) !== undefined) await this.dismantleUplink(state);
  }

  // ---------------------------------------------------------------------------------------------------
  // netdev uplink

  /** The underlay interface: the port nodenet moved into the uplink bridge, else the host's underlay link. */
  private uplinkOf(state: OvsState): IfName {
    const moved = [...state.interfaces.values()].find((i) => i.bridge === UPLINK_BRIDGE && i.externalIds[EXT.uplinkOf] === UPLINK_BRIDGE);
    if (moved) return parseIfName(moved.name, 'uplink interface');
    if (this.host.underlayInterface === UPLINK_BRIDGE) {
      throw new FailedPreconditionError(
        `the underlay address ${this.host.underlayAddress} is on ${UPLINK_BRIDGE}, but OVSDB records no interface moved into it: add the node's underlay interface back (ovs-vsctl add-port ${UPLINK_BRIDGE} IFACE -- set Interface IFACE external_ids:${EXT.uplinkOf}=${UPLINK_BRIDGE}) or move the address back to it`,
      );
    }
    return parseIfName(this.host.underlayInterface, 'underlay interface');
  }

  /**
   * Converges the uplink: the bridge with the underlay interface as its port and that interface's MAC,
   * the interface's IPv4 addresses and routes on the bridge's internal port, and the guard that keeps the
   * kernel from also processing what arrives on the interface. Each step reads first and writes only what differs.
   */
  private async ensureUplink(known?: OvsState): Promise<void> {
    const [state, addrs, routes, guard] = await Promise.all([
      known ? Promise.resolve(known) : this.ovs.readState('read OVSDB for the uplink'),
      this.ip.json(['-d', 'addr', 'show'], 'read the node addresses'),
      this.readMainRoutes(),
      this.readGuard(),
    ]);
    const uplink = this.uplinkOf(state);
    let links = parseIpAddrs(addrs ?? []);
    const uplinkLink = links.find((l) => l.ifname === uplink);
    if (!uplinkLink?.address)
      throw new FailedPreconditionError(`the underlay interface ${uplink} does not exist on this node: check the underlay configuration`);
    const bridge = uplinkBridgeOf(state);
    const port = state.interfaces.get(uplink);
    const bridgeRight =
      bridge !== undefined &&
      port?.bridge === UPLINK_BRIDGE &&
      bridge.otherConfig['hwaddr']?.toLowerCase() === uplinkLink.address.toLowerCase() &&
      state.interfaces.get(UPLINK_BRIDGE)?.mtuRequest === uplinkLink.mtu;
    if (state.bridges.has(UPLINK_BRIDGE) && bridge === undefined) {
      throw new FailedPreconditionError(
        `an Open vSwitch bridge named ${UPLINK_BRIDGE} exists but was not made by nodenet: remove or rename it (nodenet needs the name for the userspace datapath's uplink)`,
      );
    }
    if (!bridgeRight) {
      await this.ovs.vsctl(
        uplinkBridgeCommands(uplink, uplinkLink.address, uplinkLink.mtu),
        `move ${uplink} into the uplink bridge ${UPLINK_BRIDGE}`,
      );
      links = parseIpAddrs((await this.ip.json(['-d', 'addr', 'show'], 'read the node addresses')) ?? []);
      this.logger.info(
        { uplink, bridge: UPLINK_BRIDGE, mac: uplinkLink.address },
        'underlay interface moved into the uplink bridge (userspace datapath)',
      );
    }
    const phy = links.find((l) => l.ifname === UPLINK_BRIDGE);
    if (!phy)
      throw new InternalError(
        'create the uplink bridge',
        `ovs-vswitchd reported ${UPLINK_BRIDGE} ready but the kernel shows no such device: check its log`,
      );
    const lines = [
      ...uplinkBridgeLinkScript(phy),
      ...moveAddressingScript(
        links.find((l) => l.ifname === uplink),
        phy,
        uplink,
        UPLINK_BRIDGE,
        routes,
      ),
    ];
    if (lines.length > 0) {
      await this.ip.batch(lines, { step: `move the underlay addressing from ${uplink} to ${UPLINK_BRIDGE}` });
      this.logger.info(
        { from: uplink, to: UPLINK_BRIDGE, changes: lines.map((l) => l.step) },
        'underlay addresses and routes now on the uplink bridge',
      );
    }
    if (guard !== uplink) {
      await this.runNft(guardScript(uplink, guard !== undefined), `guard ${uplink} (its traffic belongs to ${UPLINK_BRIDGE})`);
      this.logger.info({ uplink }, 'kernel processing of the uplink interface turned off (table netdev nodenet)');
    }
    this.uplinkReady = true;
  }

  /** The reverse of ensureUplink (host-gw needs no uplink bridge): guard off, addressing back, bridge gone. */
  private async dismantleUplink(state: OvsState): Promise<void> {
    const uplink = this.uplinkOf(state);
    const [addrs, routes, guard] = await Promise.all([
      this.ip.json(['-d', 'addr', 'show'], 'read the node addresses'),
      this.readMainRoutes(),
      this.readGuard(),
    ]);
    if (guard !== undefined) await this.runNft(deleteGuardScript(), 'remove the uplink guard');
    const links = parseIpAddrs(addrs ?? []);
    const lines = moveAddressingScript(
      links.find((l) => l.ifname === UPLINK_BRIDGE),
      links.find((l) => l.ifname === uplink),
      UPLINK_BRIDGE,
      uplink,
      routes,
    );
    if (lines.length > 0) await this.ip.batch(lines, { step: `move the underlay addressing back from ${UPLINK_BRIDGE} to ${uplink}` });
    await this.ovs.vsctl(deleteBridgeCommands(UPLINK_BRIDGE), `delete the uplink bridge ${UPLINK_BRIDGE}`);
    this.uplinkReady = false;
    this.logger.info({ uplink }, 'overlay mode is host-gw: the underlay interface left the uplink bridge');
  }

  /** The main table's routes of both families (the uplink's move carries IPv6 routes too). */
  private async readMainRoutes(): Promise<RouteEntry[]> {
    const args = ['route', 'show', 'table', 'main'];
    const [v4, v6] = await Promise.all([
      this.ip.json(args, 'read the node routes'),
      this.ip.json(['-6', ...args], 'read the node IPv6 routes'),
    ]);
    return [...parseRouteEntries(v4 ?? []), ...parseRouteEntries(v6 ?? [])];
  }

  private async readGuard(): Promise<string | undefined> {
    const { file, args } = commandInNamespace(this.netns, 'nft', ['list', 'table', 'netdev', 'nodenet']);
    const r = await run(file, args, { step: 'read the uplink guard', okExitCodes: [1] });
    if (r.exitCode !== 0) return undefined; // no such table
    return guardedDeviceOf(r.stdout);
  }

  private async runNft(script: string, step: string): Promise<void> {
    const { file, args } = commandInNamespace(this.netns, 'nft', ['-f', '-']);
    await run(file, args, { step, input: script });
  }

  // ---------------------------------------------------------------------------------------------------
  // ip

  /** Runs lines with -force; a delete that finds nothing is fine, anything else throws. */
  private async runIp(lines: readonly IpLine[], step: string): Promise<void> {
    if (lines.length === 0) return;
    const failures: IpBatchFailure[] = await this.ip.batch(lines, { step, force: true });
    const unexpected = unexpectedFailure(failures, lines, DELETE_IDS);
    if (!unexpected) return;
    throw this.explainIpFailure(unexpected.failure, unexpected.line, step);
  }

  private explainIpFailure(f: IpBatchFailure, line: IpLine | undefined, step: string): Error {
    if (f.message.includes(`Cannot find device "${CNI_NAME}"`)) {
      return new FailedPreconditionError(
        `the CNI ${CNI_NAME} does not exist (${line?.step ?? step} failed): CreateContainerNetworkInterface, or a daemon restart, creates it`,
      );
    }
    return new InternalError(line?.step ?? step, f.message || 'ip failed without a message');
  }
}

// -------------------------------------------------------------------------------------------------------
// Kernel lines for a peer (vxlan): the node's own route to the peer's subnet through the CNI.

/**
 * Per subnet of the peer (IPv4, then IPv6): a permanent neighbour entry for the next hop (the subnet's network
 * address -> the peer's VTEP MAC), then the route. `ip` takes the family from the addresses.
 */
export function peerRouteLines(peer: VxlanPeer): IpLine[] {
  const mac = vtepMacOf(peer.underlayAddress);
  return subnetsOfNode(peer).flatMap((subnet): IpLine[] => {
    const via = subnet.network;
    return [
      {
        id: 'peer-neighbour',
        args: ['neigh', 'replace', via, 'lladdr', mac, 'dev', CNI_NAME, 'nud', 'permanent'],
        step: `set the neighbour entry ${via} -> ${mac} (${peer.name}) on ${CNI_NAME}`,
      },
      {
        id: ROUTE_LINE.peerRoute,
        args: ['route', 'replace', subnet.toString(), 'via', via, 'dev', CNI_NAME, 'onlink', ...ROUTE_PROTO_ARGS],
        step: `route ${subnet} via ${via} on ${CNI_NAME} (${peer.name})`,
      },
    ];
  });
}

export function removeRouteLines(peer: VxlanPeer): IpLine[] {
  return subnetsOfNode(peer).flatMap(subnetRemovalLines);
}

function subnetRemovalLines(subnet: IpSubnet): IpLine[] {
  return [deleteRouteLine(subnet), deleteNeighbourLine(subnet.network)];
}

/** `neigh flush` rather than `neigh del`: a failing `neigh del` ends the whole batch, -force or not. */
function deleteNeighbourLine(address: string): IpLine {
  return {
    id: 'delete-neighbour',
    args: ['neigh', 'flush', 'to', address, 'dev', CNI_NAME, 'nud', 'all'],
    step: `delete the neighbour entry of ${address} on ${CNI_NAME}`,
  };
}

function neighboursOf(json: unknown): { dst: string; lladdr?: string; state: string[] }[] {
  if (!Array.isArray(json)) return [];
  return json.flatMap((n) => {
    const o = n as Record<string, unknown>;
    if (typeof o['dst'] !== 'string') return [];
    return [
      {
        dst: o['dst'],
        ...(typeof o['lladdr'] === 'string' ? { lladdr: o['lladdr'] } : {}),
        state: Array.isArray(o['state']) ? (o['state'] as string[]) : [],
      },
    ];
  });
}
