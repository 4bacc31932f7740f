/**
 * The backends the conformance suite runs against. Every describe in the suite is repeated for each;
 * `NODENET_BACKENDS=iproute2,ovs` selects a subset (or adds one that has a profile here).
 */
import { PrivateOvs, completeUnderlayChecksums, link, type DaemonConfig, type NodeHost, type TestScope } from '@nodenet/testkit';

export interface BackendProfile {
  /** The daemon's `backend` config value. */
  readonly name: string;
  /** Prepares a node for this backend (e.g. starts a private OVS) and returns config keys the daemon needs. */
  prepareNode(scope: TestScope, node: NodeHost): Promise<DaemonConfig>;
  /**
   * After the node's namespace was destroyed and rebuilt (a reboot): brings back what the host would start
   * at boot for this backend (ovs: its Open vSwitch, with the database it had). Absent: nothing to do.
   */
  nodeRebooted?(scope: TestScope, node: NodeHost): Promise<void>;
  /**
   * The switch (CNI) a link of the node is a port of, read where this backend keeps it: iproute2, the kernel
   * link's master; ovs, OVSDB (the kernel shows no master for a userspace-datapath port). Undefined: none.
   */
  switchOf(node: NodeHost, ifname: string): Promise<string | undefined>;
  /** The device the node's route to a peer's subnet uses in vxlan mode (iproute2: its VXLAN device; ovs: the CNI, whose flows tunnel it). */
  readonly vxlanRouteDevice: string;
}

/** The private Open vSwitch of each node namespace (ovs profile). */
const privateOvs = new Map<string, PrivateOvs>();

const PROFILES: Record<string, BackendProfile> = {
  iproute2: {
    name: 'iproute2',
    prepareNode: async () => ({}),
    switchOf: async (node, ifname) => (await link(node.ns, ifname))?.master,
    vxlanRouteDevice: 'nodenet-vx',
  },
  ovs: {
    name: 'ovs',
    // The kernel here has no openvswitch module: the userspace datapath, OVS private to the node namespace.
    prepareNode: async (scope, node) => {
      // The userspace datapath needs complete checksums from the underlay, as a physical NIC delivers them.
      await completeUnderlayChecksums(node.ns, node.underlayIfname);
      const ovs = await PrivateOvs.start(scope, node.ns);
      privateOvs.set(node.ns, ovs);
      scope.defer(`forget the private OVS of ${node.ns}`, () => void privateOvs.delete(node.ns));
      return { backend: 'ovs', ovs: ovs.config };
    },
    nodeRebooted: async (_scope, node) => {
      const ovs = privateOvs.get(node.ns);
      if (!ovs) throw new Error(`no private Open vSwitch was started for ${node.ns}`);
      await completeUnderlayChecksums(node.ns, node.underlayIfname);
      await ovs.stop('kill');
      await ovs.start();
    },
    switchOf: async (node, ifname) => {
      const ovs = privateOvs.get(node.ns);
      if (!ovs) throw new Error(`no private Open vSwitch was started for ${node.ns}`);
      const r = await ovs.vsctl(['iface-to-br', ifname]).catch(() => null); // fails for a name that is no port
      return r?.stdout.trim() || undefined;
    },
    vxlanRouteDevice: 'nodenet0',
  },
};

/** The private Open vSwitch the ovs profile started in a node namespace (for tests that look inside it). */
export function privateOvsOf(ns: string): PrivateOvs | undefined {
  return privateOvs.get(ns);
}

/** The backends every conformance describe runs for. */
// ovs joins the default list once its conformance run is green (issue 5): NODENET_BACKENDS=iproute2,ovs runs it now.
export const BACKENDS: readonly string[] = (process.env.NODENET_BACKENDS ?? 'iproute2')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');

export function backendProfile(name: string): BackendProfile {
  const profile = PROFILES[name];
  if (!profile) throw new Error(`no conformance profile for backend '${name}': known are ${Object.keys(PROFILES).join(', ')}`);
  return profile;
}

/** Registers a profile (for backends whose node preparation lives elsewhere). */
export function registerBackendProfile(profile: BackendProfile): void {
  PROFILES[profile.name] = profile;
}
