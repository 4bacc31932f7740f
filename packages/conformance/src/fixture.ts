/**
 * One node of the conformance suite: a topology (fabric, world, one node), the real daemon in the node
 * namespace with the chosen backend, a client, and helpers to make instances the way a runtime would
 * (move the veth, address it) or through the netns extension. Addresses and ports are handed out so tests
 * sharing a node never collide.
 */
import type { CreateInterfaceRequest, CreateInterfaceResponse, DeepPartial, InspectResponse, NetworkApiClient } from '@nodenet/api';
import { createNetworkAdminClient } from '@nodenet/api';
import {
  BRIDGE_NETFILTER_SYSCTLS,
  Daemon,
  TestScope,
  Topology,
  WORLD_ADDRESS,
  adoptInterface,
  destroyNamespace,
  exec,
  ipBatch,
  links,
  snapshot,
  writeSysctls,
  type DaemonConfig,
  type NamespaceSnapshot,
  type NodeHost,
  type WorldHost,
} from '@nodenet/testkit';
import { VXLAN_OVERHEAD } from '@nodenet/core';
import { backendProfile, privateOvsOf } from './backends.js';
import { readOwnedState, type OwnedState } from './durability.js';

export const NODE_SUBNET = '198.19.1.0/24';
export const NODE_GATEWAY = '198.19.1.1';
export const NODE_PREFIX_LENGTH = 24;
/** The vxlan overlay's overhead (instance MTU = underlay MTU - 50), core's: re-exported for the suites. */
export { VXLAN_OVERHEAD };

/** The IPv6 underlay beside the IPv4 one (2001:db8:18::/64): the world's and the node's addresses. */
export const WORLD6 = '2001:db8:18::100';
export const NODE6 = '2001:db8:18::1';
/** A dual-stack node's IPv6 instance subnet and gateway (beside NODE_SUBNET). */
export const DUAL_SUBNET6 = 'fd19:0:0:1::/64';
export const DUAL_GATEWAY6 = 'fd19:0:0:1::1';
/** An IPv6-only node's instance subnet and gateway (in the seed fields). */
export const ONLY_SUBNET6 = 'fd19:0:0:2::/64';
export const ONLY_GATEWAY6 = 'fd19:0:0:2::1';

/** The address families of the node's CNI: IPv4 (198.19.1.0/24), dual-stack (+ DUAL_SUBNET6) or IPv6-only (ONLY_SUBNET6). */
export type NodeFamilies = 'ipv4' | 'dual' | 'ipv6';

export interface NodeFixtureOptions {
  readonly backend: string;
  /** Keep net.bridge.bridge-nf-call-* at 1 in the node namespace (default: 0). */
  readonly bridgeNfCall?: boolean;
  /** Extra daemon config (e.g. reservedPorts). */
  readonly config?: DaemonConfig;
  /** Daemon listens on this TCP port inside the node (instead of a unix socket). */
  readonly tcpPort?: number;
  /** Create the CNI (198.19.1.1 in 198.19.1.0/24, and per `families`) before returning. Default true. */
  readonly cni?: boolean;
  /**
   * The CNI's families (default ipv4). With IPv6 the node also gets the IPv6 underlay (NODE6, a default
   * route via WORLD6; again after rebootNode), whether or not the CNI is made here.
   */
  readonly families?: NodeFamilies;
}

export type InstanceVia = 'runtime' | 'netns' | 'none';

export interface InstanceOptions {
  readonly ports?: number[];
  readonly portMappings?: DeepPartial<CreateInterfaceRequest>['portMappings'];
  /**
   * How the instance gets its interface: `runtime` (default: the veth is left in the node and the test
   * moves, renames to eth0 and configures it, as a container runtime does), `netns` (the netns extension:
   * the daemon does it), `none` (left in the node namespace).
   */
  readonly via?: InstanceVia;
  /** With via `netns`: the reference to pass (default: the instance namespace's name). */
  readonly netnsRef?: string;
  readonly ifname?: string;
}

export interface Instance {
  readonly handle: string;
  readonly address: string;
  /** On a dual-stack node: its IPv6 address. */
  readonly ipv6Address?: string;
  /** The instance's namespace (absent for via `none`). */
  readonly ns?: string;
  /** The interface's name inside `ns`. */
  readonly ifname?: string;
  readonly response: CreateInterfaceResponse;
}

export class NodeFixture {
  private addressCounter = 10;
  private portCounter = 20000;

  private constructor(
    readonly scope: TestScope,
    readonly topology: Topology,
    readonly node: NodeHost,
    private currentDaemon: Daemon,
    readonly backend: string,
    readonly families: NodeFamilies = 'ipv4',
  ) {}

  /** The running daemon (replaced by restartDaemon). */
  get daemon(): Daemon {
    return this.currentDaemon;
  }

