import { describe, expect, it } from 'vitest';
import {
  addressFamily,
  cniNetsOfRecord,
  cniRecordFields,
  instanceAddresses,
  instanceAddressesOfRecord,
  instanceRecordFields,
  Ipv6Subnet,
  linkLocalForMac,
  macForAddress,
  parseCniNets,
  parseInstanceAddresses,
  parseIpAddress,
  parseIpv6Address,
  type InstanceAddresses,
  type InstanceInterfaceSpec,
  type InstanceSpec,
  type Ipv4Address,
  type Ipv6Address,
} from '../src/index.js';

const msg = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return `${(e as { code: string }).code}: ${(e as Error).message}`;
  }
  return 'no error';
};

describe('IPv6 addresses (RFC 5952)', () => {
  it('accepts canonical text and tells the family', () => {
    expect(parseIpv6Address('fd19:0:0:1::2', 'f')).toBe('fd19:0:0:1::2');
    expect(parseIpAddress('2001:db8:18::1', 'f')).toBe('2001:db8:18::1');
    expect(addressFamily(parseIpAddress('198.19.1.2', 'f'))).toBe(4);
    expect(addressFamily(parseIpAddress('fd19::2', 'f'))).toBe(6);
  });
  it('refuses non-canonical text, giving the canonical form', () => {
    expect(msg(() => parseIpv6Address('FD19::1', 'ip_address'))).toContain('write fd19::1');
    expect(msg(() => parseIpv6Address('fd19:0:0:1:0:0:0:2', 'ip_address'))).toContain('write fd19:0:0:1::2');
    expect(msg(() => parseIpv6Address('fd19:00::2', 'ip_address'))).toContain('write fd19::2');
    expect(msg(() => parseIpv6Address('2001:db8:0:0:1:0:0:1', 'x'))).toContain('write 2001:db8::1:0:0:1');
    expect(msg(() => parseIpv6Address('fe80::1%eth0', 'x'))).toContain('zone');
    expect(msg(() => parseIpv6Address('::ffff:1.2.3.4', 'x'))).toContain('IPv4-mapped');
    expect(msg(() => parseIpv6Address('fd19::g', 'x'))).toMatch(/^INVALID_ARGUMENT: .*not an IPv6 address/);
  });
  it('parses subnets with host bits clear', () => {
    const s = Ipv6Subnet.parse('fd19:0:0:1::/64', 'sub_network');
    expect(s.contains(parseIpv6Address('fd19:0:0:1::5', 'a'))).toBe(true);
    expect(s.contains(parseIpv6Address('fd19:0:0:2::5', 'a'))).toBe(false);
    expect(s.nth(1)).toBe('fd19:0:0:1::1');
    expect(msg(() => Ipv6Subnet.parse('fd19:0:0:1::1/64', 'sub_network'))).toContain('the subnet is fd19:0:0:1::/64');
    expect(msg(() => Ipv6Subnet.parse('fd19:0:0:1::/064', 'sub_network'))).toContain('without leading zeros');
  });
  it('derives the EUI-64 link-local address and a MAC per family', () => {
    expect(linkLocalForMac('02:6e:c6:13:01:02')).toBe('fe80::6e:c6ff:fe13:102');
    expect(macForAddress('198.19.1.2')).toBe('02:6e:c6:13:01:02');
    expect(macForAddress('fd19:0:0:1::a:102')).toBe('02:6d:00:0a:01:02');
  });
});

