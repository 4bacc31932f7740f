/**
 * The flow matches nodenet uses, and their OXM encoding (ofp_match type OXM, OpenFlow 1.2+): the standard
 * fields (in_port, eth_src/dst, eth_type, ipv4_src/dst with a prefix, arp_spa; ipv6_src/dst with a prefix, ip_proto, udp_src,
 * icmpv6_type/code and the ND target for IPv6 anti-spoofing) and the tunnel source and
 * destination, which OpenFlow has no field for: OVS accepts Nicira's NXM_NX_TUN_IPV4_SRC/DST (class 0x0001)
 * and NXM_NX_TUN_IPV6_SRC/DST (IPv6 underlays) as OXM, as ovs-ofctl sends them. Fields are written in the order ovs-ofctl writes them (recorded in the
 * fixtures), so the bytes are the same; order carries no meaning to the switch.
 */
import { OXM_CLASS } from './constants.js';
import {
  OpenFlowCodecError,
  ipv4Bytes,
  ipv4Prefix,
  ipv4PrefixText,
  ipv4Text,
  ipv6Bytes,
  ipv6Prefix,
  ipv6PrefixText,
  ipv6Text,
  macBytes,
  macText,
  padTo8,
} from './bytes.js';

export interface Match {
  /** A port number, or PORT.LOCAL (0xfffffffe). */
  readonly inPort?: number;
  readonly ethSrc?: string;
  readonly ethDst?: string;
  /** 0x0800 (ip), 0x0806 (arp). */
  readonly ethType?: number;
  /** `a.b.c.d` or `a.b.c.d/len`. */
  readonly ipv4Src?: string;
  readonly ipv4Dst?: string;
  readonly arpSpa?: string;
  /** `a:b::c` or `a:b::/len`. */
  readonly ipv6Src?: string;
  readonly ipv6Dst?: string;
  /** The IP protocol (6 tcp, 17 udp, 58 ICMPv6); needs an IP ethType. */
  readonly ipProto?: number;
  readonly udpSrc?: number;
  readonly icmpv6Type?: number;
  readonly icmpv6Code?: number;
  /** The target address of an ND solicitation or advert (needs ICMPv6 type 135 or 136, code 0). */
  readonly ndTarget?: string;
  readonly tunIpv4Src?: string;
  readonly tunIpv4Dst?: string;
  /** The outer IPv6 addresses of a tunnel packet (an IPv6 underlay). */
  readonly tunIpv6Src?: string;
  readonly tunIpv6Dst?: string;
  /** Fields of flows made by others this codec does not name (decoding only): `class:field[/m]=hex`. */
  readonly other?: readonly string[];
}

export const ETH_TYPE = { IPV4: 0x0800, ARP: 0x0806, IPV6: 0x86dd } as const;
export const IP_PROTO = { TCP: 6, UDP: 17, ICMPV6: 58 } as const;

type FieldName = Exclude<keyof Match, 'other'>;

