/** etcd records and claims of nodes carrying IPv6, and what a reader from before IPv6 makes of them. */
import { describe, expect, it } from 'vitest';
import { Ipv6Subnet, Subnet, parseIpv4Address, parseNodeName, parseNodeRecord, type NodeRecord } from '@nodenet/core';
import {
  KeyLayout,
  RECORD_VERSION,
  RECORD_VERSION_IPV6,
  checkClaim,
  decodeNodeRecord,
  encodeNodeRecord,
  type LiveClaim,
  type LiveRecord,
} from '../src/records.js';

const rec = (name: string, underlayAddress: string, subnet?: string, ipv6Subnet?: string): NodeRecord =>
  parseNodeRecord({ name, underlayAddress, subnet, ipv6Subnet }, 'test');
const live = (r: NodeRecord, lease = '7'): LiveRecord => ({ record: r, lease });
const claim = (subnet: string, holder: string, lease = '7'): LiveClaim => ({
  subnet: subnet.includes(':') ? Ipv6Subnet.of(subnet) : Subnet.of(subnet),
  holder,
  lease,
});

/**
 * The decoder of nodenet before IPv6 (version >= 1; name, an IPv4 underlay address and an IPv4 subnet,
 * all required; other fields ignored), written with the same core parsers it used.
 */
function decodeAsOlderReader(value: string): { name: string; underlayAddress: string; subnet: string } {
  const f = JSON.parse(value) as Record<string, unknown>;
  if (typeof f['version'] !== 'number' || f['version'] < 1) throw new Error('bad version');
  return {
    name: parseNodeName(f['name'], 'name'),
    underlayAddress: parseIpv4Address(f['underlayAddress'], 'underlayAddress'),
    subnet: Subnet.parse(f['subnet'], 'subnet').toString(),
  };
}

describe('node records with IPv6', () => {
  it('writes an IPv4-only record exactly as before (version 1, no new field)', () => {
    const text = encodeNodeRecord(rec('node-1', '198.18.0.1', '198.19.1.0/24'));
    expect(JSON.parse(text)).toEqual({ version: RECORD_VERSION, name: 'node-1', underlayAddress: '198.18.0.1', subnet: '198.19.1.0/24' });
  });

  it.each<[string, { name: string; underlayAddress: string; subnet?: string; ipv6Subnet: string }, object | RegExp]>([
    [
      'a dual-stack record (version 2); an older reader sees the IPv4 node it also is',
      { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24', ipv6Subnet: 'fd19:0:0:2::/64' },
      { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' },
    ],
    [
      'an IPv6-only record on an IPv6 underlay; an older reader refuses it (ignored there), never misreads it',
      { name: 'node-3', underlayAddress: '2001:db8:18::3', ipv6Subnet: 'fd19:0:0:3::/64' },
      /IPv6/,
    ],
  ])('writes and reads back %s', (_, written, olderReader) => {
    const text = encodeNodeRecord(rec(written.name, written.underlayAddress, written.subnet, written.ipv6Subnet));
    expect(JSON.parse(text)).toEqual({ version: RECORD_VERSION_IPV6, ...written });
    const back = decodeNodeRecord(`/p/nodes/${written.name}`, written.name, text);
    expect(back.underlayAddress).toBe(written.underlayAddress);
    expect(back.subnet?.toString()).toBe(written.subnet);
    expect(back.ipv6Subnet?.toString()).toBe(written.ipv6Subnet);
    if (olderReader instanceof RegExp) expect(() => decodeAsOlderReader(text)).toThrow(olderReader);
    else expect(decodeAsOlderReader(text)).toEqual(olderReader);
  });

  it('reads a dual-stack node on an IPv6 underlay; an older reader refuses it for its underlay address', () => {
    const text = encodeNodeRecord(rec('node-4', '2001:db8:18::4', '198.19.4.0/24', 'fd19:0:0:4::/64'));
    expect(JSON.parse(text)).toMatchObject({ version: RECORD_VERSION_IPV6, subnet: '198.19.4.0/24', ipv6Subnet: 'fd19:0:0:4::/64' });
    expect(() => decodeAsOlderReader(text)).toThrow(/IPv6/);
  });
});

describe('claims of IPv6 subnets', () => {
  const keys = new KeyLayout('/nodenet');

  it('keys a claim by the canonical network and prefix, and reads it back', () => {
    const subnet = Ipv6Subnet.of('fd19:0:0:2::/64');
    expect(keys.claimKey(subnet)).toBe('/nodenet/subnets/fd19:0:0:2::_64');
    expect(String(keys.subnetOfClaimKey('/nodenet/subnets/fd19:0:0:2::_64'))).toBe('fd19:0:0:2::/64');
    expect(String(keys.subnetOfClaimKey('/nodenet/subnets/198.19.2.0_24'))).toBe('198.19.2.0/24');
    // Not canonical, or not a subnet: not a claim.
    expect(keys.subnetOfClaimKey('/nodenet/subnets/fd19:0:0:2:0::_64')).toBeNull();
    expect(keys.subnetOfClaimKey('/nodenet/subnets/fd19:0:0:2::1_64')).toBeNull();
  });

  const self = rec('a', '2001:db8:18::1', '198.19.1.0/24', 'fd19:0:0:1::/64');

  it('refuses an IPv6 subnet overlapping a live node, naming both subnets and the node', () => {
    const v = checkClaim(self, [live(rec('b', '2001:db8:18::2', undefined, 'fd19:0:0:1::/80'))], [], null);
    expect(v).toMatchObject({ ok: false, conflictWith: 'b' });
    if (!v.ok)
      expect(v.message).toBe(
        "subnet fd19:0:0:1::/64 overlaps fd19:0:0:1::/80 held by live node b: choose a subnet no other node uses, or wait until b's record expires with its lease",
      );
  });

  it('refuses an IPv6 overlap found only in a claim', () => {
    const v = checkClaim(self, [], [claim('fd19::/48', 'c')], null);
    expect(v).toMatchObject({ ok: false, conflictWith: 'c' });
  });

  it('accepts nodes whose subnets differ in every family, and releases its own claims on subnets it no longer holds', () => {
    const v = checkClaim(
      self,
      [live(rec('b', '2001:db8:18::2', '198.19.2.0/24', 'fd19:0:0:2::/64'))],
      [claim('198.19.2.0/24', 'b'), claim('fd19:0:0:2::/64', 'b'), claim('fd19:0:0:1::/64', 'a'), claim('fd19:0:0:9::/64', 'a')],
      null,
    );
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.staleOwnClaims.map(String)).toEqual(['fd19:0:0:9::/64']);
  });
});
