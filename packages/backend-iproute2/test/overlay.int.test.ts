/**
 * Iproute2Overlay against the real kernel: three nodes on a hand-built fabric (see overlay-fixture.ts),
 * each with a CNI bridge and an instance, and the overlay programmed in every node (netns option) in
 * vxlan and in host-gw mode. Every namespace is deleted afterwards, also when a test fails.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RecordedCommand } from '@nodenet/testkit/recording-sys';
import { FailedPreconditionError, Subnet, vtepMacForUnderlay, type HostInfo, type NodeRecord } from '@nodenet/core';
import { run } from '@nodenet/sys';
import type { OverlayMode } from '@nodenet/core';
import { Iproute2Overlay, OVERLAY_DEVICE } from '../src/index.js';
import { TestNamespaces, sh } from './netns-fixture.js';
import {
  buildCluster,
  fdbOf,
  ip,
  ipJsonIn,
  median,
  msUntilPing,
  pingStatus,
  round,
  tcpExchange,
  type IpJsonLink,
  type IpJsonNeighbour,
  type IpJsonRoute,
  type TestCluster,
  type TestNode,
} from './overlay-fixture.js';

/** Every command the code under test started (file, args, options), in order. */
const commandsRun = vi.hoisted((): RecordedCommand[] => []);
// Pass-through spies on both runners (see recordingSys).
vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));

const VNI = 4242;
const PORT = 4789;

/** The processes (program + namespace-stripped arguments) `fn` spawned through run(). */
async function spawnedBy(fn: () => Promise<unknown>): Promise<string[]> {
  const before = commandsRun.length;
  await fn();
  return commandsRun.slice(before).map((c) => [c[0], ...c[1]].join(' '));
}

function overlayFor(node: TestNode, mode: OverlayMode, host: HostInfo = node.host, vni = VNI): Iproute2Overlay {
  return new Iproute2Overlay({ mode, vni, port: PORT, host, netns: node.ns });
}

/** Programs every node's endpoint and every peer. */
async function programAll(cluster: TestCluster, overlays: Iproute2Overlay[]): Promise<void> {
  for (const [i, node] of cluster.nodes.entries()) {
    await overlays[i]!.ensureEndpoint(node.record);
    for (const peer of cluster.nodes) if (peer !== node) await overlays[i]!.ensurePeer(peer.record);
  }
}

async function expectAllPairsPing(cluster: TestCluster): Promise<void> {
  const results: string[] = [];
  for (const a of cluster.nodes) {
    for (const b of cluster.nodes) {
      if (a === b) continue;
      const { code } = await pingStatus(a.instanceNs, b.instanceAddress);
      results.push(`${a.instanceAddress} -> ${b.instanceAddress}: ${code === 0 ? 'ok' : `exit ${code}`}`);
    }
  }
  expect(results.filter((r) => !r.endsWith('ok'))).toEqual([]);
  expect(results).toHaveLength(cluster.nodes.length * (cluster.nodes.length - 1));
}

async function routeTo(ns: string, subnet: string): Promise<Record<string, unknown>[]> {
  return ipJsonIn(ns, ['route', 'show', 'exact', subnet]);
}

/** ensurePeer latency (median) and time from its return to the first successful ping (median), over `rounds` remove/ensure cycles. */
async function measure(overlay: Iproute2Overlay, from: TestNode, to: TestNode, rounds: number) {
  const ensureMs: number[] = [];
  const firstPingMs: number[] = [];
  const baselinePingMs: number[] = [];
  let answeredFirst = 0;
  for (let i = 0; i < rounds; i++) {
    await overlay.removePeer(to.record);
    const t0 = performance.now();
    await overlay.ensurePeer(to.record);
    ensureMs.push(performance.now() - t0);
    const first = await msUntilPing(from.instanceNs, to.instanceAddress);
    expect(first).not.toBeNull();
    firstPingMs.push(first!.ms);
    if (first!.attempts === 1) answeredFirst++;
    // The same measurement with everything long in place: the cost of spawning ping itself.
    baselinePingMs.push((await msUntilPing(from.instanceNs, to.instanceAddress))!.ms);
  }
  return {
    ensureMs: round(median(ensureMs)),
    firstPingMs: round(median(firstPingMs)),
    baselinePingMs: round(median(baselinePingMs)),
    answeredFirst: `${answeredFirst}/${rounds}`,
  };
}

