/**
 * Instance specs and records for the integration tests, built the way core builds them. Each file numbers
 * its handles from a base of its own, so files running side by side never make the same link names.
 */
import { macForAddress, parseIfName, parseNetnsRef, type CniSpec, type InstanceKind, type InstanceRecord, type InstanceSpec } from '@nodenet/core';

export interface InstanceOptions {
  readonly kind?: InstanceKind;
  /** The instance's namespace (a name or a path); its interface is `ifname` there (default eth0). */
  readonly netns?: string;
  readonly ifname?: string;
}

/** A maker of specs on `cni`: `(hostOctet, options)` -> the instance at the subnet's `hostOctet`-th address. */
export function instanceSpecMaker(cni: CniSpec, idBase: number): (hostOctet: number, options?: InstanceOptions) => InstanceSpec {
  let counter = 0;
  return (hostOctet, options = {}) => {
    const id = (idBase + ++counter).toString(16).padStart(8, '0');
    const handle = parseIfName(`nni-${id}`, 'handle');
    const address = cni.subnet.nth(hostOctet);
    const kind = options.kind ?? 'veth';
    return {
      handle,
      hostIfname: kind === 'tap' ? handle : parseIfName(`nnh-${id}`, 'host'),
      kind,
      address,
      mac: macForAddress(address),
      mtu: cni.mtu,
      cni,
      ...(options.netns ? { netns: parseNetnsRef(options.netns, 'netns'), ifname: parseIfName(options.ifname ?? 'eth0', 'ifname') } : {}),
    };
  };
}

/** The record core keeps for an instance created from `spec`. */
export function recordOf(spec: InstanceSpec): InstanceRecord {
  return {
    handle: spec.handle,
    hostIfname: spec.hostIfname,
    kind: spec.kind,
    address: spec.address,
    ports: [],
    ...(spec.netns ? { netns: spec.netns, ifname: spec.ifname } : {}),
    mac: spec.mac,
    mtu: spec.mtu,
    createdAt: new Date().toISOString(),
  };
}
