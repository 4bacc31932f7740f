/**
 * The CNI commands on nodenet's use-cases. An attachment (container id, ifname) is an instance created by
 * NodeNetwork.createInterface (the same path as the CreateInterface RPC: veth into the namespace, published
 * ports, anti-spoofing, its durable record), plus a record of its own that ties it to the runtime's key.
 *
 * ADD writes the attachment's record before creating the instance, and completes it with the handle after:
 * a crash in between leaves a record without a handle, which load() either completes (the instance was made:
 * same address, namespace and ifname) or drops (it was not). So every instance made for a runtime has a
 * record, and DEL always finds what to delete, after a restart too.
 *
 * Addresses: one per family the node's CNI holds (IPv4, IPv6 or both), each given by the runtime (a static
 * address) or allocated round-robin from that family's subnet, with a cursor per family.
 *
 * Concurrency: commands for one attachment run one at a time; addresses are chosen and reserved in one
 * synchronous stretch (see NodeNetwork's model), so two ADDs never get the same address.
 */
import {
  addressFamily,
  addressList,
  asNodenetError,
  cniNetsOfRecord,
  cniRecordFields,
  describeCniNets,
  isNodenetError,
  describePort,
  instanceAddresses,
  instanceAddressesOfRecord,
  instanceRecordFields,
  normalizePorts,
  samePortMappings,
  silentLogger,
  type CniNets,
  type CniRecord,
  type CreateInterfaceInput,
  type CreateInterfaceResult,
  type InstanceAddresses,
  type InstanceRecord,
  type Ipv4Address,
  type Ipv6Address,
  type Logger,
  type PublishedPort,
} from '@nodenet/core';
import { nextFreeAddress, nextFreeIpv6Address } from './allocator.js';
import { attachmentId, type AllocationCursors, type AttachmentRecord, type AttachmentStore } from './attachment-store.js';
import { parseCniRequest, parseNetConf, type AttachmentKey, type CniRequest, type NetConf } from './conf.js';
import { asCniError, CNI_CODES, CniError } from './errors.js';
import type { NetnsProbe } from './netns-probe.js';
import { cniResult } from './result.js';

/** CreateContainerNetworkInterface's fields: IPv4 (or an IPv6-only node's IPv6) in the seed's, a dual-stack node's IPv6 in the others. */
export interface CreateCniRequest {
  readonly ipAddress: string;
  readonly subNetwork: string;
  readonly ipv6Address?: string;
  readonly ipv6SubNetwork?: string;
}

/** What the attachments need of NodeNetwork. */
export interface AttachmentNetwork {
  readonly cniRecord: CniRecord | null;
  listInstances(): InstanceRecord[];
  createContainerNetworkInterface(input: CreateCniRequest): Promise<unknown>;
  createInterface(input: CreateInterfaceInput): Promise<CreateInterfaceResult>;
  deleteInterface(input: { interfaceName: string }): Promise<void>;
}

export interface CniAttachmentsOptions {
  readonly network: AttachmentNetwork;
  readonly store: AttachmentStore;
  readonly probe: NetnsProbe;
  /** The published ports the packet filter holds now (CHECK compares them with the attachment's). */
  readonly publishedPorts: () => Promise<readonly PublishedPort[]>;
  /** Whether the daemon serves (STATUS). */
  readonly serving?: () => boolean;
  readonly logger?: Logger;
  readonly now?: () => Date;
}

/** An attachment's addresses: the seed one (`address`: IPv4, or IPv6 on an IPv6-only node) and a dual-stack one's IPv6. */
const addressesOf = (r: Pick<AttachmentRecord, 'address' | 'ipv6Address'>): InstanceAddresses => instanceAddressesOfRecord(r);

/** How often an ADD that lost its allocated address to a concurrent CreateInterface tries the next one. */
const ALLOCATION_ATTEMPTS = 8;

export class CniAttachments {
  private readonly network: AttachmentNetwork;
  private readonly store: AttachmentStore;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly records = new Map<string, AttachmentRecord>();
  /** Addresses chosen by ADDs in flight (not yet held by an instance). */
  private readonly reserved = new Set<string>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Records being completed with their handle after an ADD answered. */
  private readonly completing = new Map<string, Promise<void>>();
  private cursors: AllocationCursors = {};

  constructor(private readonly options: CniAttachmentsOptions) {
    this.network = options.network;
    this.store = options.store;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? (() => new Date());
  }

