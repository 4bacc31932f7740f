/**
 * OvsDataplane against a real private Open vSwitch (userspace datapath) in a node namespace, in-process
 * (`netns: <node>`). Every namespace and OVS process is removed afterwards, also when a test fails.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RecordedCommand } from '@nodenet/testkit/recording-sys';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError, type CniSpec } from '@nodenet/core';
import {
  TestScope,
  Topology,
  adoptInterface,
  echo,
  ipBatch,
  ipv4AddressesOf,
  link,
  nsExec,
  ping,
  routes,
  startEchoServer,
  type NodeHost,
} from '@nodenet/testkit';
import { LinuxNamespaceIdentity } from '@nodenet/linux';
import { instanceCookie, formatCookie } from '../src/flows.js';
import { cniRecordOf, cniSpecFor, externalIds, instanceSpec, ofportOf, ovsNode, removePortAndRegistry, type OvsNode } from './fixture.js';
import { instanceRecordOf } from '@nodenet/testkit/instance-specs';

/** Every command the code under test started (file, args, options), through either runner, in order. */
const commandsRun = vi.hoisted((): RecordedCommand[] => []);
// Pass-through spies on both runners (see recordingSys).
vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));

/** Commands started during `fn`, as `file arg...` strings (a line written to a long-lived session is none). */
async function commandsDuring(fn: () => Promise<unknown>): Promise<string[]> {
  const before = commandsRun.length;
  await fn();
  return commandsRun.slice(before).map(([file, args]) => [file, ...args].join(' '));
}

/** A runtime's move of the instance end into a fresh namespace, addressed, with a default route. */
async function adopt(topology: Topology, node: NodeHost, handle: string, address: string, cni: CniSpec): Promise<string> {
  const ns = await topology.createInstanceNamespace();
  await adoptInterface({
    nodeNs: node.ns,
    handle,
    instanceNs: ns,
    address,
    prefixLength: cni.ipv4!.subnet.prefixLength,
    gateway: cni.ipv4!.gateway,
    rename: 'eth0',
  });
  return ns;
}

