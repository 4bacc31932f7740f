/**
 * The ovs-ofctl text form of the flows nodenet writes (`cookie=C,table=T,priority=P,ip,in_port=3,
 * nw_src=A,actions=...`), parsed into flow-mods and printed back in dump-flows' `--no-stats` form, so
 * callers that hold flows as text (backend-ovs's pipeline) can use the OpenFlow connection unchanged and
 * a dump compares line by line with ovs-ofctl's. Only the vocabulary nodenet uses is understood; anything
 * else is refused by name.
 */
import { PORT } from './constants.js';
import { OpenFlowCodecError } from './bytes.js';
import type { Action, Instructions } from './instructions.js';
import { ETH_TYPE, IP_PROTO, type Match, type SettableField } from './match.js';
import type { FlowMod, FlowStats, PacketOut } from './messages.js';

export interface ParsedFlow {
  readonly cookie?: bigint;
  readonly cookieMask?: bigint;
  readonly table?: number;
  readonly priority?: number;
  readonly match: Match;
  readonly instructions?: Instructions;
}

type TextField =
  | 'ethSrc'
  | 'ethDst'
  | 'ipv4Src'
  | 'ipv4Dst'
  | 'arpSpa'
  | 'ipv6Src'
  | 'ipv6Dst'
  | 'ndTarget'
  | 'tunIpv4Src'
  | 'tunIpv4Dst'
  | 'tunIpv6Src'
  | 'tunIpv6Dst';
type NumberField = 'ipProto' | 'udpSrc' | 'icmpv6Type' | 'icmpv6Code';

const MATCH_KEYS: Readonly<Record<string, TextField>> = {
  dl_src: 'ethSrc',
  eth_src: 'ethSrc',
  dl_dst: 'ethDst',
  eth_dst: 'ethDst',
  nw_src: 'ipv4Src',
  ip_src: 'ipv4Src',
  nw_dst: 'ipv4Dst',
  ip_dst: 'ipv4Dst',
  arp_spa: 'arpSpa',
  ipv6_src: 'ipv6Src',
  ipv6_dst: 'ipv6Dst',
  nd_target: 'ndTarget',
  tun_src: 'tunIpv4Src',
  tun_dst: 'tunIpv4Dst',
  tun_ipv6_src: 'tunIpv6Src',
  tun_ipv6_dst: 'tunIpv6Dst',
};

/** Numeric match fields and their largest value. `icmp_type`/`icmp_code` and `tp_src` are ICMPv6's and UDP's here (the only ones nodenet writes). */
const NUMBER_KEYS: Readonly<Record<string, readonly [NumberField, number]>> = {
  nw_proto: ['ipProto', 0xff],
  ip_proto: ['ipProto', 0xff],
  tp_src: ['udpSrc', 0xffff],
  udp_src: ['udpSrc', 0xffff],
  icmp_type: ['icmpv6Type', 0xff],
  icmpv6_type: ['icmpv6Type', 0xff],
  icmp_code: ['icmpv6Code', 0xff],
  icmpv6_code: ['icmpv6Code', 0xff],
};

/** Protocol shorthands: ethType and ip_proto. */
const SHORTHANDS: Readonly<Record<string, { readonly ethType: number; readonly ipProto?: number }>> = {
  ip: { ethType: ETH_TYPE.IPV4 },
  arp: { ethType: ETH_TYPE.ARP },
  ipv6: { ethType: ETH_TYPE.IPV6 },
  icmp6: { ethType: ETH_TYPE.IPV6, ipProto: IP_PROTO.ICMPV6 },
  udp6: { ethType: ETH_TYPE.IPV6, ipProto: IP_PROTO.UDP },
  tcp6: { ethType: ETH_TYPE.IPV6, ipProto: IP_PROTO.TCP },
};