  /**
   * Ends the daemon (SIGTERM, expecting exit 0, or SIGKILL), runs `whileDown` (e.g. to check instances keep
   * talking, or to wipe kernel state as a reboot would), then starts it again with the same config and
   * state dir and waits for SERVING.
   */
  async restartDaemon(how: 'stop' | 'kill', whileDown?: () => Promise<void>): Promise<Daemon> {
    const old = this.currentDaemon;
    const exit = how === 'stop' ? await old.stop() : await old.kill();
    if (how === 'stop' && exit.exitCode !== 0) {
      throw new Error(`the daemon exited with ${JSON.stringify(exit)} on SIGTERM, not 0: ${old.diagnostics()}`);
    }
    await whileDown?.();
    this.currentDaemon = await old.restart();
    return this.currentDaemon;
  }

  /**
   * Ends the daemon with `end` (e.g. crashDaemon: kill -9 at an instant), runs `whileDown`, starts it again
   * with the same config and state dir, and returns how long the new one took from spawn to SERVING.
   */
  async restartDaemonWith(
    end: (daemon: Daemon) => Promise<unknown>,
    whileDown?: () => Promise<void>,
  ): Promise<{ daemon: Daemon; servingMs: number }> {
    const old = this.currentDaemon;
    await end(old);
    if (!old.exit) await old.kill();
    await whileDown?.();
    const started = performance.now();
    this.currentDaemon = await old.restart();
    return { daemon: this.currentDaemon, servingMs: performance.now() - started };
  }

  /**
   * A reboot as far as the node's network goes: the daemon dies (SIGKILL) and the node namespace goes with
   * everything in it (links, addresses, routes, nftables, sysctls); it comes back under the same name with
   * only its underlay link, as after a boot. `whileDown` runs in between (e.g. to remove instance
   * namespaces, which a reboot takes too). Then the daemon starts with the same config and state dir.
   */
  async rebootNode(whileDown?: () => Promise<void>): Promise<{ daemon: Daemon; servingMs: number }> {
    // A NIC keeps its MAC across a reboot: so does the recreated underlay link (the world's ARP entry stays right).
    const underlayMac = (await links(this.ns)).find((l) => l.ifname === this.node.underlayIfname)?.address;
    return this.restartDaemonWith(
      (d) => d.kill(),
      async () => {
        await destroyNamespace(this.ns);
        await whileDown?.();
        await this.recreateNodeNamespace(underlayMac);
        await backendProfile(this.backend).nodeRebooted?.(this.scope, this.node);
      },
    );
  }

