/**
 * The nft scripts nodenet runs, built as text from FilterBase / InstanceRules (pure functions, unit-tested).
 * Every script is applied by one `nft -f -` process, which the kernel commits as one transaction.
 *
 * Layout (nodenet owns exactly these two tables and touches nothing else):
 *
 *   table ip nodenet
 *     map published_ports  inet_proto . inet_service : ipv4_addr . inet_service   (one element per port mapping)
 *     set cluster_subnets  ipv4_addr, interval                                      (every node's subnet)
 *     chain guard          filter/prerouting -300: drop packets from the CNI to 127.0.0.0/8 (route_localnet)
 *     chain prerouting     nat/prerouting  -100: DNAT traffic to a local address through published_ports
 *     chain output         nat/output      -100: the same for the node's own traffic
 *     chain postrouting    nat/postrouting  100: hairpin masquerade, egress masquerade
 *
 *   table bridge nodenet
 *     set allowed_sources  ifname . ipv4_addr                                       (one element per instance)
 *     chain prerouting     filter/prerouting -400: frames from nnh-* / nni-* ports go to instance_port
 *     chain instance_port  accept IPv4 / ARP whose (port, source) is allowed; drop everything else
 *
 * The rule count is fixed: publishing a port or adding an instance only adds map/set elements.
 */
import {
  HANDLE_PREFIX,
  HOST_PREFIX,
  InternalError,
  PROTOCOLS,
  Subnet,
  parseIfName,
  parseIpv4Address,
  parsePort,
  portKey,
  type FilterBase,
  type IfName,
  type InstanceRules,
  type Ipv4Address,
  type PortMapping,
  type Protocol,
} from '@nodenet/core';

export const TABLE = 'nodenet';
export const PUBLISHED_PORTS = 'published_ports';
export const CLUSTER_SUBNETS = 'cluster_subnets';
export const ALLOWED_SOURCES = 'allowed_sources';
/** Bridge ports nodenet creates: host-side veth ends and TAPs. Frames from them are default-deny. */
export const GUARDED_PORT_PREFIXES: readonly string[] = [HOST_PREFIX, HANDLE_PREFIX];

const IP = `ip ${TABLE}`;
const BRIDGE = `bridge ${TABLE}`;
const LOOPBACK_NET = '127.0.0.0/8';

// ---------------------------------------------------------------------------------------------------
// Validation: everything that reaches a script is re-parsed, so nothing but well-formed names, addresses
// and numbers can end up in nft's input.

export function checkedBase(base: FilterBase): FilterBase {
  const subnet = Subnet.parse(base.subnet.toString(), 'subnet');
  return {
    cniName: parseIfName(base.cniName, 'cniName'),
    subnet,
    gateway: parseIpv4Address(base.gateway, 'gateway'),
    clusterSubnets: base.clusterSubnets.map((s, i) => Subnet.parse(s.toString(), `clusterSubnets[${i}]`)),
  };
}

export function checkedRules(rules: InstanceRules, step: string): InstanceRules {
  const hostIfname = parseIfName(rules.hostIfname, 'hostIfname');
  if (!GUARDED_PORT_PREFIXES.some((p) => hostIfname.startsWith(p))) {
    // Anti-spoofing only guards ports with these prefixes; another name would be an unguarded port.
    throw new InternalError(
      step,
      `bridge port ${hostIfname} is not named ${GUARDED_PORT_PREFIXES.map((p) => `${p}*`).join(' or ')}, so anti-spoofing would not cover it`,
    );
  }
  const address = parseIpv4Address(rules.address, 'address');
  const seen = new Set<string>();
  const ports = rules.ports.map((m, i) => {
    if (!PROTOCOLS.includes(m.protocol)) throw new InternalError(step, `ports[${i}]: unknown protocol ${String(m.protocol)}`);
    const mapping: PortMapping = {
      protocol: m.protocol,
      hostPort: parsePort(m.hostPort, `ports[${i}].hostPort`),
      instancePort: parsePort(m.instancePort, `ports[${i}].instancePort`),
    };
    const key = portKey(mapping.protocol, mapping.hostPort);
    if (seen.has(key)) throw new InternalError(step, `ports[${i}]: ${key} appears twice`);
    seen.add(key);
    return mapping;
  });
  return { hostIfname, address, ports };
}

// ---------------------------------------------------------------------------------------------------
// Elements

/** `tcp . 8080`: the key of a published port. */
export function portKeyElement(m: { protocol: Protocol; hostPort: number }): string {
  return `${m.protocol} . ${m.hostPort}`;
}

/** `tcp . 8080 : 198.19.1.2 . 80`. */
export function portMapElement(m: PortMapping, address: Ipv4Address): string {
  return `${portKeyElement(m)} : ${address} . ${m.instancePort}`;
}

