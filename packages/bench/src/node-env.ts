/**
 * The node the latency, burst, scale and restart suites run on: a test-kit topology with one node
 * namespace, the real daemon in it (its CNI on 198.19.16.0/20), and in the same namespace the peers: the
 * CNI plugins and netavark, each with its own bridge and subnet, started by one peer runner. Every peer has a
 * resident "anchor" container, so each measured instance finds its network in steady state (netavark removes
 * its bridge with its last container; nodenet's CNI outlives its instances too).
 */
import { access, constants, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Daemon, PrivateOvs, Topology, type NodeHost, type TestScope } from '@nodenet/testkit';
import { createNamespaces } from './namespaces.js';
import { PeerRunner } from './peer-runner.js';
import { CNI_PLUGIN_DIR, CniPeer } from './systems/cni.js';
import { NETAVARK_BINARY, NetavarkPeer } from './systems/netavark.js';
import { NODENET_GATEWAY, NODENET_GATEWAY6, NODENET_SUBNET, NODENET_SUBNET6, NodenetSystem } from './systems/nodenet.js';
import type { SystemName, WiringSystem } from './systems/types.js';

/** Which peers can run here, and why not. */
export interface PeerAvailability {
  readonly cni: string | null;
  readonly netavark: string | null;
  readonly iperf3: string | null;
}

async function missing(paths: readonly string[], install: string): Promise<string | null> {
  for (const path of paths) {
    try {
      await access(path, constants.X_OK);
    } catch {
      return `${path} is missing: ${install}`;
    }
  }
  return null;
}

const INSTALL_HINT = 'run packages/bench/scripts/install-peers.sh as root';

export async function checkPeers(): Promise<PeerAvailability> {
  return {
    cni: await missing(
      ['bridge', 'host-local', 'portmap'].map((p) => join(CNI_PLUGIN_DIR, p)),
      `${INSTALL_HINT} (containernetworking-plugins)`,
    ),
    netavark: await missing([NETAVARK_BINARY], `${INSTALL_HINT} (netavark)`),
    iperf3: await missing(['/usr/bin/iperf3'], `${INSTALL_HINT} (iperf3)`),
  };
}

export class NodeEnv {
  private constructor(
    readonly scope: TestScope,
    readonly topology: Topology,
    private currentDaemon: Daemon,
    readonly nodenet: NodenetSystem,
    readonly cni: CniPeer | undefined,
    readonly netavark: NetavarkPeer | undefined,
  ) {}

  /**
   * `backend`: the daemon's (default iproute2; ovs runs a private Open vSwitch in the node namespace).
   * `ipv6`: a dual-stack CNI (NODENET_SUBNET6 beside NODENET_SUBNET), its instances with both families.
   */
  static async start(
    scope: TestScope,
    peers: { cni: boolean; netavark: boolean; backend?: 'iproute2' | 'ovs'; ipv6?: boolean },
  ): Promise<NodeEnv> {
    const topology = await Topology.create(scope, { nodes: 1 });
    const node = topology.node(1);
    const ovs = peers.backend === 'ovs' ? await PrivateOvs.start(scope, node.ns) : undefined;
    const daemon = await Daemon.start({ scope, node, ...(ovs ? { config: { backend: 'ovs', ovs: ovs.config } } : {}) });
    // The CPU account follows the env's daemon once the env exists (a restart replaces it).
    const built: { env?: NodeEnv } = {};
    const ipv6 = peers.ipv6 ?? false;
    const nodenet = new NodenetSystem(daemon.target, 1, () => (built.env ? built.env.daemon.pid : daemon.pid), ipv6);
    scope.defer('close the bench clients', () => nodenet.close());
    await nodenet.api.createContainerNetworkInterface({
      ipAddress: NODENET_GATEWAY,
      subNetwork: NODENET_SUBNET,
      ...(ipv6 ? { ipv6Address: NODENET_GATEWAY6, ipv6SubNetwork: NODENET_SUBNET6 } : {}),
    });
    let cni: CniPeer | undefined;
    let netavark: NetavarkPeer | undefined;
    if (peers.cni || peers.netavark) {
      const runner = await PeerRunner.start(scope, node.ns);
      const dir = await scope.createTempDir();
      const [cniAnchorNs, netavarkAnchorNs] = await createNamespaces(scope, 2);
      if (peers.cni) {
        await mkdir(join(dir, 'cni'));
        cni = new CniPeer(runner, join(dir, 'cni'));
        await cni.create({ index: -1, ns: cniAnchorNs!, ports: [] });
      }
      if (peers.netavark) {
        await mkdir(join(dir, 'netavark'));
        netavark = new NetavarkPeer(runner, join(dir, 'netavark'));
        await netavark.setup(netavarkAnchorNs!, '198.19.201.2', []);
      }
    }
    built.env = new NodeEnv(scope, topology, daemon, nodenet, cni, netavark);
    return built.env;
  }

  get node(): NodeHost {
    return this.topology.node(1);
  }

  get daemon(): Daemon {
    return this.currentDaemon;
  }

  set daemon(d: Daemon) {
    this.currentDaemon = d;
  }

  /** nodenet first, then the peers that run here: the interleaving order. */
  systems(): WiringSystem[] {
    return [this.nodenet, this.cni, this.netavark].filter((s): s is NonNullable<typeof s> => s !== undefined);
  }

  system(name: SystemName): WiringSystem | undefined {
    return this.systems().find((s) => s.name === name);
  }
}
