/**
 * Address and subnet math: the one place nodenet parses and compares IPv4 addresses and subnets.
 * Built on ipaddr.js; values of these types are valid by construction (parse, never cast).
 */
import ipaddr from 'ipaddr.js';
import { InvalidArgumentError } from './errors.js';

declare const ipv4Brand: unique symbol;
/** A canonical dotted-quad IPv4 address, e.g. `198.19.1.2`. */
export type Ipv4Address = string & { readonly [ipv4Brand]: true };

/** Parses a canonical dotted quad (no leading zeros, no integer/hex/short forms). */
/** A canonical dotted quad (0..255 each, no leading zeros): what parseIpv4Address accepts, matched in one step. */
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIpv4Address(input: unknown, field: string): Ipv4Address {
  // The common case without ipaddr.js's parse and print (restore checks ~10,000 listed addresses at 2,000 instances).
  if (typeof input === 'string' && CANONICAL_IPV4.test(input)) return input as Ipv4Address;
  if (typeof input !== 'string' || input === '') {
    throw new InvalidArgumentError(field, 'an IPv4 address is required, e.g. 198.19.1.2');
  }
  if (input.includes(':') && ipaddr.IPv6.isValid(input)) {
    throw new InvalidArgumentError(field, `'${input}' is IPv6: this field takes an IPv4 address`);
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(input) || ipaddr.IPv4.parse(input).toString() !== input) {
    throw new InvalidArgumentError(
      field,
      `'${input}' is not a canonical IPv4 address: write four decimal numbers 0..255 without leading zeros, e.g. 198.19.1.2`,
    );
  }
  return input as Ipv4Address;
}

function toInt(a: Ipv4Address | string): number {
  const b = ipaddr.IPv4.parse(a).toByteArray();
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

function fromInt(n: number): Ipv4Address {
  return new ipaddr.IPv4([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]).toString() as Ipv4Address;
}

/** An IPv4 subnet whose host bits are zero, e.g. `198.19.1.0/24`. */
export class Subnet {
  private constructor(
    readonly network: Ipv4Address,
    readonly prefixLength: number,
  ) {}

  static parse(input: unknown, field: string): Subnet {
    if (typeof input !== 'string' || input === '') {
      throw new InvalidArgumentError(field, 'a subnet in CIDR form is required, e.g. 198.19.1.0/24');
    }
    const slash = input.indexOf('/');
    if (slash < 0) throw new InvalidArgumentError(field, `'${input}' is not in CIDR form ADDRESS/PREFIX, e.g. 198.19.1.0/24`);
    const addrPart = input.slice(0, slash);
    const prefixPart = input.slice(slash + 1);
    if (addrPart.includes(':')) {
      throw new InvalidArgumentError(field, `'${input}' is IPv6: this field takes an IPv4 subnet`);
    }
    const network = parseIpv4Address(addrPart, field);
    if (!/^(0|[1-9]\d?)$/.test(prefixPart) || Number(prefixPart) > 32) {
      throw new InvalidArgumentError(field, `'${input}': the prefix length must be a number 0..32 without leading zeros`);
    }
    const prefixLength = Number(prefixPart);
    const canonical = ipaddr.IPv4.networkAddressFromCIDR(input).toString();
    if (canonical !== network) {
      throw new InvalidArgumentError(field, `'${input}' has host bits set: the subnet is ${canonical}/${prefixLength}`);
    }
    return new Subnet(network, prefixLength);
  }

  /** For values already validated (e.g. read back from nodenet's own state). */
  static of(cidr: string): Subnet {
    return Subnet.parse(cidr, 'subnet');
  }

  get broadcast(): Ipv4Address {
    return ipaddr.IPv4.broadcastAddressFromCIDR(this.toString()).toString() as Ipv4Address;
  }

  /** Number of addresses, network and broadcast included. */
  get size(): number {
    return 2 ** (32 - this.prefixLength);
  }

  contains(address: Ipv4Address): boolean {
    return ipaddr.IPv4.parse(address).match(ipaddr.IPv4.parse(this.network), this.prefixLength);
  }

  /** An address a host may hold: inside, and neither the network nor the broadcast address. */
  isUsableHost(address: Ipv4Address): boolean {
    return this.contains(address) && address !== this.network && address !== this.broadcast;
  }

  overlaps(other: Subnet): boolean {
    return this.contains(other.network) || other.contains(this.network);
  }

  /** The n-th address of the subnet (0 = network address). */
  nth(n: number): Ipv4Address {
    return fromInt((toInt(this.network) + n) >>> 0);
  }

  equals(other: Subnet): boolean {
    return this.network === other.network && this.prefixLength === other.prefixLength;
  }

  toString(): string {
    return `${this.network}/${this.prefixLength}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** The smallest subnet containing `address` with the given prefix (e.g. an interface's on-link network). */
export function subnetOf(address: Ipv4Address, prefixLength: number): Subnet {
  return Subnet.of(ipaddr.IPv4.networkAddressFromCIDR(`${address}/${prefixLength}`).toString() + `/${prefixLength}`);
}

/**
 * A locally administered unicast MAC derived from an address: 02:6e:a.b.c.d (hex) from IPv4, 02:6d followed by
 * the last four bytes from IPv6 (an instance with IPv4 takes its MAC from it; an IPv6-only one from its IPv6
 * address, whose last 32 bits differ between the addresses of one /96 or longer subnet; in a /64 two
 * addresses equal in their last 32 bits share a MAC, so nodenet refuses the second).
 * An address given again to a new instance gets the same MAC, so no peer keeps a stale neighbour entry.
 */
export function macForAddress(address: string): string {
  const v6 = address.includes(':');
  const bytes = v6 ? ipaddr.IPv6.parse(address).toByteArray().slice(12) : ipaddr.IPv4.parse(address).toByteArray();
  return ['02', v6 ? '6d' : '6e', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The MAC of a node's VXLAN endpoint, derived from its underlay address (02:6f:a.b.c.d in hex), so that peers
 * need only each other's underlay address to program neighbour and FDB entries.
 */
export function vtepMacForUnderlay(underlayAddress: Ipv4Address): string {
  const bytes = ipaddr.IPv4.parse(underlayAddress).toByteArray();
  return ['02', '6f', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
