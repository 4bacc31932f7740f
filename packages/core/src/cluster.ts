/**
 * The cluster: which other nodes exist (membership) and how this node reaches their instance subnets
 * (the overlay). Core decides what must change when the peer set changes; adapters do it.
 */
import { FailedPreconditionError, InvalidArgumentError, asNodenetError } from './errors.js';
import { Subnet, vtepMacForUnderlay } from './net.js';
import { Ipv6Subnet, addressFamily, subnetsOverlap, type IpAddress, type IpSubnet, type Ipv6Address } from './net6.js';
import { parseIpv6InstanceSubnet, type CniNets } from './addressing.js';
import { parseUnderlayAddress, vtepMacForIpv6Underlay } from './underlay.js';
import { silentLogger, type HostInfo, type Logger, type Repairs } from './ports-of-core.js';
import { Mutex } from './sync.js';
import { allFailed, type PeerBatchResult } from './peer-batch.js';

/**
 * A node as the cluster knows it: enough for every overlay (the VXLAN endpoint MAC is derived from the
 * address). A node holds an IPv4 instance subnet, an IPv6 one, or both (at least one).
 */
export interface NodeRecord {
  readonly name: string;
  /** IPv4 or IPv6: every node of a cluster uses the same underlay family. */
  readonly underlayAddress: IpAddress;
  /** The IPv4 instance subnet; absent on an IPv6-only node. */
  readonly subnet?: Subnet;
  /** The IPv6 instance subnet (/64../120); absent on an IPv4-only node. */
  readonly ipv6Subnet?: Ipv6Subnet;
}

/** This node's instance subnets, as its CNI holds them (at least one). */
export interface NodeSubnets {
  readonly subnet?: Subnet;
  readonly ipv6Subnet?: Ipv6Subnet;
}

/** The subnets a CNI holds, as the cluster knows a node's: what the node announces and peers route to. */
export function nodeSubnetsOf(nets: CniNets): NodeSubnets {
  return { ...(nets.ipv4 ? { subnet: nets.ipv4.subnet } : {}), ...(nets.ipv6 ? { ipv6Subnet: nets.ipv6.subnet } : {}) };
}

/** The instance subnets of a node, IPv4 first. */
export function subnetsOfNode(node: NodeSubnets): IpSubnet[] {
  return [...(node.subnet ? [node.subnet] : []), ...(node.ipv6Subnet ? [node.ipv6Subnet] : [])];
}

/** `198.19.2.0/24 + fd19:0:0:2::/64`: a node's subnets for messages and logs. */
export function describeNodeSubnets(node: NodeSubnets): string {
  return subnetsOfNode(node).map(String).join(' + ') || '(no subnet)';
}

/** The MAC of a node's VXLAN endpoint, derived from its underlay address of either family. */
export function vtepMacOf(underlayAddress: IpAddress): string {
  return addressFamily(underlayAddress) === 6
    ? vtepMacForIpv6Underlay(underlayAddress as Ipv6Address)
    : vtepMacForUnderlay(underlayAddress as Parameters<typeof vtepMacForUnderlay>[0]);
}

const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function parseNodeName(input: unknown, field: string): string {
  if (typeof input !== 'string' || !NODE_NAME_RE.test(input)) {
    throw new InvalidArgumentError(
      field,
      `'${String(input)}' is not a node name: use 1..63 letters, digits, '-', '_' or '.', starting with a letter or digit`,
    );
  }
  return input;
}

const absent = (v: unknown): boolean => v === undefined || v === null || v === '';

/**
 * Parses a peer from its wire/config form; `field` prefixes error messages (e.g. `membership.peers[1]`).
 * `subnet` is the IPv4 subnet and `ipv6Subnet` the IPv6 one; as in the API's seed fields, an IPv6-only node
 * may give its IPv6 subnet as `subnet` (then without `ipv6Subnet`). Empty strings (proto3 defaults) are absent.
 */
