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
import { macForAddress, parseIpv4Address, Subnet, type Ipv4Address } from './net.js';
import { allocateLinkNames, CNI_NAME, parseIfName, parseNetnsRef, type IfName, type NetnsRef } from './names.js';
import { normalizePorts, portKey, samePortMappings, type PortMapping, type PortMappingInput } from './ports.js';
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
import { describeOverlap, firstOverlap, subnetsHeld, type NodeSubnets } from './cluster.js';
import { familyOf } from './cluster-addresses.js';

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
  /** Names of other links nodenet owns that are not instances' (e.g. the overlay device): never orphans. */
  readonly infrastructureLinks?: readonly string[];
  readonly logger?: Logger;
  /** Told the report of every reconcile pass (restore's included), e.g. for metrics. Must not throw. */
  readonly onReconciled?: (report: ReconcileReport) => void;
  readonly randomUint32?: () => number;
  readonly now?: () => Date;
}

export interface CreateCniInput {
  readonly ipAddress?: unknown;
  readonly subNetwork?: unknown;
}

export interface CreateInterfaceInput {
  readonly ipAddress?: unknown;
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
  readonly gateway: Ipv4Address;
  readonly prefixLength: number;
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
  readonly address: Ipv4Address;
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
  private readonly byAddress = new Map<Ipv4Address, Slot>();
  private readonly byPort = new Map<string, IfName>();
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
      kind: record.kind,
      ports: [...record.ports],
      ...(record.netns ? { netns: record.netns } : {}),
      ...(record.ifname ? { ifname: record.ifname } : {}),
    };
    this.byAddress.set(record.address, { handle: record.handle, request, done: Promise.resolve(record) });
    for (const m of record.ports) this.byPort.set(portKey(m.protocol, m.hostPort), record.handle);
  }

  private untrack(record: InstanceRecord): void {
    this.instances.delete(record.handle);
    if (this.byAddress.get(record.address)?.handle === record.handle) this.byAddress.delete(record.address);
    for (const m of record.ports) {
      const key = portKey(m.protocol, m.hostPort);
      if (this.byPort.get(key) === record.handle) this.byPort.delete(key);
    }
  }

  /** The CNI record, or null before CreateContainerNetworkInterface. */
  get cniRecord(): CniRecord | null {
    return this.cni;
  }

  /** Every instance record, sorted by handle. */
  listInstances(): InstanceRecord[] {
    return [...this.instances.values()].sort((a, b) => a.handle.localeCompare(b.handle));
  }

  get instanceMtu(): number {
    return this.options.host.underlayMtu - this.options.overlayOverhead;
  }

  // ---------------------------------------------------------------------------------------------------
  // CreateContainerNetworkInterface

  async createContainerNetworkInterface(input: CreateCniInput, options: CallOptions = {}): Promise<{ interfaceName: IfName }> {
    const gateway = parseIpv4Address(input.ipAddress, 'ip_address');
    const subnet = Subnet.parse(input.subNetwork, 'sub_network');
    if (subnet.prefixLength > 30) {
      throw new InvalidArgumentError('sub_network', `${subnet} leaves no address for instances: use a prefix length of 30 or less`);
    }
    if (!subnet.isUsableHost(gateway)) {
      throw new InvalidArgumentError(
        'ip_address',
        `${gateway} is not a usable host address of ${subnet} (it must be inside it and be neither ${subnet.network} nor ${subnet.broadcast})`,
      );
    }
    return this.cniMutex.run(async () => {
      if (this.cni) return { interfaceName: this.sameCniOrThrow(this.cni, gateway, subnet) };
      this.checkSubnetIsFree(subnet);
      const spec: CniSpec = { name: CNI_NAME, gateway, subnet, mtu: this.instanceMtu, mac: macForAddress(gateway) };
      const record: CniRecord = {
        name: spec.name,
        gateway,
        subnet: subnet.toString(),
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
        if (this.options.joinCluster) await tx.do('join the cluster', () => this.options.joinCluster!({ subnet }));
        throwIfCancelled(options.signal, 'CreateContainerNetworkInterface');
        await tx.do('record the CNI', () => this.store.saveCni(record));
      } catch (e) {
        const err = asNodenetError(e, 'create the CNI');
        await tx.rollback(err);
        throw err;
      }
      this.cni = record;
      this.logger.info({ ...context, gateway, mtu: record.mtu }, 'CNI created');
      return { interfaceName: record.name };
    });
  }

  private sameCniOrThrow(cni: CniRecord, gateway: Ipv4Address, subnet: Subnet): IfName {
    const diffs: string[] = [];
    if (cni.gateway !== gateway) diffs.push(`ip_address ${gateway} differs from the CNI's ${cni.gateway}`);
    if (cni.subnet !== subnet.toString()) diffs.push(`sub_network ${subnet} differs from the CNI's ${cni.subnet}`);
    if (diffs.length === 0) return cni.name;
    throw new FailedPreconditionError(
      `the CNI ${cni.name} already exists with ${cni.gateway} in ${cni.subnet}: ${diffs.join('; ')}. A node has one CNI; repeat the original arguments`,
    );
  }

  private checkSubnetIsFree(subnet: Subnet): void {
    const { host } = this.options;
    if (familyOf(host.underlayAddress) === 'ipv4' && subnet.contains(host.underlayAddress as Ipv4Address)) {
      throw new FailedPreconditionError(
        `sub_network ${subnet} contains the node's underlay address ${host.underlayAddress}: choose a subnet outside the underlay`,
      );
    }
    const clash = firstOverlap(subnet, subnetsHeld({ host, peers: this.options.peers?.() ?? [] }));
    if (clash) throw new FailedPreconditionError(`sub_network ${subnet} ${describeOverlap(clash)}: choose a free subnet outside it`);
  }

  private cniSpec(cni: CniRecord): CniSpec {
    return { name: cni.name, gateway: cni.gateway, subnet: Subnet.of(cni.subnet), mtu: cni.mtu, mac: cni.mac };
  }

  private filterBase(spec: CniSpec): FilterBase {
    // IPv4 here; the IPv6 subnets reach the filter through PacketFilter.setClusterSubnets (PeerSync).
    const peers = (this.options.peers?.() ?? []).flatMap((p) => (p.subnet ? [p.subnet] : []));
    return { cniName: spec.name, subnet: spec.subnet, gateway: spec.gateway, clusterSubnets: [spec.subnet, ...peers] };
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
    const owner = this.byAddress.get(request.address);
    if (owner) {
      if (sameRequest(owner.request, request)) return this.result(await owner.done, cni);
      throw new AlreadyExistsError(
        `${request.address} is already used by interface ${owner.handle} with other settings: delete it first or choose another address`,
      );
    }
    for (const m of request.ports) {
      const holder = this.byPort.get(portKey(m.protocol, m.hostPort));
      if (holder) {
        throw new AlreadyExistsError(
          `port ${m.hostPort}/${m.protocol} is already published by interface ${holder}: choose another host port`,
        );
      }
    }
    const names = allocateLinkNames((h) => this.isHandleTaken(h), this.random);
    this.inFlightHandles.add(names.handle);
    for (const m of request.ports) this.byPort.set(portKey(m.protocol, m.hostPort), names.handle);
    const done = this.applyCreate(request, names.handle, request.kind === 'tap' ? names.handle : names.hostIfname, cni, options.signal);
    this.byAddress.set(request.address, { handle: names.handle, request, done });

    try {
      return this.result(await done, cni);
    } catch (e) {
      // Release the reservations taken above.
      this.byAddress.delete(request.address);
      for (const m of request.ports) {
        const key = portKey(m.protocol, m.hostPort);
        if (this.byPort.get(key) === names.handle) this.byPort.delete(key);
      }
      throw e;
    } finally {
      this.inFlightHandles.delete(names.handle);
    }
  }

  private isHandleTaken(handle: IfName): boolean {
    return this.instances.has(handle) || this.inFlightHandles.has(handle) || this.released.has(handle);
  }

  private parseCreateInterface(input: CreateInterfaceInput, cni: CniRecord): InstanceRequest {
    const subnet = Subnet.of(cni.subnet);
    const address = parseIpv4Address(input.ipAddress, 'ip_address');
    if (!subnet.isUsableHost(address)) {
      throw new InvalidArgumentError(
        'ip_address',
        `${address} is not a usable host address of the node's subnet ${subnet}: use an address between ${subnet.nth(1)} and ${subnet.nth(subnet.size - 2)}`,
      );
    }
    if (address === cni.gateway) {
      throw new InvalidArgumentError(
        'ip_address',
        `${address} is the node's gateway (the CNI's address): use another address of ${subnet}`,
      );
    }
    const kind = input.kind ?? 'veth';
    if (kind !== 'veth' && kind !== 'tap') throw new InvalidArgumentError('kind', `'${String(kind)}' is not a kind: use VETH or TAP`);
    const ports = normalizePorts(input.ports ?? [], input.portMappings ?? []);
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
      return { address, kind, ports };
    }
    const netns = parseNetnsRef(input.netns, 'netns');
    if (kind === 'tap') {
      throw new InvalidArgumentError('netns', 'a TAP stays on the node as the bridge port of its VM: leave netns out for kind TAP');
    }
    const ifname = hasIfname ? parseIfName(input.ifname, 'ifname') : DEFAULT_IFNAME;
    return { address, kind, ports, netns, ifname };
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
      address: request.address,
      ports: request.ports,
      ...(request.netns ? { netns: request.netns, ifname: request.ifname } : {}),
      mac: macForAddress(request.address),
      mtu: cni.mtu,
      createdAt: this.now().toISOString(),
    };
    const spec = this.instanceSpec(record, cni);
    const rules = rulesOf(record);
    const context = { rpc: 'CreateInterface', handle, address: record.address };
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
    return {
      interfaceName: record.handle,
      hostInterfaceName: record.hostIfname,
      macAddress: record.mac,
      gateway: cni.gateway,
      prefixLength: Subnet.of(cni.subnet).prefixLength,
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
    const rulesRemoved = step('remove published ports and anti-spoofing', () => this.filter.removeInstance(rules));
    const results = await Promise.allSettled([
      step('delete the interface', () => this.dataplane.deleteInstance(record, cni)),
      rulesRemoved,
      rulesRemoved.catch(() => undefined).then(() => step('flush connection tracking', () => this.filter.flushConntrack(record.address))),
    ]);
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
        await this.options.joinCluster({ subnet: Subnet.of(cni.subnet) });
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

    const cni = this.cni;
    if (cni) {
      const spec = this.cniSpec(cni);
      note('cni', await attempt('converge the CNI', () => this.dataplane.ensureCni(spec)));
      note('packet_filter', await attempt('converge the packet filter', () => this.filter.ensureBase(this.filterBase(spec))));
    }
    // Only records that existed before the kernel is listed are checked (newer ones may not show yet);
    // every record explains what it owns.
    const knownBefore = new Set(this.instances.keys());
    const links = await attempt('list owned links', () => this.dataplane.listOwnedLinks());
    const elements = await attempt('list filter elements', () => this.filter.listElements());
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
            ...orphanPorts.map((p) => `port ${p.hostPort}/${p.protocol} -> ${p.address}:${p.instancePort}`),
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
          await this.filter.addInstance({ hostIfname: record.hostIfname, address: record.address, ports: record.ports });
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
    const report: ReconcileReport = {
      trigger: cause.trigger,
      startedAt: startedAt.toISOString(),
      durationMs: Math.round(performance.now() - t0),
      repairs,
      repairCounts,
      errors,
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
    for (const [address, slot] of this.byAddress) if (handles.has(slot.handle)) addresses.add(address);
    const portKeys = new Set<string>();
    for (const [key, handle] of this.byPort) if (handles.has(handle)) portKeys.add(key);
    return { handles, addresses, portKeys };
  }
}

/** The packet-filter rules of an instance. */
function rulesOf(record: InstanceRecord): InstanceRules {
  return { hostIfname: record.hostIfname, address: record.address, ports: record.ports };
}

function sameRequest(a: InstanceRequest, b: InstanceRequest): boolean {
  return a.address === b.address && a.kind === b.kind && a.netns === b.netns && a.ifname === b.ifname && samePortMappings(a.ports, b.ports);
}
