/**
 * Durability checks shared by the durability tests and scripts/crash-stress.mjs:
 *
 * - what nodenet owns on a node (links carrying its alias, the elements of its nftables map and set, its
 *   state records) and whether those explain each other: after a restart every record has its link and
 *   elements, and every owned link and element has a record ("nothing half-made");
 * - crashing the daemon as kill -9 does (only the daemon dies; commands it started run to their end) or as
 *   a supervisor killing its whole process group does (they die too, wherever they were);
 * - the shape of nodenet's kernel objects (link indexes, nft handles) to show a restart recreated nothing;
 * - long-lived traffic (a TCP session, a pinger) that must survive the daemon being down.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Daemon, PrivateOvs, TestScope } from '@nodenet/testkit';
import { assertNamespaceName, links, nsExec, withoutVolatile } from '@nodenet/testkit';
import { addressFamily, linkLocalForMac } from '@nodenet/core';

export const OWNER_ALIAS_PREFIX = 'nodenet:';
export const CNI_LINK = 'nodenet0';
const HANDLE_RE = /^nni-[0-9a-f]{8}$/;
const HOST_RE = /^nnh-[0-9a-f]{8}$/;

// ---------------------------------------------------------------------------------------------------
// What nodenet owns

export interface RecordedPort {
  readonly protocol: string;
  readonly hostPort: number;
  readonly instancePort: number;
  /** Published on this one node address only (absent: every address). */
  readonly hostAddress?: string;
}

/** An instance record as the state dir holds it (STATE/instances/<handle>.json). */
export interface RecordedInstance {
  readonly handle: string;
  readonly hostIfname: string;
  readonly kind: string;
  /** The seed address: IPv4, or IPv6 on an IPv6-only node. */
  readonly address: string;
  /** A dual-stack instance's IPv6 address. */
  readonly ipv6Address?: string;
  /** Its MAC: its IPv6 link-local address (EUI-64) is admitted as a source too. */
  readonly mac?: string;
  readonly ports: readonly RecordedPort[];
  readonly netns?: string;
  readonly ifname?: string;
  readonly netnsId?: string;
}

export interface PublishedPortElement {
  readonly protocol: string;
  readonly hostPort: number;
  readonly address: string;
  readonly instancePort: number;
  /** Set for an element of published_host_ports (a port on one node address). */
  readonly hostAddress?: string;
}

/** `tcp/8080`, or `tcp/8080@198.18.0.5` for a port on one host address: where a published port sits. */
const portPlace = (p: { protocol: string; hostPort: number; hostAddress?: string }) =>
  `${p.protocol}/${p.hostPort}${p.hostAddress === undefined ? '' : `@${p.hostAddress}`}`;

export interface AllowedSourceElement {
  readonly ifname: string;
  readonly address: string;
}

export interface OwnedLink {
  readonly name: string;
  /** The handle its alias names (`nodenet:nni-...`). */
  readonly handle: string;
  readonly master?: string;
  readonly up: boolean;
  readonly ifindex: number;
}

export interface OwnedState {
  readonly cniRecorded: boolean;
  /** The address families the CNI record holds (what tables and elements the records call for). */
  readonly cniFamilies: { readonly ipv4: boolean; readonly ipv6: boolean };
  readonly records: readonly RecordedInstance[];
  /** Problems with the state files themselves (unreadable records, temp files a restart should have removed). */
  readonly fileProblems: readonly string[];
  /** Links whose alias is `nodenet:nni-*` (host veth ends, TAPs). */
  readonly instanceLinks: readonly OwnedLink[];
  /** Links named like nodenet's (nnh-*, nni-*) without its alias: see consistencyProblems. */
  readonly untaggedLinks: readonly { readonly name: string; readonly alias?: string }[];
  readonly ports: readonly PublishedPortElement[];
  readonly sources: readonly AllowedSourceElement[];
  /** The ip6 table's published ports (IPv6 instance addresses). */
  readonly ports6: readonly PublishedPortElement[];
  /** allowed_sources6 (IPv6 address and link-local address per instance port). */
  readonly sources6: readonly AllowedSourceElement[];
  /** nd_targets (the same pairs, the neighbour-advert targets each port may claim), addresses decoded. */
  readonly ndTargets: readonly AllowedSourceElement[];
  /** Whether `table ip nodenet` / `table bridge nodenet` exist, and `table ip6 nodenet` when it does. */
  readonly tables: { readonly ip: boolean; readonly bridge: boolean; readonly ip6?: true };
  /**
   * ovs backend: the ports of the CNI bridge in OVSDB with their owner tag (bridge membership lives there,
   * not in the kernel). Absent for iproute2, whose bridge membership is the kernel link's master.
   */
  readonly switchPorts?: readonly { readonly name: string; readonly owner?: string }[];
}

