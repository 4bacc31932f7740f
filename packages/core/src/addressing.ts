/**
 * The address families of a node's CNI and of its instances: which families a CNI holds (IPv4, IPv6 or
 * both), how the API's fields map onto them, and the checks a request's addresses pass.
 *
 * The API's seed fields (`ip_address`, `sub_network`) carry IPv4 on an IPv4 or dual-stack node and IPv6 on
 * an IPv6-only node; the extension fields (`ipv6_address`, `ipv6_sub_network`) carry the IPv6 half of a
 * dual-stack node. Records keep the same layout (see model.ts), so records written before IPv6 read as
 * IPv4-only nodes.
 */
import { InvalidArgumentError } from './errors.js';
import { parseIpv4Address, Subnet, type Ipv4Address } from './net.js';
import { addressFamily, Ipv6Subnet, parseIpAddress, parseIpv6Address, parseIpSubnet, type IpAddress, type Ipv6Address } from './net6.js';

/** The IPv4 half of a CNI: its gateway (the bridge's address) and the node's instance subnet. */
export interface Ipv4Net {
  readonly gateway: Ipv4Address;
  readonly subnet: Subnet;
}

/** The IPv6 half of a CNI. */
export interface Ipv6Net {
  readonly gateway: Ipv6Address;
  readonly subnet: Ipv6Subnet;
}

/** The families a CNI holds: at least one of the two. */
export interface CniNets {
  readonly ipv4?: Ipv4Net;
  readonly ipv6?: Ipv6Net;
}

/**
 * An instance's addresses, one per family its CNI holds and it asked for: IPv4 (with or without IPv6), or IPv6.
 * A value without any address does not type-check; build one from optional parts with instanceAddresses.
 */
export type InstanceAddresses =
  { readonly ipv4: Ipv4Address; readonly ipv6?: Ipv6Address } | { readonly ipv4?: Ipv4Address; readonly ipv6: Ipv6Address };

/** The addresses of the families given, or undefined when neither is. */
export function instanceAddresses(ipv4: Ipv4Address | undefined, ipv6: Ipv6Address | undefined): InstanceAddresses | undefined {
  if (ipv4) return { ipv4, ...(ipv6 ? { ipv6 } : {}) };
  return ipv6 ? { ipv6 } : undefined;
}

/** The smallest and largest IPv6 instance-subnet prefix: /64 (SLAAC-sized) down to /120 (256 addresses). */
export const MIN_IPV6_PREFIX = 64;
export const MAX_IPV6_PREFIX = 120;

/** The CNI fields as a request (or a record) carries them. */
export interface CniFields {
  readonly ipAddress?: unknown;
  readonly subNetwork?: unknown;
  readonly ipv6Address?: unknown;
  readonly ipv6SubNetwork?: unknown;
}

const present = (v: unknown) => v !== undefined && v !== null && v !== '';

/** An IPv6 instance subnet (this node's or a peer's): canonical text, /64 to /120. */
export function parseIpv6InstanceSubnet(input: unknown, field: string): Ipv6Subnet {
  if (typeof input === 'string' && input !== '' && !input.includes(':')) {
    throw new InvalidArgumentError(field, `'${input}' is not an IPv6 subnet: write one in CIDR form, e.g. fd19:0:0:2::/64`);
  }
  const subnet = Ipv6Subnet.parse(input, field);
  if (subnet.prefixLength < MIN_IPV6_PREFIX || subnet.prefixLength > MAX_IPV6_PREFIX) {
    throw new InvalidArgumentError(
      field,
      `'${subnet}': an IPv6 instance subnet must be /${MIN_IPV6_PREFIX} to /${MAX_IPV6_PREFIX}, e.g. fd19:0:0:2::/64`,
    );
  }
  return subnet;
}

