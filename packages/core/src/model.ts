/** What the daemon records about what it created. Records are plain JSON (the state store persists them as is). */
import type { IpAddress, Ipv6Address } from './net6.js';
import type { IfName, NetnsRef } from './names.js';
import type { PortMapping } from './ports.js';

export type InstanceKind = 'veth' | 'tap';

export interface CniRecord {
  readonly name: IfName;
  /** The seed's fields: IPv4 on an IPv4 or dual-stack node, IPv6 on an IPv6-only node (see addressing.ts). */
  readonly gateway: IpAddress;
  /** CIDR, e.g. 198.19.1.0/24 (or fd19:0:0:1::/64 on an IPv6-only node). */
  readonly subnet: string;
  /** The IPv6 half of a dual-stack node (absent otherwise). */
  readonly ipv6Gateway?: Ipv6Address;
  readonly ipv6Subnet?: string;
  readonly mtu: number;
  readonly mac: string;
  readonly createdAt: string;
}

export interface InstanceRecord {
  /** The handle returned to the client: the name the instance-side device was created with. */
  readonly handle: IfName;
  /** The bridge port: the host-side veth end, or the TAP itself. */
  readonly hostIfname: IfName;
  readonly kind: InstanceKind;
  /** The seed's `ip_address`: IPv4, or IPv6 on an IPv6-only node (see addressing.ts). */
  readonly address: IpAddress;
  /** The IPv6 address of a dual-stack instance (absent otherwise). */
  readonly ipv6Address?: Ipv6Address;
  readonly ports: readonly PortMapping[];
  /** Set when the daemon placed the interface in a namespace (the netns extension). */
  readonly netns?: NetnsRef;
  /** The name inside `netns`. */
  readonly ifname?: IfName;
  /** Identity of `netns` when the interface was placed (see NamespaceIdentity.namespaceAlive). */
  readonly netnsId?: string;
  /** The instance-side MAC (for a TAP: the MAC nodenet suggests for the guest NIC). */
  readonly mac: string;
  readonly mtu: number;
  readonly createdAt: string;
}

/** Everything the state store holds for a node. */
export interface NodeState {
  cni: CniRecord | null;
  instances: InstanceRecord[];
  /** Handles issued and since deleted: a repeated DeleteInterface for them is OK, not NOT_FOUND. */
  released: IfName[];
}