interface FieldDef {
  readonly name: FieldName;
  readonly cls: number;
  readonly field: number;
  readonly length: number;
  readonly prefix?: boolean;
  readonly encode: (v: never) => { value: Buffer; mask?: Buffer | undefined };
  readonly decode: (value: Buffer, mask: Buffer | undefined) => string | number;
  readonly requires?: number;
  /** The ip_proto the field needs too (OpenFlow prerequisite). */
  readonly requiresProto?: number;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u8Field = (name: FieldName, field: number, requires: number | undefined, requiresProto?: number): FieldDef => ({
  name,
  cls: OXM_CLASS.OPENFLOW_BASIC,
  field,
  length: 1,
  encode: (v: number) => ({ value: Buffer.from([v]) }),
  decode: (b) => b.readUInt8(),
  ...(requires === undefined ? {} : { requires }),
  ...(requiresProto === undefined ? {} : { requiresProto }),
});
const ipv6Field = (name: FieldName, field: number, requiresProto?: number): FieldDef => ({
  name,
  cls: OXM_CLASS.OPENFLOW_BASIC,
  field,
  length: 16,
  encode: (v: string) => ({ value: ipv6Bytes(v) }),
  decode: (b) => ipv6Text(b),
  requires: ETH_TYPE.IPV6,
  ...(requiresProto === undefined ? {} : { requiresProto }),
});
/** An IPv6 address or prefix (`a:b::/len`), exact when /128. */
const ipv6PrefixField = (name: FieldName, cls: number, field: number, requires?: number): FieldDef => ({
  name,
  cls,
  field,
  length: 16,
  prefix: true,
  encode: (v: string) => ipv6Prefix(v),
  decode: (value, mask) => ipv6PrefixText(value, mask),
  ...(requires === undefined ? {} : { requires }),
});
const prefixField = (name: FieldName, cls: number, field: number, requires?: number): FieldDef => ({
  name,
  cls,
  field,
  length: 4,
  prefix: true,
  encode: (v: string) => ipv4Prefix(v),
  decode: (value, mask) => ipv4PrefixText(value, mask),
  ...(requires === undefined ? {} : { requires }),
});

/** In ovs-ofctl's order (OVS's nx_put_raw). */
const FIELDS: readonly FieldDef[] = [
  {
    name: 'inPort',
    cls: OXM_CLASS.OPENFLOW_BASIC,
    field: 0,
    length: 4,
    encode: (v: number) => ({ value: u32(v) }),
    decode: (b) => b.readUInt32BE(),
  },
  {
    name: 'ethSrc',
    cls: OXM_CLASS.OPENFLOW_BASIC,
    field: 4,
    length: 6,
    encode: (v: string) => ({ value: macBytes(v) }),
    decode: (b) => macText(b),
  },
  {
    name: 'ethDst',
    cls: OXM_CLASS.OPENFLOW_BASIC,
    field: 3,
    length: 6,
    encode: (v: string) => ({ value: macBytes(v) }),
    decode: (b) => macText(b),
  },
  {
    name: 'ethType',
    cls: OXM_CLASS.OPENFLOW_BASIC,
    field: 5,
    length: 2,
    encode: (v: number) => ({ value: u16(v) }),
    decode: (b) => b.readUInt16BE(),
  },
  prefixField('ipv4Src', OXM_CLASS.OPENFLOW_BASIC, 11, ETH_TYPE.IPV4),
  prefixField('ipv4Dst', OXM_CLASS.OPENFLOW_BASIC, 12, ETH_TYPE.IPV4),
  ipv6PrefixField('ipv6Src', OXM_CLASS.OPENFLOW_BASIC, 26, ETH_TYPE.IPV6),
  ipv6PrefixField('ipv6Dst', OXM_CLASS.OPENFLOW_BASIC, 27, ETH_TYPE.IPV6),
  // ip_proto needs an IP ethType of either family: checked in encodeOxmFields.
  u8Field('ipProto', 10, undefined),
  {
    name: 'udpSrc',
    cls: OXM_CLASS.OPENFLOW_BASIC,
    field: 15,
    length: 2,
    encode: (v: number) => ({ value: u16(v) }),
    decode: (b) => b.readUInt16BE(),
    requiresProto: IP_PROTO.UDP,
  },
  u8Field('icmpv6Type', 29, ETH_TYPE.IPV6, IP_PROTO.ICMPV6),
  u8Field('icmpv6Code', 30, ETH_TYPE.IPV6, IP_PROTO.ICMPV6),
  ipv6Field('ndTarget', 31, IP_PROTO.ICMPV6),
  prefixField('arpSpa', OXM_CLASS.OPENFLOW_BASIC, 22, ETH_TYPE.ARP),
  prefixField('tunIpv4Src', OXM_CLASS.NXM_1, 31),
  prefixField('tunIpv4Dst', OXM_CLASS.NXM_1, 32),
  // NXM_NX_TUN_IPV6_SRC/DST (OVS 2.5+), as OXM in Nicira's class as ovs-ofctl sends them.
  ipv6PrefixField('tunIpv6Src', OXM_CLASS.NXM_1, 109),
  ipv6PrefixField('tunIpv6Dst', OXM_CLASS.NXM_1, 110),
];

/** The OXM header: class (16 bits), field (7), has-mask (1), payload length (8). */
export function oxmHeader(cls: number, field: number, hasMask: boolean, payloadLength: number): number {
  return ((cls << 16) | (field << 9) | (hasMask ? 0x100 : 0) | payloadLength) >>> 0;
}

/** The OXM TLVs of a match (no ofp_match header). */
export function encodeOxmFields(m: Match): Buffer {
  const parts: Buffer[] = [];
  for (const f of FIELDS) {
    const v = m[f.name];
    if (v === undefined) continue;
    if (f.requires !== undefined && m.ethType !== f.requires) {
      throw new OpenFlowCodecError(
        `matching ${f.name} needs ethType 0x${f.requires.toString(16).padStart(4, '0')} (OpenFlow prerequisite)`,
      );
    }
    if (f.requiresProto !== undefined && m.ipProto !== f.requiresProto)
      throw new OpenFlowCodecError(`matching ${f.name} needs ipProto ${f.requiresProto} (OpenFlow prerequisite)`);
    if (f.name === 'ipProto' && m.ethType !== ETH_TYPE.IPV4 && m.ethType !== ETH_TYPE.IPV6)
      throw new OpenFlowCodecError('matching ipProto needs ethType 0x0800 or 0x86dd (OpenFlow prerequisite)');
    if (f.name === 'ndTarget' && (m.icmpv6Code !== 0 || (m.icmpv6Type !== 135 && m.icmpv6Type !== 136)))
      throw new OpenFlowCodecError('matching ndTarget needs icmpv6Type 135 or 136 and icmpv6Code 0 (OpenFlow prerequisite)');
    const { value, mask } = f.encode(v as never);
    if (mask && mask.every((b) => b === 0)) continue; // a /0 prefix matches everything
    const header = Buffer.alloc(4);
    header.writeUInt32BE(oxmHeader(f.cls, f.field, mask !== undefined, f.length * (mask ? 2 : 1)));
    parts.push(header, value, ...(mask ? [mask] : []));
  }
  return Buffer.concat(parts);
}

/** ofp_match (type OXM), padded to 8 bytes. */
export function encodeMatch(m: Match): Buffer {
  const fields = encodeOxmFields(m);
  const length = 4 + fields.length;
  const out = Buffer.alloc(padTo8(length));
  out.writeUInt16BE(1, 0); // OFPMT_OXM
  out.writeUInt16BE(length, 2);
  fields.copy(out, 4);
  return out;
}

/** Parses an ofp_match at `offset`; returns the match and the padded length it took. */
export function decodeMatch(buf: Buffer, offset: number): { match: Match; size: number } {
  const type = buf.readUInt16BE(offset);
  const length = buf.readUInt16BE(offset + 2);
  if (type !== 1) throw new OpenFlowCodecError(`match type ${type} is not OXM`);
  return { match: decodeOxmFields(buf.subarray(offset + 4, offset + length)), size: padTo8(length) };
}

export function decodeOxmFields(b: Buffer): Match {
  const out: Record<string, unknown> = {};
  const other: string[] = [];
  for (let off = 0; off + 4 <= b.length;) {
    const h = b.readUInt32BE(off);
    const cls = h >>> 16;
    const field = (h >>> 9) & 0x7f;
    const hasMask = (h & 0x100) !== 0;
    const len = h & 0xff;
    const payload = b.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    const def = FIELDS.find((f) => f.cls === cls && f.field === field && f.length * (hasMask ? 2 : 1) === len && (!hasMask || f.prefix));
    if (!def) {
      other.push(`${cls.toString(16)}:${field}${hasMask ? '/m' : ''}=${payload.toString('hex')}`);
      continue;
    }
    const value = payload.subarray(0, def.length);
    out[def.name] = def.decode(value, hasMask ? payload.subarray(def.length) : undefined);
  }
  if (other.length > 0) out['other'] = other;
  return out;
}

/** The OXM TLV of one settable field (set_field's payload): eth_src, eth_dst, tun_dst, tun_ipv6_dst. */
export function encodeSetFieldOxm(field: SettableField, value: string): Buffer {
  const def = SETTABLE[field];
  const header = Buffer.alloc(4);
  header.writeUInt32BE(oxmHeader(def.cls, def.field, false, def.length));
  return Buffer.concat([header, def.length === 6 ? macBytes(value) : def.length === 16 ? ipv6Bytes(value) : ipv4Bytes(value)]);
}

export type SettableField = 'eth_src' | 'eth_dst' | 'tun_dst' | 'tun_ipv6_dst';

const SETTABLE: Readonly<Record<SettableField, { cls: number; field: number; length: number }>> = {
  eth_src: { cls: OXM_CLASS.OPENFLOW_BASIC, field: 4, length: 6 },
  eth_dst: { cls: OXM_CLASS.OPENFLOW_BASIC, field: 3, length: 6 },
  tun_dst: { cls: OXM_CLASS.NXM_1, field: 32, length: 4 },
  tun_ipv6_dst: { cls: OXM_CLASS.NXM_1, field: 110, length: 16 },
};

/** The settable field and value of a set_field OXM, or undefined for another field. */
export function decodeSetFieldOxm(b: Buffer): { field: SettableField; value: string } | undefined {
  const h = b.readUInt32BE(0);
  const cls = h >>> 16;
  const field = (h >>> 9) & 0x7f;
  for (const [name, def] of Object.entries(SETTABLE) as [SettableField, (typeof SETTABLE)[SettableField]][]) {
    if (def.cls === cls && def.field === field && (h & 0xff) === def.length) {
      const v = b.subarray(4, 4 + def.length);
      return { field: name, value: def.length === 6 ? macText(v) : def.length === 16 ? ipv6Text(v) : ipv4Text(v) };
    }
  }
  return undefined;
}
