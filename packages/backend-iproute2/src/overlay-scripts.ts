/**
 * The overlay's kernel programming as pure functions (so tests can read every line): the VXLAN endpoint
 * device, and per peer the route (+ neighbour and FDB entries for vxlan). `ip` lines and `bridge` lines are
 * separate scripts: `bridge fdb` commands cannot run inside `ip -batch`.
 *
 * vxlan is an L3 overlay in flannel's style: each node's VXLAN device has the MAC vtepMacForUnderlay(its
 * underlay address) and its subnet's network address as a /32. A peer's subnet is routed `via` the peer's
 * network address `onlink`; a permanent neighbour entry resolves that address to the peer's VTEP MAC, and a
 * permanent FDB entry sends frames for that MAC to the peer's underlay address. Nothing is learned or
 * flooded, so no ARP or multicast crosses the underlay.
 */
import {
  InternalError,
  OWNER_ALIAS_PREFIX,
  checkVxlanUnderlay,
  parseIfName,
  subnetsOfNode,
  vtepMacOf,
  type IpSubnet,
  type HostInfo,
  type IfName,
  type Ipv4Address,
  type NodeRecord,
  type IpAddress,
} from '@nodenet/core';
import {
  ROUTE_LINE,
  ROUTE_PROTO_ARGS,
  deleteRouteLine,
  supersededSubnets,
  parseIpAddrs,
  staleRouteLines,
  type IpAddress as IpAddressEntry,
  type IpLine,
  type ProgrammedPeer,
} from '@nodenet/linux';

/** The VXLAN device every node gets in vxlan mode. */
export const OVERLAY_DEVICE = 'nodenet-vx' as IfName;
/** The alias that marks the VXLAN device as nodenet's. */
export const OVERLAY_OWNER_ALIAS = `${OWNER_ALIAS_PREFIX}overlay`;
/** Line ids, so callers and tests refer to lines by meaning rather than by position. */
export const OVERLAY_LINE = {
  createDevice: 'create-vxlan',
  configureDevice: 'configure-vxlan',
  deviceAddress: 'vxlan-address',
  deviceUp: 'vxlan-up',
  deviceMac: 'vxlan-mac',
  deviceMtu: 'vxlan-mtu',
  deviceUnderlay: 'vxlan-underlay',
  deviceAddrgen: 'vxlan-addrgen',
  staleAddress: 'vxlan-stale-address',
  deleteDevice: 'delete-vxlan',
  peerRoute: ROUTE_LINE.peerRoute,
  peerNeighbour: 'peer-neighbour',
  peerFdb: 'peer-fdb',
  deleteRoute: ROUTE_LINE.deleteRoute,
  deleteNeighbour: 'delete-neighbour',
  deleteFdb: 'delete-fdb',
} as const;

/** Line ids whose failure with "not there" is success (tolerant deletes). */
export const DELETE_LINE_IDS: ReadonlySet<string> = new Set([
  OVERLAY_LINE.deleteDevice,
  OVERLAY_LINE.deleteRoute,
  OVERLAY_LINE.deleteNeighbour,
  OVERLAY_LINE.deleteFdb,
]);

// -------------------------------------------------------------------------------------------------------
// The VXLAN device

export interface VxlanEndpointSpec {
  readonly name: IfName;
  readonly vni: number;
  readonly port: number;
  /** This node's underlay address (IPv4 or IPv6): the outer source address. */
  readonly local: IpAddress;
  /** The link holding it: the outer packets leave by it. */
  readonly underlayLink: IfName;
  readonly mtu: number;
  /** vtepMacOf(local): peers derive it from this node's record. */
  readonly mac: string;
  /**
   * The IPv4 subnet's network address, held as /32: the on-link source of what the node itself sends to
   * peers. Absent on an IPv6-only node (IPv6 picks a source from nodenet0, so the device holds no IPv6 address).
   */
  readonly address?: Ipv4Address;
}

