/** Specs shared by the unit tests, built the way core builds them. */
import { CNI_NAME, Subnet, macForAddress, parseIfName, parseIpv4Address, parseNetnsRef, type CniSpec, type InstanceSpec } from '@nodenet/core';

export const gateway = parseIpv4Address('198.19.1.1', 'gateway');
export const cniSpec: CniSpec = { name: CNI_NAME, gateway, subnet: Subnet.of('198.19.1.0/24'), mtu: 1450, mac: macForAddress(gateway) };

export function instanceSpec(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  const address = parseIpv4Address('198.19.1.7', 'address');
  return {
    handle: parseIfName('nni-0000abcd', 'handle'),
    hostIfname: parseIfName('nnh-0000abcd', 'host'),
    kind: 'veth',
    address,
    mac: macForAddress(address),
    mtu: 1450,
    cni: cniSpec,
    ...overrides,
  };
}

export const netns = (s: string) => parseNetnsRef(s, 'netns');
export const ifname = (s: string) => parseIfName(s, 'ifname');
