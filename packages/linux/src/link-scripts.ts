/**
 * The `ip -batch` lines both backends run on Linux links, as pure functions of the specs (so tests can read
 * every line): the gateway link's address and its repairs, the instance end inside its namespace, deletes
 * (one link, several at once in a link group). Each line has an `id` callers use to turn a failure of that
 * line into a precise error (see explain.ts).
 */
import { OWNER_ALIAS_PREFIX, linkLocalForMac, type CniSpec, type IfName, type InstanceRecord, type InstanceSpec } from '@nodenet/core';
import type { IpLine } from './ip-batch.js';
import type { IpLink, IpLinkWithAddresses } from './ip-json.js';

/** The alias that marks an instance's node-side link (host veth end or TAP) as nodenet's. */
export function ownerAliasOf(handle: IfName): string {
  return `${OWNER_ALIAS_PREFIX}${handle}`;
}

export const DEFAULT_INSTANCE_IFNAME = 'eth0' as IfName;

/** Line ids, so callers and tests refer to lines by meaning rather than by position. */
export const LINE = {
  createBridge: 'create-bridge',
  configureBridge: 'configure-bridge',
  bridgeAddress: 'bridge-address',
  bridgeIpv6Address: 'bridge-ipv6-address',
  bridgeLinkLocal: 'bridge-link-local',
  bridgeUp: 'bridge-up',
  bridgeMac: 'bridge-mac',
  bridgeMtu: 'bridge-mtu',
  bridgeStaleAddress: 'bridge-stale-address',
  createLink: 'create-link',
  attachLink: 'attach-link',
  hairpin: 'hairpin',
  rename: 'rename',
  instanceAddress: 'instance-address',
  instanceIpv6Address: 'instance-ipv6-address',
  defaultIpv6Route: 'default-ipv6-route',
  instanceUp: 'instance-up',
  loopbackUp: 'loopback-up',
  defaultRoute: 'default-route',
  deleteLink: 'delete-link',
  groupLink: 'group-link',
  deleteGroup: 'delete-group',
  flushNeighbour: 'flush-neighbour',
} as const;

/** The gateway addresses of the CNI, one line per family it holds (IPv6 without duplicate address detection: `nodad`). */
export function cniAddressLines(spec: CniSpec): IpLine[] {
  const lines: IpLine[] = [];
  if (spec.ipv4) {
    const cidr = `${spec.ipv4.gateway}/${spec.ipv4.subnet.prefixLength}`;
    lines.push({
      id: LINE.bridgeAddress,
      args: ['address', 'add', cidr, 'broadcast', '+', 'dev', spec.name],
      step: `add ${cidr} to ${spec.name}`,
    });
  }
  if (spec.ipv6) {
    const cidr = `${spec.ipv6.gateway}/${spec.ipv6.subnet.prefixLength}`;
    lines.push({
      id: LINE.bridgeIpv6Address,
      args: ['address', 'add', cidr, 'dev', spec.name, 'nodad'],
      step: `add ${cidr} to ${spec.name}`,
    });
    // A link-local address too (the bridge generates none: addrgenmode none): the kernel sends the neighbour
    // solicitations of forwarded packets (a published port's DNATed traffic) from a link-local address only,
    // and none without one (measured: the instance's neighbour entry stays FAILED).
    const local = `${linkLocalForMac(spec.mac)}/64`;
    lines.push({
      id: LINE.bridgeLinkLocal,
      args: ['address', 'add', local, 'dev', spec.name, 'nodad'],
      step: `add ${local} to ${spec.name}`,
    });
  }
  return lines;
}

/** One thing an existing CNI bridge had wrong: what was found (a repair line for the caller) and the fix. */
export interface CniRepair {
  /** Human-readable, e.g. `address 198.19.1.1/24 was missing on nodenet0: added`. */
  readonly found: string;
  readonly line: IpLine;
}

/**
 * What brings an existing nodenet bridge to the spec (empty when it matches): MAC, MTU, exactly one IPv4
 * address (the gateway's), up. The link must already be known to be nodenet's.
 */