function portOf(text: string, what: string): number {
  if (text === 'LOCAL') return PORT.LOCAL;
  if (text === 'NORMAL') return PORT.NORMAL;
  if (/^\d{1,5}$/.test(text) && Number(text) >= 1 && Number(text) < 0xff00) return Number(text);
  throw new OpenFlowCodecError(`${what}: '${text}' is not a port (a number 1-65279 or LOCAL)`);
}

function numberOf(text: string, what: string, max: number): number {
  if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(text) || Number(text) > max)
    throw new OpenFlowCodecError(`${what}: '${text}' is not a number 0-${max}`);
  return Number(text);
}

function cookieOf(text: string): bigint {
  if (text === '-1') return 0xffffffffffffffffn;
  if (!/^(0x[0-9a-fA-F]{1,16}|\d+)$/.test(text)) throw new OpenFlowCodecError(`cookie: '${text}' is not a 64-bit number`);
  return BigInt(text);
}

/**
 * Parses `[cookie=..,][table=..,][priority=..,]MATCH[,actions=ACTIONS]` (actions absent for deletes), fields
 * separated by commas or spaces (as ovs-ofctl accepts and diff-flows prints them).
 */
export function parseFlow(text: string): ParsedFlow {
  const at = text.indexOf('actions=');
  const head = at < 0 ? text : text.slice(0, at);
  const match: Record<string, unknown> = {};
  let cookie: bigint | undefined;
  let cookieMask: bigint | undefined;
  let table: number | undefined;
  let priority: number | undefined;
  // Commas or spaces: ovs-ofctl's diff-flows prints `table=N priority=P,MATCH cookie=C actions=A`.
  for (const token of head.split(/[\s,]+/).filter((t) => t !== '')) {
    const eq = token.indexOf('=');
    const key = eq < 0 ? token : token.slice(0, eq);
    const value = eq < 0 ? '' : token.slice(eq + 1);
    const shorthand = eq < 0 ? SHORTHANDS[key] : undefined;
    if (shorthand) {
      match['ethType'] = shorthand.ethType;
      if (shorthand.ipProto !== undefined) match['ipProto'] = shorthand.ipProto;
    } else if (key === 'cookie') {
      const [c, m] = value.split('/');
      cookie = cookieOf(c ?? '');
      if (m !== undefined) cookieMask = cookieOf(m);
    } else if (key === 'table') table = numberOf(value, 'table', 254);
    else if (key === 'priority') priority = numberOf(value, 'priority', 0xffff);
    else if (key === 'in_port') match['inPort'] = portOf(value, 'in_port');
    else if (key === 'dl_type' || key === 'eth_type') match['ethType'] = numberOf(value, key, 0xffff);
    else if (MATCH_KEYS[key] && eq > 0) match[MATCH_KEYS[key]] = value;
    else if (NUMBER_KEYS[key] && eq > 0) match[NUMBER_KEYS[key][0]] = numberOf(value, key, NUMBER_KEYS[key][1]);
    else
      throw new OpenFlowCodecError(
        `'${token}' is not a match field this client writes (ip, arp, ipv6, icmp6, udp6, tcp6, in_port, dl_src, dl_dst, nw_src, nw_dst, arp_spa, ipv6_src, ipv6_dst, nw_proto, tp_src, icmp_type, icmp_code, nd_target, tun_src, tun_dst, tun_ipv6_src, tun_ipv6_dst, cookie, table, priority)`,
      );
  }
  const parsed: ParsedFlow = {
    match: match,
    ...(cookie === undefined ? {} : { cookie }),
    ...(cookieMask === undefined ? {} : { cookieMask }),
    ...(table === undefined ? {} : { table }),
    ...(priority === undefined ? {} : { priority }),
  };
  return at < 0 ? parsed : { ...parsed, instructions: parseActions(text.slice(at + 'actions='.length)) };
}

