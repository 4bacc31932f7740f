/**
 * The cluster: which other nodes exist (membership) and how this node reaches their instance subnets
 * (the overlay). Core decides what must change when the peer set changes; adapters do it.
 */
import { FailedPreconditionError, InvalidArgumentError, asNodenetError } from './errors.js';
import { parseIpv4Address, Subnet, type Ipv4Address } from './net.js';
import { silentLogger, type HostInfo, type Logger, type Repairs } from './ports-of-core.js';
import { Mutex } from './sync.js';
import { allFailed, type PeerBatchResult } from './peer-batch.js';

/** A node as the cluster knows it: enough for every overlay (the VXLAN endpoint MAC is derived from the address). */
export interface NodeRecord {
  readonly name: string;
  readonly underlayAddress: Ipv4Address;
  readonly subnet: Subnet;
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

/** Parses a peer from its wire/config form; `field` prefixes error messages (e.g. `membership.peers[1]`). */
export function parseNodeRecord(input: { name?: unknown; underlayAddress?: unknown; subnet?: unknown }, field: string): NodeRecord {
  return {
    name: parseNodeName(input.name, `${field}.name`),
    underlayAddress: parseIpv4Address(input.underlayAddress, `${field}.underlayAddress`),
    subnet: Subnet.parse(input.subnet, `${field}.subnet`),
  };
}

export function sameNodeRecord(a: NodeRecord, b: NodeRecord): boolean {
  return a.name === b.name && a.underlayAddress === b.underlayAddress && a.subnet.equals(b.subnet);
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
    const clash = firstOverlap(self.subnet, subnetsHeld({ peers: this.peers() }));
    if (clash) throw new FailedPreconditionError(`subnet ${self.subnet} ${describeOverlap(clash)}`);
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
    const clash = firstOverlap(peer.subnet, subnetsHeld({ ...(this.self ? { ownSubnet: this.self.subnet } : {}), peers: others }));
    if (clash) throw new FailedPreconditionError(`${where}: subnet ${peer.subnet} of ${peer.name} ${describeOverlap(clash)}`);
    const twin = others.find((o) => o.underlayAddress === peer.underlayAddress);
    if (twin)
      throw new FailedPreconditionError(
        `${where}: underlay address ${peer.underlayAddress} of ${peer.name} is already peer ${twin.name}'s`,
      );
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
    private readonly onSubnets: (subnets: readonly Subnet[]) => Promise<void>,
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
    return this.wanted.filter((p) => !self || (p.name !== self.name && !p.subnet.overlaps(self.subnet)));
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
      if (p.name !== self.name && p.subnet.overlaps(self.subnet)) {
        this.logger.warn({ peer: p.name, subnet: String(p.subnet) }, "peer's subnet overlaps this node's: ignored");
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
    const subnets = [self.subnet, ...[...wanted.values()].map((p) => p.subnet)];
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

/** Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: what the vxlan overlay adds to every packet. */
export const VXLAN_OVERHEAD = 50;
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

/** Any overlay: a peer with this node's own underlay address is a configuration mistake. */
export function checkPeerIsOther(host: HostInfo, peer: NodeRecord): void {
  if (peer.underlayAddress === host.underlayAddress) {
    throw new FailedPreconditionError(
      `peer ${peer.name} has underlay address ${peer.underlayAddress}, which is this node's own: give each node its own underlay address`,
    );
  }
}

/**
 * host-gw sends instance packets to the peer's underlay address as the next hop, which only works when the
 * peer is on the same L2 segment: its address must be inside a network of this node's underlay link.
 */
export function checkHostGwPeer(host: HostInfo, peer: NodeRecord): void {
  checkPeerIsOther(host, peer);
  const segments = host.localNetworks.filter((n) => n.interface === host.underlayInterface).map((n) => n.subnet);
  if (segments.some((s) => s.isUsableHost(peer.underlayAddress) || (s.prefixLength >= 31 && s.contains(peer.underlayAddress)))) return;
  const named = segments.length > 0 ? segments.map(String).join(', ') : `(none: ${host.underlayInterface} has no IPv4 network)`;
  throw new FailedPreconditionError(
    `peer ${peer.name} at ${peer.underlayAddress} is not on this node's L2 segment ${named}: host-gw needs directly reachable peers; use overlay mode vxlan`,
  );
}

/** The smallest MTU an IPv4 link may have (RFC 791): an instance MTU below it cannot carry IPv4. */
export const MIN_IPV4_MTU = 68;

/**
 * What a vxlan endpoint needs of this node, for both backends: its record's underlay address is the host's
 * (peers send to the address they are told), and the underlay's MTU leaves room for VXLAN_OVERHEAD and an
 * IPv4 packet. Returns the instance MTU the overlay leaves.
 */
export function checkVxlanUnderlay(self: NodeRecord, host: HostInfo): number {
  if (self.underlayAddress !== host.underlayAddress) {
    throw new FailedPreconditionError(
      `this node's record has underlay address ${self.underlayAddress}, but the host's underlay is ${host.underlayAddress} on ${host.underlayInterface}: the VXLAN endpoint must use the address peers are told`,
    );
  }
  const mtu = host.underlayMtu - VXLAN_OVERHEAD;
  if (mtu < MIN_IPV4_MTU) {
    throw new FailedPreconditionError(
      `the underlay ${host.underlayInterface} has MTU ${host.underlayMtu}, too small for VXLAN (it adds ${VXLAN_OVERHEAD} bytes; IPv4 needs ${MIN_IPV4_MTU}): raise the underlay MTU or use overlay mode host-gw`,
    );
  }
  return mtu;
}

/** A subnet something on or around this node holds, and who, for messages (`the subnet of peer node node-2`). */
export interface HeldSubnet {
  readonly subnet: Subnet;
  readonly holder: string;
}

/**
 * What this node's addressing must stay clear of: the networks of its own interfaces (an instance subnet
 * overlapping one would take the node's own traffic into the overlay), its own instance subnet, and every
 * peer's (no two nodes' instance subnets overlap).
 */
export function subnetsHeld(node: {
  readonly host?: HostInfo;
  readonly ownSubnet?: Subnet;
  readonly peers?: readonly { readonly name: string; readonly subnet: Subnet }[];
}): HeldSubnet[] {
  return [
    ...(node.ownSubnet ? [{ subnet: node.ownSubnet, holder: "this node's subnet" }] : []),
    ...(node.host?.localNetworks ?? []).map((l) => ({ subnet: l.subnet, holder: `the network of interface ${l.interface} on this node` })),
    ...(node.peers ?? []).map((p) => ({ subnet: p.subnet, holder: `the subnet of peer node ${p.name}` })),
  ];
}

/** The overlap rule, stated once for the CNI, AddPeer, static membership and the config: the first held subnet `subnet` overlaps. */
export function firstOverlap(subnet: Subnet, held: Iterable<HeldSubnet>): HeldSubnet | undefined {
  for (const h of held) if (h.subnet.overlaps(subnet)) return h;
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