/** The endpoint this node needs; refuses an underlay MTU too small to carry the overlay. */
export function vxlanEndpointSpec(self: NodeRecord, host: HostInfo, vni: number, port: number): VxlanEndpointSpec {
  const mtu = checkVxlanUnderlay(self, host);
  return {
    name: OVERLAY_DEVICE,
    vni,
    port,
    local: self.underlayAddress,
    underlayLink: parseIfName(host.underlayInterface, 'underlay interface'),
    mtu,
    mac: vtepMacOf(self.underlayAddress),
    ...(self.subnet ? { address: self.subnet.network } : {}),
  };
}

/** The kernel's view of the VXLAN device (`ip -j -d addr show dev nodenet-vx`). */
export interface VxlanDeviceState {
  readonly ifname: string;
  /** `vxlan`, or another kind when a foreign link has the name. */
  readonly kind?: string;
  readonly alias?: string;
  readonly mtu: number;
  readonly mac?: string;
  readonly up: boolean;
  /** Present for a vxlan device. */
  readonly vxlan?: {
    readonly vni?: number;
    readonly port?: number;
    readonly local?: string;
    readonly link?: string;
    readonly learning?: boolean;
  };
  readonly addresses: readonly IpAddressEntry[];
}

/** Parses `ip -j -d addr show dev NAME` output (one link); null when the list is empty. */
export function parseVxlanDevice(json: unknown): VxlanDeviceState | null {
  const link = parseIpAddrs(json)[0];
  if (!link) return null;
  const raw = (json as Record<string, unknown>[])[0]!;
  const info = raw['linkinfo'] as { info_data?: unknown } | undefined;
  let vxlan: VxlanDeviceState['vxlan'];
  if (link.linkinfo?.kind === 'vxlan') {
    const data = info?.info_data;
    if (typeof data !== 'object' || data === null) {
      throw new InternalError(
        'read the VXLAN device from ip -j',
        `unexpected output: vxlan link without info_data: ${JSON.stringify(info)}`,
      );
    }
    const d = data as Record<string, unknown>;
    vxlan = {
      ...(typeof d['id'] === 'number' ? { vni: d['id'] } : {}),
      ...(typeof d['port'] === 'number' ? { port: d['port'] } : {}),
      ...(typeof d['local'] === 'string' ? { local: d['local'] } : {}),
      ...(typeof d['link'] === 'string' ? { link: d['link'] } : {}),
      ...(typeof d['learning'] === 'boolean' ? { learning: d['learning'] } : {}),
    };
  }
  return {
    ifname: link.ifname,
    ...(link.linkinfo?.kind !== undefined ? { kind: link.linkinfo.kind } : {}),
    ...(link.alias !== undefined ? { alias: link.alias } : {}),
    mtu: link.mtu,
    ...(link.address !== undefined ? { mac: link.address } : {}),
    up: link.flags.includes('UP'),
    ...(vxlan ? { vxlan } : {}),
    addresses: link.addresses,
  };
}

/** Why an existing link named nodenet-vx is not nodenet's (a message for FailedPreconditionError), or null. */
export function foreignDeviceProblem(state: VxlanDeviceState): string | null {
  if (state.alias !== OVERLAY_OWNER_ALIAS) {
    return `a link named ${state.ifname} already exists on this node but was not made by nodenet (its alias is ${state.alias ? `'${state.alias}'` : 'unset'}, not '${OVERLAY_OWNER_ALIAS}'): nodenet needs that name for its VXLAN device; remove or rename that link`;
  }
  if (state.kind !== 'vxlan') {
    return `the link ${state.ifname} carries nodenet's alias '${OVERLAY_OWNER_ALIAS}' but is not a VXLAN device (it is ${state.kind ? `a ${state.kind} link` : 'of unknown kind'}): remove it (ip link del dev ${state.ifname}) and retry`;
  }
  return null;
}

/** Differences the kernel cannot change on a live VXLAN device ("Cannot change VNI/port"): the device must be recreated. */
export function vxlanRecreateReasons(spec: VxlanEndpointSpec, state: VxlanDeviceState): string[] {
  const reasons: string[] = [];
  if (state.vxlan?.vni !== spec.vni) reasons.push(`VNI ${String(state.vxlan?.vni)} -> ${spec.vni}`);
  if (state.vxlan?.port !== spec.port) reasons.push(`UDP port ${String(state.vxlan?.port)} -> ${spec.port}`);
  return reasons;
}

