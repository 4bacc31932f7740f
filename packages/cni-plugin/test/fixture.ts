/**
 * The set-up the plugin's integration tests share: one node namespace with its own nodenetd, a nodenet
 * conflist naming that daemon's CNI socket, and a libcni cache dir. Everything lives in the returned scope;
 * a set-up that fails half-way removes what it made before it throws.
 */
import { Daemon, ipBatch, TestScope, Topology, type DaemonConfig } from '@nodenet/testkit';
import { nodenetConflist, writeConflist } from './support.js';

/** The IPv6 underlay beside 198.18.0.0/24 (2001:db8:18::/64): the world's and the node's addresses. */
export const WORLD6 = '2001:db8:18::100';
export const NODE6 = '2001:db8:18::1';

/** CreateContainerNetworkInterface's fields (the seed's, and a dual-stack node's IPv6 half). */
export interface CniFieldsRequest {
  readonly ipAddress: string;
  readonly subNetwork: string;
  readonly ipv6Address?: string;
  readonly ipv6SubNetwork?: string;
}

export interface CniNodeOptions {
  /** The nodenet plugin's keys besides type, socket and capabilities (subnet, gateway, ipv6Subnet, dns, ...). */
  readonly plugin?: Record<string, unknown>;
  /** The network's name (default `nodenet`) and the conflist's cniVersion (default 1.0.0). */
  readonly name?: string;
  readonly cniVersion?: string;
  /** The conflist's file name (default `nodenet.conflist`). */
  readonly file?: string;
  /** Where the conflist goes (default: a temp dir of the scope), e.g. a runtime's network dir. */
  readonly conflistDir?: (node: { readonly scope: TestScope; readonly topo: Topology }) => Promise<string>;
  /** Daemon config keys over the kit's defaults. */
  readonly daemonConfig?: DaemonConfig;
  /**
   * The IPv6 underlay, made before the daemon starts (as on a host that has it at boot): WORLD6 in the world,
   * NODE6 on the node's underlay link and the node's IPv6 default route via WORLD6.
   */
  readonly ipv6Underlay?: boolean;
  /** Creates the node's CNI through the gRPC API once the daemon serves (default: none, the conflist may make it). */
  readonly createCni?: CniFieldsRequest;
}

export interface CniNode {
  readonly scope: TestScope;
  /** One node (`topo.node(1)`) and the world. */
  readonly topo: Topology;
  readonly daemon: Daemon;
  /** The conflist's directory and path. */
  readonly dir: string;
  readonly conflist: string;
  /** libcni's cache directory. */
  readonly cache: string;
}

export async function startCniNode(options: CniNodeOptions = {}): Promise<CniNode> {
  const scope = await TestScope.create();
  try {
    const topo = await Topology.create(scope, { nodes: 1 });
    const node = topo.node(1);
    if (options.ipv6Underlay) {
      await ipBatch(topo.world.ns, [`addr add ${WORLD6}/64 dev eth0 nodad`]);
      await ipBatch(node.ns, [`addr add ${NODE6}/64 dev ${node.underlayIfname} nodad`, `route add ::/0 via ${WORLD6}`]);
    }
    const daemon = await Daemon.start({ scope, node, ...(options.daemonConfig ? { config: options.daemonConfig } : {}) });
    if (options.createCni) await daemon.network().createContainerNetworkInterface(options.createCni);
    const dir = options.conflistDir ? await options.conflistDir({ scope, topo }) : await scope.createTempDir();
    const cache = await scope.createTempDir();
    const conflist = await writeConflist(
      dir,
      options.file ?? 'nodenet.conflist',
      nodenetConflist({
        ...(options.name ? { name: options.name } : {}),
        ...(options.cniVersion ? { cniVersion: options.cniVersion } : {}),
        socket: daemon.cniSocket,
        ...(options.plugin ? { extra: options.plugin } : {}),
      }),
    );
    return { scope, topo, daemon, dir, conflist, cache };
  } catch (e) {
    await scope.cleanup();
    throw e;
  }
}
