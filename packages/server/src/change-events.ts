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
/** The prefix of every cookie nodenet gives its OpenFlow flows ('nn'). */
const COOKIE_PREFIX = '0x6e6e';

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
    const address = /^\s*inet (\S+)/.exec(body);
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

/** `["map", [[k, v], ...]]` -> a record; anything else -> undefined. */
function ovsdbMap(d: OvsdbDatum): Record<string, string> | undefined {
  if (!Array.isArray(d) || d[0] !== 'map' || !Array.isArray(d[1])) return undefined;
  return Object.fromEntries((d[1] as [string, string][]).map(([k, v]) => [String(k), String(v)]));
}

/**
 * An update of `ovsdb-client monitor --format=json DB Open_vSwitch TABLE name,external_ids[,...]`:
 * `{"data": [[uuid, action, name, ...]], "headings": ["row", "action", "name", ...]}` with action initial,
 * insert, delete, or an old/new pair (old holds only the columns that changed). Relevant: a row of nodenet's
 * deleted; an `external_ids` key removed or changed (the tags and the port registry live there); a column
 * other than external_ids changed on a bridge (e.g. datapath_id: ovs-vswitchd configured it anew); an
 * interface's ofport changed from one number to another.
 */
export function classifyOvsdbUpdate(table: string, line: string): string[] {
  let update: { data?: unknown[][]; headings?: string[] };
  try {
    update = JSON.parse(line) as typeof update;
  } catch {
    return [];
  }
  const headings = update.headings ?? [];
  const col = (row: unknown[], name: string) => row[headings.indexOf(name)];
  const out: string[] = [];
  let old: unknown[] | null = null;
  for (const row of update.data ?? []) {
    const action = col(row, 'action');
    if (action === 'old') {
      old = row;
      continue;
    }
    const nameCell = col(row, 'name');
    const name = typeof nameCell === 'string' ? nameCell : '';
    if (action === 'delete') {
      if (isOwnedLinkName(name)) out.push(`${table} ${name} deleted from OVSDB`);
      continue;
    }
    if (action !== 'new' || old === null || !isOwnedLinkName(name)) continue;
    const changed: string[] = [];
    for (const h of headings) {
      if (h === 'row' || h === 'action' || h === 'name') continue;
      const before = col(old, h);
      if (before === null || before === undefined) continue;
      if (h === 'external_ids') {
        const was = ovsdbMap(before) ?? {};
        const now = ovsdbMap(col(row, h)) ?? {};
        const lost = Object.keys(was).filter((k) => now[k] !== was[k]);
        if (lost.length > 0)
          changed.push(`external_ids ${lost.slice(0, 3).join(', ')}${lost.length > 3 ? ', ...' : ''} removed or changed`);
      } else if (h === 'ofport') {
        if (typeof before === 'number' && before > 0) changed.push(`ofport ${before} -> ${JSON.stringify(col(row, h))}`);
      } else if (table === 'Bridge') {
        changed.push(`${h} changed`);
      }
    }
    if (changed.length > 0) out.push(`${table} ${name}: ${changed.join('; ')}`);
    old = null;
  }
  return out;
}

/**
 * A line of `ovs-ofctl monitor BRIDGE watch:`: ` event=DELETED reason=delete table=0 cookie=0x6e6e... ...`.
 * Relevant: one of nodenet's flows deleted or modified (by anyone: nodenet's own changes come back once).
 */
export function classifyFlowMonitorLine(bridge: string, line: string): string | null {
  const m = /\bevent=(DELETED|MODIFIED)\b.*\bcookie=(0x[0-9a-f]+)/.exec(line);
  if (!m || !m[2]!.startsWith(COOKIE_PREFIX)) return null;
  return `flow ${m[2]} on ${bridge} ${m[1]!.toLowerCase()}`;
}
