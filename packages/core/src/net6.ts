/**
 * IPv6 addresses and subnets, and the address family of any address: the IPv6 half of net.ts.
 * Text is strict RFC 5952 (lower case, longest zero run compressed, no leading zeros): one address has one
 * spelling, so records, map keys and kernel listings compare as strings. Built on ipaddr.js.
 */
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError } from './errors.js';
import { parseIpv4Address, Subnet, type Ipv4Address } from './net.js';

declare const ipv6Brand: unique symbol;
/** An IPv6 address in RFC 5952 canonical text, e.g. `fd19:0:0:1::2`. No zone, not IPv4-mapped. */
export type Ipv6Address = string & { readonly [ipv6Brand]: true };

/** An address of either family. */
export type IpAddress = Ipv4Address | Ipv6Address;
export type AddressFamily = 4 | 6;

/** The family of a validated address (or of any text that parses as one; IPv6 text always holds a ':'). */
export function addressFamily(address: IpAddress | string): AddressFamily {
  return address.includes(':') ? 6 : 4;
}

/** The RFC 5952 text of an IPv6 address that ipaddr.js accepts, or null. */
function canonicalIpv6(input: string): string | null {
  if (!ipaddr.IPv6.isValid(input)) return null;
  return ipaddr.IPv6.parse(input).toRFC5952String();
}

/** Parses an IPv6 address in canonical text; a valid but non-canonical one is refused with its canonical form. */
export function parseIpv6Address(input: unknown, field: string): Ipv6Address {
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an IPv6 address is required, e.g. fd19:0:0:1::2');
  }
  if (input.includes('%')) {
    throw new InvalidArgumentError(field, `'${input}' carries a zone index: write the address without '%ZONE'`);
  }
  const canonical = canonicalIpv6(input);
  if (canonical === null) {
    throw new InvalidArgumentError(field, `'${input}' is not an IPv6 address: write it as in RFC 5952, e.g. fd19:0:0:1::2`);
  }
  const range = ipaddr.IPv6.parse(input).range();
  if (range === 'ipv4Mapped') {
    throw new InvalidArgumentError(field, `'${input}' is an IPv4-mapped IPv6 address: give the IPv4 address itself`);
  }
  if (canonical !== input) {
    throw new InvalidArgumentError(field, `'${input}' is not in canonical form (RFC 5952): write ${canonical}`);
  }
  return input as Ipv6Address;
}

/** Parses an address of either family (IPv4: canonical dotted quad; IPv6: RFC 5952). */
export function parseIpAddress(input: unknown, field: string): IpAddress {
  if (typeof input === 'string' && input.includes(':')) return parseIpv6Address(input, field);
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an IP address is required, e.g. 198.19.1.2 or fd19:0:0:1::2');
  }
  return parseIpv4Address(input, field);
}