  /** Reads the records; completes or drops those an ADD cut short (call after the network is restored). */
  async load(): Promise<void> {
    const { records, cursors } = await this.store.load();
    this.cursors = cursors;
    const instances = this.network.listInstances();
    for (let record of records) {
      if (record.handle === undefined) {
        const made = instances.find((i) => i.address === record.address && i.netns === record.netns && i.ifname === record.ifname);
        if (!made) {
          await this.store.remove(record);
          this.logger.warn(
            { event: 'cni-recover', containerId: record.containerId, ifname: record.ifname },
            'dropped an attachment whose ADD did not finish',
          );
          continue;
        }
        record = { ...record, handle: made.handle, mac: made.mac };
        await this.store.save(record);
        this.logger.warn(
          { event: 'cni-recover', containerId: record.containerId, ifname: record.ifname, handle: made.handle },
          'completed an attachment whose ADD was cut short',
        );
      }
      this.records.set(attachmentId(record), record);
    }
    // The cursors are written with every allocation; without them (an older state dir), the newest allocation's.
    const newest = [...this.records.values()]
      .filter((r) => r.allocated)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
      .map(addressesOf);
    const ipv4 = this.cursors.ipv4 ?? newest.findLast((a) => a.ipv4)?.ipv4;
    const ipv6 = this.cursors.ipv6 ?? newest.findLast((a) => a.ipv6)?.ipv6;
    this.cursors = { ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) };
  }

  /** Every attachment, for inspection and tests. */
  list(): AttachmentRecord[] {
    return [...this.records.values()];
  }

  /** Serves one request of the plugin: the CNI result (ADD), null (DEL, CHECK, GC, STATUS), or a CniError. */
  async handle(input: unknown): Promise<unknown> {
    let request: CniRequest;
    try {
      request = parseCniRequest(input);
    } catch (e) {
      throw asCniError(e, 'read the request');
    }
    // DEL needs only the attachment's key: a config nodenet would refuse (edited since the ADD, or the ADD
    // failed on it) must not keep a runtime from cleaning up.
    if (request.command === 'DEL') return this.serial(request, () => this.del(request)).then(() => null);
    const conf = parseNetConf(request);
    switch (request.command) {
      case 'ADD':
        return this.serial(request, () => this.add(request, conf));
      case 'CHECK':
        return this.serial(request, () => this.check(request, conf)).then(() => null);
      case 'GC':
        return this.gc(conf).then(() => null);
      case 'STATUS':
        return this.status(conf).then(() => null);
    }
  }

  private serial<T>(key: AttachmentKey, fn: () => Promise<T>): Promise<T> {
    const id = attachmentId(key);
    const previous = this.queues.get(id) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.queues.set(id, tail);
    void tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return run;
  }

  // ---------------------------------------------------------------------------------------------------

  private async add(request: CniRequest, conf: NetConf): Promise<unknown> {
    const id = attachmentId(request);
    const cni = await this.ensureNodeCni(conf);
    const nets = cniNetsOfRecord(cni);
    const ports = (() => {
      try {
        return normalizePorts([], conf.portMappings);
      } catch (e) {
        throw asCniError(e, 'publish the ports of runtimeConfig.portMappings');
      }
    })();
    const existing = this.records.get(id);
    if (existing) {
      if (
        existing.handle &&
        existing.netns === request.netns &&
        existing.network === conf.name &&
        samePortMappings(existing.ports, ports)
      ) {
        return this.result(existing, cni, conf); // a repeated ADD: the same answer
      }
      throw new CniError(
        CNI_CODES.failedPrecondition,
        `container ${request.containerId} already has interface ${request.ifname} attached by nodenet (network ${existing.network}, ${addressList(addressesOf(existing)).join(', ')}) with other settings: DEL it first`,
      );
    }
    checkHostIPFamilies(conf, nets);
    const given = staticAddressesFor(conf, nets);
    const allocate = { ipv4: nets.ipv4 !== undefined && !given.ipv4, ipv6: nets.ipv6 !== undefined && !given.ipv6 };
    if (!allocate.ipv4 && !allocate.ipv6) return this.attach(request, conf, cni, complete(given), false, ports);
    for (let attempt = 1; ; attempt++) {
      // From here to the reservation there is no await: two ADDs never pick the same address.
      const used = this.addressesInUse();
      const chosen: SomeAddresses = { ...given };
      if (allocate.ipv4) {
        const { subnet, gateway } = nets.ipv4!;
        const address = nextFreeAddress(subnet, gateway, this.cursors.ipv4, (a) => used.has(a));
        if (!address) throw subnetFull(subnet.toString());
        chosen.ipv4 = address;
      }
      if (allocate.ipv6) {
        const { subnet, gateway } = nets.ipv6!;
        const address = nextFreeIpv6Address(subnet, gateway, this.cursors.ipv6, used);
        if (!address) throw subnetFull(subnet.toString());
        chosen.ipv6 = address;
      }
      const picked = [...(allocate.ipv4 ? [chosen.ipv4!] : []), ...(allocate.ipv6 ? [chosen.ipv6!] : [])];
      this.cursors = {
        ...this.cursors,
        ...(allocate.ipv4 ? { ipv4: chosen.ipv4 } : {}),
        ...(allocate.ipv6 ? { ipv6: chosen.ipv6 } : {}),
      };
      for (const a of picked) this.reserved.add(a);
      try {
        return await this.attach(request, conf, cni, complete(chosen), true, ports);
      } catch (e) {
        // Taken meanwhile by a CreateInterface of the gRPC API: try the next one.
        const takenByOther =
          isNodenetError(e) && e.code === 'ALREADY_EXISTS' && picked.some((a) => e.message.startsWith(`${a} is already used`));
        if (!takenByOther || attempt >= ALLOCATION_ATTEMPTS) throw asCniError(e, 'attach the container');
      } finally {
        for (const a of picked) this.reserved.delete(a);
      }
    }
  }

  /** Addresses of every instance (the gRPC API's too), every attachment, and the ADDs choosing one now: both families. */
  private addressesInUse(): Set<string> {
    const used = new Set<string>(this.reserved);
    for (const r of this.records.values()) for (const a of addressList(addressesOf(r))) used.add(a);
    for (const i of this.network.listInstances()) for (const a of addressList(instanceAddressesOfRecord(i))) used.add(a);
    return used;
  }

  private async attach(
    request: CniRequest,
    conf: NetConf,
    cni: CniRecord,
    addresses: InstanceAddresses,
    allocated: boolean,
    ports: AttachmentRecord['ports'],
  ): Promise<unknown> {
    const id = attachmentId(request);
    const fields = instanceRecordFields(addresses);
    let record: AttachmentRecord = {
      containerId: request.containerId,
      ifname: request.ifname,
      network: conf.name,
      netns: request.netns,
      ...fields,
      allocated,
      ports,
      createdAt: this.now().toISOString(),
    };
    // The intent first, durably (with the cursors, so a crash never hands these addresses out again at once).
    await Promise.all([this.store.save(record), allocated ? this.store.saveCursors(this.cursors) : undefined]);
    this.records.set(id, record);
    let created: CreateInterfaceResult;
    try {
      created = await this.network.createInterface({
        ipAddress: fields.address,
        ...(fields.ipv6Address ? { ipv6Address: fields.ipv6Address } : {}),
        portMappings: conf.portMappings,
        netns: request.netns,
        ifname: request.ifname,
      });
    } catch (e) {
      this.records.delete(id);
      await this.store
        .remove(request)
        .catch((r: unknown) => this.logger.error({ err: String(r) }, 'could not remove the record of a failed ADD'));
      throw e;
    }
    record = { ...record, handle: created.interfaceName, mac: created.macAddress };
    this.records.set(id, record);
    // The handle is written after the answer: the record of the intent is already durable, and load() finds a
    // cut-short ADD's instance by address, namespace and ifname. A DEL of this attachment waits for the write.
    const completed = record;
    const write: Promise<void> = this.store
      .save(completed)
      .catch((e: unknown) =>
        this.logger.error(
          { containerId: completed.containerId, err: String(e) },
          'could not record the handle of an attachment; load() will find it',
        ),
      )
      .finally(() => {
        if (this.completing.get(id) === write) this.completing.delete(id);
      });
    this.completing.set(id, write);
    this.logger.info(
      {
        event: 'cni-add',
        containerId: record.containerId,
        ifname: record.ifname,
        handle: record.handle,
        address: fields.address,
        ...(fields.ipv6Address ? { ipv6Address: fields.ipv6Address } : {}),
        allocated,
        ports: ports.length,
      },
      'container attached',
    );
    return this.result(record, cni, conf);
  }

  private result(record: AttachmentRecord, cni: CniRecord, conf: NetConf): unknown {
    return cniResult(
      conf.cniVersion,
      { ifname: record.ifname, mac: record.mac!, netns: record.netns, ips: expectedIps(record, cniNetsOfRecord(cni)), mtu: cni.mtu },
      conf.dns,
    );
  }

  /** The node's CNI; created from the conflist's subnets and gateways when the node has none yet. */
  private async ensureNodeCni(conf: NetConf): Promise<CniRecord> {
    const cni = this.network.cniRecord;
    const wanted = conf.nodeCni;
    if (cni) {
      const differences = wanted ? conflistDifferences(wanted, cniNetsOfRecord(cni)) : [];
      if (differences.length > 0) {
        throw new CniError(
          CNI_CODES.invalidNetworkConfig,
          `the conflist's node CNI differs from this node's (${describeCniNets(cniNetsOfRecord(cni))}): ${differences.join('; ')}. Fix the conflist, or leave those keys out to use the node's CNI`,
        );
      }
      return cni;
    }
    if (!wanted) {
      throw new CniError(
        CNI_CODES.tryAgainLater,
        "this node has no nodenet CNI yet: create it (nodenetctl cni create), or give 'subnet' and 'gateway' (IPv4) and/or 'ipv6Subnet' and 'ipv6Gateway' (IPv6) in the conflist so the plugin creates it",
      );
    }
    const fields = cniRecordFields(wanted);
    try {
      await this.network.createContainerNetworkInterface({
        ipAddress: fields.gateway,
        subNetwork: fields.subnet,
        ...(fields.ipv6Gateway && fields.ipv6Subnet ? { ipv6Address: fields.ipv6Gateway, ipv6SubNetwork: fields.ipv6Subnet } : {}),
      });
    } catch (e) {
      throw asCniError(e, `create the node's CNI (${describeCniNets(wanted)}) from the conflist`);
    }
    return this.network.cniRecord!;
  }

  // ---------------------------------------------------------------------------------------------------

  private async del(key: AttachmentKey): Promise<void> {
    const id = attachmentId(key);
    const record = this.records.get(id);
    if (!record) return; // never attached, or already deleted: success
    await this.completing.get(id);
    if (record.handle) {
      try {
        await this.network.deleteInterface({ interfaceName: record.handle });
      } catch (e) {
        // Released already (its namespace went away and reconcile freed it): nothing left to delete.
        if (!(isNodenetError(e) && e.code === 'NOT_FOUND'))
          throw asCniError(e, `delete the interface ${record.handle} of container ${key.containerId}`);
      }
    }
    await this.store.remove(key);
    this.records.delete(id);
    this.logger.info(
      {
        event: 'cni-del',
        containerId: key.containerId,
        ifname: key.ifname,
        handle: record.handle,
        address: record.address,
        ...(record.ipv6Address ? { ipv6Address: record.ipv6Address } : {}),
      },
      'container detached',
    );
  }

  private async check(request: CniRequest, conf: NetConf): Promise<void> {
    const record = this.records.get(attachmentId(request));
    if (!record?.handle) {
      throw new CniError(
        CNI_CODES.unknownContainer,
        `container ${request.containerId} has no interface ${request.ifname} attached by nodenet: ADD it first`,
      );
    }
    const cni = this.network.cniRecord;
    const instance = this.network.listInstances().find((i) => i.handle === record.handle);
    if (!cni || !instance) {
      throw new CniError(
        CNI_CODES.drifted,
        `the interface of container ${request.containerId} (${record.handle}, ${addressList(addressesOf(record)).join(', ')}) is gone from the node: its namespace was removed or the node rebooted; DEL and ADD it again`,
      );
    }
    const drift: string[] = [];
    if (record.netns !== request.netns) drift.push(`the namespace is ${request.netns}, the attachment was made in ${record.netns}`);
    const nets = cniNetsOfRecord(cni);
    const expected = expectedIps(record, nets);
    let state;
    try {
      state = await this.options.probe.inspect(record.netns, record.ifname);
    } catch (e) {
      throw new CniError(
        CNI_CODES.drifted,
        `cannot inspect namespace ${record.netns}: ${asNodenetError(e, 'inspect the namespace').message}`,
      );
    }
    if (!state.link) drift.push(`no interface ${record.ifname} in ${record.netns}`);
    else {
      if (!state.link.up) drift.push(`${record.ifname} is down`);
      if (record.mac && state.link.mac !== record.mac)
        drift.push(`${record.ifname} has MAC ${state.link.mac ?? 'none'}, not ${record.mac}`);
      const held = state.link.addresses;
      for (const ip of expected) {
        const cidr = `${ip.address}/${ip.prefixLength}`;
        if (!held.includes(cidr)) drift.push(`${record.ifname} has ${held.join(', ') || 'no address'}, not ${cidr}`);
      }
    }
    for (const ip of expected) {
      const v6 = addressFamily(ip.address) === 6;
      const via = v6 ? state.defaultIpv6Gateway : state.defaultGateway;
      if (via !== ip.gateway)
        drift.push(`the ${v6 ? 'IPv6 ' : ''}default route goes ${via ? `via ${via}` : 'nowhere'}, not via ${ip.gateway}`);
    }
    const published = await this.options.publishedPorts();
    for (const m of record.ports) {
      // Published to every address of the container; on one host address, to those of its family only.
      const targets = expected.filter((ip) => m.hostAddress === undefined || addressFamily(ip.address) === addressFamily(m.hostAddress));
      for (const { address } of targets) {
        const found = published.some(
          (p) =>
            p.protocol === m.protocol &&
            p.hostPort === m.hostPort &&
            p.hostAddress === m.hostAddress &&
            p.address === address &&
            p.instancePort === m.instancePort,
        );
        if (!found) {
          const to = targets.length > 1 ? ` to ${address}` : '';
          drift.push(`port ${describePort(m)} -> ${m.instancePort} is not published${to}`);
        }
      }
    }
    if (conf.name !== record.network) drift.push(`the network is ${conf.name}, the attachment was made on ${record.network}`);
    if (drift.length > 0) {
      throw new CniError(
        CNI_CODES.drifted,
        `the attachment of container ${request.containerId} (${request.ifname}) drifted: ${drift.join('; ')}`,
      );
    }
  }

  private async gc(conf: NetConf): Promise<void> {
    const valid = new Set((conf.validAttachments ?? []).map((k) => attachmentId(k)));
    const stale = [...this.records.entries()].filter(([id, r]) => r.network === conf.name && !valid.has(id)).map(([, r]) => r);
    const failures: string[] = [];
    for (const r of stale) {
      try {
        await this.serial(r, () => this.del(r));
      } catch (e) {
        failures.push(`${r.containerId}/${r.ifname}: ${asCniError(e, 'delete').msg}`);
      }
    }
    if (stale.length > 0)
      this.logger.info(
        { event: 'cni-gc', network: conf.name, removed: stale.length - failures.length },
        'removed attachments the runtime no longer lists',
      );
    if (failures.length > 0)
      throw new CniError(CNI_CODES.internal, `GC could not remove ${failures.length} attachment(s): ${failures.join('; ')}`);
  }

  private async status(conf: NetConf): Promise<void> {
    if (this.options.serving && !this.options.serving())
      throw new CniError(CNI_CODES.pluginNotAvailable, 'nodenetd is not SERVING yet: try again later');
    if (!this.network.cniRecord && !conf.nodeCni) {
      throw new CniError(
        CNI_CODES.pluginNotAvailable,
        "this node has no nodenet CNI and the conflist gives no 'subnet'/'gateway' or 'ipv6Subnet'/'ipv6Gateway' to create it: ADD would fail",
      );
    }
  }
}

