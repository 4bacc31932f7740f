/**
 * OvsDataplane with IPv6 (netdev datapath, private OVS): a dual-stack CNI (gateway and link-local address on
 * the internal port, IPv6 sysctls), a dual-stack instance (addressed and routed in its namespace, tagged and
 * registered with both addresses, its IPv6 flows), a port put back from the registry or from the record with
 * its IPv6 flows, a delete that removes them; an IPv6-only CNI on a second node, its instance's port number
 * requested from its offset in the IPv6 subnet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CNI_NAME,
  Ipv6Subnet,
  Subnet,
  VXLAN_OVERHEAD,
  linkLocalForMac,
  macForAddress,
  parseIpv4Address,
  parseIpv6Address,
  type CniSpec,
  type InstanceSpec,
} from '@nodenet/core';
import { TestScope, Topology, nsExec, ping, readSysctls } from '@nodenet/testkit';
import { instanceRecordOf, instanceSpecMaker } from '@nodenet/testkit/instance-specs';
import { formatCookie, instanceCookie } from '../src/flows.js';
import { cniRecordOf, externalIds, ofportOf, ovsNode, removePortAndRegistry, type OvsNode } from './fixture.js';

const DUAL_GATEWAY6 = parseIpv6Address('fd19:0:0:11::1', 'test');
const ONLY_GATEWAY6 = parseIpv6Address('fd19:0:0:12::1', 'test');

function dualCni(): CniSpec {
  const gateway = parseIpv4Address('198.19.11.1', 'test');
  return {
    name: CNI_NAME,
    ipv4: { gateway, subnet: Subnet.of('198.19.11.0/24') },
    ipv6: { gateway: DUAL_GATEWAY6, subnet: Ipv6Subnet.of('fd19:0:0:11::/64') },
    mtu: 1500 - VXLAN_OVERHEAD,
    mac: macForAddress(gateway),
  };
}

function ipv6OnlyCni(): CniSpec {
  return {
    name: CNI_NAME,
    ipv6: { gateway: ONLY_GATEWAY6, subnet: Ipv6Subnet.of('fd19:0:0:12::/64') },
    mtu: 1500 - VXLAN_OVERHEAD,
    mac: '02:6e:fd:19:00:12',
  };
}

/** Global and link-local IPv6 addresses of a link, `ADDRESS/PREFIX`. */
async function ipv6Addresses(ns: string, ifname: string): Promise<string[]> {
  const r = await nsExec(ns, 'ip', ['-j', '-6', 'addr', 'show', 'dev', ifname]);
  const links = JSON.parse(r.stdout || '[]') as { addr_info: { local: string; prefixlen: number }[] }[];
  return links.flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).sort();
}

async function flowsOf(n: OvsNode, spec: InstanceSpec): Promise<string[]> {
  const cookie = formatCookie(instanceCookie(spec.handle));
  return (await n.ovs.flows('nodenet0')).filter((l) => l.includes(`cookie=${cookie},`) || l.includes(`cookie=${cookie} `));
}

const isIpv6Flow = (l: string) => /\b(ipv6|icmp6|udp6)\b/.test(l);