export function repairCniScript(spec: CniSpec, current: IpLinkWithAddresses): CniRepair[] {
  const repairs: CniRepair[] = [];
  const name = spec.name;
  if (current.address?.toLowerCase() !== spec.mac.toLowerCase()) {
    repairs.push({
      found: `MAC of ${name} was ${current.address ?? 'unset'}: set to ${spec.mac}`,
      line: { id: LINE.bridgeMac, args: ['link', 'set', 'dev', name, 'address', spec.mac], step: `set MAC ${spec.mac} on ${name}` },
    });
  }
  if (current.mtu !== spec.mtu) {
    repairs.push({
      found: `MTU of ${name} was ${current.mtu}: set to ${spec.mtu}`,
      line: { id: LINE.bridgeMtu, args: ['link', 'set', 'dev', name, 'mtu', String(spec.mtu)], step: `set MTU ${spec.mtu} on ${name}` },
    });
  }
  const wanted = cniAddressLines(spec).map((line) => {
    if (line.id === LINE.bridgeLinkLocal) return { line, family: 'inet6', local: linkLocalForMac(spec.mac), prefixlen: 64 };
    if (line.id === LINE.bridgeIpv6Address) {
      return { line, family: 'inet6', local: spec.ipv6!.gateway, prefixlen: spec.ipv6!.subnet.prefixLength };
    }
    return { line, family: 'inet', local: spec.ipv4!.gateway, prefixlen: spec.ipv4!.subnet.prefixLength };
  });
  const present = new Set<(typeof wanted)[number]>();
  for (const a of current.addresses) {
    if (a.family !== 'inet' && a.family !== 'inet6') continue;
    const match = wanted.find((w) => w.family === a.family && w.local === a.local && w.prefixlen === a.prefixlen);
    if (match) {
      present.add(match);
      continue;
    }
    // Other link-local addresses are the kernel's business, not nodenet's.
    if (a.family === 'inet6' && a.local.startsWith('fe80:')) continue;
    // Another address on nodenet's own bridge is a leftover (e.g. a gateway from an older record).
    const cidr = `${a.local}/${a.prefixlen}`;
    repairs.push({
      found: `stale address ${cidr} was on ${name}: removed`,
      line: { id: LINE.bridgeStaleAddress, args: ['address', 'del', cidr, 'dev', name], step: `remove stale address ${cidr} from ${name}` },
    });
  }
  for (const w of wanted) {
    if (!present.has(w)) repairs.push({ found: `address ${w.local}/${w.prefixlen} was missing on ${name}: added`, line: w.line });
  }
  if (!current.flags.includes('UP')) {
    repairs.push({
      found: `${name} was down: brought up`,
      line: { id: LINE.bridgeUp, args: ['link', 'set', 'dev', name, 'up'], step: `bring ${name} up` },
    });
  }
  return repairs;
}

/**
 * The lines run inside the instance's namespace: name, addresses, up, loopback up, default routes via the
 * gateways, per family the instance has. The IPv6 address goes without duplicate address detection (`nodad`:
 * nodenet hands out each address once), so it is usable at once.
 */
export function instanceNamespaceScript(spec: InstanceSpec): IpLine[] {
  const ifname = spec.ifname ?? DEFAULT_INSTANCE_IFNAME;
  const where = `in namespace ${spec.netns ?? '(node)'}`;
  const lines: IpLine[] = [];
  if (ifname !== spec.handle) {
    lines.push({
      id: LINE.rename,
      args: ['link', 'set', 'dev', spec.handle, 'name', ifname],
      step: `rename ${spec.handle} to ${ifname} ${where}`,
    });
  }
  const v4 = spec.ipv4 && spec.cni.ipv4 ? { address: spec.ipv4, net: spec.cni.ipv4 } : undefined;
  const v6 = spec.ipv6 && spec.cni.ipv6 ? { address: spec.ipv6, net: spec.cni.ipv6 } : undefined;
  if (v4) {
    const cidr = `${v4.address}/${v4.net.subnet.prefixLength}`;
    lines.push({
      id: LINE.instanceAddress,
      args: ['address', 'add', cidr, 'broadcast', '+', 'dev', ifname],
      step: `add ${cidr} to ${ifname} ${where}`,
    });
  }
  if (v6) {
    const cidr = `${v6.address}/${v6.net.subnet.prefixLength}`;
    lines.push({
      id: LINE.instanceIpv6Address,
      args: ['address', 'add', cidr, 'dev', ifname, 'nodad'],
      step: `add ${cidr} to ${ifname} ${where}`,
    });
  }
  lines.push(
    { id: LINE.instanceUp, args: ['link', 'set', 'dev', ifname, 'up'], step: `bring ${ifname} up ${where}` },
    { id: LINE.loopbackUp, args: ['link', 'set', 'dev', 'lo', 'up'], step: `bring lo up ${where}` },
  );
  if (v4) {
    lines.push({
      id: LINE.defaultRoute,
      args: ['route', 'add', 'default', 'via', v4.net.gateway, 'dev', ifname],
      step: `add default route via ${v4.net.gateway} ${where}`,
    });
  }
  if (v6) {
    lines.push({
      id: LINE.defaultIpv6Route,
      args: ['route', 'add', '::/0', 'via', v6.net.gateway, 'dev', ifname],
      step: `add default IPv6 route via ${v6.net.gateway} ${where}`,
    });
  }
  return lines;
}

