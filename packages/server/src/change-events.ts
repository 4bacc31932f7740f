/**
 * Which change notifications call for a repair pass. Each monitor's output line goes through one of these
 * classifiers; a relevant line gives a short description of the change (named in the repair log lines),
 * anything else null. Only what nodenet owns counts: its links (nodenet0 and its overflow bridges, nnh-/nni-
 * instance links, nodenet-vx, nodenet-tun, nodenet-phy), its nftables tables (`nodenet`), its overlay routes
 * (proto 78) and the entries on its VXLAN device, its OVSDB rows and its cookie-tagged flows.
 *
 * What is removed or taken down is relevant; what is added mostly is not: nodenet's own creates add things all
 * the time, and an addition breaks nothing nodenet owns (an orphan it owns is rare and left to the periodic
 * pass). nodenet's own deletes do come back as events: each burst is one pass that finds nothing to do.
 * One addition counts: a connected route appearing on a link that is not nodenet's (a host link came up, or
 * got its address back). IPv4 drops the routes through a link that goes down without a notification, so
 * nodenet's host-gw routes via the peers vanish unseen; this is the first moment they can be put back.
 */

/** nodenet's link names: the CNI and its overflow bridges and their pairs, instance ends, overlay and uplink. */
const OWNED_LINK = /^(nodenet0(b\d{1,2}(-up|-dn)?)?|nodenet-vx|nodenet-tun|nodenet-phy|nn[hi]-[0-9a-f]{8})$/;
/** Owned links nodenet rarely changes itself: a change of their state (down) is worth a look. */
const INFRASTRUCTURE_LINK = /^(nodenet0(b\d{1,2}(-up|-dn)?)?|nodenet-vx|nodenet-phy)$/;
/** The routing protocol number of nodenet's overlay routes. */
const OVERLAY_ROUTE_PROTOCOL = '78';
const OVERLAY_DEVICE = 'nodenet-vx';
/** nodenet's nftables tables are all named this (families ip, bridge, inet, netdev). */
const NFT_TABLE = 'nodenet';

export function isOwnedLinkName(name: string): boolean {
  return OWNED_LINK.test(name);
}

/**
 * A line of `ip -o monitor link address route neigh` (one event per line): `[Deleted ]IDX: NAME[@PEER]: <FLAGS>
 * ...` (link), `[Deleted ]IDX: NAME    inet ADDR/LEN ...` (address), `[Deleted ]DST dev NAME ... proto N`
 * (route), `[Deleted ]ADDR dev NAME lladdr ...` (neighbour).
 */
export function classifyIpMonitorLine(line: string): string | null {
  const deleted = line.startsWith('Deleted ');
  const rest = deleted ? line.slice('Deleted '.length) : line;
  const indexed = /^(\d+): ([^\s:@]+)(?:@\S*?)?:? (.*)$/.exec(rest);
  if (indexed) {
    const name = indexed[2]!;
    const body = indexed[3]!;
    if (!isOwnedLinkName(name)) return null;
    if (body.startsWith('<')) {
      if (deleted) return `link ${name} deleted`;
      const flags = /^<([^>]*)>/.exec(body)?.[1]?.split(',') ?? [];
      return INFRASTRUCTURE_LINK.test(name) && !flags.includes('UP') ? `link ${name} down` : null;
    }
    // inet6 too: an IPv6 gateway deleted from the CNI is drift like an IPv4 one.
    const address = /^\s*inet6? (\S+)/.exec(body);
    if (address && deleted) return `address ${address[1]} deleted from ${name}`;
    return null;
  }
  if (!deleted) return connectedRouteAppeared(rest);
  const dev = /\bdev (\S+)/.exec(rest)?.[1];
  const what = rest.split(' ')[0];
  if (new RegExp(`\\bproto ${OVERLAY_ROUTE_PROTOCOL}\\b`).test(rest)) return `overlay route ${what} deleted`;
  if (dev === OVERLAY_DEVICE) return `${/\blladdr\b/.test(rest) ? 'neighbour' : 'entry'} ${what} on ${OVERLAY_DEVICE} deleted`;
  return null;
}

/** `DST dev NAME proto kernel ...` in the main table, on a link not nodenet's (link-local IPv6 left out: every link has one). */
function connectedRouteAppeared(line: string): string | null {
  const m = /^([0-9a-f.:]+\/\d+) dev (\S+) proto kernel\b/.exec(line);
  if (!m || /\btable \S+/.test(line) || m[1]!.startsWith('fe80:') || isOwnedLinkName(m[2]!)) return null;
  return `connected route ${m[1]} on ${m[2]} appeared (the link came up or got its address back)`;
}

