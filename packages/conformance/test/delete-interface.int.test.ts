// Conformance: DeleteInterface (CONTRACT.md, "DeleteInterface" and "Inputs, precisely").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterfaceKind } from '@nodenet/api';
import { conntrackEntries, echo, ipBatch, link, neighbours, ping, rpcError, startEchoServer, startEchoServers } from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NodeFixture } from '../src/index.js';

describe.each(BACKENDS)('DeleteInterface (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend });
  });
  afterAll(() => f?.close());

  describe('removal', () => {
    it('removes both veth ends and every rule: the node is as before the create', async () => {
      const before = (await f.snapshot()).node;
      const r = await f.api.createInterface({ ipAddress: f.nextAddress(), ports: [f.nextPort()] });
      expect(await link(f.ns, r.interfaceName)).toBeDefined();
      expect(await f.api.deleteInterface({ interfaceName: r.interfaceName })).toEqual({});
      expect(await link(f.ns, r.interfaceName)).toBeUndefined();
      expect(await link(f.ns, r.hostInterfaceName!)).toBeUndefined();
      expect((await f.snapshot()).node).toEqual(before);
    });

    it('removes a veth the runtime moved and renamed (by its handle)', async () => {
      const inst = await f.addInstance();
      expect(await link(inst.ns!, 'eth0')).toBeDefined();
      await f.api.deleteInterface({ interfaceName: inst.handle });
      expect(await link(inst.ns!, 'eth0')).toBeUndefined();
      expect(await link(f.ns, inst.response.hostInterfaceName!)).toBeUndefined();
    });

    it('removes a veth placed with the netns extension', async () => {
      const inst = await f.addInstance(undefined, { via: 'netns', ifname: 'eth1' });
      expect(await link(inst.ns!, 'eth1')).toBeDefined();
      await f.api.deleteInterface({ interfaceName: inst.handle });
      expect(await link(inst.ns!, 'eth1')).toBeUndefined();
      expect(await link(f.ns, inst.response.hostInterfaceName!)).toBeUndefined();
    });

    it('removes a TAP', async () => {
      const before = (await f.snapshot()).node;
      const r = await f.api.createInterface({ ipAddress: f.nextAddress(), kind: InterfaceKind.TAP, ports: [f.nextPort()] });
      expect(await link(f.ns, r.interfaceName)).toBeDefined();
      await f.api.deleteInterface({ interfaceName: r.interfaceName });
      expect(await link(f.ns, r.interfaceName)).toBeUndefined();
      expect((await f.snapshot()).node).toEqual(before);
    });

    it('unpublishes its ports: they no longer answer', async () => {
      const port = f.nextPort();
      const inst = await f.addInstance(undefined, { ports: [port] });
      const { tcp, udp } = await startEchoServers(f.scope, inst.ns!, port);
      const t1 = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
      const u1 = await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port });
      expect([t1.ok, u1.ok], `${t1.error} ${u1.error}`).toEqual([true, true]);
      await f.api.deleteInterface({ interfaceName: inst.handle });
      const t2 = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port, timeoutMs: 1500 });
      const u2 = await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port, timeoutMs: 1500 });
      expect(t2.ok).toBe(false);
      expect(u2.ok).toBe(false);
      expect(tcp.receivedPayload(t2.payload)).toEqual([]);
      expect(udp.receivedPayload(u2.payload)).toEqual([]);
    });

    it('deletes the connection-tracking entries of its address', async () => {
      const port = f.nextPort();
      const inst = await f.addInstance(undefined, { ports: [port] });
      await startEchoServers(f.scope, inst.ns!, port);
      const worldUdp = await startEchoServer(f.scope, f.world.ns, { protocol: 'udp', port, host: f.world.address });
      const flows = await Promise.all([
        echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port }),
        echo(f.world.ns, { protocol: 'udp', host: f.node.address, port }),
        echo(inst.ns!, { protocol: 'udp', host: f.world.address, port }),
        ping(f.ns, inst.address),
      ]);
      expect(flows.map((r) => r.ok)).toEqual([true, true, true, true]);
      expect(worldUdp.received.length).toBeGreaterThan(0);
      expect((await conntrackEntries(f.ns, inst.address)).length, 'conntrack saw the flows').toBeGreaterThan(0);
      await f.api.deleteInterface({ interfaceName: inst.handle });
      expect(await conntrackEntries(f.ns, inst.address)).toEqual([]);
    });
  });

  describe('idempotency', () => {
    it('a handle already deleted: OK again (full and seed client)', async () => {
      const r = await f.api.createInterface({ ipAddress: f.nextAddress() });
      await f.api.deleteInterface({ interfaceName: r.interfaceName });
      const before = await f.snapshot();
      expect(await f.api.deleteInterface({ interfaceName: r.interfaceName })).toEqual({});
      expect(await f.daemon.seed().deleteInterface({ interface_name: r.interfaceName })).toEqual({});
      expect(await f.snapshot()).toEqual(before);
    });

    it('an issued handle whose interface vanished behind the daemon: OK, and the address is free', async () => {
      const address = f.nextAddress();
      const r = await f.api.createInterface({ ipAddress: address });
      await ipBatch(f.ns, [`link del ${r.hostInterfaceName}`]);
      expect(await f.api.deleteInterface({ interfaceName: r.interfaceName })).toEqual({});
      const again = await f.api.createInterface({ ipAddress: address });
      expect(again.interfaceName).toMatch(/^nni-[0-9a-f]{8}$/);
    });
  });

  describe('refusals', () => {
    let outsider: string;
    beforeAll(async () => {
      // A link of the host that nodenet did not create.
      outsider = 'outsider0';
      await ipBatch(f.ns, [`link add ${outsider} type veth peer name outsider1`, `link set ${outsider} up`]);
    });

    it.each(['lo', 'eth0', 'nodenet0', 'outsider0', 'outsider1'])(
      '%s (not created by nodenet for an instance): PERMISSION_DENIED, nothing changes',
      async (name) => {
        const before = await f.snapshot();
        const e = await rpcError(f.api.deleteInterface({ interfaceName: name }));
        expect(e.codeName).toBe('PERMISSION_DENIED');
        expect(e.details).toContain(name);
        expect(await f.snapshot()).toEqual(before);
        expect(await link(f.ns, name)).toBeDefined();
      },
    );

    it('the underlay and the CNI still work after the refused deletes', async () => {
      const inst = await f.addInstance();
      for (const target of [NODE_GATEWAY, f.world.address]) {
        const p = await ping(inst.ns!, target);
        expect(p.ok, p.output).toBe(true);
      }
      expect((await ping(f.ns, f.world.address)).ok).toBe(true);
    });

    it.each(['nni-0badc0de', 'eth7', 'nothere', 'a.b_c-9'])('a well-formed unknown name (%s): NOT_FOUND', async (name) => {
      const e = await rpcError(f.api.deleteInterface({ interfaceName: name }));
      expect(e.codeName).toBe('NOT_FOUND');
      expect(e.details).toContain(name);
    });

    it.each([
      ['a/b', 'a slash'],
      ['abcdefghijklmnop', '16 characters'],
      ['..', 'dot-dot'],
      ['.', 'dot'],
      ['', 'empty'],
      ['a b', 'a space'],
      ['eth0\n', 'a newline'],
      ['äth0', 'a non-ASCII letter'],
      ['nni-*', 'a wildcard'],
    ])('a malformed name (%j, %s): INVALID_ARGUMENT', async (name) => {
      const before = await f.snapshot();
      const e = await rpcError(f.api.deleteInterface({ interfaceName: name }));
      expect(e.codeName).toBe('INVALID_ARGUMENT');
      expect(await f.snapshot()).toEqual(before);
    });
  });

  describe('address reuse', () => {
    it('an address freed and given to a new instance is reachable at once, published port included', async () => {
      const address = f.nextAddress();
      const port = f.nextPort();
      const old = await f.addInstance(address, { ports: [port] });
      await startEchoServers(f.scope, old.ns!, port);
      // Leave state behind that could go stale: neighbour entries, conntrack entries (UDP from a fixed port).
      expect((await ping(f.ns, address)).ok).toBe(true);
      expect((await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port, localPort: 41000 })).ok).toBe(true);
      expect((await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port })).ok).toBe(true);
      await f.api.deleteInterface({ interfaceName: old.handle });

      const fresh = await f.addInstance(address, { ports: [port], via: 'netns' });
      expect(fresh.handle).not.toBe(old.handle);
      const { tcp, udp } = await startEchoServers(f.scope, fresh.ns!, port);
      const p = await ping(f.ns, address);
      expect(p.ok, p.output).toBe(true);
      const fromInstance = await ping(fresh.ns!, f.world.address);
      expect(fromInstance.ok, fromInstance.output).toBe(true);
      const u = await echo(f.world.ns, { protocol: 'udp', host: f.node.address, port, localPort: 41000 });
      expect(u.ok, u.error).toBe(true);
      expect(udp.receivedPayload(u.payload).length).toBeGreaterThan(0);
      const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
      expect(t.ok, t.error).toBe(true);
      expect(tcp.receivedPayload(t.payload)).toHaveLength(1);
      for (const n of await neighbours(f.ns, address)) {
        if (n.lladdr) expect(n.lladdr, 'no stale neighbour entry').toBe(fresh.response.macAddress);
      }
    });
  });
});
