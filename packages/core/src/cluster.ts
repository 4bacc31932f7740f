/**
 * The cluster: which other nodes exist (membership) and how this node reaches their instance subnets
 * (the overlay). Core decides what must change when the peer set changes; adapters do it.
 */
import { FailedPreconditionError, InvalidArgumentError, asNodenetError } from './errors.js';
import { parseIpv4Address, Subnet, type Ipv4Address } from './net.js';
import { silentLogger, type Logger, type Repairs } from './ports-of-core.js';
import { Mutex } from './sync.js';

/** A node as the cluster knows it: enough for every overlay (the VXLAN endpoint MAC is derived from the address). */
export interface NodeRecord {
  readonly name: string;
  readonly underlayAddress: Ipv4Address;
  readonly subnet: Subnet;
}

const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function parseNodeName(input: unknown, field: string): string {
  if (typeof input !== 'string' || !NODE_NAME_RE.test(input)) {
    throw new InvalidArgumentError(field, `'${String(input)}' is not a node name: use 1..63 letters, digits, '-', '_' or '.', starting with a letter or digit`);
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
  readonly mode: 'vxlan' | 'host-gw';
  /** Bytes the overlay adds to each packet (instance MTU = underlay MTU - overhead). */
  readonly overhead: number;
  /** Creates this node's endpoint (e.g. the VXLAN device); may say what it repaired (a reconcile pass logs it). */
  ensureEndpoint(self: NodeRecord): Promise<Repairs | void>;
  /** Programs what reaching `peer`'s subnet needs (routes, neighbour and FDB entries, flows). */
  ensurePeer(peer: NodeRecord): Promise<void>;
  /** Removes everything ensurePeer programmed for `peer`. */
  removePeer(peer: NodeRecord): Promise<void>;
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
    const clash = this.peers().find((p) => p.subnet.overlaps(self.subnet));
    if (clash) throw new FailedPreconditionError(`subnet ${self.subnet} overlaps ${clash.subnet} of peer ${clash.name}`);
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
    if (this.self && peer.subnet.overlaps(this.self.subnet)) {
      throw new FailedPreconditionError(`${where}: subnet ${peer.subnet} of ${peer.name} overlaps this node's subnet ${this.self.subnet}`);
    }
    for (const other of this.byName.values()) {
      if (other.name !== peer.name && other.subnet.overlaps(peer.subnet)) {
        throw new FailedPreconditionError(`${where}: subnet ${peer.subnet} of ${peer.name} overlaps ${other.subnet} of peer ${other.name}`);
      }
      if (other.name !== peer.name && other.underlayAddress === peer.underlayAddress) {
        throw new FailedPreconditionError(`${where}: underlay address ${peer.underlayAddress} of ${peer.name} is already peer ${other.name}'s`);
      }
    }
  }
}

/**
 * Keeps the overlay programmed for the current peer set: on every change it removes what left, programs
 * what came or changed, and tells `onSubnets` the cluster's subnets (for the masquerade exception).
 * Changes are applied one set at a time, newest wins; a peer that fails to program is retried on the
 * next change or resync and logged.
 */
export class PeerSync {
  private readonly mutex = new Mutex();
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
  ) {
    this.logger = logger ?? silentLogger;
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
    return this.mutex.run(() => this.apply());
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
      for (const [name, peer] of [...this.programmed]) {
        try {
          await this.overlay.ensurePeer(peer);
        } catch (e) {
          this.programmed.delete(name);
          this.logger.error({ peer: name, err: asNodenetError(e, 'program peer').message }, 'could not re-program peer');
        }
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
    for (const [name, old] of this.programmed) {
      const next = wanted.get(name);
      if (next && sameNodeRecord(next, old)) continue;
      try {
        await this.overlay.removePeer(old);
        this.programmed.delete(name);
        this.logger.info({ peer: name, subnet: String(old.subnet) }, next ? 'peer changed: old routes removed' : 'peer removed');
      } catch (e) {
        this.logger.error({ peer: name, err: asNodenetError(e, 'remove peer').message }, 'could not remove peer');
      }
    }
    for (const [name, peer] of wanted) {
      if (this.programmed.has(name)) continue;
      try {
        await this.overlay.ensurePeer(peer);
        this.programmed.set(name, peer);
        this.logger.info({ peer: name, subnet: String(peer.subnet), underlay: peer.underlayAddress }, 'peer programmed');
      } catch (e) {
        this.logger.error({ peer: name, err: asNodenetError(e, 'program peer').message }, 'could not program peer');
      }
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
}