/**
 * Creates the device. `addrgenmode none` must come after creation (`ip link add` refuses it) and before `up`
 * (a VXLAN device has carrier at once, so `up` would generate an IPv6 link-local address first).
 */
export function createVxlanScript(spec: VxlanEndpointSpec): IpLine[] {
  return [
    {
      id: OVERLAY_LINE.createDevice,
      args: [
        'link',
        'add',
        'name',
        spec.name,
        'address',
        spec.mac,
        'mtu',
        String(spec.mtu),
        'type',
        'vxlan',
        'id',
        String(spec.vni),
        'dstport',
        String(spec.port),
        'local',
        spec.local,
        'dev',
        spec.underlayLink,
        'nolearning',
      ],
      step: `create VXLAN device ${spec.name} (VNI ${spec.vni}, UDP ${spec.port}, local ${spec.local} on ${spec.underlayLink})`,
    },
    {
      id: OVERLAY_LINE.configureDevice,
      args: ['link', 'set', 'dev', spec.name, 'alias', OVERLAY_OWNER_ALIAS, 'addrgenmode', 'none'],
      step: `set the owner alias on ${spec.name}`,
    },
    ...deviceAddressLines(spec),
    { id: OVERLAY_LINE.deviceUp, args: ['link', 'set', 'dev', spec.name, 'up'], step: `bring ${spec.name} up` },
  ];
}

function deviceAddressLines(spec: VxlanEndpointSpec): IpLine[] {
  if (spec.address === undefined) return [];
  return [
    {
      id: OVERLAY_LINE.deviceAddress,
      args: ['address', 'add', `${spec.address}/32`, 'dev', spec.name],
      step: `add ${spec.address}/32 to ${spec.name}`,
    },
  ];
}

/**
 * The lines that bring nodenet's existing VXLAN device to the spec (empty when it matches): MAC, MTU, local
 * address, underlay link and learning (changeable in place), exactly one address (the /32), no IPv6, up.
 * VNI and port differences are not repaired here (see vxlanRecreateReasons).
 */
