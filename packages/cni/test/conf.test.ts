// The plugin's request and network config: what is accepted, and the CNI error for what is not.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Ipv6Subnet, Subnet, type Ipv4Address, type Ipv6Address } from '@nodenet/core';
import {
  CniError,
  cniResult,
  nextFreeAddress,
  nextFreeIpv6Address,
  parseCniRequest,
  parseNetConf,
  type CniRequest,
  type NetConf,
} from '../src/index.js';

const base = { cniVersion: '1.0.0', name: 'nodenet', type: 'nodenet' };
const request = (config: unknown, over: Partial<CniRequest> = {}): CniRequest =>
  parseCniRequest({
    command: 'ADD',
    containerId: 'c1',
    netns: '/run/netns/x',
    ifname: 'eth0',
    args: '',
    path: '/usr/lib/cni',
    config,
    ...over,
  });

function errorOf(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

/** The node CNI a conflist gives, as text per family. */
const cniShape = ({ nodeCni }: NetConf): Record<string, [string, string]> => ({
  ...(nodeCni?.ipv4 ? { ipv4: [nodeCni.ipv4.subnet.toString(), nodeCni.ipv4.gateway] } : {}),
  ...(nodeCni?.ipv6 ? { ipv6: [nodeCni.ipv6.subnet.toString(), nodeCni.ipv6.gateway] } : {}),
});

describe('parseNetConf', () => {
  it('reads the spec keys, socket/subnet/gateway, port mappings and a static address', () => {
    const conf = parseNetConf(
      request({
        ...base,
        socket: '/run/nodenet/cni.sock',
        subnet: '198.19.1.0/24',
        gateway: '198.19.1.1',
        capabilities: { portMappings: true },
        dns: { nameservers: ['1.1.1.1'] },
        runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' }], ips: ['198.19.1.9/24'] },
      }),
    );
    expect(conf).toMatchObject({ cniVersion: '1.0.0', name: 'nodenet', dns: { nameservers: ['1.1.1.1'] } });
    expect(cniShape(conf)).toEqual({ ipv4: ['198.19.1.0/24', '198.19.1.1'] });
    expect(conf.portMappings).toEqual([{ hostPort: 8080, instancePort: 80, protocol: 'tcp' }]);
    expect(conf.staticAddresses).toEqual({ ipv4: { address: '198.19.1.9', prefixLength: 24 } });
    expect(parseNetConf(request(base, { args: 'IgnoreUnknown=1;IP=198.19.1.7' })).staticAddresses).toEqual({
      ipv4: { address: '198.19.1.7' },
    });
    // One address per family: a dual-stack container's two, in any order.
    expect(parseNetConf(request({ ...base, runtimeConfig: { ips: ['fd19:0:0:1::9/64', '198.19.1.9/24'] } })).staticAddresses).toEqual({
      ipv4: { address: '198.19.1.9', prefixLength: 24 },
      ipv6: { address: 'fd19:0:0:1::9', prefixLength: 64 },
    });
    expect(parseNetConf(request(base, { args: 'IP=fd19:0:0:1::7' })).staticAddresses).toEqual({ ipv6: { address: 'fd19:0:0:1::7' } });
  });

  it('reads the node CNI of a dual-stack or an IPv6-only conflist (ipv6Subnet + ipv6Gateway), and none without those keys', () => {
    const v4 = { subnet: '198.19.1.0/24', gateway: '198.19.1.1' };
    const v6 = { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::1' };
    expect(cniShape(parseNetConf(request({ ...base, ...v4, ...v6 })))).toEqual({
      ipv4: ['198.19.1.0/24', '198.19.1.1'],
      ipv6: ['fd19:0:0:1::/64', 'fd19:0:0:1::1'],
    });
    expect(cniShape(parseNetConf(request({ ...base, ...v6 })))).toEqual({ ipv6: ['fd19:0:0:1::/64', 'fd19:0:0:1::1'] });
    expect(cniShape(parseNetConf(request({ ...base, ipv6Subnet: 'fd19:0:0:1::100/120', ipv6Gateway: 'fd19:0:0:1::1ff' })))).toEqual({
      ipv6: ['fd19:0:0:1::100/120', 'fd19:0:0:1::1ff'],
    });
    expect(parseNetConf(request(base)).nodeCni).toBeUndefined();
  });

  it.each([
    ['nodenet.conflist', { ipv4: ['198.19.1.0/24', '198.19.1.1'] }],
    ['nodenet-dual-stack.conflist', { ipv4: ['198.19.1.0/24', '198.19.1.1'], ipv6: ['fd19:0:0:1::/64', 'fd19:0:0:1::1'] }],
  ])('the packaged example %s is valid and gives its node CNI', (file, shape) => {
    // What libcni hands the plugin: the conflist's entry with the network's name and cniVersion.
    const conflist = JSON.parse(readFileSync(new URL(`../../release/files/${file}`, import.meta.url), 'utf8')) as {
      name: string;
      cniVersion: string;
      plugins: Record<string, unknown>[];
    };
    const conf = parseNetConf(request({ ...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion }));
    expect(cniShape(conf)).toEqual(shape);
  });

  const v4keys = { subnet: '198.19.1.0/24', gateway: '198.19.1.1' };
  it.each([
    [
      'ipv6Subnet without ipv6Gateway',
      { ipv6Subnet: 'fd19:0:0:1::/64' },
      "'ipv6Gateway' is missing: 'ipv6Subnet' and 'ipv6Gateway' go together",
    ],
    ['ipv6Gateway without ipv6Subnet', { ...v4keys, ipv6Gateway: 'fd19:0:0:1::1' }, "'ipv6Subnet' is missing"],
    [
      'a non-canonical ipv6Subnet',
      { ipv6Subnet: 'fd19:0:0:1:0::/64', ipv6Gateway: 'fd19:0:0:1::1' },
      "'ipv6Subnet' 'fd19:0:0:1:0::' is not in canonical form (RFC 5952)",
    ],
    [
      'an upper-case ipv6Gateway',
      { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'FD19:0:0:1::1' },
      "'ipv6Gateway' 'FD19:0:0:1::1' is not in canonical form (RFC 5952): write fd19:0:0:1::1",
    ],
    [
      'an ipv6Gateway with a zone',
      { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::1%eth0' },
      "'ipv6Gateway' 'fd19:0:0:1::1%eth0' carries a zone index",
    ],
    [
      'an ipv6Subnet wider than /64',
      { ipv6Subnet: 'fd19::/56', ipv6Gateway: 'fd19::1' },
      "'ipv6Subnet' 'fd19::/56': an IPv6 instance subnet must be /64 to /120",
    ],
    ['an ipv6Subnet narrower than /120', { ipv6Subnet: 'fd19:0:0:1::/121', ipv6Gateway: 'fd19:0:0:1::1' }, 'must be /64 to /120'],
    [
      'an ipv6Subnet with host bits',
      { ipv6Subnet: 'fd19:0:0:1::1/64', ipv6Gateway: 'fd19:0:0:1::1' },
      "'ipv6Subnet' 'fd19:0:0:1::1/64' has host bits set",
    ],
    [
      'an ipv6Gateway outside ipv6Subnet',
      { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:2::1' },
      "'ipv6Gateway' fd19:0:0:2::1 is not a usable host address of fd19:0:0:1::/64",
    ],
    [
      'the subnet address as ipv6Gateway',
      { ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::' },
      "'ipv6Gateway' fd19:0:0:1:: is not a usable host address",
    ],
    [
      'IPv6 in subnet',
      { subnet: 'fd19:0:0:1::/64', gateway: 'fd19:0:0:1::1' },
      `'subnet' "fd19:0:0:1::/64" is IPv6: 'subnet' takes IPv4; put it in 'ipv6Subnet'`,
    ],
    ['IPv6 in gateway', { subnet: '198.19.1.0/24', gateway: 'fd19:0:0:1::1' }, "put it in 'ipv6Gateway'"],
    [
      'IPv4 in ipv6Subnet',
      { ipv6Subnet: '198.19.1.0/24', ipv6Gateway: '198.19.1.1' },
      `'ipv6Subnet' "198.19.1.0/24" is IPv4: 'ipv6Subnet' takes IPv6; put it in 'subnet'`,
    ],
    [
      'an IPv4 subnet leaving no host',
      { subnet: '198.19.1.0/31', gateway: '198.19.1.1' },
      "'subnet' 198.19.1.0/31 leaves no address for instances",
    ],
    [
      'an ipv6Subnet that is not a string',
      { ipv6Subnet: 64, ipv6Gateway: 'fd19:0:0:1::1' },
      "'ipv6Subnet' an IPv6 subnet in CIDR form is required",
    ],
  ])('refuses %s with code 7 naming the key', (_what, keys, mentioned) => {
    const e = errorOf(() => parseNetConf(request({ ...base, ...keys })));
    expect(e.code).toBe(7);
    expect(e.msg).toContain(mentioned);
  });

  it.each([
    ['an unknown key, named', { ...base, bridge: 'x' }, 7, "'bridge'"],
    ['an unsupported cniVersion', { ...base, cniVersion: '0.2.0' }, 1, '0.2.0'],
    ['subnet without gateway', { ...base, subnet: '198.19.1.0/24' }, 7, "'gateway' is missing"],
    ['a subnet with host bits', { ...base, subnet: '198.19.1.1/24', gateway: '198.19.1.1' }, 7, 'host bits'],
    ['a gateway outside the subnet', { ...base, subnet: '198.19.1.0/24', gateway: '198.19.2.1' }, 7, "'gateway' 198.19.2.1"],
    ['ipam', { ...base, ipam: { type: 'host-local' } }, 7, "'ipam'"],
    ['sctp', { ...base, runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 1, protocol: 'sctp' }] } }, 7, 'tcp and udp'],
    [
      'the IPv6 loopback hostIP',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: '::1' }] } },
      7,
      "'runtimeConfig.portMappings[0].hostIP' ::1 cannot publish a port",
    ],
    [
      'an IPv6 hostIP not in RFC 5952 text',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: '2001:DB8:18::5' }] } },
      7,
      'write 2001:db8:18::5',
    ],
    [
      'a link-local hostIP',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: 'fe80::1' }] } },
      7,
      'fe80::1 is a link-local address',
    ],
    [
      'a hostIP that is no string',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: 5 }] } },
      7,
      'hostIP 5 must be a string: an IPv4 or IPv6 address of the node',
    ],
    [
      'a multicast hostIP',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: '224.0.0.1' }] } },
      7,
      "'runtimeConfig.portMappings[0].hostIP' 224.0.0.1 is not a unicast address",
    ],
    [
      'a hostIP that is no address',
      { ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: '198.18.0.01' }] } },
      7,
      'not a canonical IPv4 address',
    ],

    ['two static addresses', { ...base, runtimeConfig: { ips: ['198.19.1.2/24', '198.19.1.3/24'] } }, 7, 'one IPv4 address'],
    ['two IPv6 static addresses', { ...base, runtimeConfig: { ips: ['fd19::2/64', 'fd19::3/64'] } }, 7, 'one IPv6 address'],
    ['an IPv6 static address not in canonical form', { ...base, runtimeConfig: { ips: ['FD19::2/64'] } }, 7, 'write fd19::2'],
    ['an IPv6 prefix length over 128', { ...base, runtimeConfig: { ips: ['fd19::2/129'] } }, 7, '0..128'],
    ['a relative socket', { ...base, socket: 'cni.sock' }, 7, "'socket'"],
  ])('refuses %s', (_what, config, code, mentioned) => {
    const e = errorOf(() => parseNetConf(request(config)));
    expect(e.code).toBe(code);
    expect(e.msg).toContain(mentioned);
  });

  it("reads hostIP: an IPv4 or IPv6 address publishes on it only; '', 0.0.0.0 and :: on every address", () => {
    const mappings = [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '198.18.0.5' },
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' },
      { hostPort: 8081, containerPort: 81, protocol: 'udp', hostIP: '0.0.0.0' },
      { hostPort: 8082, containerPort: 82, hostIP: '::' },
      // portmap accepts an address the node does not hold (yet): so does nodenet.
      { hostPort: 8083, containerPort: 83, hostIP: '203.0.113.7' },
      { hostPort: 8084, containerPort: 84, protocol: 'udp', hostIP: '2001:db8:18::5' },
    ];
    const conf = parseNetConf(request({ ...base, runtimeConfig: { portMappings: mappings } }));
    expect(conf.portMappings).toEqual([
      { hostPort: 8080, instancePort: 80, protocol: 'tcp', hostAddress: '198.18.0.5' },
      { hostPort: 8080, instancePort: 80, protocol: 'tcp', hostAddress: '127.0.0.1' },
      { hostPort: 8081, instancePort: 81, protocol: 'udp' },
      { hostPort: 8082, instancePort: 82, protocol: 'tcp' },
      { hostPort: 8083, instancePort: 83, protocol: 'tcp', hostAddress: '203.0.113.7' },
      { hostPort: 8084, instancePort: 84, protocol: 'udp', hostAddress: '2001:db8:18::5' },
    ]);
  });

  it('GC and STATUS need cniVersion 1.1.0; GC reads the valid attachments', () => {
    expect(errorOf(() => parseNetConf(request(base, { command: 'STATUS' }))).code).toBe(1);
    const gc = parseNetConf(
      request({ ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }] }, { command: 'GC' }),
    );
    expect(gc.validAttachments).toEqual([{ containerId: 'a', ifname: 'eth0' }]);
  });
});

