/**
 * The backends the conformance suite runs against. Every describe in the suite is repeated for each;
 * `NODENET_BACKENDS=iproute2,ovs` selects a subset (or adds one that has a profile here).
 */
import {
  PrivateOvs,
  completeUnderlayChecksums,
  ipJson,
  link,
  type DaemonConfig,
  type NodeHost,
  type RouteInfo,
  type TestScope,
} from '@nodenet/testkit';

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
  /**
   * What keeps the node from sending traffic for a peer's subnet over the vxlan overlay, read where this
   * backend keeps its forwarding (empty: nothing, it goes over the overlay). iproute2: the node's route to
   * the subnet uses its VXLAN device. ovs: the route enters the CNI bridge, and the bridge holds the peer's
   * cookie-tagged flows that send that subnet out of the tunnel port with the peer's underlay address as the
   * tunnel destination.
   */
  vxlanPathProblems(node: NodeHost, peer: OverlayPeer): Promise<string[]>;
}

/** A peer as the overlay sees it. */
export interface OverlayPeer {
  readonly subnet: string;
  readonly underlayAddress: string;
}

/** The routing protocol number nodenet tags its overlay routes with. */
const OVERLAY_ROUTE_PROTOCOL = '78';

/** The node's overlay route (`proto 78`) to `subnet`, or a problem saying there is none. */
async function overlayRouteTo(node: NodeHost, subnet: string): Promise<RouteInfo | string> {
  const all = await ipJson<RouteInfo[]>(node.ns, ['route', 'show', 'proto', OVERLAY_ROUTE_PROTOCOL]);
  return (
    all.find((r) => r.dst === subnet) ??
    `${node.name} has no proto ${OVERLAY_ROUTE_PROTOCOL} route to ${subnet} (it has ${JSON.stringify(all.map((r) => r.dst))})`
  );
}

/**
 * The cookie the ovs backend gives a peer's flows: 0x6e6e ('nn'), class 0x03 (peer), 0, the peer's underlay
 * IPv4 address as 32 bits (packages/backend-ovs/src/flows.ts; restated here so the suite reads the switch
 * as an outsider would).
 */
export function ovsPeerCookie(underlayAddress: string): string {
  const n = underlayAddress.split('.').reduce((acc, b) => acc * 256 + Number(b), 0);
  return `0x6e6e0300${n.toString(16).padStart(8, '0')}`;
}

/** The private Open vSwitch of each node namespace (ovs profile). */
const privateOvs = new Map<string, PrivateOvs>();

const PROFILES: Record<string, BackendProfile> = {
  iproute2: {
    name: 'iproute2',
    prepareNode: async () => ({}),
    switchOf: async (node, ifname) => (await link(node.ns, ifname))?.master,
    vxlanPathProblems: async (node, peer) => {
      const route = await overlayRouteTo(node, peer.subnet);
      if (typeof route === 'string') return [route];
      return route.dev === 'nodenet-vx'
        ? []
        : [`${node.name} routes ${peer.subnet} over ${route.dev ?? 'no device'}, not the VXLAN device nodenet-vx`];
    },
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
    vxlanPathProblems: async (node, peer) => {
      const ovs = privateOvs.get(node.ns);
      if (!ovs) throw new Error(`no private Open vSwitch was started for ${node.ns}`);
      const problems: string[] = [];
      // The node's own packets: routed by the kernel into the bridge, where the same flows take them.
      const route = await overlayRouteTo(node, peer.subnet);
      if (typeof route === 'string') problems.push(route);
      else if (route.dev !== 'nodenet0')
        problems.push(`${node.name} routes ${peer.subnet} over ${route.dev ?? 'no device'}, not into the CNI bridge nodenet0`);
      const [flows, tunnelPort] = await Promise.all([ovs.flows('nodenet0'), ovs.vsctl(['get', 'Interface', 'nodenet-tun', 'ofport'])]);
      const cookie = ovsPeerCookie(peer.underlayAddress);
      const tunnel = tunnelPort.stdout.trim();
      // Instance traffic (any in_port) and the node's own (in_port=LOCAL): both must be tunnelled to the peer.
      const toPeer = flows.filter(
        (f) =>
          new RegExp(`(^|[\\s,])cookie=${cookie}[\\s,]`).test(f) &&
          f.includes(`nw_dst=${peer.subnet}`) &&
          f.includes(`set_field:${peer.underlayAddress}->tun_dst`) &&
          new RegExp(`output:${tunnel}($|,)`).test(f),
      );
      if (!toPeer.some((f) => f.includes('in_port=LOCAL')))
        problems.push(
          `${node.name}: no flow (cookie ${cookie}) tunnels the node's own traffic for ${peer.subnet} to ${peer.underlayAddress} out of port ${tunnel}`,
        );
      if (!toPeer.some((f) => !f.includes('in_port=')))
        problems.push(
          `${node.name}: no flow (cookie ${cookie}) tunnels instance traffic for ${peer.subnet} to ${peer.underlayAddress} out of port ${tunnel}`,
        );
      if (problems.length > 0) problems.push(`flows of ${node.name}'s nodenet0: ${JSON.stringify(flows)}`);
      return problems;
    },
  },
};

/** The private Open vSwitch the ovs profile started in a node namespace (for tests that look inside it). */
export function privateOvsOf(ns: string): PrivateOvs | undefined {
  return privateOvs.get(ns);
}

/** The backends every conformance describe runs for (NODENET_BACKENDS=ovs: one of them). */
export const BACKENDS: readonly string[] = (process.env.NODENET_BACKENDS ?? 'iproute2,ovs')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');

/** The backends the IPv6 durability suite runs for, of BACKENDS. */
export const IPV6_BACKENDS: readonly string[] = BACKENDS.filter((b) => ['iproute2', 'ovs'].includes(b));

export function backendProfile(name: string): BackendProfile {
  const profile = PROFILES[name];
  if (!profile) throw new Error(`no conformance profile for backend '${name}': known are ${Object.keys(PROFILES).join(', ')}`);
  return profile;
}

/** Registers a profile (for backends whose node preparation lives elsewhere). */
export function registerBackendProfile(profile: BackendProfile): void {
  PROFILES[profile.name] = profile;
}