describe('OvsDataplane (netdev datapath, private OVS)', () => {
  let scope: TestScope;
  let topology: Topology;
  let n: OvsNode;
  const cni = cniSpecFor(1);
  const cniRecord = cniRecordOf(cni);

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 1 });
    n = await ovsNode(scope, topology.node(1));
  });
  afterAll(() => scope?.cleanup());

  describe('the CNI', () => {
    it('ensureCni creates the bridge: tagged in OVSDB, gateway on its internal port, up, tagged in the kernel, base flows', async () => {
      const repairs = await n.dataplane.ensureCni(cni);
      expect(repairs).toEqual(['nodenet0 was missing: created']);
      expect(await externalIds(n.ovs, 'Bridge', 'nodenet0')).toMatchObject({ 'nodenet-owner': 'nodenet:cni' });
      const datapath = (await n.ovs.vsctl(['get', 'Bridge', 'nodenet0', 'datapath_type', 'fail_mode'])).stdout.trim().split('\n');
      expect(datapath).toEqual(['netdev', 'secure']);
      const dev = await link(n.host.ns, 'nodenet0');
      expect(dev).toMatchObject({ ifalias: 'nodenet:cni', address: cni.mac, mtu: cni.mtu });
      expect(dev!.flags).toContain('UP');
      expect(await ipv4AddressesOf(n.host.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
      const flows = await n.ovs.flows('nodenet0');
      expect(flows.filter((f) => f.includes('cookie=0x6e6e000000000000'))).toHaveLength(5);
      expect((await nsExec(n.host.ns, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
    });

    it('ensureCni again changes nothing: it only reads (OVSDB, kernel, sysctls, port guard, diff-flows) and reports no repair', async () => {
      let repairs: unknown;
      const commands = await commandsDuring(async () => {
        repairs = await n.dataplane.ensureCni(cni);
      });
      expect(repairs).toEqual([]);
      const writes = commands.filter(
        (c) =>
          (c.startsWith('ovs-vsctl') && !c.includes('--no-wait')) ||
          c.includes(' add-flows ') ||
          c.includes('-batch') ||
          c.includes(' -w ') ||
          c.includes('nft -f'),
      );
      expect(writes).toEqual([]);
      // OVSDB twice (the flow comparison re-reads it under its lock), the gateway port, the sysctls, the port guard, diff-flows.
      expect(commands.length, commands.join('\n')).toBeLessThanOrEqual(6);
    });

    it('repairs drift: a deleted flow, the gateway address, the owner tag', async () => {
      await n.ovs.ofctl('del-flows', 'nodenet0', ['--strict', 'table=0,priority=100,in_port=LOCAL']);
      await ipBatch(n.host.ns, ['address flush dev nodenet0', 'link set dev nodenet0 alias foo']);
      const repairs = await n.dataplane.ensureCni(cni);
      expect(repairs.join('\n')).toMatch(/flows of nodenet0 differed from its ports: 0 removed, 1 added/);
      expect(repairs.join('\n')).toMatch(/198\.19\.1\.1\/24 was missing/);
      expect(repairs.join('\n')).toMatch(/owner alias of nodenet0/);
      expect(await ipv4AddressesOf(n.host.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
      expect(await n.dataplane.ensureCni(cni)).toEqual([]);
    });

    it("refuses a bridge of that name that is not nodenet's", async () => {
      const other = await ovsNode(scope, await topology.addNode());
      await other.ovs.vsctl(['add-br', 'nodenet0', '--', 'set', 'Bridge', 'nodenet0', 'datapath_type=netdev']);
      await expect(other.dataplane.ensureCni(cni)).rejects.toThrow(FailedPreconditionError);
      await expect(other.dataplane.ensureCni(cni)).rejects.toThrow(/not made by nodenet/);
    });
  });

  describe('instances', () => {
    it('a veth: host end is a tagged port with its requested number and flows; the runtime adopts it; it talks TCP to the gateway and to another instance', async () => {
      const a = instanceSpec(cni, 10);
      const b = instanceSpec(cni, 11);
      await Promise.all([n.dataplane.createInstance(a), n.dataplane.createInstance(b)]);
      expect(await externalIds(n.ovs, 'Interface', a.hostIfname)).toEqual({
        'nodenet-owner': `nodenet:${a.handle}`,
        'nodenet-handle': a.handle,
        'nodenet-address': a.address,
        'nodenet-mac': a.mac,
        'nodenet-kind': 'veth',
      });
      expect(await ofportOf(n.ovs, a.hostIfname)).toBe(10);
      const hostEnd = await link(n.host.ns, a.hostIfname);
      expect(hostEnd).toMatchObject({ ifalias: `nodenet:${a.handle}`, mtu: cni.mtu });
      // netdev: the kernel never answers ARP through a switch port, nor routes what arrives on one.
      expect(hostEnd!.flags).toContain('NOARP');
      expect((await nsExec(n.host.ns, 'nft', ['list', 'table', 'inet', 'nodenet'])).stdout).toContain('iifname "nnh-*" drop');
      const flows = (await n.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(instanceCookie(a.handle))));
      expect(flows).toHaveLength(3);
      const [nsA, nsB] = await Promise.all([
        adopt(topology, n.host, a.handle, a.address, cni),
        adopt(topology, n.host, b.handle, b.address, cni),
      ]);
      expect((await ping(nsA, cni.ipv4!.gateway)).ok).toBe(true);
      expect((await ping(nsA, b.address)).ok).toBe(true);
      const atNode = await startEchoServer(scope, n.host.ns, { protocol: 'tcp', port: 7001 });
      const toGateway = await echo(nsA, { protocol: 'tcp', host: cni.ipv4!.gateway, port: 7001 });
      expect(toGateway.ok, toGateway.error).toBe(true);
      expect(atNode.receivedPayload(toGateway.payload)[0]?.peerAddress).toBe(a.address);
      const atB = await startEchoServer(scope, nsB, { protocol: 'tcp', port: 7002 });
      const toB = await echo(nsA, { protocol: 'tcp', host: b.address, port: 7002 });
      expect(toB.ok, toB.error).toBe(true);
      expect(atB.receivedPayload(toB.payload)[0]?.peerAddress).toBe(a.address);
      // A bulk transfer: full-size segments pass (checksums are complete; nothing relies on offloads OVS lacks).
      await nsExec(nsB, 'iperf3', ['-s', '-1', '-D', '-p', '7003']);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const bulk = await nsExec(nsA, 'iperf3', ['-c', b.address, '-p', '7003', '-n', '8M'], { allowFailure: true });
      expect(bulk.exitCode, bulk.stdout + bulk.stderr).toBe(0);
    });

    it('anti-spoofing: another source address from an instance port is dropped, its own passes', async () => {
      const a = instanceSpec(cni, 20);
      await n.dataplane.createInstance(a);
      const ns = await adopt(topology, n.host, a.handle, a.address, cni);
      expect((await ping(ns, cni.ipv4!.gateway)).ok).toBe(true);
      await ipBatch(ns, ['address add 198.19.1.99/24 dev eth0']);
      const spoofed = await ping(ns, cni.ipv4!.gateway, { source: '198.19.1.99', timeoutSec: 1 });
      expect(spoofed.ok, spoofed.output).toBe(false);
      await ipBatch(ns, ['address add 198.19.9.9/32 dev eth0']);
      const offNet = await ping(ns, cni.ipv4!.gateway, { source: '198.19.9.9', timeoutSec: 1 });
      expect(offNet.ok, offNet.output).toBe(false);
      expect((await ping(ns, cni.ipv4!.gateway, { source: a.address })).ok).toBe(true);
    });

    it('netns extension: placed, addressed, routed; talks at once; returns the namespace identity', async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 30, { netns: ns, ifname: 'eth0' });
      const placement = await n.dataplane.createInstance(a);
      expect(placement.netnsId).toMatch(/^\d+:\d+$/);
      expect(await ipv4AddressesOf(ns, 'eth0')).toEqual(['198.19.1.30/24']);
      expect((await ping(ns, cni.ipv4!.gateway)).ok).toBe(true);
      expect(await new LinuxNamespaceIdentity().namespaceAlive(a.netns!, placement.netnsId)).toBe(true);
    });

    it('link lines go to long-lived processes: a create starts no process (node side: ip sessions; namespace side: the namespace configurator; checksum offload: the long-lived helper)', async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 33, { netns: ns, ifname: 'eth0' });
      const created = await commandsDuring(() => n.dataplane.createInstance(a));
      expect(await ipv4AddressesOf(ns, 'eth0')).toEqual(['198.19.1.33/24']);
      expect((await routes(ns)).find((r) => r.dst === 'default')).toMatchObject({ gateway: '198.19.1.1', dev: 'eth0' });
      const deleted = await commandsDuring(() => n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord));
      expect(await link(n.host.ns, a.hostIfname)).toBeUndefined();
      const files = (commands: string[]) => commands.map((c) => c.split(' ')[0]).sort();
      // The end was named, addressed and routed (asserted above) by @nodenet/linux's long-lived namespace
      // configurator, its checksum offload turned off (netdev) by the long-lived helper that enters the
      // namespace (both started by earlier creates); the port and the flows went over the long-lived OVSDB
      // and OpenFlow connections.
      expect(files(created), created.join('\n')).toEqual([]);
      // The flows and the port row: over the long-lived connections, no process.
      expect(files(deleted), deleted.join('\n')).toEqual([]);
    });

    it('concurrent deletes share one link-group deletion, in a group no link was in', async () => {
      const specs = [80, 81, 82, 83].map((octet) => instanceSpec(cni, octet));
      await Promise.all(specs.map((s) => n.dataplane.createInstance(s)));
      // Someone else's link in the first group nodenet would pick.
      await ipBatch(n.host.ns, [`link add nnt-fgn0 group ${0x6e6e0000} type veth peer name nnt-fgn1`]);
      try {
        const commands = await commandsDuring(() =>
          Promise.all(specs.map((s) => n.dataplane.deleteInstance(instanceRecordOf(s), cniRecord))),
        );
        for (const s of specs) expect(await link(n.host.ns, s.hostIfname)).toBeUndefined();
        expect(await link(n.host.ns, 'nnt-fgn0')).toBeDefined();
        // The first delete goes at once; the others, arriving while it runs, together after one listing.
        expect(
          commands.filter((c) => c.includes(' link show')),
          commands.join('\n'),
        ).toHaveLength(1);
      } finally {
        await ipBatch(n.host.ns, ['link del nnt-fgn0']);
      }
    });

    it('a missing namespace: NOT_FOUND, nothing left behind (kernel, OVSDB, flows)', async () => {
      const a = instanceSpec(cni, 31, { netns: `nnt-${process.pid}-nothere` });
      const before = await n.ovs.flows('nodenet0');
      await expect(n.dataplane.createInstance(a)).rejects.toThrow(NotFoundError);
      expect(await link(n.host.ns, a.hostIfname)).toBeUndefined();
      expect((await n.ovs.vsctl(['--if-exists', 'get', 'Interface', a.hostIfname, 'name'])).stdout.trim()).toBe('');
      expect(await n.ovs.flows('nodenet0')).toEqual(before);
    });

    it('an interface name taken in the kernel: ALREADY_EXISTS, the existing link untouched, no port or flow left', async () => {
      const a = instanceSpec(cni, 32);
      await ipBatch(n.host.ns, [`link add ${a.hostIfname} type veth peer name x${a.hostIfname.slice(4)}`]);
      const before = await n.ovs.flows('nodenet0');
      await expect(n.dataplane.createInstance(a)).rejects.toThrow(AlreadyExistsError);
      expect(await link(n.host.ns, a.hostIfname)).toBeDefined();
      expect(await n.ovs.flows('nodenet0')).toEqual(before);
      await ipBatch(n.host.ns, [`link del ${a.hostIfname}`]);
    });

    it('a TAP: the TAP itself is the tagged port', async () => {
      const t = instanceSpec(cni, 40, { kind: 'tap' });
      await n.dataplane.createInstance(t);
      expect(await externalIds(n.ovs, 'Interface', t.handle)).toMatchObject({
        'nodenet-owner': `nodenet:${t.handle}`,
        'nodenet-kind': 'tap',
      });
      const tap = await link(n.host.ns, t.handle);
      expect(tap).toMatchObject({ ifalias: `nodenet:${t.handle}`, mtu: cni.mtu });
      expect(tap!.linkinfo?.info_kind).toBe('tun');
      await n.dataplane.deleteInstance(instanceRecordOf(t), cniRecord);
      expect(await link(n.host.ns, t.handle)).toBeUndefined();
    });

    it('deleteInstance removes the veth, the port and the flows; again is fine', async () => {
      const a = instanceSpec(cni, 50);
      await n.dataplane.createInstance(a);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
      expect(await link(n.host.ns, a.hostIfname)).toBeUndefined();
      expect(await link(n.host.ns, a.handle)).toBeUndefined();
      expect((await n.ovs.vsctl(['--if-exists', 'get', 'Interface', a.hostIfname, 'name'])).stdout.trim()).toBe('');
      expect((await n.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(instanceCookie(a.handle))))).toEqual([]);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
    });
  });

  describe('ownership and orphans', () => {
    it("listOwnedLinks reads OVSDB tags and kernel aliases; inspectLink tells nodenet's from others", async () => {
      const a = instanceSpec(cni, 60);
      await n.dataplane.createInstance(a);
      const owned = await n.dataplane.listOwnedLinks();
      expect(owned).toContainEqual(expect.objectContaining({ name: a.hostIfname, ownerTag: `nodenet:${a.handle}` }));
      expect(owned).toContainEqual(expect.objectContaining({ name: 'nodenet0', ownerTag: 'nodenet:cni' }));
      expect(await n.dataplane.inspectLink('eth0' as never)).toEqual({ name: 'eth0' });
      expect(await n.dataplane.inspectLink(a.hostIfname)).toEqual({ name: a.hostIfname, ownerTag: `nodenet:${a.handle}` });
      expect(await n.dataplane.inspectLink('nothere0' as never)).toBeNull();
    });

    it('an orphan (tagged kernel veth that never became a port, and a port without its record) is listed and deleted with its flows', async () => {
      const half = instanceSpec(cni, 61);
      await ipBatch(n.host.ns, [
        `link add ${half.hostIfname} type veth peer name ${half.handle}`,
        `link set dev ${half.hostIfname} alias nodenet:${half.handle}`,
      ]);
      const full = instanceSpec(cni, 62);
      await n.dataplane.createInstance(full);
      const names = (await n.dataplane.listOwnedLinks()).map((l) => l.name);
      expect(names).toEqual(expect.arrayContaining([half.hostIfname, full.hostIfname]));
      await n.dataplane.deleteOwnedLinks([half.hostIfname, full.hostIfname, 'eth0' as never]);
      expect(await link(n.host.ns, half.hostIfname)).toBeUndefined();
      expect(await link(n.host.ns, full.hostIfname)).toBeUndefined();
      expect(await link(n.host.ns, 'eth0')).toBeDefined();
      expect((await n.ovs.vsctl(['--if-exists', 'get', 'Interface', full.hostIfname, 'name'])).stdout.trim()).toBe('');
      expect((await n.ovs.flows('nodenet0')).filter((f) => f.includes(formatCookie(instanceCookie(full.handle))))).toEqual([]);
    });
  });

  describe('Open vSwitch restarts and failures', () => {
    it('ovs-vswitchd restarted under a running daemon: ensureCni puts the flows back and traffic flows again', async () => {
      const a = instanceSpec(cni, 70);
      await n.dataplane.createInstance(a);
      const ns = await adopt(topology, n.host, a.handle, a.address, cni);
      expect((await ping(ns, cni.ipv4!.gateway)).ok).toBe(true);
      // A delete makes the delete session resolve nodenet0 (its neighbour flush names it).
      const primer = instanceSpec(cni, 77);
      await n.dataplane.createInstance(primer);
      await n.dataplane.deleteInstance(instanceRecordOf(primer), cniRecord);
      await n.ovs.stopSwitch('exit');
      await n.ovs.startSwitch();
      expect(await n.ovs.flows('nodenet0')).toEqual([]);
      const repairs = await n.dataplane.ensureCni(cni);
      expect(repairs.join('\n')).toMatch(/flows of nodenet0 differed/);
      const p = await ping(ns, cni.ipv4!.gateway, { count: 3 });
      expect(p.ok, p.output).toBe(true);
      // Deletes after the restart still flush the instance's neighbour entry on the gateway port.
      await ipBatch(n.host.ns, [`neigh replace ${a.address} lladdr ${a.mac} dev nodenet0 nud stale`]);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
      expect((await nsExec(n.host.ns, 'ip', ['neigh', 'show', 'to', a.address, 'dev', 'nodenet0'])).stdout.trim()).toBe('');
    });

    it('the gateway port deleted behind OVS: ensureCni recreates the bridge with its ports, instances talk again; a delete then flushes on the new port', async () => {
      const a = instanceSpec(cni, 71);
      await n.dataplane.createInstance(a);
      const ns = await adopt(topology, n.host, a.handle, a.address, cni);
      // A delete makes the delete session resolve nodenet0 (its neighbour flush names it).
      const primer = instanceSpec(cni, 76);
      await n.dataplane.createInstance(primer);
      await n.dataplane.deleteInstance(instanceRecordOf(primer), cniRecord);
      await ipBatch(n.host.ns, ['link del nodenet0']);
      const repairs = await n.dataplane.ensureCni(cni);
      expect(repairs.join('\n')).toMatch(/recreated/);
      expect(await ipv4AddressesOf(n.host.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
      expect(await externalIds(n.ovs, 'Interface', a.hostIfname)).toMatchObject({ 'nodenet-address': a.address });
      const p = await ping(ns, cni.ipv4!.gateway, { count: 3 });
      expect(p.ok, p.output).toBe(true);
      expect(await n.dataplane.ensureCni(cni)).toEqual([]);
      // The session was reset with the new port: the delete flushes a's entry there (a stale index would miss it).
      await ipBatch(n.host.ns, [`neigh replace ${a.address} lladdr ${a.mac} dev nodenet0 nud stale`]);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
      expect((await nsExec(n.host.ns, 'ip', ['neigh', 'show', 'to', a.address, 'dev', 'nodenet0'])).stdout.trim()).toBe('');
    });

    it('a host end deleted behind OVS (its OVSDB row stays): creating the instance again replaces the stale row and it talks', async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 72, { netns: ns });
      await n.dataplane.createInstance(a);
      // Down before it goes (as a link torn down by a crash-interrupted delete): ovs-vswitchd's last view of it.
      await ipBatch(n.host.ns, [`link set ${a.hostIfname} down`, `link del ${a.hostIfname}`]);
      expect((await n.ovs.vsctl(['get', 'Interface', a.hostIfname, 'name'])).stdout.trim()).toBe(`"${a.hostIfname}"`.replace(/"/g, ''));
      expect(
        (await n.dataplane.listOwnedLinks()).map((l) => l.name),
        'a port without its link is not listed (the instance is missing)',
      ).not.toContain(a.hostIfname);
      await n.dataplane.createInstance(a);
      // Up as every created host end is (ovs-vswitchd, closing the stale row's device, writes the flags it last
      // saw back to the link of that name: without bringing it up again, the new host end was left down).
      expect((await link(n.host.ns, a.hostIfname))?.flags, 'the host end is up').toContain('UP');
      const p = await ping(ns, cni.ipv4!.gateway, { count: 2 });
      expect(p.ok, p.output).toBe(true);
    });

    it("a port removed from OVSDB alone (an operator's del-port): ensureCni puts it back from the bridge's registry, tagged, with its flows", async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 73, { netns: ns });
      await n.dataplane.createInstance(a);
      await n.ovs.vsctl(['del-port', 'nodenet0', a.hostIfname]);
      expect((await ping(ns, cni.ipv4!.gateway, { timeoutSec: 1 })).ok).toBe(false);
      const repairs = await n.dataplane.ensureCni(cni);
      expect(repairs.join('\n')).toContain(`port ${a.hostIfname} of ${a.handle} (${a.address}) was missing from nodenet0: put back`);
      expect(await externalIds(n.ovs, 'Interface', a.hostIfname)).toMatchObject({
        'nodenet-handle': a.handle,
        'nodenet-address': a.address,
      });
      expect(await ofportOf(n.ovs, a.hostIfname)).toBe(73);
      const p = await ping(ns, cni.ipv4!.gateway, { count: 2 });
      expect(p.ok, p.output).toBe(true);
      expect(await n.dataplane.ensureCni(cni)).toEqual([]);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
      expect(
        Object.keys(await externalIds(n.ovs, 'Bridge', 'nodenet0')).filter((k) => k.includes(a.hostIfname)),
        'the registry entry goes with the port',
      ).toEqual([]);
    });

    it('attachToCni puts a port taken off the switch back from the registry; without a registry entry it says what to do, and with the record it needs none', async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 74, { netns: ns });
      await n.dataplane.createInstance(a);
      await n.ovs.vsctl(['del-port', 'nodenet0', a.hostIfname]);
      expect((await n.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname)).toMatchObject({
        ownerTag: `nodenet:${a.handle}`,
        master: '',
      });
      await n.dataplane.attachToCni(a.hostIfname, cni);
      expect((await n.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname)).toMatchObject({ master: 'nodenet0' });
      expect((await ping(ns, cni.ipv4!.gateway, { count: 2 })).ok).toBe(true);
      await removePortAndRegistry(n.ovs, a.hostIfname);
      await expect(n.dataplane.attachToCni(a.hostIfname, cni)).rejects.toThrow(/delete the interface and create it again/);
      // With the daemon's record of the instance (what core passes), the registry is not needed: the port
      // comes back tagged and registered, with its flows (the bridge deleted or OVSDB lost took the registry).
      await n.dataplane.attachToCni(a.hostIfname, cni, a);
      expect((await n.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname)).toMatchObject({ master: 'nodenet0' });
      expect(Object.keys(await externalIds(n.ovs, 'Bridge', 'nodenet0')), 'registered again').toContain(`nodenet-port-${a.hostIfname}`);
      expect((await ping(ns, cni.ipv4!.gateway, { count: 2 })).ok).toBe(true);
      await n.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
    });

    it("a create cut short before its link was tagged: the untagged pair named in nodenet's scheme is listed as nodenet's and deleted as an orphan", async () => {
      const ns = await topology.createInstanceNamespace();
      const a = instanceSpec(cni, 75);
      await ipBatch(n.host.ns, [`link add ${a.hostIfname} type veth peer name ${a.handle} netns ${ns}`]);
      expect((await n.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname)).toMatchObject({
        ownerTag: `nodenet:${a.handle}`,
        master: '',
      });
      await n.dataplane.deleteOwnedLinks([a.hostIfname]);
      expect(await link(n.host.ns, a.hostIfname)).toBeUndefined();
    });

    it('OVS not running: UNAVAILABLE naming the database socket; ovs-vswitchd alone down: UNAVAILABLE naming its socket', async () => {
      const m = await ovsNode(scope, await topology.addNode(), { timeoutSeconds: 2 });
      const spec = cniSpecFor(2);
      await m.dataplane.ensureCni(spec);
      await m.ovs.stopSwitch('kill');
      const a = instanceSpec(spec, 10);
      const e1 = await m.dataplane.createInstance(a).catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(UnavailableError);
      expect(String((e1 as Error).message)).toMatch(new RegExp(`${m.ovs.dir}`));
      expect(await link(m.host.ns, a.hostIfname), 'the failed create was rolled back').toBeUndefined();
      await m.ovs.stop('kill');
      const e2 = await m.dataplane.ensureCni(spec).catch((e: unknown) => e);
      expect(e2).toBeInstanceOf(UnavailableError);
      expect(String((e2 as Error).message)).toContain(`${m.ovs.dir}/db.sock`);
    });
  });
});