export interface ReadOwnedStateOptions {
  /** The node's private Open vSwitch (ovs backend). */
  readonly ovs?: PrivateOvs;
  readonly cniName?: string;
}

/** Reads the records of `stateDir` and what nodenet owns in namespace `ns`. */
export async function readOwnedState(ns: string, stateDir: string, options: ReadOwnedStateOptions = {}): Promise<OwnedState> {
  const [records, linkList, ipTable, bridgeTable, ip6Table, switchPorts] = await Promise.all([
    readRecords(stateDir),
    links(ns),
    listTable(ns, 'ip'),
    listTable(ns, 'bridge'),
    listTable(ns, 'ip6'),
    options.ovs ? readSwitchPorts(options.ovs, options.cniName ?? CNI_LINK) : Promise.resolve(undefined),
  ]);
  const instanceLinks: OwnedLink[] = [];
  const untaggedLinks: { name: string; alias?: string }[] = [];
  for (const l of linkList) {
    const alias = l.ifalias;
    if (alias?.startsWith(`${OWNER_ALIAS_PREFIX}nni-`)) {
      instanceLinks.push({
        name: l.ifname,
        handle: alias.slice(OWNER_ALIAS_PREFIX.length),
        ...(l.master ? { master: l.master } : {}),
        up: l.flags.includes('UP'),
        ifindex: l.ifindex,
      });
    } else if ((HOST_RE.test(l.ifname) || HANDLE_RE.test(l.ifname)) && !alias?.startsWith(OWNER_ALIAS_PREFIX)) {
      untaggedLinks.push({ name: l.ifname, ...(alias ? { alias } : {}) });
    }
  }
  return {
    cniRecorded: records.cni !== null,
    cniFamilies: { ipv4: records.cni?.ipv4 ?? false, ipv6: records.cni?.ipv6 ?? false },
    records: records.instances,
    fileProblems: records.problems,
    instanceLinks,
    untaggedLinks,
    ports: ipTable ? publishedPortsOf(ipTable) : [],
    sources: bridgeTable ? allowedSourcesOf(bridgeTable) : [],
    ports6: ip6Table ? publishedPortsOf(ip6Table) : [],
    sources6: bridgeTable ? allowedSourcesOf(bridgeTable, 'allowed_sources6') : [],
    ndTargets: bridgeTable ? ndTargetsOf(bridgeTable) : [],
    tables: { ip: ipTable !== null, bridge: bridgeTable !== null, ...(ip6Table !== null ? { ip6: true as const } : {}) },
    ...(switchPorts ? { switchPorts } : {}),
  };
}

