/**
 * Test topologies: a "fabric" namespace whose bridge is the shared underlay (198.18.0.0/24), N node
 * namespaces attached to it by veth pairs (node i holds 198.18.0.i on `eth0`, default route via the world),
 * and a "world" namespace on the fabric (198.18.0.100, plus 203.0.113.10 on its loopback standing for the
 * internet) representing other hosts. Everything lives in namespaces the scope owns; the root namespace is
 * never touched.
 */
import { ipBatch, writeSysctls } from './exec.js';
import type { TestScope } from './scope.js';

export const UNDERLAY_NETWORK = '198.18.0.0';
export const UNDERLAY_PREFIX_LENGTH = 24;
export const UNDERLAY_SUBNET = `${UNDERLAY_NETWORK}/${UNDERLAY_PREFIX_LENGTH}`;
/** The world's address on the fabric; nodes route everything else through it. */
export const WORLD_ADDRESS = '198.18.0.100';
/** An address on the world's loopback: a host beyond the underlay ("the internet"). */
export const INTERNET_ADDRESS = '203.0.113.10';
/** The name of the underlay link inside every node namespace. */
export const NODE_UNDERLAY_IFNAME = 'eth0';
export const MAX_NODES = 99;

const BRIDGE_NF_SYSCTLS = [
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables',
  'net.bridge.bridge-nf-call-arptables',
] as const;

export interface TopologyOptions {
  /** Node namespaces to create now (1..99); more can be added with addNode(). Default 1. */
  readonly nodes?: number;
  /**
   * Keep `net.bridge.bridge-nf-call-{ip,ip6,arp}tables` at 1 in node namespaces (the kernel default here).
   * Default false: they are set to 0, as on many real hosts.
   */
  readonly bridgeNfCall?: boolean;
  /** MTU of the underlay (fabric bridge and every veth on it). Default 1500. */
  readonly underlayMtu?: number;
}

/** A node: a namespace on the fabric where one daemon runs. */
export interface NodeHost {
  /** 1-based; the last byte of the node's underlay address. */
  readonly index: number;
  /** `node-<index>`: the daemon's node name. */
  readonly name: string;
  readonly ns: string;
  /** The node's underlay address, 198.18.0.<index>. */
  readonly address: string;
  readonly prefixLength: number;
  /** The underlay link inside the node namespace. */
  readonly underlayIfname: string;
  readonly underlayMtu: number;
}

export interface WorldHost {
  readonly ns: string;
  readonly address: string;
  /** Reachable from nodes through their default route. */
  readonly internetAddress: string;
}

export class Topology {
  readonly nodes: NodeHost[] = [];

  private constructor(
    readonly scope: TestScope,
    /** The namespace holding the underlay bridge. */
    readonly fabric: string,
    readonly world: WorldHost,
    readonly options: Required<TopologyOptions>,
  ) {}

  /** Builds the fabric, the world and `options.nodes` nodes. */
  static async create(scope: TestScope, options: TopologyOptions = {}): Promise<Topology> {
    const opts: Required<TopologyOptions> = {
      nodes: options.nodes ?? 1,
      bridgeNfCall: options.bridgeNfCall ?? false,
      underlayMtu: options.underlayMtu ?? 1500,
    };
    if (!Number.isInteger(opts.nodes) || opts.nodes < 0 || opts.nodes > MAX_NODES) {
      throw new Error(`nodes must be 0..${MAX_NODES}, got ${opts.nodes}`);
    }
    const [fabric, worldNs] = await Promise.all([scope.createNamespace(), scope.createNamespace()]);
    const mtu = opts.underlayMtu;
    await ipBatch(fabric, [
      `link add br0 mtu ${mtu} type bridge`,
      'link set br0 up',
      `link add w0 mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${worldNs}`,
      'link set w0 master br0',
      'link set w0 up',
    ]);
    await ipBatch(worldNs, [
      `addr add ${WORLD_ADDRESS}/${UNDERLAY_PREFIX_LENGTH} dev eth0`,
      'link set eth0 up',
      `addr add ${INTERNET_ADDRESS}/32 dev lo`,
    ]);
    const world: WorldHost = { ns: worldNs, address: WORLD_ADDRESS, internetAddress: INTERNET_ADDRESS };
    const topology = new Topology(scope, fabric, world, opts);
    await Promise.all(Array.from({ length: opts.nodes }, () => topology.addNode()));
    return topology;
  }

  /** Adds a node on the fabric: the next free index, 198.18.0.<index>. */
  async addNode(): Promise<NodeHost> {
    const index = this.nodes.length + 1;
    if (index > MAX_NODES) throw new Error(`a topology holds at most ${MAX_NODES} nodes`);
    const node: NodeHost = {
      index,
      name: `node-${index}`,
      ns: '',
      address: `198.18.0.${index}`,
      prefixLength: UNDERLAY_PREFIX_LENGTH,
      underlayIfname: NODE_UNDERLAY_IFNAME,
      underlayMtu: this.options.underlayMtu,
    };
    this.nodes.push(node); // reserve the index before the first await
    const ns = await this.scope.createNamespace();
    (node as { ns: string }).ns = ns;
    const mtu = this.options.underlayMtu;
    await ipBatch(this.fabric, [
      `link add n${index} mtu ${mtu} type veth peer name ${NODE_UNDERLAY_IFNAME} mtu ${mtu} netns ${ns}`,
      `link set n${index} master br0`,
      `link set n${index} up`,
    ]);
    await ipBatch(ns, [
      `addr add ${node.address}/${UNDERLAY_PREFIX_LENGTH} dev ${NODE_UNDERLAY_IFNAME}`,
      `link set ${NODE_UNDERLAY_IFNAME} up`,
      `route add default via ${WORLD_ADDRESS}`,
    ]);
    const value = this.options.bridgeNfCall ? 1 : 0;
    await writeSysctls(ns, Object.fromEntries(BRIDGE_NF_SYSCTLS.map((k) => [k, value])));
    return node;
  }

  /** An empty namespace (lo up) for an instance: the daemon or the test moves an interface into it. */
  createInstanceNamespace(): Promise<string> {
    return this.scope.createNamespace();
  }

  node(index: number): NodeHost {
    const node = this.nodes[index - 1];
    if (!node) throw new Error(`no node ${index} in this topology (it has ${this.nodes.length})`);
    return node;
  }
}

/** The sysctl names the topology sets in node namespaces (for assertions). */
export const BRIDGE_NETFILTER_SYSCTLS: readonly string[] = BRIDGE_NF_SYSCTLS;
