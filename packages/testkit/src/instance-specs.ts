/**
 * Instance specs and records for backend tests, built the way core builds them (handle `nni-<id>`,
 * host-side veth `nnh-<id>`, a TAP named with the handle, MAC from the address, the CNI's MTU). Only
 * core is imported, so unit tests can use this module (subpath `@nodenet/testkit/instance-specs`)
 * without loading the rest of the kit.
 */
import {
  cniRecordFields,
  instanceAddresses,
  macForAddress,
  parseIfName,
  parseNetnsRef,
  type CniRecord,
  type CniSpec,
  type InstanceKind,
  type InstanceRecord,
  type InstanceSpec,
} from '@nodenet/core';

export interface InstanceOptions {
  readonly kind?: InstanceKind;
  /** The instance's namespace (a name or a path); its interface is `ifname` there (default eth0). */
  readonly netns?: string;
  readonly ifname?: string;
}

/** The spec of the instance with handle number `id` (its low 32 bits: 8 hex digits) at the `hostOctet`-th address of `cni`. */
export function instanceSpecFor(cni: CniSpec, id: number, hostOctet: number, options: InstanceOptions = {}): InstanceSpec {
  const hex = (id % 0x1_0000_0000).toString(16).padStart(8, '0');
  const handle = parseIfName(`nni-${hex}`, 'handle');
  // The seed family's address (IPv4; IPv6 on an IPv6-only CNI), and the IPv6 one too on a dual-stack CNI.
  const addresses = instanceAddresses(cni.ipv4?.subnet.nth(hostOctet), cni.ipv6?.subnet.nth(hostOctet));
  if (!addresses) throw new Error(`CNI ${cni.name} holds neither IPv4 nor IPv6: no address for instance ${hex}`);
  const address = addresses.ipv4 ?? addresses.ipv6!;
  const kind = options.kind ?? 'veth';
  return {
    handle,
    hostIfname: kind === 'tap' ? handle : parseIfName(`nnh-${hex}`, 'host'),
    kind,
    address,
    ...addresses,
    mac: macForAddress(address),
    mtu: cni.mtu,
    cni,
    ...(options.netns ? { netns: parseNetnsRef(options.netns, 'netns'), ifname: parseIfName(options.ifname ?? 'eth0', 'ifname') } : {}),
  };
}

/**
 * A maker of specs on `cni`: `(hostOctet, options)` -> the next instance at the subnet's `hostOctet`-th
 * address. Handles count up from `idBase`: give each test file a base of its own, so files running side
 * by side never make the same link names.
 */
export function instanceSpecMaker(cni: CniSpec, idBase: number): (hostOctet: number, options?: InstanceOptions) => InstanceSpec {
  let counter = 0;
  return (hostOctet, options = {}) => instanceSpecFor(cni, idBase + ++counter, hostOctet, options);
}

/** The record core keeps for a CNI made from `spec`, both families. */
export function cniRecordOf(spec: CniSpec): CniRecord {
  return {
    name: spec.name,
    ...cniRecordFields(spec),
    mtu: spec.mtu,
    mac: spec.mac,
    createdAt: new Date().toISOString(),
  };
}

/** The record core keeps for an instance created from `spec` (`netnsId`: the identity of its namespace, if placed in one). */
export function instanceRecordOf(spec: InstanceSpec, netnsId?: string): InstanceRecord {
  return {
    handle: spec.handle,
    hostIfname: spec.hostIfname,
    kind: spec.kind,
    address: spec.ipv4 ?? spec.ipv6!,
    ...(spec.ipv4 && spec.ipv6 ? { ipv6Address: spec.ipv6 } : {}),
    ports: [],
    ...(spec.netns ? { netns: spec.netns, ifname: spec.ifname, ...(netnsId ? { netnsId } : {}) } : {}),
    mac: spec.mac,
    mtu: spec.mtu,
    createdAt: new Date().toISOString(),
  };
}