export function parseNodeRecord(
  input: { name?: unknown; underlayAddress?: unknown; subnet?: unknown; ipv6Subnet?: unknown },
  field: string,
): NodeRecord {
  const name = parseNodeName(input.name, `${field}.name`);
  const underlayAddress = parseUnderlayAddress(input.underlayAddress, `${field}.underlayAddress`);
  let subnet: Subnet | undefined;
  let ipv6Subnet: Ipv6Subnet | undefined;
  if (!absent(input.ipv6Subnet)) ipv6Subnet = parseIpv6InstanceSubnet(input.ipv6Subnet, `${field}.ipv6Subnet`);
  if (!absent(input.subnet)) {
    if (typeof input.subnet === 'string' && input.subnet.includes(':')) {
      // ListPeers reports an IPv6-only peer's subnet in both fields: the same value twice is that peer.
      if (ipv6Subnet && input.subnet !== ipv6Subnet.toString()) {
        throw new InvalidArgumentError(
          `${field}.subnet`,
          `'${input.subnet}' is IPv6 while ipv6Subnet is set too: subnet holds the IPv4 subnet of a dual-stack node`,
        );
      }
      ipv6Subnet = parseIpv6InstanceSubnet(input.subnet, `${field}.subnet`);
    } else {
      subnet = Subnet.parse(input.subnet, `${field}.subnet`);
    }
  }
  if (!subnet && !ipv6Subnet) {
    throw new InvalidArgumentError(
      `${field}.subnet`,
      'a node needs an instance subnet: give subnet (IPv4, e.g. 198.19.2.0/24), ipv6Subnet (IPv6, e.g. fd19:0:0:2::/64), or both',
    );
  }
  return { name, underlayAddress, ...(subnet ? { subnet } : {}), ...(ipv6Subnet ? { ipv6Subnet } : {}) };
}

function sameSubnet(a: IpSubnet | undefined, b: IpSubnet | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.toString() === b.toString();
}

export function sameNodeRecord(a: NodeRecord, b: NodeRecord): boolean {
  return (
    a.name === b.name && a.underlayAddress === b.underlayAddress && sameSubnet(a.subnet, b.subnet) && sameSubnet(a.ipv6Subnet, b.ipv6Subnet)
  );
}

/** Whether any subnet of `a` overlaps any of `b` (IPv4 with IPv4, IPv6 with IPv6). */
export function nodesOverlap(a: NodeSubnets, b: NodeSubnets): boolean {
  return subnetsOfNode(a).some((x) => subnetsOfNode(b).some((y) => subnetsOverlap(x, y)));
}

/** The first of `node`'s subnets that overlaps something held, with what it overlaps. */
export function firstNodeOverlap(node: NodeSubnets, held: Iterable<HeldSubnet>): { subnet: IpSubnet; held: HeldSubnet } | undefined {
  const list = [...held];
  for (const subnet of subnetsOfNode(node)) {
    const clash = firstOverlap(subnet, list);
    if (clash) return { subnet, held: clash };
  }
  return undefined;
}

/**
 * How instance traffic reaches other nodes. Implemented per backend (iproute2: a VXLAN device or plain
 * routes; ovs: tunnel ports and flows). Members converge and tolerate absence.
 */
export interface Overlay {
  readonly mode: OverlayMode;
  /** Bytes the overlay adds to each packet (instance MTU = underlay MTU - overhead). */
  readonly overhead: number;
  /** Creates this node's endpoint (e.g. the VXLAN device); may say what it repaired (a reconcile pass logs it). */
  ensureEndpoint(self: NodeRecord): Promise<Repairs | void>;
  /** Programs what reaching `peer`'s subnet needs (routes, neighbour and FDB entries, flows). */
  ensurePeer(peer: NodeRecord): Promise<void>;
  /** Removes everything ensurePeer programmed for `peer`. */
  removePeer(peer: NodeRecord): Promise<void>;
  /**
   * ensurePeer for a set, in one batch per tool (one `ip -batch`, one OpenFlow bundle): the cost of joining
   * grows at the kernel's rate, not at a process per peer. Reports the peers that failed (not programmed;
   * retried by the next sync); every other peer is programmed.
   */
  ensurePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult>;
  /** removePeer for a set, in one batch per tool; reports the peers whose entries may still be there. */
  removePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult>;
  /**
   * Throws FAILED_PRECONDITION naming the peer when this overlay cannot reach it from this node (host-gw: not
   * on the underlay's L2 segment; any mode: this node's own underlay address). No I/O: the server checks
   * static peers at start and AddPeer requests with it, before anything is programmed.
   */
  validatePeer(peer: NodeRecord): void;
  /** Removes overlay entries nodenet owns that no wanted peer explains (e.g. of a peer that left while the daemon was down); returns what it removed. */
  removeStalePeers?(wanted: readonly NodeRecord[]): Promise<readonly string[]>;
}

