import { describe, expect, it } from 'vitest';
import { parseIpv4Address } from '@nodenet/core';
import {
  LINE,
  deleteInstanceScript,
  formatIpBatch,
  instanceNamespaceScript,
  repairCniScript,
  type IpLine,
  type IpLinkWithAddresses,
} from '@nodenet/linux';
import { createCniScript, tapScript, vethScript } from '../src/scripts.js';
import { cniSpec, ifname, instanceSpec, netns } from './specs.js';

const text = (lines: IpLine[]) => lines.map((l) => l.args.join(' '));

describe('CNI scripts', () => {
  it('creates the bridge with MAC at creation, then MTU, alias and no IPv6 address generation, address, up', () => {
    expect(text(createCniScript(cniSpec))).toEqual([
      'link add name nodenet0 address 02:6e:c6:13:01:01 type bridge',
      'link set dev nodenet0 mtu 1450 alias nodenet:cni addrgenmode none',
      'address add 198.19.1.1/24 broadcast + dev nodenet0',
      'link set dev nodenet0 up',
    ]);
    expect(createCniScript(cniSpec).map((l) => l.id)).toEqual([LINE.createBridge, LINE.configureBridge, LINE.bridgeAddress, LINE.bridgeUp]);
  });

  const healthy: IpLinkWithAddresses = {
    ifindex: 7,
    ifname: 'nodenet0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1450,
    address: '02:6e:c6:13:01:01',
    alias: 'nodenet:cni',
    linkinfo: { kind: 'bridge' },
    addresses: [
      { family: 'inet', local: '198.19.1.1', prefixlen: 24, secondary: false },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64, secondary: false },
    ],
  };

  it('repairs nothing on a bridge that matches the spec (MAC compared case-insensitively)', () => {
    expect(repairCniScript(cniSpec, healthy)).toEqual([]);
    expect(repairCniScript(cniSpec, { ...healthy, address: '02:6E:C6:13:01:01' })).toEqual([]);
  });

  it('adds a missing address and brings a down bridge up', () => {
    const broken = { ...healthy, flags: ['BROADCAST', 'MULTICAST'], addresses: [] };
    const repairs = repairCniScript(cniSpec, broken);
    expect(text(repairs.map((r) => r.line))).toEqual(['address add 198.19.1.1/24 broadcast + dev nodenet0', 'link set dev nodenet0 up']);
    expect(repairs.map((r) => r.found)).toEqual(['address 198.19.1.1/24 was missing on nodenet0: added', 'nodenet0 was down: brought up']);
  });

  it('fixes MAC and MTU and replaces a stale address (same address, other prefix too)', () => {
    const drifted: IpLinkWithAddresses = {
      ...healthy,
      mtu: 1500,
      address: 'aa:bb:cc:dd:ee:ff',
      addresses: [
        { family: 'inet', local: '198.19.1.1', prefixlen: 16, secondary: false },
        { family: 'inet', local: '198.19.9.1', prefixlen: 24, secondary: false },
      ],
    };
    const repairs = repairCniScript(cniSpec, drifted);
    expect(text(repairs.map((r) => r.line))).toEqual([
      'link set dev nodenet0 address 02:6e:c6:13:01:01',
      'link set dev nodenet0 mtu 1450',
      'address del 198.19.1.1/16 dev nodenet0',
      'address del 198.19.9.1/24 dev nodenet0',
      'address add 198.19.1.1/24 broadcast + dev nodenet0',
    ]);
    expect(repairs.map((r) => r.found)).toEqual([
      'MAC of nodenet0 was aa:bb:cc:dd:ee:ff: set to 02:6e:c6:13:01:01',
      'MTU of nodenet0 was 1500: set to 1450',
      'stale address 198.19.1.1/16 was on nodenet0: removed',
      'stale address 198.19.9.1/24 was on nodenet0: removed',
      'address 198.19.1.1/24 was missing on nodenet0: added',
    ]);
    expect(repairs.map((r) => r.line.id)).toEqual([
      LINE.bridgeMac,
      LINE.bridgeMtu,
      LINE.bridgeStaleAddress,
      LINE.bridgeStaleAddress,
      LINE.bridgeAddress,
    ]);
  });
});

