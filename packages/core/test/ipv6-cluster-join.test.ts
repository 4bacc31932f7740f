// NodeNetwork's cluster side with IPv6: the CNI's IPv6 subnet is checked against the peers' ipv6Subnet (as the
// IPv4 one against their subnet), and joinCluster gets every family the CNI holds (an IPv6-only node joins too).
import { beforeEach, describe, expect, it } from 'vitest';
import { Ipv6Subnet, NodeNetwork, Subnet, type NodeSubnets, type NodenetError, type PeerSubnet } from '@nodenet/core';
import { FakeDataplane, FakePacketFilter, MemoryStateStore } from './fakes.js';

async function errorOf(p: Promise<unknown>): Promise<NodenetError> {
  try {
    await p;
  } catch (e) {
    return e as NodenetError;
  }
  throw new Error('expected a failure');
}

const show = (s: NodeSubnets) => ({ subnet: s.subnet?.toString(), ipv6Subnet: s.ipv6Subnet?.toString() });

describe('NodeNetwork joins the cluster with both families', () => {
  let dp: FakeDataplane;
  let store: MemoryStateStore;
  let joined: NodeSubnets[];
  const make = async (peers: PeerSubnet[] = []) => {
    const n = new NodeNetwork({
      dataplane: dp,
      namespaces: dp,
      packetFilter: new FakePacketFilter(),
      store,
      host: await dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
      peers: () => peers,
      joinCluster: async (subnets) => void joined.push(subnets),
    });
    await n.load();
    return n;
  };
  beforeEach(() => {
    dp = new FakeDataplane();
    store = new MemoryStateStore();
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

    store = new MemoryStateStore();
    dp = new FakeDataplane();
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
    expect(dp.calls).toEqual([]);
    expect(joined).toEqual([]);
    // A subnet outside node-2's /56 is free (node-3's IPv4 subnet is of the other family).
    await net.createContainerNetworkInterface({ ipAddress: 'fd19:0:0:100::1', subNetwork: 'fd19:0:0:100::/64' });
    expect(joined.map(show)).toEqual([{ subnet: undefined, ipv6Subnet: 'fd19:0:0:100::/64' }]);
  });
});
