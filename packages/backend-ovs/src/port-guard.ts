/**
 * netdev only: keeping the kernel's own IP stack away from switch ports.
 *
 * With the userspace datapath an instance's host-side veth end (or TAP) is an ordinary kernel interface
 * that ovs-vswitchd reads through a packet socket; the kernel still processes what arrives on it. It would
 * answer an instance's ARP for the gateway through that port (measured: the instance then sends to the
 * port's own MAC and the kernel routes its packets itself, past the OpenFlow anti-spoofing, so a spoofed
 * source address reached the world). Two measures: the ports are created with `arp off` (no ARP through
 * them), and this table drops every IPv4/IPv6 packet that reaches the kernel's prerouting through them,
 * before connection tracking. Traffic the switch forwards never passes here (it enters the kernel through
 * the gateway port, nodenet0).
 *
 * `table inet nodenet` is nodenet's (it owns tables named `nodenet`); the nftables layer's tables are
 * `ip nodenet` and `bridge nodenet`.
 */
import { GUARDED_PREFIXES_FOR_PORTS } from './names.js';

export const PORT_GUARD_TABLE = 'inet nodenet';
export const PORT_GUARD_CHAIN = 'switch_ports';

function ruleOf(prefix: string): string {
  return `iifname "${prefix}*" drop`;
}

/** Installs (or replaces) the table in one transaction. */
export function portGuardScript(replace: boolean): string {
  return [
    ...(replace ? [`delete table ${PORT_GUARD_TABLE}`] : []),
    `add table ${PORT_GUARD_TABLE}`,
    `add chain ${PORT_GUARD_TABLE} ${PORT_GUARD_CHAIN} { type filter hook prerouting priority -400; policy accept; }`,
    ...GUARDED_PREFIXES_FOR_PORTS.map((p) => `add rule ${PORT_GUARD_TABLE} ${PORT_GUARD_CHAIN} ${ruleOf(p)}`),
    '',
  ].join('\n');
}

/** Whether `nft list table inet nodenet` (text; empty when absent) shows exactly the guard. */
export function portGuardIsRight(listing: string): boolean {
  const lines = listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== '}');
  const want = [
    `table ${PORT_GUARD_TABLE} {`,
    `chain ${PORT_GUARD_CHAIN} {`,
    'type filter hook prerouting priority -400; policy accept;',
    ...GUARDED_PREFIXES_FOR_PORTS.map(ruleOf),
  ];
  return lines.length === want.length && want.every((w, i) => lines[i] === w);
}
