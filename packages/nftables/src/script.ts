/**
 * The nft scripts nodenet runs, built as text from FilterBase / InstanceRules (pure functions, unit-tested).
 * Every script is applied by one `nft -f -` process, which the kernel commits as one transaction.
 *
 * Layout (nodenet owns exactly these two tables and touches nothing else):
 *
 *   table ip nodenet
 *     map published_ports  inet_proto . inet_service : ipv4_addr . inet_service   (one element per port mapping
 *                          published on every address of the node)
 *     map published_host_ports  ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
 *                          (one element per port mapping published on one host address, portmap's hostIP)
 *     set cluster_subnets  ipv4_addr, interval                                      (every node's subnet)
 *     chain guard          filter/prerouting -300: drop packets from the CNI to 127.0.0.0/8 (route_localnet;
 *                          with loopbackGuard 'bridge-ports' this is a rule of instance_port instead)
 *     chain prerouting     nat/prerouting  -100: DNAT traffic to a local address through published_host_ports
 *                          (keyed by the destination too), then published_ports
 *     chain output         nat/output      -100: the same for the node's own traffic
 *     chain postrouting    nat/postrouting  100: hairpin masquerade, egress masquerade
 *
 *   table ip6 nodenet      (only when the CNI holds IPv6; without IPv4 the ip table is left out)
 *     map published_ports  inet_proto . inet_service : ipv6_addr . inet_service   (one element per port mapping)
 *     map published_host_ports  ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service
 *                          (ports published on one IPv6 host address; one on an IPv4 one is in ip's only)
 *     set cluster_subnets  ipv6_addr, interval
 *     chain prerouting / output / postrouting: as the ip table's (hairpin; egress masquerade unless
 *                          ipv6Masquerade is false: routed global prefixes need none)
 *
 *   table bridge nodenet
 *     set allowed_sources  ifname . ipv4_addr                                       (one element per instance)
 *     set allowed_sources6 ifname . ipv6_addr      (with IPv6: the instance's address and its EUI-64 link-local)
 *     set nd_targets       ifname . 128-bit integer (the same pairs: the targets its neighbour adverts may claim)
 *     chain prerouting     filter/prerouting -400: frames from nnh-* / nni-* ports go to instance_port
 *     chain instance_port  accept IPv4 / ARP whose (port, source) is allowed; with IPv6: drop router adverts,
 *                          redirects, DHCPv6 server replies and neighbour adverts for others' addresses,
 *                          accept IPv6 from allowed (port, source) (and DAD / MLD from ::); drop everything else
 *
 * The rule count is fixed: publishing a port or adding an instance only adds map/set elements.
 */
import ipaddr from 'ipaddr.js';
import {
  HANDLE_PREFIX,
  HOST_PREFIX,
  InternalError,
  Ipv6Subnet,
  PROTOCOLS,
  Subnet,
  addressFamily,
  parseIfName,
  parseIpAddress,
  parseIpSubnet,
  parseIpv4Address,
  parseIpv6Address,
  parsePort,
  type AllowedSource,
  type FilterBase,
  type FilterElements,
  type IfName,
  type InstanceRules,
  type IpAddress,
  type IpSubnet,
  type Ipv6Address,
  type PortMapping,
  type Protocol,
  type PublishedPort,
} from '@nodenet/core';

export const TABLE = 'nodenet';
export const PUBLISHED_PORTS = 'published_ports';
export const PUBLISHED_HOST_PORTS = 'published_host_ports';
export const CLUSTER_SUBNETS = 'cluster_subnets';
export const ALLOWED_SOURCES = 'allowed_sources';
export const ALLOWED_SOURCES6 = 'allowed_sources6';
export const ND_TARGETS = 'nd_targets';
/** Bridge ports nodenet creates: host-side veth ends and TAPs. Frames from them are default-deny. */
export const GUARDED_PORT_PREFIXES: readonly string[] = [HOST_PREFIX, HANDLE_PREFIX];

const IP = `ip ${TABLE}`;
const IP6 = `ip6 ${TABLE}`;
const BRIDGE = `bridge ${TABLE}`;
const LOOPBACK_NET = '127.0.0.0/8';

/**
 * Where the loopback guard (no instance reaches the node's 127.0.0.0/8) is enforced:
 * - `ip-prerouting`: a base chain of the ip table, priority -300, dropping packets from the CNI to 127.0.0.0/8.
 *   It works whatever the CNI's switch is (the ovs backend's ports are not Linux bridge ports), but every
 *   packet the node receives passes one more base chain, the node's own traffic included.
 * - `bridge-ports`: a rule at the head of the bridge table's instance_port chain, which every frame from an
 *   instance port passes anyway (the iproute2 backend): one comparison for instance traffic, nothing for the rest.
 */
export type LoopbackGuard = 'ip-prerouting' | 'bridge-ports';
export const LOOPBACK_GUARDS: readonly LoopbackGuard[] = ['ip-prerouting', 'bridge-ports'];

