import { beforeEach, describe, expect, it } from 'vitest';
import { InternalError, NodeNetwork, Subnet, TeardownError } from '@nodenet/core';
import { tick } from './fakes.js';
import { NodeNetworkHarness, code, errorOf } from './node-network-harness.js';

describe('NodeNetwork', () => {
  let h: NodeNetworkHarness;
  let net: NodeNetwork;

  const make = (peers: { name: string; subnet: Subnet }[] = []) => h.make({ peers: () => peers });

  beforeEach(async () => {
    h = new NodeNetworkHarness({
      reservedPorts: new Map([
        [4789, "the overlay's UDP port"],
        [22, 'listed in reservedPorts'],
      ]),
    });
    net = await make();
  });

  const cni = () => net.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });

  describe('CreateContainerNetworkInterface', () => {
    it('creates the CNI, the filter base and the record, with MTU = underlay - overlay', async () => {
      expect(await cni()).toEqual({ interfaceName: 'nodenet0' });
      expect(h.dp.cni).toMatchObject({ name: 'nodenet0', ipv4: { gateway: '198.19.1.1' }, mtu: 1450, mac: '02:6e:c6:13:01:01' });
      expect(h.dp.cni?.ipv6).toBeUndefined();
      expect(h.pf.base?.clusterSubnets.map(String)).toEqual(['198.19.1.0/24']);
      expect(h.store.state.cni).toMatchObject({ subnet: '198.19.1.0/24', gateway: '198.19.1.1' });
    });

    it('is idempotent and refuses other arguments, naming what differs', async () => {
      await cni();
      h.dp.calls.length = 0;
      expect(await cni()).toEqual({ interfaceName: 'nodenet0' });
      expect(h.dp.calls).toEqual([]);
      const err = await errorOf(net.createContainerNetworkInterface({ ipAddress: '198.19.1.2', subNetwork: '198.19.1.0/24' }));
      expect(err.code).toBe('FAILED_PRECONDITION');
      expect(err.message).toMatch(/ip_address 198.19.1.2 differs from the CNI's 198.19.1.1/);
      expect(err.message).not.toMatch(/sub_network/);
    });

    it.each([
      ['198.19.1.0', '198.19.1.0/24', /not a usable host/],
      ['198.19.1.255', '198.19.1.0/24', /not a usable host/],
      ['198.19.2.1', '198.19.1.0/24', /not a usable host/],
      ['198.19.1.1', '198.19.1.1/24', /host bits/],
      ['198.19.1.1', '198.19.1.0/31', /prefix length of 30 or less/],
      ['198.19.01.1', '198.19.1.0/24', /canonical/],
      ['fd00::1', 'fd00::/48', /\/64 to \/120/],
      ['FD00::1', 'fd00::/64', /write fd00::1/],
      ['198.19.1.1', 'fd00::/64', /one family/],
    ])('refuses %s in %s with INVALID_ARGUMENT and changes nothing', async (ip, sub, why) => {
      const err = await errorOf(net.createContainerNetworkInterface({ ipAddress: ip, subNetwork: sub }));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(why);
      expect(h.dp.calls).toEqual([]);
    });

    it('refuses a subnet overlapping the underlay or a peer with FAILED_PRECONDITION naming it', async () => {
      let err = await errorOf(net.createContainerNetworkInterface({ ipAddress: '198.18.0.129', subNetwork: '198.18.0.128/25' }));
      expect(err.code).toBe('FAILED_PRECONDITION');
      expect(err.message).toMatch(/198.18.0.0\/24, the network of interface eth0/);
      net = await make([{ name: 'node-2', subnet: Subnet.of('198.19.0.0/16') }]);
      err = await errorOf(cni());
      expect(err.message).toMatch(/overlaps 198.19.0.0\/16, the subnet of peer node node-2/);
      expect(h.dp.calls).toEqual([]);
    });

    it('rolls back the bridge when the packet filter fails', async () => {
      h.pf.failEnsureBase = new Error('nft exploded');
      const err = await errorOf(cni());
      expect(err).toBeInstanceOf(InternalError);
      expect(err.message).toMatch(/install the packet-filter table: nft exploded/);
      expect(h.dp.calls).toEqual(['ensureCni nodenet0', 'deleteCni nodenet0']);
      expect(h.store.state.cni).toBeNull();
      expect(net.cniRecord).toBeNull();
      h.pf.failEnsureBase = null;
      expect(await cni()).toEqual({ interfaceName: 'nodenet0' });
    });
  });

  describe('CreateInterface', () => {
    it('needs a CNI first', async () => {
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2' }));
      expect(err.code).toBe('FAILED_PRECONDITION');
      expect(err.message).toMatch(/call CreateContainerNetworkInterface first/);
    });

    it('creates rules, then the interface, then the record, and answers with the extension fields', async () => {
      await cni();
      const r = await net.createInterface({ ipAddress: '198.19.1.2', ports: [8080] });
      expect(r).toEqual({
        interfaceName: 'nni-00000001',
        hostInterfaceName: 'nnh-00000001',
        macAddress: '02:6e:c6:13:01:02',
        gateway: '198.19.1.1',
        prefixLength: 24,
        mtu: 1450,
      });
      expect(h.pf.instances.get('nnh-00000001')?.ports).toHaveLength(2);
      expect(h.store.state.instances.map((i) => i.handle)).toEqual(['nni-00000001']);
    });

    it('uses the TAP itself as the bridge port', async () => {
      await cni();
      const r = await net.createInterface({ ipAddress: '198.19.1.2', kind: 'tap' });
      expect(r.hostInterfaceName).toBe(r.interfaceName);
      expect(h.pf.instances.has(r.interfaceName)).toBe(true);
    });

    it.each([
      [{ ipAddress: '198.19.1.1' }, 'INVALID_ARGUMENT', /gateway/],
      [{ ipAddress: '198.19.2.5' }, 'INVALID_ARGUMENT', /not a usable host address of the node's subnet 198.19.1.0\/24/],
      [{ ipAddress: '198.19.1.255' }, 'INVALID_ARGUMENT', /not a usable host/],
      [{ ipAddress: '198.19.1.2', ports: [0] }, 'INVALID_ARGUMENT', /ports\[0\]/],
      [{ ipAddress: '198.19.1.2', ports: [80, 80] }, 'INVALID_ARGUMENT', /more than once/],
      [{ ipAddress: '198.19.1.2', ports: [4789] }, 'FAILED_PRECONDITION', /overlay's UDP port/],
      [{ ipAddress: '198.19.1.2', ports: [22] }, 'FAILED_PRECONDITION', /reservedPorts/],
      [{ ipAddress: '198.19.1.2', ifname: 'eth1' }, 'INVALID_ARGUMENT', /give netns too/],
      [{ ipAddress: '198.19.1.2', netns: 'x', kind: 'tap' as const }, 'INVALID_ARGUMENT', /TAP/],
      [{ ipAddress: '198.19.1.2', netns: '../x' }, 'INVALID_ARGUMENT', /namespace/],
      [{ ipAddress: '198.19.1.2', netns: 'x', ifname: 'a/b' }, 'INVALID_ARGUMENT', /^ifname/],
    ])('refuses %j', async (req, expected, why) => {
      await cni();
      h.dp.calls.length = 0;
      const err = await errorOf(net.createInterface(req));
      expect(err.code).toBe(expected);
      expect(err.message).toMatch(why);
      expect(h.dp.calls).toEqual([]);
      expect(h.pf.instances.size).toBe(0);
    });

    it('returns the same handle for an identical request and ALREADY_EXISTS for another one', async () => {
      await cni();
      const a = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      const b = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      expect(b.interfaceName).toBe(a.interfaceName);
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2', ports: [81] }));
      expect(err.code).toBe('ALREADY_EXISTS');
      expect(err.message).toContain(a.interfaceName);
      expect(await code(net.createInterface({ ipAddress: '198.19.1.3', ports: [80] }))).toBe('ALREADY_EXISTS');
      expect(await code(net.createInterface({ ipAddress: '198.19.1.3', portMappings: [{ hostPort: 80, protocol: 'udp' }] }))).toBe(
        'ALREADY_EXISTS',
      );
      // the same instance port on another host port is fine
      expect(await code(net.createInterface({ ipAddress: '198.19.1.3', portMappings: [{ hostPort: 8080, instancePort: 80 }] }))).toBe('OK');
    });

    it('lets exactly one of many concurrent creates win an address', async () => {
      await cni();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => code(net.createInterface({ ipAddress: '198.19.1.9', ports: [1000 + i] }))),
      );
      expect(results.filter((r) => r === 'OK')).toHaveLength(1);
      expect(results.filter((r) => r === 'ALREADY_EXISTS')).toHaveLength(9);
      expect(h.dp.calls.filter((c) => c.startsWith('createInstance'))).toHaveLength(1);
    });

    it('lets exactly one of many concurrent creates win a port', async () => {
      await cni();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => code(net.createInterface({ ipAddress: `198.19.1.${10 + i}`, ports: [443] }))),
      );
      expect(results.filter((r) => r === 'OK')).toHaveLength(1);
      expect(results.filter((r) => r === 'ALREADY_EXISTS')).toHaveLength(9);
    });

    it('joins identical concurrent requests into one create', async () => {
      await cni();
      const rs = await Promise.all(Array.from({ length: 5 }, () => net.createInterface({ ipAddress: '198.19.1.7', ports: [7] })));
      expect(new Set(rs.map((r) => r.interfaceName)).size).toBe(1);
      expect(h.dp.calls.filter((c) => c.startsWith('createInstance'))).toHaveLength(1);
    });

    it('creates 40 in parallel with distinct handles', async () => {
      await cni();
      const rs = await Promise.all(
        Array.from({ length: 40 }, (_, i) => net.createInterface({ ipAddress: `198.19.1.${i + 2}`, ports: [2000 + i] })),
      );
      expect(new Set(rs.map((r) => r.interfaceName)).size).toBe(40);
      expect(h.store.state.instances).toHaveLength(40);
    });

    it('rolls back the rules when the interface cannot be made, and frees address and ports', async () => {
      await cni();
      h.dp.failCreateInstance = new Error('RTNETLINK answers: File exists');
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }));
      expect(err.code).toBe('INTERNAL');
      expect(err.message).toMatch(/^create the interface: RTNETLINK/);
      expect(h.pf.instances.size).toBe(0);
      expect(h.store.state.instances).toEqual([]);
      h.dp.failCreateInstance = null;
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }))).toBe('OK');
    });

    it('rolls back the interface and the rules when the record cannot be written', async () => {
      await cni();
      h.store.failSaveInstance = new Error('ENOSPC');
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }));
      expect(err.message).toMatch(/^record the interface: ENOSPC/);
      expect(h.dp.calls).toEqual(['ensureCni nodenet0', 'createInstance nni-00000001', 'deleteInstance nni-00000001']);
      expect(h.pf.instances.size).toBe(0);
      expect([...h.dp.links.keys()].filter((l) => /^nn[ih]-/.test(l))).toEqual([]);
    });

    it('writes the record while the interface is made and commits it only after both succeeded', async () => {
      await cni();
      const seen: string[] = [];
      const create = h.dp.createInstance.bind(h.dp);
      h.dp.createInstance = async (spec) => {
        const placement = await create(spec);
        await tick(); // the record's write has had its turn
        seen.push(`staged during create: ${[...h.store.staged].join(',')}`);
        return placement;
      };
      await net.createInterface({ ipAddress: '198.19.1.2' });
      expect(seen).toEqual(['staged during create: nni-00000001']);
      expect(h.store.staged.size).toBe(0);
      expect(h.store.state.instances.map((i) => i.handle)).toEqual(['nni-00000001']);
    });

    it('discards the staged record when the interface cannot be made', async () => {
      await cni();
      h.dp.failCreateInstance = new Error('RTNETLINK answers: File exists');
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }))).toBe('INTERNAL');
      expect(h.store.staged.size).toBe(0);
      expect(h.store.state.instances).toEqual([]);
    });

    it('rolls back the interface and the rules when the record cannot be staged', async () => {
      await cni();
      h.store.failStageInstance = new Error('EIO');
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }));
      expect(err.code).toBe('INTERNAL');
      expect(err.message).toMatch(/^record the interface: EIO/);
      expect(h.dp.calls).toEqual(['ensureCni nodenet0', 'createInstance nni-00000001', 'deleteInstance nni-00000001']);
      expect(h.pf.instances.size).toBe(0);
      h.store.failStageInstance = null;
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }))).toBe('OK');
    });

    it('a state directory that is full refuses the create with RESOURCE_EXHAUSTED and leaves nothing behind', async () => {
      await cni();
      const { stateWriteError } = await import('@nodenet/core');
      const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      h.store.failStageInstance = stateWriteError(enospc, 'write the record of nni-00000001', '/state/instances/nni-00000001.json');
      const err = await errorOf(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }));
      expect(err.code).toBe('RESOURCE_EXHAUSTED');
      expect(err.message).toMatch(/full .*free space on it, then retry/);
      expect([...h.dp.links.keys()].sort()).toEqual(['eth0', 'lo', 'nodenet0']);
      expect(h.pf.instances.size).toBe(0);
      h.store.failStageInstance = null;
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }))).toBe('OK');
    });

    it('records the namespace identity read before the create, or the one the link went into when it changed', async () => {
      await cni();
      h.dp.namespaces.set('ns1', '4:100');
      await net.createInterface({ ipAddress: '198.19.1.2', netns: 'ns1' });
      expect(h.store.state.instances[0]?.netnsId).toBe('4:100');
      // Replaced between the identity read and the move: the record names the namespace the link is in.
      const create = h.dp.createInstance.bind(h.dp);
      h.dp.createInstance = async (spec) => {
        h.dp.namespaces.set('ns1', '4:200');
        return create(spec);
      };
      await net.createInterface({ ipAddress: '198.19.1.3', netns: 'ns1' });
      expect(h.store.state.instances.find((i) => i.address === '198.19.1.3')?.netnsId).toBe('4:200');
      expect(h.store.staged.size).toBe(0);
    });

    it('touches nothing when the namespace does not exist', async () => {
      await cni();
      const { NotFoundError } = await import('@nodenet/core');
      h.dp.identifyNamespace = async (netns) => {
        throw new NotFoundError(`network namespace ${netns} does not exist`);
      };
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', netns: 'gone', ports: [80] }))).toBe('NOT_FOUND');
      expect(h.dp.calls).toEqual(['ensureCni nodenet0']);
      expect(h.pf.instances.size).toBe(0);
      expect(h.store.staged.size).toBe(0);
      expect(h.store.state.instances).toEqual([]);
    });

    it('passes a domain error from an adapter through unchanged', async () => {
      await cni();
      const { NotFoundError } = await import('@nodenet/core');
      h.dp.failCreateInstance = new NotFoundError('netns x does not exist');
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', netns: 'x' }))).toBe('NOT_FOUND');
    });
  });

  describe('DeleteInterface', () => {
    it('removes interface, rules, conntrack, record; a repeat is OK', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      await net.deleteInterface({ interfaceName });
      expect(h.pf.instances.size).toBe(0);
      expect(h.pf.flushed).toEqual(['198.19.1.2']);
      expect(h.store.state.instances).toEqual([]);
      expect(h.store.state.released).toEqual([interfaceName]);
      expect(await code(net.deleteInterface({ interfaceName }))).toBe('OK');
      // address and port are free again
      expect(await code(net.createInterface({ ipAddress: '198.19.1.2', ports: [80] }))).toBe('OK');
    });

    it('tries every teardown step and reports every failure, keeping the record for a retry', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      h.dp.deleteInstance = async () => {
        throw new Error('link busy');
      };
      h.pf.removeInstance = async () => {
        throw new Error('nft refused');
      };
      const err = (await net.deleteInterface({ interfaceName }).catch((e: unknown) => e)) as TeardownError;
      expect(err).toBeInstanceOf(TeardownError);
      expect(err.code).toBe('INTERNAL');
      expect(err.failures.map((f) => f.message)).toEqual([
        'delete the interface: link busy',
        'remove published ports and anti-spoofing: nft refused',
      ]);
      expect(err.message).toMatch(/2 steps failed: delete the interface: link busy; remove published ports and anti-spoofing: nft refused/);
      // The flush was still tried (after the rules step settled), and the record stays for a retry.
      expect(h.pf.flushed).toEqual(['198.19.1.2']);
      expect(h.store.state.instances.map((r) => r.handle)).toEqual([interfaceName]);
      expect(h.store.state.released).toEqual([]);
    });

    it('remembers released handles across a restart', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2' });
      await net.deleteInterface({ interfaceName });
      net = await make();
      expect(await code(net.deleteInterface({ interfaceName }))).toBe('OK');
    });

    it('is OK for an issued handle whose interface vanished', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2' });
      h.dp.links.clear();
      expect(await code(net.deleteInterface({ interfaceName }))).toBe('OK');
    });

    it('joins concurrent deletes of one handle', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2' });
      const rs = await Promise.all([1, 2, 3].map(() => code(net.deleteInterface({ interfaceName }))));
      expect(rs).toEqual(['OK', 'OK', 'OK']);
      expect(h.dp.calls.filter((c) => c.startsWith('deleteInstance'))).toHaveLength(1);
    });

    it('refuses what it did not create: PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT', async () => {
      await cni();
      expect(await code(net.deleteInterface({ interfaceName: 'lo' }))).toBe('PERMISSION_DENIED');
      expect(await code(net.deleteInterface({ interfaceName: 'eth0' }))).toBe('PERMISSION_DENIED');
      expect(await code(net.deleteInterface({ interfaceName: 'nodenet0' }))).toBe('PERMISSION_DENIED');
      expect(await code(net.deleteInterface({ interfaceName: 'nni-99999999' }))).toBe('NOT_FOUND');
      expect(await code(net.deleteInterface({ interfaceName: 'a/b' }))).toBe('INVALID_ARGUMENT');
      expect(await code(net.deleteInterface({ interfaceName: '' }))).toBe('INVALID_ARGUMENT');
      expect(h.dp.calls.filter((c) => c.startsWith('delete'))).toEqual([]);
    });

    it('touches nothing when the release cannot be noted (state directory read-only), and completes once it can', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      const { stateWriteError } = await import('@nodenet/core');
      const erofs = Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
      h.store.failBeginRelease = stateWriteError(erofs, `note the release of ${interfaceName}`, '/state/released.log');
      const err = await errorOf(net.deleteInterface({ interfaceName }));
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toMatch(/read-only .*remount it read-write/);
      expect(h.dp.calls.filter((c) => c.startsWith('deleteInstance'))).toEqual([]);
      expect(h.pf.instances.size).toBe(1);
      expect(h.pf.flushed).toEqual([]);
      expect(h.store.state.instances.map((r) => r.handle)).toEqual([interfaceName]);
      h.store.failBeginRelease = null;
      expect(await code(net.deleteInterface({ interfaceName }))).toBe('OK');
      expect(h.store.state.instances).toEqual([]);
      expect(h.pf.instances.size).toBe(0);
    });

    it('keeps the record when a step fails so that a retry completes the delete', async () => {
      await cni();
      const { interfaceName } = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80] });
      const original = h.pf.flushConntrack.bind(h.pf);
      h.pf.flushConntrack = async () => {
        throw new Error('conntrack: Operation not permitted');
      };
      const err = await errorOf(net.deleteInterface({ interfaceName }));
      expect(err.message).toMatch(/^flush connection tracking/);
      expect(h.store.state.instances).toHaveLength(1);
      h.pf.flushConntrack = original;
      expect(await code(net.deleteInterface({ interfaceName }))).toBe('OK');
      expect(h.store.state.instances).toHaveLength(0);
    });
  });
});