describe('instance scripts', () => {
  it('veth in the node namespace: instance end with its MAC and MTU, host end on the bridge, tagged, hairpin, up', () => {
    expect(text(vethScript(instanceSpec()))).toEqual([
      'link add name nnh-0000abcd mtu 1450 master nodenet0 type veth peer name nni-0000abcd address 02:6e:c6:13:01:07 mtu 1450',
      'link set dev nnh-0000abcd alias nodenet:nni-0000abcd addrgenmode none up type bridge_slave hairpin on',
    ]);
  });

  it('veth with a namespace: the instance end is created in it, by path (names become /run/netns paths)', () => {
    expect(text(vethScript(instanceSpec(), '/run/netns/pod-1'))[0]).toBe(
      'link add name nnh-0000abcd mtu 1450 master nodenet0 type veth peer name nni-0000abcd address 02:6e:c6:13:01:07 mtu 1450 netns /run/netns/pod-1',
    );
    expect(text(vethScript(instanceSpec(), '/proc/4242/ns/net'))[0]).toMatch(/ netns \/proc\/4242\/ns\/net$/);
  });

  it('inside the namespace: rename, address, up, lo up, default route via the gateway', () => {
    const spec = instanceSpec({ netns: netns('pod-1'), ifname: ifname('eth0') });
    expect(text(instanceNamespaceScript(spec))).toEqual([
      'link set dev nni-0000abcd name eth0',
      'address add 198.19.1.7/24 broadcast + dev eth0',
      'link set dev eth0 up',
      'link set dev lo up',
      'route add default via 198.19.1.1 dev eth0',
    ]);
    expect(instanceNamespaceScript(spec).map((l) => l.id)).toEqual([
      LINE.rename,
      LINE.instanceAddress,
      LINE.instanceUp,
      LINE.loopbackUp,
      LINE.defaultRoute,
    ]);
  });

  it('uses a custom ifname, defaults to eth0, and skips the rename when ifname is the handle', () => {
    expect(text(instanceNamespaceScript(instanceSpec({ netns: netns('pod-1'), ifname: ifname('net1') })))[0]).toBe(
      'link set dev nni-0000abcd name net1',
    );
    expect(text(instanceNamespaceScript(instanceSpec({ netns: netns('pod-1') })))[0]).toBe('link set dev nni-0000abcd name eth0');
    const same = instanceNamespaceScript(instanceSpec({ netns: netns('pod-1'), ifname: ifname('nni-0000abcd') }));
    expect(same.map((l) => l.id)).not.toContain(LINE.rename);
    expect(same[0]!.args.join(' ')).toBe('address add 198.19.1.7/24 broadcast + dev nni-0000abcd');
  });

  it('TAP: named with the handle, MTU, alias, bridge port, up, hairpin; keeps its own MAC (spec.mac is the guest NIC)', () => {
    const spec = instanceSpec({ kind: 'tap', hostIfname: ifname('nni-0000abcd') });
    const lines = text(tapScript(spec));
    expect(lines).toEqual([
      'tuntap add dev nni-0000abcd mode tap',
      'link set dev nni-0000abcd mtu 1450 alias nodenet:nni-0000abcd addrgenmode none master nodenet0 up',
      'link set dev nni-0000abcd type bridge_slave hairpin on',
    ]);
    expect(lines.join('\n')).not.toContain(spec.mac);
  });

  it('delete: the node-side link and the neighbour entry of the address on the CNI', () => {
    const record = { hostIfname: ifname('nnh-0000abcd'), address: parseIpv4Address('198.19.1.7', 'a') };
    expect(text(deleteInstanceScript(record, cniSpec.name))).toEqual([
      'link del dev nnh-0000abcd',
      'neigh flush to 198.19.1.7 dev nodenet0',
    ]);
  });

  it('every generated script passes the batch-safety check', () => {
    const spec = instanceSpec({ netns: netns('/proc/1/ns/net'), ifname: ifname('eth0') });
    for (const lines of [createCniScript(cniSpec), vethScript(spec, '/proc/1/ns/net'), instanceNamespaceScript(spec), tapScript(spec)]) {
      expect(formatIpBatch(lines).split('\n').filter(Boolean)).toHaveLength(lines.length);
    }
  });
});
