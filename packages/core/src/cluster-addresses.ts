/**
 * The cluster's IPv6 values: a peer's IPv6 instance subnet and underlay addresses of either family. Built on
 * ipaddr.js like net.ts; values are valid by construction (parse, never cast). Text is strict RFC 5952
 * (lowercase, the longest run of zero groups compressed, no zone), so one address has one spelling in
 * records, keys and kernel output.
 */
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError } from './errors.js';
import { parseIpv4Address, type Ipv4Address, type Subnet } from './net.js';

declare const ipv6Brand: unique symbol;
/** A canonical (RFC 5952) IPv6 address, e.g. `2001:db8:18::1`. */
export type Ipv6Address = string & { readonly [ipv6Brand]: true };

/** An underlay address: IPv4 or IPv6 (the VXLAN endpoint and host-gw next hops use its family). */
export type UnderlayAddress = Ipv4Address | Ipv6Address;
export type AddressFamily = 'ipv4' | 'ipv6';

/** The prefix lengths nodenet accepts for an IPv6 instance subnet: /64 (SLAAC-sized) down to /120. */
export const MIN_IPV6_SUBNET_PREFIX = 64;
export const MAX_IPV6_SUBNET_PREFIX = 120;

/** Parses a canonical IPv6 address (RFC 5952: lowercase, longest zero run compressed, no zone index). */
export function parseIpv6Address(input: unknown, field: string): Ipv6Address {
  if (typeof input !== 'string' || input === '') throw new InvalidArgumentError(field, 'an IPv6 address is required, e.g. 2001:db8:18::1');
  if (input.includes('%')) throw new InvalidArgumentError(field, `'${input}' has a zone index: write the address without %ZONE`);
  if (!ipaddr.IPv6.isValid(input)) throw new InvalidArgumentError(field, `'${input}' is not an IPv6 address, e.g. 2001:db8:18::1`);
  const canonical = ipaddr.IPv6.parse(input).toRFC5952String();
  if (canonical !== input) {
    throw new InvalidArgumentError(field, `'${input}' is not in canonical form (RFC 5952): write ${canonical}`);
  }
  return input as Ipv6Address;
}

/** An underlay address of either family: IPv6 when it has a colon, else a canonical dotted quad. */
export function parseUnderlayAddress(input: unknown, field: string): UnderlayAddress {
  if (typeof input === 'string' && input.includes(':')) {
    const address = parseIpv6Address(input, field);
    if (/^fe[89ab]/.test(address) || address === '::' || address === '::1' || address.startsWith('ff')) {
      throw new InvalidArgumentError(
        field,
        `'${input}' is not a unicast address a VXLAN endpoint can use (link-local, loopback, unspecified or multicast): use a global or ULA address, e.g. 2001:db8:18::1`,
      );
    }
    return address;
  }
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an IPv4 or IPv6 address is required, e.g. 198.18.0.1 or 2001:db8:18::1');
  }
  return parseIpv4Address(input, field);
}

export function familyOf(address: UnderlayAddress | string): AddressFamily {
  return address.includes(':') ? 'ipv6' : 'ipv4';
}

/** An IPv6 subnet whose host bits are zero, e.g. `fd19:0:0:2::/64`. */
export class Ipv6Subnet {
  readonly family = 'ipv6' as const;
  private constructor(
    readonly network: Ipv6Address,
    readonly prefixLength: number,
  ) {}

