/**
 * Underlay addresses of either family: what a VXLAN endpoint or a host-gw next hop may be, and the VTEP MAC
 * an IPv6 underlay address gives (the IPv4 one is net.ts's vtepMacForUnderlay). The address types are net6.ts's.
 */
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError } from './errors.js';
import { parseIpAddress, type IpAddress, type Ipv6Address } from './net6.js';

/** An underlay address of either family, unicast and routable (not link-local, loopback, unspecified or multicast). */
export function parseUnderlayAddress(input: unknown, field: string): IpAddress {
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an IPv4 or IPv6 address is required, e.g. 198.18.0.1 or 2001:db8:18::1');
  }
  const address = parseIpAddress(input, field);
  if (address.includes(':')) {
    const range = ipaddr.IPv6.parse(address).range();
    if (range === 'linkLocal' || range === 'loopback' || range === 'unspecified' || range === 'multicast') {
      throw new InvalidArgumentError(
        field,
        `'${input}' is not a unicast address a VXLAN endpoint can use (link-local, loopback, unspecified or multicast): use a global or ULA address, e.g. 2001:db8:18::1`,
      );
    }
  }
  return address;
}

/**
 * The MAC of a node's VXLAN endpoint from an IPv6 underlay address: 02:6f and the address's last 32 bits (as
 * vtepMacForUnderlay does for IPv4), so nodes of one IPv6 underlay must differ in them (checked by membership).
 */
export function vtepMacForIpv6Underlay(underlayAddress: Ipv6Address): string {
  const bytes = ipaddr.IPv6.parse(underlayAddress).toByteArray().slice(12);
  return ['02', '6f', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
