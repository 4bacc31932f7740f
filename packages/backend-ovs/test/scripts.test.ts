import { describe, expect, it } from 'vitest';
import {
  CNI_NAME,
  Ipv6Subnet,
  Subnet,
  macForAddress,
  parseIfName,
  parseIpv4Address,
  parseIpv6Address,
  type InstanceSpec,
} from '@nodenet/core';
import type { IpLinkWithAddresses } from '@nodenet/linux';
import { mgmtSocket, ofportForAddress, ofportForInstance } from '../src/names.js';
import { bridgeDrift, kernelFixes, ownerTagOfLink, tapScript, vethScript } from '../src/ovs-dataplane.js';
import { peerRouteLines, removeRouteLines } from '../src/ovs-overlay.js';
import { parseOvsState } from '../src/ovsdb.js';
import { SharedLock } from '../src/shared-lock.js';
import { TX_CHECKSUM_OFF_PERL, txChecksumOffArgs } from '../src/tx-checksum.js';
import { guardScript, guardedDeviceOf, moveAddressingScript, parseRouteEntries } from '../src/uplink.js';
import { portGuardIsRight, portGuardScript } from '../src/port-guard.js';

const gateway = parseIpv4Address('198.19.1.1', 'g');
const cni = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') }, mtu: 1450, mac: macForAddress(gateway) };
const address = parseIpv4Address('198.19.1.7', 'a');
const spec: InstanceSpec = {
  handle: parseIfName('nni-0000abcd', 'h'),
  hostIfname: parseIfName('nnh-0000abcd', 'p'),
  kind: 'veth',
  address,
  ipv4: address,
  mac: macForAddress(address),
  mtu: 1450,
  cni,
};

function link(overrides: Partial<IpLinkWithAddresses>): IpLinkWithAddresses {
  return { ifindex: 1, ifname: 'x', flags: ['UP'], mtu: 1500, addresses: [], ...overrides };
}

describe('port numbers', () => {
  it("an instance requests its address's offset in the subnet; offsets the tunnel number would reach get none", () => {
    expect(ofportForAddress(Subnet.of('198.19.1.0/24'), parseIpv4Address('198.19.1.7', 'a'))).toBe(7);
    expect(ofportForAddress(Subnet.of('198.19.0.0/16'), parseIpv4Address('198.19.2.1', 'a'))).toBe(513);
    expect(ofportForAddress(Subnet.of('198.19.0.0/16'), parseIpv4Address('198.19.253.232', 'a'))).toBe(undefined);
    expect(ofportForAddress(Subnet.of('198.19.1.0/24'), parseIpv4Address('198.19.1.0', 'a'))).toBe(undefined);
  });

  it("an IPv6-only instance requests its IPv6 address's offset in the IPv6 subnet, on the same terms; a dual-stack one its IPv4 offset", () => {
    const v6 = { gateway: parseIpv6Address('fd19:0:0:2::1', 'g'), subnet: Ipv6Subnet.of('fd19:0:0:2::/64') };
    const v4 = { gateway: parseIpv4Address('198.19.1.1', 'g'), subnet: Subnet.of('198.19.1.0/24') };
    expect(ofportForInstance({ ipv6: v6 }, parseIpv6Address('fd19:0:0:2::21', 'a'))).toBe(0x21);
    expect(ofportForInstance({ ipv6: v6 }, parseIpv6Address('fd19:0:0:2::fde7', 'a'))).toBe(65000 - 1);
    expect(ofportForInstance({ ipv6: v6 }, parseIpv6Address('fd19:0:0:2::fde8', 'a'))).toBe(undefined);
    expect(ofportForInstance({ ipv6: v6 }, parseIpv6Address('fd19::2:1:0:0:1', 'a'))).toBe(undefined);
    expect(ofportForInstance({ ipv6: v6 }, parseIpv6Address('fd19:0:0:2::', 'a'))).toBe(undefined);
    expect(ofportForInstance({ ipv4: v4, ipv6: v6 }, parseIpv4Address('198.19.1.9', 'a'))).toBe(9);
  });

  it('ovs-ofctl reaches a bridge through RUNDIR/BRIDGE.mgmt', () => {
    expect(mgmtSocket('/var/run/openvswitch/', 'nodenet0')).toBe('unix:/var/run/openvswitch/nodenet0.mgmt');
  });
});