describe('vxlan', () => {
  const namespaces = new TestNamespaces();
  let cluster: TestCluster;
  let overlays: Iproute2Overlay[];
  let n1: TestNode;
  let n2: TestNode;
  let n3: TestNode;

  beforeAll(async () => {
    try {
      cluster = await buildCluster(namespaces, 3, 50);
      [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
      overlays = cluster.nodes.map((n) => overlayFor(n, 'vxlan'));
      await programAll(cluster, overlays);
    } catch (e) {
      await namespaces.cleanup();
      throw e;
    }
  });

  afterAll(async () => {
    await namespaces.cleanup();
  });

  it('creates nodenet-vx: VNI, port, local, underlay link, nolearning, MTU 1450, VTEP MAC, alias, the /32, up', async () => {
    const [link] = await ipJsonIn<IpJsonLink[]>(n1.ns, ['-d', 'addr', 'show', 'dev', OVERLAY_DEVICE]);
    expect(link!.linkinfo.info_kind).toBe('vxlan');
    expect(link!.linkinfo.info_data).toMatchObject({ id: VNI, port: PORT, local: '198.18.0.1', link: 'u0', learning: false });
    expect(link!.mtu).toBe(1450);
    expect(link!.address).toBe(vtepMacForUnderlay(ip('198.18.0.1')));
    expect(link!.ifalias).toBe('nodenet:overlay');
    expect(link!.flags).toContain('UP');
    expect(link!.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toEqual(['198.19.1.0/32']);
  });

  it('programs per peer an onlink route (proto 78), a permanent neighbour entry and a permanent FDB entry', async () => {
    const routes = await ipJsonIn<IpJsonRoute[]>(n1.ns, ['route', 'show', 'dev', OVERLAY_DEVICE]);
    expect(routes.map((r) => `${r.dst} via ${r.gateway} proto ${r.protocol} ${r.flags.join(',')}`).sort()).toEqual([
      '198.19.2.0/24 via 198.19.2.0 proto 78 onlink',
      '198.19.3.0/24 via 198.19.3.0 proto 78 onlink',
    ]);
    const neigh = await ipJsonIn<IpJsonNeighbour[]>(n1.ns, ['neigh', 'show', 'dev', OVERLAY_DEVICE]);
    expect(neigh.map((e) => `${e.dst} ${e.lladdr} ${e.state.join(',')}`).sort()).toEqual([
      `198.19.2.0 ${vtepMacForUnderlay(ip('198.18.0.2'))} PERMANENT`,
      `198.19.3.0 ${vtepMacForUnderlay(ip('198.18.0.3'))} PERMANENT`,
    ]);
    const fdb = await fdbOf(n1.ns, OVERLAY_DEVICE);
    expect(fdb.map((e) => `${e.mac} ${e.dst} ${e.state}`).sort()).toEqual([
      `${vtepMacForUnderlay(ip('198.18.0.2'))} 198.18.0.2 permanent`,
      `${vtepMacForUnderlay(ip('198.18.0.3'))} 198.18.0.3 permanent`,
    ]);
  });

  it('every instance pair across nodes pings', async () => {
    await expectAllPairsPing(cluster);
  });

  it('TCP works across nodes and the server sees the instance address', async () => {
    const r12 = await tcpExchange(n1.instanceNs, n2.instanceNs, n2.instanceAddress, 7001);
    expect(r12.received).toBe(`hello from ${n1.instanceNs}\n`);
    expect(r12.peer).toBe('198.19.1.2');
    const r31 = await tcpExchange(n3.instanceNs, n1.instanceNs, n1.instanceAddress, 7002);
    expect(r31.peer).toBe('198.19.3.2');
  });

  it('the node itself reaches peer instances, from its subnet network address', async () => {
    expect((await pingStatus(n1.ns, n2.instanceAddress)).code).toBe(0);
    const [got] = await ipJsonIn<IpJsonRoute[]>(n1.ns, ['route', 'get', n2.instanceAddress]);
    expect(got!.prefsrc).toBe('198.19.1.0');
  });

  it('a DF ping with 1422 bytes of payload crosses a 1500 underlay; 1423 (1451 > 1450) does not', async () => {
    const fits = await pingStatus(n1.instanceNs, n2.instanceAddress, ['-M', 'do', '-s', '1422']);
    expect(fits.code, fits.output).toBe(0);
    const tooBig = await pingStatus(n1.instanceNs, n2.instanceAddress, ['-M', 'do', '-s', '1423']);
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.output).toMatch(/message too long|mtu/i);
  });

  it('ensureEndpoint again is a no-op: one read, nothing changed', async () => {
    const before = await ipJsonIn(n1.ns, ['-d', 'addr', 'show', 'dev', OVERLAY_DEVICE]);
    const spawned = await spawnedBy(() => overlays[0]!.ensureEndpoint(n1.record));
    expect(spawned).toEqual([`ip -n ${n1.ns} -j -d addr show dev ${OVERLAY_DEVICE}`]);
    expect(await ipJsonIn(n1.ns, ['-d', 'addr', 'show', 'dev', OVERLAY_DEVICE])).toEqual(before);
  });

  it('ensurePeer and removePeer each spawn one ip and one bridge process', async () => {
    const ensure = await spawnedBy(() => overlays[0]!.ensurePeer(n2.record));
    expect(ensure.map((s) => s.split(' ').slice(0, 5).join(' ')).sort()).toEqual([
      `bridge -n ${n1.ns} -force -batch`,
      `ip -n ${n1.ns} -force -batch`,
    ]);
    const remove = await spawnedBy(() => overlays[0]!.removePeer(n2.record));
    expect(remove).toHaveLength(2);
    await overlays[0]!.ensurePeer(n2.record);
  });

  it('removePeer makes the peer unreachable and leaves no route, neighbour or FDB entry; ensurePeer restores it', async () => {
    await overlays[0]!.removePeer(n2.record);
    expect((await pingStatus(n1.instanceNs, n2.instanceAddress, [], 1)).code).not.toBe(0);
    expect(await routeTo(n1.ns, '198.19.2.0/24')).toEqual([]);
    const neigh = await ipJsonIn<IpJsonNeighbour[]>(n1.ns, ['neigh', 'show', 'dev', OVERLAY_DEVICE]);
    expect(neigh.map((e) => e.dst)).toEqual(['198.19.3.0']);
    const fdb = await fdbOf(n1.ns, OVERLAY_DEVICE);
    expect(fdb.map((e) => e.dst)).toEqual(['198.18.0.3']);
    // Node 3 is unaffected.
    expect((await pingStatus(n1.instanceNs, n3.instanceAddress)).code).toBe(0);

    await overlays[0]!.removePeer(n2.record); // absent: fine
    await overlays[0]!.ensurePeer(n2.record);
    expect((await pingStatus(n1.instanceNs, n2.instanceAddress)).code).toBe(0);
  });

  it('removePeer tolerates a peer that was never programmed', async () => {
    const stranger: NodeRecord = { name: 'node-9', underlayAddress: ip('198.18.0.9'), subnet: Subnet.of('198.19.9.0/24') };
    await expect(overlays[0]!.removePeer(stranger)).resolves.toBeUndefined();
  });

  it('measures ensurePeer latency and the time to the first ping', async () => {
    const m = await measure(overlays[0]!, n1, n2, 15);
    console.log(
      `[vxlan] ensurePeer median ${m.ensureMs} ms; ensurePeer return -> first ping reply median ${m.firstPingMs} ms (ping spawn baseline ${m.baselinePingMs} ms); the first ping was answered in ${m.answeredFirst} rounds`,
    );
    expect(m.ensureMs).toBeGreaterThan(0);
  });

  it('repairs a device that was changed behind its back (down, MTU, address, learning) and programs the peers again', async () => {
    const [before] = await ipJsonIn<IpJsonLink[]>(n1.ns, ['link', 'show', 'dev', OVERLAY_DEVICE]);
    await sh(
      'ip',
      ['-n', n1.ns, '-batch', '-'],
      [
        `link set dev ${OVERLAY_DEVICE} down`,
        `link set dev ${OVERLAY_DEVICE} mtu 1400`,
        `link set dev ${OVERLAY_DEVICE} type vxlan learning`,
        `address flush dev ${OVERLAY_DEVICE}`,
        '',
      ].join('\n'),
    );
    // The kernel drops routes and neighbour entries of a device that goes down.
    expect(await routeTo(n1.ns, '198.19.2.0/24')).toEqual([]);
    await overlays[0]!.ensureEndpoint(n1.record);
    const [link] = await ipJsonIn<IpJsonLink[]>(n1.ns, ['-d', 'addr', 'show', 'dev', OVERLAY_DEVICE]);
    expect(link!.ifindex).toBe(before!.ifindex);
    expect(link!.mtu).toBe(1450);
    expect(link!.flags).toContain('UP');
    expect(link!.linkinfo.info_data.learning).toBe(false);
    expect(link!.addr_info.map((a: { local: string }) => a.local)).toEqual(['198.19.1.0']);
    expect(await routeTo(n1.ns, '198.19.2.0/24')).toHaveLength(1);
    await expectAllPairsPing(cluster);
  });

  it('recreates the device for another VNI (the kernel cannot change it) with the peers programmed again', async () => {
    const [before] = await ipJsonIn<IpJsonLink[]>(n1.ns, ['link', 'show', 'dev', OVERLAY_DEVICE]);
    const other = overlayFor(n1, 'vxlan', n1.host, VNI + 1);
    await other.ensureEndpoint(n1.record);
    await other.ensurePeer(n2.record);
    const [link] = await ipJsonIn<IpJsonLink[]>(n1.ns, ['-d', 'link', 'show', 'dev', OVERLAY_DEVICE]);
    expect(link!.ifindex).not.toBe(before!.ifindex);
    expect(link!.linkinfo.info_data.id).toBe(VNI + 1);
    // Back to the cluster's VNI: the original overlay remembers nodes 2 and 3 and programs both again.
    await overlays[0]!.ensureEndpoint(n1.record);
    expect((await ipJsonIn<IpJsonLink[]>(n1.ns, ['-d', 'link', 'show', 'dev', OVERLAY_DEVICE]))[0]!.linkinfo.info_data.id).toBe(VNI);
    expect((await ipJsonIn(n1.ns, ['route', 'show', 'dev', OVERLAY_DEVICE])).length).toBe(2);
    await expectAllPairsPing(cluster);
  });

  it('lists its routes and removes stale entries of peers no longer wanted (also a stray FDB entry)', async () => {
    const listed = await overlays[0]!.listProgrammedPeers();
    expect(listed.map((p) => `${p.subnet} via ${p.via} dev ${p.dev}`).sort()).toEqual([
      `198.19.2.0/24 via 198.19.2.0 dev ${OVERLAY_DEVICE}`,
      `198.19.3.0/24 via 198.19.3.0 dev ${OVERLAY_DEVICE}`,
    ]);
    await sh('bridge', [
      '-n',
      n1.ns,
      'fdb',
      'append',
      '02:6f:c6:12:00:4d',
      'dev',
      OVERLAY_DEVICE,
      'dst',
      '198.18.0.77',
      'self',
      'permanent',
    ]);
    const removed = await overlays[0]!.removeStalePeers([n2.record]);
    expect(removed.sort()).toEqual([
      'fdb 02:6f:c6:12:00:03 dst 198.18.0.3',
      'fdb 02:6f:c6:12:00:4d dst 198.18.0.77',
      'neighbour 198.19.3.0 lladdr 02:6f:c6:12:00:03',
      `route 198.19.3.0/24 via 198.19.3.0 dev ${OVERLAY_DEVICE}`,
    ]);
    expect((await overlays[0]!.listProgrammedPeers()).map(String)).toHaveLength(1);
    expect((await fdbOf(n1.ns, OVERLAY_DEVICE)).map((e) => e.dst)).toEqual(['198.18.0.2']);
    expect((await pingStatus(n1.instanceNs, n3.instanceAddress, [], 1)).code).not.toBe(0);
    expect(await overlays[0]!.removeStalePeers([n2.record])).toEqual([]);
    await overlays[0]!.ensurePeer(n3.record);
    expect((await pingStatus(n1.instanceNs, n3.instanceAddress)).code).toBe(0);
  });

  it('a peer whose underlay address changed converges by ensurePeer alone (old FDB entry gone)', async () => {
    const moved: NodeRecord = { ...n2.record, underlayAddress: ip('198.18.0.22') };
    const movedHost: HostInfo = { ...n2.host, underlayAddress: moved.underlayAddress };
    try {
      await sh('ip', ['-n', n2.ns, '-batch', '-'], ['address flush dev u0', 'address add 198.18.0.22/24 dev u0', ''].join('\n'));
      // Node 2's daemon restarts with its new address: its device gets the new local address and MAC (the
      // kernel drops the device's neighbour entries on a MAC change), then it programs its peers.
      const restarted = overlayFor(n2, 'vxlan', movedHost);
      await restarted.ensureEndpoint(moved);
      for (const peer of [n1, n3]) await restarted.ensurePeer(peer.record);
      for (const i of [0, 2]) await overlays[i]!.ensurePeer(moved);
      const fdb = await fdbOf(n1.ns, OVERLAY_DEVICE);
      expect(fdb.map((e) => `${e.mac} ${e.dst}`).sort()).toEqual(
        [`${vtepMacForUnderlay(ip('198.18.0.22'))} 198.18.0.22`, `${vtepMacForUnderlay(ip('198.18.0.3'))} 198.18.0.3`].sort(),
      );
      const neigh = await ipJsonIn<IpJsonNeighbour[]>(n1.ns, ['neigh', 'show', '198.19.2.0', 'dev', OVERLAY_DEVICE]);
      expect(neigh[0]!.lladdr).toBe(vtepMacForUnderlay(ip('198.18.0.22')));
      await expectAllPairsPing(cluster);
    } finally {
      await sh('ip', ['-n', n2.ns, '-batch', '-'], ['address flush dev u0', 'address add 198.18.0.2/24 dev u0', ''].join('\n'));
      // The original object remembers nodes 1 and 3: repairing the MAC programs them again.
      await overlays[1]!.ensureEndpoint(n2.record);
      for (const i of [0, 2]) await overlays[i]!.ensurePeer(n2.record);
    }
    await expectAllPairsPing(cluster);
    expect((await fdbOf(n1.ns, OVERLAY_DEVICE)).map((e) => e.dst).sort()).toEqual(['198.18.0.2', '198.18.0.3']);
  });

  it('refuses a foreign nodenet-vx (no alias, or not a vxlan) and leaves it alone', async () => {
    const other = await namespaces.add('foreign');
    await sh(
      'ip',
      ['-n', other, '-batch', '-'],
      ['link add u0 type veth peer name u1', 'address add 198.18.0.1/24 dev u0', 'link set dev u0 up', ''].join('\n'),
    );
    const overlay = overlayFor({ ...n1, ns: other }, 'vxlan');
    await sh('ip', ['-n', other, 'link', 'add', OVERLAY_DEVICE, 'type', 'vxlan', 'id', '7', 'dstport', '4789', 'dev', 'u0']);
    const err = await overlay.ensureEndpoint(n1.record).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/was not made by nodenet \(its alias is unset/);
    const [kept] = await ipJsonIn<IpJsonLink[]>(other, ['-d', 'link', 'show', 'dev', OVERLAY_DEVICE]);
    expect(kept!.linkinfo.info_data.id).toBe(7);

    await sh('ip', ['-n', other, 'link', 'del', OVERLAY_DEVICE]);
    await sh('ip', ['-n', other, 'link', 'add', OVERLAY_DEVICE, 'type', 'veth', 'peer', 'name', 'x1']);
    await sh('ip', ['-n', other, 'link', 'set', 'dev', OVERLAY_DEVICE, 'alias', 'nodenet:overlay']);
    await expect(overlay.ensureEndpoint(n1.record)).rejects.toThrow(/is not a VXLAN device \(it is a veth link\)/);
  });

  it('ensurePeer without the device says to create the endpoint first', async () => {
    const bare = await namespaces.add('bare');
    const overlay = overlayFor({ ...n1, ns: bare }, 'vxlan');
    const err = await overlay.ensurePeer(n2.record).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/VXLAN device nodenet-vx does not exist/);
    await expect(overlay.removePeer(n2.record)).resolves.toBeUndefined();
  });
});

