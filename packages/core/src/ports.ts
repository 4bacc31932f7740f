/** Published ports: parsing, normalisation and the keys that make a port unique on a node. */
import { InvalidArgumentError } from './errors.js';

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

/** One published port: traffic to a node address on `hostPort`/`protocol` goes to the instance's `instancePort`. */
export interface PortMapping {
  readonly protocol: Protocol;
  readonly hostPort: Port;
  readonly instancePort: Port;
}

/** The extension's wire form: protocol `both` (the default) publishes TCP and UDP. */
export interface PortMappingInput {
  hostPort?: unknown;
  instancePort?: unknown;
  protocol?: 'tcp' | 'udp' | 'both';
}

/** The key that makes a published port unique on a node. */
export function portKey(protocol: Protocol, hostPort: Port): string {
  return `${protocol}/${hostPort}`;
}

/**
 * Turns the seed's `ports` (same port, TCP and UDP) and the extension's mappings into one sorted list.
 * A host port may appear once per protocol; anything else is INVALID_ARGUMENT naming the field.
 */
export function normalizePorts(seedPorts: readonly unknown[], mappings: readonly PortMappingInput[]): PortMapping[] {
  const out = new Map<string, PortMapping>();
  const add = (m: PortMapping, field: string) => {
    const key = portKey(m.protocol, m.hostPort);
    if (out.has(key)) {
      throw new InvalidArgumentError(field, `port ${m.hostPort}/${m.protocol} appears more than once: list each port once`);
    }
    out.set(key, m);
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
    const protocols: Protocol[] = m.protocol === 'tcp' ? ['tcp'] : m.protocol === 'udp' ? ['udp'] : ['tcp', 'udp'];
    for (const protocol of protocols) add({ protocol, hostPort, instancePort }, field);
  });
  return [...out.values()].sort(comparePortMappings);
}

export function comparePortMappings(a: PortMapping, b: PortMapping): number {
  return a.hostPort - b.hostPort || a.protocol.localeCompare(b.protocol) || a.instancePort - b.instancePort;
}

export function samePortMappings(a: readonly PortMapping[], b: readonly PortMapping[]): boolean {
  return (
    a.length === b.length &&
    a.every((m, i) => {
      const o = b[i]!;
      return m.protocol === o.protocol && m.hostPort === o.hostPort && m.instancePort === o.instancePort;
    })
  );
}