describe('kernel lines', () => {
  it("a veth: created with the instance end's MAC and MTU (in its namespace when given), the host end tagged, no IPv6, no ARP, up, on no Linux bridge", () => {
    const lines = vethScript(spec, '/run/netns/x');
    expect(lines.map((l) => l.args.join(' '))).toEqual([
      'link add name nnh-0000abcd mtu 1450 type veth peer name nni-0000abcd address 02:6e:c6:13:01:07 mtu 1450 netns /run/netns/x',
      'link set dev nnh-0000abcd alias nodenet:nni-0000abcd addrgenmode none arp off up',
    ]);
    expect(lines.flatMap((l) => l.args)).not.toContain('master');
  });

  it('a TAP named with the handle, tagged the same way', () => {
    expect(tapScript({ ...spec, kind: 'tap', hostIfname: spec.handle }).map((l) => l.args.join(' '))).toEqual([
      'tuntap add dev nni-0000abcd mode tap',
      'link set dev nni-0000abcd mtu 1450 alias nodenet:nni-0000abcd addrgenmode none arp off up',
    ]);
  });

  it("the gateway port: tag and IPv6 off first, then iproute2's CNI repairs (address, MTU, MAC, up)", () => {
    const fresh = kernelFixes(cni, link({ ifname: 'nodenet0', flags: [], mtu: 1450, address: cni.mac }));
    expect(fresh.map((f) => f.line.args.join(' '))).toEqual([
      'link set dev nodenet0 alias nodenet:cni addrgenmode none',
      'address add 198.19.1.1/24 broadcast + dev nodenet0',
      'link set dev nodenet0 up',
    ]);
    const right = link({
      ifname: 'nodenet0',
      alias: 'nodenet:cni',
      mtu: 1450,
      address: cni.mac,
      addresses: [{ family: 'inet', local: '198.19.1.1', prefixlen: 24, secondary: false }],
    });
    expect(kernelFixes(cni, right)).toEqual([]);
  });

  it("turning off checksum offload: interface names are perl's arguments, never part of its code", () => {
    expect(txChecksumOffArgs([spec.handle])).toEqual(['-e', TX_CHECKSUM_OFF_PERL, '--', 'nni-0000abcd']);
    expect(TX_CHECKSUM_OFF_PERL).toContain('0x8946');
    expect(() => txChecksumOffArgs(['a b' as never])).toThrow();
  });
});

describe('ownership of kernel links that are no OVS port', () => {
  it("the alias, or for a veth/TAP named in nodenet's scheme left untagged (a create cut short), its handle's tag", () => {
    expect(ownerTagOfLink({ ...link({ ifname: 'nnh-0000abcd' }), alias: 'nodenet:nni-0000abcd' })).toBe('nodenet:nni-0000abcd');
    expect(ownerTagOfLink({ ...link({ ifname: 'nnh-0000abcd' }), linkinfo: { kind: 'veth' } })).toBe('nodenet:nni-0000abcd');
    expect(ownerTagOfLink({ ...link({ ifname: 'nni-0000abcd' }), linkinfo: { kind: 'tun' } })).toBe('nodenet:nni-0000abcd');
    expect(ownerTagOfLink({ ...link({ ifname: 'nnh-0000abcd' }), linkinfo: { kind: 'bridge' } })).toBeUndefined();
    expect(ownerTagOfLink({ ...link({ ifname: 'nnh-0000abc' }), linkinfo: { kind: 'veth' } })).toBeUndefined();
    expect(ownerTagOfLink({ ...link({ ifname: 'eth0' }), alias: 'uplink', linkinfo: { kind: 'veth' } })).toBeUndefined();
  });
});

describe('bridge drift', () => {
  it('names what differs from the spec and the config', () => {
    const state = parseOvsState(
      [
        JSON.stringify({
          headings: ['_uuid', 'name', 'datapath_type', 'fail_mode', 'external_ids', 'other_config', 'ports'],
          data: [
            [['uuid', 'b'], 'nodenet0', 'system', ['set', []], ['map', [['nodenet-owner', 'nodenet:cni']]], ['map', []], ['uuid', 'p']],
          ],
        }),
        JSON.stringify({ headings: ['_uuid', 'name', 'interfaces'], data: [[['uuid', 'p'], 'nodenet0', ['uuid', 'i']]] }),
        JSON.stringify({
          headings: ['_uuid', 'name', 'type', 'ofport', 'ofport_request', 'mtu_request', 'external_ids', 'options', 'error'],
          data: [[['uuid', 'i'], 'nodenet0', 'internal', 65534, ['set', []], 1500, ['map', []], ['map', []], ['set', []]]],
        }),
      ].join('\n'),
    );
    expect(bridgeDrift(cni, state.bridges.get('nodenet0')!, state, 'netdev')).toEqual([
      "datapath_type of nodenet0 was 'system': set to netdev",
      'fail_mode of nodenet0 was unset: set to secure',
      'other_config:hwaddr of nodenet0 was unset: set to 02:6e:c6:13:01:01',
      'in-band control of nodenet0 was on: turned off',
      'mtu_request of nodenet0 was 1500: set to 1450',
      'owner tag of port nodenet0 was missing: set',
    ]);
  });
});

