/**
 * Reading back what the kernel holds, from `nft -j list ...` output (pure, unit-tested):
 * - the elements of published_ports and allowed_sources (listElements, and the fallback paths of
 *   addInstance / removeInstance, never per request). Elements that do not parse are skipped: they cannot
 *   be nodenet's, so they are never deleted on their account;
 * - the shape of nodenet's tables (declarations and rules, without elements) and cluster_subnets'
 *   contents, which ensureBase compares with what it would install (see drift.ts).
 */
import { addressFamily, parseIpAddress, type AllowedSource, type FilterElements, type Protocol, type PublishedPort } from '@nodenet/core';
import {
  ALLOWED_SOURCES,
  ALLOWED_SOURCES6,
  ND_TARGETS,
  ipv6FromHex,
  CLUSTER_SUBNETS,
  PUBLISHED_HOST_PORTS,
  PUBLISHED_PORTS,
  TABLE,
  compareCidr,
  type Family,
  type ListedElements,
  type ListedPort,
  type ListedSource,
} from './script.js';

type Json = unknown;

/** The objects (`{"map": ...}`, `{"set": ...}`, ...) of an `nft -j` document. */
function objects(json: string): Record<string, Json>[] {
  const doc = JSON.parse(json) as { nftables?: unknown };
  return Array.isArray(doc.nftables) ? (doc.nftables as Record<string, Json>[]) : [];
}

function named(json: string, kind: 'map' | 'set', name: string): Record<string, Json> | null {
  for (const o of objects(json)) {
    const body = o[kind] as Record<string, Json> | undefined;
    if (body && body.name === name) return body;
  }
  return null;
}

/** Unwraps `{"elem": {"val": X, "counter": ...}}` (elements with options) to X. */
function value(e: Json): Json {
  if (e && typeof e === 'object' && 'elem' in e) return value((e as { elem: { val?: Json } }).elem.val);
  return e;
}

function concat(e: Json): Json[] | null {
  const v = value(e);
  if (v && typeof v === 'object' && Array.isArray((v as { concat?: unknown }).concat)) return (v as { concat: Json[] }).concat;
  return null;
}

const PROTOCOL_NUMBERS: Record<string, Protocol> = { '6': 'tcp', '17': 'udp', tcp: 'tcp', udp: 'udp' };

function protocol(v: Json): Protocol | null {
  return PROTOCOL_NUMBERS[String(v)] ?? null;
}

function port(v: Json): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : null;
}

/** The published_ports elements of `nft -j list table ip nodenet` output; null when the map is absent. */
export function parsePublishedPorts(json: string): ListedPort[] | null {
  return parsePortMap(json, PUBLISHED_PORTS, false);
}

/** The published_host_ports elements (ports on one host address); null when the map is absent. */
export function parsePublishedHostPorts(json: string): ListedPort[] | null {
  return parsePortMap(json, PUBLISHED_HOST_PORTS, true);
}

/** Elements `[HOST_ADDRESS .] PROTOCOL . PORT : ADDRESS . PORT` of the map `name`. */
function parsePortMap(json: string, name: string, byHostAddress: boolean): ListedPort[] | null {
  const map = named(json, 'map', name);
  if (!map) return null;
  const out: ListedPort[] = [];
  for (const e of Array.isArray(map.elem) ? map.elem : []) {
    if (!Array.isArray(e) || e.length !== 2) continue;
    const fullKey = concat(e[0]);
    const data = concat(e[1]);
    if (!fullKey || !data || fullKey.length !== (byHostAddress ? 3 : 2) || data.length !== 2) continue;
    const hostAddress = byHostAddress ? fullKey[0] : undefined;
    const key = byHostAddress ? fullKey.slice(1) : fullKey;
    const p = protocol(key[0]);
    const hostPort = port(key[1]);
    const instancePort = port(data[1]);
    if (!p || hostPort === null || instancePort === null || typeof data[0] !== 'string') continue;
    if (byHostAddress && typeof hostAddress !== 'string') continue;
    out.push({ protocol: p, hostPort, address: data[0], instancePort, ...(typeof hostAddress === 'string' ? { hostAddress } : {}) });
  }
  return out;
}

/**
 * The IPv6 admitted sources of `nft -j list table bridge nodenet`-style output holding allowed_sources6 and
 * nd_targets (one listing each is fine: pass both documents): the pairs in both sets; null when allowed_sources6
 * is absent.
 */
