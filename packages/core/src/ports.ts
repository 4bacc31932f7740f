/** Published ports: parsing, normalisation and the keys that make a port unique on a node. */
import { InvalidArgumentError } from './errors.js';
import { parseHostAddress } from './host-address.js';
import type { IpAddress } from './net6.js';

export type Protocol = 'tcp' | 'udp';
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

declare const portBrand: unique symbol;
/** A TCP/UDP port number 1..65535. */
export type Port = number & { readonly [portBrand]: true };

export function parsePort(input: unknown, field: string): Port {
  if (typeof input !== 'number' || !Number.isInteger(input) || input < 1 || input > 65535) {
    throw new InvalidArgumentError(field, `${String(input)} is not a port: use an integer 1..65535`);
  }
  return input as Port;
}

/**
 * One published port: traffic to a node address on `hostPort`/`protocol` goes to the instance's `instancePort`.
 * With `hostAddress`, only traffic to that one address of the node (CNI portmap's `hostIP`); without it, to
 * every address (records written before host addresses existed have none, and mean that).
 */
export interface PortMapping {
  readonly protocol: Protocol;
  readonly hostPort: Port;
  readonly instancePort: Port;
  readonly hostAddress?: IpAddress;
}

/** The extension's wire form: protocol `both` (the default) publishes TCP and UDP. */
export interface PortMappingInput {
  hostPort?: unknown;
  instancePort?: unknown;
  protocol?: 'tcp' | 'udp' | 'both';
  /** The one node address to publish on; absent, '' or 0.0.0.0: every address. */
  hostAddress?: unknown;
}

/** The key that makes a published port unique on a node. */
export function portKey(protocol: Protocol, hostPort: Port): string {
  return `${protocol}/${hostPort}`;
}

/**
 * `8080/tcp`, or `198.18.0.5:8080/tcp` / `[2001:db8:18::5]:8080/tcp` for a port published on one address
 * (messages, repair lines).
 */
export function describePort(m: { protocol: Protocol; hostPort: number; hostAddress?: string }): string {
  const at = m.hostAddress === undefined ? '' : m.hostAddress.includes(':') ? `[${m.hostAddress}]:` : `${m.hostAddress}:`;
  return `${at}${m.hostPort}/${m.protocol}`;
}

/**
 * Turns the seed's `ports` (same port, TCP and UDP) and the extension's mappings into one sorted list.
 * A host port may appear once per protocol and host address, and not both on every address and on one
 * (see PortClaims); anything else is INVALID_ARGUMENT naming the field. `checkHostAddress` sees each
 * mapping's parsed host address with its field (e.g. to refuse one of a family the instance lacks).
 */
export function normalizePorts(
  seedPorts: readonly unknown[],
  mappings: readonly PortMappingInput[],
  checkHostAddress?: (hostAddress: IpAddress, field: string) => void,
): PortMapping[] {
  const out: PortMapping[] = [];
  const claims = new PortClaims<string>();
  const add = (m: PortMapping, field: string) => {
    const clash = claims.conflict(m);
    if (clash) {
      throw new InvalidArgumentError(
        field,
        clash.mapping.hostAddress === m.hostAddress
          ? `port ${describePort(m)} appears more than once: list each port once`
          : `port ${describePort(m)} clashes with ${describePort(clash.mapping)} of ${clash.holder}: a port is published either on every address or on chosen addresses, not both`,
      );
    }
    claims.claim(m, field);
    out.push(m);
  };
  seedPorts.forEach((p, i) => {
    const port = parsePort(p, `ports[${i}]`);
    for (const protocol of PROTOCOLS) add({ protocol, hostPort: port, instancePort: port }, `ports[${i}]`);
  });
  mappings.forEach((m, i) => {
    const field = `port_mappings[${i}]`;
    const hostPort = parsePort(m.hostPort, `${field}.host_port`);
    const instancePort =
      m.instancePort === undefined || m.instancePort === 0 ? hostPort : parsePort(m.instancePort, `${field}.instance_port`);
    const hostAddress = parseHostAddress(m.hostAddress, `${field}.host_address`);
    if (hostAddress !== undefined) checkHostAddress?.(hostAddress, `${field}.host_address`);
    const protocols: Protocol[] = m.protocol === 'tcp' ? ['tcp'] : m.protocol === 'udp' ? ['udp'] : ['tcp', 'udp'];
    for (const protocol of protocols) add({ protocol, hostPort, instancePort, ...(hostAddress ? { hostAddress } : {}) }, field);
  });
  return out.sort(comparePortMappings);
}

export function comparePortMappings(a: PortMapping, b: PortMapping): number {
  return (
    a.hostPort - b.hostPort ||
    a.protocol.localeCompare(b.protocol) ||
    (a.hostAddress ?? '').localeCompare(b.hostAddress ?? '') ||
    a.instancePort - b.instancePort
  );
}

export function samePortMappings(a: readonly PortMapping[], b: readonly PortMapping[]): boolean {
  return (
    a.length === b.length &&
    a.every((m, i) => {
      const o = b[i]!;
      return m.protocol === o.protocol && m.hostPort === o.hostPort && m.instancePort === o.instancePort && m.hostAddress === o.hostAddress;
    })
  );
}

/**
 * Who holds which published ports on a node, O(1) per port. A (protocol, host port) is held either on every
 * address (once) or on chosen addresses (once each): two holders on different addresses coexist; every
 * address and one address overlap, so they conflict, as do two holders of the same address.
 */
export class PortClaims<H> {
  private readonly byPort = new Map<
    string,
    { every?: { holder: H; mapping: PortMapping }; at: Map<string, { holder: H; mapping: PortMapping }> }
  >();

  /** The claim `m` would overlap, if any. */
  conflict(m: PortMapping): { holder: H; mapping: PortMapping } | undefined {
    const entry = this.byPort.get(portKey(m.protocol, m.hostPort));
    if (!entry) return undefined;
    if (entry.every) return entry.every;
    if (m.hostAddress === undefined) return entry.at.values().next().value;
    return entry.at.get(m.hostAddress);
  }

  /** Records `holder` for `m` (the caller checked conflict first; a claim of the same place is replaced). */
  claim(m: PortMapping, holder: H): void {
    const key = portKey(m.protocol, m.hostPort);
    let entry = this.byPort.get(key);
    if (!entry) this.byPort.set(key, (entry = { at: new Map() }));
    if (m.hostAddress === undefined) entry.every = { holder, mapping: m };
    else entry.at.set(m.hostAddress, { holder, mapping: m });
  }

  /** Drops the claim of `m` if `holder` holds it. */
  release(m: PortMapping, holder: H): void {
    const key = portKey(m.protocol, m.hostPort);
    const entry = this.byPort.get(key);
    if (!entry) return;
    if (m.hostAddress === undefined) {
      if (entry.every?.holder === holder) delete entry.every;
    } else if (entry.at.get(m.hostAddress)?.holder === holder) entry.at.delete(m.hostAddress);
    if (!entry.every && entry.at.size === 0) this.byPort.delete(key);
  }

  /** The port keys (`tcp/8080`, see portKey) that some claim of a holder `chosen` picks covers. */
  keysHeldBy(chosen: (holder: H) => boolean): Set<string> {
    const out = new Set<string>();
    for (const [key, entry] of this.byPort) {
      if ((entry.every && chosen(entry.every.holder)) || [...entry.at.values()].some((c) => chosen(c.holder))) out.add(key);
    }
    return out;
  }
}
