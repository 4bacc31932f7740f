/**
 * The uplink of the userspace (netdev) datapath. ovs-vswitchd's userspace datapath sends and receives
 * tunnel packets itself: only through an OVS bridge whose internal port holds the local tunnel address
 * (OVS "native tunneling"). So with `datapathType: netdev` the overlay moves the node's underlay interface
 * into a bridge of its own, `nodenet-phy`, which takes over the interface's MAC, addresses and routes (IPv4,
 * and IPv6 but for the link-local ones each link has of its own)
 * (the kernel datapath needs none of this: its VXLAN port is a kernel device routed by the kernel).
 *
 * The interface itself stays up as the bridge's port; ovs-vswitchd reads it through a packet socket, which
 * sees frames before the kernel's ingress hook. The kernel must not also process them (it would answer
 * every ping twice and send ICMP errors for every VXLAN packet): an nftables ingress chain on the interface,
 * `table netdev nodenet`, drops everything that reaches the kernel's own stack through it.
 *
 * Pure functions here plan `ip -batch` lines and the nft script; the overlay runs them.
 */
import { parseIfName, type IfName } from '@nodenet/core';
import type { IpLine, IpLinkWithAddresses } from '@nodenet/linux';
import { UPLINK_BRIDGE, UPLINK_OWNER_TAG } from './names.js';

/** The nftables table holding the uplink guard (nodenet owns tables named `nodenet`; this one is family netdev). */
export const GUARD_TABLE = 'netdev nodenet';
export const GUARD_CHAIN = 'uplink';

/** What `ip -j route show table main` says about a route (the fields moving it needs). */
export interface RouteEntry {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly protocol?: string;
  readonly scope?: string;
  readonly prefsrc?: string;
  readonly metric?: number;
  readonly flags: readonly string[];
}

export function parseRouteEntries(json: unknown): RouteEntry[] {
  if (!Array.isArray(json)) return [];
  return json.flatMap((item) => {
    if (typeof item !== 'object' || item === null) return [];
    const o = item as Record<string, unknown>;
    if (typeof o['dst'] !== 'string') return [];
    const str = (k: string) => (typeof o[k] === 'string' ? { [k]: o[k] } : {});
    return [
      {
        dst: o['dst'],
        ...str('gateway'),
        ...str('dev'),
        ...str('protocol'),
        ...str('scope'),
        ...str('prefsrc'),
        ...(typeof o['metric'] === 'number' ? { metric: o['metric'] } : {}),
        flags: Array.isArray(o['flags']) ? o['flags'].filter((f): f is string => typeof f === 'string') : [],
      },
    ];
  });
}

/** The addresses that move with the uplink: IPv4, and IPv6 but link-local (fe80::/10; every link has its own). */
function movesWithUplink(a: { readonly family: string; readonly local: string }): boolean {
  return a.family === 'inet' || (a.family === 'inet6' && !/^fe[89ab][0-9a-f]:/i.test(a.local));
}

/**
 * Lines that move every IPv4 and global IPv6 address and (non-kernel) route of either family (`routes` holds
 * both) of `from` to `to`, `to` brought up first. IPv6 addresses move without duplicate address detection:
 * the address is the node's own already, and a tentative address would hold the underlay's traffic back.
 */
export function moveAddressingScript(
  from: IpLinkWithAddresses | undefined,
  to: IpLinkWithAddresses | undefined,
  fromName: string,
  toName: string,
  routes: readonly RouteEntry[],
): IpLine[] {
  const lines: IpLine[] = [];
  const moving = (from?.addresses ?? []).filter(movesWithUplink);
  const present = new Set((to?.addresses ?? []).filter(movesWithUplink).map((a) => `${a.local}/${a.prefixlen}`));
  if (!to?.flags.includes('UP')) lines.push({ id: 'uplink-up', args: ['link', 'set', 'dev', toName, 'up'], step: `bring ${toName} up` });
  for (const a of moving) {
    const cidr = `${a.local}/${a.prefixlen}`;
    if (!present.has(cidr))
      lines.push({
        id: 'uplink-address',
        args:
          a.family === 'inet6'
            ? ['address', 'add', cidr, 'dev', toName, 'nodad']
            : ['address', 'add', cidr, 'broadcast', '+', 'dev', toName],
        step: `add ${cidr} to ${toName}`,
      });
  }
  for (const r of routes) {
    if (r.dev !== fromName || r.protocol === 'kernel') continue;
    lines.push({
      id: 'uplink-route',
      args: ['route', 'replace', ...routeArgs(r, toName)],
      step: `move the route to ${r.dst} from ${fromName} to ${toName}`,
    });
  }
  // Last: removing the last address of `from` makes the kernel flush the routes still through it.
  for (const a of moving) {
    const cidr = `${a.local}/${a.prefixlen}`;
    lines.push({ id: 'uplink-address-del', args: ['address', 'del', cidr, 'dev', fromName], step: `remove ${cidr} from ${fromName}` });
  }
  return lines;
}

function routeArgs(r: RouteEntry, dev: string): string[] {
  return [
    r.dst,
    ...(r.gateway ? ['via', r.gateway] : []),
    'dev',
    dev,
    ...(r.flags.includes('onlink') ? ['onlink'] : []),
    ...(r.protocol ? ['proto', r.protocol] : []),
    ...(r.scope && r.scope !== 'global' && !(r.scope === 'universe') ? ['scope', r.scope] : []),
    ...(r.prefsrc ? ['src', r.prefsrc] : []),
    ...(r.metric !== undefined && r.metric !== 0 ? ['metric', String(r.metric)] : []),
  ];
}

/** The owner alias and IPv6 settings of the uplink bridge's internal port, when they differ. */
export function uplinkBridgeLinkScript(link: IpLinkWithAddresses | undefined): IpLine[] {
  if (!link || link.alias === UPLINK_OWNER_TAG) return [];
  return [{ id: 'uplink-alias', args: ['link', 'set', 'dev', UPLINK_BRIDGE, 'alias', UPLINK_OWNER_TAG], step: `tag ${UPLINK_BRIDGE}` }];
}

/** The nft script that installs (or replaces) the guard on `uplink`, in one transaction. */
export function guardScript(uplink: IfName, replace: boolean): string {
  const name = parseIfName(uplink, 'uplink interface');
  return [
    ...(replace ? [`delete table ${GUARD_TABLE}`] : []),
    `add table ${GUARD_TABLE}`,
    // priority -500: before anything else in the kernel sees the frame (ovs-vswitchd's packet socket already has it).
    `add chain ${GUARD_TABLE} ${GUARD_CHAIN} { type filter hook ingress device "${name}" priority -500; policy drop; }`,
    `add rule ${GUARD_TABLE} ${GUARD_CHAIN} counter drop comment "the uplink belongs to ${UPLINK_BRIDGE}"`,
    '',
  ].join('\n');
}

export function deleteGuardScript(): string {
  return `delete table ${GUARD_TABLE}\n`;
}

/**
 * The device the guard chain is bound to, from `nft list table netdev nodenet` (undefined: no guard). The
 * text form is read because nft 1.0.6's JSON leaves a netdev chain's device out.
 */
export function guardedDeviceOf(text: string): string | undefined {
  const chain = new RegExp(`chain ${GUARD_CHAIN} \\{[^}]*?hook ingress device "?([A-Za-z0-9_.-]+)"? priority [^;]+; policy drop;`).exec(
    text,
  );
  return chain?.[1];
}