  /** Any prefix length 0..128; instance subnets are checked further by parseIpv6InstanceSubnet. */
  static parse(input: unknown, field: string): Ipv6Subnet {
    if (typeof input !== 'string' || input === '') {
      throw new InvalidArgumentError(field, 'an IPv6 subnet in CIDR form is required, e.g. fd19:0:0:2::/64');
    }
    const slash = input.indexOf('/');
    if (slash < 0) throw new InvalidArgumentError(field, `'${input}' is not in CIDR form ADDRESS/PREFIX, e.g. fd19:0:0:2::/64`);
    const network = parseIpv6Address(input.slice(0, slash), field);
    const prefixPart = input.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixPart) || Number(prefixPart) > 128) {
      throw new InvalidArgumentError(field, `'${input}': the prefix length must be a number 0..128 without leading zeros`);
    }
    const prefixLength = Number(prefixPart);
    const canonical = ipaddr.IPv6.networkAddressFromCIDR(input).toRFC5952String();
    if (canonical !== network)
      throw new InvalidArgumentError(field, `'${input}' has host bits set: the subnet is ${canonical}/${prefixLength}`);
    return new Ipv6Subnet(network, prefixLength);
  }

  /** For values already validated (e.g. read back from nodenet's own records). */
  static of(cidr: string): Ipv6Subnet {
    return Ipv6Subnet.parse(cidr, 'ipv6Subnet');
  }

  contains(address: string): boolean {
    if (!address.includes(':')) return false;
    return ipaddr.IPv6.parse(address).match(ipaddr.IPv6.parse(this.network), this.prefixLength);
  }

  overlaps(other: { readonly network: string; readonly prefixLength: number }): boolean {
    return other instanceof Ipv6Subnet && (this.contains(other.network) || other.contains(this.network));
  }

  equals(other: unknown): boolean {
    return other instanceof Ipv6Subnet && this.network === other.network && this.prefixLength === other.prefixLength;
  }

  toString(): string {
    return `${this.network}/${this.prefixLength}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** The IPv6 subnet of `prefixLength` holding `address` (e.g. an interface's on-link network). */
export function ipv6SubnetOf(address: string, prefixLength: number): Ipv6Subnet {
  const network = ipaddr.IPv6.networkAddressFromCIDR(`${address}/${prefixLength}`).toRFC5952String();
  return Ipv6Subnet.of(`${network}/${prefixLength}`);
}

/** A peer's (or this node's) IPv6 instance subnet: canonical text, /64 to /120. */
export function parseIpv6InstanceSubnet(input: unknown, field: string): Ipv6Subnet {
  if (typeof input === 'string' && input !== '' && !input.includes(':')) {
    throw new InvalidArgumentError(field, `'${input}' is not an IPv6 subnet: write one in CIDR form, e.g. fd19:0:0:2::/64`);
  }
  const subnet = Ipv6Subnet.parse(input, field);
  if (subnet.prefixLength < MIN_IPV6_SUBNET_PREFIX || subnet.prefixLength > MAX_IPV6_SUBNET_PREFIX) {
    throw new InvalidArgumentError(
      field,
      `'${subnet}': an IPv6 instance subnet must be /${MIN_IPV6_SUBNET_PREFIX} to /${MAX_IPV6_SUBNET_PREFIX}, e.g. fd19:0:0:2::/64`,
    );
  }
  return subnet;
}

/** A subnet of either family (IPv4 Subnet from net.ts, or Ipv6Subnet). */
export type AnySubnet = Subnet | Ipv6Subnet;

/** Whether two subnets of any families overlap (never across families). */
export function subnetsOverlap(a: AnySubnet, b: AnySubnet): boolean {
  const a6 = a instanceof Ipv6Subnet;
  const b6 = b instanceof Ipv6Subnet;
  if (a6 !== b6) return false;
  return a6 ? a.overlaps(b) : a.overlaps(b as Subnet);
}

/**
 * The MAC of a node's VXLAN endpoint from an IPv6 underlay address: 02:6f and the address's last 32 bits (as
 * vtepMacForUnderlay does for IPv4), so nodes of one IPv6 underlay must differ in them (checked by membership).
 */
export function vtepMacForIpv6Underlay(underlayAddress: Ipv6Address): string {
  const bytes = ipaddr.IPv6.parse(underlayAddress).toByteArray().slice(12);
  return ['02', '6f', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
