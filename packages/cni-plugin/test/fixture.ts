/**
 * The set-up the plugin's integration tests share: one node namespace with its own nodenetd, a nodenet
 * conflist naming that daemon's CNI socket, and a libcni cache dir. Everything lives in the returned scope;
 * a set-up that fails half-way removes what it made before it throws.
 */
import { Daemon, TestScope, Topology, type DaemonConfig } from '@nodenet/testkit';
import { nodenetConflist, writeConflist } from './support.js';

export interface CniNodeOptions {
  /** The nodenet plugin's keys besides type, socket and capabilities (subnet, gateway, dns, ...). */
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
    const daemon = await Daemon.start({ scope, node: topo.node(1), ...(options.daemonConfig ? { config: options.daemonConfig } : {}) });
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