/** The ports of `bridge` in OVSDB and their `nodenet-owner` tags (two ovs-vsctl calls). */
async function readSwitchPorts(ovs: PrivateOvs, bridge: string): Promise<{ name: string; owner?: string }[]> {
  const names = (await ovs.vsctl(['list-ports', bridge])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const listing = JSON.parse((await ovs.vsctl(['--format=json', '--columns=name,external_ids', 'list', 'Interface'])).stdout) as {
    headings: string[];
    data: [string, [string, [string, string][]]][];
  };
  const owners = new Map<string, string>();
  for (const [name, [, pairs]] of listing.data) {
    const owner = pairs.find(([k]) => k === 'nodenet-owner')?.[1];
    if (owner !== undefined) owners.set(name, owner);
  }
  return names.map((name) => {
    const owner = owners.get(name);
    return owner === undefined ? { name } : { name, owner };
  });
}

interface RecordedCniFamilies {
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

async function readRecords(
  stateDir: string,
): Promise<{ cni: RecordedCniFamilies | null; instances: RecordedInstance[]; problems: string[] }> {
  const problems: string[] = [];
  let cni: RecordedCniFamilies | null;
  try {
    const text = await readFile(join(stateDir, 'cni.json'), 'utf8');
    const record = (JSON.parse(text) as { record?: { gateway?: string; ipv6Gateway?: string } }).record;
    const seed = typeof record?.gateway === 'string' ? addressFamily(record.gateway) : 4;
    cni = { ipv4: seed === 4, ipv6: seed === 6 || typeof record?.ipv6Gateway === 'string' };
  } catch {
    cni = null;
  }
  const dir = join(stateDir, 'instances');
  let entries: string[] = [];
  try {
    entries = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`cannot list ${dir}: ${(e as Error).message}`);
  }
  const instances: RecordedInstance[] = [];
  for (const entry of entries.sort()) {
    const file = join(dir, entry);
    if (!entry.endsWith('.json')) {
      problems.push(`unexpected file ${file} in the state dir (a write a restart should have cleaned up)`);
      continue;
    }
    try {
      const envelope = JSON.parse(await readFile(file, 'utf8')) as { record?: RecordedInstance };
      const r = envelope.record;
      if (!r || typeof r.handle !== 'string' || typeof r.address !== 'string' || !Array.isArray(r.ports)) {
        problems.push(`${file} is not an instance record`);
        continue;
      }
      if (`${r.handle}.json` !== entry) problems.push(`${file} records handle ${r.handle}`);
      instances.push(r);
    } catch (e) {
      problems.push(`${file} does not parse: ${(e as Error).message}`);
    }
  }
  return { cni, instances, problems };
}

/** `nft -j list table FAMILY nodenet`, or null when there is no such table. */
async function listTable(ns: string, family: 'ip' | 'ip6' | 'bridge'): Promise<unknown[] | null> {
  const r = await nsExec(ns, 'nft', ['-j', 'list', 'table', family, 'nodenet'], { allowFailure: true });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new Error(`nft -j list table ${family} nodenet in ${ns} failed: ${r.stderr.trim()}`);
  }
  return (JSON.parse(r.stdout) as { nftables?: unknown[] }).nftables ?? [];
}

type Json = Record<string, unknown>;

/** The `elem` list of the set or map `name` in a table listing (elements with options are `{elem: {val}}`). */
function elementsOf(listing: unknown[], kind: 'set' | 'map', name: string): unknown[] {
  for (const o of listing) {
    const obj = (o as Json)[kind] as Json | undefined;
    if (obj && obj.name === name) {
      const elems = (obj.elem as unknown[] | undefined) ?? [];
      return elems.map((e) => {
        const wrapped = (e as Json | null)?.elem as Json | undefined;
        return wrapped && 'val' in wrapped ? wrapped.val : e;
      });
    }
  }
  return [];
}

function concat(value: unknown): unknown[] {
  const c = (value as Json | null)?.concat;
  return Array.isArray(c) ? c : [value];
}

function protocolName(value: unknown): string {
  if (value === 6 || value === 'tcp') return 'tcp';
  if (value === 17 || value === 'udp') return 'udp';
  return String(value);
}

export function publishedPortsOf(listing: unknown[]): PublishedPortElement[] {
  const element = (e: unknown, byHostAddress: boolean): PublishedPortElement => {
    const [key, value]: unknown[] = Array.isArray(e) ? (e as unknown[]) : [e, undefined];
    const keyParts = concat(key);
    const [protocol, hostPort] = byHostAddress ? keyParts.slice(1) : keyParts;
    const [address, instancePort] = concat(value);
    return {
      protocol: protocolName(protocol),
      hostPort: Number(hostPort),
      address: String(address),
      instancePort: Number(instancePort),
      ...(byHostAddress ? { hostAddress: String(keyParts[0]) } : {}),
    };
  };
  return [
    ...elementsOf(listing, 'map', 'published_ports').map((e) => element(e, false)),
    ...elementsOf(listing, 'map', 'published_host_ports').map((e) => element(e, true)),
  ];
}

export function allowedSourcesOf(
  listing: unknown[],
  set: 'allowed_sources' | 'allowed_sources6' = 'allowed_sources',
): AllowedSourceElement[] {
  return elementsOf(listing, 'set', set).map((e) => {
    const [ifname, address] = concat(e);
    return { ifname: String(ifname), address: String(address) };
  });
}

