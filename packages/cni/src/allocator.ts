/**
 * Address allocation for attachments that bring no address: round-robin through the node's subnet from the
 * address given out last, so an address just released is the last one handed out again (a stale ARP entry
 * or a late packet meant for the old container does not reach a new one). Pure: the caller says what is in
 * use and keeps the cursor durable.
 */
import { Subnet, type Ipv4Address } from '@nodenet/core';

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
