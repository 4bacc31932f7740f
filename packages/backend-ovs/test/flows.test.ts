import { describe, expect, it } from 'vitest';
import { InternalError, Ipv6Subnet, Subnet, linkLocalForMac, macForAddress, parseIpv4Address, parseIpv6Address } from '@nodenet/core';
import { PORT, flowModOf, packetOutOf } from '@nodenet/openvswitch';
import {
  COOKIE_CLASS,
  addFlowsScript,
  baseFlows,
  classSelector,
  cookieClassOf,
  cookieIdOf,
  cookieOf,
  cookiesOfDump,
  classCookieMatch,
  deleteCookiesScript,
  formatCookie,
  formatFlow,
  instanceCookie,
  instanceFlows,
  parseFlowDiff,
  peerCookie,
  peerFlows,
  primingPacketHex,
  primingPacketOut,
  repairFlowsScript,
  underlayOfPeerCookie,
} from '../src/flows.js';

const ip = (s: string) => parseIpv4Address(s, 'test');
const gateway = ip('198.19.1.1');
const gatewayMac = macForAddress(gateway);

describe('cookies', () => {
  it("carry nodenet's prefix, the owner class and a 32-bit id", () => {
    expect(formatCookie(cookieOf(COOKIE_CLASS.instance, 0x1a2b3c4d))).toBe('0x6e6e01001a2b3c4d');
    expect(formatCookie(cookieOf(COOKIE_CLASS.base, 0))).toBe('0x6e6e000000000000');
    expect(formatCookie(instanceCookie('nni-0000abcd'))).toBe('0x6e6e01000000abcd');
    expect(formatCookie(peerCookie(ip('198.18.0.2')))).toBe('0x6e6e0300c6120002');
  });

  it("tell their class and id back; anything else is no class of nodenet's", () => {
    const c = peerCookie(ip('198.18.0.77'));
    expect(cookieClassOf(c)).toBe(COOKIE_CLASS.peer);
    expect(underlayOfPeerCookie(c)).toBe('198.18.0.77');
    expect(cookieIdOf(instanceCookie('nni-ffffffff'))).toBe(0xffffffff);
    expect(cookieClassOf(0n)).toBeUndefined();
    expect(cookieClassOf(0x6e6e020000000001n), 'an unknown class byte').toBeUndefined();
    expect(cookieClassOf(0x6e6e010100000001n), 'a non-zero reserved byte').toBeUndefined();
    expect(cookieClassOf(0x1234010000000001n)).toBeUndefined();
  });

  it('select a class by mask or one cookie exactly', () => {
    expect(classSelector(COOKIE_CLASS.peer)).toBe('cookie=0x6e6e030000000000/0xffffff0000000000');
    expect(classCookieMatch(COOKIE_CLASS.peer)).toEqual({ cookie: 0x6e6e030000000000n, cookieMask: 0xffffff0000000000n });
    expect(deleteCookiesScript([instanceCookie('nni-00000001')])).toBe('delete cookie=0x6e6e010000000001/-1\n');
  });

  it('refuse a handle that is not nni- and 8 hex digits', () => {
    expect(() => instanceCookie('eth0')).toThrow(InternalError);
    expect(() => instanceCookie('nni-1234567')).toThrow(InternalError);
  });
});

