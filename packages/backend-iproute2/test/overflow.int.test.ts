/**
 * The CNI's overflow bridges against the real kernel: with `portsPerBridge: 2` a handful of instances spans
 * three bridges, so the behaviour past 1,000 instances per bridge is tested without making thousands.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CNI_NAME, Subnet, macForAddress, parseIfName, parseIpv4Address, type CniSpec, type InstanceSpec } from '@nodenet/core';
import { Iproute2Dataplane, OVERFLOW_BRIDGE_ALIAS, OVERFLOW_LINK_ALIAS } from '../src/index.js';
import { TestNamespaces, ipJson, ping, sh } from './netns-fixture.js';
import { cniRecordOf, instanceSpecMaker, instanceRecordOf } from '@nodenet/testkit/instance-specs';

interface Link {
  ifname: string;
  mtu: number;
  flags: string[];
  master?: string;
  ifalias?: string;
  linkinfo?: { info_slave_data?: { hairpin?: boolean } };
}

const gateway = parseIpv4Address('198.19.4.1', 'gateway');
const cniSpec: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.4.0/24') }, mtu: 1400, mac: macForAddress(gateway) };
const cniRecord = cniRecordOf(cniSpec);

const instanceSpec = instanceSpecMaker(cniSpec, 0x0b000000);

const namespaces = new TestNamespaces();
const dataplanes: Iproute2Dataplane[] = [];

function dataplane(node: string): Iproute2Dataplane {
  const dp = new Iproute2Dataplane({ netns: node, portsPerBridge: 2 });
  dataplanes.push(dp);
  return dp;
}

async function links(ns: string): Promise<Map<string, Link>> {
  return new Map((await ipJson<Link[]>(ns, ['-d', 'link', 'show'])).map((l) => [l.ifname, l]));
}

/** Instance ports by bridge: `{ nodenet0: [...], nodenet0b1: [...] }`. */
async function portsByBridge(ns: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const l of (await links(ns)).values()) {
    if (l.master !== undefined && /^nn[hi]-/.test(l.ifname)) (out[l.master] ??= []).push(l.ifname);
  }
  for (const v of Object.values(out)) v.sort();
  return out;
}

afterAll(async () => {
  for (const dp of dataplanes) await dp.close();
  await namespaces.cleanup();
});

