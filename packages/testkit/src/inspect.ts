/**
 * Reading kernel state inside a namespace for assertions: links (`ip -j -d link`), addresses, the
 * nftables ruleset (`nft -j list ruleset`), connection tracking, and "nothing changed" snapshots.
 */
import { ipJson, nsExec } from './exec.js';

export interface LinkInfo {
  readonly ifname: string;
  readonly ifindex: number;
  readonly flags: readonly string[];
  readonly mtu: number;
  readonly master?: string;
  readonly address?: string;
  readonly ifalias?: string;
  readonly operstate?: string;
  readonly linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string };
  readonly [key: string]: unknown;
}

/** Every link in `ns` with details (kind, alias, master). */
export function links(ns: string): Promise<LinkInfo[]> {
  return ipJson<LinkInfo[]>(ns, ['-d', 'link', 'show']);
}

/** One link, or undefined when `ns` has none by that name. */
export async function link(ns: string, name: string): Promise<LinkInfo | undefined> {
  return (await links(ns)).find((l) => l.ifname === name);
}

export interface AddressInfo {
  readonly ifname: string;
  readonly addr_info: ReadonlyArray<{ family: string; local: string; prefixlen: number }>;
}

/** `ip -j addr` in `ns`. */
export function addresses(ns: string): Promise<AddressInfo[]> {
  return ipJson<AddressInfo[]>(ns, ['addr', 'show']);
}

/** The IPv4 `address/prefix` strings on `ifname` in `ns`. */
export async function ipv4AddressesOf(ns: string, ifname: string): Promise<string[]> {
  const all = await addresses(ns);
  const entry = all.find((a) => a.ifname === ifname);
  return (entry?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

export interface RouteInfo {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly [key: string]: unknown;
}

export function routes(ns: string): Promise<RouteInfo[]> {
  return ipJson<RouteInfo[]>(ns, ['route', 'show']);
}

/** The nftables ruleset of `ns` as `nft -j` prints it. */
export async function nftRuleset(ns: string): Promise<unknown[]> {
  const r = await nsExec(ns, 'nft', ['-j', 'list', 'ruleset']);
  const parsed = JSON.parse(r.stdout) as { nftables?: unknown[] };
  return parsed.nftables ?? [];
}

/** The ruleset as text (for messages and `toContain` checks). */
export async function nftRulesetText(ns: string): Promise<string> {
  return (await nsExec(ns, 'nft', ['list', 'ruleset'])).stdout;
}

/** Drops values that change with traffic (counters, timeouts) so two snapshots of an unchanged ruleset compare equal. */
export function withoutVolatile(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutVolatile);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'packets' || k === 'bytes' || k === 'expires') continue;
      out[k] = withoutVolatile(v);
    }
    return out;
  }
  return value;
}

/** What a link looks like for "nothing changed" comparisons (no counters, no operational state). */
export interface LinkSummary {
  readonly ifname: string;
  readonly kind?: string;
  readonly master?: string;
  readonly alias?: string;
  readonly mac?: string;
  readonly mtu: number;
  readonly up: boolean;
}

export function summarizeLink(l: LinkInfo): LinkSummary {
  return {
    ifname: l.ifname,
    ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}),
    ...(l.master ? { master: l.master } : {}),
    ...(l.ifalias ? { alias: l.ifalias } : {}),
    ...(l.address ? { mac: l.address } : {}),
    mtu: l.mtu,
    up: l.flags.includes('UP'),
  };
}

export interface NamespaceSnapshot {
  readonly links: LinkSummary[];
  readonly addresses: string[];
  readonly routes: string[];
  readonly ruleset: unknown;
}

/** Links, addresses, routes and the nftables ruleset of `ns`, normalised for equality checks. */
export async function snapshot(ns: string): Promise<NamespaceSnapshot> {
  const [ls, as, rs, ruleset] = await Promise.all([links(ns), addresses(ns), routes(ns), nftRuleset(ns)]);
  return {
    links: ls.map(summarizeLink).sort((a, b) => a.ifname.localeCompare(b.ifname)),
    addresses: as.flatMap((a) => a.addr_info.map((i) => `${a.ifname} ${i.local}/${i.prefixlen}`)).sort(),
    routes: rs.map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.dev ?? '-'}`).sort(),
    ruleset: withoutVolatile(ruleset),
  };
}

/** Connection-tracking entries in `ns` that mention `address` (as any source or destination). */
export async function conntrackEntries(ns: string, address?: string): Promise<string[]> {
  const r = await nsExec(ns, 'conntrack', ['-L'], { allowFailure: true });
  if (r.exitCode !== 0) throw new Error(`conntrack -L in ${ns} failed: ${r.stderr.trim()}`);
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  if (!address) return lines;
  const re = new RegExp(`(?:src|dst)=${address.replace(/\./g, '\\.')}(?:\\s|$)`);
  return lines.filter((l) => re.test(l));
}

/** Neighbour entries in `ns` for `address` (any state). */
export async function neighbours(
  ns: string,
  address?: string,
): Promise<Array<{ dst: string; dev: string; lladdr?: string; state?: string[] }>> {
  const all = await ipJson<Array<{ dst: string; dev: string; lladdr?: string; state?: string[] }>>(ns, ['neigh', 'show']);
  return address ? all.filter((n) => n.dst === address) : all;
}