/** Where the peer set comes from: the static config (+ run-time RPCs) or etcd. */
export interface Membership {
  readonly type: 'static' | 'etcd';
  /** Starts watching; `listener` gets the full peer set (this node excluded) now and on every change. */
  start(listener: (peers: readonly NodeRecord[]) => void): Promise<void>;
  /** Publishes this node (once its subnet is known). Fails with FAILED_PRECONDITION if a live node holds an overlapping subnet. */
  announce(self: NodeRecord): Promise<void>;
  /** The peers known now. */
  peers(): readonly NodeRecord[];
  /** Stops watching and renewing (an etcd record then expires with its lease). */
  stop(): Promise<void>;
  /** How the link to the membership's source is doing (for metrics); absent: always connected, nothing to renew. */
  status?(): MembershipStatus;
}

export interface MembershipStatus {
  /** Whether the membership's source (etcd) is connected and watched now. */
  readonly connected: boolean;
  /** Renewals of this node's lease that failed since the start (a counter). */
  readonly leaseRenewFailures: number;
}

/** The static membership's run-time control (extension RPCs). */
export interface PeerControl {
  addPeer(peer: NodeRecord): Promise<void>;
  removePeer(name: string): Promise<void>;
}

/** Membership from the config, changed at run time by addPeer/removePeer. No I/O. */
export class StaticMembership implements Membership, PeerControl {
  readonly type = 'static' as const;
  private readonly byName = new Map<string, NodeRecord>();
  private listener: ((peers: readonly NodeRecord[]) => void) | null = null;
  private self: NodeRecord | null = null;

  constructor(initial: readonly NodeRecord[]) {
    for (const p of initial) {
      if (this.byName.has(p.name)) throw new FailedPreconditionError(`membership.peers: ${p.name} is listed twice`);
      this.check(p, true);
      this.byName.set(p.name, p);
    }
  }

  async start(listener: (peers: readonly NodeRecord[]) => void): Promise<void> {
    this.listener = listener;
    listener(this.peers());
  }

  async announce(self: NodeRecord): Promise<void> {
    const clash = firstNodeOverlap(self, subnetsHeld({ peers: this.peers() }));
    if (clash) throw new FailedPreconditionError(`subnet ${clash.subnet} ${describeOverlap(clash.held)}`);
    this.self = self;
  }