/** The base as this adapter installs it: core's FilterBase and where the loopback guard goes (default ip-prerouting). */
export interface NftBase extends FilterBase {
  readonly loopbackGuard?: LoopbackGuard;
  /** Masquerade instances' IPv6 traffic leaving the cluster (default true; false for routed global prefixes). */
  readonly ipv6Masquerade?: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Validation: everything that reaches a script is re-parsed, so nothing but well-formed names, addresses
// and numbers can end up in nft's input.

export function checkedBase(base: NftBase): NftBase {
  if (!base.ipv4 && !base.ipv6) throw new InternalError('check the nftables base', 'the CNI holds neither IPv4 nor IPv6');
  const guard = base.loopbackGuard;
  if (guard !== undefined && !LOOPBACK_GUARDS.includes(guard)) {
    throw new InternalError(
      'check the nftables base',
      `loopbackGuard ${JSON.stringify(guard)} is not one of ${LOOPBACK_GUARDS.join(', ')}`,
    );
  }
  return {
    cniName: parseIfName(base.cniName, 'cniName'),
    ...(base.ipv4
      ? { ipv4: { subnet: Subnet.parse(base.ipv4.subnet.toString(), 'subnet'), gateway: parseIpv4Address(base.ipv4.gateway, 'gateway') } }
      : {}),
    ...(base.ipv6
      ? {
          ipv6: {
            subnet: Ipv6Subnet.parse(base.ipv6.subnet.toString(), 'ipv6 subnet'),
            gateway: parseIpv6Address(base.ipv6.gateway, 'ipv6 gateway'),
          },
        }
      : {}),
    clusterSubnets: base.clusterSubnets.map((s, i) => parseIpSubnet(s.toString(), `clusterSubnets[${i}]`)),
    ...(guard === undefined ? {} : { loopbackGuard: guard }),
    ...(base.ipv6Masquerade === false ? { ipv6Masquerade: false } : {}),
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
  if (!rules.ipv4 && !rules.ipv6) throw new InternalError(step, 'the instance has no address');
  if (rules.ipv6 && !rules.ipv6LinkLocal) throw new InternalError(step, 'an instance with IPv6 needs its link-local address');
  const seen = new Set<string>();
  const ports = rules.ports.map((m, i) => {
    if (!PROTOCOLS.includes(m.protocol)) throw new InternalError(step, `ports[${i}]: unknown protocol ${String(m.protocol)}`);
    const mapping: PortMapping = {
      protocol: m.protocol,
      hostPort: parsePort(m.hostPort, `ports[${i}].hostPort`),
      instancePort: parsePort(m.instancePort, `ports[${i}].instancePort`),
      ...checkedHostAddress(m.hostAddress, `ports[${i}].hostAddress`),
    };
    const key = portKeyElement(mapping);
    if (seen.has(key)) throw new InternalError(step, `ports[${i}]: ${key} appears twice`);
    seen.add(key);
    return mapping;
  });
  return {
    hostIfname,
    ...(rules.ipv4 ? { ipv4: parseIpv4Address(rules.ipv4, 'ipv4') } : {}),
    ...(rules.ipv6
      ? { ipv6: parseIpv6Address(rules.ipv6, 'ipv6'), ipv6LinkLocal: parseIpv6Address(rules.ipv6LinkLocal, 'ipv6LinkLocal') }
      : {}),
    ports,
  };
}

/** One family's part of an instance's elements: the map its ports go to, the sets its sources go to. */
interface FamilyElements {
  readonly address: IpAddress;
  /** Set targets (`bridge nodenet allowed_sources`) with the element texts that go in each. */
  readonly sources: readonly { readonly target: string; readonly items: readonly string[] }[];
}

/**
 * The map holding a port published to `address`, in the table of its family: published_host_ports on one host
 * address (of the same family: portsTo never pairs others), else published_ports.
 */
function portTarget(m: PortPlace, address: string): string {
  return `${addressFamily(address) === 6 ? IP6 : IP} ${portMapOf(m)}`;
}

/**
 * The mappings published to an instance address: one on a host address only to the address of its family.
 * Those on every address first, so scripts touch published_ports before published_host_ports.
 */
function portsTo<P extends PortPlace>(ports: readonly P[], address: IpAddress): P[] {
  const everywhere = ports.filter((m) => m.hostAddress === undefined);
  const onOne = ports.filter((m) => m.hostAddress !== undefined && addressFamily(m.hostAddress as IpAddress) === addressFamily(address));
  return [...everywhere, ...onOne];
}

/** The sets an admitted source goes in: IPv4 in allowed_sources; IPv6 in allowed_sources6 and nd_targets. */
function sourceTargets(ifname: IfName, address: IpAddress): { target: string; items: string[] }[] {
  if (addressFamily(address) === 4) return [{ target: `${BRIDGE} ${ALLOWED_SOURCES}`, items: [sourceElement(ifname, address)] }];
  return [
    { target: `${BRIDGE} ${ALLOWED_SOURCES6}`, items: [sourceElement(ifname, address)] },
    { target: `${BRIDGE} ${ND_TARGETS}`, items: [ndTargetElement(ifname, address as Ipv6Address)] },
  ];
}

function familyElements(rules: InstanceRules): FamilyElements[] {
  const out: FamilyElements[] = [];
  if (rules.ipv4) out.push({ address: rules.ipv4, sources: sourceTargets(rules.hostIfname, rules.ipv4) });
  if (rules.ipv6) {
    out.push({
      address: rules.ipv6,
      sources: [...sourceTargets(rules.hostIfname, rules.ipv6), ...sourceTargets(rules.hostIfname, rules.ipv6LinkLocal!)],
    });
  }
  return out;
}

/** `"nnh-1a2b3c4d" . 0xfd19...02`: nd_targets holds the address as the 128-bit number nft compares the NA target with. */
export function ndTargetElement(hostIfname: IfName, address: Ipv6Address): string {
  return `"${hostIfname}" . ${ipv6AsHex(address)}`;
}

export function ipv6AsHex(address: string): string {
  return `0x${ipaddr.IPv6.parse(address)
    .toByteArray()
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('')}`;
}

/** The canonical IPv6 address of a 128-bit number as nft lists it (`0xfd19...`), or null. */
export function ipv6FromHex(hex: string): Ipv6Address | null {
  if (!/^0x[0-9a-f]{1,32}$/i.test(hex)) return null;
  const digits = hex.slice(2).padStart(32, '0');
  const bytes = digits.match(/../g)!.map((h) => parseInt(h, 16));
  return (ipaddr.fromByteArray(bytes) as ipaddr.IPv6).toRFC5952String() as Ipv6Address;
}

// ---------------------------------------------------------------------------------------------------
// Elements

/** `{ hostAddress }` when there is one (re-parsed, either family), else nothing: for spreading into a port. */
function checkedHostAddress(input: unknown, field: string): { hostAddress?: IpAddress } {
  return input === undefined ? {} : { hostAddress: parseIpAddress(input, field) };
}

/** A published port's place: protocol and host port, and the host address when it has one. */
export interface PortPlace {
  readonly protocol: Protocol;
  readonly hostPort: number;
  readonly hostAddress?: string;
}

/** `tcp . 8080`, or `198.18.0.5 . tcp . 8080` (`2001:db8:18::5 . tcp . 8080`) on one host address: the key of a published port in its map. */
export function portKeyElement(m: PortPlace): string {
  return `${m.hostAddress === undefined ? '' : `${m.hostAddress} . `}${m.protocol} . ${m.hostPort}`;
}

/** `tcp . 8080 : 198.19.1.2 . 80` (prefixed by the host address on one address). */
export function portMapElement(m: PortPlace & { instancePort: number }, address: string): string {
  return `${portKeyElement(m)} : ${address} . ${m.instancePort}`;
}

/** The map holding `m`: published_host_ports when it is published on one address, else published_ports. */
export function portMapOf(m: PortPlace): string {
  return m.hostAddress === undefined ? PUBLISHED_PORTS : PUBLISHED_HOST_PORTS;
}

/** `"nnh-1a2b3c4d" . 198.19.1.2` (IfName characters need no escaping inside quotes). */
export function sourceElement(hostIfname: IfName, address: IpAddress): string {
  return `"${hostIfname}" . ${address}`;
}

function elements(verb: 'add' | 'delete', target: string, items: readonly string[]): string[] {
  return items.length === 0 ? [] : [`${verb} element ${target} { ${items.join(', ')} }`];
}

/**
 * The smallest list of the cluster's subnets with none inside another (an interval set rejects overlaps;
 * aligned subnets either nest or are disjoint), the node's own subnet always included, sorted.
 */
export function clusterSubnetElements(base: FilterBase, family: 'ip' | 'ip6' = 'ip'): string[] {
  const own = family === 'ip' ? base.ipv4?.subnet : base.ipv6?.subnet;
  const wanted = family === 'ip' ? 4 : 6;
  return disjointSubnets([...(own ? [own] : []), ...base.clusterSubnets].filter((s) => subnetFamilyOf(s) === wanted));
}

function subnetFamilyOf(s: IpSubnet): 4 | 6 {
  return s instanceof Ipv6Subnet ? 6 : 4;
}

/** The smallest list of CIDRs covering `subnets` (of one family) with none inside another, sorted. */
export function disjointSubnets(subnets: readonly IpSubnet[]): string[] {
  const unique = [...new Map(subnets.map((s) => [s.toString(), s])).values()];
  const contains = (o: IpSubnet, s: IpSubnet) =>
    o instanceof Ipv6Subnet ? s instanceof Ipv6Subnet && o.contains(s.network) : !(s instanceof Ipv6Subnet) && o.contains(s.network);
  const kept = unique.filter((s) => !unique.some((o) => o.prefixLength < s.prefixLength && contains(o, s)));
  return kept.map((s) => s.toString()).sort(compareCidr);
}

/** Orders CIDRs (or addresses) numerically; IPv6 ones by their 128-bit value. */
export function compareCidr(a: string, b: string): number {
  if (a.includes(':') || b.includes(':')) return compareCidr6(a, b);
  const n = (c: string) => c.split(/[./]/).map(Number);
  const x = n(a);
  const y = n(b);
  for (let i = 0; i < 5; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

function compareCidr6(a: string, b: string): number {
  const key = (c: string) => {
    const [addr = '', len = '128'] = c.split('/');
    return ipaddr.IPv6.isValid(addr) ? `${ipv6AsHex(addr)}/${len.padStart(3, '0')}` : c;
  };
  const x = key(a);
  const y = key(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------
// Scripts

export type Family = 'ip' | 'ip6' | 'bridge';

/** A named set or map of one of nodenet's tables, with the declaration `add set/map` gives it. */
export interface SetLayout {
  readonly kind: 'set' | 'map';
  readonly name: string;
  /** `{ type ...; flags ...; }` */
  readonly declaration: string;
}

/** A chain of one of nodenet's tables and its rules (each the text after `add rule FAMILY nodenet CHAIN `). */
export interface ChainLayout {
  readonly name: string;
  /** `{ type ... hook ... priority ...; policy ...; }` of a base chain; absent for a regular chain. */
  readonly declaration?: string;
  readonly rules: readonly string[];
}

export interface TableLayout {
  readonly family: Family;
  readonly sets: readonly SetLayout[];
  readonly chains: readonly ChainLayout[];
}

/**
 * Everything ensureBase installs, as data: both tables, their sets, maps and chains with their rules, in
 * the order they are created. The scripts below are all built from it, so that a partial repair installs
 * exactly what a full install would.
 */
export function baseLayout(input: NftBase): readonly TableLayout[] {
  const base = checkedBase(input);
  const guardOnPorts = base.loopbackGuard === 'bridge-ports';
  const loopbackComment = `comment "no instance reaches the node's loopback"`;
  const cni = `"${base.cniName}"`;
  const tables: TableLayout[] = [];
  if (base.ipv4) tables.push(ipTable(base, cni, guardOnPorts, loopbackComment));
  if (base.ipv6) tables.push(ip6Table(base, cni));
  tables.push(bridgeTable(base, guardOnPorts, loopbackComment));
  return tables;
}

function ipTable(base: NftBase, cni: string, guardOnPorts: boolean, loopbackComment: string): TableLayout {
  const subnet = base.ipv4!.subnet.toString();
  const dnat = `fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @${PUBLISHED_PORTS}`;
  // Ports published on one host address: the destination is part of the key. A lookup that finds nothing
  // ends the rule (no DNAT), so the next rule, every address, still applies.
  const dnatHost = `fib daddr type local meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @${PUBLISHED_HOST_PORTS}`;
  return {
    family: 'ip',
    sets: [
      { kind: 'map', name: PUBLISHED_PORTS, declaration: '{ type inet_proto . inet_service : ipv4_addr . inet_service; }' },
      {
        kind: 'map',
        name: PUBLISHED_HOST_PORTS,
        declaration: '{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }',
      },
      { kind: 'set', name: CLUSTER_SUBNETS, declaration: '{ type ipv4_addr; flags interval; }' },
    ],
    chains: [
      // Loopback destinations never arrive from the CNI legitimately. With route_localnet=1 on the CNI (needed
      // for the node's own 127.0.0.1 to reach published ports) the kernel would otherwise deliver them to
      // services bound to 127.0.0.1 on the node. Runs before conntrack and NAT, so it sees the header as sent.
      ...(guardOnPorts
        ? []
        : [
            {
              name: 'guard',
              declaration: '{ type filter hook prerouting priority -300; policy accept; }',
              rules: [`iifname ${cni} ip daddr ${LOOPBACK_NET} drop ${loopbackComment}`],
            },
          ]),
      {
        name: 'prerouting',
        declaration: '{ type nat hook prerouting priority -100; policy accept; }',
        rules: [`${dnatHost} comment "published ports, on one host address"`, `${dnat} comment "published ports"`],
      },
      {
        name: 'output',
        declaration: '{ type nat hook output priority -100; policy accept; }',
        rules: [
          `${dnatHost} comment "published ports, on one host address, from the node"`,
          `${dnat} comment "published ports, from the node"`,
        ],
      },
      {
        name: 'postrouting',
        declaration: '{ type nat hook postrouting priority 100; policy accept; }',
        rules: [
          // Hairpin: an instance (or the node via 127.0.0.1) reaching a published port whose DNATed packet goes
          // back into the CNI must look like the gateway, or the reply would bypass the node's un-NAT.
          `ct status dnat oifname ${cni} ip saddr { ${subnet}, ${LOOPBACK_NET} } masquerade comment "hairpin"`,
          // Egress: instance traffic leaving through another interface to outside every node's subnet. The oifname
          // test keeps bridged frames (seen here when bridge-nf-call-iptables=1, with oif = the CNI) unchanged.
          `oifname != ${cni} ip saddr ${subnet} ip daddr != @${CLUSTER_SUBNETS} masquerade comment "egress"`,
        ],
      },
    ],
  };
}

/**
 * The IPv6 twin of the ip table. No loopback guard: the kernel never routes ::1 off the node (no
 * route_localnet for IPv6), so the node reaches published ports by its own global addresses, not by ::1.
 */
function ip6Table(base: NftBase, cni: string): TableLayout {
  const subnet = base.ipv6!.subnet.toString();
  const dnat = `fib daddr type local meta l4proto { tcp, udp } dnat ip6 to meta l4proto . th dport map @${PUBLISHED_PORTS}`;
  // As in the ip table: a port on one host address first; a lookup that finds nothing falls through.
  const dnatHost = `fib daddr type local meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @${PUBLISHED_HOST_PORTS}`;
  return {
    family: 'ip6',
    sets: [
      { kind: 'map', name: PUBLISHED_PORTS, declaration: '{ type inet_proto . inet_service : ipv6_addr . inet_service; }' },
      {
        kind: 'map',
        name: PUBLISHED_HOST_PORTS,
        declaration: '{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }',
      },
      { kind: 'set', name: CLUSTER_SUBNETS, declaration: '{ type ipv6_addr; flags interval; }' },
    ],
    chains: [
      {
        // Measured (kernel of these machines): in a namespace where nothing else uses IPv6 connection tracking,
        // ip6 nat chains alone are never traversed (a published port is refused); a ct expression in a filter
        // chain turns tracking on. This rule matches nothing nodenet sends through (policy accept either way).
        name: 'conntrack',
        declaration: '{ type filter hook prerouting priority -300; policy accept; }',
        rules: ['ct state untracked accept comment "turns on IPv6 connection tracking for the nat chains"'],
      },
      {
        name: 'prerouting',
        declaration: '{ type nat hook prerouting priority -100; policy accept; }',
        rules: [`${dnatHost} comment "published ports, on one host address"`, `${dnat} comment "published ports"`],
      },
      {
        name: 'output',
        declaration: '{ type nat hook output priority -100; policy accept; }',
        rules: [
          `${dnatHost} comment "published ports, on one host address, from the node"`,
          `${dnat} comment "published ports, from the node"`,
        ],
      },
      {
        name: 'postrouting',
        declaration: '{ type nat hook postrouting priority 100; policy accept; }',
        rules: [
          `ct status dnat oifname ${cni} ip6 saddr ${subnet} masquerade comment "hairpin"`,
          ...(base.ipv6Masquerade === false
            ? []
            : [`oifname != ${cni} ip6 saddr ${subnet} ip6 daddr != @${CLUSTER_SUBNETS} masquerade comment "egress"`]),
        ],
      },
    ],
  };
}

function bridgeTable(base: NftBase, guardOnPorts: boolean, loopbackComment: string): TableLayout {
  const v6 = base.ipv6 !== undefined;
  return {
    family: 'bridge',
    sets: [
      { kind: 'set', name: ALLOWED_SOURCES, declaration: '{ type ifname . ipv4_addr; }' },
      ...(v6
        ? [
            { kind: 'set' as const, name: ALLOWED_SOURCES6, declaration: '{ type ifname . ipv6_addr; }' },
            // Typed by the lookup key: nft 1.0.6 has no NA target expression, so the target is read raw (@th,64,128).
            { kind: 'set' as const, name: ND_TARGETS, declaration: '{ typeof iifname . @th,64,128; }' },
          ]
        : []),
    ],
    chains: [
      {
        name: 'prerouting',
        // -400: before bridge conntrack (-300) and br_netfilter (0), so a dropped frame is never seen by the ip hooks.
        declaration: '{ type filter hook prerouting priority -400; policy accept; }',
        rules: GUARDED_PORT_PREFIXES.map((p) => `iifname "${p}*" jump instance_port`),
      },
      {
        name: 'instance_port',
        rules: [
          ...(guardOnPorts ? [`ip daddr ${LOOPBACK_NET} drop ${loopbackComment}`] : []),
          `iifname . ip saddr @${ALLOWED_SOURCES} accept comment "IPv4 from the port's own address"`,
          `arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . arp saddr ip @${ALLOWED_SOURCES} accept comment "ARP for the port's own address"`,
          ...(v6 ? ipv6PortRules() : []),
          // Everything else from an instance port: other sources, IPv6 without an IPv6 subnet, VLAN tags, STP, ...
          'drop comment "default deny"',
        ],
      },
    ],
  };
}

/**
 * What an instance may send in IPv6 (RA guard and ND inspection, as a switch's): no router adverts or
 * redirects (it is no router), no DHCPv6 server replies, neighbour adverts only for its own addresses (its
 * IPv6 address and its EUI-64 link-local); then only its own source addresses, except the unspecified source
 * of duplicate address detection and MLD reports sent before a link-local address exists.
 */
function ipv6PortRules(): string[] {
  // Set members in numeric order (nft lists them so; the echo keeps the script's order): 131, 135, 143.
  return [
    'icmpv6 type { nd-router-advert, nd-redirect } drop comment "no router adverts or redirects from instances"',
    'ether type ip6 udp sport 547 drop comment "no DHCPv6 server replies from instances"',
    `icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @${ND_TARGETS} drop comment "neighbour adverts only for the port's own addresses"`,
    'ip6 saddr :: icmpv6 type { mld-listener-report, nd-neighbor-solicit, mld2-listener-report } accept comment "DAD and MLD before an address"',
    `iifname . ip6 saddr @${ALLOWED_SOURCES6} accept comment "IPv6 from the port's own addresses"`,
  ];
}

/** What a repair of one table does, in this order, in one transaction (see diffBase). */
export interface TableRepair {
  readonly family: Family;
  /**
   * The table's own attributes differ (e.g. `flags dormant`): `add table` resets them, in a transaction of
   * its own before the rest (the kernel refuses to wake a dormant table and add base chains to it at once).
   */
  readonly reset?: boolean;
  /** Chains the table holds now, flushed first so that nothing references what is deleted next. */
  readonly flush: readonly string[];
  /** Chains and sets to delete: unexpected ones, and nodenet's whose declaration differs (re-added below). */
  readonly deleteChains: readonly string[];
  readonly deleteSets: readonly { readonly kind: 'set' | 'map'; readonly name: string }[];
  /** nodenet's chains to (re)create, flush and refill; the others are left as they are. */
  readonly refill: readonly string[];
}

export interface BaseRepair {
  readonly tables: readonly TableRepair[];
  /** Refill cluster_subnets (from the base). */
  readonly clusterSubnets: boolean;
}

/** The repair that installs everything: what ensureBaseScript runs. */
export function fullRepair(input: NftBase): BaseRepair {
  return {
    tables: baseLayout(input).map((t) => ({
      family: t.family,
      flush: [],
      deleteChains: [],
      deleteSets: [],
      refill: t.chains.map((c) => c.name),
    })),
    clusterSubnets: true,
  };
}

/**
 * One transaction that repairs what `repair` names and nothing else. `add` of a table, set, map or chain is a
 * no-op when it exists (and `add table` clears a `dormant` flag); a refilled chain is flushed and refilled in
 * the same transaction, so no packet sees it half-built. The published_ports map and the allowed_sources set
 * are never flushed: their elements survive (unless the set itself had to be recreated).
 */
export function repairScript(input: NftBase, repair: BaseRepair): string {
  const base = checkedBase(input);
  const layout = baseLayout(base);
  const lines: string[] = [];
  for (const r of repair.tables) {
    const table = layout.find((t) => t.family === r.family);
    if (!table) throw new InternalError("repair nodenet's nftables tables", `no table of family ${r.family}`);
    const at = `${r.family} ${TABLE}`;
    const refill = table.chains.filter((c) => r.refill.includes(c.name));
    lines.push(
      ...r.flush.map((c) => `flush chain ${at} ${checkedObjectName(c)}`),
      ...r.deleteChains.map((c) => `delete chain ${at} ${checkedObjectName(c)}`),
      ...r.deleteSets.map((s) => `delete ${s.kind} ${at} ${checkedObjectName(s.name)}`),
      `add table ${at}`,
      ...table.sets.map((s) => `add ${s.kind} ${at} ${s.name} ${s.declaration}`),
      ...refill.map((c) => `add chain ${at} ${c.name}${c.declaration ? ` ${c.declaration}` : ''}`),
      ...refill.flatMap((c) => [`flush chain ${at} ${c.name}`, ...c.rules.map((rule) => `add rule ${at} ${c.name} ${rule}`)]),
    );
  }
  if (repair.clusterSubnets) {
    for (const t of layout) {
      if (t.family !== 'bridge') lines.push(...clusterSubnetsLines(t.family, clusterSubnetElements(base, t.family)));
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * The transactions of a repair, in order: the table resets (if any), then repairScript. Each is one
 * `nft -f -`; between them a woken table runs with its chains as they were until the repair lands.
 */
export function repairScripts(input: NftBase, repair: BaseRepair): string[] {
  const resets = repair.tables.filter((t) => t.reset).map((t) => `add table ${t.family} ${TABLE}`);
  return [...(resets.length === 0 ? [] : [resets.join('\n') + '\n']), repairScript(input, repair)];
}

/**
 * Creates or converges both tables without losing elements, in one transaction: every chain is flushed
 * and refilled, cluster_subnets (wholly derived from `base`) too; the map and allowed_sources keep theirs.
 */
export function ensureBaseScript(input: NftBase): string {
  return repairScript(input, fullRepair(input));
}

/**
 * Replaces cluster_subnets' elements in one transaction, in the tables of `families` (default: ip only, the
 * sets must exist); each gets the subnets of its family.
 */
export function setClusterSubnetsScript(subnets: readonly IpSubnet[], families: readonly ('ip' | 'ip6')[] = ['ip']): string {
  const checked = subnets.map((s, i) => parseIpSubnet(s.toString(), `subnets[${i}]`));
  return (
    families
      .flatMap((f) => clusterSubnetsLines(f, disjointSubnets(checked.filter((s) => subnetFamilyOf(s) === (f === 'ip' ? 4 : 6)))))
      .join('\n') + '\n'
  );
}

function clusterSubnetsLines(family: 'ip' | 'ip6', elementsOf: readonly string[]): string[] {
  const at = `${family} ${TABLE} ${CLUSTER_SUBNETS}`;
  return [`flush set ${at}`, ...elements('add', at, elementsOf)];
}

/** Names read back from the kernel (chains or sets to flush or delete) go into a script: only plain identifiers. */
function checkedObjectName(name: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,254}$/.test(name)) {
    throw new InternalError(
      "repair nodenet's nftables tables",
      `cannot name the object ${JSON.stringify(name)} in a script: delete table ${TABLE} by hand`,
    );
  }
  return name;
}

/** Deletes both tables; absent ones are fine (`add` first makes the `delete` always succeed). */
export function removeBaseScript(): string {
  return [IP, IP6, BRIDGE].flatMap((t) => [`add table ${t}`, `delete table ${t}`]).join('\n') + '\n';
}

/**
 * Publishes the ports and admits the addresses on its port, in every family the instance has. `stale`: port
 * keys currently mapped to another address (in the map of that address's family), deleted first in the same
 * transaction.
 */
export function addInstanceScript(input: InstanceRules, stale: readonly ListedPort[] = []): string {
  const rules = checkedRules(input, 'publish ports');
  const lines: string[] = [];
  for (const [target, items] of byTarget(stale.map((p) => ({ target: portTarget(p, p.address), item: portKeyElement(p) })))) {
    lines.push(...elements('delete', target, items));
  }
  for (const f of familyElements(rules)) {
    const ports = portsTo(rules.ports, f.address);
    for (const [target, items] of byTarget(ports.map((m) => ({ target: portTarget(m, f.address), item: portMapElement(m, f.address) })))) {
      lines.push(...elements('add', target, items));
    }
    for (const src of f.sources) lines.push(...elements('add', src.target, src.items));
  }
  return lines.join('\n') + '\n';
}

/**
 * The reverse of addInstance, tolerant of elements already gone: nft 1.0.6 has no `destroy`, and a `delete`
 * of a missing element fails the whole transaction; so each element is first added (a no-op when present)
 * and then deleted. The one case this cannot cover is a port key now mapped to another address: the `add`
 * then fails ("File exists") and the caller falls back to removeListedScript.
 */
export function removeInstanceScript(input: InstanceRules): string {
  const rules = checkedRules(input, 'remove published ports');
  const lines: string[] = [];
  for (const f of familyElements(rules)) {
    const ports = portsTo(rules.ports, f.address);
    for (const [target, items] of byTarget(ports.map((m) => ({ target: portTarget(m, f.address), item: portMapElement(m, f.address) })))) {
      lines.push(...elements('add', target, items));
    }
    for (const [target, items] of byTarget(ports.map((m) => ({ target: portTarget(m, f.address), item: portKeyElement(m) })))) {
      lines.push(...elements('delete', target, items));
    }
    for (const src of f.sources) lines.push(...elements('add', src.target, src.items), ...elements('delete', src.target, src.items));
  }
  return lines.join('\n') + '\n';
}

/** What the kernel holds, as read by listing the tables (null: that table is absent). */
export interface ListedElements {
  /** The published ports of both families (an element's address tells its map). */
  readonly publishedPorts: readonly ListedPort[] | null;
  /**
   * Admitted sources of both families. An IPv6 one counts when it is in allowed_sources6 and nd_targets both
   * (missing from either, the instance's rules are incomplete and reconcile adds them again).
   */
  readonly allowedSources: readonly ListedSource[] | null;
}

export interface ListedPort {
  readonly protocol: Protocol;
  readonly hostPort: number;
  readonly address: string;
  readonly instancePort: number;
  /** Set for an element of published_host_ports. */
  readonly hostAddress?: string;
}

export interface ListedSource {
  readonly ifname: string;
  readonly address: string;
}

/** Port keys of `rules` mapped in `listed` (in each family's map) to something other than what `rules` wants. */
export function conflictingKeys(input: InstanceRules, listed: readonly ListedPort[]): ListedPort[] {
  const familyOf = (a: string) => addressFamily(a);
  const byKey = new Map(listed.map((p) => [`${familyOf(p.address)}|${portKeyElement(p)}`, p]));
  const out: ListedPort[] = [];
  for (const address of [input.ipv4, input.ipv6]) {
    if (!address) continue;
    for (const m of portsTo(input.ports, address)) {
      const held = byKey.get(`${familyOf(address)}|${portKeyElement(m)}`);
      if (held && (held.address !== address || held.instancePort !== m.instancePort)) out.push(held);
    }
  }
  return out;
}

/**
 * The fallback of removeInstance, from a listing: deletes exactly the elements that are present and belong
 * to this instance (a port key mapped to another address is left alone). Empty string: nothing to do.
 */
export function removeListedScript(input: InstanceRules, listed: ListedElements): string {
  const rules = checkedRules(input, 'remove published ports');
  const lines: string[] = [];
  for (const f of familyElements(rules)) {
    const ours = portsTo(rules.ports, f.address).filter((m) =>
      (listed.publishedPorts ?? []).some(
        (p) => portKeyElement(p) === portKeyElement(m) && p.address === f.address && p.instancePort === m.instancePort,
      ),
    );
    for (const [target, items] of byTarget(ours.map((m) => ({ target: portTarget(m, f.address), item: portKeyElement(m) })))) {
      lines.push(...elements('delete', target, items));
    }
  }
  const held = new Set((listed.allowedSources ?? []).map((s) => `${s.ifname}|${s.address}`));
  for (const address of sourceAddresses(rules)) {
    if (held.has(`${rules.hostIfname}|${address}`)) {
      for (const src of sourceTargets(rules.hostIfname, address)) lines.push(...elements('delete', src.target, src.items));
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/** The addresses admitted as sources for an instance: its addresses and, with IPv6, its link-local one. */
function sourceAddresses(rules: InstanceRules): IpAddress[] {
  return [
    ...(rules.ipv4 ? [rules.ipv4] : []),
    ...(rules.ipv6 ? [rules.ipv6] : []),
    ...(rules.ipv6 && rules.ipv6LinkLocal ? [rules.ipv6LinkLocal] : []),
  ];
}

// ---------------------------------------------------------------------------------------------------
// Elements by value (the reconcile pass's orphans)

/** `elements` validated (anything malformed is an InternalError: they come from a listing) and without duplicates. */
export function checkedElements(input: FilterElements, step: string): FilterElements {
  const ports = new Map<string, PublishedPort>();
  input.ports.forEach((p, i) => {
    if (!PROTOCOLS.includes(p.protocol)) throw new InternalError(step, `ports[${i}]: unknown protocol ${String(p.protocol)}`);
    const port: PublishedPort = {
      protocol: p.protocol,
      hostPort: parsePort(p.hostPort, `ports[${i}].hostPort`),
      address: parseIpAddress(p.address, `ports[${i}].address`),
      instancePort: parsePort(p.instancePort, `ports[${i}].instancePort`),
      ...checkedHostAddress(p.hostAddress, `ports[${i}].hostAddress`),
    };
    ports.set(`${portTarget(port, port.address)} ${portMapElement(port, port.address)}`, port);
  });
  const sources = new Map<string, AllowedSource>();
  input.sources.forEach((s, i) => {
    const source: AllowedSource = {
      ifname: parseIfName(s.ifname, `sources[${i}].ifname`),
      address: parseIpAddress(s.address, `sources[${i}].address`),
    };
    sources.set(sourceElement(source.ifname as IfName, source.address), source);
  });
  return { ports: [...ports.values()], sources: [...sources.values()] };
}

/** Groups element texts by the set or map they belong to, in a stable order. */
function byTarget(items: readonly { target: string; item: string }[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const { target, item } of items) out.set(target, [...(out.get(target) ?? []), item]);
  return out;
}

function sourceItems(sources: readonly AllowedSource[]): { target: string; item: string }[] {
  return sources.flatMap((s) =>
    sourceTargets(s.ifname as IfName, s.address).flatMap((t) => t.items.map((item) => ({ target: t.target, item }))),
  );
}

/**
 * Removes exactly these elements, tolerant of absent ones, with removeInstanceScript's trick (add, then
 * delete). A port key now mapped to another address fails the `add` ("File exists"), a missing table the
 * whole script ("No such file or directory"): the caller then falls back to removeListedElementsScript.
 */
export function removeElementsScript(input: FilterElements): string {
  const { ports, sources } = checkedElements(input, 'remove filter elements');
  const lines: string[] = [];
  for (const [target, items] of byTarget(ports.map((p) => ({ target: portTarget(p, p.address), item: portMapElement(p, p.address) })))) {
    lines.push(...elements('add', target, items));
  }
  for (const [target, items] of byTarget(ports.map((p) => ({ target: portTarget(p, p.address), item: portKeyElement(p) })))) {
    lines.push(...elements('delete', target, items));
  }
  for (const [target, items] of byTarget(sourceItems(sources))) {
    lines.push(...elements('add', target, items), ...elements('delete', target, items));
  }
  return lines.join('\n') + '\n';
}

/** The fallback of removeElements, from a listing: deletes those of `input` present with the same value. Empty string: nothing to do. */
export function removeListedElementsScript(input: FilterElements, listed: ListedElements): string {
  const { ports, sources } = checkedElements(input, 'remove filter elements');
  const heldPorts = new Set((listed.publishedPorts ?? []).map((p) => `${portTarget(p, p.address)} ${portMapElement(p, p.address)}`));
  const heldSources = new Set((listed.allowedSources ?? []).map((s) => `${s.ifname}|${s.address}`));
  const lines: string[] = [];
  const presentPorts = ports.filter((p) => heldPorts.has(`${portTarget(p, p.address)} ${portMapElement(p, p.address)}`));
  for (const [target, items] of byTarget(presentPorts.map((p) => ({ target: portTarget(p, p.address), item: portKeyElement(p) })))) {
    lines.push(...elements('delete', target, items));
  }
  const presentSources = sources.filter((s) => heldSources.has(`${s.ifname}|${s.address}`));
  for (const [target, items] of byTarget(sourceItems(presentSources))) lines.push(...elements('delete', target, items));
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
