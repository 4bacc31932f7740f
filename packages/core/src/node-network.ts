/**
 * The use-cases behind the seed's three RPCs: validate everything, apply step by step, roll back what was
 * applied when a step fails. No I/O here: the dataplane, the packet filter and the state store do it.
 *
 * Concurrency model: requests run concurrently, but every decision about who owns an address, a port or
 * a handle is taken in one synchronous stretch of code (check, then reserve, with no `await` in between).
 * Node runs JavaScript on one thread, so that stretch is atomic: of two creates racing for one address or
 * one port exactly one sees it free and reserves it; the other gets ALREADY_EXISTS (or, for an identical
 * request, waits for the first and returns its result). Reservations are released when a create fails.
 * This needs no lock per key and lets creates for different addresses proceed in parallel. The CNI, a
 * single node-wide object, is changed under a mutex.
 */
import {
  AlreadyExistsError,
  FailedPreconditionError,
  TeardownError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
  asNodenetError,
  type NodenetError,
} from './errors.js';
import type { CniRecord, InstanceKind, InstanceRecord, NodeState } from './model.js';
import { macForAddress } from './net.js';
import { addressFamily, linkLocalForMac, subnetContains, type IpAddress, type IpSubnet, type Ipv6Address } from './net6.js';
import {
  addressList,
  cniNetsOfRecord,
  cniRecordFields,
  cniSubnets,
  instanceAddressesOfRecord,
  instanceRecordFields,
  parseCniNets,
  parseInstanceAddresses,
  type CniNets,
  type InstanceAddresses,
} from './addressing.js';
import { allocateLinkNames, CNI_NAME, parseIfName, parseNetnsRef, type IfName, type NetnsRef } from './names.js';
import { hostAddressFamilyMissing } from './host-address.js';
import { describePort, normalizePorts, PortClaims, samePortMappings, type PortMapping, type PortMappingInput } from './ports.js';
import {
  silentLogger,
  type CniSpec,
  type Dataplane,
  type FilterBase,
  type HostInfo,
  type InstanceRules,
  type InstanceSpec,
  type Logger,
  type NamespaceIdentity,
  type PacketFilter,
  type Repairs,
  type StagedRecord,
  type StateStore,
} from './ports-of-core.js';
import { Mutex } from './sync.js';
import { Transaction } from './transaction.js';
import { planReconcile, type BusySet, type ReconcileCause, type ReconcileReport, type RepairKind } from './reconcile.js';
import { describeOverlap, firstOverlap, nodeSubnetsOf, subnetsHeld, subnetsOfNode, type NodeSubnets } from './cluster.js';

/** Another node of the cluster, as far as this node's addressing is concerned. */
export interface PeerSubnet extends NodeSubnets {
  readonly name: string;
}

export interface NodeNetworkOptions {
  readonly dataplane: Dataplane;
  /** Identity of the namespaces instances are placed in (the host's, not the backend's). */
  readonly namespaces: NamespaceIdentity;
  readonly packetFilter: PacketFilter;
  readonly store: StateStore;
  readonly host: HostInfo;
  /** Port numbers no instance may publish, each with the reason (e.g. `the overlay's UDP port`). */
  readonly reservedPorts: ReadonlyMap<number, string>;
  /** Bytes the overlay adds to every packet: the instance MTU is the underlay MTU minus this. */
  readonly overlayOverhead: number;
  /** The other nodes' subnets, as membership knows them now. */
  readonly peers?: () => readonly PeerSubnet[];
  /**
   * Joins this node's subnet to the cluster (announce it, create the overlay endpoint, program peers).
   * Called as the last step of CreateContainerNetworkInterface (its failure rolls the CNI back) and again
   * by restore() after a restart.
   */
  readonly joinCluster?: (subnets: NodeSubnets) => Promise<void>;
  /**
   * Refuses a CNI whose families the node cannot carry (e.g. a backend without IPv6): throws a NodenetError
   * saying why. Absent: every family is fine.
   */
  readonly checkFamilies?: (nets: CniNets) => void;
  /** Names of other links nodenet owns that are not instances' (e.g. the overlay device): never orphans. */
  readonly infrastructureLinks?: readonly string[];
  readonly logger?: Logger;
  /** Told the report of every reconcile pass (restore's included), e.g. for metrics. Must not throw. */
  readonly onReconciled?: (report: ReconcileReport) => void;
  /**
   * Told what nodenet itself is about to remove and when it is done (an instance's release), so that a
   * watcher of the kernel's change notifications can tell its own deletions from drift; and when a create
   * gives those names and addresses to a new instance, from which moment a deletion of them is drift again.
   * Must not throw.
   */
  readonly onOwnChange?: (notice: OwnChangeNotice) => void;
  readonly randomUint32?: () => number;
  readonly now?: () => Date;
}

/**
 * What nodenet changes itself. `subjects`: the instance's host-side and instance-side link names and its
 * addresses, which every link, address and packet-filter element of that instance names. `begin`/`end`
 * bracket a release (its deletions are nodenet's own); `create`: the subjects belong to a new instance now.
 */
