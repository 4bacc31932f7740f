/**
 * The interfaces core needs from the outside world (hexagonal "ports"). Adapters implement them:
 * backends (Dataplane), the nftables layer (PacketFilter), the state directory (StateStore).
 * Core never does I/O itself.
 */
import type { Ipv4Address } from './net.js';
import type { IpAddress, IpSubnet, Ipv6Address } from './net6.js';
import type { CniNets, InstanceAddresses } from './addressing.js';
import type { IfName, NetnsRef } from './names.js';
import type { PortMapping } from './ports.js';
import type { CniRecord, InstanceKind, InstanceRecord, NodeState } from './model.js';

/** What a backend finds out about the node at start. */
export interface HostInfo {
  /** The node's address on the underlay (IPv4, or IPv6 for an IPv6 underlay). */
  readonly underlayAddress: IpAddress;
  /** The link holding it. */
  readonly underlayInterface: string;
  readonly underlayMtu: number;
  /** The networks of the node's own addresses (the underlay and any other): an instance subnet must not overlap them. */
  readonly localNetworks: readonly { readonly interface: string; readonly subnet: IpSubnet }[];
}

/** The CNI: its name, MTU, MAC and the families it holds (`ipv4`, `ipv6` or both: see CniNets). */
export interface CniSpec extends CniNets {
  readonly name: IfName;
  readonly mtu: number;
  readonly mac: string;
}

/**
 * An instance's interface: its addresses (`ipv4`, `ipv6` or both, in the families of its CNI; at least one, so a
 * spec without an address does not type-check) and the rest of InstanceInterfaceSpec.
 */
export type InstanceSpec = InstanceInterfaceSpec & InstanceAddresses;

/** Everything of an instance's interface but its addresses (see InstanceSpec). */
export interface InstanceInterfaceSpec {
  readonly handle: IfName;
  readonly hostIfname: IfName;
  readonly kind: InstanceKind;
  /** The record's key: `ipv4`, or `ipv6` on an IPv6-only node (the seed's `ip_address`). */
  readonly address: IpAddress;
  readonly mac: string;
  readonly mtu: number;
  readonly cni: CniSpec;
  /** Place the instance side in this namespace, named `ifname`, addressed, up, with a default route. */
  readonly netns?: NetnsRef;
  readonly ifname?: IfName;
}

/** What the kernel (or OVSDB) shows about a link in the node namespace. */
export interface LinkState {
  readonly name: string;
  /** Set when the link carries nodenet's owner tag; the value is the tag (e.g. `nodenet:nni-1a2b3c4d`). */
  readonly ownerTag?: string;
  /** The bridge the link is a port of, when the backend reports it ('' or absent: none). */
  readonly master?: string;
}

/** What a converging call found wrong and put right, one human-readable line each (empty: nothing drifted). */
export type Repairs = readonly string[];

/** Where createInstance put the instance side, to tell later whether that namespace still exists. */
export interface InstancePlacement {
  /** Identity of the namespace the instance side was moved into (`DEV:INODE` of its nsfs file). */
  readonly netnsId?: string;
}

/** Finds the node's underlay (the host's business, whichever backend switches the instances). */
export interface HostProbe {
  /** The link and MTU of `underlayAddress`, or of the default route's source when absent, and the node's local networks. */
  probeHost(underlayAddress?: IpAddress): Promise<HostInfo>;
}

/** Tells network namespaces apart (the host's business: the same for every backend). */
export interface NamespaceIdentity {
  /**
   * The identity (`DEV:INODE`) createInstance will report as `netnsId` for an instance placed in `netns` now,
   * read before the create so that its record can be written while the interface is made. NOT_FOUND when
   * the namespace does not exist. Cheap (no process).
   */
  identifyNamespace(netns: NetnsRef): Promise<string>;
  /**
   * Whether the namespace an instance was placed in still exists and is the same one (`netnsId` from
   * createInstance): a recreated namespace of the same name, or a reused PID, is not.
   */
  namespaceAlive(netns: NetnsRef, netnsId: string | undefined): Promise<boolean>;
}

/** What the node's host provides beside the dataplane: its underlay and the identity of namespaces. */
export interface HostServices extends HostProbe, NamespaceIdentity {}

/**
 * What the instances' ports are, as far as filtering them goes: `linux-bridge` when they are ports of a Linux
 * bridge (netfilter's bridge family sees every frame they send, so per-port rules can sit on them); `switch`
 * when a switch outside netfilter's bridge hooks carries them (Open vSwitch), so their packets can only be
 * caught where the node itself receives them.
 */
export type InstancePorts = 'linux-bridge' | 'switch';

/**
 * A dataplane backend: creates the CNI and instance interfaces. Members converge (ensureX) or are
 * tolerant of absence (deleteX), so that a retry or a roll-back is always safe.
 */
