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
  type AllowedSource,
  type FilterBase,
  type FilterElements,
  type IfName,
  type InstanceRules,
  type Ipv4Address,
  type PortMapping,
  type Protocol,
  type PublishedPort,
} from '@nodenet/core';

export const TABLE = 'nodenet';
export const PUBLISHED_PORTS = 'published_ports';
export const PUBLISHED_HOST_PORTS = 'published_host_ports';
export const CLUSTER_SUBNETS = 'cluster_subnets';
export const ALLOWED_SOURCES = 'allowed_sources';
/** Bridge ports nodenet creates: host-side veth ends and TAPs. Frames from them are default-deny. */
export const GUARDED_PORT_PREFIXES: readonly string[] = [HOST_PREFIX, HANDLE_PREFIX];

const IP = `ip ${TABLE}`;
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
}

// ---------------------------------------------------------------------------------------------------
// Validation: everything that reaches a script is re-parsed, so nothing but well-formed names, addresses
// and numbers can end up in nft's input.

export function checkedBase(base: NftBase): NftBase {
  const subnet = Subnet.parse(base.subnet.toString(), 'subnet');
  const guard = base.loopbackGuard;
  if (guard !== undefined && !LOOPBACK_GUARDS.includes(guard)) {
    throw new InternalError(
      'check the nftables base',
      `loopbackGuard ${JSON.stringify(guard)} is not one of ${LOOPBACK_GUARDS.join(', ')}`,
    );
  }
  return {
    cniName: parseIfName(base.cniName, 'cniName'),
    subnet,
    gateway: parseIpv4Address(base.gateway, 'gateway'),
    clusterSubnets: base.clusterSubnets.map((s, i) => Subnet.parse(s.toString(), `clusterSubnets[${i}]`)),
    ...(guard === undefined ? {} : { loopbackGuard: guard }),
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
      ...checkedHostAddress(m.hostAddress, `ports[${i}].hostAddress`),
    };
    const key = portKeyElement(mapping);
    if (seen.has(key)) throw new InternalError(step, `ports[${i}]: ${key} appears twice`);
    seen.add(key);
    return mapping;
  });
  return { hostIfname, address, ports };
}

// ---------------------------------------------------------------------------------------------------
// Elements

/** `{ hostAddress }` when there is one (re-parsed), else nothing: for spreading into a port. */
function checkedHostAddress(input: unknown, field: string): { hostAddress?: Ipv4Address } {
  return input === undefined ? {} : { hostAddress: parseIpv4Address(input, field) };
}

/** A published port's place: protocol and host port, and the host address when it has one. */
export interface PortPlace {
  readonly protocol: Protocol;
  readonly hostPort: number;
  readonly hostAddress?: string;
}

/** `tcp . 8080`, or `198.18.0.5 . tcp . 8080` on one host address: the key of a published port in its map. */
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

/** `verb element` lines for ports, each element in its own map (see portMapOf); none for an empty list. */
function portElements<P extends PortPlace>(verb: 'add' | 'delete', ports: readonly P[], element: (p: P) => string): string[] {
  return [PUBLISHED_PORTS, PUBLISHED_HOST_PORTS].flatMap((map) =>
    elements(verb, `${IP} ${map}`, ports.filter((p) => portMapOf(p) === map).map(element)),
  );
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
  return disjointSubnets([base.subnet, ...base.clusterSubnets]);
}

/** The smallest list of CIDRs covering `subnets` with none inside another, sorted. */
export function disjointSubnets(subnets: readonly Subnet[]): string[] {
  const unique = [...new Map(subnets.map((s) => [s.toString(), s])).values()];
  const kept = unique.filter((s) => !unique.some((o) => o.prefixLength < s.prefixLength && o.contains(s.network)));
  return kept.map((s) => s.toString()).sort(compareCidr);
}

/** Orders CIDRs (or addresses) numerically. */
export function compareCidr(a: string, b: string): number {
  const n = (c: string) => c.split(/[./]/).map(Number);
  const x = n(a);
  const y = n(b);
  for (let i = 0; i < 5; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

// ---------------------------------------------------------------------------------------------------
// Scripts

export type Family = 'ip' | 'bridge';

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
  const subnet = base.subnet.toString();
  const dnat = `fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @${PUBLISHED_PORTS}`;
  // Ports published on one host address: the destination is part of the key. A lookup that finds nothing
  // ends the rule (no DNAT), so the next rule, every address, still applies.
  const dnatHost = `fib daddr type local meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @${PUBLISHED_HOST_PORTS}`;
  return [
    {
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
    },
    {
      family: 'bridge',
      sets: [{ kind: 'set', name: ALLOWED_SOURCES, declaration: '{ type ifname . ipv4_addr; }' }],
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
            // Everything else from an instance port: other sources, IPv6 (nodenet is IPv4-only), VLAN tags, STP, ...
            'drop comment "default deny"',
          ],
        },
      ],
    },
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
  if (repair.clusterSubnets) lines.push(...clusterSubnetsLines(clusterSubnetElements(base)));
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