export function parseActions(text: string): Instructions {
  const apply: Action[] = [];
  let gotoTable: number | undefined;
  for (const token of text.split(',').map((t) => t.trim())) {
    if (token === 'drop') continue;
    if (gotoTable !== undefined) throw new OpenFlowCodecError(`'${token}' after goto_table: goto_table must be the last action`);
    if (token === 'NORMAL' || token === 'normal') apply.push({ type: 'output', port: PORT.NORMAL });
    else if (token === 'LOCAL') apply.push({ type: 'output', port: PORT.LOCAL });
    else if (token === 'dec_ttl') apply.push({ type: 'dec_ttl' });
    else if (token.startsWith('output:')) apply.push({ type: 'output', port: portOf(token.slice(7), 'output') });
    else if (token.startsWith('goto_table:')) gotoTable = numberOf(token.slice(11), 'goto_table', 254);
    else if (token.startsWith('resubmit(,') && token.endsWith(')')) gotoTable = numberOf(token.slice(10, -1), 'resubmit', 254);
    else if (/^set_field:[^>]+->(eth_src|eth_dst|tun_dst|tun_ipv6_dst)$/.test(token)) {
      const [value, field] = token.slice('set_field:'.length).split('->') as [string, SettableField];
      apply.push({ type: 'set_field', field, value });
    } else
      throw new OpenFlowCodecError(
        `'${token}' is not an action this client writes (drop, NORMAL, output:P, goto_table:T, set_field:V->eth_src|eth_dst|tun_dst|tun_ipv6_dst, dec_ttl)`,
      );
  }
  return { ...(apply.length ? { apply } : {}), ...(gotoTable === undefined ? {} : { gotoTable }) };
}

/** A flow-mod from ovs-ofctl's text (add-flow / mod-flows / del-flows syntax). */
export function flowModOf(command: FlowMod['command'], text: string): FlowMod {
  const p = parseFlow(text);
  const deleting = command === 'delete' || command === 'deleteStrict';
  if (!deleting && !p.instructions) throw new OpenFlowCodecError(`'${text}' has no actions=`);
  return {
    command,
    ...p,
    // ovs-ofctl's non-strict delete without table= covers every table.
    ...(command === 'delete' && p.table === undefined ? { table: 0xff } : {}),
  };
}

/**
 * A packet-out from ovs-ofctl's text (`packet-out SWITCH in_port=P,packet=HEX,actions=ACTIONS`): the
 * actions are the ones a flow may apply (no goto_table), the packet a whole Ethernet frame in hex.
 */
export function packetOutOf(text: string): PacketOut {
  const at = text.indexOf('actions=');
  if (at < 0) throw new OpenFlowCodecError(`'${text}' has no actions=`);
  let inPort: number | undefined;
  let data: Buffer | undefined;
  for (const token of text
    .slice(0, at)
    .split(/[\s,]+/)
    .filter((t) => t !== '')) {
    const [key, value = ''] = token.split('=', 2);
    if (key === 'in_port') inPort = portOf(value, 'in_port');
    else if (key === 'packet' && /^([0-9a-fA-F]{2}){14,}$/.test(value)) data = Buffer.from(value, 'hex');
    else throw new OpenFlowCodecError(`'${token}' is not part of a packet-out (in_port=P, packet=HEX of an Ethernet frame, actions=...)`);
  }
  if (inPort === undefined || data === undefined) throw new OpenFlowCodecError(`'${text}' needs in_port= and packet=`);
  const instructions = parseActions(text.slice(at + 'actions='.length));
  if (instructions.gotoTable !== undefined) throw new OpenFlowCodecError(`'${text}': a packet-out's actions cannot goto_table`);
  return { inPort, actions: instructions.apply ?? [], data };
}

// ---------------------------------------------------------------------------------------------------
// Printing, as `ovs-ofctl dump-flows --no-stats` does

export function formatPort(port: number): string {
  if (port === PORT.LOCAL) return 'LOCAL';
  if (port === PORT.NORMAL) return 'NORMAL';
  if (port === PORT.IN_PORT) return 'IN_PORT';
  if (port === PORT.CONTROLLER) return 'CONTROLLER';
  return String(port);
}