export function repairVxlanScript(spec: VxlanEndpointSpec, state: VxlanDeviceState): IpLine[] {
  const lines: IpLine[] = [];
  if (state.mac?.toLowerCase() !== spec.mac.toLowerCase()) {
    lines.push({
      id: OVERLAY_LINE.deviceMac,
      args: ['link', 'set', 'dev', spec.name, 'address', spec.mac],
      step: `set MAC ${spec.mac} on ${spec.name}`,
    });
  }
  if (state.mtu !== spec.mtu) {
    lines.push({
      id: OVERLAY_LINE.deviceMtu,
      args: ['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu)],
      step: `set MTU ${spec.mtu} on ${spec.name}`,
    });
  }
  const v = state.vxlan;
  if (v?.local !== spec.local || v.link !== spec.underlayLink || v.learning !== false) {
    lines.push({
      id: OVERLAY_LINE.deviceUnderlay,
      args: ['link', 'set', 'dev', spec.name, 'type', 'vxlan', 'local', spec.local, 'dev', spec.underlayLink, 'nolearning'],
      step: `set local ${spec.local}, underlay ${spec.underlayLink} and nolearning on ${spec.name}`,
    });
  }
  let hasAddress = false;
  const stale: string[] = [];
  if (spec.address === undefined) hasAddress = true; // an IPv6-only node's device holds no address
  for (const a of state.addresses) {
    if (a.family === 'inet' && spec.address !== undefined && a.local === spec.address && a.prefixlen === 32) hasAddress = true;
    else stale.push(`${a.local}/${a.prefixlen}`);
  }
  // An IPv6 address means address generation was on; turn it off before removing the address or bringing the device up.
  if (!state.up || state.addresses.some((a) => a.family === 'inet6')) {
    lines.push({
      id: OVERLAY_LINE.deviceAddrgen,
      args: ['link', 'set', 'dev', spec.name, 'addrgenmode', 'none'],
      step: `turn off IPv6 address generation on ${spec.name}`,
    });
  }
  for (const cidr of stale) {
    lines.push({
      id: OVERLAY_LINE.staleAddress,
      args: ['address', 'del', cidr, 'dev', spec.name],
      step: `remove stale address ${cidr} from ${spec.name}`,
    });
  }
  if (!hasAddress) lines.push(...deviceAddressLines(spec));
  if (!state.up) lines.push({ id: OVERLAY_LINE.deviceUp, args: ['link', 'set', 'dev', spec.name, 'up'], step: `bring ${spec.name} up` });
  return lines;
}

export function deleteVxlanScript(name: IfName = OVERLAY_DEVICE): IpLine[] {
  return [{ id: OVERLAY_LINE.deleteDevice, args: ['link', 'del', 'dev', name], step: `delete ${name}` }];
}

// -------------------------------------------------------------------------------------------------------
// Peers

/** One `ip -batch` script and one `bridge -batch` script (either may be empty). */
export interface OverlayScripts {
  readonly ip: IpLine[];
  readonly bridge: IpLine[];
}

/**
 * `neigh flush ... nud all` rather than `neigh del`: a failing `ip neigh del` ends the whole `ip -batch`
 * (iproute2 exits from it, -force or not), while a flush that finds nothing succeeds. `nud all` includes
 * permanent entries, which a plain flush skips.
 */
function deleteNeighbourLine(address: string, why: string): IpLine {
  return {
    id: OVERLAY_LINE.deleteNeighbour,
    args: ['neigh', 'flush', 'to', address, 'dev', OVERLAY_DEVICE, 'nud', 'all'],
    step: `delete the neighbour entry of ${address} (${why}) on ${OVERLAY_DEVICE}`,
  };
}

function deleteFdbLine(mac: string, why: string): IpLine {
  // Without `dst` the whole entry goes, whatever remote it points at (with a wrong `dst` the kernel deletes nothing and says OK).
  return {
    id: OVERLAY_LINE.deleteFdb,
    args: ['fdb', 'del', mac, 'dev', OVERLAY_DEVICE, 'self'],
    step: `delete the FDB entry of ${mac} (${why}) on ${OVERLAY_DEVICE}`,
  };
}

/**
 * vxlan: the route, neighbour and FDB entries that reach `peer`, all `replace` so a re-run converges. When
 * `previous` is what was programmed for the same peer before, its entries that `peer` no longer
 * overwrites (another subnet, another underlay address) are deleted first.
 */
export function vxlanPeerScripts(peer: NodeRecord, previous?: NodeRecord): OverlayScripts {
  const ip: IpLine[] = [];
  const bridge: IpLine[] = [];
  const mac = vtepMacOf(peer.underlayAddress);
  if (previous) {
    for (const old of supersededSubnets(peer, previous)) ip.push(deleteRouteLine(old), deleteNeighbourLine(old.network, previous.name));
    const previousMac = vtepMacOf(previous.underlayAddress);
    if (previousMac !== mac) bridge.push(deleteFdbLine(previousMac, `${previous.name} at ${previous.underlayAddress}`));
  }
  // Per subnet (IPv4 and IPv6 alike, in the same batch): the subnet's network address is the next hop, resolved
  // by a permanent neighbour entry to the peer's VTEP MAC. Neighbour before route: once the route exists, the
  // next hop resolves without ARP or neighbour discovery.
  for (const subnet of subnetsOfNode(peer)) ip.push(...peerSubnetLines(peer, subnet, mac));
  bridge.push({
    id: OVERLAY_LINE.peerFdb,
    args: ['fdb', 'replace', mac, 'dev', OVERLAY_DEVICE, 'dst', peer.underlayAddress, 'self', 'permanent'],
    step: `set the FDB entry ${mac} -> ${peer.underlayAddress} (${peer.name}) on ${OVERLAY_DEVICE}`,
  });
  return { ip, bridge };
}

function peerSubnetLines(peer: NodeRecord, subnet: IpSubnet, mac: string): IpLine[] {
  const via = subnet.network;
  return [
    {
      id: OVERLAY_LINE.peerNeighbour,
      args: ['neigh', 'replace', via, 'lladdr', mac, 'dev', OVERLAY_DEVICE, 'nud', 'permanent'],
      step: `set the neighbour entry ${via} -> ${mac} (${peer.name}) on ${OVERLAY_DEVICE}`,
    },
    {
      id: OVERLAY_LINE.peerRoute,
      args: ['route', 'replace', subnet.toString(), 'via', via, 'dev', OVERLAY_DEVICE, 'onlink', ...ROUTE_PROTO_ARGS],
      step: `route ${subnet} via ${via} on ${OVERLAY_DEVICE} (${peer.name})`,
    },
  ];
}

/** vxlan: deletes what vxlanPeerScripts programs (run with -force: absent entries are fine). */
export function removeVxlanPeerScripts(peer: NodeRecord): OverlayScripts {
  return {
    ip: subnetsOfNode(peer).flatMap((s) => [deleteRouteLine(s), deleteNeighbourLine(s.network, peer.name)]),
    bridge: [deleteFdbLine(vtepMacOf(peer.underlayAddress), `${peer.name} at ${peer.underlayAddress}`)],
  };
}

// -------------------------------------------------------------------------------------------------------
// What is programmed (for reconciliation)

export interface NeighbourEntry {
  readonly dst: string;
  readonly lladdr?: string;
  readonly state: readonly string[];
}

/** `ip -j neigh show dev X` */
export function parseNeighbours(json: unknown): NeighbourEntry[] {
  return asArray(json, 'neighbours').flatMap((item) => {
    const o = item as Record<string, unknown>;
    if (typeof o['dst'] !== 'string') return [];
    return [
      {
        dst: o['dst'],
        ...(typeof o['lladdr'] === 'string' ? { lladdr: o['lladdr'] } : {}),
        state: Array.isArray(o['state']) ? o['state'].filter((s): s is string => typeof s === 'string') : [],
      },
    ];
  });
}

export interface FdbEntry {
  readonly mac: string;
  readonly dst?: string;
  readonly state?: string;
}

/** `bridge -j fdb show dev X` */
export function parseFdbEntries(json: unknown): FdbEntry[] {
  return asArray(json, 'FDB entries').flatMap((item) => {
    const o = item as Record<string, unknown>;
    if (typeof o['mac'] !== 'string') return [];
    return [
      {
        mac: o['mac'],
        ...(typeof o['dst'] === 'string' ? { dst: o['dst'] } : {}),
        ...(typeof o['state'] === 'string' ? { state: o['state'] } : {}),
      },
    ];
  });
}

function asArray(json: unknown, what: string): unknown[] {
  if (!Array.isArray(json))
    throw new InternalError(`read ${what}`, `unexpected output: expected a JSON array, got ${JSON.stringify(json)}`);
  return json.filter((x) => typeof x === 'object' && x !== null);
}

/**
 * What nodenet programmed that no wanted peer needs: its routes (proto 78) to other subnets, and on its VXLAN
 * device neighbour entries of other addresses and FDB entries of other MACs. Entries of wanted peers with
 * wrong values are left to ensurePeer, whose `replace` fixes them.
 */
export function stalePeerScripts(
  wanted: readonly NodeRecord[],
  routes: readonly ProgrammedPeer[],
  neighbours: readonly NeighbourEntry[],
  fdb: readonly FdbEntry[],
): OverlayScripts & { removed: string[] } {
  const staleRoutes = staleRouteLines(wanted, routes);
  const addresses = new Set(wanted.flatMap((p) => subnetsOfNode(p).map((s) => s.network as string)));
  const macs = new Set(wanted.map((p) => vtepMacOf(p.underlayAddress)));
  const ip: IpLine[] = [...staleRoutes.lines];
  const bridge: IpLine[] = [];
  const removed: string[] = [...staleRoutes.removed];
  for (const n of neighbours) {
    if (addresses.has(n.dst)) continue;
    ip.push(deleteNeighbourLine(n.dst, 'stale'));
    removed.push(`neighbour ${n.dst}${n.lladdr ? ` lladdr ${n.lladdr}` : ''}`);
  }
  for (const f of fdb) {
    if (macs.has(f.mac.toLowerCase())) continue;
    bridge.push(deleteFdbLine(f.mac, 'stale'));
    removed.push(`fdb ${f.mac}${f.dst ? ` dst ${f.dst}` : ''}`);
  }
  return { ip, bridge, removed };
}
