/**
 * The OpenFlow pipeline of the CNI bridge, as pure functions (so tests read every flow), and the cookies
 * that say who owns a flow.
 *
 *   table 0  classify   default drop; the gateway (LOCAL) goes on; an instance port only with its own
 *                       IPv4 / ARP source address (anti-spoofing) and, with IPv6, its own IPv6 and
 *                       link-local sources, RA guard and ND inspection (instanceIpv6Flows); the tunnel port
 *                       only from a known peer with a source in that peer's subnet (overlay flows)
 *   table 10 forward    a peer's subnet: set the tunnel destination, out the tunnel port (overlay flows);
 *                       everything else: NORMAL (L2 switching among the instances and the gateway)
 *   table 30 deliver    from the tunnel: to the gateway (LOCAL) or to an instance's port, MACs rewritten
 *                       as a router would; anything else is dropped (IPv4 and IPv6 alike: a peer's flows exist
 *                       per subnet it has, all under its one cookie)
 *
 * Flows are written in the form ovs-ofctl prints for OpenFlow 1.5 (`set_field:...->eth_dst`), and every
 * ovs-ofctl call uses `-O OpenFlow15`, so a dump reads back as written.
 *
 * Cookies: 0x6e6e ('nn') | owner class (1 byte) | 0 | 32-bit id. The dataplane owns the base class and the
 * instance class (id: the handle's 8 hex digits); the overlay owns the peer class (id: the peer's underlay
 * IPv4 address; over an IPv6 underlay its last 32 bits, which peers never share since their VTEP MACs are
 * made of them). A reconcile pass compares and repairs only its own classes; flows of other owners, and
 * flows nodenet did not make, are never touched.
 */
import {
  InternalError,
  addressFamily,
  linkLocalForMac,
  parseIpv4Address,
  subnetFamily,
  subnetsOfNode,
  type IfName,
  type IpAddress,
  type Ipv4Address,
  type Ipv6Address,
  type Ipv6Subnet,
  type Subnet,
} from '@nodenet/core';
import { addressToInt } from './names.js';

export const TABLE = { classify: 0, forward: 10, deliver: 30 } as const;

export const COOKIE_CLASS = { base: 0x00, instance: 0x01, peer: 0x03 } as const;
export type CookieClass = (typeof COOKIE_CLASS)[keyof typeof COOKIE_CLASS];

const COOKIE_PREFIX = 0x6e6en << 48n;
const CLASS_MASK = 0xffffff0000000000n;
const ID_MASK = 0xffffffffn;

export function cookieOf(cls: CookieClass, id: number): bigint {
  return COOKIE_PREFIX | (BigInt(cls) << 40n) | (BigInt(id >>> 0) & ID_MASK);
}

/** `0x6e6e010000001a2b`: how ovs-ofctl prints a cookie (lower case, no padding) and accepts one. */
export function formatCookie(cookie: bigint): string {
  return `0x${cookie.toString(16)}`;
}

/** The class of a cookie nodenet made, or undefined for anyone else's. */
export function cookieClassOf(cookie: bigint): CookieClass | undefined {
  if ((cookie & 0xffff000000000000n) !== COOKIE_PREFIX || (cookie & 0x000000ff00000000n) !== 0n) return undefined;
  const cls = Number((cookie >> 40n) & 0xffn);
  return (Object.values(COOKIE_CLASS) as number[]).includes(cls) ? (cls as CookieClass) : undefined;
}

export function cookieIdOf(cookie: bigint): number {
  return Number(cookie & ID_MASK);
}

/** `cookie=C/MASK` selecting one class (for dump-flows / del-flows). */
export function classSelector(cls: CookieClass): string {
  return `cookie=${formatCookie(cookieOf(cls, 0))}/${formatCookie(CLASS_MASK)}`;
}

/** A class's cookie and mask, for OpenFlow requests that select it (flow stats, aggregate stats). */
export function classCookieMatch(cls: CookieClass): { readonly cookie: bigint; readonly cookieMask: bigint } {
  return { cookie: cookieOf(cls, 0), cookieMask: CLASS_MASK };
}

