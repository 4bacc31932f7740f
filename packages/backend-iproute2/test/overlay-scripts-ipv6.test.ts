/** The VXLAN overlay's lines for IPv6: peers' IPv6 subnets (dual-stack over IPv4) and an IPv6 underlay. */
import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, Ipv6Subnet, Subnet, parseNodeRecord, type HostInfo, type NodeRecord } from '@nodenet/core';
import { formatIpBatch, hostGwPeerLines, type IpLine } from '@nodenet/linux';
import { parseIfName } from '@nodenet/core';
import { Iproute2Overlay } from '../src/index.js';
import {
  createVxlanScript,
  removeVxlanPeerScripts,
  repairVxlanScript,
  stalePeerScripts,
  vxlanEndpointSpec,
  vxlanPeerScripts,
} from '../src/overlay-scripts.js';

const text = (lines: readonly IpLine[]) => formatIpBatch(lines).trimEnd().split('\n');
const rec = (name: string, underlayAddress: string, subnet?: string, ipv6Subnet?: string): NodeRecord =>
  parseNodeRecord({ name, underlayAddress, subnet, ipv6Subnet }, 'test');

const host4: HostInfo = {
  underlayAddress: rec('x', '198.18.0.1', '198.19.9.0/24').underlayAddress,
  underlayInterface: 'u0',
  underlayMtu: 1500,
  localNetworks: [{ interface: 'u0', subnet: Subnet.of('198.18.0.0/24') }],
};
const host6: HostInfo = {
  underlayAddress: rec('x', '2001:db8:18::1', undefined, 'fd19:0:0:9::/64').underlayAddress,
  underlayInterface: 'u0',
  underlayMtu: 1500,
  localNetworks: [{ interface: 'u0', subnet: Ipv6Subnet.of('2001:db8:18::/64') }],
};

describe('dual-stack peers over an IPv4 underlay', () => {
  const self = rec('node-1', '198.18.0.1', '198.19.1.0/24', 'fd19:0:0:1::/64');
  const peer = rec('node-2', '198.18.0.2', '198.19.2.0/24', 'fd19:0:0:2::/64');

  it('keeps the IPv4 overhead (50): MTU 1450, the device holds the IPv4 /32 only', () => {
    const spec = vxlanEndpointSpec(self, host4, 4242, 4789);
    expect(spec.mtu).toBe(1450);
    expect(new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host: host4 }).overhead).toBe(50);
    expect(text(createVxlanScript(spec))).toContain('address add 198.19.1.0/32 dev nodenet-vx');
  });

  it('routes both subnets of a peer in the same ip batch, each via its network address resolved to the VTEP MAC', () => {
    const { ip, bridge } = vxlanPeerScripts(peer);
    expect(text(ip)).toEqual([
      'neigh replace 198.19.2.0 lladdr 02:6f:c6:12:00:02 dev nodenet-vx nud permanent',
      'route replace 198.19.2.0/24 via 198.19.2.0 dev nodenet-vx onlink proto 78',
      'neigh replace fd19:0:0:2:: lladdr 02:6f:c6:12:00:02 dev nodenet-vx nud permanent',
      'route replace fd19:0:0:2::/64 via fd19:0:0:2:: dev nodenet-vx onlink proto 78',
    ]);
    expect(text(bridge)).toEqual(['fdb replace 02:6f:c6:12:00:02 dev nodenet-vx dst 198.18.0.2 self permanent']);
    expect(text(removeVxlanPeerScripts(peer).ip)).toEqual([
      'route del 198.19.2.0/24 proto 78',
      'neigh flush to 198.19.2.0 dev nodenet-vx nud all',
      'route del fd19:0:0:2::/64 proto 78',
      'neigh flush to fd19:0:0:2:: dev nodenet-vx nud all',
    ]);
  });

  it('a peer that drops its IPv6 subnet loses its IPv6 route and neighbour entry', () => {
    const v4only = rec('node-2', '198.18.0.2', '198.19.2.0/24');
    expect(text(vxlanPeerScripts(v4only, peer).ip).slice(0, 2)).toEqual([
      'route del fd19:0:0:2::/64 proto 78',
      'neigh flush to fd19:0:0:2:: dev nodenet-vx nud all',
    ]);
  });

  it('keeps the wanted IPv6 entries and removes stale ones', () => {
    const stale = stalePeerScripts(
      [peer],
      [
        { subnet: Ipv6Subnet.of('fd19:0:0:2::/64'), via: 'fd19:0:0:2::' as never, dev: 'nodenet-vx' },
        { subnet: Ipv6Subnet.of('fd19:0:0:7::/64'), via: 'fd19:0:0:7::' as never, dev: 'nodenet-vx' },
      ],
      [
        { dst: 'fd19:0:0:2::', state: ['PERMANENT'] },
        { dst: 'fd19:0:0:7::', state: ['PERMANENT'] },
      ],
      [],
    );
    expect(text(stale.ip)).toEqual(['route del fd19:0:0:7::/64 proto 78', 'neigh flush to fd19:0:0:7:: dev nodenet-vx nud all']);
  });
});