  peers(): readonly NodeRecord[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async addPeer(peer: NodeRecord): Promise<void> {
    const existing = this.byName.get(peer.name);
    if (existing && sameNodeRecord(existing, peer)) return; // idempotent
    this.check(peer, false);
    this.byName.set(peer.name, peer);
    this.listener?.(this.peers());
  }

  async removePeer(name: string): Promise<void> {
    if (!this.byName.delete(name)) return; // idempotent
    this.listener?.(this.peers());
  }

  async stop(): Promise<void> {
    this.listener = null;
  }

  /** A peer must not overlap this node's subnet or another peer's (a peer replacing itself may change). */
  private check(peer: NodeRecord, initial: boolean): void {
    const where = initial ? 'membership.peers' : 'peer';
    if (this.self && peer.name === this.self.name) {
      throw new FailedPreconditionError(`${where}: ${peer.name} is this node's own name`);
    }
    // A peer replacing itself may change its subnet: its old one is not held against it.
    const others = [...this.byName.values()].filter((o) => o.name !== peer.name);
    const clash = firstNodeOverlap(peer, subnetsHeld({ ...(this.self ? { own: this.self } : {}), peers: others }));
    if (clash) throw new FailedPreconditionError(`${where}: subnet ${clash.subnet} of ${peer.name} ${describeOverlap(clash.held)}`);
    const twin = others.find((o) => o.underlayAddress === peer.underlayAddress);
    if (twin)
      throw new FailedPreconditionError(
        `${where}: underlay address ${peer.underlayAddress} of ${peer.name} is already peer ${twin.name}'s`,
      );
    checkVtepMacUnique(peer, [...others, ...(this.self ? [this.self] : [])], where);
  }
}

export interface PeerSyncOptions {
  /**
   * How long a membership change waits for more before it is applied (ms, default 20): the changes of a
   * watch burst, and every change arriving while a batch is in flight, join one batch.
   */
  readonly coalesceMs?: number;
}

/** Peer names for a log line: all of them up to a point, then how many more. */
function namesForLog(peers: readonly NodeRecord[]): string {
  const shown = peers.slice(0, 10).map((p) => p.name);
  return peers.length > shown.length ? `${shown.join(', ')} and ${peers.length - shown.length} more` : shown.join(', ');
}

/**
 * Keeps the overlay programmed for the current peer set: on every change it removes what left, programs
 * what came or changed, and tells `onSubnets` the cluster's subnets (for the masquerade exception).
 * Changes are applied one set at a time, newest wins, each as two batches (the peers leaving, then the
 * peers coming); changes arriving within coalesceMs or while a batch is in flight join the next one. A
 * peer that fails to program is retried on the next change or resync and logged.
 */
export class PeerSync {
  private readonly mutex = new Mutex();
  private readonly coalesceMs: number;
  /** The apply that the next changes join (waiting for its window or for the batch in flight). */
  private pendingApply: Promise<void> | null = null;
  private programmed = new Map<string, NodeRecord>();
  private wanted: readonly NodeRecord[] = [];
  private self: NodeRecord | null = null;
  /** The subnets last given to onSubnets (comma-joined), to skip rewriting an unchanged list. */
  private subnetsWritten: string | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly overlay: Overlay,
    private readonly onSubnets: (subnets: readonly IpSubnet[]) => Promise<void>,
    logger?: Logger,
    options: PeerSyncOptions = {},
  ) {
    this.logger = logger ?? silentLogger;
    this.coalesceMs = options.coalesceMs ?? 20;
  }

  /** This node's record: known once its CNI exists; only then are peers programmed. */
  setSelf(self: NodeRecord): Promise<void> {
    this.self = self;
    return this.mutex.run(async () => {
      await this.overlay.ensureEndpoint(self);
      await this.apply();
    });
  }

  /** Called by membership with the full peer set. */
  update(peers: readonly NodeRecord[]): Promise<void> {
    this.wanted = peers;
    // Newest wins: every update until the pending apply starts is served by it.
    this.pendingApply ??= new Promise<void>((resolve) => (this.coalesceMs > 0 ? setTimeout(resolve, this.coalesceMs) : resolve())).then(
      () =>
        this.mutex.run(() => {
          this.pendingApply = null;
          return this.apply();
        }),
    );
    return this.pendingApply;
  }

  /** The peers whose routes are in place now. */
  current(): readonly NodeRecord[] {
    return [...this.programmed.values()];
  }

  /** The peers to program: membership's set without this node and without peers overlapping its subnet. */
  validPeers(): NodeRecord[] {
    const self = this.self;
    return this.wanted.filter((p) => !self || (p.name !== self.name && !nodesOverlap(p, self)));
  }

  /**
   * Re-applies everything (a reconcile pass): the endpoint, every wanted peer (ensure* converge, so this only
   * writes what drifted), and removes overlay entries of peers no longer wanted. Returns what it removed.
   */
  resync(): Promise<readonly string[]> {
    return this.mutex.run(async () => {
      const self = this.self;
      if (!self) return [];
      const endpointRepairs = (await this.overlay.ensureEndpoint(self)) ?? [];
      // Re-converge every programmed peer in place (the view stays true while this runs), then let apply()
      // add what is missing and remove what left.
      const programmed = [...this.programmed.values()];
      const { failed } = programmed.length === 0 ? { failed: new Map<string, Error>() } : await this.batch('ensure', programmed);
      for (const [name, e] of failed) {
        this.programmed.delete(name);
        this.logger.error({ peer: name, err: asNodenetError(e, 'program peer').message }, 'could not re-program peer');
      }
      await this.apply();
      return [...endpointRepairs, ...((await this.overlay.removeStalePeers?.(this.validPeers())) ?? [])];
    });
  }

