/**
 * The Dataplane driver suite (unstorage's style: one function registers the cases, each backend runs it
 * with a factory of its own): every member of core's Dataplane exercised through the interface alone, and
 * what a client relies on read back from the kernel of the test's namespaces (addresses, routes,
 * reachability). A backend's own test file adds what only it has (OVSDB rows, flows, overflow bridges).
 *
 *     testDataplane('iproute2', async () => ({ dataplane, nodeNs, newNamespace, cleanup }), { idBase });
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlreadyExistsError,
  CNI_NAME,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  Subnet,
  macForAddress,
  parseIpv4Address,
  type CniSpec,
  type Dataplane,
  type InstanceSpec,
} from '@nodenet/core';
import { ipBatch, ipJson, ping } from '@nodenet/testkit';
import { cniRecordOf, instanceRecordOf, instanceSpecMaker } from '@nodenet/testkit/instance-specs';

/** What a backend gives the suite: its dataplane on a node namespace the test made. */
export interface DataplaneDriver {
  readonly dataplane: Dataplane;
  /** The node namespace the dataplane manages (a name): the suite reads the kernel there. */
  readonly nodeNs: string;
  /** A fresh network namespace for an instance (a name), removed by cleanup(). */
  newNamespace(): Promise<string>;
  /** Closes the dataplane and removes everything the driver made, also after a failure. */
  cleanup(): Promise<void>;
}

export interface DataplaneSuiteOptions {
  /** Handles count up from here: give each backend's file its own base, so files running side by side never share link names. */
  readonly idBase: number;
  /** The CNI subnet's third octet (198.19.N.0/24). Default 1. */
  readonly subnetIndex?: number;
}