/** The IPv6 half of a CNI from its gateway and subnet (the API's fields, or the conflist's keys, named by the caller). */
export function parseIpv6Net(gatewayInput: unknown, subnetInput: unknown, gatewayField: string, subnetField: string): Ipv6Net {
  const subnet = parseIpv6InstanceSubnet(subnetInput, subnetField);
  const gateway = parseIpv6Address(gatewayInput, gatewayField);
  if (!subnet.isUsableHost(gateway)) {
    throw new InvalidArgumentError(
      gatewayField,
      `${gateway} is not a usable host address of ${subnet} (it must be inside it and not be ${subnet.network})`,
    );
  }
  return { gateway, subnet };
}

/** The IPv4 half of a CNI from its gateway and subnet (the API's fields unless the caller names others). */
export function parseIpv4Net(
  gatewayInput: unknown,
  subnetInput: unknown,
  gatewayField = 'ip_address',
  subnetField = 'sub_network',
): Ipv4Net {
  const gateway = parseIpv4Address(gatewayInput, gatewayField);
  const subnet = Subnet.parse(subnetInput, subnetField);
  if (subnet.prefixLength > 30) {
    throw new InvalidArgumentError(subnetField, `${subnet} leaves no address for instances: use a prefix length of 30 or less`);
  }
  if (!subnet.isUsableHost(gateway)) {
    throw new InvalidArgumentError(
      gatewayField,
      `${gateway} is not a usable host address of ${subnet} (it must be inside it and be neither ${subnet.network} nor ${subnet.broadcast})`,
    );
  }
  return { gateway, subnet };
}

/**
 * Validates CreateContainerNetworkInterface's addressing: IPv4 in the seed's fields (optionally IPv6 in the
 * extension fields: dual stack), or IPv6 in the seed's fields (IPv6-only; the extension fields then stay empty).
 */
export function parseCniNets(input: CniFields): CniNets {
  if (!present(input.ipAddress) && !present(input.subNetwork)) {
    throw new InvalidArgumentError('ip_address', 'the gateway address is required, e.g. 198.19.1.1 (IPv4) or fd19:0:0:1::1 (IPv6-only)');
  }
  // Whichever of the seed's fields is present tells the family (the other is then checked against it).
  const seedIsV6 = [input.ipAddress, input.subNetwork].some((v) => typeof v === 'string' && v.includes(':'));
  if (seedIsV6) {
    const subnetFamily = typeof input.subNetwork === 'string' && input.subNetwork.includes(':') ? 6 : 4;
    const gatewayFamily = typeof input.ipAddress === 'string' && input.ipAddress.includes(':') ? 6 : 4;
    if (present(input.subNetwork) && subnetFamily !== 6) {
      throw new InvalidArgumentError(
        'sub_network',
        `'${String(input.subNetwork)}' is IPv4 but ip_address is IPv6: give both in one family`,
      );
    }
    if (present(input.ipAddress) && gatewayFamily !== 6) {
      throw new InvalidArgumentError('ip_address', `'${String(input.ipAddress)}' is IPv4 but sub_network is IPv6: give both in one family`);
    }
    for (const [value, field] of [
      [input.ipv6Address, 'ipv6_address'],
      [input.ipv6SubNetwork, 'ipv6_sub_network'],
    ] as const) {
      if (present(value)) {
        throw new InvalidArgumentError(
          field,
          'ip_address and sub_network already carry IPv6 (an IPv6-only node): leave the ipv6_* fields empty, or give IPv4 in the seed fields for dual stack',
        );
      }
    }
    return { ipv6: parseIpv6Net(input.ipAddress, input.subNetwork, 'ip_address', 'sub_network') };
  }
  const ipv4 = parseIpv4Net(input.ipAddress, input.subNetwork);
  if (!present(input.ipv6Address) && !present(input.ipv6SubNetwork)) return { ipv4 };
  if (!present(input.ipv6SubNetwork)) {
    throw new InvalidArgumentError('ipv6_sub_network', 'ipv6_address needs ipv6_sub_network (the node IPv6 subnet), e.g. fd19:0:0:1::/64');
  }
  if (!present(input.ipv6Address)) {
    throw new InvalidArgumentError('ipv6_address', 'ipv6_sub_network needs ipv6_address (the IPv6 gateway), e.g. fd19:0:0:1::1');
  }
  return { ipv4, ipv6: parseIpv6Net(input.ipv6Address, input.ipv6SubNetwork, 'ipv6_address', 'ipv6_sub_network') };
}