  private async apply(): Promise<void> {
    const self = this.self;
    if (!self) return;
    for (const p of this.wanted) {
      if (p.name !== self.name && nodesOverlap(p, self)) {
        this.logger.warn({ peer: p.name, subnet: describeNodeSubnets(p) }, "peer's subnet overlaps this node's: ignored");
      }
    }
    const wanted = new Map(this.validPeers().map((p) => [p.name, p]));
    // Leaving or changed: their old entries go in one batch. A changed peer whose removal failed stays
    // programmed under its old record (and is not programmed anew) until a later pass removes it.
    const leaving = [...this.programmed.values()].filter((old) => {
      const next = wanted.get(old.name);
      return !next || !sameNodeRecord(next, old);
    });
    if (leaving.length > 0) {
      const { failed } = await this.batch('remove', leaving);
      const removed = leaving.filter((p) => !failed.has(p.name));
      for (const p of removed) this.programmed.delete(p.name);
      for (const [name, e] of failed)
        this.logger.error({ peer: name, err: asNodenetError(e, 'remove peer').message }, 'could not remove peer');
      if (removed.length > 0)
        this.logger.info({ peers: removed.length, names: namesForLog(removed) }, 'peers removed (changed peers: old entries removed)');
    }
    const coming = [...wanted.values()].filter((p) => !this.programmed.has(p.name));
    if (coming.length > 0) {
      const { failed } = await this.batch('ensure', coming);
      const added = coming.filter((p) => !failed.has(p.name));
      for (const p of added) this.programmed.set(p.name, p);
      for (const [name, e] of failed)
        this.logger.error({ peer: name, err: asNodenetError(e, 'program peer').message }, 'could not program peer');
      if (added.length > 0) this.logger.info({ peers: added.length, names: namesForLog(added) }, 'peers programmed');
    }
    // Every wanted peer's subnet, programmed or not: traffic to a peer is never masqueraded. Written only
    // when the list changed: rewriting it is a flush of the set, which change notifications report (an
    // event-driven repair pass would rewrite it again, and so on); drift in the set is the filter's own
    // reconcile's business (ensureBase compares it).
    const subnets = [...subnetsOfNode(self), ...[...wanted.values()].flatMap(subnetsOfNode)];
    const key = subnets.map(String).join(',');
    if (key === this.subnetsWritten) return;
    await this.onSubnets(subnets);
    this.subnetsWritten = key;
  }

  /** One batch; an overlay that throws instead of reporting per peer failed every peer of it. */
  private batch(kind: 'ensure' | 'remove', peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    const run = kind === 'ensure' ? this.overlay.ensurePeers(peers) : this.overlay.removePeers(peers);
    return run.catch((e: unknown) => allFailed(peers, e));
  }
}

// -------------------------------------------------------------------------------------------------------
// The overlay's settings and the rules every backend's overlay follows, stated once: the VNI range, what
// VXLAN adds to a packet, and which peers an overlay can reach.

/** Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: what the vxlan overlay adds to every packet on an IPv4 underlay. */
export const VXLAN_OVERHEAD = 50;
/** The same over an IPv6 underlay: the outer IPv6 header is 40 bytes instead of 20. */
export const VXLAN_IPV6_OVERHEAD = 70;

/** What VXLAN adds to every packet over an underlay of this address's family. */
export function vxlanOverhead(underlayAddress: IpAddress): number {
  return addressFamily(underlayAddress) === 6 ? VXLAN_IPV6_OVERHEAD : VXLAN_OVERHEAD;
}
/**
 * VXLAN network identifiers nodenet accepts. 0 is left out: some VTEPs (EVPN, hardware) treat VNI 0 as
 * "none", and the config has always refused it.
 */
export const MIN_VNI = 1;
export const MAX_VNI = 2 ** 24 - 1;
export const OVERLAY_MODES = ['vxlan', 'host-gw'] as const;
export type OverlayMode = (typeof OVERLAY_MODES)[number];

/** Checks an overlay's mode, VNI and UDP port (both backends' overlays take these settings; the config checks them too). */
export function checkOverlaySettings(settings: { readonly mode: unknown; readonly vni: number; readonly port: number }): void {
  if (!OVERLAY_MODES.includes(settings.mode as OverlayMode)) {
    throw new InvalidArgumentError('overlay.mode', `'${String(settings.mode)}' is not an overlay mode: use vxlan or host-gw`);
  }
  if (!Number.isInteger(settings.vni) || settings.vni < MIN_VNI || settings.vni > MAX_VNI) {
    throw new InvalidArgumentError(
      'overlay.vni',
      `${String(settings.vni)} is not a VXLAN network identifier: use an integer ${MIN_VNI}..${MAX_VNI}`,
    );
  }
  if (!Number.isInteger(settings.port) || settings.port < 1 || settings.port > 65535) {
    throw new InvalidArgumentError('overlay.port', `${String(settings.port)} is not a UDP port: use an integer 1..65535`);
  }
}

