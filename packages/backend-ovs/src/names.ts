/**
 * The names, OVSDB tags and OpenFlow port numbers the ovs backend uses. Everything nodenet creates in
 * Open vSwitch carries `external_ids:nodenet-owner` (the same owner tag the kernel alias holds), so ownership,
 * adoption after a restart and orphan cleanup read OVSDB instead of guessing from names.
 */
import {
  HANDLE_PREFIX,
  HOST_PREFIX,
  OWNER_ALIAS_PREFIX,
  addressFamily,
  type CniNets,
  type IfName,
  type IpAddress,
  type Ipv4Address,
  type Ipv6Address,
  type Subnet,
} from '@nodenet/core';

export type DatapathType = 'system' | 'netdev';
export const DATAPATH_TYPES: readonly DatapathType[] = ['system', 'netdev'];

/** The flow-based VXLAN port on the CNI bridge (remote_ip=flow: each peer's flows set the tunnel destination). */
export const TUNNEL_PORT = 'nodenet-tun' as IfName;
/**
 * netdev only: the bridge that takes over the underlay interface and its address, because the userspace
 * datapath sends and receives tunnel packets only through an OVS bridge that holds the local tunnel address.
 */
export const UPLINK_BRIDGE = 'nodenet-phy' as IfName;

/** external_ids keys. */
export const EXT = {
  /** The owner tag: `nodenet:cni`, `nodenet:<handle>`, `nodenet:overlay`, `nodenet:uplink`. */
  owner: 'nodenet-owner',
  handle: 'nodenet-handle',
  /** The instance's address as its record's `address`: IPv4, or IPv6 for an IPv6-only instance. */
  address: 'nodenet-address',
  /** A dual-stack instance's IPv6 address (its record's `ipv6Address`). */
  ipv6Address: 'nodenet-ipv6-address',
  mac: 'nodenet-mac',
  kind: 'nodenet-kind',
  /** On the host interface nodenet moved into the uplink bridge (it did not create it: no owner tag). */
  uplinkOf: 'nodenet-uplink-of',
} as const;

export const CNI_OWNER_TAG = `${OWNER_ALIAS_PREFIX}cni`;
export const OVERLAY_OWNER_TAG = `${OWNER_ALIAS_PREFIX}overlay`;
export const UPLINK_OWNER_TAG = `${OWNER_ALIAS_PREFIX}uplink`;

export function instanceOwnerTag(handle: IfName | string): string {
  return `${OWNER_ALIAS_PREFIX}${handle}`;
}

/** Links of this backend that are nodenet's but no instance's (never orphans). */
export const OVS_INFRASTRUCTURE_LINKS: readonly string[] = [TUNNEL_PORT, UPLINK_BRIDGE];

// ---------------------------------------------------------------------------------------------------
// OpenFlow port numbers

/** The highest port number OpenFlow gives a physical port (0xfeff; above are reserved ports such as LOCAL). */
export const MAX_OFPORT = 0xfeff;
/** The tunnel port's requested number: above every instance number (they stay below it, see ofportForAddress). */
export const TUNNEL_OFPORT = 65000;

/**
 * An instance's port number, requested through `ofport_request`: its address's offset in the node subnet.
 * Core never gives one address to two live instances, so the number is free whenever the instance is
 * created, and its flows can be written at once, beside the port, without reading the number back from OVS.
 * Offsets at or above TUNNEL_OFPORT (only possible in a subnet larger than /17) get no requested number:
 * OVS picks one and the caller reads it back.
 */
export function ofportForAddress(subnet: Subnet, address: Ipv4Address): number | undefined {
  const offset = addressToInt(address) - addressToInt(subnet.network);
  if (offset < 1 || offset >= TUNNEL_OFPORT) return undefined;
  return offset;
}

/**
 * An instance's requested port number from its record's `address` (ofportForAddress): IPv4 in the CNI's IPv4
 * subnet; for an IPv6-only instance, its IPv6 address's offset in the IPv6 subnet, on the same terms.
 */
export function ofportForInstance(nets: CniNets, address: IpAddress): number | undefined {
  if (addressFamily(address) === 4) return nets.ipv4 ? ofportForAddress(nets.ipv4.subnet, address as Ipv4Address) : undefined;
  if (!nets.ipv6) return undefined;
  const offset = nets.ipv6.subnet.indexOf(address as Ipv6Address);
  if (offset < 1n || offset >= BigInt(TUNNEL_OFPORT)) return undefined;
  return Number(offset);
}

export function addressToInt(address: string): number {
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** The unix socket ovs-vswitchd serves OpenFlow on for one bridge. */
export function mgmtSocket(runDir: string, bridge: string): string {
  return `unix:${runDir.replace(/\/+$/, '')}/${bridge}.mgmt`;
}

/** Names of the switch ports nodenet creates (host-side veth ends, TAPs): the kernel never routes what arrives on them (netdev). */
export const GUARDED_PREFIXES_FOR_PORTS: readonly string[] = [HOST_PREFIX, HANDLE_PREFIX];