describe('OvsDataplane with IPv6 (netdev datapath, private OVS)', () => {
  let scope: TestScope;
  let topology: Topology;
  let n: OvsNode;
  const cni = dualCni();
  const cniRecord = cniRecordOf(cni);
  const instance = instanceSpecMaker(cni, 0x0e600000 + (process.pid % 0x1000) * 0x100);

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 2 });
    n = await ovsNode(scope, topology.node(1));
    await n.dataplane.ensureCni(cni);
  });
  afterAll(() => scope?.cleanup());

  it('a dual-stack CNI: both gateways and the link-local address of its MAC on the internal port, IPv6 forwarding, no RA or SLAAC; again, nothing to repair', async () => {
    expect(await ipv6Addresses(n.host.ns, 'nodenet0')).toEqual([`${DUAL_GATEWAY6}/64`, `${linkLocalForMac(cni.mac)}/64`].sort());
    expect(
      await readSysctls(n.host.ns, [
        'net.ipv6.conf.all.forwarding',
        'net.ipv6.conf.nodenet0.disable_ipv6',
        'net.ipv6.conf.nodenet0.accept_ra',
        'net.ipv6.conf.nodenet0.autoconf',
      ]),
    ).toEqual({
      'net.ipv6.conf.all.forwarding': '1',
      'net.ipv6.conf.nodenet0.disable_ipv6': '0',
      'net.ipv6.conf.nodenet0.accept_ra': '0',
      'net.ipv6.conf.nodenet0.autoconf': '0',
    });
    expect(await n.dataplane.ensureCni(cni)).toEqual([]);
  });

  it('a lost IPv6 gateway address is repaired', async () => {
    await nsExec(n.host.ns, 'ip', ['addr', 'del', `${DUAL_GATEWAY6}/64`, 'dev', 'nodenet0']);
    expect(await n.dataplane.ensureCni(cni)).toEqual([`address ${DUAL_GATEWAY6}/64 was missing on nodenet0: added`]);
    expect(await ipv6Addresses(n.host.ns, 'nodenet0')).toContain(`${DUAL_GATEWAY6}/64`);
  });

  it('a dual-stack instance: addressed and routed in its namespace, tagged and registered with both addresses, its IPv6 flows; it talks IPv6 to the gateway and another instance', async () => {
    const [nsA, nsB] = await Promise.all([topology.createInstanceNamespace(), topology.createInstanceNamespace()]);
    const a = instance(21, { netns: nsA });
    const b = instance(22, { netns: nsB });
    await Promise.all([n.dataplane.createInstance(a), n.dataplane.createInstance(b)]);
    expect(a.ipv6).toBe('fd19:0:0:11::15');
    expect((await ipv6Addresses(nsA, 'eth0')).filter((x) => !x.startsWith('fe80:'))).toEqual([`${a.ipv6}/64`]);
    expect(await externalIds(n.ovs, 'Interface', a.hostIfname)).toMatchObject({
      'nodenet-address': a.ipv4,
      'nodenet-ipv6-address': a.ipv6,
    });
    expect((await externalIds(n.ovs, 'Bridge', 'nodenet0'))[`nodenet-port-${a.hostIfname}`]).toBe(
      `${a.handle} ${a.ipv4} ${a.mac} veth ${a.ipv6}`,
    );
    expect(await ofportOf(n.ovs, a.hostIfname)).toBe(21);
    const flows = await flowsOf(n, a);
    // 14 in table 0 (anti-spoofing, RA guard, ND inspection) and its delivery from other nodes in table 30.
    expect(flows.filter(isIpv6Flow)).toHaveLength(15);
    expect(flows.filter((l) => isIpv6Flow(l) && l.includes('table=30'))).toHaveLength(1);
    expect(flows.some((l) => l.includes(`ipv6_src=${linkLocalForMac(a.mac)}`))).toBe(true);
    for (const target of [DUAL_GATEWAY6, b.ipv6!]) {
      const p = await ping(nsA, target, { count: 2 });
      expect(p.ok, `${target}: ${p.output}`).toBe(true);
    }
    await Promise.all([a, b].map((x) => n.dataplane.deleteInstance(instanceRecordOf(x), cniRecord)));
  });

  it("a port removed from OVSDB alone: ensureCni puts it back from the registry with its IPv6 flows; attachToCni from the daemon's record too", async () => {
    const ns = await topology.createInstanceNamespace();
    const a = instance(23, { netns: ns });
    await n.dataplane.createInstance(a);
    const before = (await flowsOf(n, a)).sort();
    await n.ovs.vsctl(['del-port', 'nodenet0', a.hostIfname]);
    expect((await ping(ns, DUAL_GATEWAY6, { timeoutSec: 1 })).ok).toBe(false);
    const repairs = await n.dataplane.ensureCni(cni);
    expect(repairs.join('\n')).toContain(`port ${a.hostIfname} of ${a.handle} (${a.ipv4}, ${a.ipv6}) was missing from nodenet0: put back`);
    expect(await externalIds(n.ovs, 'Interface', a.hostIfname)).toMatchObject({ 'nodenet-ipv6-address': a.ipv6 });
    expect((await flowsOf(n, a)).sort()).toEqual(before);
    expect((await ping(ns, DUAL_GATEWAY6, { count: 2 })).ok).toBe(true);

    // Registry entry gone too: the record (what core passes) carries the IPv6 address.
    await removePortAndRegistry(n.ovs, a.hostIfname);
    await n.dataplane.attachToCni(a.hostIfname, cni, instanceRecordOf(a));
    expect((await flowsOf(n, a)).sort()).toEqual(before);
    expect((await ping(ns, DUAL_GATEWAY6, { count: 2 })).ok).toBe(true);
    expect(await n.dataplane.ensureCni(cni)).toEqual([]);
  });

  it("deleteInstance removes the instance's IPv6 flows and the node's IPv6 neighbour entry", async () => {
    const ns = await topology.createInstanceNamespace();
    const a = instance(24, { netns: ns });
    await n.dataplane.createInstance(a);
    expect((await ping(n.host.ns, a.ipv6!, { count: 1 })).ok).toBe(true);
    const neighbour = async () => (await nsExec(n.host.ns, 'ip', ['-6', 'neigh', 'show', a.ipv6!, 'dev', 'nodenet0'])).stdout.trim();
    expect(await neighbour()).not.toBe('');
    await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
    expect(await flowsOf(n, a)).toEqual([]);
    expect(await neighbour()).toBe('');
  });

  it('an IPv6-only CNI: no IPv4 on the internal port, the instance has IPv6 flows only, its port number is its offset in the subnet', async () => {
    const only = ipv6OnlyCni();
    const m = await ovsNode(scope, topology.node(2));
    await m.dataplane.ensureCni(only);
    expect(await ipv6Addresses(m.host.ns, 'nodenet0')).toEqual([`${ONLY_GATEWAY6}/64`, `${linkLocalForMac(only.mac)}/64`].sort());
    const v4 = JSON.parse((await nsExec(m.host.ns, 'ip', ['-j', '-4', 'addr', 'show', 'dev', 'nodenet0'])).stdout || '[]') as {
      addr_info: unknown[];
    }[];
    expect(v4.flatMap((l) => l.addr_info)).toEqual([]);
    const ns = await topology.createInstanceNamespace();
    const a = instanceSpecMaker(only, 0x0e700000 + (process.pid % 0x1000) * 0x100)(0x21, { netns: ns });
    expect(a.ipv4).toBeUndefined();
    await m.dataplane.createInstance(a);
    expect(await ofportOf(m.ovs, a.hostIfname)).toBe(0x21);
    const flows = await flowsOf(m, a);
    expect(flows.length).toBeGreaterThan(0);
    expect(flows.every(isIpv6Flow), flows.join('\n')).toBe(true);
    const p = await ping(ns, ONLY_GATEWAY6, { count: 2 });
    expect(p.ok, p.output).toBe(true);
    expect(await m.dataplane.ensureCni(only)).toEqual([]);
    await m.dataplane.deleteInstance(instanceRecordOf(a), cniRecordOf(only));
    expect(await flowsOf(m, a)).toEqual([]);
  });
});