  /** The node namespace again, as Topology.addNode makes it: lo up, the underlay veth to the fabric, default route. */
  private async recreateNodeNamespace(underlayMac: string | undefined): Promise<void> {
    const { node, topology } = this;
    const fabricEnd = `n${node.index}`;
    // The old namespace's links go asynchronously (the kernel tears a namespace down in a work queue).
    const deadline = Date.now() + 15_000;
    while ((await links(topology.fabric)).some((l) => l.ifname === fabricEnd)) {
      if (Date.now() > deadline) throw new Error(`${fabricEnd} in ${topology.fabric} was not gone 15 s after ${node.ns} was deleted`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await exec('ip', ['netns', 'add', node.ns]);
    const mtu = node.underlayMtu;
    await ipBatch(topology.fabric, [
      `link add ${fabricEnd} mtu ${mtu} type veth peer name ${node.underlayIfname} mtu ${mtu}${underlayMac ? ` address ${underlayMac}` : ''} netns ${node.ns}`,
      `link set ${fabricEnd} master br0`,
      `link set ${fabricEnd} up`,
    ]);
    await ipBatch(node.ns, [
      'link set lo up',
      `addr add ${node.address}/${node.prefixLength} dev ${node.underlayIfname}`,
      `link set ${node.underlayIfname} up`,
      `route add default via ${WORLD_ADDRESS}`,
    ]);
    if (this.families !== 'ipv4') await this.addNodeIpv6Underlay();
    const value = topology.options.bridgeNfCall ? 1 : 0;
    await writeSysctls(node.ns, Object.fromEntries(BRIDGE_NETFILTER_SYSCTLS.map((k) => [k, value])));
  }

  /** What nodenet owns on the node and its records (durability.ts), read the way this backend keeps them. */
  ownedState(): Promise<OwnedState> {
    const ovs = privateOvsOf(this.ns);
    return readOwnedState(this.ns, this.daemon.stateDir, ovs ? { ovs } : {});
  }

  /** The daemon's network.NetworkAdmin/Inspect (a client per call: the daemon may be restarted in between). */
  async inspect(): Promise<InspectResponse> {
    const admin = createNetworkAdminClient(this.daemon.target);
    try {
      return await admin.inspect({ timeoutMs: 10_000 });
    } finally {
      admin.close();
    }
  }

  static async start(options: NodeFixtureOptions): Promise<NodeFixture> {
    const scope = await TestScope.create();
    try {
      const topology = await Topology.create(scope, { nodes: 1, bridgeNfCall: options.bridgeNfCall ?? false });
      const node = topology.node(1);
      const backendConfig = await backendProfile(options.backend).prepareNode(scope, node);
      const daemon = await Daemon.start({
        scope,
        node,
        backend: options.backend,
        config: { ...backendConfig, ...options.config },
        ...(options.tcpPort ? { tcpPort: options.tcpPort } : {}),
      });
      const families = options.families ?? 'ipv4';
      const fixture = new NodeFixture(scope, topology, node, daemon, options.backend, families);
      if (families !== 'ipv4') {
        await ipBatch(topology.world.ns, [`addr add ${WORLD6}/64 dev eth0 nodad`]);
        await fixture.addNodeIpv6Underlay();
      }
      if (options.cni ?? true) await fixture.createCni();
      return fixture;
    } catch (e) {
      await scope.cleanup().catch(() => undefined);
      throw e;
    }
  }

  get api(): NetworkApiClient {
    return this.daemon.network();
  }

  get world(): WorldHost {
    return this.topology.world;
  }

  get ns(): string {
    return this.node.ns;
  }

  /** The instance MTU the contract promises for the default (vxlan) overlay. */
  get instanceMtu(): number {
    return this.node.underlayMtu - VXLAN_OVERHEAD;
  }

  async createCni(): Promise<string> {
    const request = {
      ipv4: { ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET },
      dual: { ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET, ipv6Address: DUAL_GATEWAY6, ipv6SubNetwork: DUAL_SUBNET6 },
      ipv6: { ipAddress: ONLY_GATEWAY6, subNetwork: ONLY_SUBNET6 },
    }[this.families];
    const r = await this.api.createContainerNetworkInterface(request);
    return r.interfaceName;
  }

  /** The node's half of the IPv6 underlay: NODE6 on its underlay link, the default route via the world. */
  private async addNodeIpv6Underlay(): Promise<void> {
    await ipBatch(this.ns, [`addr add ${NODE6}/64 dev ${this.node.underlayIfname} nodad`, `route add ::/0 via ${WORLD6}`]);
  }

  /** A fresh instance address of the node subnet (198.19.1.10, .11, ...; fd19:0:0:2::b, ::c, ... on an IPv6-only node). */
  nextAddress(): string {
    this.addressCounter += 1;
    if (this.addressCounter > 254) throw new Error('the fixture ran out of instance addresses');
    if (this.families === 'ipv6') return `fd19:0:0:2::${this.addressCounter.toString(16)}`;
    return `198.19.1.${this.addressCounter}`;
  }

  /** On a dual-stack node, the IPv6 address that goes with an IPv4 one: the same host part (198.19.1.100: fd19:0:0:1::64). */
  ipv6Of(address: string): string | undefined {
    if (this.families !== 'dual') return undefined;
    return `fd19:0:0:1::${Number(address.split('.')[3]).toString(16)}`;
  }

  /** Per family of the CNI: the gateway an instance uses and the node's underlay address (published ports). */
  familyTargets(): { gateway: string; node: string }[] {
    const v4 = { gateway: NODE_GATEWAY, node: this.node.address };
    const v6 = { gateway: this.families === 'dual' ? DUAL_GATEWAY6 : ONLY_GATEWAY6, node: NODE6 };
    return { ipv4: [v4], dual: [v4, v6], ipv6: [v6] }[this.families];
  }

  /** A fresh port number for publishing (20001, 20002, ...). */
  nextPort(): number {
    this.portCounter += 1;
    return this.portCounter;
  }

  /** Creates an instance interface and, by default, sets it up in a fresh namespace as a runtime would. */
  async addInstance(address: string = this.nextAddress(), options: InstanceOptions = {}): Promise<Instance> {
    const via = options.via ?? 'runtime';
    const ns = via === 'none' ? undefined : await this.topology.createInstanceNamespace();
    const ipv6Address = this.ipv6Of(address);
    const request: DeepPartial<CreateInterfaceRequest> = {
      ipAddress: address,
      ...(ipv6Address ? { ipv6Address } : {}),
      ports: options.ports ?? [],
      ...(options.portMappings ? { portMappings: options.portMappings } : {}),
      ...(via === 'netns' ? { netns: options.netnsRef ?? ns, ...(options.ifname ? { ifname: options.ifname } : {}) } : {}),
    };
    const response = await this.api.createInterface(request);
    if (via === 'runtime') {
      const ifname = await adoptInterface({
        nodeNs: this.ns,
        handle: response.interfaceName,
        instanceNs: ns!,
        address,
        prefixLength: NODE_PREFIX_LENGTH,
        gateway: NODE_GATEWAY,
        rename: 'eth0',
      });
      return { handle: response.interfaceName, address, ns: ns!, ifname, response };
    }
    if (via === 'netns')
      return {
        handle: response.interfaceName,
        address,
        ...(ipv6Address ? { ipv6Address } : {}),
        ns: ns!,
        ifname: options.ifname ?? 'eth0',
        response,
      };
    return { handle: response.interfaceName, address, response };
  }

  /** Links, addresses, routes and nftables of the node, plus the daemon's state files. */
  async snapshot(): Promise<{ node: NamespaceSnapshot; state: Record<string, string> }> {
    const [node, state] = await Promise.all([snapshot(this.ns), this.daemon.readState()]);
    return { node, state };
  }

  async close(): Promise<void> {
    await this.scope.cleanup();
  }
}
