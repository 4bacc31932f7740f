import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  macForAddress,
  normalizePorts,
  parseIfName,
  parseIpv4Address,
  parseNetnsRef,
  parsePort,
  Subnet,
} from '@nodenet/core';
import { allocateLinkNames, type IfName as SourceIfName } from '../src/names.js';

function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return (e as Error).message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('IPv4 addresses', () => {
  it.each(['198.19.1.2', '0.0.0.0', '255.255.255.255', '10.0.0.1', '199.249.250.9', '100.99.0.200'])('accepts %s', (a) => {
    expect(parseIpv4Address(a, 'ip_address')).toBe(a);
  });
  it.each([
    ['198.19.01.2', /canonical/],
    ['198.19.1', /canonical/],
    ['3325256962', /canonical/],
    ['0xc6.19.1.2', /canonical/],
    ['198.19.1.256', /canonical/],
    ['260.1.1.1', /canonical/],
    ['1.2.3.00', /canonical/],
    ['1.2.3.4.5', /canonical/],
    ['1.2.3.4\n', /canonical/],
    [' 198.19.1.2', /canonical/],
    ['198.19.1.2 ', /canonical/],
    ['198.19.1.2/24', /canonical/],
    ['', /required/],
    ['::1', /IPv6/],
    ['2001:db8::1', /IPv6/],
  ])('refuses %j', (a, why) => {
    const msg = invalid(() => parseIpv4Address(a, 'ip_address'));
    expect(msg).toMatch(/^ip_address: /);
    expect(msg).toMatch(why);
  });
  it('refuses non-strings', () => {
    invalid(() => parseIpv4Address(3325256962, 'ip_address'));
    invalid(() => parseIpv4Address(undefined, 'ip_address'));
  });
});

describe('subnets', () => {
  it('parses and answers questions', () => {
    const s = Subnet.parse('198.19.1.0/24', 'sub_network');
    expect(s.toString()).toBe('198.19.1.0/24');
    expect(s.broadcast).toBe('198.19.1.255');
    expect(s.size).toBe(256);
    expect(s.nth(1)).toBe('198.19.1.1');
    expect(s.isUsableHost(parseIpv4Address('198.19.1.1', 'a'))).toBe(true);
    expect(s.isUsableHost(parseIpv4Address('198.19.1.0', 'a'))).toBe(false);
    expect(s.isUsableHost(parseIpv4Address('198.19.1.255', 'a'))).toBe(false);
    expect(s.isUsableHost(parseIpv4Address('198.19.2.1', 'a'))).toBe(false);
    expect(s.overlaps(Subnet.of('198.19.0.0/16'))).toBe(true);
    expect(Subnet.of('198.19.0.0/16').overlaps(s)).toBe(true);
    expect(s.overlaps(Subnet.of('198.19.2.0/24'))).toBe(false);
  });
  it.each([
    ['198.19.1.1/24', /host bits set: the subnet is 198.19.1.0\/24/],
    ['198.19.1.0', /CIDR/],
    ['198.19.1.0/33', /prefix length/],
    ['198.19.1.0/024', /prefix length/],
    ['198.19.1.0/', /prefix length/],
    ['198.19.01.0/24', /canonical/],
    ['2001:db8::/64', /IPv6/],
  ])('refuses %j', (s, why) => {
    expect(invalid(() => Subnet.parse(s, 'sub_network'))).toMatch(why);
  });
});

describe('interface names', () => {
  it.each(['eth0', 'a', 'nni-0123abcd', 'x_y.z-1', '123456789012345'])('accepts %j', (n) => {
    expect(parseIfName(n, 'interface_name')).toBe(n);
  });
  it.each(['', '.', '..', '1234567890123456', 'a/b', 'a b', 'eth0\n', 'tést', 'a:b'])('refuses %j', (n) => {
    invalid(() => parseIfName(n, 'interface_name'));
  });
});

describe('netns references', () => {
  it.each(['inst1', 'cni-1234.5', '/proc/1234/ns/net', '/run/netns/x', '/var/run/docker/netns/abc_1'])('accepts %j', (n) => {
    expect(parseNetnsRef(n, 'netns')).toBe(n);
  });
  it.each(['', '..', 'a/b', 'rel/path', '/proc/../etc/passwd', '/a//b', '/a/b/', '-n', 'x y', '/x;rm'])('refuses %j', (n) => {
    invalid(() => parseNetnsRef(n, 'netns'));
  });
});

describe('ports', () => {
  it('parses 1..65535 only', () => {
    expect(parsePort(1, 'p')).toBe(1);
    expect(parsePort(65535, 'p')).toBe(65535);
    for (const bad of [0, -1, 65536, 1.5, Number.NaN, '80']) invalid(() => parsePort(bad, 'ports[0]'));
  });
  it('expands seed ports to TCP and UDP, merges mappings, sorts', () => {
    expect(
      normalizePorts(
        [8080],
        [
          { hostPort: 53, instancePort: 5353, protocol: 'udp' },
          { hostPort: 9000, protocol: 'tcp' },
        ],
      ),
    ).toEqual([
      { protocol: 'udp', hostPort: 53, instancePort: 5353 },
      { protocol: 'tcp', hostPort: 8080, instancePort: 8080 },
      { protocol: 'udp', hostPort: 8080, instancePort: 8080 },
      { protocol: 'tcp', hostPort: 9000, instancePort: 9000 },
    ]);
  });
  it('refuses a host port listed twice for one protocol, naming the field', () => {
    expect(invalid(() => normalizePorts([80, 80], []))).toMatch(/^ports\[1\]: port 80\/tcp appears more than once/);
    expect(invalid(() => normalizePorts([80], [{ hostPort: 80, protocol: 'udp' }]))).toMatch(/^port_mappings\[0\]/);
    expect(
      normalizePorts(
        [],
        [
          { hostPort: 80, protocol: 'udp' },
          { hostPort: 80, protocol: 'tcp' },
        ],
      ),
    ).toHaveLength(2);
    expect(invalid(() => normalizePorts([], [{ hostPort: 80, instancePort: 70000 }]))).toMatch(/port_mappings\[0\]\.instance_port/);
  });
});

describe('link names', () => {
  it('allocates nni-/nnh- pairs of 12 characters, skipping taken ids', () => {
    const seq = [0xdeadbeef, 0xdeadbeef, 0x1];
    const taken = new Set<string>(['nni-deadbeef']);
    const names = allocateLinkNames(
      (h: SourceIfName) => taken.has(h),
      () => seq.shift()!,
    );
    expect(names).toEqual({ handle: 'nni-00000001', hostIfname: 'nnh-00000001' });
    expect(names.handle.length).toBeLessThanOrEqual(15);
  });
  it('gives up rather than loop forever', () => {
    expect(() =>
      allocateLinkNames(
        () => true,
        () => 7,
      ),
    ).toThrow(/64 attempts/);
  });
  it('derives a locally administered unicast MAC from an address', () => {
    expect(macForAddress(parseIpv4Address('198.19.1.2', 'a'))).toBe('02:6e:c6:13:01:02');
  });
});
