/**
 * Address allocation for attachments that bring no address: round-robin through the node's subnet from the
 * address given out last, so an address just released is the last one handed out again (a stale ARP or
 * neighbour entry, or a late packet meant for the old container, does not reach a new one). Pure: the caller
 * says what is in use and keeps the cursor durable. One function per family: an IPv6 subnet is too large to
 * walk, so that one looks at no more candidates than can be taken.
 */
import { Subnet, type Ipv4Address, type Ipv6Address, type Ipv6Subnet } from '@nodenet/core';

/** The next free usable address of `subnet` after `cursor` (wrapping), skipping the gateway and anything `inUse` says; null when full. */
export function nextFreeAddress(
  subnet: Subnet,
  gateway: Ipv4Address,
  cursor: Ipv4Address | undefined,
  inUse: (address: Ipv4Address) => boolean,
): Ipv4Address | null {
  const hosts = subnet.size - 2; // neither the network nor the broadcast address
  if (hosts <= 0) return null;
  // Host numbers 1..hosts; start after the cursor's when it lies in this subnet.
  const start = cursor !== undefined && subnet.contains(cursor) ? offsetOf(subnet, cursor) : 0;
  for (let i = 1; i <= hosts; i++) {
    const n = ((start + i - 1) % hosts) + 1;
    const candidate = subnet.nth(n);
    if (candidate === gateway || inUse(candidate)) continue;
    return candidate;
  }
  return null;
}

function offsetOf(subnet: Subnet, address: Ipv4Address): number {
  const toInt = (a: string) => a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  return toInt(address) - toInt(subnet.network);
}

/**
 * The next free address of the IPv6 `subnet` after `cursor` (wrapping), skipping the gateway and the addresses in
 * `used`; null when full. Every address but the network's (the subnet-router anycast address) is a host's.
 * Only the gateway and `used` can turn a candidate down, so at most `used.size + 2` candidates are looked at.
 */
export function nextFreeIpv6Address(
  subnet: Ipv6Subnet,
  gateway: Ipv6Address,
  cursor: Ipv6Address | undefined,
  used: ReadonlySet<string>,
): Ipv6Address | null {
  const hosts = subnet.size - 1n;
  if (hosts <= 0n) return null;
  const start = cursor !== undefined && subnet.contains(cursor) ? subnet.indexOf(cursor) : 0n;
  const limit = BigInt(used.size) + 2n;
  const tries = hosts < limit ? hosts : limit;
  for (let i = 1n; i <= tries; i++) {
    const candidate = subnet.nth(((start + i - 1n) % hosts) + 1n);
    if (candidate === gateway || used.has(candidate)) continue;
    return candidate;
  }
  return null;
}
