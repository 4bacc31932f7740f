/** In-memory fakes of core's ports for unit tests of the use-cases' logic (no I/O). */
import {
  Subnet,
  type CniRecord,
  type CniSpec,
  type Dataplane,
  type FilterBase,
  type FilterElements,
  type InstancePlacement,
  type NetnsRef,
  type HostInfo,
  type HostServices,
  type IfName,
  type InstanceRecord,
  type InstanceRules,
  type InstanceSpec,
  type Ipv4Address,
  type IpAddress,
  type IpSubnet,
  type LinkState,
  type NodeState,
  type PacketFilter,
  type StagedRecord,
  type StateStore,
} from '@nodenet/core';

/** Resolves after the current macrotask, so concurrent calls really interleave. */
export const tick = () => new Promise<void>((r) => setImmediate(r));

export class FakeDataplane implements Dataplane, HostServices {
  readonly name = 'fake';
  readonly instancePorts = 'linux-bridge' as const;
  readonly links = new Map<string, LinkState>([
    ['lo', { name: 'lo' }],
    ['eth0', { name: 'eth0' }],
  ]);
  cni: CniSpec | null = null;
  readonly calls: string[] = [];
  failCreateInstance: Error | null = null;
  /** Set by a test that wants the backend to report masters (the optional Dataplane.attachToCni). */
  attachToCni?: (hostIfname: IfName, cni: CniSpec) => Promise<void>;
  /** Namespaces that exist, by reference, with their identity. */
  readonly namespaces = new Map<string, string>();

  async probeHost(): Promise<HostInfo> {
    return {
      underlayAddress: '198.18.0.1' as Ipv4Address,
      underlayInterface: 'eth0',
      underlayMtu: 1500,
      localNetworks: [{ interface: 'eth0', subnet: Subnet.of('198.18.0.0/24') }],
    };
  }
  async ensureCni(spec: CniSpec): Promise<void> {
    await tick();
    this.calls.push(`ensureCni ${spec.name}`);
    this.cni = spec;
    this.links.set(spec.name, { name: spec.name, ownerTag: 'nodenet:cni' });
  }
  async deleteCni(name: IfName): Promise<void> {
    this.calls.push(`deleteCni ${name}`);
    this.cni = null;
    this.links.delete(name);
  }
  async createInstance(spec: InstanceSpec): Promise<InstancePlacement | void> {
    await tick();
    this.calls.push(`createInstance ${spec.handle}`);
    if (this.failCreateInstance) throw this.failCreateInstance;
    this.links.set(spec.hostIfname, { name: spec.hostIfname, ownerTag: `nodenet:${spec.handle}` });
    if (spec.kind === 'veth' && !spec.netns) this.links.set(spec.handle, { name: spec.handle });
    if (spec.netns) return { netnsId: this.namespaces.get(spec.netns) ?? 'unknown' };
  }
  async listOwnedLinks(): Promise<LinkState[]> {
    return [...this.links.values()].filter((l) => l.ownerTag?.startsWith('nodenet:'));
  }
  async deleteOwnedLinks(names: readonly IfName[]): Promise<void> {
    this.calls.push(`deleteOwnedLinks ${names.join(',')}`);
    for (const n of names) this.links.delete(n);
  }
  async identifyNamespace(netns: NetnsRef): Promise<string> {
    // Like createInstance: a namespace the test did not register has an unknown identity.
    return this.namespaces.get(netns) ?? 'unknown';
  }
  async namespaceAlive(netns: NetnsRef, netnsId: string | undefined): Promise<boolean> {
    const id = this.namespaces.get(netns);
    return id !== undefined && (netnsId === undefined || id === netnsId);
  }
  async deleteInstance(record: InstanceRecord, _cni: CniRecord): Promise<void> {
    await tick();
    this.calls.push(`deleteInstance ${record.handle}`);
    this.links.delete(record.hostIfname);
    this.links.delete(record.handle);
  }
  async inspectLink(name: IfName): Promise<LinkState | null> {
    return this.links.get(name) ?? null;
  }
}