describe('CNI addressing', () => {
  it('IPv4 only, dual stack and IPv6 only', () => {
    expect(Object.keys(parseCniNets({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' }))).toEqual(['ipv4']);
    const dual = parseCniNets({
      ipAddress: '198.19.1.1',
      subNetwork: '198.19.1.0/24',
      ipv6Address: 'fd19:0:0:1::1',
      ipv6SubNetwork: 'fd19:0:0:1::/64',
    });
    expect(dual.ipv6?.subnet.toString()).toBe('fd19:0:0:1::/64');
    const v6 = parseCniNets({ ipAddress: 'fd19:0:0:1::1', subNetwork: 'fd19:0:0:1::/64' });
    expect(v6.ipv4).toBeUndefined();
    expect(v6.ipv6?.gateway).toBe('fd19:0:0:1::1');
    // records round-trip, and a record of the IPv4-only layout reads as before
    expect(cniNetsOfRecord(cniRecordFields(dual))).toEqual(dual);
    expect(cniNetsOfRecord(cniRecordFields(v6))).toEqual(v6);
  });
  it('refuses prefix lengths outside /64../120, a gateway outside, mixed families and half pairs', () => {
    expect(msg(() => parseCniNets({ ipAddress: 'fd19::1', subNetwork: 'fd19::/48' }))).toContain('/64 to /120');
    expect(msg(() => parseCniNets({ ipAddress: 'fd19::1', subNetwork: 'fd19::/124' }))).toContain('/64 to /120');
    expect(msg(() => parseCniNets({ ipAddress: 'fd19:0:0:2::1', subNetwork: 'fd19:0:0:1::/64' }))).toContain('not a usable host');
    expect(msg(() => parseCniNets({ ipAddress: 'fd19:0:0:1::', subNetwork: 'fd19:0:0:1::/64' }))).toContain('not a usable host');
    expect(msg(() => parseCniNets({ ipAddress: '198.19.1.1', subNetwork: 'fd19:0:0:1::/64' }))).toContain('one family');
    expect(msg(() => parseCniNets({ ipAddress: 'fd19::1', subNetwork: 'fd19::/64', ipv6SubNetwork: 'fd19::/64' }))).toContain(
      'ipv6_sub_network',
    );
    expect(msg(() => parseCniNets({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24', ipv6Address: 'fd19::1' }))).toContain(
      'ipv6_sub_network',
    );
    expect(
      msg(() =>
        parseCniNets({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24', ipv6Address: 'FD19::1', ipv6SubNetwork: 'fd19::/64' }),
      ),
    ).toContain('write fd19::1');
  });
});

describe('instance addresses', () => {
  const dual = parseCniNets({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24', ipv6Address: 'fd19::1', ipv6SubNetwork: 'fd19::/64' });
  const v4 = parseCniNets({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  const v6 = parseCniNets({ ipAddress: 'fd19::1', subNetwork: 'fd19::/64' });
  it('dual stack: IPv4 only without ipv6_address, both with it', () => {
    expect(parseInstanceAddresses({ ipAddress: '198.19.1.5' }, dual)).toEqual({ ipv4: '198.19.1.5' });
    expect(parseInstanceAddresses({ ipAddress: '198.19.1.5', ipv6Address: 'fd19::5' }, dual)).toEqual({
      ipv4: '198.19.1.5',
      ipv6: 'fd19::5',
    });
    expect(instanceAddressesOfRecord(instanceRecordFields({ ipv4: '198.19.1.5', ipv6: 'fd19::5' } as never))).toEqual({
      ipv4: '198.19.1.5',
      ipv6: 'fd19::5',
    });
  });
  it('IPv6 only: the seed field carries IPv6', () => {
    expect(parseInstanceAddresses({ ipAddress: 'fd19::5' }, v6)).toEqual({ ipv6: 'fd19::5' });
    expect(instanceRecordFields({ ipv6: 'fd19::5' } as never)).toEqual({ address: 'fd19::5' });
  });
  it('an address of a family the CNI does not hold is INVALID_ARGUMENT', () => {
    expect(msg(() => parseInstanceAddresses({ ipAddress: '198.19.1.5', ipv6Address: 'fd19::5' }, v4))).toMatch(
      /^INVALID_ARGUMENT: .*ipv6_address.*holds only IPv4/,
    );
    expect(msg(() => parseInstanceAddresses({ ipAddress: 'fd19::5' }, v4))).toMatch(/^INVALID_ARGUMENT: .*holds only IPv4/);
    expect(msg(() => parseInstanceAddresses({ ipAddress: '198.19.1.5' }, v6))).toMatch(/^INVALID_ARGUMENT: .*IPv6-only/);
    expect(msg(() => parseInstanceAddresses({ ipAddress: 'fd19::5' }, dual))).toMatch(/^INVALID_ARGUMENT: .*ipv6_address/);
    expect(msg(() => parseInstanceAddresses({ ipAddress: 'fd19::5', ipv6Address: 'fd19::6' }, v6))).toContain('leave ipv6_address empty');
    expect(msg(() => parseInstanceAddresses({ ipAddress: 'fd19:0:0:1::5' }, v6))).toContain('not a usable host');
    expect(msg(() => parseInstanceAddresses({ ipAddress: 'fd19::1' }, v6))).toContain('gateway');
  });
});

describe('an instance without any address', () => {
  it('does not type-check (addresses or spec); instanceAddresses builds addresses from optional parts, or says there are none', () => {
    const v4 = '198.19.1.5' as Ipv4Address;
    const v6 = 'fd19:0:0:1::5' as Ipv6Address;
    // @ts-expect-error neither family: not InstanceAddresses
    const none: InstanceAddresses = {};
    const dual: InstanceAddresses = { ipv4: v4, ipv6: v6 };
    const only6: InstanceAddresses = { ipv6: v6 };
    const specOf = (s: InstanceSpec) => s;
    const withoutAddresses = { address: v4 } as InstanceInterfaceSpec;
    // @ts-expect-error the seed `address` alone gives the instance no address: a spec needs ipv4 or ipv6
    expect(() => specOf(withoutAddresses)).not.toThrow();
    expect(specOf({ ...withoutAddresses, ipv4: v4 }).ipv4).toBe(v4);
    expect([none, dual, only6]).toHaveLength(3);
    expect(instanceAddresses(undefined, undefined)).toBeUndefined();
    expect(instanceAddresses(v4, undefined)).toEqual({ ipv4: v4 });
    expect(instanceAddresses(undefined, v6)).toEqual({ ipv6: v6 });
    expect(instanceAddresses(v4, v6)).toEqual({ ipv4: v4, ipv6: v6 });
  });
});
