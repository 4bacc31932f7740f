/**
 * One node of the conformance suite: a topology (fabric, world, one node), the real daemon in the node
 * namespace with the chosen backend, a client, and helpers to make instances the way a runtime would
 * (move the veth, address it) or through the netns extension. Addresses and ports are handed out so tests
 * sharing a node never collide.
 */
import type { CreateInterfaceRequest, CreateInterfaceResponse, DeepPartial, NetworkApiClient } from '@nodenet/api';
import {
  Daemon,
  TestScope,
  Topology,
  adoptInterface,
  snapshot,
  type DaemonConfig,
  type NamespaceSnapshot,
  type NodeHost,
  type WorldHost,
} from '@nodenet/testkit';
import { backendProfile } from './backends.js';

export const NODE_SUBNET = '198.19.1.0/24';
export const NODE_GATEWAY = '198.19.1.1';
export const NODE_PREFIX_LENGTH = 24;
/** The vxlan overlay's default overhead: instance MTU = underlay MTU - 50. */
export const VXLAN_OVERHEAD = 50;

export interface NodeFixtureOptions {
  readonly backend: string;
  /** Keep net.bridge.bridge-nf-call-* at 1 in the node namespace (default: 0). */
  readonly bridgeNfCall?: boolean;
  /** Extra daemon config (e.g. reservedPorts). */
  readonly config?: DaemonConfig;
  /** Daemon listens on this TCP port inside the node (instead of a unix socket). */
  readonly tcpPort?: number;
  /** Create the CNI (198.19.1.1 in 198.19.1.0/24) before returning. Default true. */
  readonly cni?: boolean;
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
      const fixture = new NodeFixture(scope, topology, node, daemon, options.backend);
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
    const r = await this.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET });
    return r.interfaceName;
  }

  /** A fresh instance address of the node subnet (198.19.1.10, .11, ...). */
  nextAddress(): string {
    this.addressCounter += 1;
    if (this.addressCounter > 254) throw new Error('the fixture ran out of instance addresses');
    return `198.19.1.${this.addressCounter}`;
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
    const request: DeepPartial<CreateInterfaceRequest> = {
      ipAddress: address,
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
    if (via === 'netns') return { handle: response.interfaceName, address, ns: ns!, ifname: options.ifname ?? 'eth0', response };
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