describe('the pipeline', () => {
  it('base: default drop, the gateway goes on, NORMAL switching, tunnel delivery to the gateway or drop', () => {
    expect(baseFlows({ gateway, gatewayMac }).map(formatFlow)).toEqual([
      'cookie=0x6e6e000000000000,table=0,priority=0,actions=drop',
      'cookie=0x6e6e000000000000,table=0,priority=100,in_port=LOCAL,actions=goto_table:10',
      'cookie=0x6e6e000000000000,table=10,priority=0,actions=NORMAL',
      'cookie=0x6e6e000000000000,table=30,priority=0,actions=drop',
      'cookie=0x6e6e000000000000,table=30,priority=100,ip,nw_dst=198.19.1.1,actions=set_field:02:6e:c6:13:01:01->eth_dst,output:LOCAL',
    ]);
  });

  it('an instance: only its own IPv4 and ARP source from its port, and routed delivery from other nodes', () => {
    const address = ip('198.19.1.7');
    const flows = instanceFlows({ handle: 'nni-0000abcd', ofport: 7, ipv4: address, mac: macForAddress(address) }, gatewayMac);
    expect(flows.map(formatFlow)).toEqual([
      'cookie=0x6e6e01000000abcd,table=0,priority=200,ip,in_port=7,nw_src=198.19.1.7,actions=goto_table:10',
      'cookie=0x6e6e01000000abcd,table=0,priority=200,arp,in_port=7,arp_spa=198.19.1.7,actions=goto_table:10',
      'cookie=0x6e6e01000000abcd,table=30,priority=100,ip,nw_dst=198.19.1.7,actions=set_field:02:6e:c6:13:01:01->eth_src,set_field:02:6e:c6:13:01:07->eth_dst,dec_ttl,output:7',
    ]);
  });

  it('a dual-stack instance: the IPv4 flows, then IPv6 from its own and its link-local address only, RA guard, ND inspection', () => {
    const address = ip('198.19.1.7');
    const mac = macForAddress(address);
    const v6 = parseIpv6Address('fd19:0:0:1::7', 'test');
    const local = linkLocalForMac(mac);
    expect(local).toBe('fe80::6e:c6ff:fe13:107');
    const c = 'cookie=0x6e6e01000000abcd,table=0';
    const flows = instanceFlows({ handle: 'nni-0000abcd', ofport: 7, ipv4: address, ipv6: v6, mac }, gatewayMac);
    expect(flows.map(formatFlow)).toEqual([
      `${c},priority=200,ip,in_port=7,nw_src=198.19.1.7,actions=goto_table:10`,
      `${c},priority=200,arp,in_port=7,arp_spa=198.19.1.7,actions=goto_table:10`,
      'cookie=0x6e6e01000000abcd,table=30,priority=100,ip,nw_dst=198.19.1.7,actions=set_field:02:6e:c6:13:01:01->eth_src,set_field:02:6e:c6:13:01:07->eth_dst,dec_ttl,output:7',
      `${c},priority=300,icmp6,in_port=7,icmp_type=134,actions=drop`,
      `${c},priority=300,icmp6,in_port=7,icmp_type=137,actions=drop`,
      `${c},priority=300,udp6,in_port=7,tp_src=547,actions=drop`,
      `${c},priority=250,icmp6,in_port=7,ipv6_src=${v6},icmp_type=136,icmp_code=0,nd_target=${v6},actions=goto_table:10`,
      `${c},priority=250,icmp6,in_port=7,ipv6_src=${v6},icmp_type=136,icmp_code=0,nd_target=${local},actions=goto_table:10`,
      `${c},priority=250,icmp6,in_port=7,ipv6_src=${local},icmp_type=136,icmp_code=0,nd_target=${v6},actions=goto_table:10`,
      `${c},priority=250,icmp6,in_port=7,ipv6_src=${local},icmp_type=136,icmp_code=0,nd_target=${local},actions=goto_table:10`,
      `${c},priority=240,icmp6,in_port=7,icmp_type=136,actions=drop`,
      `${c},priority=230,icmp6,in_port=7,ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=${v6},actions=goto_table:10`,
      `${c},priority=230,icmp6,in_port=7,ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=${local},actions=goto_table:10`,
      `${c},priority=230,icmp6,in_port=7,ipv6_src=::,icmp_type=131,actions=goto_table:10`,
      `${c},priority=230,icmp6,in_port=7,ipv6_src=::,icmp_type=143,actions=goto_table:10`,
      `${c},priority=200,ipv6,in_port=7,ipv6_src=${v6},actions=goto_table:10`,
      `${c},priority=200,ipv6,in_port=7,ipv6_src=${local},actions=goto_table:10`,
      `cookie=0x6e6e01000000abcd,table=30,priority=100,ipv6,ipv6_dst=${v6},actions=set_field:02:6e:c6:13:01:01->eth_src,set_field:02:6e:c6:13:01:07->eth_dst,dec_ttl,output:7`,
    ]);
    // Every drop outranks every accept of the same packet: an advert for another address from the port's own
    // source (200 would take it) is dropped at 240; a router advert from its own link-local address at 300.
    const drops = flows.filter((f) => f.actions === 'drop').map((f) => f.priority);
    expect(Math.min(...drops)).toBeGreaterThan(200);
    expect(flows.filter((f) => f.match.includes('icmp_type=136') && f.actions !== 'drop').every((f) => f.priority > 240)).toBe(true);
  });

  it('an IPv6-only instance: only the IPv6 flows (no IPv4, no ARP, no IPv4 delivery); a base without an IPv4 gateway', () => {
    const mac = '02:00:00:00:02:11';
    const v6 = parseIpv6Address('fd19:0:0:2::11', 'test');
    const flows = instanceFlows({ handle: 'nni-00000011', ofport: 17, ipv6: v6, mac }, gatewayMac).map(formatFlow);
    expect(flows).toHaveLength(15);
    expect(flows.filter((f) => /,(ip|arp),|nw_|arp_/.test(f))).toEqual([]);
    expect(flows.filter((f) => f.includes('table=30'))).toEqual([
      `cookie=0x6e6e010000000011,table=30,priority=100,ipv6,ipv6_dst=${v6},actions=set_field:02:6e:c6:13:01:01->eth_src,set_field:02:00:00:00:02:11->eth_dst,dec_ttl,output:17`,
    ]);
    expect(flows).toContain(`cookie=0x6e6e010000000011,table=0,priority=200,ipv6,in_port=17,ipv6_src=${v6},actions=goto_table:10`);
    expect(flows).toContain(
      `cookie=0x6e6e010000000011,table=0,priority=200,ipv6,in_port=17,ipv6_src=fe80::ff:fe00:211,actions=goto_table:10`,
    );
    expect(baseFlows({ gatewayMac }).map(formatFlow)).toEqual(baseFlows({ gateway, gatewayMac }).map(formatFlow).slice(0, 4));
    // The IPv6 gateway takes what the tunnel delivers to it, as the IPv4 one does.
    expect(
      baseFlows({ ipv6Gateway: parseIpv6Address('fd19:0:0:2::1', 'test'), gatewayMac })
        .map(formatFlow)
        .slice(4),
    ).toEqual([
      'cookie=0x6e6e000000000000,table=30,priority=100,ipv6,ipv6_dst=fd19:0:0:2::1,actions=set_field:02:6e:c6:13:01:01->eth_dst,output:LOCAL',
    ]);
    expect(() => instanceFlows({ handle: 'nni-00000011', ofport: 17, mac }, gatewayMac)).toThrow(/no address/);
  });

  it('an IPv4-only instance sends no IPv6 at all (none of its flows matches IPv6)', () => {
    const address = ip('198.19.1.9');
    const flows = instanceFlows({ handle: 'nni-00000009', ofport: 9, ipv4: address, mac: macForAddress(address) }, gatewayMac);
    expect(flows.map(formatFlow).filter((f) => /ipv6|icmp6|udp6/.test(f))).toEqual([]);
  });

  it('a peer: its tunnel packets from its subnet only; traffic to its subnet tunnelled, TTL decremented for instances only', () => {
    const flows = peerFlows({ underlayAddress: ip('198.18.0.2'), subnet: Subnet.of('198.19.2.0/24') }, 65000);
    expect(flows.map(formatFlow)).toEqual([
      'cookie=0x6e6e0300c6120002,table=0,priority=150,ip,tun_src=198.18.0.2,in_port=65000,nw_src=198.19.2.0/24,actions=goto_table:30',
      'cookie=0x6e6e0300c6120002,table=10,priority=110,ip,in_port=LOCAL,nw_dst=198.19.2.0/24,actions=set_field:198.18.0.2->tun_dst,output:65000',
      'cookie=0x6e6e0300c6120002,table=10,priority=100,ip,nw_dst=198.19.2.0/24,actions=dec_ttl,set_field:198.18.0.2->tun_dst,output:65000',
    ]);
  });

  it('a dual-stack peer: the same three flows per subnet, IPv4 then IPv6, all into the one tunnel under its one cookie', () => {
    const flows = peerFlows(
      { underlayAddress: ip('198.18.0.2'), subnet: Subnet.of('198.19.2.0/24'), ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') },
      65000,
    );
    const c = 'cookie=0x6e6e0300c6120002';
    expect(flows.map(formatFlow)).toEqual([
      `${c},table=0,priority=150,ip,tun_src=198.18.0.2,in_port=65000,nw_src=198.19.2.0/24,actions=goto_table:30`,
      `${c},table=10,priority=110,ip,in_port=LOCAL,nw_dst=198.19.2.0/24,actions=set_field:198.18.0.2->tun_dst,output:65000`,
      `${c},table=10,priority=100,ip,nw_dst=198.19.2.0/24,actions=dec_ttl,set_field:198.18.0.2->tun_dst,output:65000`,
      `${c},table=0,priority=150,ipv6,tun_src=198.18.0.2,in_port=65000,ipv6_src=fd19:0:0:2::/64,actions=goto_table:30`,
      `${c},table=10,priority=110,ipv6,in_port=LOCAL,ipv6_dst=fd19:0:0:2::/64,actions=set_field:198.18.0.2->tun_dst,output:65000`,
      `${c},table=10,priority=100,ipv6,ipv6_dst=fd19:0:0:2::/64,actions=dec_ttl,set_field:198.18.0.2->tun_dst,output:65000`,
    ]);
    // Every flow parses into the OpenFlow codec's vocabulary (the overlay sends them over its connection).
    for (const f of flows) expect(() => flowModOf('add', formatFlow(f))).not.toThrow();
    // An IPv6-only peer: only the IPv6 flows.
    expect(peerFlows({ underlayAddress: ip('198.18.0.2'), ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') }, 65000).map(formatFlow)).toEqual(
      flows.slice(3).map(formatFlow),
    );
  });

  it('a peer over an IPv6 underlay: the IPv6 tunnel fields, its cookie from the last 32 bits of the address', () => {
    const underlay = parseIpv6Address('2001:db8:18::c612:2', 'test');
    const flows = peerFlows({ underlayAddress: underlay, ipv6Subnet: Ipv6Subnet.of('fd19:0:0:2::/64') }, 65000).map(formatFlow);
    expect(flows[0]).toBe(
      'cookie=0x6e6e0300c6120002,table=0,priority=150,ipv6,tun_ipv6_src=2001:db8:18::c612:2,in_port=65000,ipv6_src=fd19:0:0:2::/64,actions=goto_table:30',
    );
    expect(flows[1]).toBe(
      'cookie=0x6e6e0300c6120002,table=10,priority=110,ipv6,in_port=LOCAL,ipv6_dst=fd19:0:0:2::/64,actions=set_field:2001:db8:18::c612:2->tun_ipv6_dst,output:65000',
    );
    expect(peerCookie(parseIpv6Address('2001:db8:18::2', 'test'))).toBe(0x6e6e030000000002n);
    expect(() => peerFlows({ underlayAddress: underlay }, 65000)).toThrow(/no subnet/);
  });

  it('refuses a port number OpenFlow does not give a port', () => {
    expect(() =>
      instanceFlows({ handle: 'nni-00000001', ofport: 0, ipv4: ip('198.19.1.2'), mac: '02:00:00:00:00:01' }, gatewayMac),
    ).toThrow(/not an OpenFlow port/);
    expect(() => peerFlows({ underlayAddress: ip('198.18.0.2'), subnet: Subnet.of('198.19.2.0/24') }, 0xff00)).toThrow(InternalError);
  });

  it('refuses text that is no validated value', () => {
    expect(() =>
      instanceFlows({ handle: 'nni-00000001', ofport: 3, ipv4: ip('198.19.1.2'), mac: '02:00:00:00:00:01,actions=NORMAL x' }, gatewayMac),
    ).toThrow(/unexpected characters/);
  });

  it('adds as flow-mod commands for one bundle', () => {
    expect(addFlowsScript(baseFlows({ gateway, gatewayMac }).slice(0, 1))).toBe(
      'add cookie=0x6e6e000000000000,table=0,priority=0,actions=drop\n',
    );
  });
});

describe('comparing with the switch (diff-flows)', () => {
  const output = [
    '-priority=200,ip,in_port=5,nw_src=198.19.1.5 cookie=0x6e6e010000000005 actions=goto_table:10',
    '+priority=200,ip,in_port=5,nw_src=198.19.1.6 cookie=0x6e6e010000000005 actions=goto_table:10',
    '+table=30 priority=100,ip,nw_dst=198.19.1.1 cookie=0x6e6e000000000000 actions=set_field:02:6e:c6:13:01:01->eth_dst,LOCAL',
    '-table=10 priority=200,ip,nw_dst=198.19.2.0/24 cookie=0x6e6e0300c6120002 actions=dec_ttl,output:1',
    '-priority=5,ip cookie=0x0 actions=drop',
    '',
  ].join('\n');

  it('parses each side with its cookie and the key a strict delete names', () => {
    const diff = parseFlowDiff(output);
    expect(diff).toHaveLength(5);
    expect(diff[0]).toEqual({
      sign: '-',
      text: 'priority=200,ip,in_port=5,nw_src=198.19.1.5 cookie=0x6e6e010000000005 actions=goto_table:10',
      cookie: 0x6e6e010000000005n,
      key: 'table=0 priority=200,ip,in_port=5,nw_src=198.19.1.5',
    });
    expect(diff[2]!.key).toBe('table=30 priority=100,ip,nw_dst=198.19.1.1');
    expect(diff[4]!.cookie).toBe(0n);
  });

  it("repairs only the owned classes: deletes first, then adds; the overlay's and foreign flows stay", () => {
    const { script, removed, added } = repairFlowsScript(parseFlowDiff(output), [COOKIE_CLASS.base, COOKIE_CLASS.instance]);
    expect(script).toBe(
      [
        'delete_strict table=0 priority=200,ip,in_port=5,nw_src=198.19.1.5',
        'add priority=200,ip,in_port=5,nw_src=198.19.1.6 cookie=0x6e6e010000000005 actions=goto_table:10',
        'add table=30 priority=100,ip,nw_dst=198.19.1.1 cookie=0x6e6e000000000000 actions=set_field:02:6e:c6:13:01:01->eth_dst,LOCAL',
        '',
      ].join('\n'),
    );
    expect([removed, added]).toEqual([1, 2]);
    expect(repairFlowsScript([], [COOKIE_CLASS.base]).script).toBe('');
  });

  it('lists the cookies of a dump once each', () => {
    const dump =
      ' cookie=0x6e6e0300c6120002, table=10, priority=110,ip actions=drop\n cookie=0x6e6e0300c6120002, priority=150 actions=drop\n cookie=0x6e6e0300c6120003, priority=150 actions=drop\n';
    expect(cookiesOfDump(dump)).toEqual([0x6e6e0300c6120002n, 0x6e6e0300c6120003n]);
  });
});

describe('priming the tunnel neighbour cache', () => {
  it('is an empty IPv4 packet from 0.0.0.0 with a valid header checksum, sent straight to the tunnel', () => {
    const hex = primingPacketHex(ip('198.18.0.2'));
    expect(hex.slice(0, 28)).toBe('ffffffffffff0200000000000800');
    const header = Buffer.from(hex.slice(28), 'hex');
    expect(header).toHaveLength(20);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += header.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    expect(sum).toBe(0xffff);
    expect([...header.subarray(12, 16)]).toEqual([0, 0, 0, 0]);
    expect([...header.subarray(16, 20)]).toEqual([198, 18, 0, 2]);
    expect(primingPacketOut(ip('198.18.0.2'), 65000)).toBe(
      `in_port=LOCAL,packet=${hex},actions=set_field:198.18.0.2->tun_dst,output:65000`,
    );
  });

  it('is a packet-out the OpenFlow connection encodes (in_port LOCAL, tunnel destination, out the tunnel port)', () => {
    const p = packetOutOf(primingPacketOut(ip('198.18.1.7'), 3));
    expect(p.inPort).toBe(PORT.LOCAL);
    expect(p.data.toString('hex')).toBe(primingPacketHex(ip('198.18.1.7')));
    expect(p.actions).toEqual([
      { type: 'set_field', field: 'tun_dst', value: '198.18.1.7' },
      { type: 'output', port: 3 },
    ]);
  });
});

describe('priming over an IPv6 underlay', () => {
  it('sets the IPv6 tunnel destination; the inner packet goes to 0.0.0.0', () => {
    const underlay = parseIpv6Address('2001:db8:18::2', 'test');
    const out = primingPacketOut(underlay, 65000);
    expect(out).toMatch(/,actions=set_field:2001:db8:18::2->tun_ipv6_dst,output:65000$/);
    expect(primingPacketHex(underlay).endsWith('00000000')).toBe(true);
    expect(() => packetOutOf(out)).not.toThrow();
  });
});