function toBigInt(address: string): bigint {
  return ipaddr.IPv6.parse(address)
    .toByteArray()
    .reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function fromBigInt(n: bigint): Ipv6Address {
  const bytes: number[] = [];
  for (let i = 15; i >= 0; i--) bytes.push(Number((n >> BigInt(i * 8)) & 255n));
  return (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String() as Ipv6Address;
}

/** An IPv6 subnet whose host bits are zero, in canonical text, e.g. `fd19:0:0:1::/64`. */
export class Ipv6Subnet {
  readonly family = 6 as const;

  private constructor(
    readonly network: Ipv6Address,
    readonly prefixLength: number,
  ) {}

  static parse(input: unknown, field: string): Ipv6Subnet {
    if (typeof input !== 'string' || input === '') {
      throw new InvalidArgumentError(field, 'an IPv6 subnet in CIDR form is required, e.g. fd19:0:0:1::/64');
    }
    const slash = input.indexOf('/');
    if (slash < 0) throw new InvalidArgumentError(field, `'${input}' is not in CIDR form ADDRESS/PREFIX, e.g. fd19:0:0:1::/64`);
    const addrPart = input.slice(0, slash);
    const prefixPart = input.slice(slash + 1);
    const network = parseIpv6Address(addrPart, field);
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixPart) || Number(prefixPart) > 128) {
      throw new InvalidArgumentError(field, `'${input}': the prefix length must be a number 0..128 without leading zeros`);
    }
    const prefixLength = Number(prefixPart);
    const canonical = ipaddr.IPv6.networkAddressFromCIDR(input).toRFC5952String();
    if (canonical !== network) {
      throw new InvalidArgumentError(field, `'${input}' has host bits set: the subnet is ${canonical}/${prefixLength}`);
    }
    return new Ipv6Subnet(network, prefixLength);
  }

  /** For values already validated (e.g. read back from nodenet's own state). */
  static of(cidr: string): Ipv6Subnet {
    return Ipv6Subnet.parse(cidr, 'subnet');
  }

  contains(address: Ipv6Address): boolean {
    return ipaddr.IPv6.parse(address).match(ipaddr.IPv6.parse(this.network), this.prefixLength);
  }

  /** An address a host may hold: inside, and not the subnet-router anycast address (the network address). */
  isUsableHost(address: Ipv6Address): boolean {
    return this.contains(address) && address !== this.network;
  }

  overlaps(other: Ipv6Subnet): boolean {
    return this.contains(other.network) || other.contains(this.network);
  }

  /** The n-th address of the subnet (0 = network address). */
  nth(n: number | bigint): Ipv6Address {
    return fromBigInt(toBigInt(this.network) + BigInt(n));
  }

  /** How many addresses the subnet spans (2^(128 - prefix)). */
  get size(): bigint {
    return 1n << BigInt(128 - this.prefixLength);
  }

  /** The position of `address` in the subnet (0 = network address; negative or past the end when outside); the inverse of nth. */
  indexOf(address: Ipv6Address): bigint {
    return toBigInt(address) - toBigInt(this.network);
  }

  equals(other: Ipv6Subnet): boolean {
    return this.network === other.network && this.prefixLength === other.prefixLength;
  }

  toString(): string {
    return `${this.network}/${this.prefixLength}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** A subnet of either family. */
export type IpSubnet = Subnet | Ipv6Subnet;

/** The family of a subnet (IPv4 `Subnet`s carry no tag: they predate IPv6). */
export function subnetFamily(subnet: IpSubnet): AddressFamily {
  return subnet instanceof Ipv6Subnet ? 6 : 4;
}

/** Parses a subnet of either family (IPv4 CIDR or RFC 5952 IPv6 CIDR). */
export function parseIpSubnet(input: unknown, field: string): IpSubnet {
  if (typeof input === 'string' && input.includes(':')) return Ipv6Subnet.parse(input, field);
  return Subnet.parse(input, field);
}

/** Whether two subnets of any families share an address (different families never do). */
export function subnetsOverlap(a: IpSubnet, b: IpSubnet): boolean {
  if (a instanceof Ipv6Subnet) return b instanceof Ipv6Subnet && a.overlaps(b);
  return !(b instanceof Ipv6Subnet) && a.overlaps(b);
}

/** Whether `address` lies in `subnet` (false when the families differ). */
export function subnetContains(subnet: IpSubnet, address: IpAddress): boolean {
  if (subnet instanceof Ipv6Subnet) return addressFamily(address) === 6 && subnet.contains(address as Ipv6Address);
  return addressFamily(address) === 4 && subnet.contains(address as Ipv4Address);
}

/** The smallest IPv6 subnet containing `address` with the given prefix (e.g. an interface's on-link network). */
export function ipv6SubnetOf(address: Ipv6Address, prefixLength: number): Ipv6Subnet {
  return Ipv6Subnet.of(`${ipaddr.IPv6.networkAddressFromCIDR(`${address}/${prefixLength}`).toRFC5952String()}/${prefixLength}`);
}

/**
 * The EUI-64 link-local address (fe80::/64) of a MAC, as the kernel derives it for a link with
 * addr_gen_mode eui64 (the default): what an instance's interface holds besides its global address.
 */
export function linkLocalForMac(mac: string): Ipv6Address {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const iid = [b[0]! ^ 2, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  return (ipaddr.fromByteArray([0xfe, 0x80, 0, 0, 0, 0, 0, 0, ...iid]) as ipaddr.IPv6).toRFC5952String() as Ipv6Address;
}