/** `"nnh-1a2b3c4d" . 198.19.1.2` (IfName characters need no escaping inside quotes). */
export function sourceElement(hostIfname: IfName, address: Ipv4Address): string {
  return `"${hostIfname}" . ${address}`;
}

function elements(verb: 'add' | 'delete', target: string, items: readonly string[]): string[] {
  return items.length === 0 ? [] : [`${verb} element ${target} { ${items.join(', ')} }`];
}

/**
 * The smallest list of the cluster's subnets with none inside another (an interval set rejects overlaps;
 * aligned subnets either nest or are disjoint), the node's own subnet always included, sorted.
 */
export function clusterSubnetElements(base: FilterBase): string[] {
  const unique = [...new Map([base.subnet, ...base.clusterSubnets].map((s) => [s.toString(), s])).values()];
  const kept = unique.filter((s) => !unique.some((o) => o.prefixLength < s.prefixLength && o.contains(s.network)));
  return kept.map((s) => s.toString()).sort(compareCidr);
}

function compareCidr(a: string, b: string): number {
  const n = (c: string) => c.split(/[./]/).map(Number);
  const x = n(a);
  const y = n(b);
  for (let i = 0; i < 5; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Scripts

/**
 * Creates or converges both tables without losing elements: `add` of a table, set, map or chain is a no-op
 * when it exists; each chain is flushed and refilled, and cluster_subnets (wholly derived from `base`) is
 * flushed and refilled, all in the same transaction, so no packet sees a half-built ruleset.
 */
export function ensureBaseScript(input: FilterBase): string {
  const base = checkedBase(input);
  const cni = `"${base.cniName}"`;
  const subnet = base.subnet.toString();
  const lines = [
    `add table ${IP}`,
    `add map ${IP} ${PUBLISHED_PORTS} { type inet_proto . inet_service : ipv4_addr . inet_service; }`,
    `add set ${IP} ${CLUSTER_SUBNETS} { type ipv4_addr; flags interval; }`,
    `add chain ${IP} guard { type filter hook prerouting priority -300; policy accept; }`,
    `add chain ${IP} prerouting { type nat hook prerouting priority -100; policy accept; }`,
    `add chain ${IP} output { type nat hook output priority -100; policy accept; }`,
    `add chain ${IP} postrouting { type nat hook postrouting priority 100; policy accept; }`,

    `flush chain ${IP} guard`,
    // Loopback destinations never arrive from the CNI legitimately. With route_localnet=1 on the CNI (needed
    // for the node's own 127.0.0.1 to reach published ports) the kernel would otherwise deliver them to
    // services bound to 127.0.0.1 on the node. Runs before conntrack and NAT, so it sees the header as sent.
    `add rule ${IP} guard iifname ${cni} ip daddr ${LOOPBACK_NET} drop comment "no instance reaches the node's loopback"`,

    `flush chain ${IP} prerouting`,
    `add rule ${IP} prerouting fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @${PUBLISHED_PORTS} comment "published ports"`,

    `flush chain ${IP} output`,
    `add rule ${IP} output fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @${PUBLISHED_PORTS} comment "published ports, from the node"`,

    `flush chain ${IP} postrouting`,
    // Hairpin: an instance (or the node via 127.0.0.1) reaching a published port whose DNATed packet goes
    // back into the CNI must look like the gateway, or the reply would bypass the node's un-NAT.
    `add rule ${IP} postrouting ct status dnat oifname ${cni} ip saddr { ${subnet}, ${LOOPBACK_NET} } masquerade comment "hairpin"`,
    // Egress: instance traffic leaving through another interface to outside every node's subnet. The oifname
    // test keeps bridged frames (seen here when bridge-nf-call-iptables=1, with oif = the CNI) unchanged.
    `add rule ${IP} postrouting oifname != ${cni} ip saddr ${subnet} ip daddr != @${CLUSTER_SUBNETS} masquerade comment "egress"`,

    `flush set ${IP} ${CLUSTER_SUBNETS}`,
    ...elements('add', `${IP} ${CLUSTER_SUBNETS}`, clusterSubnetElements(base)),

    `add table ${BRIDGE}`,
    `add set ${BRIDGE} ${ALLOWED_SOURCES} { type ifname . ipv4_addr; }`,
    // -400: before bridge conntrack (-300) and br_netfilter (0), so a dropped frame is never seen by the ip hooks.
    `add chain ${BRIDGE} prerouting { type filter hook prerouting priority -400; policy accept; }`,
    `add chain ${BRIDGE} instance_port`,
    `flush chain ${BRIDGE} prerouting`,
    ...GUARDED_PORT_PREFIXES.map((p) => `add rule ${BRIDGE} prerouting iifname "${p}*" jump instance_port`),
    `flush chain ${BRIDGE} instance_port`,
    `add rule ${BRIDGE} instance_port iifname . ip saddr @${ALLOWED_SOURCES} accept comment "IPv4 from the port's own address"`,
    `add rule ${BRIDGE} instance_port arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . arp saddr ip @${ALLOWED_SOURCES} accept comment "ARP for the port's own address"`,
    // Everything else from an instance port: other sources, IPv6 (nodenet is IPv4-only), VLAN tags, STP, ...
    `add rule ${BRIDGE} instance_port drop comment "default deny"`,
  ];
  return lines.join('\n') + '\n';
}

/** Deletes both tables; absent ones are fine (`add` first makes the `delete` always succeed). */
export function removeBaseScript(): string {
  return [`add table ${IP}`, `delete table ${IP}`, `add table ${BRIDGE}`, `delete table ${BRIDGE}`].join('\n') + '\n';
}

/**
 * Publishes the ports and admits the address on its port. `replaceKeys`: port keys currently mapped to
 * another address (stale), deleted first in the same transaction.
 */
export function addInstanceScript(input: InstanceRules, replaceKeys: readonly { protocol: Protocol; hostPort: number }[] = []): string {
  const rules = checkedRules(input, 'publish ports');
  return [
    ...elements('delete', `${IP} ${PUBLISHED_PORTS}`, replaceKeys.map(portKeyElement)),
    ...elements('add', `${IP} ${PUBLISHED_PORTS}`, rules.ports.map((m) => portMapElement(m, rules.address))),
    ...elements('add', `${BRIDGE} ${ALLOWED_SOURCES}`, [sourceElement(rules.hostIfname, rules.address)]),
  ].join('\n') + '\n';
}

/**
 * The reverse of addInstance, tolerant of elements already gone: nft 1.0.6 has no `destroy`, and a `delete`
 * of a missing element fails the whole transaction; so each element is first added (a no-op when present)
 * and then deleted. The one case this cannot cover is a port key now mapped to another address: the `add`
 * then fails ("File exists") and the caller falls back to removeListedScript.
 */
export function removeInstanceScript(input: InstanceRules): string {
  const rules = checkedRules(input, 'remove published ports');
  const source = [sourceElement(rules.hostIfname, rules.address)];
  return [
    ...elements('add', `${IP} ${PUBLISHED_PORTS}`, rules.ports.map((m) => portMapElement(m, rules.address))),
    ...elements('delete', `${IP} ${PUBLISHED_PORTS}`, rules.ports.map(portKeyElement)),
    ...elements('add', `${BRIDGE} ${ALLOWED_SOURCES}`, source),
    ...elements('delete', `${BRIDGE} ${ALLOWED_SOURCES}`, source),
  ].join('\n') + '\n';
}

/** What the kernel holds, as read by listing the tables (null: that table is absent). */
export interface ListedElements {
  readonly publishedPorts: readonly ListedPort[] | null;
  readonly allowedSources: readonly ListedSource[] | null;
}

export interface ListedPort {
  readonly protocol: Protocol;
  readonly hostPort: number;
  readonly address: string;
  readonly instancePort: number;
}

export interface ListedSource {
  readonly ifname: string;
  readonly address: string;
}

/** Port keys of `rules` mapped in `listed` to something other than what `rules` wants. */
export function conflictingKeys(input: InstanceRules, listed: readonly ListedPort[]): ListedPort[] {
  const byKey = new Map(listed.map((p) => [portKeyElement(p), p]));
  const out: ListedPort[] = [];
  for (const m of input.ports) {
    const held = byKey.get(portKeyElement(m));
    if (held && (held.address !== input.address || held.instancePort !== m.instancePort)) out.push(held);
  }
  return out;
}

/**
 * The fallback of removeInstance, from a listing: deletes exactly the elements that are present and belong
 * to this instance (a port key mapped to another address is left alone). Empty string: nothing to do.
 */
export function removeListedScript(input: InstanceRules, listed: ListedElements): string {
  const rules = checkedRules(input, 'remove published ports');
  const ours = rules.ports.filter((m) =>
    (listed.publishedPorts ?? []).some(
      (p) => p.protocol === m.protocol && p.hostPort === m.hostPort && p.address === rules.address && p.instancePort === m.instancePort,
    ),
  );
  const sourcePresent = (listed.allowedSources ?? []).some((s) => s.ifname === rules.hostIfname && s.address === rules.address);
  const lines = [
    ...elements('delete', `${IP} ${PUBLISHED_PORTS}`, ours.map(portKeyElement)),
    ...elements('delete', `${BRIDGE} ${ALLOWED_SOURCES}`, sourcePresent ? [sourceElement(rules.hostIfname, rules.address)] : []),
  ];
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