/**
 * Any overlay: a peer with this node's own underlay address is a configuration mistake, and a peer on an
 * underlay of the other family cannot be reached (a VXLAN endpoint and a next hop have one family).
 */
export function checkPeerIsOther(host: HostInfo, peer: NodeRecord): void {
  if (peer.underlayAddress === host.underlayAddress) {
    throw new FailedPreconditionError(
      `peer ${peer.name} has underlay address ${peer.underlayAddress}, which is this node's own: give each node its own underlay address`,
    );
  }
  const mine = addressFamily(host.underlayAddress);
  if (addressFamily(peer.underlayAddress) !== mine) {
    throw new FailedPreconditionError(
      `peer ${peer.name} has underlay address ${peer.underlayAddress}, but this node's underlay is ${mine === 6 ? 'IPv6' : 'IPv4'} (${host.underlayAddress}): every node of a cluster must use an underlay address of the same family`,
    );
  }
  if (vtepMacOf(peer.underlayAddress) === vtepMacOf(host.underlayAddress)) {
    throw new FailedPreconditionError(
      `peer ${peer.name} at ${peer.underlayAddress} would get this node's VXLAN endpoint MAC ${vtepMacOf(host.underlayAddress)} (derived from the last 32 bits of the underlay address): give the nodes underlay addresses that differ in their last 32 bits`,
    );
  }
}

/** Two nodes whose underlay addresses end in the same 32 bits would share a VXLAN endpoint MAC. */
function checkVtepMacUnique(peer: NodeRecord, others: readonly NodeRecord[], where: string): void {
  const mac = vtepMacOf(peer.underlayAddress);
  const twin = others.find(
    (o) => o.name !== peer.name && o.underlayAddress !== peer.underlayAddress && vtepMacOf(o.underlayAddress) === mac,
  );
  if (twin) {
    throw new FailedPreconditionError(
      `${where}: underlay address ${peer.underlayAddress} of ${peer.name} ends in the same 32 bits as ${twin.name}'s ${twin.underlayAddress}, so both would get VXLAN endpoint MAC ${mac}: give the nodes underlay addresses that differ in their last 32 bits`,
    );
  }
}

/**
 * host-gw sends instance packets to the peer's underlay address as the next hop, which only works when the
 * peer is on the same L2 segment: its address must be inside a network of this node's underlay link.
 */
export function checkHostGwPeer(host: HostInfo, peer: NodeRecord): void {
  checkPeerIsOther(host, peer);
  const v6 = addressFamily(peer.underlayAddress) === 6;
  if (peer.ipv6Subnet && !v6) {
    // The kernel routes IPv4 via an IPv6 next hop (RFC 5549) but not IPv6 via an IPv4 one.
    throw new FailedPreconditionError(
      `peer ${peer.name} has IPv6 subnet ${peer.ipv6Subnet} but an IPv4 underlay address ${peer.underlayAddress}: host-gw routes IPv6 via an IPv6 underlay address only; give the nodes IPv6 underlay addresses or use overlay mode vxlan`,
    );
  }
  const segments = host.localNetworks.filter((n) => n.interface === host.underlayInterface).map((n) => n.subnet);
  const reaches = (s: IpSubnet): boolean =>
    s instanceof Ipv6Subnet
      ? v6 && s.contains(peer.underlayAddress as Ipv6Address) && (s.prefixLength >= 127 || s.network !== peer.underlayAddress)
      : !v6 && (s.isUsableHost(peer.underlayAddress as never) || (s.prefixLength >= 31 && s.contains(peer.underlayAddress as never)));
  if (segments.some(reaches)) return;
  const sameFamily = segments.filter((s) => s instanceof Ipv6Subnet === v6);
  const named =
    sameFamily.length > 0 ? sameFamily.map(String).join(', ') : `(none: ${host.underlayInterface} has no ${v6 ? 'IPv6' : 'IPv4'} network)`;
  throw new FailedPreconditionError(
    `peer ${peer.name} at ${peer.underlayAddress} is not on this node's L2 segment ${named}: host-gw needs directly reachable peers; use overlay mode vxlan`,
  );
}

