/**
 * The node address a port is published on (the CNI portmap plugin's `hostIP`): parsing and what is accepted.
 *
 * Any IPv4 unicast address is accepted, whether or not the node holds it now, as portmap does: the DNAT
 * only matches destinations the node holds (`fib daddr type local`), so an address the node does not hold
 * publishes nothing until it is added (a floating or service address added later then works at once).
 * 127.0.0.1 (any of 127.0.0.0/8) publishes the port to the node itself only. Refused: addresses that can
 * never be a packet's local destination (0.0.0.0/8 other than 0.0.0.0, multicast, 240.0.0.0/4 and the
 * broadcast address) and IPv6 (not published yet).
 */
import { InvalidArgumentError } from './errors.js';
import { parseIpv4Address, type Ipv4Address } from './net.js';

/** `undefined`, '' and 0.0.0.0 mean every address of the node: the result is then undefined. */
export function parseHostAddress(input: unknown, field: string): Ipv4Address | undefined {
  if (input === undefined || input === null || input === '' || input === '0.0.0.0') return undefined;
  if (typeof input === 'string' && input.includes(':')) {
    throw new InvalidArgumentError(
      field,
      `'${input}' is an IPv6 address: nodenet publishes ports on IPv4 host addresses only; give an IPv4 address of the node, or leave the host address out (or 0.0.0.0) to publish on every address`,
    );
  }
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