export function formatMatch(m: Match): string {
  const parts: string[] = [];
  const shorthand = Object.entries(SHORTHANDS).find(([, s]) => s.ethType === m.ethType && s.ipProto === m.ipProto)?.[0];
  if (shorthand !== undefined) parts.push(shorthand);
  if (m.tunIpv4Src !== undefined) parts.push(`tun_src=${m.tunIpv4Src}`);
  if (m.tunIpv4Dst !== undefined) parts.push(`tun_dst=${m.tunIpv4Dst}`);
  if (m.tunIpv6Src !== undefined) parts.push(`tun_ipv6_src=${m.tunIpv6Src}`);
  if (m.tunIpv6Dst !== undefined) parts.push(`tun_ipv6_dst=${m.tunIpv6Dst}`);
  if (m.inPort !== undefined) parts.push(`in_port=${formatPort(m.inPort)}`);
  if (m.ethSrc !== undefined) parts.push(`dl_src=${m.ethSrc}`);
  if (m.ethDst !== undefined) parts.push(`dl_dst=${m.ethDst}`);
  if (m.ethType !== undefined && shorthand === undefined) parts.push(`dl_type=0x${m.ethType.toString(16).padStart(4, '0')}`);
  if (m.ipv4Src !== undefined) parts.push(`nw_src=${m.ipv4Src}`);
  if (m.ipv4Dst !== undefined) parts.push(`nw_dst=${m.ipv4Dst}`);
  if (m.ipv6Src !== undefined) parts.push(`ipv6_src=${m.ipv6Src}`);
  if (m.ipv6Dst !== undefined) parts.push(`ipv6_dst=${m.ipv6Dst}`);
  if (m.ipProto !== undefined && shorthand === undefined) parts.push(`nw_proto=${m.ipProto}`);
  if (m.arpSpa !== undefined) parts.push(`arp_spa=${m.arpSpa}`);
  if (m.udpSrc !== undefined) parts.push(`tp_src=${m.udpSrc}`);
  if (m.icmpv6Type !== undefined) parts.push(`icmp_type=${m.icmpv6Type}`);
  if (m.icmpv6Code !== undefined) parts.push(`icmp_code=${m.icmpv6Code}`);
  if (m.ndTarget !== undefined) parts.push(`nd_target=${m.ndTarget}`);
  for (const o of m.other ?? []) parts.push(`oxm(${o})`);
  return parts.join(',');
}

export function formatActions(i: Instructions): string {
  const parts = (i.apply ?? []).map((a) => {
    switch (a.type) {
      case 'output':
        // Reserved ports print bare (NORMAL, LOCAL), numbered ones as output:N.
        return a.port >= PORT.MAX ? formatPort(a.port) : `output:${a.port}`;
      case 'dec_ttl':
        return 'dec_ttl';
      case 'set_field':
        return `set_field:${a.value}->${a.field}`;
      case 'other':
        return `action(${a.code}:${a.hex})`;
    }
  });
  if (i.gotoTable !== undefined) parts.push(`goto_table:${i.gotoTable}`);
  for (const o of i.other ?? []) parts.push(`instruction(${o})`);
  return parts.length === 0 ? 'drop' : parts.join(',');
}

/** `cookie=0x.., table=T, priority=P,MATCH actions=A` (cookie and table left out when 0, as ovs-ofctl does). */
export function formatFlowStats(f: Pick<FlowStats, 'cookie' | 'table' | 'priority' | 'match' | 'instructions'>): string {
  const match = formatMatch(f.match);
  return [
    f.cookie !== 0n ? `cookie=0x${f.cookie.toString(16)}, ` : '',
    f.table !== 0 ? `table=${f.table}, ` : '',
    `priority=${f.priority}${match ? `,${match}` : ''} actions=${formatActions(f.instructions)}`,
  ].join('');
}