/** nd_targets: `ifname . 0xfd19...` pairs, the number written back as the IPv6 address it is. */
export function ndTargetsOf(listing: unknown[]): AllowedSourceElement[] {
  return elementsOf(listing, 'set', 'nd_targets').map((e) => {
    const [ifname, target] = concat(e);
    return { ifname: String(ifname), address: ipv6OfNumber(target) };
  });
}

/** An IPv6 address from the 128-bit number nft lists (`0xfd19...` or a decimal string), compressed as RFC 5952 writes it. */
function ipv6OfNumber(value: unknown): string {
  const n = BigInt(String(value));
  const groups = Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  // The longest run (2 or more) of zero groups becomes '::'.
  let best = { at: -1, length: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.length) best = { at: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.at < 0) return groups.join(':');
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.length).join(':')}`;
}

/**
 * What does not add up between records, links and elements: a record without its link (tagged with its
 * handle, on the CNI, up) or without its elements (anti-spoofing source, every published port); an owned
 * link, port or source no record explains; a link named like nodenet's without its alias; two records for
 * one address or one port. Empty when everything nodenet owns is explained and complete.
 */
export function consistencyProblems(state: OwnedState, options: { cniName?: string } = {}): string[] {
  const cniName = options.cniName ?? CNI_LINK;
  const problems: string[] = [...state.fileProblems];
  const linksByName = new Map(state.instanceLinks.map((l) => [l.name, l]));
  const recordsByHandle = new Map(state.records.map((r) => [r.handle, r]));
  const addressOwners = new Map<string, string>();
  // Per family: the map of published ports and the anti-spoofing set(s) its instance addresses go in.
  const families = {
    4: { table: 'ip', ports: elementIndex(state.ports), sets: [{ name: 'allowed_sources', elements: state.sources }] },
    6: {
      table: 'ip6',
      ports: elementIndex(state.ports6),
      sets: [
        { name: 'allowed_sources6', elements: state.sources6 },
        { name: 'nd_targets', elements: state.ndTargets },
      ],
    },
  } as const;
  const explainedPorts = { 4: new Set<string>(), 6: new Set<string>() };
  const explainedSources = new Set<string>();

  const switchPorts = state.switchPorts ? new Set(state.switchPorts.map((p) => p.name)) : undefined;
  if (state.records.length > 0 && !state.cniRecorded) problems.push('instance records exist but no CNI record');
  if (state.cniRecorded) {
    const want = { ip: state.cniFamilies.ipv4, ip6: state.cniFamilies.ipv6 };
    const have = { ip: state.tables.ip, ip6: state.tables.ip6 === true };
    if (!state.tables.bridge || want.ip !== have.ip || want.ip6 !== have.ip6) {
      problems.push(
        `nodenet's nftables tables do not match the CNI's families (want ip ${want.ip}, ip6 ${want.ip6}, bridge true; ` +
          `have ip ${have.ip}, ip6 ${have.ip6}, bridge ${state.tables.bridge})`,
      );
    }
  }

  for (const r of state.records) {
    const addresses = [r.address, ...(r.ipv6Address ? [r.ipv6Address] : [])];
    for (const a of addresses) {
      const other = addressOwners.get(a);
      if (other) problems.push(`records ${other} and ${r.handle} both hold ${a}`);
      addressOwners.set(a, r.handle);
    }
    const link = linksByName.get(r.hostIfname);
    if (!link) problems.push(`record ${r.handle} (${r.address}): its link ${r.hostIfname} is missing`);
    else {
      if (link.handle !== r.handle) problems.push(`record ${r.handle}: link ${r.hostIfname} is tagged for ${link.handle}`);
      if (switchPorts) {
        if (!switchPorts.has(r.hostIfname)) problems.push(`record ${r.handle}: ${r.hostIfname} is not a port of the switch ${cniName}`);
      } else if (link.master !== cniName)
        problems.push(`record ${r.handle}: link ${r.hostIfname} is not on ${cniName} (master ${link.master ?? 'none'})`);
      if (!link.up) problems.push(`record ${r.handle}: link ${r.hostIfname} is down`);
    }
    for (const address of addresses) {
      const family = families[addressFamily(address)];
      // An IPv6 instance also sends from its EUI-64 link-local address (neighbour discovery): admitted as well.
      const sources = addressFamily(address) === 6 && r.mac ? [address, linkLocalForMac(r.mac)] : [address];
      for (const set of family.sets) {
        const held = new Set(set.elements.map((s) => `${s.ifname}|${s.address}`));
        for (const source of sources) {
          explainedSources.add(`${set.name}|${r.hostIfname}|${source}`);
          if (!held.has(`${r.hostIfname}|${source}`))
            problems.push(`record ${r.handle} (${address}): its ${set.name} element ${r.hostIfname} . ${source} is missing`);
        }
      }
      for (const m of r.ports) {
        // A port on one host address is published only to the instance address of that address's family.
        if (m.hostAddress !== undefined && addressFamily(m.hostAddress) !== addressFamily(address)) continue;
        const key = portPlace(m);
        if (explainedPorts[addressFamily(address)].has(key))
          problems.push(`port ${key} is recorded twice in ${family.table} (again by ${r.handle})`);
        explainedPorts[addressFamily(address)].add(key);
        const el = family.ports.get(key);
        if (!el) problems.push(`record ${r.handle} (${address}): published port ${key} is missing from the ${family.table} map`);
        else if (el.address !== address || el.instancePort !== m.instancePort) {
          problems.push(
            `record ${r.handle}: ${family.table} port ${key} maps to ${el.address}:${el.instancePort}, not ${address}:${m.instancePort}`,
          );
        }
      }
    }
  }
  for (const l of state.instanceLinks) {
    const r = recordsByHandle.get(l.handle);
    if (!r || r.hostIfname !== l.name) problems.push(`owned link ${l.name} (alias ${OWNER_ALIAS_PREFIX}${l.handle}) has no record`);
  }
  for (const port of state.switchPorts ?? []) {
    if (!port.owner?.startsWith(`${OWNER_ALIAS_PREFIX}nni-`)) continue;
    const r = recordsByHandle.get(port.owner.slice(OWNER_ALIAS_PREFIX.length));
    if (!r || r.hostIfname !== port.name) problems.push(`switch port ${port.name} (owner ${port.owner}) has no record`);
  }
  for (const family of [4, 6] as const) {
    for (const p of families[family].ports.values()) {
      if (!explainedPorts[family].has(portPlace(p))) {
        problems.push(`published port ${portPlace(p)} -> ${p.address}:${p.instancePort} in ${families[family].table} has no record`);
      }
    }
    for (const set of families[family].sets) {
      for (const s of set.elements) {
        if (!explainedSources.has(`${set.name}|${s.ifname}|${s.address}`))
          problems.push(`${set.name} element ${s.ifname} . ${s.address} has no record`);
      }
    }
  }
  for (const u of state.untaggedLinks) {
    // The instance end of a veth left in the node namespace (no netns, not yet moved) is untagged by design.
    const r = recordsByHandle.get(u.name);
    if (r && !r.netns && r.kind !== 'tap') continue;
    problems.push(
      `link ${u.name} is named like nodenet's but carries no nodenet alias${u.alias ? ` (alias '${u.alias}')` : ''} and no record explains it: a half-made interface`,
    );
  }
  return problems;
}

