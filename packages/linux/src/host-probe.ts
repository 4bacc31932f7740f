/** Finding the underlay from the kernel's addresses and routes (pure: LinuxHostProbe feeds it `ip -j` output). */
import {
  FailedPreconditionError,
  addressFamily,
  ipv6SubnetOf,
  parseIpv4Address,
  parseIpv6Address,
  subnetOf,
  type IpSubnet,
  type HostInfo,
  type IpAddress,
} from '@nodenet/core';
import type { IpLinkWithAddresses, IpRoute } from './ip-json.js';

const HOW_TO_SET = 'set `underlayAddress` in the config or pass --underlay-address';

/** The default route the kernel uses first (lowest metric) that names a device, or a clear error. */
export function pickDefaultRoute(routes: readonly IpRoute[]): IpRoute & { dev: string } {
  const candidates = routes
    .filter((r): r is IpRoute & { dev: string } => r.dst === 'default' && r.dev !== undefined)
    .sort((a, b) => a.metric - b.metric);
  const best = candidates[0];
  if (!best) {
    throw new FailedPreconditionError(`no underlay address given and this node has no IPv4 default route to take it from: ${HOW_TO_SET}`);
  }
  return best;
}

/** The first primary IPv4 address of a link (what the kernel prefers as a source on it). */
export function primaryIpv4Of(link: IpLinkWithAddresses): string | undefined {
  const inet = link.addresses.filter((a) => a.family === 'inet');
  return (inet.find((a) => !a.secondary) ?? inet[0])?.local;
}

/** The network of an interface address: IPv4, or global-scope IPv6 (link-local fe80::/10 is on every link and holds no subnet). */
function networkOf(a: { family: string; local: string; prefixlen: number }, ifname: string): IpSubnet[] {
  if (a.family === 'inet') return [subnetOf(parseIpv4Address(a.local, `address of ${ifname}`), a.prefixlen)];
  if (a.family !== 'inet6' || /^fe[89ab]/i.test(a.local) || a.local === '::1') return [];
  return [ipv6SubnetOf(parseIpv6Address(a.local, `address of ${ifname}`), a.prefixlen)];
}

/** Builds HostInfo for `address` (IPv4, or IPv6 for an IPv6 underlay); the CNI's own addresses are not local networks (they are nodenet's). */
export function hostInfoFor(links: readonly IpLinkWithAddresses[], address: IpAddress, cniName: string): HostInfo {
  const family = addressFamily(address) === 6 ? 'inet6' : 'inet';
  const holder = links.find((l) => l.addresses.some((a) => a.family === family && a.local === address));
  if (!holder) {
    const known = links
      .flatMap((l) => l.addresses.filter((a) => a.family === family && l.ifname !== cniName).map((a) => `${a.local} on ${l.ifname}`))
      .join(', ');
    throw new FailedPreconditionError(
      `underlay address ${address} is not assigned to any interface on this node (its ${family === 'inet' ? 'IPv4' : 'IPv6'} addresses: ${known || 'none'}): ${HOW_TO_SET} to one of the node's addresses`,
    );
  }
  if (holder.ifname === cniName) {
    throw new FailedPreconditionError(
      `underlay address ${address} is on ${cniName}, nodenet's own bridge, not on the underlay: ${HOW_TO_SET}`,
    );
  }
  const localNetworks = links
    .filter((l) => l.ifname !== cniName)
    .flatMap((l) => l.addresses.flatMap((a) => networkOf(a, l.ifname).map((subnet) => ({ interface: l.ifname, subnet }))));
  return { underlayAddress: address, underlayInterface: holder.ifname, underlayMtu: holder.mtu, localNetworks };
}
