/** Specs shared by the unit tests, built the way core builds them. */
import {
  CNI_NAME,
  Subnet,
  macForAddress,
  parseIfName,
  parseIpv4Address,
  parseNetnsRef,
  type CniSpec,
  type InstanceSpec,
} from '@nodenet/core';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';

export const gateway = parseIpv4Address('198.19.1.1', 'gateway');
export const cniSpec: CniSpec = {
  name: CNI_NAME,
  ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') },
  mtu: 1450,
  mac: macForAddress(gateway),
};

/** The veth instance nni-0000abcd at 198.19.1.7, with `overrides`. */
export function instanceSpec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return { ...instanceSpecFor(cniSpec, 0xabcd, 7), ...overrides };
}

export const netns = (s: string) => parseNetnsRef(s, 'netns');
export const ifname = (s: string) => parseIfName(s, 'ifname');