/**
 * The runtime's static addresses checked against the node's families: each in a family the node holds, with
 * that subnet's prefix length when one is given. Families not given are allocated by the caller.
 */
function staticAddressesFor(conf: NetConf, nets: CniNets): SomeAddresses {
  const given = conf.staticAddresses;
  if (!given) return {};
  const checked: SomeAddresses = {};
  for (const family of ['ipv4', 'ipv6'] as const) {
    const entry = given[family];
    if (!entry) continue;
    const net = nets[family];
    if (!net) {
      throw new CniError(
        CNI_CODES.invalidNetworkConfig,
        `static address ${entry.address} is ${family === 'ipv4' ? 'IPv4' : 'IPv6'} but this node's CNI holds ${describeCniNets(nets)} only: give an address of that family, or none to have one allocated`,
      );
    }
    if (entry.prefixLength !== undefined && entry.prefixLength !== net.subnet.prefixLength) {
      throw new CniError(
        CNI_CODES.invalidNetworkConfig,
        `static address ${entry.address}/${entry.prefixLength}: the node's subnet is ${net.subnet}, so the prefix length is ${net.subnet.prefixLength}`,
      );
    }
    if (family === 'ipv4') checked.ipv4 = entry.address as Ipv4Address;
    else checked.ipv6 = entry.address as Ipv6Address;
  }
  return checked;
}