describe('parseCniRequest', () => {
  it('refuses a bad command, container id or ifname with code 4, and an ADD without a netns', () => {
    expect(errorOf(() => request(base, { command: 'FOO' as 'ADD' })).code).toBe(4);
    expect(errorOf(() => request(base, { containerId: '-x' })).code).toBe(4);
    expect(errorOf(() => request(base, { ifname: 'a-name-longer-than-15' })).code).toBe(4);
    expect(errorOf(() => request(base, { netns: '' })).code).toBe(4);
    expect(request(base, { command: 'DEL', netns: '' }).netns).toBe('');
  });
});

describe('nextFreeAddress', () => {
  const subnet = Subnet.of('198.19.1.0/29'); // hosts .1-.6
  const gw = '198.19.1.1' as Ipv4Address;
  it('goes round-robin from the cursor, skipping the gateway and what is in use, and wraps', () => {
    const used = new Set(['198.19.1.3']);
    expect(nextFreeAddress(subnet, gw, undefined, (a) => used.has(a))).toBe('198.19.1.2');
    expect(nextFreeAddress(subnet, gw, '198.19.1.2' as Ipv4Address, (a) => used.has(a))).toBe('198.19.1.4');
    // Released .2 is not the next one after .6: the search wraps past the gateway to .2 only when nothing newer is free.
    expect(nextFreeAddress(subnet, gw, '198.19.1.6' as Ipv4Address, (a) => used.has(a))).toBe('198.19.1.2');
    expect(nextFreeAddress(subnet, gw, '198.19.1.4' as Ipv4Address, (a) => used.has(a))).toBe('198.19.1.5');
  });
  it('returns null when the subnet is full', () => {
    expect(nextFreeAddress(subnet, gw, undefined, () => true)).toBeNull();
  });
});