export interface Dataplane {
  /** The backend's registered name, e.g. `iproute2`. */
  readonly name: string;
  /** What carries the instances' frames (see InstancePorts): the packet filter places its loopback guard by it. */
  readonly instancePorts: InstancePorts;
  /**
   * Creates the CNI when missing, sets its address, MTU and MAC, brings it up, turns on forwarding and the
   * other sysctls nodenet needs. Converges: when all is right it changes nothing; it reports what it repaired.
   */
  ensureCni(spec: CniSpec): Promise<Repairs | void>;
  /** Removes the CNI (roll-back of a failed CreateContainerNetworkInterface). Absent is fine. */
  deleteCni(name: IfName): Promise<void>;
  /**
   * Creates an instance's interface joined to the CNI (and placed in its namespace when asked). All or
   * nothing: on failure it removes what it made before throwing.
   */
  createInstance(spec: InstanceSpec): Promise<InstancePlacement | void>;
  /** Removes an instance's interface (both veth ends, or the TAP) and stale neighbour entries of its address. Absent is fine. */
  deleteInstance(record: InstanceRecord, cni: CniRecord): Promise<void>;
  /** The state of one link in the node namespace, or null when there is none by that name. */
  inspectLink(name: IfName): Promise<LinkState | null>;
  /** Every link in the node namespace that carries nodenet's owner tag (the CNI, host-side veths, TAPs, ...). */
  listOwnedLinks(): Promise<LinkState[]>;
  /**
   * Puts an instance's bridge port back on the CNI (it was detached: drift, or a delete cut short), with
   * the port settings createInstance gives it. Backends whose listOwnedLinks reports `master` implement it.
   * `instance` is the daemon's record of it: what the port was, even when the switch forgot (ovs: a bridge
   * deleted and recreated, or a fresh OVSDB, takes its registry with it).
   */
  attachToCni?(
    hostIfname: IfName,
    cni: CniSpec,
    instance?: Pick<InstanceRecord, 'handle' | 'address' | 'ipv6Address' | 'mac' | 'kind'>,
  ): Promise<void>;
  /** Deletes links nodenet owns that no record explains (orphans of a crash). Absent is fine. */
  deleteOwnedLinks(names: readonly IfName[]): Promise<void>;
  /** Releases resources (e.g. helper processes). */
  close?(): Promise<void>;
}

/** The node-wide rules: what the packet filter needs to know about the CNI and the cluster. */
export interface FilterBase extends CniNets {
  readonly cniName: IfName;
  /** Every node's instance subnets of both families (this node's included): traffic to them is never masqueraded. */
  readonly clusterSubnets: readonly IpSubnet[];
}

export interface InstanceRules {
  /** The bridge port the instance's packets enter by (anti-spoofing is keyed on it). */
  readonly hostIfname: IfName;
  readonly ipv4?: Ipv4Address;
  readonly ipv6?: Ipv6Address;
  /** With `ipv6`: the instance's link-local address (the EUI-64 of its MAC), also admitted as a source. */
  readonly ipv6LinkLocal?: Ipv6Address;
  readonly ports: readonly PortMapping[];
}

/** A published port as the packet filter holds it (the map of the address's family). */
export interface PublishedPort {
  readonly protocol: 'tcp' | 'udp';
  readonly hostPort: number;
  readonly address: IpAddress;
  readonly instancePort: number;
  /** The one node address the port is published on (of the family of `address`); absent: every address. */
  readonly hostAddress?: IpAddress;
}

/** A bridge port's admitted source address (anti-spoofing), of either family. */
export interface AllowedSource {
  readonly ifname: string;
  readonly address: IpAddress;
}

export interface FilterElements {
  readonly ports: readonly PublishedPort[];
  readonly sources: readonly AllowedSource[];
}

/**
 * The packet-filter layer: published ports (DNAT), masquerade, anti-spoofing, connection tracking.
 * Each call is one atomic transaction: no packet sees a half-applied change.
 */
export interface PacketFilter {
  /**
   * Creates or converges nodenet's tables: chains, masquerade and the maps and sets (their elements are
   * kept). When everything is already right it writes nothing; it reports what it repaired.
   */
  ensureBase(base: FilterBase): Promise<Repairs | void>;
  /** Replaces the cluster's subnets (traffic to them is never masqueraded), in one transaction. */
  setClusterSubnets(subnets: readonly IpSubnet[]): Promise<void>;
  /** The per-instance elements nodenet's tables hold now (empty when the tables are absent). */
  listElements(): Promise<FilterElements>;
  /** Removes the given elements (orphans no record explains) in one transaction; absent ones are fine. */
  removeElements(elements: FilterElements): Promise<void>;
  /** Removes nodenet's table (roll-back of a failed CreateContainerNetworkInterface). Absent is fine. */
  removeBase(): Promise<void>;
  /** Publishes the instance's ports and admits only its address from its bridge port. */
  addInstance(rules: InstanceRules): Promise<void>;
  /** The reverse of addInstance; elements already gone are fine. */
  removeInstance(rules: InstanceRules): Promise<void>;
  /**
   * Deletes connection-tracking entries to or from any of `addresses` (an instance's, of either family), so
   * a reused address starts clean; one pass for all of them.
   */
  flushConntrack(addresses: readonly IpAddress[]): Promise<void>;
}

/** Durable records of what the daemon created. Writes are atomic and durable when the promise resolves. */
export interface StateStore {
  load(): Promise<NodeState>;
  saveCni(cni: CniRecord): Promise<void>;
  deleteCni(): Promise<void>;
  saveInstance(record: InstanceRecord): Promise<void>;
  /**
   * Writes `record` durably where load() does not see it yet, so a create can write its record while the
   * kernel work runs: commit() makes it the instance's record (what saveInstance does in one go); discard()
   * removes it. A crash before commit leaves nothing load() returns.
   */
  stageInstance(record: InstanceRecord): Promise<StagedRecord>;
  /**
   * Durably notes that `handle` is being released, before anything of it is removed, so a state directory
   * that cannot be written refuses a delete while nothing has changed. A noted handle whose record is still
   * there (the release failed or was cut short) is the record's: load() returns both, and the record wins.
   */
  beginRelease(handle: IfName): Promise<void>;
  /** Removes the record and remembers the handle as released (noting it, unless beginRelease did). */
  releaseInstance(handle: IfName): Promise<void>;
}

/** A record written by StateStore.stageInstance, not yet in effect. */
export interface StagedRecord {
  commit(): Promise<void>;
  discard(): Promise<void>;
}

/** A pino-compatible structured logger. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
