/**
 * The `ip -batch` scripts the backend runs, as pure functions of the specs (so tests can read every line).
 * Each line has an `id` the dataplane uses to turn a failure of that line into a precise error.
 */
import { CNI_NAME, HANDLE_PREFIX, OWNER_ALIAS_PREFIX, type CniSpec, type IfName, type InstanceRecord, type InstanceSpec, type LinkState } from '@nodenet/core';
import type { IpLine } from './ip-batch.js';
import type { IpLink, IpLinkWithAddresses } from './ip-json.js';
import { isCniBridge, isOverflowInfrastructure } from './cni-bridges.js';

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
  groupLink: 'group-link',
  deleteGroup: 'delete-group',
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
  let hasGateway = false;
  for (const a of current.addresses) {
    if (a.family !== 'inet') continue;
    if (a.local === spec.gateway && a.prefixlen === spec.subnet.prefixLength) {
      hasGateway = true;
      continue;
    }
    // Another IPv4 address on nodenet's own bridge is a leftover (e.g. a gateway from an older record).
    const cidr = `${a.local}/${a.prefixlen}`;
    repairs.push({
      found: `stale address ${cidr} was on ${name}: removed`,
      line: { id: LINE.bridgeStaleAddress, args: ['address', 'del', cidr, 'dev', name], step: `remove stale address ${cidr} from ${name}` },
    });
  }
  if (!hasGateway) {
    repairs.push({ found: `address ${spec.gateway}/${spec.subnet.prefixLength} was missing on ${name}: added`, line: cniAddressLine(spec) });
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
export function vethScript(spec: InstanceSpec, targetNetnsPath?: string, master: string = spec.cni.name): IpLine[] {
  const mtu = String(spec.mtu);
  const peer = ['peer', 'name', spec.handle, 'address', spec.mac, 'mtu', mtu, ...(targetNetnsPath ? ['netns', targetNetnsPath] : [])];
  return [
    {
      id: LINE.createLink,
      args: ['link', 'add', 'name', spec.hostIfname, 'mtu', mtu, 'master', master, 'type', 'veth', ...peer],
      step: `create veth pair ${spec.hostIfname}/${spec.handle} on ${master}${targetNetnsPath ? ` with ${spec.handle} in ${targetNetnsPath}` : ''}`,
    },
    {
      id: LINE.attachLink,
      args: ['link', 'set', 'dev', spec.hostIfname, 'alias', ownerAliasOf(spec.handle), 'addrgenmode', 'none', 'up', ...HAIRPIN],
      step: `tag ${spec.hostIfname}, set hairpin and bring it up`,
    },
  ];
}

/** Puts a detached instance port back on the CNI (its bridge `master`) with the settings createInstance gives it. */
export function attachPortScript(hostIfname: IfName, cni: CniSpec, master: string = cni.name): IpLine[] {
  return [
    { id: LINE.attachLink, args: ['link', 'set', 'dev', hostIfname, 'master', master], step: `attach ${hostIfname} to ${master}` },
    { id: LINE.hairpin, args: ['link', 'set', 'dev', hostIfname, 'up', ...HAIRPIN], step: `set hairpin on ${hostIfname} and bring it up` },
  ];
}

/** Bridge-port options of a link already on the bridge (a bridge_slave change needs the master set before). */
const HAIRPIN = ['type', 'bridge_slave', 'hairpin', 'on'];

/**
 * A TAP for a VM, named with the handle; it is the bridge port itself (same alias, IPv6 and hairpin
 * settings as a host veth end). It keeps the kernel's random MAC: spec.mac is for the guest's NIC, and a
 * bridge port that had the guest's MAC would make the bridge treat the guest's frames as its own.
 */
export function tapScript(spec: InstanceSpec, master: string = spec.cni.name): IpLine[] {
  return [
    { id: LINE.createLink, args: ['tuntap', 'add', 'dev', spec.handle, 'mode', 'tap'], step: `create TAP ${spec.handle}` },
    {
      id: LINE.attachLink,
      args: ['link', 'set', 'dev', spec.handle, 'mtu', String(spec.mtu), 'alias', ownerAliasOf(spec.handle), 'addrgenmode', 'none', 'master', master, 'up'],
      step: `attach ${spec.handle} to ${master}`,
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

/** A link in the node namespace that carries nodenet's owner tag, with what is cheap to tell about it. */
export interface OwnedLink extends LinkState {
  readonly ownerTag: string;
  /** `bridge`, `veth`, `tun`, `vxlan`, ... (from `ip -d`). */
  readonly kind?: string;
  /** The bridge it is a port of. */
  readonly master?: string;
  /** The kernel's operstate (`UP`, `DOWN`, `LOWERLAYERDOWN`, ...). */
  readonly operstate?: string;
}

/** The links whose alias starts with nodenet's owner prefix. */
/**
 * nodenet's owner tag of a link, or undefined when the link is not nodenet's. A link carries the tag as its
 * alias; the kernel ignores `alias` on `link add`, so a create cut short between its `link add` and the
 * `link set alias` line leaves a port named in nodenet's scheme (`nnh-`/`nni-` + 8 hex digits) on the CNI
 * without it: such a port is nodenet's too (nobody else names links so and attaches them to nodenet0 or
 * its overflow bridges).
 */
export function ownerTagOf(link: IpLink, cniName: string = CNI_NAME): string | undefined {
  if (link.alias?.startsWith(OWNER_ALIAS_PREFIX)) return link.alias;
  const m = /^nn([hi])-([0-9a-f]{8})$/.exec(link.ifname);
  if (!m) return undefined;
  const tag = `${OWNER_ALIAS_PREFIX}${HANDLE_PREFIX}${m[2]}`;
  if (isCniBridge(cniName, link.master)) return tag;
  // A TAP is made by `tuntap add` and only then tagged and attached (tapScript): cut short in between, it is
  // a tun link named with a handle on no bridge. Needs the kind (`ip -d`); a veth's instance end left in
  // the node namespace (kind veth) is never claimed this way.
  if (m[1] === 'i' && link.master === undefined && link.linkinfo?.kind === 'tun') return tag;
  return undefined;
}

/**
 * The owned links as core sees them: the CNI's overflow bridges and their pairs are part of the CNI (not
 * listed), and a port on an overflow bridge is a port of the CNI (see cni-bridges.ts).
 */
export function ownedLinksOf(links: readonly IpLink[], cniName: string = CNI_NAME): OwnedLink[] {
  return links.flatMap((l) => {
    const ownerTag = isOverflowInfrastructure(cniName, l) ? undefined : ownerTagOf(l, cniName);
    return ownerTag !== undefined
      ? [
          {
            name: l.ifname,
            ownerTag,
            ...(l.linkinfo?.kind === undefined ? {} : { kind: l.linkinfo.kind }),
            // '' when the link is on no bridge, so reconcile can tell a detached port from "not reported".
            master: isCniBridge(cniName, l.master) ? cniName : (l.master ?? ''),
            ...(l.operstate === undefined ? {} : { operstate: l.operstate }),
          },
        ]
      : [];
  });
}

/** Names asked for deletion, sorted by what the kernel shows now. */
export interface OwnedLinkDeletion {
  /** Present and tagged as nodenet's: to delete. */
  readonly owned: string[];
  /** Present without nodenet's tag: refused (a caller's mistake or a name reused by someone else). */
  readonly foreign: { readonly name: string; readonly alias: string | undefined }[];
  /** Not there (already gone, e.g. with the other end of its veth): nothing to do. */
  readonly absent: string[];
}

export function classifyForDeletion(names: readonly string[], links: readonly IpLink[]): OwnedLinkDeletion {
  const byName = new Map(links.map((l) => [l.ifname, l]));
  const result: OwnedLinkDeletion = { owned: [], foreign: [], absent: [] };
  for (const name of new Set(names)) {
    const link = byName.get(name);
    if (link === undefined) result.absent.push(name);
    else if (ownerTagOf(link) !== undefined) result.owned.push(name);
    else result.foreign.push({ name, alias: link.alias });
  }
  return result;
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
    ...names.map((name): IpLine => ({ id: LINE.groupLink, args: ['link', 'set', 'dev', name, 'group', group], step: `mark ${name} for deletion (link group ${group})` })),
    { id: LINE.deleteGroup, args: ['link', 'del', 'group', group], step: `delete ${names.length} links (link group ${group})` },
  ];
}