/** A line of `bridge monitor fdb`: `[Deleted ]MAC dev NAME [dst ADDR] ...`. */
export function classifyFdbMonitorLine(line: string): string | null {
  if (!line.startsWith('Deleted ')) return null;
  const m = /^Deleted (\S+) dev (\S+)(?:.*\bdst (\S+))?/.exec(line);
  if (!m || m[2] !== OVERLAY_DEVICE) return null;
  return `fdb entry ${m[1]}${m[3] ? ` to ${m[3]}` : ''} on ${OVERLAY_DEVICE} deleted`;
}

/** A line of `nft -j monitor`: `{"delete": {"element": {"family": "ip", "table": "nodenet", ...}}}`. */
export function classifyNftMonitorLine(line: string): string | null {
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return null;
  }
  const body = (event as Record<string, unknown> | null)?.['delete'];
  if (typeof body !== 'object' || body === null) return null;
  for (const [kind, raw] of Object.entries(body as Record<string, unknown>)) {
    const o = raw as { family?: string; table?: string; name?: string } | null;
    if (!o) continue;
    const table = kind === 'table' ? o.name : o.table;
    if (table !== NFT_TABLE) continue;
    return kind === 'table'
      ? `table ${o.family} ${NFT_TABLE} deleted`
      : `${kind}${o.name && kind !== 'element' ? ` ${o.name}` : ''} of table ${o.family} ${NFT_TABLE} deleted${kind === 'element' && o.name ? ` (from ${o.name})` : ''}`;
  }
  return null;
}

type OvsdbDatum = unknown;
/** A row of an OVSDB monitor's replica: column -> OVSDB's JSON value (`["map", ...]`, `["set", []]`, an atom). */
export type OvsdbRowValues = Readonly<Record<string, OvsdbDatum>>;

/** `["map", [[k, v], ...]]` -> a record; anything else -> undefined. */
function ovsdbMap(d: OvsdbDatum): Record<string, string> | undefined {
  if (!Array.isArray(d) || d[0] !== 'map' || !Array.isArray(d[1])) return undefined;
  return Object.fromEntries((d[1] as [string, string][]).map(([k, v]) => [String(k), String(v)]));
}

/** An optional column with no value (`["set", []]`), or a column not there. */
function isEmptyDatum(d: OvsdbDatum): boolean {
  return d === undefined || d === null || (Array.isArray(d) && d[0] === 'set' && Array.isArray(d[1]) && d[1].length === 0);
}

/**
 * A row change of an OVSDB monitor (Bridge: name, external_ids, datapath_id; Interface: name, external_ids,
 * ofport), as the replica reports it: `old` undefined for an insert, `row` undefined for a delete. Relevant:
 * a row of nodenet's deleted; an `external_ids` key removed or changed (the tags and the port registry live
 * there); another column of a bridge changed from a value to another (e.g. datapath_id: ovs-vswitchd
 * configured it anew; its first value is not a change); an interface's ofport changed from a number to
 * anything else. Inserts (nodenet's own creates) are not.
 */
export function classifyOvsdbRowChange(table: string, row: OvsdbRowValues | undefined, old: OvsdbRowValues | undefined): string[] {
  if (old === undefined) return [];
  const nameOf = (r: OvsdbRowValues) => (typeof r['name'] === 'string' ? r['name'] : '');
  if (row === undefined) return isOwnedLinkName(nameOf(old)) ? [`${table} ${nameOf(old)} deleted from OVSDB`] : [];
  const name = nameOf(row);
  if (!isOwnedLinkName(name)) return [];
  const changed: string[] = [];
  for (const column of Object.keys(old)) {
    if (column === 'name' || column === '_uuid' || column === '_version') continue;
    const before = old[column];
    const after = row[column];
    if (column === 'external_ids') {
      const was = ovsdbMap(before) ?? {};
      const now = ovsdbMap(after) ?? {};
      const lost = Object.keys(was).filter((k) => now[k] !== was[k]);
      if (lost.length > 0) changed.push(`external_ids ${lost.slice(0, 3).join(', ')}${lost.length > 3 ? ', ...' : ''} removed or changed`);
    } else if (column === 'ofport') {
      if (typeof before === 'number' && before > 0 && after !== before) changed.push(`ofport ${before} -> ${JSON.stringify(after)}`);
    } else if (table === 'Bridge' && !isEmptyDatum(before) && JSON.stringify(before) !== JSON.stringify(after)) {
      changed.push(`${column} changed`);
    }
  }
  return changed.length > 0 ? [`${table} ${name}: ${changed.join('; ')}`] : [];
}

