// NodeNetwork's cluster side with IPv6: the CNI's IPv6 subnet is checked against the peers' ipv6Subnet (as the
// IPv4 one against their subnet), and joinCluster gets every family the CNI holds (an IPv6-only node joins too).
import { beforeEach, describe, expect, it } from 'vitest';
import { Ipv6Subnet, Subnet, type NodeSubnets, type PeerSubnet } from '@nodenet/core';
import { NodeNetworkHarness, errorOf } from './node-network-harness.js';

const show = (s: NodeSubnets) => ({ subnet: s.subnet?.toString(), ipv6Subnet: s.ipv6Subnet?.toString() });

describe('NodeNetwork joins the cluster with both families', () => {
  let h: NodeNetworkHarness;
  let joined: NodeSubnets[];
  const make = (peers: PeerSubnet[] = []) => h.make({ peers: () => peers, joinCluster: async (subnets) => void joined.push(subnets) });
  beforeEach(() => {
    h = new NodeNetworkHarness();
    joined = [];
  });

  it('a dual-stack CNI joins with both subnets, an IPv6-only one with its IPv6 subnet; restore() joins the same again', async () => {
    const dual = await make();
    await dual.createContainerNetworkInterface({
      ipAddress: '198.19.1.1',
      subNetwork: '198.19.1.0/24',
      ipv6Address: 'fd19:0:0:1::1',
      ipv6SubNetwork: 'fd19:0:0:1::/64',
    });
    expect(joined.map(show)).toEqual([{ subnet: '198.19.1.0/24', ipv6Subnet: 'fd19:0:0:1::/64' }]);
    await (await make()).restore();
    expect(joined.map(show)[1]).toEqual({ subnet: '198.19.1.0/24', ipv6Subnet: 'fd19:0:0:1::/64' });

    h = new NodeNetworkHarness();
    joined = [];
    const only6 = await make();
    await only6.createContainerNetworkInterface({ ipAddress: 'fd19:0:0:2::1', subNetwork: 'fd19:0:0:2::/64' });
    expect(joined.map(show)).toEqual([{ subnet: undefined, ipv6Subnet: 'fd19:0:0:2::/64' }]);
  });

  it("refuses an IPv6 subnet overlapping a peer's ipv6Subnet with FAILED_PRECONDITION naming the field, and makes nothing", async () => {
    const peers: PeerSubnet[] = [
      { name: 'node-2', ipv6Subnet: Ipv6Subnet.of('fd19::/56') },
      { name: 'node-3', subnet: Subnet.of('198.19.3.0/24') },
    ];
    const net = await make(peers);
    const dualErr = await errorOf(
      net.createContainerNetworkInterface({
        ipAddress: '198.19.1.1',
        subNetwork: '198.19.1.0/24',
        ipv6Address: 'fd19:0:0:1::1',
        ipv6SubNetwork: 'fd19:0:0:1::/64',
      }),
    );
    expect(dualErr.code).toBe('FAILED_PRECONDITION');
    expect(dualErr.message).toMatch(/ipv6_sub_network fd19:0:0:1::\/64 overlaps fd19::\/56, the subnet of peer node node-2/);
    const onlyErr = await errorOf(net.createContainerNetworkInterface({ ipAddress: 'fd19:0:0:1::1', subNetwork: 'fd19:0:0:1::/64' }));
    expect(onlyErr.code).toBe('FAILED_PRECONDITION');
    expect(onlyErr.message).toMatch(/^sub_network fd19:0:0:1::\/64 overlaps fd19::\/56/);
    expect(h.dp.calls).toEqual([]);
    expect(joined).toEqual([]);
    // A subnet outside node-2's /56 is free (node-3's IPv4 subnet is of the other family).
    await net.createContainerNetworkInterface({ ipAddress: 'fd19:0:0:100::1', subNetwork: 'fd19:0:0:100::/64' });
    expect(joined.map(show)).toEqual([{ subnet: undefined, ipv6Subnet: 'fd19:0:0:100::/64' }]);
  });
});