export class FakePacketFilter implements PacketFilter {
  base: FilterBase | null = null;
  readonly instances = new Map<string, InstanceRules>();
  readonly flushed: string[] = [];
  /** The addresses of each flushConntrack call. */
  readonly flushCalls: string[][] = [];
  failEnsureBase: Error | null = null;
  failAddInstance: Error | null = null;

  async ensureBase(base: FilterBase): Promise<void> {
    await tick();
    if (this.failEnsureBase) throw this.failEnsureBase;
    this.base = base;
  }
  async removeBase(): Promise<void> {
    this.base = null;
  }
  async addInstance(rules: InstanceRules): Promise<void> {
    await tick();
    if (this.failAddInstance) throw this.failAddInstance;
    this.instances.set(rules.hostIfname, rules);
  }
  async removeInstance(rules: InstanceRules): Promise<void> {
    this.instances.delete(rules.hostIfname);
  }
  clusterSubnets: string[] = [];
  async setClusterSubnets(subnets: readonly IpSubnet[]): Promise<void> {
    this.clusterSubnets = subnets.map(String);
  }
  /** Elements put there by something other than addInstance (e.g. left by a crash). */
  extra: FilterElements = { ports: [], sources: [] };
  async listElements(): Promise<FilterElements> {
    const rules = [...this.instances.values()];
    const addressesOf = (r: InstanceRules) => [r.ipv4, r.ipv6].filter((a) => a !== undefined);
    return {
      ports: [
        ...rules.flatMap((r) =>
          addressesOf(r).flatMap((address) =>
            r.ports
              // A port on one host address is published to the instance's address of that family only.
              .filter((m) => m.hostAddress === undefined || m.hostAddress.includes(':') === address.includes(':'))
              .map((m) => ({
                protocol: m.protocol,
                hostPort: m.hostPort,
                address,
                instancePort: m.instancePort,
                ...(m.hostAddress ? { hostAddress: m.hostAddress } : {}),
              })),
          ),
        ),
        ...this.extra.ports,
      ],
      sources: [
        ...rules.flatMap((r) =>
          [...addressesOf(r), ...(r.ipv6LinkLocal ? [r.ipv6LinkLocal] : [])].map((address) => ({ ifname: r.hostIfname, address })),
        ),
        ...this.extra.sources,
      ],
    };
  }
  removed: FilterElements[] = [];
  async removeElements(elements: FilterElements): Promise<void> {
    this.removed.push(elements);
    this.extra = { ports: [], sources: [] };
  }
  async flushConntrack(addresses: readonly IpAddress[]): Promise<void> {
    this.flushed.push(...addresses);
    this.flushCalls.push([...addresses]);
  }
}

export class MemoryStateStore implements StateStore {
  state: NodeState = { cni: null, instances: [], released: [] };
  failSaveInstance: Error | null = null;
  failStageInstance: Error | null = null;
  /** Handles of records staged and neither committed nor discarded yet. */
  readonly staged = new Set<string>();

  async load(): Promise<NodeState> {
    return structuredClone(this.state);
  }
  async saveCni(cni: CniRecord): Promise<void> {
    this.state.cni = cni;
  }
  async deleteCni(): Promise<void> {
    this.state.cni = null;
  }
  async saveInstance(record: InstanceRecord): Promise<void> {
    await tick();
    if (this.failSaveInstance) throw this.failSaveInstance;
    this.state.instances = [...this.state.instances.filter((r) => r.handle !== record.handle), record];
  }
  async stageInstance(record: InstanceRecord): Promise<StagedRecord> {
    await tick();
    if (this.failStageInstance) throw this.failStageInstance;
    this.staged.add(record.handle);
    return {
      commit: async () => {
        this.staged.delete(record.handle);
        await this.saveInstance(record);
      },
      discard: async () => {
        this.staged.delete(record.handle);
      },
    };
  }
  failBeginRelease: Error | null = null;
  async beginRelease(): Promise<void> {
    await tick();
    if (this.failBeginRelease) throw this.failBeginRelease;
  }
  async releaseInstance(handle: IfName): Promise<void> {
    this.state.instances = this.state.instances.filter((r) => r.handle !== handle);
    this.state.released.push(handle);
  }
}