describe('host-gw', () => {
  const namespaces = new TestNamespaces();
  let cluster: TestCluster;
  let overlays: Iproute2Overlay[];
  let n1: TestNode;
  let n2: TestNode;
  let n3: TestNode;

  beforeAll(async () => {
    try {
      cluster = await buildCluster(namespaces, 3, 0);
      [n1, n2, n3] = cluster.nodes as [TestNode, TestNode, TestNode];
      overlays = cluster.nodes.map((n) => overlayFor(n, 'host-gw'));
      await programAll(cluster, overlays);
    } catch (e) {
      await namespaces.cleanup();
      throw e;
    }
  });

  afterAll(async () => {
    await namespaces.cleanup();
  });

  it('creates no device and routes each peer subnet via its underlay address (proto 78)', async () => {
    expect(
      await run('ip', ['-n', n1.ns, 'link', 'show', 'dev', OVERLAY_DEVICE], { step: 'test', okExitCodes: [1] }).then((r) => r.exitCode),
    ).toBe(1);
    const routes = await ipJsonIn<IpJsonRoute[]>(n1.ns, ['route', 'show', 'proto', '78']);
    expect(routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort()).toEqual([
      '198.19.2.0/24 via 198.18.0.2 dev u0',
      '198.19.3.0/24 via 198.18.0.3 dev u0',
    ]);
    expect((await overlays[0]!.listProgrammedPeers()).map((p) => `${p.subnet} ${p.via}`).sort()).toEqual([
      '198.19.2.0/24 198.18.0.2',
      '198.19.3.0/24 198.18.0.3',
    ]);
  });

  it('every instance pair across nodes pings', async () => {
    await expectAllPairsPing(cluster);
  });

  it('TCP works across nodes and the server sees the instance address', async () => {
    const r = await tcpExchange(n2.instanceNs, n3.instanceNs, n3.instanceAddress, 7003);
    expect(r.received).toBe(`hello from ${n2.instanceNs}\n`);
    expect(r.peer).toBe('198.19.2.2');
  });

  it('a full-size (1472 bytes payload) DF ping crosses: host-gw adds nothing', async () => {
    const r = await pingStatus(n1.instanceNs, n3.instanceAddress, ['-M', 'do', '-s', '1472']);
    expect(r.code, r.output).toBe(0);
  });

  it('ensurePeer spawns one ip process and no bridge process; ensureEndpoint one read', async () => {
    expect(await spawnedBy(() => overlays[0]!.ensurePeer(n2.record))).toEqual([`ip -n ${n1.ns} -force -batch -`]);
    expect(await spawnedBy(() => overlays[0]!.ensureEndpoint(n1.record))).toEqual([`ip -n ${n1.ns} -j -d addr show dev ${OVERLAY_DEVICE}`]);
  });

  it('removePeer makes the peer unreachable and leaves no route; tolerant; ensurePeer restores', async () => {
    await overlays[0]!.removePeer(n2.record);
    expect(await routeTo(n1.ns, '198.19.2.0/24')).toEqual([]);
    expect((await pingStatus(n1.instanceNs, n2.instanceAddress, [], 1)).code).not.toBe(0);
    await overlays[0]!.removePeer(n2.record);
    await overlays[0]!.ensurePeer(n2.record);
    expect((await pingStatus(n1.instanceNs, n2.instanceAddress)).code).toBe(0);
  });

  it('removePeer does not delete a route to the same subnet that nodenet did not make', async () => {
    const stranger: NodeRecord = { name: 'node-9', underlayAddress: ip('198.18.0.9'), subnet: Subnet.of('198.19.9.0/24') };
    await sh('ip', ['-n', n1.ns, 'route', 'add', '198.19.9.0/24', 'via', '198.18.0.9', 'dev', 'u0']);
    await overlays[0]!.removePeer(stranger);
    expect(await routeTo(n1.ns, '198.19.9.0/24')).toHaveLength(1);
    await sh('ip', ['-n', n1.ns, 'route', 'del', '198.19.9.0/24']);
  });

  it('measures ensurePeer latency and the time to the first ping', async () => {
    const m = await measure(overlays[0]!, n1, n2, 15);
    console.log(
      `[host-gw] ensurePeer median ${m.ensureMs} ms; ensurePeer return -> first ping reply median ${m.firstPingMs} ms (ping spawn baseline ${m.baselinePingMs} ms); the first ping was answered in ${m.answeredFirst} rounds`,
    );
    expect(m.ensureMs).toBeGreaterThan(0);
  });

  it('refuses a peer off the L2 segment and installs nothing for it', async () => {
    const far: NodeRecord = { name: 'node-9', underlayAddress: ip('198.18.1.9'), subnet: Subnet.of('198.19.9.0/24') };
    let err: unknown;
    const spawned = await spawnedBy(async () => {
      err = await overlays[0]!.ensurePeer(far).catch((e: unknown) => e);
    });
    expect(spawned).toEqual([]);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toBe(
      "peer node-9 at 198.18.1.9 is not on this node's L2 segment 198.18.0.0/24: host-gw needs directly reachable peers; use overlay mode vxlan",
    );
    expect(await routeTo(n1.ns, '198.19.9.0/24')).toEqual([]);
  });

  it('a peer whose underlay address changed converges by ensurePeer alone', async () => {
    const moved: NodeRecord = { ...n2.record, underlayAddress: ip('198.18.0.22') };
    const movedHost: HostInfo = { ...n2.host, underlayAddress: moved.underlayAddress };
    try {
      await sh('ip', ['-n', n2.ns, '-batch', '-'], ['address flush dev u0', 'address add 198.18.0.22/24 dev u0', ''].join('\n'));
      // Removing node 2's address took its routes via u0 with it; its daemon, restarted, programs them again.
      const restarted = overlayFor(n2, 'host-gw', movedHost);
      await restarted.ensureEndpoint(moved);
      for (const peer of [n1, n3]) await restarted.ensurePeer(peer.record);
      for (const i of [0, 2]) await overlays[i]!.ensurePeer(moved);
      const routes = await routeTo(n1.ns, '198.19.2.0/24');
      expect(routes.map((r) => r['gateway'])).toEqual(['198.18.0.22']);
      await expectAllPairsPing(cluster);
    } finally {
      await sh('ip', ['-n', n2.ns, '-batch', '-'], ['address flush dev u0', 'address add 198.18.0.2/24 dev u0', ''].join('\n'));
      for (const peer of [n1, n3]) await overlays[1]!.ensurePeer(peer.record);
      for (const i of [0, 2]) await overlays[i]!.ensurePeer(n2.record);
    }
    await expectAllPairsPing(cluster);
  });

  it('removeStalePeers removes routes of peers no longer wanted (no VXLAN device to read)', async () => {
    expect(await overlays[0]!.removeStalePeers([n3.record])).toEqual(['route 198.19.2.0/24 via 198.18.0.2 dev u0']);
    expect(await routeTo(n1.ns, '198.19.2.0/24')).toEqual([]);
    expect(await routeTo(n1.ns, '198.19.3.0/24')).toHaveLength(1);
    await overlays[0]!.ensurePeer(n2.record);
    expect((await pingStatus(n1.instanceNs, n2.instanceAddress)).code).toBe(0);
  });

  it('ensureEndpoint removes a VXLAN device left from vxlan mode, with its routes, and keeps host-gw routes', async () => {
    const vx = overlayFor(n1, 'vxlan');
    await vx.ensureEndpoint(n1.record);
    expect((await ipJsonIn(n1.ns, ['link', 'show', 'dev', OVERLAY_DEVICE])).length).toBe(1);
    await overlays[0]!.ensureEndpoint(n1.record);
    expect(
      await run('ip', ['-n', n1.ns, 'link', 'show', 'dev', OVERLAY_DEVICE], { step: 'test', okExitCodes: [1] }).then((r) => r.exitCode),
    ).toBe(1);
    await expectAllPairsPing(cluster);
  });
});