describe('nextFreeIpv6Address', () => {
  const subnet = Ipv6Subnet.of('fd19:0:0:1::/64');
  const gw = 'fd19:0:0:1::1' as Ipv6Address;
  it('goes round-robin from the cursor in a /64 without walking it, skipping the gateway and what is in use', () => {
    const used = new Set(['fd19:0:0:1::3']);
    expect(nextFreeIpv6Address(subnet, gw, undefined, used)).toBe('fd19:0:0:1::2');
    expect(nextFreeIpv6Address(subnet, gw, 'fd19:0:0:1::2' as Ipv6Address, used)).toBe('fd19:0:0:1::4');
    // The last address of the subnet is a host's (IPv6 has no broadcast); after it the search wraps past the gateway.
    const last = 'fd19::1:ffff:ffff:ffff:ffff' as Ipv6Address;
    expect(nextFreeIpv6Address(subnet, gw, 'fd19::1:ffff:ffff:ffff:fffe' as Ipv6Address, used)).toBe(last);
    expect(nextFreeIpv6Address(subnet, gw, last, used)).toBe('fd19:0:0:1::2');
    // A cursor outside the subnet (the node's subnet changed) starts from the beginning.
    expect(nextFreeIpv6Address(subnet, gw, 'fd19:0:0:2::9' as Ipv6Address, used)).toBe('fd19:0:0:1::2');
  });
  it('returns null when a small subnet is full', () => {
    const small = Ipv6Subnet.of('fd19:0:0:1::/126'); // ::1 (gateway), ::2, ::3
    expect(nextFreeIpv6Address(small, gw, undefined, new Set(['fd19:0:0:1::2', 'fd19:0:0:1::3']))).toBeNull();
    expect(nextFreeIpv6Address(small, gw, 'fd19:0:0:1::3' as Ipv6Address, new Set(['fd19:0:0:1::3']))).toBe('fd19:0:0:1::2');
  });
});