export interface OwnChangeNotice {
  readonly phase: 'begin' | 'end' | 'create';
  readonly subjects: readonly string[];
}

/** The names and addresses an instance's links and packet-filter elements carry (see OwnChangeNotice). */
export function ownChangeSubjects(record: InstanceRecord): string[] {
  return [record.hostIfname, record.handle, ...addressList(instanceAddressesOfRecord(record))];
}

export interface CreateCniInput {
  /** The seed's fields: IPv4 (IPv4-only or dual-stack node) or IPv6 (IPv6-only node). */
  readonly ipAddress?: unknown;
  readonly subNetwork?: unknown;
  /** The IPv6 half of a dual-stack node. */
  readonly ipv6Address?: unknown;
  readonly ipv6SubNetwork?: unknown;
}

export interface CreateInterfaceInput {
  /** IPv4, or IPv6 on an IPv6-only node. */
  readonly ipAddress?: unknown;
  /** The instance's IPv6 address on a dual-stack node (without it the instance gets IPv4 only). */
  readonly ipv6Address?: unknown;
  /** The seed's ports: each published for TCP and UDP on the same port. */
  readonly ports?: readonly unknown[];
  readonly portMappings?: readonly PortMappingInput[];
  readonly kind?: InstanceKind;
  readonly netns?: unknown;
  readonly ifname?: unknown;
}

export interface CreateInterfaceResult {
  readonly interfaceName: IfName;
  readonly hostInterfaceName: IfName;
  readonly macAddress: string;
  /** The gateway and prefix of the seed's family (IPv4; IPv6 on an IPv6-only node). */
  readonly gateway: IpAddress;
  readonly prefixLength: number;
  /** A dual-stack instance's IPv6 gateway and prefix length (absent when it has no IPv6 address). */
  readonly ipv6Gateway?: Ipv6Address;
  readonly ipv6PrefixLength?: number;
  readonly mtu: number;
}

/** For a create: `signal` aborts when the caller gives up (cancel, deadline); work not yet committed then rolls back. */
export interface CallOptions {
  readonly signal?: AbortSignal;
}

/** Thrown where a create finds its caller gone: before the commit, so the create rolls back like a failed one. */
function throwIfCancelled(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new UnavailableError(
      `${what} was cancelled by its client (or its deadline passed) before it finished: nothing of it was kept; retry`,
    );
  }
}

export interface DeleteInterfaceInput {
  readonly interfaceName?: unknown;
}

/** A validated CreateInterface request, in the form used to compare requests for idempotency. */
interface InstanceRequest {
  /** The seed field's address: the key of the instance's slot (an IPv6 address of a dual-stack one is reserved too). */
  readonly address: IpAddress;
  readonly addresses: InstanceAddresses;
  readonly kind: InstanceKind;
  readonly ports: PortMapping[];
  readonly netns?: NetnsRef;
  readonly ifname?: IfName;
}

/** An address's owner: a create in flight (`record` unset) or a finished instance. */
interface Slot {
  readonly handle: IfName;
  readonly request: InstanceRequest;
  readonly done: Promise<InstanceRecord>;
}

const DEFAULT_IFNAME = 'eth0' as IfName;

export class NodeNetwork {
  private readonly dataplane: Dataplane;
  private readonly namespaces: NamespaceIdentity;
  private readonly filter: PacketFilter;
  private readonly store: StateStore;
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly now: () => Date;
  private readonly cniMutex = new Mutex();

  private cni: CniRecord | null = null;
  private readonly instances = new Map<IfName, InstanceRecord>();
  /** Every address of every instance (both families), each to its owner. */
  private readonly byAddress = new Map<IpAddress, Slot>();
  private readonly byPort = new PortClaims<IfName>();
  private readonly inFlightHandles = new Set<IfName>();
  private readonly released = new Set<IfName>();
  private readonly deleting = new Map<IfName, Promise<void>>();
  /** Instances a reconcile pass is repairing; a delete of one waits for the repair. */
  private readonly repairing = new Map<IfName, Promise<void>>();
  private readonly reconcileMutex = new Mutex();
  private lastReport: ReconcileReport | null = null;

  constructor(private readonly options: NodeNetworkOptions) {
    this.dataplane = options.dataplane;
    this.namespaces = options.namespaces;
    this.filter = options.packetFilter;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.random = options.randomUint32 ?? (() => crypto.getRandomValues(new Uint32Array(1))[0]!);
    this.now = options.now ?? (() => new Date());
  }

  /** Loads the recorded state into memory. */
  async load(): Promise<void> {
    this.adopt(await this.store.load());
  }

  private adopt(state: NodeState): void {
    this.cni = state.cni;
    for (const handle of state.released) this.released.add(handle);
    for (const record of state.instances) this.track(record);
  }