/** What the CNI holds, in words, for messages: `IPv4 198.19.1.0/24 and IPv6 fd19:0:0:1::/64`. */
export function describeCniNets(nets: CniNets): string {
  const parts = [...(nets.ipv4 ? [`IPv4 ${nets.ipv4.subnet}`] : []), ...(nets.ipv6 ? [`IPv6 ${nets.ipv6.subnet}`] : [])];
  return parts.join(' and ');
}

/** The families a CNI holds, as the words the messages use. */
function stackName(nets: CniNets): string {
  return nets.ipv4 && nets.ipv6 ? 'dual-stack' : nets.ipv6 ? 'IPv6-only' : 'IPv4-only';
}

function checkInstanceV4(address: Ipv4Address, net: Ipv4Net, field: string): void {
  const { subnet } = net;
  if (!subnet.isUsableHost(address)) {
    throw new InvalidArgumentError(
      field,
      `${address} is not a usable host address of the node's subnet ${subnet}: use an address between ${subnet.nth(1)} and ${subnet.nth(subnet.size - 2)}`,
    );
  }
  if (address === net.gateway) {
    throw new InvalidArgumentError(field, `${address} is the node's gateway (the CNI's address): use another address of ${subnet}`);
  }
}

function checkInstanceV6(address: Ipv6Address, net: Ipv6Net, field: string): void {
  const { subnet } = net;
  if (!subnet.isUsableHost(address)) {
    throw new InvalidArgumentError(
      field,
      `${address} is not a usable host address of the node's IPv6 subnet ${subnet}: use an address inside it other than ${subnet.network}, e.g. ${subnet.nth(2)}`,
    );
  }
  if (address === net.gateway) {
    throw new InvalidArgumentError(field, `${address} is the node's IPv6 gateway (the CNI's address): use another address of ${subnet}`);
  }
}

/**
 * Validates CreateInterface's addresses against the CNI: `ip_address` in the seed's family (IPv4, or IPv6 on an
 * IPv6-only node), `ipv6_address` only on a dual-stack node (without it a dual-stack instance gets IPv4 only).
 * An address of a family the CNI does not hold is INVALID_ARGUMENT, like one outside the subnet.
 */
export function parseInstanceAddresses(input: { ipAddress?: unknown; ipv6Address?: unknown }, nets: CniNets): InstanceAddresses {
  const address = parseIpAddress(input.ipAddress, 'ip_address');
  const family = addressFamily(address);
  if (nets.ipv4) {
    if (family !== 4) {
      throw new InvalidArgumentError(
        'ip_address',
        nets.ipv6
          ? `${address} is IPv6 but this node is dual-stack (${describeCniNets(nets)}): ip_address carries the IPv4 address; give the IPv6 one in ipv6_address`
          : `${address} is IPv6 but this node's CNI holds only IPv4 (${nets.ipv4.subnet}): use an IPv4 address of it`,
      );
    }
    checkInstanceV4(address as Ipv4Address, nets.ipv4, 'ip_address');
    if (!present(input.ipv6Address)) return { ipv4: address as Ipv4Address };
    if (!nets.ipv6) {
      throw new InvalidArgumentError(
        'ipv6_address',
        `this node's CNI holds only IPv4 (${nets.ipv4.subnet}): leave ipv6_address empty, or create the CNI with ipv6_sub_network`,
      );
    }
    const ipv6 = parseIpv6Address(input.ipv6Address, 'ipv6_address');
    checkInstanceV6(ipv6, nets.ipv6, 'ipv6_address');
    return { ipv4: address as Ipv4Address, ipv6 };
  }
  const v6net = nets.ipv6!;
  if (family !== 6) {
    throw new InvalidArgumentError(
      'ip_address',
      `${address} is IPv4 but this node is IPv6-only (${v6net.subnet}): ip_address carries the instance's IPv6 address`,
    );
  }
  if (present(input.ipv6Address)) {
    throw new InvalidArgumentError(
      'ipv6_address',
      `this node is ${stackName(nets)}: ip_address already carries the IPv6 address; leave ipv6_address empty`,
    );
  }
  checkInstanceV6(address as Ipv6Address, v6net, 'ip_address');
  return { ipv6: address as Ipv6Address };
}