/** Addresses being put together: none, one family or both. */
interface SomeAddresses {
  ipv4?: Ipv4Address;
  ipv6?: Ipv6Address;
}

/** The addresses an ADD put together: at least one, as every family the node holds was given or allocated. */
function complete(addresses: SomeAddresses): InstanceAddresses {
  const all = instanceAddresses(addresses.ipv4, addresses.ipv6);
  if (!all) throw new CniError(CNI_CODES.internal, "the node's CNI holds neither IPv4 nor IPv6: no address to attach with");
  return all;
}

/** The attachment's addresses with the prefix length and gateway of their family, IPv4 first. */
function expectedIps(record: AttachmentRecord, nets: CniNets): { address: string; prefixLength: number; gateway: string }[] {
  const addresses = addressesOf(record);
  return [
    ...(addresses.ipv4 && nets.ipv4
      ? [{ address: addresses.ipv4, prefixLength: nets.ipv4.subnet.prefixLength, gateway: nets.ipv4.gateway }]
      : []),
    ...(addresses.ipv6 && nets.ipv6
      ? [{ address: addresses.ipv6, prefixLength: nets.ipv6.subnet.prefixLength, gateway: nets.ipv6.gateway }]
      : []),
  ];
}

/**
 * What the conflist's node CNI says that the node's does not, per family the conflist gives, naming its keys. A
 * family the conflist leaves out is the node's (so a conflist written for IPv4 keeps working on a dual-stack node).
 */