  private track(record: InstanceRecord): void {
    this.instances.set(record.handle, record);
    const request: InstanceRequest = {
      address: record.address,
      addresses: instanceAddressesOfRecord(record),
      kind: record.kind,
      ports: [...record.ports],
      ...(record.netns ? { netns: record.netns } : {}),
      ...(record.ifname ? { ifname: record.ifname } : {}),
    };
    const slot = { handle: record.handle, request, done: Promise.resolve(record) };
    for (const address of addressList(request.addresses)) this.byAddress.set(address, slot);
    for (const m of record.ports) this.byPort.claim(m, record.handle);
  }

  private untrack(record: InstanceRecord): void {
    this.instances.delete(record.handle);
    for (const address of addressList(instanceAddressesOfRecord(record))) {
      if (this.byAddress.get(address)?.handle === record.handle) this.byAddress.delete(address);
    }
    for (const m of record.ports) this.byPort.release(m, record.handle);
  }

  /** The CNI record, or null before CreateContainerNetworkInterface. */
  get cniRecord(): CniRecord | null {
    return this.cni;
  }

  /** Every instance record, sorted by handle. */
  listInstances(): InstanceRecord[] {
    // Handles are ASCII (nni- and hex digits): code-unit order, without localeCompare's collation (~0.1 s at 2,000).
    return [...this.instances.values()].sort((a, b) => (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0));
  }

  get instanceMtu(): number {
    return this.options.host.underlayMtu - this.options.overlayOverhead;
  }

  // ---------------------------------------------------------------------------------------------------
  // CreateContainerNetworkInterface

  async createContainerNetworkInterface(input: CreateCniInput, options: CallOptions = {}): Promise<{ interfaceName: IfName }> {
    const nets = parseCniNets(input);
    const fields = cniRecordFields(nets);
    return this.cniMutex.run(async () => {
      if (this.cni) return { interfaceName: this.sameCniOrThrow(this.cni, fields) };
      this.checkSubnetsAreFree(nets);
      this.options.checkFamilies?.(nets);
      const spec: CniSpec = { name: CNI_NAME, ...nets, mtu: this.instanceMtu, mac: macForAddress(fields.gateway) };
      const record: CniRecord = {
        name: spec.name,
        ...fields,
        mtu: spec.mtu,
        mac: spec.mac,
        createdAt: this.now().toISOString(),
      };
      const context = { rpc: 'CreateContainerNetworkInterface', cni: spec.name, subnet: record.subnet };
      const tx = new Transaction(this.logger, context);
      try {
        throwIfCancelled(options.signal, 'CreateContainerNetworkInterface');
        await tx.do(
          'create the CNI bridge',
          () => this.dataplane.ensureCni(spec),
          () => this.dataplane.deleteCni(spec.name),
        );
        await tx.do(
          'install the packet-filter table',
          () => this.filter.ensureBase(this.filterBase(spec)),
          () => this.filter.removeBase(),
        );
        if (this.options.joinCluster) await tx.do('join the cluster', () => this.options.joinCluster!(nodeSubnetsOf(nets)));
        throwIfCancelled(options.signal, 'CreateContainerNetworkInterface');
        await tx.do('record the CNI', () => this.store.saveCni(record));
      } catch (e) {
        const err = asNodenetError(e, 'create the CNI');
        await tx.rollback(err);
        throw err;
      }
      this.cni = record;
      this.logger.info({ ...context, gateway: record.gateway, ipv6Subnet: record.ipv6Subnet, mtu: record.mtu }, 'CNI created');
      return { interfaceName: record.name };
    });
  }

  private sameCniOrThrow(cni: CniRecord, want: ReturnType<typeof cniRecordFields>): IfName {
    const diffs: string[] = [];
    const none = '(none)';
    if (cni.gateway !== want.gateway) diffs.push(`ip_address ${want.gateway} differs from the CNI's ${cni.gateway}`);
    if (cni.subnet !== want.subnet) diffs.push(`sub_network ${want.subnet} differs from the CNI's ${cni.subnet}`);
    if (cni.ipv6Gateway !== want.ipv6Gateway) {
      diffs.push(`ipv6_address ${want.ipv6Gateway ?? none} differs from the CNI's ${cni.ipv6Gateway ?? none}`);
    }
    if (cni.ipv6Subnet !== want.ipv6Subnet) {
      diffs.push(`ipv6_sub_network ${want.ipv6Subnet ?? none} differs from the CNI's ${cni.ipv6Subnet ?? none}`);
    }
    if (diffs.length === 0) return cni.name;
    const held = cni.ipv6Subnet
      ? `${cni.gateway} in ${cni.subnet} and ${cni.ipv6Gateway} in ${cni.ipv6Subnet}`
      : `${cni.gateway} in ${cni.subnet}`;
    throw new FailedPreconditionError(
      `the CNI ${cni.name} already exists with ${held}: ${diffs.join('; ')}. A node has one CNI; repeat the original arguments`,
    );
  }

  /** Every subnet of the new CNI must stay clear of the node's own networks and of the peers' subnets of its family. */
  private checkSubnetsAreFree(nets: CniNets): void {
    if (nets.ipv4) this.checkSubnetIsFree(nets.ipv4.subnet, 'sub_network');
    // The IPv6 subnet arrives in sub_network on an IPv6-only node, in ipv6_sub_network on a dual-stack one.
    if (nets.ipv6) this.checkSubnetIsFree(nets.ipv6.subnet, nets.ipv4 ? 'ipv6_sub_network' : 'sub_network');
  }