/** Published-port elements by their place (`tcp/8080`, `tcp/8080@198.18.0.5`). */
function elementIndex(ports: readonly PublishedPortElement[]): Map<string, PublishedPortElement> {
  return new Map(ports.map((p) => [portPlace(p), p]));
}

// ---------------------------------------------------------------------------------------------------
// Shapes: to show a restart recreated nothing

export interface OwnedKernelShape {
  /** Owned links (CNI, instance ports): name -> ifindex. A recreated link gets a new index. */
  readonly links: Record<string, number>;
  /** nodenet's two tables as nft lists them, handles included, counters left out. */
  readonly nft: unknown;
}

export async function ownedKernelShape(ns: string): Promise<OwnedKernelShape> {
  const [ls, ip, bridge] = await Promise.all([links(ns), listTable(ns, 'ip'), listTable(ns, 'bridge')]);
  const owned: Record<string, number> = {};
  for (const l of ls) if (l.ifalias?.startsWith(OWNER_ALIAS_PREFIX)) owned[l.ifname] = l.ifindex;
  return { links: owned, nft: withoutVolatile([ip, bridge]) };
}

/** The handles of nodenet's tables, chains, sets, maps and rules (to name what a restart replaced). */
export function nftHandles(shape: OwnedKernelShape): string[] {
  const out: string[] = [];
  for (const listing of shape.nft as (unknown[] | null)[]) {
    for (const o of listing ?? []) {
      for (const [kind, v] of Object.entries(o as Json)) {
        const obj = v as Json;
        if (obj && typeof obj === 'object' && 'handle' in obj) {
          out.push(
            `${kind} ${String(obj.family)} ${typeof obj.chain === 'string' ? obj.chain : typeof obj.name === 'string' ? obj.name : ''} #${String(obj.handle)}`,
          );
        }
      }
    }
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------
// Crashing the daemon

export type CrashMode = 'daemon' | 'group';

export interface CrashOutcome {
  readonly mode: CrashMode;
  /** Processes the daemon had started that were running at the crash (ip, nft, conntrack, ...). */
  readonly descendants: number;
  /** How long those took to end by themselves (mode `daemon`). */
  readonly descendantsMs: number;
}

function childrenOf(pid: number): number[] {
  // /proc/PID/task/TID/children lists the children each thread forked.
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
      for (const s of text.split(/\s+/)) if (s) out.push(Number(s));
    } catch {
      // the task ended
    }
  }
  return out;
}