describe('cniResult', () => {
  const view = {
    ifname: 'eth0',
    mac: '02:6e:c6:13:01:02',
    netns: '/run/netns/x',
    ips: [{ address: '198.19.1.2', prefixLength: 24, gateway: '198.19.1.1' }],
    mtu: 1450,
  };
  it('a dual-stack attachment: an address and a default route per family, IPv4 first, both on interface 0', () => {
    const dual = { ...view, ips: [...view.ips, { address: 'fd19:0:0:1::2', prefixLength: 64, gateway: 'fd19:0:0:1::1' }] };
    expect(cniResult('0.4.0', dual, undefined)).toMatchObject({
      ips: [
        { version: '4', address: '198.19.1.2/24', gateway: '198.19.1.1', interface: 0 },
        { version: '6', address: 'fd19:0:0:1::2/64', gateway: 'fd19:0:0:1::1', interface: 0 },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '198.19.1.1' },
        { dst: '::/0', gw: 'fd19:0:0:1::1' },
      ],
    });
    const only6 = { ...view, ips: [{ address: 'fd19:0:0:2::2', prefixLength: 64, gateway: 'fd19:0:0:2::1' }] };
    expect(cniResult('1.0.0', only6, undefined)).toMatchObject({
      ips: [{ address: 'fd19:0:0:2::2/64', gateway: 'fd19:0:0:2::1', interface: 0 }],
      routes: [{ dst: '::/0', gw: 'fd19:0:0:2::1' }],
    });
  });
  it('0.4.0 carries ips[].version; 1.0.0 does not; 1.1.0 adds the interface mtu', () => {
    expect(cniResult('0.4.0', view, undefined)).toEqual({
      cniVersion: '0.4.0',
      interfaces: [{ name: 'eth0', mac: view.mac, sandbox: view.netns }],
      ips: [{ version: '4', address: '198.19.1.2/24', gateway: '198.19.1.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '198.19.1.1' }],
      dns: {},
    });
    expect((cniResult('1.0.0', view, { nameservers: ['a'] }) as { ips: object[]; dns: object }).ips[0]).not.toHaveProperty('version');
    expect((cniResult('1.1.0', view, undefined) as { interfaces: object[] }).interfaces[0]).toMatchObject({ mtu: 1450 });
  });
});