describe('an IPv6 underlay', () => {
  const self = rec('node-1', '2001:db8:18::1', undefined, 'fd19:0:0:1::/64');
  const peer = rec('node-2', '2001:db8:18::2', undefined, 'fd19:0:0:2::/64');

  it('takes 70 bytes of overhead: MTU 1430; the device is local to the IPv6 address and holds no address', () => {
    const spec = vxlanEndpointSpec(self, host6, 4242, 4789);
    expect(spec.mtu).toBe(1430);
    expect(spec.address).toBeUndefined();
    expect(new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host: host6 }).overhead).toBe(70);
    const lines = text(createVxlanScript(spec));
    expect(lines[0]).toBe(
      'link add name nodenet-vx address 02:6f:00:00:00:01 mtu 1430 type vxlan id 4242 dstport 4789 local 2001:db8:18::1 dev u0 nolearning',
    );
    expect(lines.some((l) => l.startsWith('address add'))).toBe(false);
  });

  it('repairs nothing on a device that matches, and removes a stray address', () => {
    const spec = vxlanEndpointSpec(self, host6, 4242, 4789);
    const state = {
      ifname: 'nodenet-vx',
      kind: 'vxlan',
      alias: 'nodenet:overlay',
      mtu: 1430,
      mac: spec.mac,
      up: true,
      vxlan: { vni: 4242, port: 4789, local: '2001:db8:18::1', link: 'u0', learning: false },
      addresses: [],
    };
    expect(repairVxlanScript(spec, state)).toEqual([]);
    const stray = { ...state, addresses: [{ family: 'inet', local: '198.19.1.0', prefixlen: 32, secondary: false }] };
    expect(text(repairVxlanScript(spec, stray))).toEqual(['address del 198.19.1.0/32 dev nodenet-vx']);
  });

  it('points the FDB entry at the IPv6 underlay address', () => {
    const { ip, bridge } = vxlanPeerScripts(peer);
    expect(text(ip)).toEqual([
      'neigh replace fd19:0:0:2:: lladdr 02:6f:00:00:00:02 dev nodenet-vx nud permanent',
      'route replace fd19:0:0:2::/64 via fd19:0:0:2:: dev nodenet-vx onlink proto 78',
    ]);
    expect(text(bridge)).toEqual(['fdb replace 02:6f:00:00:00:02 dev nodenet-vx dst 2001:db8:18::2 self permanent']);
  });

  it('refuses an underlay MTU too small for IPv6 instances, naming both numbers', () => {
    expect(() => vxlanEndpointSpec(self, { ...host6, underlayMtu: 1340 }, 4242, 4789)).toThrow(
      'the underlay u0 has MTU 1340, too small for VXLAN (it adds 70 bytes over an IPv6 underlay; IPv6 needs 1280): raise the underlay MTU or use overlay mode host-gw',
    );
  });

  it('refuses a peer on an IPv4 underlay, and one whose address ends like this node', () => {
    const overlay = new Iproute2Overlay({ mode: 'vxlan', vni: 4242, port: 4789, host: host6 });
    expect(() => overlay.validatePeer(rec('node-4', '198.18.0.4', '198.19.4.0/24'))).toThrow(FailedPreconditionError);
    expect(() => overlay.validatePeer(rec('node-4', '198.18.0.4', '198.19.4.0/24'))).toThrow(
      /every node of a cluster must use an underlay address of the same family/,
    );
    expect(() => overlay.validatePeer(rec('node-5', '2001:db8:99::1', undefined, 'fd19:0:0:5::/64'))).toThrow(
      /differ in their last 32 bits/,
    );
  });
});

describe('host-gw with IPv6', () => {
  const u0 = parseIfName('u0', 'underlay');

  it('routes a peer over an IPv6 underlay: IPv6 via its address, IPv4 via inet6 (RFC 5549)', () => {
    const peer = rec('node-2', '2001:db8:18::2', '198.19.2.0/24', 'fd19:0:0:2::/64');
    expect(text(hostGwPeerLines(peer, u0))).toEqual([
      'route replace 198.19.2.0/24 via inet6 2001:db8:18::2 dev u0 proto 78',
      'route replace fd19:0:0:2::/64 via 2001:db8:18::2 dev u0 proto 78',
    ]);
  });

  it('refuses an IPv6 subnet behind an IPv4 underlay address (the kernel has no IPv6 route via IPv4)', () => {
    const overlay = new Iproute2Overlay({ mode: 'host-gw', vni: 4242, port: 4789, host: host4 });
    expect(() => overlay.validatePeer(rec('node-2', '198.18.0.2', '198.19.2.0/24', 'fd19:0:0:2::/64'))).toThrow(
      'peer node-2 has IPv6 subnet fd19:0:0:2::/64 but an IPv4 underlay address 198.18.0.2: host-gw routes IPv6 via an IPv6 underlay address only; give the nodes IPv6 underlay addresses or use overlay mode vxlan',
    );
  });

  it('accepts an IPv6 peer on the IPv6 segment and refuses one off it, naming the segment', () => {
    const overlay = new Iproute2Overlay({ mode: 'host-gw', vni: 4242, port: 4789, host: host6 });
    expect(() => overlay.validatePeer(rec('node-2', '2001:db8:18::2', undefined, 'fd19:0:0:2::/64'))).not.toThrow();
    expect(() => overlay.validatePeer(rec('node-3', '2001:db8:19::3', undefined, 'fd19:0:0:3::/64'))).toThrow(
      "peer node-3 at 2001:db8:19::3 is not on this node's L2 segment 2001:db8:18::/64: host-gw needs directly reachable peers; use overlay mode vxlan",
    );
  });
});
