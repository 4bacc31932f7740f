/** A create whose caller gives up (the gRPC call cancelled, its deadline passed) rolls back like a failed one. */
import { beforeEach, describe, expect, it } from 'vitest';
import { NodeNetwork, type NodenetError } from '@nodenet/core';
import { FakeDataplane, FakePacketFilter, MemoryStateStore } from './fakes.js';

describe('cancelled creates', () => {
  let dp: FakeDataplane;
  let pf: FakePacketFilter;
  let store: MemoryStateStore;
  let net: NodeNetwork;

  beforeEach(async () => {
    dp = new FakeDataplane();
    pf = new FakePacketFilter();
    store = new MemoryStateStore();
    let counter = 0;
    net = new NodeNetwork({
      dataplane: dp,
      namespaces: dp,
      packetFilter: pf,
      store,
      host: await dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
      randomUint32: () => ++counter,
    });
    await net.load();
    await net.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
  });

  const failure = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: NodenetError) => e,
    );
  const instanceLinks = () => [...dp.links.keys()].filter((n) => n.startsWith('nn'));

  it('aborted while its work runs: the link, the rules and the staged record are undone, the address and ports freed', async () => {
    const cancel = new AbortController();
    const create = net.createInterface({ ipAddress: '198.19.1.2', ports: [8080] }, { signal: cancel.signal });
    // The same request again joins the first; it learns that the work was taken back.
    const joined = net.createInterface({ ipAddress: '198.19.1.2', ports: [8080] });
    cancel.abort();
    const err = await failure(create);
    expect(err?.code).toBe('UNAVAILABLE');
    expect(err?.message).toMatch(
      /^CreateInterface was cancelled by its client \(or its deadline passed\) before it finished: nothing of it was kept; retry$/,
    );
    expect((await failure(joined))?.code).toBe('UNAVAILABLE');
    expect(instanceLinks()).toEqual([]);
    expect(pf.instances.size).toBe(0);
    expect(store.state.instances).toEqual([]);
    expect(net.listInstances()).toEqual([]);
    const again = await net.createInterface({ ipAddress: '198.19.1.2', ports: [8080] });
    expect(instanceLinks().sort()).toEqual([again.hostInterfaceName, again.interfaceName].sort());
  });

  it('aborted before it starts: nothing is attempted', async () => {
    const cancel = new AbortController();
    cancel.abort();
    expect((await failure(net.createInterface({ ipAddress: '198.19.1.3' }, { signal: cancel.signal })))?.code).toBe('UNAVAILABLE');
    expect(dp.calls.filter((c) => c.startsWith('createInstance'))).toEqual([]);
    expect(pf.instances.size).toBe(0);
  });

  it('a CreateContainerNetworkInterface aborted while it runs is rolled back: no bridge, no filter table, no record', async () => {
    const fresh = { dp: new FakeDataplane(), pf: new FakePacketFilter(), store: new MemoryStateStore() };
    const n = new NodeNetwork({
      dataplane: fresh.dp,
      namespaces: fresh.dp,
      packetFilter: fresh.pf,
      store: fresh.store,
      host: await fresh.dp.probeHost(),
      reservedPorts: new Map(),
      overlayOverhead: 50,
    });
    await n.load();
    const cancel = new AbortController();
    const create = n.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' }, { signal: cancel.signal });
    cancel.abort();
    expect((await failure(create))?.code).toBe('UNAVAILABLE');
    expect(fresh.dp.cni).toBeNull();
    expect(fresh.pf.base).toBeNull();
    expect(fresh.store.state.cni).toBeNull();
    expect(n.cniRecord).toBeNull();
  });

  it('a signal that never aborts changes nothing', async () => {
    const r = await net.createInterface({ ipAddress: '198.19.1.4' }, { signal: new AbortController().signal });
    expect(net.listInstances().map((i) => i.handle)).toEqual([r.interfaceName]);
  });
});
