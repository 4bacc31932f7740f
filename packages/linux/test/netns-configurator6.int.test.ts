/**
 * The namespace configurator (helpers/netns-netlink.pl) with IPv6, against the real kernel in namespaces the
 * test makes: a dual-stack veth made and configured in one request (both addresses, without DAD, both default
 * routes; the instance pings both gateways on the bridge), an IPv6-only instance end configured in place, and a
 * failure naming the IPv6 line as `ip -batch` would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CNI_NAME,
  Ipv6Subnet,
  Subnet,
  macForAddress,
  parseIpv4Address,
  parseNetnsRef,
  type CniSpec,
  type Ipv6Address,
} from '@nodenet/core';
import { ipBatch, ipJson, ping, TestScope } from '@nodenet/testkit';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';
import { IpBatchError } from '../src/ip-batch.js';
import { LINE } from '../src/link-scripts.js';
import { NetnsConfigurator } from '../src/netns-configurator.js';

const gateway = parseIpv4Address('198.19.1.1', 'gateway');
const gateway6 = 'fd19:0:0:1::1' as Ipv6Address;
const dual: CniSpec = {
  name: CNI_NAME,
  ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') },
  ipv6: { gateway: gateway6, subnet: Ipv6Subnet.of('fd19:0:0:1::/64') },
  mtu: 1450,
  mac: macForAddress(gateway),
};
const only6: CniSpec = { name: CNI_NAME, ipv6: dual.ipv6!, mtu: 1450, mac: macForAddress(gateway6) };

type AddrListing = {
  ifname: string;
  addr_info: { family: string; local?: string; prefixlen?: number; scope?: string; tentative?: boolean }[];
}[];
const globalAddresses = async (ns: string, dev: string) =>
  (await ipJson<AddrListing>(ns, ['addr', 'show', 'dev', dev]))[0]!.addr_info
    .filter((a) => a.local !== undefined && a.scope === 'global')
    .map((a) => `${a.local}/${a.prefixlen}${a.tentative ? ' tentative' : ''}`);
const defaultVia = async (ns: string, family: '-4' | '-6') =>
  (await ipJson<{ gateway?: string }[]>(ns, [family, 'route', 'show', 'default'])).map((r) => r.gateway);

describe('the namespace configurator with IPv6', () => {
  let scope: TestScope;
  let node: string;
  let configurator: NetnsConfigurator;

  beforeAll(async () => {
    scope = await TestScope.create();
    node = await scope.createNamespace();
    await ipBatch(node, [
      `link add ${CNI_NAME} type bridge`,
      `addr add 198.19.1.1/24 dev ${CNI_NAME}`,
      `addr add ${gateway6}/64 dev ${CNI_NAME} nodad`,
      `link set ${CNI_NAME} up`,
    ]);
    configurator = new NetnsConfigurator(parseNetnsRef(node, 'node'));
  });
  afterAll(async () => {
    configurator?.close();
    await scope?.cleanup();
  });

  it('makes a dual-stack veth in one request: both addresses usable at once, both default routes; pings both gateways', async () => {
    const ns = await scope.createNamespace();
    const spec = instanceSpecFor(dual, 0x6c01, 7, { netns: ns });
    const target = `/run/netns/${ns}`;
    // The node-side lines only name a failure of those steps: none is expected here.
    await configurator.createVeth(spec, target, CNI_NAME, []);
    expect(configurator.usable).toBe(true);
    expect(await globalAddresses(ns, 'eth0')).toEqual(['198.19.1.7/24', 'fd19:0:0:1::7/64']);
    expect(await defaultVia(ns, '-4')).toEqual(['198.19.1.1']);
    expect(await defaultVia(ns, '-6')).toEqual([gateway6]);
    const v6 = await ping(ns, gateway6);
    expect(v6.ok, v6.output).toBe(true);
    const v4 = await ping(ns, '198.19.1.1');
    expect(v4.ok, v4.output).toBe(true);
  });

  it('configures an IPv6-only instance end in place; a default route already there fails naming the IPv6 route line', async () => {
    const ns = await scope.createNamespace();
    const spec = instanceSpecFor(only6, 0x6c02, 9, { netns: ns, ifname: 'net1' });
    // (a veth pair inside the namespace: its peer up, as the node end would be)
    await ipBatch(ns, [`link add ${spec.handle} type veth peer name p0`, 'link set p0 up']);
    await configurator.configure(spec, `/run/netns/${ns}`);
    expect(await globalAddresses(ns, 'net1')).toEqual(['fd19:0:0:1::9/64']);
    expect(await defaultVia(ns, '-6')).toEqual([gateway6]);
    expect(await defaultVia(ns, '-4')).toEqual([]);

    const other = await scope.createNamespace();
    const again = instanceSpecFor(only6, 0x6c03, 10, { netns: other });
    await ipBatch(other, [
      `link add ${again.handle} type veth peer name p0`,
      'link set p0 up',
      'link add x0 type veth peer name x1',
      'link set x1 up',
      'link set x0 up',
      'addr add fd19:0:0:9::1/64 dev x0 nodad',
      'route add ::/0 via fd19:0:0:9::2',
    ]);
    const e = await configurator.configure(again, `/run/netns/${other}`).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(IpBatchError);
    expect((e as IpBatchError).failedLine?.id).toBe(LINE.defaultIpv6Route);
    expect((e as IpBatchError).detail).toContain('File exists');
  });
});