function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of childrenOf(queue.shift()!)) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** Running (not a zombie, not gone). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (after the parenthesised command name) is the state.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Crashes the daemon at this instant: SIGSTOP freezes it (it can start nothing more), its descendants are
 * listed, then SIGKILL. Mode `daemon` (kill -9 of the daemon alone) lets the commands it had started run
 * to their end, and waits for that before returning, as a supervisor restarting only the daemon would not
 * race them; mode `group` kills them too, wherever they were (a supervisor killing the whole group).
 */
export async function crashDaemon(daemon: Daemon, mode: CrashMode): Promise<CrashOutcome> {
  const pid = daemon.pid;
  if (pid === undefined || daemon.exit) throw new Error('crashDaemon: the daemon is not running');
  process.kill(pid, 'SIGSTOP');
  const descendants = descendantsOf(pid);
  if (mode === 'group') for (const d of descendants) killQuietly(d);
  await daemon.kill();
  const started = performance.now();
  if (mode === 'daemon') {
    const deadline = Date.now() + 15_000;
    while (descendants.some(isRunning)) {
      if (Date.now() > deadline) {
        const left = descendants.filter(isRunning);
        for (const d of left) killQuietly(d);
        throw new Error(`commands the crashed daemon had started were still running after 15 s: ${left.map(commandOf).join(', ')}`);
      }
      await sleep(5);
    }
  }
  return { mode, descendants: descendants.length, descendantsMs: Math.round(performance.now() - started) };
}