/**
 * Removes an instance's node-side link (deleting one veth end deletes the other, wherever it is) and the
 * node's neighbour entry for its address, so the address can be reused at once. Run with `-force`: either
 * line may find nothing to do.
 */
export function deleteInstanceScript(record: Pick<InstanceRecord, 'hostIfname' | 'address' | 'ipv6Address'>, cniName: IfName): IpLine[] {
  const addresses = [record.address, ...(record.ipv6Address ? [record.ipv6Address] : [])];
  return [
    { id: LINE.deleteLink, args: ['link', 'del', 'dev', record.hostIfname], step: `delete ${record.hostIfname}` },
    ...addresses.map((address): IpLine => ({
      id: LINE.flushNeighbour,
      args: ['neigh', 'flush', 'to', address, 'dev', cniName],
      step: `flush neighbour entries of ${address} on ${cniName}`,
    })),
  ];
}

export function deleteLinkScript(name: IfName | string): IpLine[] {
  return [{ id: LINE.deleteLink, args: ['link', 'del', 'dev', name], step: `delete ${name}` }];
}

/** Where nodenet looks for a link group no link uses (`nn` in ASCII, then the next numbers). */
export const DELETE_GROUP_BASE = 0x6e6e0000;

/** A link group number none of `links` is in (groups shown by name are skipped: their number is unknown). */
export function pickUnusedGroup(links: readonly IpLink[]): number {
  const used = new Set(links.map((l) => l.group));
  let group = DELETE_GROUP_BASE;
  while (used.has(String(group))) group++;
  return group;
}

/**
 * Deletes several links at once. Deleting links one by one costs the kernel a synchronisation each
 * (measured: ~16 ms per link, 3.3 s for 200 TAPs); moving them into one otherwise unused link group and
 * deleting the group unregisters them together (~50 ms for 200). A single link is deleted directly. Run
 * with `-force`: a link already gone fails its own line only, and the group delete then finds the rest.
 */
export function deleteLinksScript(names: readonly string[], unusedGroup: number): IpLine[] {
  if (names.length === 1) return deleteLinkScript(names[0]!);
  const group = String(unusedGroup);
  return [
    ...names.map((name): IpLine => ({
      id: LINE.groupLink,
      args: ['link', 'set', 'dev', name, 'group', group],
      step: `mark ${name} for deletion (link group ${group})`,
    })),
    { id: LINE.deleteGroup, args: ['link', 'del', 'group', group], step: `delete ${names.length} links (link group ${group})` },
  ];
}

/**
 * A TAP for a VM, named with the handle, tagged and brought up: the switch port itself. `portArgs` say how
 * it joins the switch (`master BRIDGE` for a Linux bridge, `arp off` for an OVS port). It keeps the kernel's
 * MAC: spec.mac is the guest's NIC's.
 */
export function tapLines(spec: InstanceSpec, portArgs: readonly string[], step: string): IpLine[] {
  return [
    { id: LINE.createLink, args: ['tuntap', 'add', 'dev', spec.handle, 'mode', 'tap'], step: `create TAP ${spec.handle}` },
    {
      id: LINE.attachLink,
      args: [
        'link',
        'set',
        'dev',
        spec.handle,
        'mtu',
        String(spec.mtu),
        'alias',
        ownerAliasOf(spec.handle),
        'addrgenmode',
        'none',
        ...portArgs,
        'up',
      ],
      step,
    },
  ];
}