function conflistDifferences(wanted: CniNets, held: CniNets): string[] {
  const differences: string[] = [];
  const keys = { ipv4: ['subnet', 'gateway'], ipv6: ['ipv6Subnet', 'ipv6Gateway'] } as const;
  for (const family of ['ipv4', 'ipv6'] as const) {
    const want = wanted[family];
    if (!want) continue;
    const [subnetKey, gatewayKey] = keys[family];
    const have = held[family];
    const given = `'${subnetKey}' ${want.subnet} and '${gatewayKey}' ${want.gateway}`;
    if (!have)
      differences.push(
        `${given}: the node's CNI has no ${family === 'ipv4' ? 'IPv4' : 'IPv6'} subnet (its families are set when it is created)`,
      );
    else if (want.subnet.toString() !== have.subnet.toString() || want.gateway !== have.gateway)
      differences.push(`${given}: the node's are ${have.subnet} and ${have.gateway}`);
  }
  return differences;
}

function subnetFull(subnet: string): CniError {
  return new CniError(
    CNI_CODES.alreadyInUse,
    `the node's subnet ${subnet} has no free address left: DEL containers that are gone (or GC), or give the node a larger subnet`,
  );
}

/**
 * A container gets one address per family of the node's CNI, and a port on one host address is published to
 * the container's address of that family only: a hostIP of a family the CNI lacks would publish to nothing.
 */
function checkHostIPFamilies(conf: NetConf, nets: CniNets): void {
  conf.portMappings.forEach((m, i) => {
    if (typeof m.hostAddress !== 'string') return;
    const family = addressFamily(m.hostAddress);
    if (family === 6 ? nets.ipv6 : nets.ipv4) return;
    const ports = `${String(m.hostPort)}:${String(m.instancePort)}`;
    throw new CniError(
      CNI_CODES.invalidNetworkConfig,
      `runtimeConfig.portMappings[${i}].hostIP ${m.hostAddress} is an IPv${family} address, but this node's CNI holds only ${describeCniNets(nets)}, so the container gets no IPv${family} address to publish it to: give an IPv${family === 6 ? 4 : 6} address of the node (podman: -p ${family === 6 ? 'ADDRESS' : '[ADDRESS]'}:${ports}), or none to publish on every address (podman: -p ${ports}), or give the node's CNI an IPv${family} subnet`,
    );
  });
}