function commandOf(pid: number): string {
  try {
    return `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}`;
  } catch {
    return String(pid);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A process inside `ns` with piped stdio, tracked by the scope; `exited` resolves when it has ended. */
function spawnIn(scope: TestScope, ns: string, file: string, args: readonly string[]): { child: ChildProcess; exited: Promise<void> } {
  assertNamespaceName(ns);
  const child = spawn('ip', ['netns', 'exec', ns, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  scope.trackPid(child.pid);
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  }).then(() => scope.untrackPid(child.pid));
  return { child, exited };
}

// ---------------------------------------------------------------------------------------------------
// Traffic that has to outlive the daemon

/**
 * One TCP connection kept open (socat from `ns` to host:port, e.g. a published port whose instance runs an
 * echo server): `exchange` sends a line and waits for it to come back on the same connection. If the
 * connection breaks, socat exits and every later exchange fails.
 */
export class TcpSession {
  private buffered = '';
  private waiters: Array<() => void> = [];
  private ended = false;
  stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
  ) {
    child.stdout!.on('data', (c: Buffer) => {
      this.buffered += c.toString('utf8');
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString('utf8')));
    void exited.then(() => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(scope: TestScope, ns: string, host: string, port: number): Promise<TcpSession> {
    const { child, exited } = spawnIn(scope, ns, 'socat', ['-T', '600', '-', `${socatTcpAddress(host, port)},connect-timeout=3`]);
    const session = new TcpSession(child, exited);
    scope.defer(`tcp session ${ns} -> ${host}:${port}`, () => session.close());
    if (!(await session.exchange('hello'))) {
      throw new Error(`could not open a TCP session from ${ns} to ${host}:${port}: ${session.stderr.trim() || 'no echo'}`);
    }
    return session;
  }

  get alive(): boolean {
    return !this.ended;
  }

  /** Sends `text` (one line) and waits up to `timeoutMs` for it to be echoed back. */
  async exchange(text: string, timeoutMs = 3000): Promise<boolean> {
    if (this.ended) return false;
    const line = `${text}-${Math.random().toString(16).slice(2, 10)}\n`;
    this.child.stdin!.write(line);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.buffered.indexOf(line);
      if (at >= 0) {
        this.buffered = this.buffered.slice(at + line.length);
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.ended) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (!this.ended) this.child.kill('SIGTERM');
    await this.exited;
  }
}

/** socat's client address for host:port: `TCP:198.18.0.1:80` or `TCP6:[2001:db8:18::1]:80`. */
function socatTcpAddress(host: string, port: number): string {
  return addressFamily(host) === 6 ? `TCP6:[${host}]:${port}` : `TCP:${host}:${port}`;
}

/**
 * One TCP exchange with an echo server (socat: cheaper than a Node client when many are checked): sends a
 * line from `ns` to host:port and reports whether the same line came back.
 */
export async function tcpEchoOnce(ns: string, host: string, port: number, timeoutSec = 3): Promise<{ ok: boolean; detail: string }> {
  const line = `nnt-${Math.random().toString(16).slice(2, 14)}\n`;
  // -t: after sending, wait up to this long for the echo (the server closes once it has echoed).
  const r = await nsExec(
    ns,
    'socat',
    ['-t', String(timeoutSec), '-T', String(timeoutSec), '-', `${socatTcpAddress(host, port)},connect-timeout=${timeoutSec}`],
    {
      input: line,
      allowFailure: true,
      timeoutMs: (timeoutSec + 5) * 1000,
    },
  );
  return { ok: r.stdout.trim() === line.trim(), detail: `socat exit ${r.exitCode}: ${r.stderr.trim() || JSON.stringify(r.stdout)}` };
}

export interface PingLog {
  /** Sequence numbers answered, with the time (ms, performance.now()) the reply was printed. */
  readonly replies: ReadonlyMap<number, number>;
  /** The highest sequence number sent (as far as replies and "no answer" notices tell). */
  readonly lastSeq: number;
}

/**
 * `ping -O` from `ns` to `destination` every `intervalMs` until stopped: which requests were answered and
 * when, to show replies kept coming while the daemon was down.
 */
export class Pinger {
  private readonly replies = new Map<number, number>();
  private lastSeq = 0;
  private constructor(
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
  ) {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const seq = /icmp_seq=(\d+)/.exec(line);
      if (!seq) return;
      const n = Number(seq[1]);
      this.lastSeq = Math.max(this.lastSeq, n);
      if (/bytes from/.test(line)) this.replies.set(n, performance.now());
    });
  }

  static start(scope: TestScope, ns: string, destination: string, intervalMs = 50): Pinger {
    const { child, exited } = spawnIn(scope, ns, 'ping', ['-n', '-O', '-W', '2', '-i', String(intervalMs / 1000), destination]);
    const pinger = new Pinger(child, exited);
    scope.defer(`pinger ${ns} -> ${destination}`, () => pinger.stop().then(() => undefined));
    return pinger;
  }

  /** Replies received so far in the window [from, to] (performance.now() times). */
  repliesBetween(from: number, to: number): number {
    let n = 0;
    for (const t of this.replies.values()) if (t >= from && t <= to) n++;
    return n;
  }

  /**
   * Stops pinging after the requests sent so far had `graceMs` to be answered, and returns the log; those of
   * them still unanswered then are `lost`.
   */
  async stop(graceMs = 0): Promise<PingLog & { lost: number[] }> {
    const upTo = this.lastSeq;
    if (graceMs > 0) await sleep(graceMs);
    this.child.kill('SIGINT');
    await this.exited;
    const lost: number[] = [];
    if (graceMs > 0) for (let s = 1; s <= upTo; s++) if (!this.replies.has(s)) lost.push(s);
    return { replies: this.replies, lastSeq: this.lastSeq, lost };
  }
}