interface LinkJson {
  ifname: string;
  ifalias?: string;
  mtu: number;
  address?: string;
  flags: string[];
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export function testDataplane(name: string, make: () => Promise<DataplaneDriver>, options: DataplaneSuiteOptions): void {
  describe(`Dataplane driver suite: ${name}`, () => {
    const n = options.subnetIndex ?? 1;
    const gateway = parseIpv4Address(`198.19.${n}.1`, 'gateway');
    const cni: CniSpec = {
      name: CNI_NAME,
      ipv4: { gateway, subnet: Subnet.of(`198.19.${n}.0/24`) },
      mtu: 1450,
      mac: macForAddress(gateway),
    };
    const cniRecord = cniRecordOf(cni);
    const spec = instanceSpecMaker(cni, options.idBase);
    let d: DataplaneDriver;

    const links = async (ns: string) => ipJson<LinkJson[]>(ns, ['-d', 'addr', 'show']);
    const linkIn = async (ns: string, ifname: string) => (await links(ns)).find((l) => l.ifname === ifname);
    const ownedNames = async () => (await d.dataplane.listOwnedLinks()).map((l) => l.name);
    /** Nothing of `s` is left: no owned link, no node-side link, no instance end in the node namespace. */
    const nothingLeftOf = async (s: InstanceSpec) => {
      expect(await d.dataplane.inspectLink(s.hostIfname)).toBeNull();
      expect(await linkIn(d.nodeNs, s.handle)).toBeUndefined();
      expect(await ownedNames()).not.toContain(s.hostIfname);
    };

    beforeAll(async () => {
      d = await make();
    });
    afterAll(async () => {
      await d?.cleanup();
    });

    it('names itself and says what its instance ports are', () => {
      expect(d.dataplane.name).toBe(name);
      expect(['linux-bridge', 'switch']).toContain(d.dataplane.instancePorts);
    });

    describe('the CNI', () => {
      it("ensureCni makes the CNI: the gateway address on it, its MAC and MTU, up, tagged as nodenet's", async () => {
        await d.dataplane.ensureCni(cni);
        const link = await linkIn(d.nodeNs, CNI_NAME);
        expect(link?.addr_info?.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${gateway}/24`]);
        expect(link?.address).toBe(cni.mac);
        expect(link?.mtu).toBe(cni.mtu);
        expect(link?.flags).toContain('UP');
        expect(await d.dataplane.inspectLink(CNI_NAME)).toEqual({ name: CNI_NAME, ownerTag: 'nodenet:cni' });
      });

      it('ensureCni again repairs nothing', async () => {
        expect((await d.dataplane.ensureCni(cni)) ?? []).toEqual([]);
      });

      it('ensureCni repairs a gateway address deleted behind its back, and says so', async () => {
        await ipBatch(d.nodeNs, [`address del ${gateway}/24 dev ${CNI_NAME}`]);
        const repairs = (await d.dataplane.ensureCni(cni)) ?? [];
        expect(repairs.join('\n')).toMatch(new RegExp(`${gateway.replaceAll('.', '\\.')}/24`));
        expect((await linkIn(d.nodeNs, CNI_NAME))?.addr_info?.some((a) => a.local === gateway)).toBe(true);
        expect((await d.dataplane.ensureCni(cni)) ?? []).toEqual([]);
      });
    });

    describe('instances', () => {
      it('createInstance places a veth end in its namespace, named, addressed, routed, up, and reports the namespace', async () => {
        const ns = await d.newNamespace();
        const a = spec(10, { netns: ns, ifname: 'eth1' });
        const placement = await d.dataplane.createInstance(a);
        expect(placement?.netnsId).toMatch(/^\d+:\d+$/);
        const end = await linkIn(ns, 'eth1');
        expect(end?.address).toBe(a.mac);
        expect(end?.mtu).toBe(a.mtu);
        expect(end?.addr_info?.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`)).toEqual([`${a.address}/24`]);
        expect((await linkIn(ns, 'lo'))?.flags).toContain('UP');
        const routes = await ipJson<{ dst: string; gateway?: string; dev?: string }[]>(ns, ['route', 'show', 'default']);
        expect(routes).toEqual([expect.objectContaining({ dst: 'default', gateway, dev: 'eth1' })]);
        expect(await d.dataplane.inspectLink(a.hostIfname)).toEqual({ name: a.hostIfname, ownerTag: `nodenet:${a.handle}` });
        const owned = (await d.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname);
        expect(owned).toMatchObject({ name: a.hostIfname, ownerTag: `nodenet:${a.handle}`, master: CNI_NAME });
        const reached = await ping(ns, gateway, { count: 3, timeoutSec: 2 });
        expect(reached.ok, reached.output).toBe(true);
        await d.dataplane.deleteInstance(instanceRecordOf(a, placement?.netnsId), cniRecord);
      });

      it('two instances on the CNI reach each other', async () => {
        const [ns1, ns2] = await Promise.all([d.newNamespace(), d.newNamespace()]);
        const a = spec(11, { netns: ns1 });
        const b = spec(12, { netns: ns2 });
        await Promise.all([d.dataplane.createInstance(a), d.dataplane.createInstance(b)]);
        const reached = await ping(ns1, b.address, { count: 3, timeoutSec: 2 });
        expect(reached.ok, reached.output).toBe(true);
        await Promise.all([a, b].map((s) => d.dataplane.deleteInstance(instanceRecordOf(s), cniRecord)));
      });

      it('a veth without a namespace leaves its instance end on the node; a TAP is the port itself', async () => {
        const v = spec(13);
        const t = spec(14, { kind: 'tap' });
        expect((await d.dataplane.createInstance(v))?.netnsId).toBeUndefined();
        expect((await d.dataplane.createInstance(t))?.netnsId).toBeUndefined();
        expect((await linkIn(d.nodeNs, v.handle))?.address).toBe(v.mac);
        expect(t.hostIfname).toBe(t.handle);
        const owned = await d.dataplane.listOwnedLinks();
        expect(owned.find((l) => l.name === v.hostIfname)).toMatchObject({ ownerTag: `nodenet:${v.handle}`, master: CNI_NAME });
        expect(owned.find((l) => l.name === t.handle)).toMatchObject({ ownerTag: `nodenet:${t.handle}`, master: CNI_NAME });
        await d.dataplane.deleteInstance(instanceRecordOf(v), cniRecord);
        await d.dataplane.deleteInstance(instanceRecordOf(t), cniRecord);
        await nothingLeftOf(v);
        await nothingLeftOf(t);
      });

      it('deleteInstance removes both ends; again, and for an instance never made, it is fine', async () => {
        const ns = await d.newNamespace();
        const a = spec(15, { netns: ns });
        const record = instanceRecordOf(a, (await d.dataplane.createInstance(a))?.netnsId);
        await d.dataplane.deleteInstance(record, cniRecord);
        await nothingLeftOf(a);
        expect(await linkIn(ns, 'eth0')).toBeUndefined();
        await d.dataplane.deleteInstance(record, cniRecord);
        await d.dataplane.deleteInstance(instanceRecordOf(spec(16)), cniRecord);
      });

      it('concurrent creates and deletes each do their own instance', async () => {
        const namespaces = await Promise.all(Array.from({ length: 6 }, () => d.newNamespace()));
        const specs = namespaces.map((ns, i) => spec(20 + i, { netns: ns }));
        await Promise.all(specs.map((s) => d.dataplane.createInstance(s)));
        const owned = await ownedNames();
        for (const s of specs) expect(owned).toContain(s.hostIfname);
        await Promise.all(specs.slice(0, 3).map((s) => d.dataplane.deleteInstance(instanceRecordOf(s), cniRecord)));
        const left = await ownedNames();
        for (const s of specs.slice(0, 3)) expect(left).not.toContain(s.hostIfname);
        for (const s of specs.slice(3)) expect(left).toContain(s.hostIfname);
        const reached = await ping(namespaces[3]!, specs[5]!.address, { count: 3, timeoutSec: 2 });
        expect(reached.ok, reached.output).toBe(true);
        await Promise.all(specs.slice(3).map((s) => d.dataplane.deleteInstance(instanceRecordOf(s), cniRecord)));
      });
    });

    describe('refusals leave nothing behind', () => {
      it('a namespace that does not exist: NOT_FOUND naming it (a name, a /proc path, a number); a file that is none: FAILED_PRECONDITION saying what it is', async () => {
        for (const missing of [`nnt-${process.pid}-absent`, '/proc/999999999/ns/net', '4242']) {
          const a = spec(30, { netns: missing });
          const err = await d.dataplane.createInstance(a).catch((e: unknown) => e);
          expect(err, missing).toBeInstanceOf(NotFoundError);
          expect((err as Error).message).toContain(missing);
          await nothingLeftOf(a);
        }
        const notNs = spec(30, { netns: '/etc/hostname' });
        const err = await d.dataplane.createInstance(notNs).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(FailedPreconditionError);
        expect((err as Error).message).toMatch(/\/etc\/hostname is not a network namespace \(it is not a namespace file\)/);
        await nothingLeftOf(notNs);
        const mountNs = spec(30, { netns: '/proc/self/ns/mnt' });
        const err2 = await d.dataplane.createInstance(mountNs).catch((e: unknown) => e);
        expect(err2).toBeInstanceOf(FailedPreconditionError);
        expect((err2 as Error).message).toMatch(/a namespace file, but the kernel refused it as a network namespace/);
        await nothingLeftOf(mountNs);
      });

      it('an ifname already taken in the namespace: ALREADY_EXISTS naming it', async () => {
        const ns = await d.newNamespace();
        await ipBatch(ns, ['link add eth0 type bridge']);
        const a = spec(31, { netns: ns });
        const err = await d.dataplane.createInstance(a).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AlreadyExistsError);
        expect((err as Error).message).toContain(`eth0 already exists in network namespace ${ns}`);
        await nothingLeftOf(a);
        expect(await linkIn(ns, a.handle)).toBeUndefined();
      });

      it('a node-side name taken by another link: ALREADY_EXISTS, and that link is left alone', async () => {
        const a = spec(32, { netns: await d.newNamespace() });
        await ipBatch(d.nodeNs, [`link add ${a.hostIfname} type bridge`]);
        const err = await d.dataplane.createInstance(a).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(AlreadyExistsError);
        expect((err as Error).message).toContain(`a link named ${a.hostIfname} or ${a.handle} already exists`);
        expect(await d.dataplane.inspectLink(a.hostIfname)).toEqual({ name: a.hostIfname });
        await ipBatch(d.nodeNs, [`link del ${a.hostIfname}`]);
      });

      it('a TAP with a namespace: INVALID_ARGUMENT', async () => {
        const t = { ...spec(33, { kind: 'tap' }), netns: (await d.newNamespace()) as InstanceSpec['netns'] };
        await expect(d.dataplane.createInstance(t)).rejects.toThrow(InvalidArgumentError);
        await nothingLeftOf(t);
      });
    });

    describe('ownership', () => {
      it("inspectLink: nodenet's links carry their tag, others none, absent ones are null", async () => {
        await ipBatch(d.nodeNs, ['link add nnt-other0 type bridge']);
        expect(await d.dataplane.inspectLink('nnt-other0' as InstanceSpec['handle'])).toEqual({ name: 'nnt-other0' });
        expect(await d.dataplane.inspectLink('nnt-none0' as InstanceSpec['handle'])).toBeNull();
        expect(await d.dataplane.inspectLink('lo' as InstanceSpec['handle'])).toEqual({ name: 'lo' });
        expect(await ownedNames()).not.toContain('nnt-other0');
        // A veth's instance end left on the node carries no tag (it is the instance's); its host end and a TAP do.
        const v = spec(43);
        const t = spec(44, { kind: 'tap' });
        await d.dataplane.createInstance(v);
        await d.dataplane.createInstance(t);
        expect(await d.dataplane.inspectLink(v.handle)).toEqual({ name: v.handle });
        expect(await d.dataplane.inspectLink(v.hostIfname)).toEqual({ name: v.hostIfname, ownerTag: `nodenet:${v.handle}` });
        expect(await d.dataplane.inspectLink(t.handle)).toEqual({ name: t.handle, ownerTag: `nodenet:${t.handle}` });
        await d.dataplane.deleteInstance(instanceRecordOf(v), cniRecord);
        await d.dataplane.deleteInstance(instanceRecordOf(t), cniRecord);
      });

      it('deleteOwnedLinks removes orphans it owns, leaves untagged links, and is fine with absent names', async () => {
        const a = spec(40, { netns: await d.newNamespace() });
        const t = spec(41, { kind: 'tap' });
        await d.dataplane.createInstance(a);
        await d.dataplane.createInstance(t);
        await d.dataplane.deleteOwnedLinks([
          a.hostIfname,
          t.handle,
          'nnt-other0' as InstanceSpec['handle'],
          'nnt-none0' as InstanceSpec['handle'],
        ]);
        await nothingLeftOf(a);
        await nothingLeftOf(t);
        expect(await d.dataplane.inspectLink('nnt-other0' as InstanceSpec['handle'])).toEqual({ name: 'nnt-other0' });
        await d.dataplane.deleteOwnedLinks([]);
        await ipBatch(d.nodeNs, ['link del nnt-other0']);
      });

      it('attachToCni makes an instance port a port of the CNI (again: it converges), and the instance still reaches the gateway', async () => {
        if (!d.dataplane.attachToCni) return expect(typeof d.dataplane.attachToCni).toBe('undefined');
        const ns = await d.newNamespace();
        const a = spec(42, { netns: ns });
        await d.dataplane.createInstance(a);
        await d.dataplane.attachToCni(a.hostIfname, cni);
        expect((await d.dataplane.listOwnedLinks()).find((l) => l.name === a.hostIfname)).toMatchObject({ master: CNI_NAME });
        const reached = await ping(ns, gateway, { count: 3, timeoutSec: 2 });
        expect(reached.ok, reached.output).toBe(true);
        await d.dataplane.deleteInstance(instanceRecordOf(a), cniRecord);
      });
    });

    describe('removing the CNI', () => {
      it('deleteCni removes the CNI; absent, it is fine', async () => {
        await d.dataplane.deleteCni(CNI_NAME);
        expect(await d.dataplane.inspectLink(CNI_NAME)).toBeNull();
        await d.dataplane.deleteCni(CNI_NAME);
      });

      it('without the CNI a create is refused and leaves nothing; ensureCni makes it again', async () => {
        const a = spec(50, { netns: await d.newNamespace() });
        await expect(d.dataplane.createInstance(a)).rejects.toThrow(/CreateContainerNetworkInterface/);
        await nothingLeftOf(a);
        await d.dataplane.ensureCni(cni);
        expect(await d.dataplane.inspectLink(CNI_NAME)).toEqual({ name: CNI_NAME, ownerTag: 'nodenet:cni' });
      });
    });
  });
}