export function parseAllowedSources6(sourcesJson: string, targetsJson: string | null): ListedSource[] | null {
  const sources = parseAllowedSources(sourcesJson, ALLOWED_SOURCES6);
  if (sources === null) return null;
  const targets = new Set<string>();
  const set = targetsJson === null ? null : named(targetsJson, 'set', ND_TARGETS);
  for (const e of set && Array.isArray(set.elem) ? set.elem : []) {
    const parts = concat(e);
    if (!parts || parts.length !== 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') continue;
    const address = ipv6FromHex(parts[1]);
    if (address) targets.add(`${parts[0]}|${address}`);
  }
  return sources.filter((s) => targets.has(`${s.ifname}|${s.address}`));
}

/** The allowed_sources elements of `nft -j list table bridge nodenet` output; null when the set is absent. */
export function parseAllowedSources(json: string, name: string = ALLOWED_SOURCES): ListedSource[] | null {
  const set = named(json, 'set', name);
  if (!set) return null;
  const out: ListedSource[] = [];
  for (const e of Array.isArray(set.elem) ? set.elem : []) {
    const parts = concat(e);
    if (!parts || parts.length !== 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') continue;
    out.push({ ifname: parts[0], address: parts[1] });
  }
  return out;
}

/** Number of rules in an `nft -j list ...` document (for tests and diagnostics). */
export function countRules(json: string): number {
  return objects(json).filter((o) => 'rule' in o).length;
}

/** The elements as core's FilterElements (absent tables read as empty); addresses that do not parse are skipped. */
export function filterElements(listed: ListedElements): FilterElements {
  const ports: PublishedPort[] = [];
  for (const p of listed.publishedPorts ?? []) {
    const address = addressOrNull(p.address);
    const hostAddress = p.hostAddress === undefined ? undefined : addressOrNull(p.hostAddress);
    // A host address is published to the instance address of its family only (anything else is not nodenet's).
    if (!address || hostAddress === null || (hostAddress !== undefined && addressFamily(hostAddress) !== addressFamily(address))) continue;
    ports.push({
      protocol: p.protocol,
      hostPort: p.hostPort,
      address,
      instancePort: p.instancePort,
      ...(hostAddress ? { hostAddress } : {}),
    });
  }
  const sources: AllowedSource[] = [];
  for (const s of listed.allowedSources ?? []) {
    const address = addressOrNull(s.address);
    if (address) sources.push({ ifname: s.ifname, address });
  }
  return { ports, sources };
}

function addressOrNull(s: string) {
  try {
    return parseIpAddress(s, 'address');
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Shapes: what ensureBase compares. Each object is reduced to what defines its behaviour: handles (which
// change on every rewrite), elements (instances' data, not the base's) and the names that place it are
// dropped; the rest is kept as canonical JSON (keys sorted), so that anything nft reports about a rule, a
// chain or a set takes part in the comparison without this code knowing nft's expression grammar.

export interface RuleShape {
  /** Canonical JSON of the rule without handle and placement: its expressions, comment, ... */
  readonly body: string;
  readonly comment?: string;
}

export interface ChainShape {
  /** Canonical JSON of the chain's declaration (type, hook, prio, policy, ...); `{}` for a regular chain. */
  readonly declaration: string;
  /** The declaration as a person reads it (for repair reports). */
  readonly described: string;
  readonly rules: readonly RuleShape[];
}

export interface SetShape {
  readonly kind: 'set' | 'map';
  readonly declaration: string;
  readonly described: string;
}

export interface TableShape {
  readonly family: Family;
  /** Canonical JSON of the table's own attributes (flags such as dormant). */
  readonly attributes: string;
  readonly chains: ReadonlyMap<string, ChainShape>;
  readonly sets: ReadonlyMap<string, SetShape>;
}

/** nodenet's tables as listed; null: absent; a family left out: not part of this base (the ip6 table of an IPv4-only node). */
export type BaseShape = { readonly bridge: TableShape | null } & Partial<Record<'ip' | 'ip6', TableShape | null>>;

/** The shape of nodenet's table of `family` in an `nft -j [-t] list table FAMILY nodenet` document (null: not in it). */
export function parseTableShape(json: string, family: Family): TableShape | null {
  return shapeOf(objects(json), family);
}

/**
 * The shapes of nodenet's tables in the output of `nft -j --echo -f -` (every object the transaction added,
 * as the kernel reports it back: `{"add": {"rule": ...}}`).
 */
export function parseEchoShapes(json: string): BaseShape {
  const added = objects(json).flatMap((o) => (o.add && typeof o.add === 'object' ? [o.add as Record<string, Json>] : []));
  const ip6 = shapeOf(added, 'ip6');
  return { ip: shapeOf(added, 'ip'), ...(ip6 ? { ip6 } : {}), bridge: shapeOf(added, 'bridge') };
}

/** Only the named chains and sets of `shape` (to take nodenet's own objects as a reference, without extras). */
export function restrictShape(shape: TableShape, chains: readonly string[], sets: readonly string[]): TableShape {
  return {
    family: shape.family,
    attributes: shape.attributes,
    chains: new Map([...shape.chains].filter(([name]) => chains.includes(name))),
    sets: new Map([...shape.sets].filter(([name]) => sets.includes(name))),
  };
}

const PLACEMENT = ['family', 'table', 'name', 'chain', 'handle'];

function shapeOf(list: readonly Record<string, Json>[], family: Family): TableShape | null {
  const ours = (body: Record<string, Json>, tableKey: 'name' | 'table') => body.family === family && body[tableKey] === TABLE;
  let attributes: string | null = null;
  const chains = new Map<string, { declaration: string; described: string; rules: RuleShape[] }>();
  const sets = new Map<string, SetShape>();
  const rules: { chain: string; rule: RuleShape }[] = [];
  for (const o of list) {
    const [kind, raw] = Object.entries(o)[0] ?? [];
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) continue;
    const body = raw as Record<string, Json>;
    if (kind === 'table' && ours(body, 'name')) {
      attributes = canonical(without(body, PLACEMENT));
    } else if (kind === 'chain' && ours(body, 'table') && typeof body.name === 'string') {
      const declaration = without(body, PLACEMENT);
      chains.set(body.name, { declaration: canonical(declaration), described: describeChain(declaration), rules: [] });
    } else if ((kind === 'set' || kind === 'map') && ours(body, 'table') && typeof body.name === 'string') {
      const declaration = without(body, [...PLACEMENT, 'elem']);
      sets.set(body.name, { kind, declaration: canonical(declaration), described: describeSet(declaration) });
    } else if (kind === 'rule' && ours(body, 'table') && typeof body.chain === 'string') {
      const comment = typeof body.comment === 'string' ? body.comment : undefined;
      rules.push({ chain: body.chain, rule: { body: canonical(without(body, PLACEMENT)), ...(comment === undefined ? {} : { comment }) } });
    }
  }
  if (attributes === null) return null;
  // Rules come in chain order, after their chains (both in listings and in echo output).
  for (const { chain, rule } of rules) chains.get(chain)?.rules.push(rule);
  return { family, attributes, chains, sets };
}

function without(body: Record<string, Json>, keys: readonly string[]): Record<string, Json> {
  return Object.fromEntries(Object.entries(body).filter(([k]) => !keys.includes(k)));
}

/** JSON with object keys sorted (array order kept: it matters in expressions). */
export function canonical(value: Json): string {
  return JSON.stringify(value, (_key, v: Json) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** A scalar as nft prints it; anything else as canonical JSON (never `[object Object]`). */
function text(v: Json): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : canonical(v);
}

function describeChain(d: Record<string, Json>): string {
  if (Object.keys(d).length === 0) return 'a regular chain';
  const parts: string[] = [];
  if (d.type !== undefined) parts.push(`type ${text(d.type)}`);
  if (d.hook !== undefined) parts.push(`hook ${text(d.hook)}`);
  if (d.prio !== undefined) parts.push(`priority ${text(d.prio)}`);
  if (d.policy !== undefined) parts.push(`policy ${text(d.policy)}`);
  const rest = without(d, ['type', 'hook', 'prio', 'policy']);
  if (Object.keys(rest).length > 0) parts.push(canonical(rest));
  return parts.join(' ');
}

function describeSet(d: Record<string, Json>): string {
  const type = (t: Json) => (Array.isArray(t) ? t.map(String).join(' . ') : String(t));
  const parts = [`type ${type(d.type)}${d.map === undefined ? '' : ` : ${type(d.map)}`}`];
  if (d.flags !== undefined) parts.push(`flags ${Array.isArray(d.flags) ? d.flags.map(String).join(',') : text(d.flags)}`);
  const rest = without(d, ['type', 'map', 'flags']);
  if (Object.keys(rest).length > 0) parts.push(canonical(rest));
  return parts.join(' ');
}

/**
 * The contents of cluster_subnets in `nft -j list set ip nodenet cluster_subnets` output, as CIDRs sorted
 * numerically (an address reads as /32, a range that is no prefix as `A-B`); null when the set is absent.
 */
export function parseSubnetElements(json: string): string[] | null {
  const set = named(json, 'set', CLUSTER_SUBNETS);
  if (!set) return null;
  const out: string[] = [];
  for (const e of Array.isArray(set.elem) ? set.elem : []) {
    const v = value(e);
    if (typeof v === 'string') out.push(`${v}/${v.includes(':') ? 128 : 32}`);
    else if (v && typeof v === 'object' && 'prefix' in v) {
      const p = (v as { prefix: { addr?: Json; len?: Json } }).prefix;
      out.push(`${String(p.addr)}/${String(p.len)}`);
    } else if (v && typeof v === 'object' && 'range' in v && Array.isArray((v as { range: Json[] }).range)) {
      const [from, to] = (v as { range: Json[] }).range;
      out.push(`${String(from)}-${String(to)}`);
    } else out.push(canonical(v));
  }
  return out.sort((a, b) => compareCidr(a, b) || (a < b ? -1 : a > b ? 1 : 0));
}
