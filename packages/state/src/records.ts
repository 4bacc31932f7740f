/**
 * Parsing of records read back from disk, with core's parse functions, so that a record that loads is as
 * valid as one the API accepted. Throws a plain Error describing the first problem.
 */
import {
  addressFamily,
  cniRecordFields,
  macForAddress,
  parseCniNets,
  parseIfName,
  parseHostAddress,
  parseIpAddress,
  parseIpv6Address,
  parseNetnsRef,
  parsePort,
  type CniRecord,
  type InstanceRecord,
  type PortMapping,
} from '@nodenet/core';

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not an object`);
  return v as Obj;
}

function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new Error(`${key} is missing or not a string`);
  return v;
}

function int(o: Obj, key: string, min: number, max: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`${key} is not an integer ${min}..${max}`);
  return v;
}

export function parseCniRecord(value: unknown): CniRecord {
  const o = obj(value, 'record');
  // The same checks as the API's (a record holds what CreateContainerNetworkInterface accepted); the ipv6
  // fields are absent from records of IPv4-only nodes, which read as before.
  const fields = cniRecordFields(
    parseCniNets({ ipAddress: o.gateway, subNetwork: o.subnet, ipv6Address: o.ipv6Gateway, ipv6SubNetwork: o.ipv6Subnet }),
  );
  return {
    name: parseIfName(o.name, 'name'),
    ...fields,
    mtu: int(o, 'mtu', 68, 65535),
    mac: typeof o.mac === 'string' ? o.mac : macForAddress(fields.gateway),
    createdAt: str(o, 'createdAt'),
  };
}

export function parseInstanceRecord(value: unknown): InstanceRecord {
  const o = obj(value, 'record');
  const kind = str(o, 'kind');
  if (kind !== 'veth' && kind !== 'tap') throw new Error(`kind '${kind}' is not veth or tap`);
  if (!Array.isArray(o.ports)) throw new Error('ports is not a list');
  const ports: PortMapping[] = o.ports.map((p, i) => {
    const m = obj(p, `ports[${i}]`);
    const protocol = m.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') throw new Error(`ports[${i}].protocol is not tcp or udp`);
    // Absent in records of versions without host addresses: the port is on every address, as it was then.
    const hostAddress = parseHostAddress(m.hostAddress, `ports[${i}].hostAddress`);
    return {
      protocol,
      hostPort: parsePort(m.hostPort, `ports[${i}].hostPort`),
      instancePort: parsePort(m.instancePort, `ports[${i}].instancePort`),
      ...(hostAddress ? { hostAddress } : {}),
    };
  });
  const address = parseIpAddress(o.address, 'address');
  if (o.ipv6Address !== undefined && addressFamily(address) !== 4) throw new Error('ipv6Address is set but address is not IPv4');
  const ipv6Address = o.ipv6Address === undefined ? undefined : parseIpv6Address(o.ipv6Address, 'ipv6Address');
  return {
    handle: parseIfName(o.handle, 'handle'),
    hostIfname: parseIfName(o.hostIfname, 'hostIfname'),
    kind: kind,
    address,
    ...(ipv6Address ? { ipv6Address } : {}),
    ports,
    ...(o.netns !== undefined ? { netns: parseNetnsRef(o.netns, 'netns'), ifname: parseIfName(o.ifname, 'ifname') } : {}),
    ...(typeof o.netnsId === 'string' ? { netnsId: o.netnsId } : {}),
    mac: typeof o.mac === 'string' ? o.mac : macForAddress(address),
    mtu: int(o, 'mtu', 68, 65535),
    createdAt: str(o, 'createdAt'),
  };
}
