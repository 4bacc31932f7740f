/**
 * Typed views of `ip -j` output (links, addresses, routes). Only the fields nodenet reads are kept; each is
 * checked, so a change in iproute2's output fails loudly here instead of as `undefined` somewhere else.
 */
import { InternalError } from '@nodenet/core';

export interface IpLinkInfo {
  /** `bridge`, `veth`, `tun`, ... */
  readonly kind?: string;
  /** Set on a port: the kind of its master (`bridge`). */
  readonly slaveKind?: string;
}

export interface IpLink {
  readonly ifindex: number;
  readonly ifname: string;
  readonly flags: readonly string[];
  readonly mtu: number;
  /** Link-layer address (MAC for Ethernet-like links). */
  readonly address?: string;
  readonly operstate?: string;
  /** The master's name (e.g. the bridge of a port). */
  readonly master?: string;
  /** The link alias (`ip link set dev X alias ...`). */
  readonly alias?: string;
  /** The link group: `default` (0), a number, or a name from /etc/iproute2/group. */
  readonly group?: string;
  /** Only with `ip -d`. */
  readonly linkinfo?: IpLinkInfo;
}

export interface IpAddress {
  readonly family: string;
  readonly local: string;
  readonly prefixlen: number;
  readonly secondary: boolean;
}

export interface IpLinkWithAddresses extends IpLink {
  readonly addresses: readonly IpAddress[];
}

export interface IpRoute {
  /** `default` or a CIDR / address. */
  readonly dst: string;
  readonly gateway?: string;
  readonly dev?: string;
  readonly prefsrc?: string;
  /** Absent in the output means 0. */
  readonly metric: number;
}

type Json = Record<string, unknown>;

function fail(what: string, detail: string): never {
  throw new InternalError(`read ${what} from ip -j`, `unexpected output: ${detail}`);
}

function asArray(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) fail(what, `expected a JSON array, got ${typeof value}`);
  return value;
}

function asObject(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(what, `expected a JSON object, got ${JSON.stringify(value)}`);
  return value as Json;
}

function requiredString(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') fail(what, `field ${key} is ${JSON.stringify(v)}, expected a string`);
  return v;
}

function requiredNumber(o: Json, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(what, `field ${key} is ${JSON.stringify(v)}, expected a number`);
  return v;
}

function optionalString(o: Json, key: string, what: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(what, `field ${key} is ${JSON.stringify(v)}, expected a string`);
  return v;
}

function optionalNumber(o: Json, key: string, what: string): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(what, `field ${key} is ${JSON.stringify(v)}, expected a number`);
  return v;
}

function stringArray(o: Json, key: string, what: string): string[] {
  const v = o[key];
  if (v === undefined) return [];
  const items = asArray(v, what);
  for (const item of items) if (typeof item !== 'string') fail(what, `field ${key} holds ${JSON.stringify(item)}, expected strings`);
  return items as string[];
}

function parseLinkObject(o: Json, what: string): IpLink {
  const info = o['linkinfo'] === undefined ? undefined : asObject(o['linkinfo'], what);
  const linkinfo: IpLinkInfo | undefined = info
    ? {
        ...defined('kind', optionalString(info, 'info_kind', what)),
        ...defined('slaveKind', optionalString(info, 'info_slave_kind', what)),
      }
    : undefined;
  const link: IpLink = {
    ifindex: requiredNumber(o, 'ifindex', what),
    ifname: requiredString(o, 'ifname', what),
    flags: stringArray(o, 'flags', what),
    mtu: requiredNumber(o, 'mtu', what),
    ...defined('address', optionalString(o, 'address', what)),
    ...defined('operstate', optionalString(o, 'operstate', what)),
    ...defined('master', optionalString(o, 'master', what)),
    ...defined('alias', optionalString(o, 'ifalias', what)),
    ...defined('group', optionalString(o, 'group', what)),
    ...(linkinfo ? { linkinfo } : {}),
  };
  return link;
}

function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** `ip -j [-d] link show ...` */
export function parseIpLinks(json: unknown): IpLink[] {
  return asArray(json, 'links').map((item) => parseLinkObject(asObject(item, 'links'), 'links'));
}

/** `ip -j [-d] addr show ...` */
export function parseIpAddrs(json: unknown): IpLinkWithAddresses[] {
  return asArray(json, 'addresses').map((item) => {
    const o = asObject(item, 'addresses');
    const link = parseLinkObject(o, 'addresses');
    const infos = o['addr_info'] === undefined ? [] : asArray(o['addr_info'], 'addresses');
    const addresses = infos
      .map((i) => asObject(i, 'addresses'))
      // Entries with only lifetimes (no `local`) appear for some address kinds; they name no address.
      .filter((a) => a['local'] !== undefined)
      .map((a): IpAddress => ({
        family: requiredString(a, 'family', 'addresses'),
        local: requiredString(a, 'local', 'addresses'),
        prefixlen: requiredNumber(a, 'prefixlen', 'addresses'),
        secondary: a['secondary'] === true,
      }));
    return { ...link, addresses };
  });
}

/** `ip -j route show ...` and `ip -j route get ...` */
function viaHost(via: unknown): string | undefined {
  if (typeof via !== 'object' || via === null) return undefined;
  const host = (via as Json)['host'];
  return typeof host === 'string' ? host : undefined;
}

export function parseIpRoutes(json: unknown): IpRoute[] {
  return asArray(json, 'routes').map((item) => {
    const o = asObject(item, 'routes');
    return {
      dst: requiredString(o, 'dst', 'routes'),
      // A next hop of the other family (an IPv4 route via an IPv6 address) is `via: { family, host }`.
      ...defined('gateway', optionalString(o, 'gateway', 'routes') ?? viaHost(o['via'])),
      ...defined('dev', optionalString(o, 'dev', 'routes')),
      ...defined('prefsrc', optionalString(o, 'prefsrc', 'routes')),
      metric: optionalNumber(o, 'metric', 'routes') ?? 0,
    };
  });
}