describe('overflow bridges', () => {
  let node = '';
  let dp: Iproute2Dataplane;
  const specs: InstanceSpec[] = [];
  const pods: string[] = [];

  beforeAll(async () => {
    node = await namespaces.add('ovf-node');
    dp = dataplane(node);
    await dp.ensureCni(cniSpec);
  });

  it('past portsPerBridge ports per bridge, instances go on overflow bridges joined to the CNI: one segment for traffic', async () => {
    pods.push(...(await namespaces.addMany(5, 'ovf-pod')));
    specs.push(...pods.map((pod, i) => instanceSpec(10 + i, { netns: pod })), instanceSpec(20, { kind: 'tap' }));
    // All at once: placement is decided without waiting on the kernel, and the overflow bridge is made once.
    const results = await Promise.allSettled(specs.map((s) => dp.createInstance(s)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);

    const byBridge = await portsByBridge(node);
    expect(Object.keys(byBridge).sort()).toEqual([CNI_NAME, `${CNI_NAME}b1`, `${CNI_NAME}b2`]);
    for (const ports of Object.values(byBridge)) expect(ports).toHaveLength(2);
    expect(Object.values(byBridge).flat().sort()).toEqual(specs.map((s) => s.hostIfname).sort());

    const all = await links(node);
    for (const k of [1, 2]) {
      const bridge = all.get(`${CNI_NAME}b${k}`)!;
      expect(bridge.ifalias).toBe(OVERFLOW_BRIDGE_ALIAS);
      expect(bridge.mtu).toBe(cniSpec.mtu);
      expect(bridge.flags).toContain('UP');
      const up = all.get(`${CNI_NAME}b${k}-up`)!;
      const down = all.get(`${CNI_NAME}b${k}-dn`)!;
      expect([up.master, down.master]).toEqual([CNI_NAME, `${CNI_NAME}b${k}`]);
      for (const end of [up, down]) {
        expect(end.ifalias).toBe(OVERFLOW_LINK_ALIAS);
        expect(end.mtu).toBe(cniSpec.mtu);
        expect(end.flags).toContain('UP');
      }
    }
    // Ports on overflow bridges get the same port settings as on the CNI bridge.
    for (const s of specs) expect(all.get(s.hostIfname)!.linkinfo?.info_slave_data?.hairpin, s.hostIfname).toBe(true);

    // Every instance reaches the gateway and the others, whichever bridges they are on.
    const bridgeOf = (s: InstanceSpec) => Object.entries(byBridge).find(([, ports]) => ports.includes(s.hostIfname))![0];
    const veths = specs.filter((s) => s.netns !== undefined);
    const onLast = veths.find((s) => bridgeOf(s) === `${CNI_NAME}b2`)!;
    const onFirst = veths.find((s) => bridgeOf(s) === CNI_NAME)!;
    const onMiddle = veths.find((s) => bridgeOf(s) === `${CNI_NAME}b1`)!;
    for (const s of veths) expect(await ping(s.netns!, '198.19.4.1'), `${s.hostIfname} on ${bridgeOf(s)} to the gateway`).toBe(0);
    expect(await ping(onLast.netns!, onFirst.address)).toBe(0);
    expect(await ping(onLast.netns!, onMiddle.address)).toBe(0);
    expect(await ping(onFirst.netns!, onMiddle.address)).toBe(0);
  });

  it('to core the overflow bridges are part of the CNI: not listed, their ports shown on the CNI', async () => {
    const owned = await dp.listOwnedLinks();
    // The CNI bridge itself is listed as ever (core tells it by name); no overflow bridge or pair end is.
    expect(owned.map((l) => `${l.name} ${l.ownerTag}`).sort()).toEqual(
      [`${CNI_NAME} nodenet:cni`, ...specs.map((s) => `${s.hostIfname} nodenet:${s.handle}`)].sort(),
    );
    expect(new Set(owned.filter((l) => l.name !== CNI_NAME).map((l) => l.master))).toEqual(new Set([CNI_NAME]));
    // The bridges and pairs carry nodenet's prefix but are nobody's orphan: a CNI check finds nothing to repair.
    expect(await dp.ensureCni(cniSpec)).toEqual([]);
  });

  it('a deleted port frees room that the next create fills on the lowest bridge with room', async () => {
    const onCni = (await portsByBridge(node))[CNI_NAME]!;
    const gone = specs.find((s) => s.hostIfname === onCni[0])!;
    await dp.deleteInstance(instanceRecordOf(gone), cniRecord);
    specs.splice(specs.indexOf(gone), 1);
    const next = instanceSpec(30, { kind: 'tap' });
    await dp.createInstance(next);
    specs.push(next);
    expect((await portsByBridge(node))[CNI_NAME]).toContain(next.hostIfname);
    // Both bridges are full again: the next one goes to a new one.
    const more = instanceSpec(31, { kind: 'tap' });
    await dp.createInstance(more);
    specs.push(more);
    expect((await portsByBridge(node))[`${CNI_NAME}b3`]).toEqual([more.hostIfname]);
  });

  it('a restarted daemon places by what the kernel shows: from its first listing, or one read by the first create', async () => {
    for (const listFirst of [true, false]) {
      const again = dataplane(node);
      if (listFirst) await again.listOwnedLinks();
      const spec = instanceSpec(listFirst ? 40 : 41, { kind: 'tap' });
      await again.createInstance(spec);
      specs.push(spec);
      // Bridges 0-2 hold 2 each, b3 held 1: the new port fills b3, the next opens b4.
      expect((await portsByBridge(node))[listFirst ? `${CNI_NAME}b3` : `${CNI_NAME}b4`]).toContain(spec.hostIfname);
    }
  });

  it('repairs: a pair deleted is made again, an overflow bridge deleted is made again for its detached ports, the CNI bridge made again takes the pairs back', async () => {
    const byBridge = await portsByBridge(node);
    const onB1 = specs.find((s) => s.netns !== undefined && byBridge[`${CNI_NAME}b1`]!.includes(s.hostIfname))!;
    expect(await ping(onB1.netns!, '198.19.4.1')).toBe(0);

    await sh('ip', ['-n', node, 'link', 'del', `${CNI_NAME}b1-up`]);
    expect(await ping(onB1.netns!, '198.19.4.1')).not.toBe(0);
    expect(await dp.ensureCni(cniSpec)).toEqual([`the pair joining ${CNI_NAME}b1 to ${CNI_NAME} was missing: made again`]);
    expect(await ping(onB1.netns!, '198.19.4.1')).toBe(0);

    await sh('ip', ['-n', node, 'link', 'del', `${CNI_NAME}b1`]);
    const detached = (await dp.listOwnedLinks())
      .filter((l) => l.master === '' && l.name !== CNI_NAME)
      .map((l) => l.name)
      .sort();
    expect(detached).toEqual(byBridge[`${CNI_NAME}b1`]);
    // What core's reconcile does with a detached port; the first attach makes the bridge (and its pair) again.
    for (const name of detached) await dp.attachToCni(parseIfName(name, 'port'), cniSpec);
    expect((await portsByBridge(node))[`${CNI_NAME}b1`]).toEqual(byBridge[`${CNI_NAME}b1`]);
    expect(await ping(onB1.netns!, '198.19.4.1')).toBe(0);

    await sh('ip', ['-n', node, 'link', 'del', CNI_NAME]);
    const repairs = await dp.ensureCni(cniSpec);
    expect(repairs).toContain(`${CNI_NAME} was missing: created`);
    expect(repairs).toContain(`${CNI_NAME}b1-up was not a port of ${CNI_NAME}: attached again`);
    expect(await ping(onB1.netns!, '198.19.4.1')).toBe(0);
  });

  it('deleting the CNI deletes its overflow bridges and their pairs', async () => {
    await Promise.all(specs.map((s) => dp.deleteInstance(instanceRecordOf(s), cniRecord)));
    await dp.deleteCni(CNI_NAME);
    expect([...(await links(node)).keys()]).toEqual(['lo']);
  });
});

describe('overflow bridge names', () => {
  it('a foreign link holding an overflow bridge name is not taken over: FAILED_PRECONDITION naming it, nothing changed', async () => {
    const node = await namespaces.add('ovf-foreign');
    const dp = dataplane(node);
    await dp.ensureCni(cniSpec);
    await sh('ip', ['-n', node, 'link', 'add', `${CNI_NAME}b1`, 'type', 'bridge']);
    await dp.createInstance(instanceSpec(50, { kind: 'tap' }));
    await dp.createInstance(instanceSpec(51, { kind: 'tap' }));
    const before = [...(await links(node)).keys()].sort();
    await expect(dp.createInstance(instanceSpec(52, { kind: 'tap' }))).rejects.toThrow(
      new RegExp(`a link named ${CNI_NAME}b1 already exists on this node and is not nodenet's .*remove or rename that link`),
    );
    expect([...(await links(node)).keys()].sort()).toEqual(before);
  });
});
