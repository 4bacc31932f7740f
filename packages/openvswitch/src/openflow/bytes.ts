/** Byte helpers shared by the OpenFlow codec: addresses in and out of their wire forms, padding. */

export class OpenFlowCodecError extends Error {}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function ipv4Bytes(address: string): Buffer {
  if (!IPV4_RE.test(address)) throw new OpenFlowCodecError(`'${address}' is not an IPv4 address`);
  return Buffer.from(address.split('.').map(Number));
}

export function ipv4Text(b: Buffer): string {
  return [...b.subarray(0, 4)].join('.');
}

export function macBytes(mac: string): Buffer {
  if (!MAC_RE.test(mac)) throw new OpenFlowCodecError(`'${mac}' is not a MAC address`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function macText(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** `a.b.c.d/len` (or a bare address): value and, unless /32, the mask. */
export function ipv4Prefix(text: string): { value: Buffer; mask: Buffer | undefined } {
  const [address, lenText] = text.split('/');
  const value = ipv4Bytes(address ?? '');
  if (lenText === undefined) return { value, mask: undefined };
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) throw new OpenFlowCodecError(`'${text}' has no valid prefix length (0-32)`);
  const len = Number(lenText);
  if (len === 32) return { value, mask: undefined };
  const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const mask = Buffer.alloc(4);
  mask.writeUInt32BE(m);
  const masked = Buffer.alloc(4);
  masked.writeUInt32BE((value.readUInt32BE() & m) >>> 0);
  return { value: masked, mask };
}

/** The text of a value and mask: `a.b.c.d/len` for a prefix mask, `a.b.c.d/m.m.m.m` otherwise. */
export function ipv4PrefixText(value: Buffer, mask: Buffer | undefined): string {
  if (!mask) return ipv4Text(value);
  const m = mask.readUInt32BE();
  const len = 32 - Math.log2((~m >>> 0) + 1);
  return Number.isInteger(len) ? `${ipv4Text(value)}/${len}` : `${ipv4Text(value)}/${ipv4Text(mask)}`;
}

/** `a:b::/len` (or a bare address): value (masked) and, unless /128, the mask. */
export function ipv6Prefix(text: string): { value: Buffer; mask: Buffer | undefined } {
  const [address, lenText, extra] = text.split('/');
  if (extra !== undefined) throw new OpenFlowCodecError(`'${text}' is not an IPv6 address or prefix`);
  const value = ipv6Bytes(address ?? '');
  if (lenText === undefined) return { value, mask: undefined };
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) throw new OpenFlowCodecError(`'${text}' has no valid prefix length (0-128)`);
  const len = Number(lenText);
  if (len === 128) return { value, mask: undefined };
  const mask = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) mask[i] = len >= (i + 1) * 8 ? 0xff : len <= i * 8 ? 0 : (0xff << (8 - (len - i * 8))) & 0xff;
  return { value: Buffer.from(value.map((b, i) => b & mask[i]!)), mask };
}

/** The text of an IPv6 value and mask: `addr/len` for a prefix mask, `addr/mask-address` otherwise. */
export function ipv6PrefixText(value: Buffer, mask: Buffer | undefined): string {
  if (!mask) return ipv6Text(value);
  let len = 0;
  while (len < 128 && (mask[len >> 3]! & (0x80 >> (len & 7))) !== 0) len++;
  const prefix = ipv6Prefix(`${ipv6Text(value)}/${len}`).mask;
  return prefix !== undefined && prefix.equals(mask) ? `${ipv6Text(value)}/${len}` : `${ipv6Text(value)}/${ipv6Text(mask)}`;
}

export function padTo8(n: number): number {
  return (n + 7) & ~7;
}

const IPV6_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;

/** The 16 bytes of an IPv6 address in text (`::` compression allowed; no zone, no embedded IPv4). */
export function ipv6Bytes(address: string): Buffer {
  const fail = () => new OpenFlowCodecError(`'${address}' is not an IPv6 address`);
  const halves = address.split('::');
  if (halves.length > 2) throw fail();
  const groupsOf = (text: string | undefined) => (text === undefined || text === '' ? [] : text.split(':'));
  const head = groupsOf(halves[0]);
  const tail = groupsOf(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw fail();
  const groups = [...head, ...Array<string>(halves.length === 1 ? 0 : missing).fill('0'), ...tail];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    if (!IPV6_GROUP_RE.test(g)) throw fail();
    out.writeUInt16BE(parseInt(g, 16), i * 2);
  });
  return out;
}

/** RFC 5952 text of 16 bytes (as ovs-ofctl prints them): lower case, the longest run of two or more zero groups compressed. */
export function ipv6Text(b: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best.len < 2) return hex(groups);
  return `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.len))}`;
}