/**
 * nodenet's flows on a bridge, counted per cookie class (base, instance, peer) at two moments: fewer than
 * before in a class is a deletion (by anyone: nodenet's own deletes come back once). A flow replaced in
 * place (nodenet re-asserting a peer's flows in one bundle) changes no count, so it sets off nothing.
 */
export function classifyFlowCounts(
  bridge: string,
  before: Readonly<Record<string, number>>,
  after: Readonly<Record<string, number>>,
): string[] {
  return Object.entries(before).flatMap(([cls, was]) => {
    const now = after[cls] ?? 0;
    return now < was ? [`${was - now} ${cls} flow${was - now === 1 ? '' : 's'} on ${bridge} deleted`] : [];
  });
}

/**
 * One cookie class's flows on a bridge as fingerprints (rule -> content: FlowFingerprint) at two moments: a
 * rule whose content differs was modified in place (ovs-ofctl mod-flows, or a flow replaced by another with
 * the same match), which no count shows. Rules gone beyond the net drop in number were replaced by others
 * (a match changed); a deletion alone is classifyFlowCounts's to report. New rules (nodenet's own creates)
 * are not a change, nor is a flow re-added as it was (its fingerprint leaves out age and counters).
 */
export function classifyFlowFingerprints(
  bridge: string,
  cls: string,
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
): string[] {
  let modified = 0;
  let gone = 0;
  for (const [rule, content] of before) {
    const now = after.get(rule);
    if (now === undefined) gone++;
    else if (now !== content) modified++;
  }
  const changed = modified + Math.max(0, gone - Math.max(0, before.size - after.size));
  return changed > 0 ? [`${changed} ${cls} flow${changed === 1 ? '' : 's'} on ${bridge} changed in place`] : [];
}

/**
 * Which part of a reconcile pass a change calls for: `node` (the node's pass: CNI, packet filter, instances),
 * `overlay` (the overlay's resync: its device, tunnel port, uplink, peer routes, entries and flows), or `all`
 * (both, and whatever a change cannot be pinned to: a CNI bridge gone takes the overlay's routes with it, a
 * monitor that reconnected may have missed anything). A pass serves the union of its changes' scopes.
 */
export type ChangeScope = 'node' | 'overlay' | 'all';

/** Links the overlay makes (its VXLAN device, tunnel port, uplink). */
const OVERLAY_LINK = /^(nodenet-vx|nodenet-tun|nodenet-phy)$/;
/** Links of one instance. */
const INSTANCE_LINK = /^nn[hi]-[0-9a-f]{8}$/;

/** The scope of one change as the classifiers above describe it. */
export function scopeOfChange(change: string): ChangeScope {
  const link = /^link (\S+) (deleted|down)$/.exec(change);
  if (link) return INSTANCE_LINK.test(link[1]!) ? 'node' : OVERLAY_LINK.test(link[1]!) ? 'overlay' : 'all';
  const address = /^address \S+ deleted from (\S+)$/.exec(change);
  if (address) return INSTANCE_LINK.test(address[1]!) ? 'node' : OVERLAY_LINK.test(address[1]!) ? 'overlay' : 'all';
  if (/^(overlay route \S+|(neighbour|entry) \S+ on \S+|fdb entry .* on \S+) deleted$/.test(change)) return 'overlay';
  // nftables: the netdev table holds the overlay's uplink guard; the others are the node's packet filter.
  const nft = /(?:^table|of table) (\S+) nodenet deleted/.exec(change);
  if (nft) return nft[1] === 'netdev' ? 'overlay' : 'node';
  // OVSDB rows and flows: an instance's port or flows are the node's; the tunnel and uplink ports and the
  // peers' flows the overlay's; the bridge and the base flows both.
  const row = /^(?:Interface|Port) (\S+)(?: deleted from OVSDB|:)/.exec(change);
  if (row) return INSTANCE_LINK.test(row[1]!) ? 'node' : OVERLAY_LINK.test(row[1]!) ? 'overlay' : 'all';
  const flows = /^\d+ (instance|peer) flows? on \S+ (?:deleted|changed in place)$/.exec(change);
  if (flows) return flows[1] === 'instance' ? 'node' : 'overlay';
  return 'all';
}

/** The scope of a pass serving changes of scope `soFar` (null: none yet) and one more of scope `next`. */
export function widenScope(soFar: ChangeScope | null, next: ChangeScope): ChangeScope {
  return soFar === null || soFar === next ? next : 'all';
}