describe('the netdev uplink', () => {
  const eth0 = link({
    ifname: 'eth0',
    addresses: [
      { family: 'inet', local: '198.18.0.1', prefixlen: 24, secondary: false },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64, secondary: false },
    ],
  });
  const phy = link({ ifname: 'nodenet-phy', flags: [] });
  const routes = parseRouteEntries([
    { dst: 'default', gateway: '198.18.0.100', dev: 'eth0', flags: [] },
    { dst: '198.18.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '198.18.0.1', flags: [] },
    { dst: '10.9.0.0/16', gateway: '198.18.0.9', dev: 'eth0', protocol: 'static', metric: 20, flags: ['onlink'] },
    { dst: '198.19.2.0/24', dev: 'nodenet0', protocol: '78', flags: [] },
  ]);

  it('moves IPv4 addresses and non-kernel routes to the bridge (up first), and removes the addresses from the interface last', () => {
    expect(moveAddressingScript(eth0, phy, 'eth0', 'nodenet-phy', routes).map((l) => l.args.join(' '))).toEqual([
      'link set dev nodenet-phy up',
      'address add 198.18.0.1/24 broadcast + dev nodenet-phy',
      'route replace default via 198.18.0.100 dev nodenet-phy',
      'route replace 10.9.0.0/16 via 198.18.0.9 dev nodenet-phy onlink proto static metric 20',
      'address del 198.18.0.1/24 dev eth0',
    ]);
  });

  it('moves global IPv6 addresses (without duplicate address detection) and IPv6 routes too; link-local addresses stay', () => {
    const dual = link({
      ifname: 'eth0',
      addresses: [
        { family: 'inet', local: '198.18.0.1', prefixlen: 24, secondary: false },
        { family: 'inet6', local: '2001:db8:18::1', prefixlen: 64, secondary: false },
        { family: 'inet6', local: 'fe80::1', prefixlen: 64, secondary: false },
      ],
    });
    const routes6 = parseRouteEntries([
      { dst: '2001:db8:18::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [] },
      { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [] },
      { dst: 'default', gateway: '2001:db8:18::100', dev: 'eth0', metric: 1024, flags: [] },
    ]);
    expect(moveAddressingScript(dual, phy, 'eth0', 'nodenet-phy', routes6).map((l) => l.args.join(' '))).toEqual([
      'link set dev nodenet-phy up',
      'address add 198.18.0.1/24 broadcast + dev nodenet-phy',
      'address add 2001:db8:18::1/64 dev nodenet-phy nodad',
      'route replace default via 2001:db8:18::100 dev nodenet-phy metric 1024',
      'address del 198.18.0.1/24 dev eth0',
      'address del 2001:db8:18::1/64 dev eth0',
    ]);
  });

  it('moved already: nothing to do', () => {
    const moved = link({ ifname: 'nodenet-phy', addresses: [{ family: 'inet', local: '198.18.0.1', prefixlen: 24, secondary: false }] });
    expect(moveAddressingScript(link({ ifname: 'eth0' }), moved, 'eth0', 'nodenet-phy', [])).toEqual([]);
  });

  it("the guard: one netdev ingress chain dropping what reaches the kernel through the interface; read back from nft's text", () => {
    expect(guardScript(parseIfName('eth0', 'u'), true).split('\n')).toEqual([
      'delete table netdev nodenet',
      'add table netdev nodenet',
      'add chain netdev nodenet uplink { type filter hook ingress device "eth0" priority -500; policy drop; }',
      'add rule netdev nodenet uplink counter drop comment "the uplink belongs to nodenet-phy"',
      '',
    ]);
    const listed =
      'table netdev nodenet {\n\tchain uplink {\n\t\ttype filter hook ingress device "eth0" priority -500; policy drop;\n\t\tcounter packets 3 bytes 180 drop\n\t}\n}\n';
    expect(guardedDeviceOf(listed)).toBe('eth0');
    expect(
      guardedDeviceOf(
        'table netdev nodenet {\n\tchain uplink {\n\t\ttype filter hook ingress device "eth0" priority -500; policy accept;\n\t}\n}',
      ),
    ).toBeUndefined();
    expect(guardedDeviceOf('')).toBeUndefined();
  });
});

describe("the node's own route to a peer (vxlan)", () => {
  const peer = { name: 'node-2', underlayAddress: parseIpv4Address('198.18.0.2', 'u'), subnet: Subnet.of('198.19.2.0/24') };

  it("a permanent neighbour entry for the next hop (the peer's VTEP MAC), then the route through the CNI, tagged proto 78", () => {
    expect(peerRouteLines(peer).map((l) => l.args.join(' '))).toEqual([
      'neigh replace 198.19.2.0 lladdr 02:6f:c6:12:00:02 dev nodenet0 nud permanent',
      'route replace 198.19.2.0/24 via 198.19.2.0 dev nodenet0 onlink proto 78',
    ]);
  });

  it("removed by protocol (only nodenet's route) and with a flush that tolerates absence", () => {
    expect(removeRouteLines(peer).map((l) => l.args.join(' '))).toEqual([
      'route del 198.19.2.0/24 proto 78',
      'neigh flush to 198.19.2.0 dev nodenet0 nud all',
    ]);
  });
});

describe("the node's own routes to a dual-stack peer (vxlan)", () => {
  const peer = {
    name: 'node-2',
    underlayAddress: parseIpv4Address('198.18.0.2', 'u'),
    subnet: Subnet.of('198.19.2.0/24'),
    ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64'),
  };

  it('the IPv6 subnet the same way as the IPv4 one, in the same batch: next hop its network address, resolved to the VTEP MAC', () => {
    expect(peerRouteLines(peer).map((l) => l.args.join(' '))).toEqual([
      'neigh replace 198.19.2.0 lladdr 02:6f:c6:12:00:02 dev nodenet0 nud permanent',
      'route replace 198.19.2.0/24 via 198.19.2.0 dev nodenet0 onlink proto 78',
      'neigh replace fd19:0:0:2:: lladdr 02:6f:c6:12:00:02 dev nodenet0 nud permanent',
      'route replace fd19:0:0:2::/64 via fd19:0:0:2:: dev nodenet0 onlink proto 78',
    ]);
    expect(removeRouteLines(peer).map((l) => l.args.join(' '))).toEqual([
      'route del 198.19.2.0/24 proto 78',
      'neigh flush to 198.19.2.0 dev nodenet0 nud all',
      'route del fd19:0:0:2::/64 proto 78',
      'neigh flush to fd19:0:0:2:: dev nodenet0 nud all',
    ]);
  });
});

describe('the switch-port guard (netdev)', () => {
  it('drops at prerouting what reaches the kernel through nnh-*/nni-* ports', () => {
    expect(portGuardScript(false)).toBe(
      [
        'add table inet nodenet',
        'add chain inet nodenet switch_ports { type filter hook prerouting priority -400; policy accept; }',
        'add rule inet nodenet switch_ports iifname "nnh-*" drop',
        'add rule inet nodenet switch_ports iifname "nni-*" drop',
        '',
      ].join('\n'),
    );
    expect(portGuardScript(true).startsWith('delete table inet nodenet\n')).toBe(true);
  });

  it('is right only when nft lists exactly that', () => {
    const listed =
      'table inet nodenet {\n\tchain switch_ports {\n\t\ttype filter hook prerouting priority -400; policy accept;\n\t\tiifname "nnh-*" drop\n\t\tiifname "nni-*" drop\n\t}\n}\n';
    expect(portGuardIsRight(listed)).toBe(true);
    expect(portGuardIsRight(listed.replace('\t\tiifname "nni-*" drop\n', ''))).toBe(false);
    expect(portGuardIsRight(listed.replace('policy accept', 'policy drop'))).toBe(false);
    expect(portGuardIsRight('')).toBe(false);
  });
});

describe('SharedLock', () => {
  it('runs shared holders together and an exclusive holder alone, in arrival order', async () => {
    const lock = new SharedLock();
    const events: string[] = [];
    const hold = (name: string, ms: number) => async () => {
      events.push(`${name}+`);
      await new Promise((resolve) => setTimeout(resolve, ms));
      events.push(`${name}-`);
    };
    await Promise.all([lock.shared(hold('a', 20)), lock.shared(hold('b', 10)), lock.exclusive(hold('X', 10)), lock.shared(hold('c', 5))]);
    expect(events).toEqual(['a+', 'b+', 'b-', 'a-', 'X+', 'X-', 'c+', 'c-']);
  });

  it('releases on failure', async () => {
    const lock = new SharedLock();
    await expect(lock.exclusive(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await lock.shared(async () => 1)).toBe(1);
  });
});
