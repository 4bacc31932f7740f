import { beforeEach, describe, expect, it } from 'vitest';
import { NodeNetwork, type Ipv4Address } from '@nodenet/core';
import { FakeDataplane, FakePacketFilter, MemoryStateStore } from './fakes.js';

describe('NodeNetwork.reconcile', () => {
  let dp: FakeDataplane;
  let pf: FakePacketFilter;
  let store: MemoryStateStore;
  let net: NodeNetwork;
  let counter = 0;

  async function make(extra: Partial<ConstructorParameters<typeof NodeNetwork>[0]> = {}) {
    const n = new NodeNetwork({
      dataplane: dp,
      namespaces: dp,
      packetFilter: pf,
      store,
      host: await dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
      randomUint32: () => ++counter,
      infrastructureLinks: ['nodenet-vx'],
      ...extra,
    });
    await n.load();
    return n;
  }

  beforeEach(async () => {
    dp = new FakeDataplane();
    pf = new FakePacketFilter();
    store = new MemoryStateStore();
    counter = 0;
    net = await make();
    await net.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    dp.namespaces.set('web', 'ns:1');
  });

  it('changes nothing when all is as recorded', async () => {
    await net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    dp.calls.length = 0;
    const report = await net.reconcile();
    expect(report.repairs).toEqual([]);
    expect(report.repairCounts).toEqual({});
    expect(report.errors).toEqual([]);
    expect(dp.calls).toEqual(['ensureCni nodenet0']);
    expect(net.lastReconcile).toBe(report);
  });

  it('recreates an interface whose namespace still lives, releases one whose namespace is gone', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    dp.namespaces.set('db', 'ns:2');
    const b = await net.createInterface({ ipAddress: '198.19.1.3', ports: [5432], netns: 'db' });
    dp.links.delete(a.hostInterfaceName);
    dp.links.delete(b.hostInterfaceName);
    dp.namespaces.set('db', 'ns:3'); // recreated under the same name: not the same namespace
    const report = await net.reconcile();
    expect(report.repairs).toEqual([
      `interface ${a.interfaceName} (198.19.1.2) was missing: recreated in namespace web`,
      `instance ${b.interfaceName} (198.19.1.3) is gone (its namespace db no longer exists): released its address and ports`,
    ]);
    expect(report.repairCounts).toEqual({ instance_recreated: 1, instance_released: 1 });
    expect(dp.links.has(a.hostInterfaceName)).toBe(true);
    expect(store.state.instances.map((r) => r.handle)).toEqual([a.interfaceName]);
    expect(store.state.released).toContain(b.interfaceName);
    expect(pf.flushed).toContain('198.19.1.3');
    // address and port of the released one are free again; a repeated delete is OK
    await net.createInterface({ ipAddress: '198.19.1.3', ports: [5432] });
    await net.deleteInterface({ interfaceName: b.interfaceName });
  });

  it('releases a veth the runtime moved once its pair is gone, and a TAP that is gone', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2' });
    const t = await net.createInterface({ ipAddress: '198.19.1.3', kind: 'tap' });
    dp.links.delete(a.hostInterfaceName);
    dp.links.delete(t.hostInterfaceName);
    const report = await net.reconcile();
    expect(report.repairs).toHaveLength(2);
    expect(report.repairs[0]).toMatch(/its veth pair is gone/);
    expect(report.repairs[1]).toMatch(/its TAP is gone/);
    expect(net.listInstances()).toEqual([]);
  });

  it('restores missing rules of an instance whose interface exists', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    pf.instances.clear();
    const report = await net.reconcile();
    expect(report.repairs).toEqual([`rules of ${a.interfaceName} (198.19.1.2) were missing: restored`]);
    expect(pf.instances.get(a.hostInterfaceName)?.ports).toHaveLength(2);
  });

  it('removes owned links and elements no record explains, never foreign or infrastructure links', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    dp.links.set('nnh-dead0001', { name: 'nnh-dead0001', ownerTag: 'nodenet:nni-dead0001' });
    dp.links.set('nodenet-vx', { name: 'nodenet-vx', ownerTag: 'nodenet:overlay' });
    dp.links.set('foreign0', { name: 'foreign0' });
    pf.extra = {
      ports: [{ protocol: 'tcp', hostPort: 9999, address: '198.19.1.77' as Ipv4Address, instancePort: 9999 }],
      sources: [{ ifname: 'nnh-dead0001', address: '198.19.1.77' as Ipv4Address }],
    };
    const report = await net.reconcile();
    expect(report.repairs).toEqual([
      'removed links no record explains: nnh-dead0001',
      'removed filter elements no record explains: port 9999/tcp -> 198.19.1.77:9999, source 198.19.1.77 on nnh-dead0001',
    ]);
    expect(dp.links.has('foreign0')).toBe(true);
    expect(dp.links.has('nodenet-vx')).toBe(true);
    expect(dp.links.has(a.hostInterfaceName)).toBe(true);
    expect(pf.removed).toHaveLength(1);
    expect(pf.removed[0]!.ports).toHaveLength(1);
  });

  it('leaves creates in flight alone', async () => {
    // A create is in flight: its rules are in place and its link exists, but no record yet.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const save = store.saveInstance.bind(store);
    store.saveInstance = async (rec) => {
      await gate;
      return save(rec);
    };
    const creating = net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    await new Promise((r) => setTimeout(r, 20));
    const report = await net.reconcile();
    expect(report.repairs).toEqual([]);
    release();
    const r = await creating;
    expect(dp.links.has(r.hostInterfaceName)).toBe(true);
    expect((await net.reconcile()).repairs).toEqual([]);
  });

  it('restore() after a reboot: CNI converged again, gone instances released', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    // reboot: kernel state and namespaces are gone
    dp.links.clear();
    dp.namespaces.clear();
    pf.instances.clear();
    net = await make();
    const report = await net.restore();
    expect(dp.links.has('nodenet0')).toBe(true);
    expect(report.repairs).toEqual([
      `instance ${a.interfaceName} (198.19.1.2) is gone (its namespace web no longer exists): released its address and ports`,
    ]);
    expect(net.listInstances()).toEqual([]);
  });

  it('never removes a CNI being created, nor the links of a create that finished while the kernel was listed', async () => {
    const fresh = new NodeNetwork({
      dataplane: dp,
      namespaces: dp,
      packetFilter: pf,
      store: new MemoryStateStore(),
      host: await dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
    });
    await fresh.load();
    // no CNI record in `fresh`, but the bridge exists (being created by a concurrent request)
    expect((await fresh.reconcile()).repairs).toEqual([]);
    expect(dp.links.has('nodenet0')).toBe(true);

    // A create completes between listOwnedLinks and the plan: its link must count as explained.
    const list = dp.listOwnedLinks.bind(dp);
    let created: Promise<unknown> | undefined;
    dp.listOwnedLinks = async () => {
      // in flight when the pass starts; its link is listed; its record lands before the plan is made
      created = net.createInterface({ ipAddress: '198.19.1.9', netns: 'web' });
      while (![...dp.links.keys()].some((l) => l.startsWith('nnh-'))) await new Promise((r) => setImmediate(r));
      const links = await list();
      await created;
      return links;
    };
    const report = await net.reconcile();
    expect(report.repairs).toEqual([]);
    expect(net.listInstances()).toHaveLength(1);
    expect(dp.links.has(net.listInstances()[0]!.hostIfname)).toBe(true);
  });

  it('puts a detached bridge port back on the CNI when the backend reports masters', async () => {
    const a = await net.createInterface({ ipAddress: '198.19.1.2', netns: 'web' });
    const attached: string[] = [];
    dp.attachToCni = async (name) => {
      attached.push(name);
      dp.links.set(name, { ...dp.links.get(name)!, master: 'nodenet0' });
    };
    dp.links.set(a.hostInterfaceName, { name: a.hostInterfaceName, ownerTag: `nodenet:${a.interfaceName}`, master: 'nodenet0' });
    expect((await net.reconcile()).repairs).toEqual([]);
    dp.links.set(a.hostInterfaceName, { name: a.hostInterfaceName, ownerTag: `nodenet:${a.interfaceName}`, master: '' });
    expect((await net.reconcile()).repairs).toEqual([
      `${a.hostInterfaceName} of ${a.interfaceName} (198.19.1.2) was not a port of nodenet0: attached again`,
    ]);
    expect(attached).toEqual([a.hostInterfaceName]);
  });

  it('counts repairs by kind (one per object) and tells the observer of every pass', async () => {
    const seen: unknown[] = [];
    const observed = await make({ onReconciled: (report) => seen.push(report) });
    const a = await observed.createInterface({ ipAddress: '198.19.1.2', ports: [80], netns: 'web' });
    dp.links.set('nnh-dead0001', { name: 'nnh-dead0001', ownerTag: 'nodenet:nni-dead0001' });
    dp.links.set('nnh-dead0002', { name: 'nnh-dead0002', ownerTag: 'nodenet:nni-dead0002' });
    pf.instances.clear();
    const report = await observed.reconcile();
    expect(report.repairCounts).toEqual({ orphan_link: 2, missing_rules: 1 });
    expect(report.repairs).toEqual([
      'removed links no record explains: nnh-dead0001, nnh-dead0002',
      `rules of ${a.interfaceName} (198.19.1.2) were missing: restored`,
    ]);
    const again = await observed.restore();
    expect(seen).toEqual([report, again]);
  });
});