/** Replaces cluster_subnets' elements in one transaction (the set must exist). */
export function setClusterSubnetsScript(subnets: readonly Subnet[]): string {
  const checked = subnets.map((s, i) => Subnet.parse(s.toString(), `subnets[${i}]`));
  return clusterSubnetsLines(disjointSubnets(checked)).join('\n') + '\n';
}

function clusterSubnetsLines(elementsOf: readonly string[]): string[] {
  return [`flush set ${IP} ${CLUSTER_SUBNETS}`, ...elements('add', `${IP} ${CLUSTER_SUBNETS}`, elementsOf)];
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
  return [`add table ${IP}`, `delete table ${IP}`, `add table ${BRIDGE}`, `delete table ${BRIDGE}`].join('\n') + '\n';
}

/**
 * Publishes the ports and admits the address on its port. `replaceKeys`: port keys currently mapped to
 * another address (stale), deleted first in the same transaction.
 */
export function addInstanceScript(input: InstanceRules, replaceKeys: readonly PortPlace[] = []): string {
  const rules = checkedRules(input, 'publish ports');
  return (
    [
      ...portElements('delete', replaceKeys, portKeyElement),
      ...portElements('add', rules.ports, (m) => portMapElement(m, rules.address)),
      ...elements('add', `${BRIDGE} ${ALLOWED_SOURCES}`, [sourceElement(rules.hostIfname, rules.address)]),
    ].join('\n') + '\n'
  );
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
  return (
    [
      ...portElements('add', rules.ports, (m) => portMapElement(m, rules.address)),
      ...portElements('delete', rules.ports, portKeyElement),
      ...elements('add', `${BRIDGE} ${ALLOWED_SOURCES}`, source),
      ...elements('delete', `${BRIDGE} ${ALLOWED_SOURCES}`, source),
    ].join('\n') + '\n'
  );
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
  /** Set for an element of published_host_ports. */
  readonly hostAddress?: string;
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
      (p) => portKeyElement(p) === portKeyElement(m) && p.address === rules.address && p.instancePort === m.instancePort,
    ),
  );
  const sourcePresent = (listed.allowedSources ?? []).some((s) => s.ifname === rules.hostIfname && s.address === rules.address);
  const lines = [
    ...portElements('delete', ours, portKeyElement),
    ...elements('delete', `${BRIDGE} ${ALLOWED_SOURCES}`, sourcePresent ? [sourceElement(rules.hostIfname, rules.address)] : []),
  ];
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
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
      address: parseIpv4Address(p.address, `ports[${i}].address`),
      instancePort: parsePort(p.instancePort, `ports[${i}].instancePort`),
      ...checkedHostAddress(p.hostAddress, `ports[${i}].hostAddress`),
    };
    ports.set(portMapElement(port, port.address), port);
  });
  const sources = new Map<string, AllowedSource>();
  input.sources.forEach((s, i) => {
    const source: AllowedSource = {
      ifname: parseIfName(s.ifname, `sources[${i}].ifname`),
      address: parseIpv4Address(s.address, `sources[${i}].address`),
    };
    sources.set(sourceElement(source.ifname as IfName, source.address), source);
  });
  return { ports: [...ports.values()], sources: [...sources.values()] };
}

/**
 * Removes exactly these elements, tolerant of absent ones, with removeInstanceScript's trick (add, then
 * delete). A port key now mapped to another address fails the `add` ("File exists"), a missing table the
 * whole script ("No such file or directory"): the caller then falls back to removeListedElementsScript.
 */
export function removeElementsScript(input: FilterElements): string {
  const { ports, sources } = checkedElements(input, 'remove filter elements');
  const sourceElements = sources.map((s) => sourceElement(s.ifname as IfName, s.address));
  return (
    [
      ...portElements('add', ports, (p) => portMapElement(p, p.address)),
      ...portElements('delete', ports, portKeyElement),
      ...elements('add', `${BRIDGE} ${ALLOWED_SOURCES}`, sourceElements),
      ...elements('delete', `${BRIDGE} ${ALLOWED_SOURCES}`, sourceElements),
    ].join('\n') + '\n'
  );
}

/** The fallback of removeElements, from a listing: deletes those of `input` present with the same value. Empty string: nothing to do. */
export function removeListedElementsScript(input: FilterElements, listed: ListedElements): string {
  const { ports, sources } = checkedElements(input, 'remove filter elements');
  const heldPorts = new Set((listed.publishedPorts ?? []).map((p) => portMapElement(p, p.address)));
  const heldSources = new Set((listed.allowedSources ?? []).map((s) => sourceElement(s.ifname as IfName, s.address as Ipv4Address)));
  const lines = [
    ...portElements(
      'delete',
      ports.filter((p) => heldPorts.has(portMapElement(p, p.address))),
      portKeyElement,
    ),
    ...elements(
      'delete',
      `${BRIDGE} ${ALLOWED_SOURCES}`,
      sources.map((s) => sourceElement(s.ifname as IfName, s.address)).filter((e) => heldSources.has(e)),
    ),
  ];
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
