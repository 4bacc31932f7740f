// NodeNetwork with IPv6: dual-stack and IPv6-only CNIs, instance addresses per family, rules, release, restore.
import { beforeEach, describe, expect, it } from 'vitest';
import { NodeNetworkHarness, errorOf } from './node-network-harness.js';

describe('NodeNetwork with IPv6', () => {
  let h: NodeNetworkHarness;
  const make = () => h.make();
  beforeEach(() => {
    h = new NodeNetworkHarness();
  });

  it('dual stack: records both halves, answers per family, reserves both addresses, flushes both on delete', async () => {
    const net = await make();
    const cni = { ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24', ipv6Address: 'fd19:0:0:1::1', ipv6SubNetwork: 'fd19:0:0:1::/64' };
    await net.createContainerNetworkInterface(cni);
    expect(h.store.state.cni).toMatchObject({
      gateway: '198.19.1.1',
      subnet: '198.19.1.0/24',
      ipv6Gateway: 'fd19:0:0:1::1',
      ipv6Subnet: 'fd19:0:0:1::/64',
    });
    expect(h.pf.base).toMatchObject({ ipv4: { gateway: '198.19.1.1' }, ipv6: { gateway: 'fd19:0:0:1::1' } });
    expect((await net.createContainerNetworkInterface(cni)).interfaceName).toBe('nodenet0');
    const other = await errorOf(
      net.createContainerNetworkInterface({ ...cni, ipv6SubNetwork: 'fd19:0:0:2::/64', ipv6Address: 'fd19:0:0:2::1' }),
    );
    expect(other.code).toBe('FAILED_PRECONDITION');
    expect(other.message).toMatch(/ipv6_sub_network fd19:0:0:2::\/64 differs/);

    const r = await net.createInterface({ ipAddress: '198.19.1.2', ipv6Address: 'fd19:0:0:1::2' });
    expect(r).toMatchObject({ gateway: '198.19.1.1', prefixLength: 24, ipv6Gateway: 'fd19:0:0:1::1', ipv6PrefixLength: 64 });
    expect(h.pf.instances.get(r.hostInterfaceName)).toMatchObject({
      ipv4: '198.19.1.2',
      ipv6: 'fd19:0:0:1::2',
      ipv6LinkLocal: 'fe80::6e:c6ff:fe13:102',
    });
    expect(h.store.state.instances[0]).toMatchObject({ address: '198.19.1.2', ipv6Address: 'fd19:0:0:1::2' });
    // The IPv6 address is taken, whichever IPv4 address comes with it.
    const taken = await errorOf(net.createInterface({ ipAddress: '198.19.1.3', ipv6Address: 'fd19:0:0:1::2' }));
    expect(taken.code).toBe('ALREADY_EXISTS');
    const only4 = await net.createInterface({ ipAddress: '198.19.1.4' });
    expect(only4.ipv6Gateway).toBeUndefined();

    await net.deleteInterface({ interfaceName: r.interfaceName });
    expect(h.pf.flushed).toEqual(['198.19.1.2', 'fd19:0:0:1::2']);
    // Freed at once.
    await net.createInterface({ ipAddress: '198.19.1.5', ipv6Address: 'fd19:0:0:1::2' });
    // A restart reads the records back with both families, and a pass finds nothing to repair.
    const again = await make();
    expect((await again.reconcile()).repairs).toEqual([]);
  });

  it('IPv6 only: the seed fields carry IPv6; IPv4 and ipv6_address are refused', async () => {
    const net = await make();
    await net.createContainerNetworkInterface({ ipAddress: 'fd19:0:0:2::1', subNetwork: 'fd19:0:0:2::/64' });
    expect(h.pf.base?.ipv4).toBeUndefined();
    const r = await net.createInterface({ ipAddress: 'fd19:0:0:2::a' });
    expect(r).toMatchObject({ gateway: 'fd19:0:0:2::1', prefixLength: 64, macAddress: '02:6d:00:00:00:0a' });
    expect((await errorOf(net.createInterface({ ipAddress: '198.19.1.2' }))).code).toBe('INVALID_ARGUMENT');
    expect((await errorOf(net.createInterface({ ipAddress: 'fd19:0:0:2::b', ipv6Address: 'fd19:0:0:2::c' }))).code).toBe(
      'INVALID_ARGUMENT',
    );
    // Two addresses of the /64 equal in their last 32 bits would share a MAC: the second is refused.
    const clash = await errorOf(net.createInterface({ ipAddress: 'fd19::2:1:0:0:a' }));
    expect(clash.code).toBe('ALREADY_EXISTS');
    expect(clash.message).toMatch(/MAC 02:6d:00:00:00:0a/);
  });
});
