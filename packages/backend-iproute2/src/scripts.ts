/**
 * The `ip -batch` scripts the backend runs, as pure functions of the specs (so tests can read every line).
 * Each line has an `id` the dataplane uses to turn a failure of that line into a precise error.
 */
import { OWNER_ALIAS_PREFIX, type CniSpec, type IfName, type InstanceRecord, type InstanceSpec } from '@nodenet/core';
import type { IpLine } from './ip-batch.js';
import type { IpLinkWithAddresses } from './ip-json.js';

/** The alias that marks the CNI bridge as nodenet's. */
export const CNI_OWNER_ALIAS = `${OWNER_ALIAS_PREFIX}cni`;

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
  bridgeUp: 'bridge-up',
  bridgeMac: 'bridge-mac',
  bridgeMtu: 'bridge-mtu',
  bridgeStaleAddress: 'bridge-stale-address',
  createLink: 'create-link',
  attachLink: 'attach-link',
  hairpin: 'hairpin',
  rename: 'rename',
  instanceAddress: 'instance-address',
  instanceUp: 'instance-up',
  loopbackUp: 'loopback-up',
  defaultRoute: 'default-route',
  deleteLink: 'delete-link',
  flushNeighbour: 'flush-neighbour',
} as const;

/**
 * Creates the CNI bridge. The MTU is set after creation on purpose: an MTU given at creation is not marked
 * as chosen by the user, so the bridge would follow its smallest port and fall back to 1500 when its last
 * port goes; set through a change, it stays. IPv6 address generation is off (see ensureCni).
 */