/** `cookie=C/-1` selecting exactly one cookie. */
export function cookieSelector(cookie: bigint): string {
  return `cookie=${formatCookie(cookie)}/-1`;
}

const HANDLE_RE = /^nni-([0-9a-f]{8})$/;

export function instanceCookie(handle: IfName | string): bigint {
  const m = HANDLE_RE.exec(handle);
  if (!m) throw new InternalError('build instance flows', `'${handle}' is not an instance handle (nni- and 8 hex digits)`);
  return cookieOf(COOKIE_CLASS.instance, parseInt(m[1]!, 16));
}

export function peerCookie(underlayAddress: IpAddress): bigint {
  if (addressFamily(underlayAddress) === 4) return cookieOf(COOKIE_CLASS.peer, addressToInt(underlayAddress));
  const groups = expandIpv6(underlayAddress);
  return cookieOf(COOKIE_CLASS.peer, ((groups[6]! << 16) | groups[7]!) >>> 0);
}

/** The eight 16-bit groups of an IPv6 address in text (validated before it gets here). */
function expandIpv6(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const part = (t: string) => (t === '' ? [] : t.split(':').map((g) => parseInt(g, 16)));
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
}

/** The underlay address a peer cookie names (over an IPv4 underlay; over IPv6 it holds the last 32 bits). */
export function underlayOfPeerCookie(cookie: bigint): Ipv4Address {
  const n = cookieIdOf(cookie);
  return parseIpv4Address([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'), 'peer cookie');
}

// ---------------------------------------------------------------------------------------------------
// Flows

export interface Flow {
  readonly cookie: bigint;
  readonly table: number;
  readonly priority: number;
  /** Match fields, comma-separated, without table and priority (empty: match everything). */
  readonly match: string;
  readonly actions: string;
}

export function formatFlow(f: Flow): string {
  return `cookie=${formatCookie(f.cookie)},table=${f.table},priority=${f.priority}${f.match ? `,${f.match}` : ''},actions=${f.actions}`;
}

/** Characters a flow built here may contain: every value in it is a validated address, MAC, number or name. */
const FLOW_TEXT_RE = /^[A-Za-z0-9_.:,=/>()-]+$/;

function flow(cookie: bigint, table: number, priority: number, match: string, actions: string): Flow {
  const f = { cookie, table, priority, match, actions };
  if (!FLOW_TEXT_RE.test(`${match},${actions}`))
    throw new InternalError('build flows', `refusing to write flow ${formatFlow(f)}: unexpected characters`);
  return f;
}

/** What the base flows need to know about the CNI (`gateway`: its IPv4 gateway, none on an IPv6-only CNI; `ipv6Gateway` likewise). */
export interface BaseFlowSpec {
  readonly gateway?: Ipv4Address;
  readonly ipv6Gateway?: Ipv6Address;
  readonly gatewayMac: string;
}

/** The dataplane's flows that exist once per bridge. */
export function baseFlows(spec: BaseFlowSpec): Flow[] {
  const c = cookieOf(COOKIE_CLASS.base, 0);
  return [
    flow(c, TABLE.classify, 0, '', 'drop'),
    flow(c, TABLE.classify, 100, 'in_port=LOCAL', `goto_table:${TABLE.forward}`),
    flow(c, TABLE.forward, 0, '', 'NORMAL'),
    flow(c, TABLE.deliver, 0, '', 'drop'),
    ...(spec.gateway === undefined
      ? []
      : [flow(c, TABLE.deliver, 100, `ip,nw_dst=${spec.gateway}`, `set_field:${spec.gatewayMac}->eth_dst,output:LOCAL`)]),
    ...(spec.ipv6Gateway === undefined
      ? []
      : [flow(c, TABLE.deliver, 100, `ipv6,ipv6_dst=${spec.ipv6Gateway}`, `set_field:${spec.gatewayMac}->eth_dst,output:LOCAL`)]),
  ];
}

/** What an instance's flows need: its handle (the cookie), port number, addresses (one per family it has) and MAC. */
export interface InstanceFlowSpec {
  readonly handle: IfName | string;
  readonly ofport: number;
  readonly ipv4?: Ipv4Address;
  readonly ipv6?: Ipv6Address;
  readonly mac: string;
}

/**
 * Anti-spoofing per family the instance has (IPv4: only its own IPv4 and ARP source address leave its port;
 * IPv6: see instanceIpv6Flows; a family it lacks, and everything else, falls to the default drop), and
 * delivery of traffic from other nodes to it (per family it has), routed: source MAC the gateway's,
 * destination MAC the instance's, TTL (hop limit) decremented as a router does.
 */
export function instanceFlows(i: InstanceFlowSpec, gatewayMac: string): Flow[] {
  const c = instanceCookie(i.handle);
  const port = checkedOfport(i.ofport);
  if (i.ipv4 === undefined && i.ipv6 === undefined)
    throw new InternalError('build instance flows', `${i.handle} has no address: an instance has at least one`);
  const flows: Flow[] = [];
  if (i.ipv4 !== undefined) {
    flows.push(
      flow(c, TABLE.classify, 200, `ip,in_port=${port},nw_src=${i.ipv4}`, `goto_table:${TABLE.forward}`),
      flow(c, TABLE.classify, 200, `arp,in_port=${port},arp_spa=${i.ipv4}`, `goto_table:${TABLE.forward}`),
      flow(c, TABLE.deliver, 100, `ip,nw_dst=${i.ipv4}`, routedTo(gatewayMac, i.mac, port)),
    );
  }
  if (i.ipv6 !== undefined) {
    flows.push(
      ...instanceIpv6Flows(c, port, i.ipv6, i.mac),
      flow(c, TABLE.deliver, 100, `ipv6,ipv6_dst=${i.ipv6}`, routedTo(gatewayMac, i.mac, port)),
    );
  }
  return flows;
}

/** The actions of a router's last hop: MACs rewritten, TTL (hop limit) decremented, out the instance's port. */
function routedTo(gatewayMac: string, mac: string, port: number): string {
  return `set_field:${gatewayMac}->eth_src,set_field:${mac}->eth_dst,dec_ttl,output:${port}`;
}

/**
 * What an instance may send in IPv6, as the iproute2 backend's bridge filter allows it (@nodenet/nftables'
 * instance_port chain), as a switch's RA guard and ND inspection: no router adverts or redirects (it is no
 * router) and no DHCPv6 server replies (300); neighbour adverts only from and for its own addresses, its IPv6
 * address and the EUI-64 link-local address of its MAC (250; any other advert: 240); duplicate address
 * detection for its own addresses and MLD reports from the unspecified source, sent before an address is
 * usable (230); then any IPv6 from its own addresses (200). The rest falls to the default drop.
 */
function instanceIpv6Flows(c: bigint, port: number, address: Ipv6Address, mac: string): Flow[] {
  const own = [address, linkLocalForMac(mac)];
  const next = `goto_table:${TABLE.forward}`;
  const icmp6 = `icmp6,in_port=${port}`;
  return [
    flow(c, TABLE.classify, 300, `${icmp6},icmp_type=134`, 'drop'),
    flow(c, TABLE.classify, 300, `${icmp6},icmp_type=137`, 'drop'),
    flow(c, TABLE.classify, 300, `udp6,in_port=${port},tp_src=547`, 'drop'),
    // nd_target needs its prerequisites spelled out: an advert or a solicitation, ICMPv6 code 0.
    ...own.flatMap((source) =>
      own.map((target) => flow(c, TABLE.classify, 250, `${icmp6},ipv6_src=${source},icmp_type=136,icmp_code=0,nd_target=${target}`, next)),
    ),
    flow(c, TABLE.classify, 240, `${icmp6},icmp_type=136`, 'drop'),
    ...own.map((target) => flow(c, TABLE.classify, 230, `${icmp6},ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=${target}`, next)),
    // MLD reports (v1 131, v2 143) from :: (RFC 3590: a host may send them before it has a link-local address).
    flow(c, TABLE.classify, 230, `${icmp6},ipv6_src=::,icmp_type=131`, next),
    flow(c, TABLE.classify, 230, `${icmp6},ipv6_src=::,icmp_type=143`, next),
    ...own.map((source) => flow(c, TABLE.classify, 200, `ipv6,in_port=${port},ipv6_src=${source}`, next)),
  ];
}

/** What a peer's flows need: its underlay address (either family) and its subnets (at least one). */
export interface PeerFlowSpec {
  readonly underlayAddress: IpAddress;
  readonly subnet?: Subnet;
  readonly ipv6Subnet?: Ipv6Subnet;
}

/**
 * A peer: its tunnel packets are accepted (only with a source inside one of its subnets) and delivered;
 * traffic to its subnets goes to it through the tunnel port, IPv4 and IPv6 alike (one tunnel, one cookie).
 * The node's own traffic (from LOCAL) was routed by the kernel already, so only instance traffic has its TTL
 * decremented here (the receiving node decrements once more): TTLs come out as with the iproute2 backend.
 * Over an IPv6 underlay the tunnel fields are the IPv6 ones (tun_ipv6_src, tun_ipv6_dst).
 */
export function peerFlows(peer: PeerFlowSpec, tunnelOfport: number): Flow[] {
  const c = peerCookie(peer.underlayAddress);
  const tun = checkedOfport(tunnelOfport);
  const v6Underlay = addressFamily(peer.underlayAddress) === 6;
  const tunSrc = `${v6Underlay ? 'tun_ipv6_src' : 'tun_src'}=${peer.underlayAddress}`;
  const toPeer = `set_field:${peer.underlayAddress}->${v6Underlay ? 'tun_ipv6_dst' : 'tun_dst'},output:${tun}`;
  const subnets = subnetsOfNode(peer);
  if (subnets.length === 0) throw new InternalError('build peer flows', `peer ${peer.underlayAddress} has no subnet`);
  return subnets.flatMap((s) => {
    const [proto, src, dst] = subnetFamily(s) === 6 ? ['ipv6', 'ipv6_src', 'ipv6_dst'] : ['ip', 'nw_src', 'nw_dst'];
    return [
      flow(c, TABLE.classify, 150, `${proto},${tunSrc},in_port=${tun},${src}=${s}`, `goto_table:${TABLE.deliver}`),
      flow(c, TABLE.forward, 110, `${proto},in_port=LOCAL,${dst}=${s}`, toPeer),
      flow(c, TABLE.forward, 100, `${proto},${dst}=${s}`, `dec_ttl,${toPeer}`),
    ];
  });
}

function checkedOfport(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 0xfeff) throw new InternalError('build flows', `${n} is not an OpenFlow port number`);
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Flow-mod scripts (`ovs-ofctl --bundle add-flows BRIDGE -`: one atomic transaction)

export function addFlowsScript(flows: readonly Flow[]): string {
  return flows.map((f) => `add ${formatFlow(f)}\n`).join('');
}

/** Deletes every flow carrying one of the cookies. */
export function deleteCookiesScript(cookies: readonly bigint[]): string {
  return cookies.map((c) => `delete ${cookieSelector(c)}\n`).join('');
}

/** A difference `ovs-ofctl diff-flows SWITCH FILE` reported. */
export interface FlowDifference {
  /** `-`: only on the switch (to delete); `+`: only in the file (to add). */
  readonly sign: '-' | '+';
  /** The flow as printed (`[table=N ]priority=P[,MATCH] cookie=C actions=A`). */
  readonly text: string;
  readonly cookie: bigint;
  /** `table=N priority=P[,MATCH]`: what a strict delete names. */
  readonly key: string;
}

/** Parses diff-flows output (lines `-FLOW` and `+FLOW`). */
export function parseFlowDiff(output: string): FlowDifference[] {
  const out: FlowDifference[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trimEnd();
    if (line === '') continue;
    const sign = line[0];
    if (sign !== '-' && sign !== '+') continue;
    const text = line.slice(1).trim();
    const cookieMatch = /(?:^|[\s,])cookie=(0x[0-9a-fA-F]+|\d+)/.exec(text);
    const cookie = cookieMatch ? BigInt(cookieMatch[1]!) : 0n;
    const keyEnd = text.search(/[\s,](cookie|actions)=/);
    let key = (keyEnd < 0 ? text : text.slice(0, keyEnd)).trim();
    if (!/^table=/.test(key)) key = `table=0 ${key}`;
    out.push({ sign, text, cookie, key });
  }
  return out;
}

/**
 * The flow-mods that bring the classes `owned` to what the file held: deletes of the switch's extra (or
 * different) flows first, then adds. Differences in other classes (the overlay's, anyone else's) are left.
 */
export function repairFlowsScript(
  diff: readonly FlowDifference[],
  owned: readonly CookieClass[],
): { script: string; removed: number; added: number } {
  const ours = (d: FlowDifference) => {
    const cls = cookieClassOf(d.cookie);
    return cls !== undefined && owned.includes(cls);
  };
  const deletes = diff.filter((d) => d.sign === '-' && ours(d));
  const adds = diff.filter((d) => d.sign === '+' && ours(d));
  const script = [...deletes.map((d) => `delete_strict ${d.key}\n`), ...adds.map((d) => `add ${d.text}\n`)].join('');
  return { script, removed: deletes.length, added: adds.length };
}

/** The cookies of a dump (`ovs-ofctl dump-flows`), each once. */
export function cookiesOfDump(output: string): bigint[] {
  const seen = new Set<bigint>();
  for (const m of output.matchAll(/(?:^|[\s,])cookie=(0x[0-9a-fA-F]+)/gm)) seen.add(BigInt(m[1]!));
  return [...seen];
}

// ---------------------------------------------------------------------------------------------------
// Priming the userspace datapath's tunnel neighbour cache

/**
 * The packet-out that makes ovs-vswitchd resolve a peer's underlay MAC now. The userspace datapath learns a
 * tunnel destination's MAC by ARP only when a packet to it is translated, and drops that packet (measured:
 * the first ping to a new peer, and its reply on the way back, were lost). Sent when a peer is programmed,
 * this packet takes the loss instead (sent over the bridge's OpenFlow connection, ovs-ofctl's packet-out text). It is an empty IPv4 packet from 0.0.0.0: if the neighbour is already
 * known it crosses the tunnel and the peer drops it (its classifier admits only sources in this node's subnet).
 */
export function primingPacketOut(peerUnderlay: IpAddress, tunnelOfport: number): string {
  const port = checkedOfport(tunnelOfport);
  const tunDst = addressFamily(peerUnderlay) === 6 ? 'tun_ipv6_dst' : 'tun_dst';
  return `in_port=LOCAL,packet=${primingPacketHex(peerUnderlay)},actions=set_field:${peerUnderlay}->${tunDst},output:${port}`;
}

/** The inner packet: an empty IPv4 packet from 0.0.0.0 to the peer's address (to 0.0.0.0 over an IPv6 underlay). */
export function primingPacketHex(destination: IpAddress): string {
  const dst = addressFamily(destination) === 6 ? [0, 0, 0, 0] : destination.split('.').map(Number);
  const header = [0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x40, 0xfd, 0x00, 0x00, 0, 0, 0, 0, ...dst];
  let sum = 0;
  for (let i = 0; i < header.length; i += 2) sum += (header[i]! << 8) | header[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const checksum = ~sum & 0xffff;
  header[10] = checksum >>> 8;
  header[11] = checksum & 0xff;
  const hex = (bytes: number[]) => bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
  // Broadcast destination, a locally administered source MAC, IPv4.
  return `ffffffffffff020000000000${'0800'}${hex(header)}`;
}