  private checkSubnetIsFree(subnet: IpSubnet, field: string): void {
    const { host } = this.options;
    if (subnetContains(subnet, host.underlayAddress)) {
      throw new FailedPreconditionError(
        `${field} ${subnet} contains the node's underlay address ${host.underlayAddress}: choose a subnet outside the underlay`,
      );
    }
    const clash = firstOverlap(subnet, subnetsHeld({ host, peers: this.options.peers?.() ?? [] }));
    if (clash) throw new FailedPreconditionError(`${field} ${subnet} ${describeOverlap(clash)}: choose a free subnet outside it`);
  }

  private cniSpec(cni: CniRecord): CniSpec {
    return { name: cni.name, ...cniNetsOfRecord(cni), mtu: cni.mtu, mac: cni.mac };
  }

  private filterBase(spec: CniSpec): FilterBase {
    const peers = (this.options.peers?.() ?? []).flatMap((p) => subnetsOfNode(p));
    return {
      cniName: spec.name,
      ...(spec.ipv4 ? { ipv4: spec.ipv4 } : {}),
      ...(spec.ipv6 ? { ipv6: spec.ipv6 } : {}),
      clusterSubnets: [...cniSubnets(spec), ...peers],
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // CreateInterface

  async createInterface(input: CreateInterfaceInput, options: CallOptions = {}): Promise<CreateInterfaceResult> {
    const cni = this.cni;
    if (!cni) {
      throw new FailedPreconditionError('this node has no CNI yet: call CreateContainerNetworkInterface first');
    }
    const request = this.parseCreateInterface(input, cni);

    // From here to the reservations below there is no `await`: see the concurrency model at the top.
    const requested = addressList(request.addresses);
    for (const address of requested) {
      const owner = this.byAddress.get(address);
      if (!owner) continue;
      if (sameRequest(owner.request, request)) return this.result(await owner.done, cni);
      throw new AlreadyExistsError(
        `${address} is already used by interface ${owner.handle} with other settings: delete it first or choose another address`,
      );
    }
    if (addressFamily(request.address) === 6) this.checkMacIsFree(request.address);
    for (const m of request.ports) {
      const clash = this.byPort.conflict(m);
      if (clash) {
        const where = clash.mapping.hostAddress === undefined ? 'on every address of the node' : `on ${clash.mapping.hostAddress}`;
        throw new AlreadyExistsError(
          `port ${describePort(m)} is already published by interface ${clash.holder} ${where}: choose another host port${clash.mapping.hostAddress === undefined ? '' : ', or another host address'}`,
        );
      }
    }
    const names = allocateLinkNames((h) => this.isHandleTaken(h), this.random);
    this.inFlightHandles.add(names.handle);
    for (const m of request.ports) this.byPort.claim(m, names.handle);
    const done = this.applyCreate(request, names.handle, request.kind === 'tap' ? names.handle : names.hostIfname, cni, options.signal);
    for (const address of requested) this.byAddress.set(address, { handle: names.handle, request, done });

    try {
      return this.result(await done, cni);
    } catch (e) {
      // Release the reservations taken above.
      for (const address of requested) if (this.byAddress.get(address)?.handle === names.handle) this.byAddress.delete(address);
      for (const m of request.ports) this.byPort.release(m, names.handle);
      throw e;
    } finally {
      this.inFlightHandles.delete(names.handle);
    }
  }

  /**
   * An IPv6-only instance's MAC comes from the last 32 bits of its address (macForAddress): two addresses of a
   * /64 equal in those bits would share a MAC on the bridge. Rare (and impossible in a /96 or longer): a scan.
   */
  private checkMacIsFree(address: IpAddress): void {
    const mac = macForAddress(address);
    for (const [held, slot] of this.byAddress) {
      if (held === slot.request.address && held !== address && macForAddress(held) === mac) {
        throw new AlreadyExistsError(
          `${address} would get the MAC ${mac} of interface ${slot.handle} (${held}): an IPv6-only instance's MAC comes from the last 32 bits of its address; choose an address that differs from ${held} in them`,
        );
      }
    }
  }

  private isHandleTaken(handle: IfName): boolean {
    return this.instances.has(handle) || this.inFlightHandles.has(handle) || this.released.has(handle);
  }

  private parseCreateInterface(input: CreateInterfaceInput, cni: CniRecord): InstanceRequest {
    const nets = cniNetsOfRecord(cni);
    const addresses = parseInstanceAddresses(input, nets);
    const address = instanceRecordFields(addresses).address;
    const kind = input.kind ?? 'veth';
    if (kind !== 'veth' && kind !== 'tap') throw new InvalidArgumentError('kind', `'${String(kind)}' is not a kind: use VETH or TAP`);
    const ports = normalizePorts(input.ports ?? [], input.portMappings ?? [], (hostAddress, field) => {
      const missing = hostAddressFamilyMissing(hostAddress, addresses);
      if (missing === undefined) return;
      // A port on one address goes to the instance's address of that family only: there would be none.
      const held = addressList(addresses).join(', ');
      const remedy =
        missing === 6
          ? nets.ipv6
            ? 'give the instance an IPv6 address too (ipv6_address)'
            : "this node's CNI holds no IPv6 subnet (create it with ipv6_sub_network for dual-stack)"
          : nets.ipv4
            ? 'give the instance an IPv4 address too'
            : "this node's CNI holds no IPv4 subnet";
      throw new InvalidArgumentError(
        field,
        `${hostAddress} is an IPv${missing} address but the instance has no IPv${missing} address (only ${held}), so nothing would receive the port: publish on an IPv${missing === 6 ? 4 : 6} address of the node, or leave host_address out to publish on every address, or ${remedy}`,
      );
    });
    for (const m of ports) {
      const why = this.options.reservedPorts.get(m.hostPort);
      if (why !== undefined) {
        throw new FailedPreconditionError(`port ${m.hostPort} is reserved on this node (${why}): choose another host port`);
      }
    }
    const hasNetns = input.netns !== undefined && input.netns !== '';
    const hasIfname = input.ifname !== undefined && input.ifname !== '';
    if (!hasNetns) {
      if (hasIfname)
        throw new InvalidArgumentError('ifname', 'ifname names the interface inside netns: give netns too, or leave ifname out');
      return { address, addresses, kind, ports };
    }
    const netns = parseNetnsRef(input.netns, 'netns');
    if (kind === 'tap') {
      throw new InvalidArgumentError('netns', 'a TAP stays on the node as the bridge port of its VM: leave netns out for kind TAP');
    }
    const ifname = hasIfname ? parseIfName(input.ifname, 'ifname') : DEFAULT_IFNAME;
    return { address, addresses, kind, ports, netns, ifname };
  }

  private async applyCreate(
    request: InstanceRequest,
    handle: IfName,
    hostIfname: IfName,
    cni: CniRecord,
    signal?: AbortSignal,
  ): Promise<InstanceRecord> {
    let record: InstanceRecord = {
      handle,
      hostIfname,
      kind: request.kind,
      ...instanceRecordFields(request.addresses),
      ports: request.ports,
      ...(request.netns ? { netns: request.netns, ifname: request.ifname } : {}),
      mac: macForAddress(request.address),
      mtu: cni.mtu,
      createdAt: this.now().toISOString(),
    };
    const spec = this.instanceSpec(record, cni);
    const rules = rulesOf(record);
    const context = { rpc: 'CreateInterface', handle, address: record.address };
    this.options.onOwnChange?.({ phase: 'create', subjects: ownChangeSubjects(record) });
    const tx = new Transaction(this.logger, context);
    let staged: StagedRecord | undefined;
    try {
      throwIfCancelled(signal, 'CreateInterface');
      // The namespace's identity belongs in the record: read it first (a stat), so the record can be written
      // while the interface is made.
      if (request.kind === 'veth' && request.netns) record = { ...record, netnsId: await this.namespaces.identifyNamespace(request.netns) };
      // Rules, link and record side by side. The filter's default deny on nodenet's bridge ports (nnh-*,
      // nni-*) holds the new port until its allowed source is in, so no order is needed between rules and
      // link. The record is staged (durable, not yet in effect) and committed only once both succeeded: a
      // crash before the commit leaves an orphan link that reconcile removes, never a record of an instance
      // that was not made. All settle before a roll-back, which then undoes whichever succeeded.
      const [rulesDone, linkDone, stagedDone] = await Promise.allSettled([
        tx.do(
          'publish ports and install anti-spoofing',
          () => this.filter.addInstance(rules),
          () => this.filter.removeInstance(rules),
        ),
        tx.do(
          'create the interface',
          () => this.dataplane.createInstance(spec),
          () => this.dataplane.deleteInstance(record, cni),
        ),
        this.store.stageInstance(record),
      ]);
      if (stagedDone.status === 'fulfilled') staged = stagedDone.value;
      // The dataplane's failure first: it says more (a missing namespace, a name taken) than a filter's would.
      if (linkDone.status === 'rejected') throw linkDone.reason;
      if (rulesDone.status === 'rejected') throw rulesDone.reason;
      if (stagedDone.status === 'rejected') throw asNodenetError(stagedDone.reason, 'record the interface');
      // The last moment a cancelled call can still take everything back: the commit below is the point of no return.
      throwIfCancelled(signal, 'CreateInterface');
      const placement = linkDone.value;
      if (placement?.netnsId && placement.netnsId !== record.netnsId) {
        // The namespace was replaced between the stat and the move: record the one the link went into.
        await staged!.discard();
        staged = undefined;
        record = { ...record, netnsId: placement.netnsId };
        await tx.do('record the interface', () => this.store.saveInstance(record));
      } else {
        await tx.do('record the interface', () => staged!.commit());
      }
    } catch (e) {
      const err = asNodenetError(e, 'create the interface');
      if (staged)
        await staged
          .discard()
          .catch((d: unknown) => this.logger.error({ ...context, err: String(d) }, 'could not remove the staged record'));
      await tx.rollback(err);
      this.logger.warn({ ...context, code: err.code, err: err.message }, 'create failed and was rolled back');
      throw err;
    }
    this.track(record);
    this.logger.info({ ...context, host: record.hostIfname, kind: record.kind, ports: record.ports.length }, 'interface created');
    return record;
  }

  private result(record: InstanceRecord, cni: CniRecord): CreateInterfaceResult {
    const nets = cniNetsOfRecord(cni);
    const seed = nets.ipv4 ?? nets.ipv6!;
    return {
      interfaceName: record.handle,
      hostInterfaceName: record.hostIfname,
      macAddress: record.mac,
      gateway: seed.gateway,
      prefixLength: seed.subnet.prefixLength,
      ...(record.ipv6Address && nets.ipv6 ? { ipv6Gateway: nets.ipv6.gateway, ipv6PrefixLength: nets.ipv6.subnet.prefixLength } : {}),
      mtu: record.mtu,
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // DeleteInterface

  async deleteInterface(input: DeleteInterfaceInput): Promise<void> {
    const name = parseIfName(input.interfaceName, 'interface_name');
    const pending = this.deleting.get(name);
    if (pending) return pending;
    await this.repairing.get(name);
    const again = this.deleting.get(name);
    if (again) return again;
    const record = this.instances.get(name);
    if (!record) return this.deleteUnknown(name);
    const cni = this.cni!;
    const work = this.applyDelete(record, cni).finally(() => this.deleting.delete(name));
    this.deleting.set(name, work);
    return work;
  }

  private async deleteUnknown(name: IfName): Promise<void> {
    if (this.released.has(name)) return; // issued before, already deleted: idempotent OK
    if (this.inFlightHandles.has(name)) {
      throw new FailedPreconditionError(`interface ${name} is still being created: retry when CreateInterface has returned`);
    }
    if (this.cni && name === this.cni.name) {
      throw new PermissionDeniedError(
        `${name} is the node's CNI, not an instance interface: DeleteInterface removes only interfaces that CreateInterface returned`,
      );
    }
    const link = await this.dataplane.inspectLink(name);
    if (link) {
      throw new PermissionDeniedError(
        `interface ${name} was not created by nodenet for an instance: DeleteInterface removes only interfaces that CreateInterface returned`,
      );
    }
    throw new NotFoundError(`no interface ${name}: it is neither a handle this daemon issued nor an interface on this node`);
  }

  private async applyDelete(record: InstanceRecord, cni: CniRecord): Promise<void> {
    const context = { rpc: 'DeleteInterface', handle: record.handle, address: record.address };
    try {
      await this.release(record, cni);
    } catch (e) {
      // The record stays, so a retry of DeleteInterface resumes; every step is tolerant of work already done.
      const err = asNodenetError(e, 'delete the interface');
      this.logger.error({ ...context, err: err.message }, 'delete failed; retry DeleteInterface');
      throw err;
    }
    this.logger.info(context, 'interface deleted');
  }

  /**
   * The one release path (DeleteInterface, and reconcile for an instance that is gone): the link, the rules
   * and then conntrack, the record last. Every step is tried whatever the others did (netavark's teardown);
   * when any failed, all failures are reported together (TeardownError) and the record stays for a retry.
   * The link (its deletion waits ~20 ms in the kernel for an RCU grace period) goes in parallel with the
   * rules: no order between them matters (bridge ports admit nothing without their rules), and the flush
   * comes after the rules, so no new connection can be NATed to the old address or admitted from its port
   * behind the flush.
   */
  private async release(record: InstanceRecord, cni: CniRecord): Promise<void> {
    const rules = rulesOf(record);
    const step = (name: string, fn: () => Promise<void>) => fn().catch((e: unknown) => Promise.reject(asNodenetError(e, name)));
    // First, before the kernel is touched: a state directory that cannot be written refuses the delete here.
    await step('note the release', () => this.store.beginRelease(record.handle));
    const subjects = ownChangeSubjects(record);
    this.options.onOwnChange?.({ phase: 'begin', subjects });
    const rulesRemoved = step('remove published ports and anti-spoofing', () => this.filter.removeInstance(rules));
    const results = await Promise.allSettled([
      step('delete the interface', () => this.dataplane.deleteInstance(record, cni)),
      rulesRemoved,
      rulesRemoved
        .catch(() => undefined)
        .then(() => step('flush connection tracking', () => this.filter.flushConntrack(addressList(instanceAddressesOfRecord(record))))),
    ]);
    this.options.onOwnChange?.({ phase: 'end', subjects });
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as NodenetError] : []));
    const [onlyFailure] = failures;
    if (failures.length === 1 && onlyFailure) throw onlyFailure;
    if (failures.length > 1) throw new TeardownError(`release ${record.handle}`, failures);
    await step('forget the interface', () => this.store.releaseInstance(record.handle));
    this.untrack(record);
    this.released.add(record.handle);
  }

  // ---------------------------------------------------------------------------------------------------
  // Restore and reconcile

  /**
   * Brings the node back to what the records say, before the daemon reports SERVING: after a restart this
   * changes nothing that is right; after a reboot it recreates the CNI and the filter, rejoins the cluster,
   * and releases instances that are gone.
   */
  async restore(): Promise<ReconcileReport> {
    const cni = this.cni;
    if (cni && this.options.joinCluster) {
      try {
        await this.options.joinCluster(nodeSubnetsOf(cniNetsOfRecord(cni)));
      } catch (e) {
        // The node keeps serving its own instances; the next reconcile pass retries the join.
        this.logger.error({ err: asNodenetError(e, 'rejoin the cluster').message }, 'could not rejoin the cluster');
      }
    }
    return this.reconcile({ trigger: 'start' });
  }

  /** The last reconcile pass's report, or null before the first. */
  get lastReconcile(): ReconcileReport | null {
    return this.lastReport;
  }

  /**
   * One reconcile pass: converge the CNI and the filter base, then compare records with the links and
   * filter elements nodenet owns; recreate or release instances whose interface is gone, restore missing
   * rules, remove orphans. Never touches what nodenet does not own. Passes run one at a time.
   */
  reconcile(cause: ReconcileCause = { trigger: 'periodic' }): Promise<ReconcileReport> {
    // Under the CNI's mutex too: a pass never sees a CNI half-made by CreateContainerNetworkInterface.
    return this.reconcileMutex.run(() => this.cniMutex.run(() => this.reconcilePass(cause)));
  }

  private async reconcilePass(cause: ReconcileCause): Promise<ReconcileReport> {
    const startedAt = this.now();
    const t0 = performance.now();
    const repairs: string[] = [];
    const repairCounts: Partial<Record<RepairKind, number>> = {};
    const repaired = (kind: RepairKind, line: string, count = 1) => {
      repairs.push(line);
      repairCounts[kind] = (repairCounts[kind] ?? 0) + count;
    };
    const errors: string[] = [];
    const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn();
      } catch (e) {
        errors.push(asNodenetError(e, what).message);
        return undefined;
      }
    };
    const note = (kind: RepairKind, r: Repairs | void) => {
      for (const line of r ?? []) repaired(kind, line);
    };
    const phases: Record<string, number> = {};
    let phaseStart = t0;
    const phaseDone = (name: string) => {
      const now = performance.now();
      phases[name] = Math.round((now - phaseStart) * 10) / 10;
      phaseStart = now;
    };

