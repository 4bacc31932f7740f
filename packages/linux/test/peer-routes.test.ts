/** Peer routes and the host-gw overlay's rules, as pure functions (the kernel side is in the backends' overlay tests). */
import { describe, expect, it } from 'vitest';
import { FailedPreconditionError, Subnet, parseIfName, parseIpv4Address, type HostInfo, type NodeRecord } from '@nodenet/core';
import { HostGwOverlay, deleteRouteLine, formatIpBatch, programmedPeersOf, type IpLine } from '../src/index.js';
import { hostGwPeerLines } from '../src/peer-routes.js';

const ip = (s: string) => parseIpv4Address(s, 'address');
const node = (name: string, underlay: string, subnet: string): NodeRecord => ({
  name,
  underlayAddress: ip(underlay),
  subnet: Subnet.of(subnet),
});
const peer2 = node('node-2', '198.18.0.2', '198.19.2.0/24');
const host: HostInfo = {
  underlayAddress: ip('198.18.0.1'),
  underlayInterface: 'u0',
  underlayMtu: 1500,
  localNetworks: [
    { interface: 'u0', subnet: Subnet.of('198.18.0.0/24') },
    { interface: 'mgmt0', subnet: Subnet.of('10.0.0.0/8') },
  ],
};
const underlayLink = parseIfName('u0', 'underlay');
const hostGw = new HostGwOverlay({ host });
const text = (lines: readonly IpLine[]) => formatIpBatch(lines).trimEnd().split('\n');

describe('host-gw peers', () => {
  it('routes the peer subnet via its underlay address on the underlay link', () => {
    expect(text(hostGwPeerLines(peer2, underlayLink))).toEqual(['route replace 198.19.2.0/24 via 198.18.0.2 dev u0 proto 78']);
    expect(text([deleteRouteLine(Subnet.of('198.19.2.0/24'))])).toEqual(['route del 198.19.2.0/24 proto 78']);
  });

  it('deletes the old route when the subnet changed', () => {
    const renumbered = node('node-2', '198.18.0.2', '198.19.20.0/24');
    expect(text(hostGwPeerLines(renumbered, underlayLink, peer2))).toEqual([
      'route del 198.19.2.0/24 proto 78',
      'route replace 198.19.20.0/24 via 198.18.0.2 dev u0 proto 78',
    ]);
  });

  it('accepts a peer on the underlay segment', () => {
    expect(() => hostGw.validatePeer(peer2)).not.toThrow();
  });

  it('refuses a peer off the underlay segment (also one on another local network), naming the segment', () => {
    const far = node('node-9', '198.18.1.9', '198.19.9.0/24');
    expect(() => hostGw.validatePeer(far)).toThrow(FailedPreconditionError);
    expect(() => hostGw.validatePeer(far)).toThrow(
      "peer node-9 at 198.18.1.9 is not on this node's L2 segment 198.18.0.0/24: host-gw needs directly reachable peers; use overlay mode vxlan",
    );
    expect(() => hostGw.validatePeer(node('node-10', '10.1.2.3', '198.19.10.0/24'))).toThrow(
      /not on this node's L2 segment 198\.18\.0\.0\/24/,
    );
    expect(() => hostGw.validatePeer(node('node-11', '198.18.0.255', '198.19.11.0/24'))).toThrow(/not on this node's L2 segment/);
  });

  it("refuses a peer with this node's own underlay address", () => {
    expect(() => hostGw.validatePeer(node('twin', '198.18.0.1', '198.19.9.0/24'))).toThrow(/this node's own/);
  });
});

describe('reading what is programmed', () => {
  it("turns nodenet's routes into peers (a /32 route prints without prefix)", () => {
    const routes = [
      { dst: '198.19.2.0/24', gateway: '198.19.2.0', dev: 'nodenet-vx', metric: 0 },
      { dst: '198.19.7.5', gateway: '198.18.0.7', dev: 'u0', metric: 0 },
    ];
    expect(programmedPeersOf(routes).map((p) => ({ ...p, subnet: p.subnet.toString() }))).toEqual([
      { subnet: '198.19.2.0/24', via: '198.19.2.0', dev: 'nodenet-vx' },
      { subnet: '198.19.7.5/32', via: '198.18.0.7', dev: 'u0' },
    ]);
  });
});