export function createCniScript(spec: CniSpec): IpLine[] {
  return [
    {
      id: LINE.createBridge,
      args: ['link', 'add', 'name', spec.name, 'address', spec.mac, 'type', 'bridge'],
      step: `create bridge ${spec.name}`,
    },
    {
      id: LINE.configureBridge,
      args: ['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu), 'alias', CNI_OWNER_ALIAS, 'addrgenmode', 'none'],
      step: `set MTU ${spec.mtu} and owner alias on ${spec.name}`,
    },
    cniAddressLine(spec),
    { id: LINE.bridgeUp, args: ['link', 'set', 'dev', spec.name, 'up'], step: `bring ${spec.name} up` },
  ];
}

function cniAddressLine(spec: CniSpec): IpLine {
  const cidr = `${spec.gateway}/${spec.subnet.prefixLength}`;
  return {
    id: LINE.bridgeAddress,
    args: ['address', 'add', cidr, 'broadcast', '+', 'dev', spec.name],
    step: `add ${cidr} to ${spec.name}`,
  };
}

/**
 * The lines that bring an existing nodenet bridge to the spec (empty when it matches): MAC, MTU, exactly one
 * IPv4 address (the gateway's), up. The link must already be known to be nodenet's.
 */
export function repairCniScript(spec: CniSpec, current: IpLinkWithAddresses): IpLine[] {
  const lines: IpLine[] = [];
  if (current.address?.toLowerCase() !== spec.mac.toLowerCase()) {
    lines.push({ id: LINE.bridgeMac, args: ['link', 'set', 'dev', spec.name, 'address', spec.mac], step: `set MAC ${spec.mac} on ${spec.name}` });
  }
  if (current.mtu !== spec.mtu) {
    lines.push({ id: LINE.bridgeMtu, args: ['link', 'set', 'dev', spec.name, 'mtu', String(spec.mtu)], step: `set MTU ${spec.mtu} on ${spec.name}` });
  }
  let hasGateway = false;
  for (const a of current.addresses) {
    if (a.family !== 'inet') continue;
    if (a.local === spec.gateway && a.prefixlen === spec.subnet.prefixLength) {
      hasGateway = true;
      continue;
    }
    // Another IPv4 address on nodenet's own bridge is a leftover (e.g. a gateway from an older record).
    const cidr = `${a.local}/${a.prefixlen}`;
    lines.push({ id: LINE.bridgeStaleAddress, args: ['address', 'del', cidr, 'dev', spec.name], step: `remove stale address ${cidr} from ${spec.name}` });
  }
  if (!hasGateway) lines.push(cniAddressLine(spec));
  if (!current.flags.includes('UP')) {
    lines.push({ id: LINE.bridgeUp, args: ['link', 'set', 'dev', spec.name, 'up'], step: `bring ${spec.name} up` });
  }
  return lines;
}

/**
 * The node-side lines of a veth pair. The instance end gets its MAC and MTU at creation and, with
 * `targetNetnsPath`, is created directly in that namespace (never visible in the node namespace). The host
 * end joins the bridge at creation (so a missing CNI fails before anything exists), then gets nodenet's
 * owner alias, no IPv6 address generation (a bridge port needs no address; without a link-local one it
 * sends no DAD, router solicitation or MLD traffic into the bridge), hairpin mode (below) and up.
 * The instance end left in the node namespace stays down: the runtime moves it (a move downs it anyway) and
 * configures it there; down, it sends nothing and the host end shows no carrier until the instance is ready.
 *
 * Hairpin: when the host passes bridged traffic through netfilter (br_netfilter, bridge-nf-call-iptables=1),
 * an instance's connection to a port the node publishes for that same instance is DNATed inside the bridge
 * and must leave by the port it came in on, which a bridge allows only in hairpin mode (measured: without
 * it the connection times out; with bridge-nf-call-iptables=0 it works either way).
 */
export function vethScript(spec: InstanceSpec, targetNetnsPath?: string): IpLine[] {
  const mtu = String(spec.mtu);
  const peer = ['peer', 'name', spec.handle, 'address', spec.mac, 'mtu', mtu, ...(targetNetnsPath ? ['netns', targetNetnsPath] : [])];
  return [
    {
      id: LINE.createLink,
      args: ['link', 'add', 'name', spec.hostIfname, 'mtu', mtu, 'master', spec.cni.name, 'type', 'veth', ...peer],
      step: `create veth pair ${spec.hostIfname}/${spec.handle} on ${spec.cni.name}${targetNetnsPath ? ` with ${spec.handle} in ${targetNetnsPath}` : ''}`,
    },
    {
      id: LINE.attachLink,
      args: ['link', 'set', 'dev', spec.hostIfname, 'alias', ownerAliasOf(spec.handle), 'addrgenmode', 'none', 'up', ...HAIRPIN],
      step: `tag ${spec.hostIfname}, set hairpin and bring it up`,
    },
  ];
}

/** Bridge-port options of a link already on the bridge (a bridge_slave change needs the master set before). */
const HAIRPIN = ['type', 'bridge_slave', 'hairpin', 'on'];

/**
 * A TAP for a VM, named with the handle; it is the bridge port itself (same alias, IPv6 and hairpin
 * settings as a host veth end). It keeps the kernel's random MAC: spec.mac is for the guest's NIC, and a
 * bridge port that had the guest's MAC would make the bridge treat the guest's frames as its own.
 */
export function tapScript(spec: InstanceSpec): IpLine[] {
  return [
    { id: LINE.createLink, args: ['tuntap', 'add', 'dev', spec.handle, 'mode', 'tap'], step: `create TAP ${spec.handle}` },
    {
      id: LINE.attachLink,
      args: ['link', 'set', 'dev', spec.handle, 'mtu', String(spec.mtu), 'alias', ownerAliasOf(spec.handle), 'addrgenmode', 'none', 'master', spec.cni.name, 'up'],
      step: `attach ${spec.handle} to ${spec.cni.name}`,
    },
    { id: LINE.hairpin, args: ['link', 'set', 'dev', spec.handle, ...HAIRPIN], step: `set hairpin on ${spec.handle}` },
  ];
}

/** The lines run inside the instance's namespace: name, address, up, loopback up, default route via the gateway. */
export function instanceNamespaceScript(spec: InstanceSpec): IpLine[] {
  const ifname = spec.ifname ?? DEFAULT_INSTANCE_IFNAME;
  const cidr = `${spec.address}/${spec.cni.subnet.prefixLength}`;
  const where = `in namespace ${spec.netns ?? '(node)'}`;
  const lines: IpLine[] = [];
  if (ifname !== spec.handle) {
    lines.push({ id: LINE.rename, args: ['link', 'set', 'dev', spec.handle, 'name', ifname], step: `rename ${spec.handle} to ${ifname} ${where}` });
  }
  lines.push(
    { id: LINE.instanceAddress, args: ['address', 'add', cidr, 'broadcast', '+', 'dev', ifname], step: `add ${cidr} to ${ifname} ${where}` },
    { id: LINE.instanceUp, args: ['link', 'set', 'dev', ifname, 'up'], step: `bring ${ifname} up ${where}` },
    { id: LINE.loopbackUp, args: ['link', 'set', 'dev', 'lo', 'up'], step: `bring lo up ${where}` },
    {
      id: LINE.defaultRoute,
      args: ['route', 'add', 'default', 'via', spec.cni.gateway, 'dev', ifname],
      step: `add default route via ${spec.cni.gateway} ${where}`,
    },
  );
  return lines;
}

/**
 * Removes an instance's node-side link (deleting one veth end deletes the other, wherever it is) and the
 * node's neighbour entry for its address, so the address can be reused at once. Run with `-force`: either
 * line may find nothing to do.
 */
export function deleteInstanceScript(record: Pick<InstanceRecord, 'hostIfname' | 'address'>, cniName: IfName): IpLine[] {
  return [
    { id: LINE.deleteLink, args: ['link', 'del', 'dev', record.hostIfname], step: `delete ${record.hostIfname}` },
    {
      id: LINE.flushNeighbour,
      args: ['neigh', 'flush', 'to', record.address, 'dev', cniName],
      step: `flush neighbour entries of ${record.address} on ${cniName}`,
    },
  ];
}

export function deleteLinkScript(name: IfName | string): IpLine[] {
  return [{ id: LINE.deleteLink, args: ['link', 'del', 'dev', name], step: `delete ${name}` }];
}