    const cni = this.cni;
    if (cni) {
      const spec = this.cniSpec(cni);
      note('cni', await attempt('converge the CNI', () => this.dataplane.ensureCni(spec)));
      phaseDone('cni');
      note('packet_filter', await attempt('converge the packet filter', () => this.filter.ensureBase(this.filterBase(spec))));
      phaseDone('filter');
    }
    // Only records that existed before the kernel is listed are checked (newer ones may not show yet);
    // every record explains what it owns.
    const knownBefore = new Set(this.instances.keys());
    // Both listings side by side: with 2,000 instances each is a large dump, and neither depends on the other.
    const [links, elements] = await Promise.all([
      attempt('list owned links', () => this.dataplane.listOwnedLinks()),
      attempt('list filter elements', () => this.filter.listElements()),
    ]);
    phaseDone('list');
    if (links && elements) {
      const plan = planReconcile({
        records: [...this.instances.values()],
        checkable: knownBefore,
        // The CNI's name even before its record exists: a CNI being created is never an orphan.
        cniName: cni?.name ?? CNI_NAME,
        infrastructureLinks: new Set(this.options.infrastructureLinks ?? []),
        links,
        elements,
        busy: this.busySet(),
      });
      if (plan.orphanLinks.length > 0) {
        await attempt('remove orphan links', async () => {
          await this.dataplane.deleteOwnedLinks(plan.orphanLinks);
          repaired('orphan_link', `removed links no record explains: ${plan.orphanLinks.join(', ')}`, plan.orphanLinks.length);
        });
      }
      const { ports: orphanPorts, sources: orphanSources } = plan.orphanElements;
      if (orphanPorts.length + orphanSources.length > 0) {
        await attempt('remove orphan filter elements', async () => {
          await this.filter.removeElements(plan.orphanElements);
          const described = [
            ...orphanPorts.map((p) => `port ${describePort(p)} -> ${p.address}:${p.instancePort}`),
            ...orphanSources.map((src) => `source ${src.address} on ${src.ifname}`),
          ];
          repaired('orphan_filter_element', `removed filter elements no record explains: ${described.join(', ')}`, described.length);
        });
      }
      if (cni && this.dataplane.attachToCni) {
        for (const record of plan.detachedPorts) {
          await attempt(`attach ${record.hostIfname} to ${cni.name}`, async () => {
            await this.dataplane.attachToCni!(record.hostIfname, this.cniSpec(cni), record);
            repaired(
              'detached_port',
              `${record.hostIfname} of ${record.handle} (${record.address}) was not a port of ${cni.name}: attached again`,
            );
          });
        }
      }
      for (const record of plan.missingRules) {
        await attempt(`restore the rules of ${record.handle}`, async () => {
          await this.filter.addInstance(rulesOf(record));
          repaired('missing_rules', `rules of ${record.handle} (${record.address}) were missing: restored`);
        });
      }
      if (cni) {
        for (const record of plan.missingInterfaces) {
          if (this.deleting.has(record.handle) || !this.instances.has(record.handle)) continue;
          const work = this.repairInstance(record, cni, repaired, errors).finally(() => this.repairing.delete(record.handle));
          this.repairing.set(record.handle, work);
          await work;
        }
      }
    }
    phaseDone('fix');
    const report: ReconcileReport = {
      trigger: cause.trigger,
      startedAt: startedAt.toISOString(),
      durationMs: Math.round(performance.now() - t0),
      repairs,
      repairCounts,
      errors,
      phases,
    };
    this.lastReport = report;
    this.options.onReconciled?.(report);
    const found = { trigger: cause.trigger, ...(cause.causes && cause.causes.length > 0 ? { causes: cause.causes } : {}) };
    for (const r of repairs) this.logger.warn({ event: 'repair', repair: r, ...found }, `repaired (${cause.trigger}): ${r}`);
    for (const e of errors) this.logger.error({ event: 'reconcile-error', err: e, trigger: cause.trigger }, `reconcile: ${e}`);
    this.logger.info(
      { event: 'reconciled', trigger: cause.trigger, durationMs: report.durationMs, repairs: repairs.length, errors: errors.length },
      'reconcile pass done',
    );
    return report;
  }

  /** An instance whose interface is gone: put it back where it was if that namespace still lives, else release it. */
  private async repairInstance(
    record: InstanceRecord,
    cni: CniRecord,
    repaired: (kind: RepairKind, line: string) => void,
    errors: string[],
  ): Promise<void> {
    try {
      if (record.netns && (await this.namespaces.namespaceAlive(record.netns, record.netnsId))) {
        await this.filter.addInstance(rulesOf(record));
        const placement = await this.dataplane.createInstance(this.instanceSpec(record, cni));
        if (placement?.netnsId && placement.netnsId !== record.netnsId) {
          const updated = { ...record, netnsId: placement.netnsId };
          await this.store.saveInstance(updated);
          this.track(updated);
        }
        repaired(
          'instance_recreated',
          `interface ${record.handle} (${record.address}) was missing: recreated in namespace ${record.netns}`,
        );
        return;
      }
      // Nowhere to put it back: the instance is gone (its namespace went, or a runtime moved it and the pair
      // was deleted). Free its address and ports.
      await this.release(record, cni);
      const why = record.netns
        ? `its namespace ${record.netns} no longer exists`
        : record.kind === 'tap'
          ? 'its TAP is gone'
          : 'its veth pair is gone';
      repaired('instance_released', `instance ${record.handle} (${record.address}) is gone (${why}): released its address and ports`);
    } catch (e) {
      errors.push(asNodenetError(e, `repair ${record.handle}`).message);
    }
  }

  /** What the dataplane needs to make `record`'s interface: built from the record, the one source of truth. */
  private instanceSpec(record: InstanceRecord, cni: CniRecord): InstanceSpec {
    return {
      handle: record.handle,
      hostIfname: record.hostIfname,
      kind: record.kind,
      address: record.address,
      ...instanceAddressesOfRecord(record),
      mac: record.mac,
      mtu: record.mtu,
      cni: this.cniSpec(cni),
      ...(record.netns ? { netns: record.netns, ifname: record.ifname } : {}),
    };
  }

  /** Creates and deletes in flight: reconcile leaves their links and elements alone. */
  private busySet(): BusySet {
    const handles = new Set<string>([...this.inFlightHandles, ...this.deleting.keys(), ...this.repairing.keys()]);
    const addresses = new Set<string>();
    for (const [address, slot] of this.byAddress) {
      if (!handles.has(slot.handle)) continue;
      addresses.add(address);
      // Its link-local source element too (derived from the MAC, which comes from the seed address).
      if (addressFamily(address) === 6) addresses.add(linkLocalForMac(macForAddress(slot.request.address)));
    }
    return { handles, addresses, portKeys: this.byPort.keysHeldBy((h) => handles.has(h)) };
  }
}

/** The packet-filter rules of an instance. */
function rulesOf(record: InstanceRecord): InstanceRules {
  const addresses = instanceAddressesOfRecord(record);
  return {
    hostIfname: record.hostIfname,
    ...addresses,
    ...(addresses.ipv6 ? { ipv6LinkLocal: linkLocalForMac(record.mac) } : {}),
    ports: record.ports,
  };
}

function sameRequest(a: InstanceRequest, b: InstanceRequest): boolean {
  return (
    a.address === b.address &&
    a.addresses.ipv6 === b.addresses.ipv6 &&
    a.kind === b.kind &&
    a.netns === b.netns &&
    a.ifname === b.ifname &&
    samePortMappings(a.ports, b.ports)
  );
}