/** The addresses of an instance, every family first IPv4 then IPv6. */
export function addressList(addresses: InstanceAddresses): IpAddress[] {
  return [...(addresses.ipv4 ? [addresses.ipv4] : []), ...(addresses.ipv6 ? [addresses.ipv6] : [])];
}

/** The CNI's subnets, IPv4 first. */
export function cniSubnets(nets: CniNets): (Subnet | Ipv6Subnet)[] {
  return [...(nets.ipv4 ? [nets.ipv4.subnet] : []), ...(nets.ipv6 ? [nets.ipv6.subnet] : [])];
}

/** The CNI's addressing as its record (the seed's fields first; see model.ts) stores it. */
export function cniNetsOfRecord(record: {
  readonly gateway: string;
  readonly subnet: string;
  readonly ipv6Gateway?: string;
  readonly ipv6Subnet?: string;
}): CniNets {
  const seed = parseIpSubnet(record.subnet, 'subnet');
  if (seed instanceof Ipv6Subnet) return { ipv6: { gateway: record.gateway as Ipv6Address, subnet: seed } };
  const ipv4 = { gateway: record.gateway as Ipv4Address, subnet: seed };
  if (record.ipv6Gateway && record.ipv6Subnet) {
    return { ipv4, ipv6: { gateway: record.ipv6Gateway as Ipv6Address, subnet: Ipv6Subnet.of(record.ipv6Subnet) } };
  }
  return { ipv4 };
}

/** The record fields of a CNI's addressing: the seed's fields carry IPv4 when it has it, else IPv6. */
export function cniRecordFields(nets: CniNets): {
  gateway: IpAddress;
  subnet: string;
  ipv6Gateway?: Ipv6Address;
  ipv6Subnet?: string;
} {
  if (!nets.ipv4) return { gateway: nets.ipv6!.gateway, subnet: nets.ipv6!.subnet.toString() };
  return {
    gateway: nets.ipv4.gateway,
    subnet: nets.ipv4.subnet.toString(),
    ...(nets.ipv6 ? { ipv6Gateway: nets.ipv6.gateway, ipv6Subnet: nets.ipv6.subnet.toString() } : {}),
  };
}

/** An instance's addresses as its record (seed field `address` first; see model.ts) stores them. */
export function instanceAddressesOfRecord(record: { readonly address: string; readonly ipv6Address?: string }): InstanceAddresses {
  if (addressFamily(record.address) === 6) return { ipv6: record.address as Ipv6Address };
  return { ipv4: record.address as Ipv4Address, ...(record.ipv6Address ? { ipv6: record.ipv6Address as Ipv6Address } : {}) };
}

/** The record fields of an instance's addresses: `address` carries IPv4 when it has it, else IPv6. */
export function instanceRecordFields(addresses: InstanceAddresses): { address: IpAddress; ipv6Address?: Ipv6Address } {
  if (!addresses.ipv4) return { address: addresses.ipv6! };
  return { address: addresses.ipv4, ...(addresses.ipv6 ? { ipv6Address: addresses.ipv6 } : {}) };
}
