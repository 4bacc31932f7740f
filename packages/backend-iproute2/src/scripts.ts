/**
 * The Linux-bridge `ip -batch` scripts of this backend, as pure functions of the specs (so tests can read
 * every line): the CNI bridge, bridge ports (veth host ends, TAPs), and which links are nodenet's. The lines
 * both backends share (namespace end, deletes, the gateway address) are @nodenet/linux's link-scripts.
 * Each line has an `id` the dataplane uses to turn a failure of that line into a precise error.
 */
import { CNI_NAME, HANDLE_PREFIX, OWNER_ALIAS_PREFIX, type CniSpec, type IfName, type InstanceSpec, type LinkState } from '@nodenet/core';
import { LINE, cniAddressLines, ownerAliasOf, tapLines, type IpLine, type IpLink } from '@nodenet/linux';
import { isCniBridge, isOverflowInfrastructure } from './cni-bridges.js';

/** The alias that marks the CNI bridge as nodenet's. */
export const CNI_OWNER_ALIAS = `${OWNER_ALIAS_PREFIX}cni`;

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
    ...cniAddressLines(spec),
    { id: LINE.bridgeUp, args: ['link', 'set', 'dev', spec.name, 'up'], step: `bring ${spec.name} up` },
  ];
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
    ...tapLines(spec, ['master', master], `attach ${spec.handle} to ${master}`),
    { id: LINE.hairpin, args: ['link', 'set', 'dev', spec.handle, ...HAIRPIN], step: `set hairpin on ${spec.handle}` },
  ];
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