/** The smallest MTU an IPv4 link may have (RFC 791): an instance MTU below it cannot carry IPv4. */
export const MIN_IPV4_MTU = 68;
/** The smallest MTU IPv6 allows on a link (RFC 8200): a node with an IPv6 subnet needs at least this. */
export const MIN_IPV6_MTU = 1280;

/**
 * What a vxlan endpoint needs of this node, for both backends: its record's underlay address is the host's
 * (peers send to the address they are told), and the underlay's MTU leaves room for the overhead of VXLAN over
 * the underlay's family (50 or 70 bytes) and a packet of every family the node's instances carry (IPv4 68,
 * IPv6 1280). Returns the instance MTU the overlay leaves.
 */
export function checkVxlanUnderlay(self: NodeRecord, host: HostInfo): number {
  if (self.underlayAddress !== host.underlayAddress) {
    throw new FailedPreconditionError(
      `this node's record has underlay address ${self.underlayAddress}, but the host's underlay is ${host.underlayAddress} on ${host.underlayInterface}: the VXLAN endpoint must use the address peers are told`,
    );
  }
  const overhead = vxlanOverhead(self.underlayAddress);
  const mtu = host.underlayMtu - overhead;
  const [least, needs] = self.ipv6Subnet ? [MIN_IPV6_MTU, 'IPv6'] : [MIN_IPV4_MTU, 'IPv4'];
  if (mtu < least) {
    const over = addressFamily(self.underlayAddress) === 6 ? 'over an IPv6 underlay' : 'over an IPv4 underlay';
    throw new FailedPreconditionError(
      `the underlay ${host.underlayInterface} has MTU ${host.underlayMtu}, too small for VXLAN (it adds ${overhead} bytes ${over}; ${needs} needs ${least}): raise the underlay MTU or use overlay mode host-gw`,
    );
  }
  return mtu;
}

/** A subnet something on or around this node holds, and who, for messages (`the subnet of peer node node-2`). */
export interface HeldSubnet {
  readonly subnet: IpSubnet;
  readonly holder: string;
}

/**
 * What this node's addressing must stay clear of: the networks of its own interfaces (an instance subnet
 * overlapping one would take the node's own traffic into the overlay), its own instance subnet, and every
 * peer's (no two nodes' instance subnets overlap).
 */
export function subnetsHeld(node: {
  readonly host?: HostInfo;
  /** This node's instance subnets (both families). */
  readonly own?: NodeSubnets;
  readonly peers?: readonly ({ readonly name: string } & NodeSubnets)[];
}): HeldSubnet[] {
  return [
    ...subnetsOfNode(node.own ?? {}).map((subnet) => ({ subnet, holder: "this node's subnet" })),
    ...(node.host?.localNetworks ?? []).map((l) => ({ subnet: l.subnet, holder: `the network of interface ${l.interface} on this node` })),
    ...(node.peers ?? []).flatMap((p) => subnetsOfNode(p).map((subnet) => ({ subnet, holder: `the subnet of peer node ${p.name}` }))),
  ];
}

/** The overlap rule, stated once for the CNI, AddPeer, static membership and the config: the first held subnet `subnet` overlaps. */
export function firstOverlap(subnet: IpSubnet, held: Iterable<HeldSubnet>): HeldSubnet | undefined {
  for (const h of held) if (subnetsOverlap(h.subnet, subnet)) return h;
  return undefined;
}

/** `overlaps 198.19.2.0/24, the subnet of peer node node-2` */
export function describeOverlap(held: HeldSubnet): string {
  return `overlaps ${held.subnet}, ${held.holder}`;
}

/** Whether an overlay in `mode` can reach `peer` from `host`: what Overlay.validatePeer checks. */
export function checkPeerForMode(mode: OverlayMode, host: HostInfo, peer: NodeRecord): void {
  if (mode === 'host-gw') checkHostGwPeer(host, peer);
  else checkPeerIsOther(host, peer);
}
