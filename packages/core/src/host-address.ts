/**
 * The node address a port is published on (the CNI portmap plugin's `hostIP`): parsing and what is accepted.
 *
 * Any IPv4 or IPv6 unicast address is accepted, whether or not the node holds it now, as portmap does: the
 * DNAT only matches destinations the node holds (`fib daddr type local`), so an address the node does not
 * hold publishes nothing until it is added (a floating or service address added later then works at once).
 * IPv4 text is a canonical dotted quad, IPv6 text strict RFC 5952 (one spelling per address: it is a map key).
 * 127.0.0.1 (any of 127.0.0.0/8) publishes the port to the node itself only.
 * Refused: addresses that can never be a packet's local destination (0.0.0.0/8 other than 0.0.0.0, multicast,
 * 240.0.0.0/4 and the broadcast address; IPv6 multicast), the deprecated IPv4-compatible ::/96 and IPv4-mapped
 * IPv6 addresses (give the IPv4 address), IPv6 link-local addresses (one per link: without a
 * zone the same fe80:: address names nothing in particular), and ::1: the kernel has no route_localnet for
 * IPv6, so traffic to ::1 rewritten to an instance leaves with the loopback source and the instance's stack
 * drops it (measured: the DNAT and masquerade match, the instance counts a header error, no connection).
 * A port published on an address of one family goes to the instance's address of that family only.
 */
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError } from './errors.js';
import { parseIpv4Address } from './net.js';
import { addressFamily, parseIpv6Address, type AddressFamily, type IpAddress, type Ipv6Address } from './net6.js';

/** The texts that mean every address of the node: the result of parseHostAddress is then undefined. */
const EVERY_ADDRESS: readonly unknown[] = [undefined, null, '', '0.0.0.0', '::'];

/** `undefined`, '', 0.0.0.0 and :: mean every address of the node: the result is then undefined. */
export function parseHostAddress(input: unknown, field: string): IpAddress | undefined {
  if (EVERY_ADDRESS.includes(input)) return undefined;
  if (typeof input === 'string' && input.includes(':')) return parseHostAddress6(input, field);
  const address = parseIpv4Address(input, field);
  const first = Number(address.split('.', 1)[0]);
  if (first === 0 || first >= 224) {
    throw new InvalidArgumentError(
      field,
      `${address} is not a unicast address the node could receive on (0.0.0.0/8, multicast 224.0.0.0/4 and 240.0.0.0/4 are not): give an IPv4 address of the node, or 0.0.0.0 for every address`,
    );
  }
  return address;
}

function parseHostAddress6(input: string, field: string): Ipv6Address {
  const address = parseIpv6Address(input, field);
  const range = ipaddr.IPv6.parse(address).range();
  if (range === 'loopback') {
    throw new InvalidArgumentError(
      field,
      `::1 cannot publish a port: IPv6 has no route_localnet, so the kernel drops traffic to ::1 that is forwarded to an instance; give a global address of the node, 127.0.0.1 to publish to the node itself only, or :: for every address`,
    );
  }
  // The rest of ::/96: IPv4-compatible addresses (deprecated, RFC 4291), which nft also lists in mixed
  // notation (::198.18.0.5, measured), so a listing would never match the record.
  if (
    ipaddr.IPv6.parse(address)
      .parts.slice(0, 6)
      .every((p) => p === 0)
  ) {
    throw new InvalidArgumentError(
      field,
      `${address} is an IPv4-compatible IPv6 address (::/96, deprecated): give the IPv4 address itself, or a global or unique-local IPv6 address of the node`,
    );
  }
  if (range === 'linkLocal') {
    throw new InvalidArgumentError(
      field,
      `${address} is a link-local address (fe80::/10): it exists once per link, so it names no address of the node; give a global or unique-local IPv6 address of the node, or :: for every address`,
    );
  }
  if (range === 'multicast') {
    throw new InvalidArgumentError(
      field,
      `${address} is a multicast address (ff00::/8), not one the node could receive a connection on: give a unicast IPv6 address of the node, or :: for every address`,
    );
  }
  return address;
}

/**
 * The family a port on `hostAddress` is published in, when the instance has no address of it: a message
 * saying so (for the caller to prefix with its field and the remedy its interface offers), else undefined.
 */
export function hostAddressFamilyMissing(
  hostAddress: IpAddress,
  instance: { readonly ipv4?: unknown; readonly ipv6?: unknown },
): AddressFamily | undefined {
  const family = addressFamily(hostAddress);
  return (family === 6 ? instance.ipv6 : instance.ipv4) === undefined ? family : undefined;
}
