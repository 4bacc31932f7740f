/**
 * Iproute2Dataplane against the real kernel, in-process, managing a node namespace the test makes
 * (`netns: <node>`). Every namespace is deleted afterwards, also when a test fails.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RecordedCommand } from '@nodenet/testkit/recording-sys';
import { CNI_NAME, FailedPreconditionError, Subnet, macForAddress, parseIpv4Address, parseNetnsRef, type CniSpec } from '@nodenet/core';
import { run } from '@nodenet/sys';
import { LinuxHostProbe } from '@nodenet/linux';
import { Iproute2Dataplane } from '../src/index.js';
import { TestNamespaces, ipJson, ping, sh } from './netns-fixture.js';
import { cniRecordOf, instanceSpecMaker, instanceRecordOf } from '@nodenet/testkit/instance-specs';

/** Every command the code under test started (file, args, options), in order. */
const commandsRun = vi.hoisted((): RecordedCommand[] => []);
// Pass-through spies on both runners (see recordingSys).
vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));

type Json = Record<string, unknown> & { ifname: string; mtu: number; address: string; flags: string[]; ifalias?: string; master?: string };

const UNDERLAY_MTU = 1480;
const gateway = parseIpv4Address('198.19.1.1', 'gateway');
const cniSpec: CniSpec = {
  name: CNI_NAME,
  ipv4: { gateway, subnet: Subnet.of('198.19.1.0/24') },
  mtu: UNDERLAY_MTU - 50,
  mac: macForAddress(gateway),
};
const cniRecord = cniRecordOf(cniSpec);

const instanceSpec = instanceSpecMaker(cniSpec, 0x5e000000);

const namespaces = new TestNamespaces();
let node = '';
let dp: Iproute2Dataplane;

async function link(ns: string, name: string): Promise<Json | null> {
  const out = await run(
    ns.startsWith('/') ? 'nsenter' : 'ip',
    ns.startsWith('/')
      ? [`--net=${ns}`, 'ip', '-j', '-d', 'link', 'show', 'dev', name]
      : ['-n', ns, '-j', '-d', 'link', 'show', 'dev', name],
    {
      step: 'test: read link',
      okExitCodes: [1],
    },
  );
  return out.exitCode === 0 ? (JSON.parse(out.stdout) as Json[])[0]! : null;
}

/** The IPv4 addresses (CIDR) on a link. */
async function ipv4Of(ns: string, dev: string): Promise<string[]> {
  const links = await ipJson<{ addr_info?: { family: string; local: string; prefixlen: number }[] }[]>(ns, ['addr', 'show', 'dev', dev]);
  return (links[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

/** A link's state without timers (`ip -j link show`, not -d), plus its IPv4 addresses. */
async function linkState(ns: string, dev: string): Promise<unknown> {
  return { link: (await ipJson(ns, ['link', 'show', 'dev', dev]))[0], ipv4: await ipv4Of(ns, dev) };
}

async function nodeLinkNames(): Promise<string[]> {
  return (await ipJson<Json[]>(node, ['link', 'show'])).map((l) => l.ifname);
}

async function bridgePorts(): Promise<string[]> {
  return (await ipJson<Json[]>(node, ['link', 'show', 'master', CNI_NAME])).map((l) => l.ifname);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

beforeAll(async () => {
  ({ node } = await namespaces.addNode(UNDERLAY_MTU));
  dp = new Iproute2Dataplane({ netns: node });
});

afterAll(async () => {
  await dp.close();
  await namespaces.cleanup();
});

describe('probeHost', () => {
  it('finds the underlay from the default route, its MTU, and the local networks except the CNI', async () => {
    const info = await new LinuxHostProbe({ netns: node }).probeHost();
    expect(info.underlayAddress).toBe('198.18.0.1');
    expect(info.underlayInterface).toBe('u0');
    expect(info.underlayMtu).toBe(UNDERLAY_MTU);
    const nets = info.localNetworks.map((n) => `${n.interface} ${n.subnet.toString()}`);
    expect(nets).toContain('u0 198.18.0.0/24');
    expect(nets).toContain('lo 127.0.0.0/8');
    expect(nets.some((n) => n.startsWith(`${CNI_NAME} `))).toBe(false);
  });

  it('finds the link of an explicit address, and names what to set when it is not on the node', async () => {
    const probe = new LinuxHostProbe({ netns: node });
    expect((await probe.probeHost(parseIpv4Address('198.18.0.1', 'u'))).underlayInterface).toBe('u0');
    await expect(probe.probeHost(parseIpv4Address('198.18.0.9', 'u'))).rejects.toThrow(FailedPreconditionError);
    await expect(probe.probeHost(parseIpv4Address('198.18.0.9', 'u'))).rejects.toThrow(/underlayAddress.*--underlay-address/);
  });

  it('without a default route asks for underlayAddress / --underlay-address', async () => {
    const bare = await namespaces.add('bare');
    const err = await new LinuxHostProbe({ netns: bare }).probeHost().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/no IPv4 default route.*`underlayAddress` in the config or pass --underlay-address/);
  });
});

describe('ensureCni', () => {
  it('creates the bridge with address, MAC, MTU, owner alias, up; forwarding, route_localnet and no IPv6 on it', async () => {
    await dp.ensureCni(cniSpec);
    const bridge = await link(node, CNI_NAME);
    expect(bridge).not.toBeNull();
    expect((bridge!['linkinfo'] as { info_kind: string }).info_kind).toBe('bridge');
    expect(bridge!.address).toBe(cniSpec.mac);
    expect(bridge!.mtu).toBe(cniSpec.mtu);
    expect(bridge!.ifalias).toBe('nodenet:cni');
    expect(bridge!.flags).toContain('UP');
    expect(await ipv4Of(node, CNI_NAME)).toEqual(['198.19.1.1/24']);
    const sysctls = await sh('ip', [
      'netns',
      'exec',
      node,
      'sysctl',
      '-n',
      'net.ipv4.ip_forward',
      `net.ipv4.conf.${CNI_NAME}.route_localnet`,
      `net.ipv6.conf.${CNI_NAME}.disable_ipv6`,
    ]);
    expect(sysctls.trim().split('\n')).toEqual(['1', '1', '1']);
  });

  it('a second call changes nothing (same link, same state)', async () => {
    const before = await linkState(node, CNI_NAME);
    const runs = commandsRun.length;
    await dp.ensureCni(cniSpec);
    const spawned = commandsRun.slice(runs).map((c) => [c[0], ...c[1]].join(' '));
    // One read and the sysctl; no batch.
    expect(spawned.filter((c) => / addr show dev nodenet0$/.test(c))).toHaveLength(1);
    expect(spawned.some((c) => c.includes('-batch'))).toBe(false);
    expect(await linkState(node, CNI_NAME)).toEqual(before);
  });

  it('repairs a deleted address, a wrong MTU and a down bridge in place (same ifindex)', async () => {
    const before = await link(node, CNI_NAME);
    await sh('ip', ['-n', node, '-batch', '-'], `address flush dev ${CNI_NAME}\nlink set dev ${CNI_NAME} mtu 1300 down\n`);
    await dp.ensureCni(cniSpec);
    const after = await link(node, CNI_NAME);
    expect(after!['ifindex']).toBe(before!['ifindex']);
    expect(after!.mtu).toBe(cniSpec.mtu);
    expect(after!.flags).toContain('UP');
    expect(await ipv4Of(node, CNI_NAME)).toEqual(['198.19.1.1/24']);
  });

  it("refuses a foreign nodenet0: a bridge without nodenet's alias, or a veth", async () => {
    const other = await namespaces.add('foreign');
    const foreign = new Iproute2Dataplane({ netns: other });
    await sh('ip', ['-n', other, 'link', 'add', CNI_NAME, 'type', 'bridge']);
    await expect(foreign.ensureCni(cniSpec)).rejects.toThrow(FailedPreconditionError);
    await expect(foreign.ensureCni(cniSpec)).rejects.toThrow(/not made by nodenet/);
    // Nothing was changed on it, and deleteCni leaves it alone.
    expect(await ipv4Of(other, CNI_NAME)).toEqual([]);
    expect((await link(other, CNI_NAME))!.ifalias).toBeUndefined();
    await foreign.deleteCni(CNI_NAME);
    expect(await link(other, CNI_NAME)).not.toBeNull();

    await sh('ip', ['-n', other, 'link', 'del', CNI_NAME]);
    await sh('ip', ['-n', other, 'link', 'add', CNI_NAME, 'type', 'veth', 'peer', 'name', 'x0']);
    await expect(foreign.ensureCni(cniSpec)).rejects.toThrow(/is not a bridge \(it is a veth link\)/);
  });

  it("deleteCni removes nodenet's bridge and tolerates its absence", async () => {
    const other = await namespaces.add('delcni');
    const dp2 = new Iproute2Dataplane({ netns: other });
    await dp2.ensureCni(cniSpec);
    expect(await link(other, CNI_NAME)).not.toBeNull();
    await dp2.deleteCni(CNI_NAME);
    expect(await link(other, CNI_NAME)).toBeNull();
    await dp2.deleteCni(CNI_NAME);
  });
});

describe('instances', () => {
  it('two instances in their own namespaces (by name and by /proc/PID/ns/net) talk to each other and the gateway', async () => {
    const named = await namespaces.add('pod-a');
    const sleeper = await namespaces.addSleeper();
    const a = instanceSpec(10, { netns: named });
    const b = instanceSpec(11, { netns: sleeper.path, ifname: 'net1' });

    // The daemon's first reconcile pass lists the links, which also tells the dataplane which bridge each
    // instance port is on (without it, the first create reads the links once; see BridgePlacement).
    await dp.listOwnedLinks();
    const runs = commandsRun.length;
    await dp.createInstance(a);
    const spawned = commandsRun.slice(runs).map((c) => [c[0], ...c[1]]);
    // No process at all: the node side goes through the long-lived ip session, the instance's namespace
    // through the long-lived namespace configurator (netlink from inside the namespace).
    expect(spawned.map((c) => c.join(' '))).toEqual([]);

    await dp.createInstance(b);

    for (const [ns, spec, ifname] of [
      [named, a, 'eth0'],
      [sleeper.path, b, 'net1'],
    ] as const) {
      const l = await link(ns, ifname);
      expect(l, `${ifname} in ${ns}`).not.toBeNull();
      expect(l!.mtu).toBe(cniSpec.mtu);
      expect(l!.address).toBe(spec.mac);
      expect(l!.flags).toContain('UP');
      expect((await link(ns, 'lo'))!.flags).toContain('UP');
      expect(await ipv4Of(ns, ifname)).toEqual([`${spec.address}/24`]);
      const routes = await ipJson<{ dst: string; gateway?: string; dev: string }[]>(ns, ['route', 'show', 'default']);
      expect(routes).toEqual([expect.objectContaining({ dst: 'default', gateway: '198.19.1.1', dev: ifname })]);
      const host = await link(node, spec.hostIfname);
      expect(host!.master).toBe(CNI_NAME);
      expect(host!.ifalias).toBe(`nodenet:${spec.handle}`);
      expect(host!.mtu).toBe(cniSpec.mtu);
      // The instance end never appeared in the node namespace.
      expect(await link(node, spec.handle)).toBeNull();
    }

    expect(await ping(named, '198.19.1.1')).toBe(0);
    expect(await ping(sleeper.path, '198.19.1.1')).toBe(0);
    expect(await ping(named, b.address)).toBe(0);
    expect(await ping(sleeper.path, a.address)).toBe(0);
    // The bridge keeps its own MAC and MTU with ports attached.
    const bridge = await link(node, CNI_NAME);
    expect(bridge!.address).toBe(cniSpec.mac);
    expect(bridge!.mtu).toBe(cniSpec.mtu);

    await dp.deleteInstance(instanceRecordOf(a), cniRecord);
    await dp.deleteInstance(instanceRecordOf(b), cniRecord);
    expect(await link(named, 'eth0')).toBeNull();
    expect(await link(sleeper.path, 'net1')).toBeNull();
  });

  it('a veth without netns stays in the node namespace: host end on the bridge, instance end down with its MAC', async () => {
    const spec = instanceSpec(20);
    await dp.createInstance(spec);
    const host = await link(node, spec.hostIfname);
    const inst = await link(node, spec.handle);
    expect(host!.master).toBe(CNI_NAME);
    expect(host!.ifalias).toBe(`nodenet:${spec.handle}`);
    expect(host!.flags).toContain('UP');
    expect(host!['inet6_addr_gen_mode']).toBe('none');
    expect((host!['linkinfo'] as { info_slave_data: { hairpin: boolean } }).info_slave_data.hairpin).toBe(true);
    expect(inst!.address).toBe(spec.mac);
    expect(inst!.mtu).toBe(cniSpec.mtu);
    expect(inst!.flags).not.toContain('UP');
    expect(inst!.master).toBeUndefined();

    // The runtime can take it from here: move it into a namespace and use it.
    const pod = await namespaces.add('moved');
    await sh('ip', ['-n', node, 'link', 'set', 'dev', spec.handle, 'netns', `/run/netns/${pod}`]);
    await sh('ip', ['-n', pod, '-batch', '-'], `address add ${spec.address}/24 dev ${spec.handle}\nlink set dev ${spec.handle} up\n`);
    expect(await ping(pod, '198.19.1.1')).toBe(0);

    await dp.deleteInstance(instanceRecordOf(spec), cniRecord);
    expect(await link(node, spec.hostIfname)).toBeNull();
    expect(await link(pod, spec.handle)).toBeNull();
  });

  it('a TAP is a bridge port with the owner alias and the MTU', async () => {
    const spec = instanceSpec(21, { kind: 'tap' });
    await dp.createInstance(spec);
    const tap = await link(node, spec.handle);
    expect((tap!['linkinfo'] as { info_kind: string; info_data: { type: string } }).info_data.type).toBe('tap');
    expect(tap!.master).toBe(CNI_NAME);
    expect(tap!.ifalias).toBe(`nodenet:${spec.handle}`);
    expect(tap!.mtu).toBe(cniSpec.mtu);
    expect(tap!.address).not.toBe(spec.mac);
    expect((tap!['linkinfo'] as { info_slave_data: { hairpin: boolean } }).info_slave_data.hairpin).toBe(true);
    expect(tap!['inet6_addr_gen_mode']).toBe('none');
    expect(await bridgePorts()).toContain(spec.handle);
    await dp.deleteInstance(instanceRecordOf(spec), cniRecord);
    expect(await link(node, spec.handle)).toBeNull();
  });

  it('delete removes both ends and the neighbour entry, is idempotent, and the bridge keeps its MTU with no port left', async () => {
    const pod = await namespaces.add('del');
    const spec = instanceSpec(22, { netns: pod });
    await dp.createInstance(spec);
    expect(await ping(node, spec.address)).toBe(0);
    const neigh = await ipJson<{ dst: string }[]>(node, ['neigh', 'show', 'dev', CNI_NAME]);
    expect(neigh.map((n) => n.dst)).toContain(spec.address);

    await dp.deleteInstance(instanceRecordOf(spec), cniRecord);
    expect(await link(node, spec.hostIfname)).toBeNull();
    expect(await link(pod, 'eth0')).toBeNull();
    const after = await ipJson<{ dst: string }[]>(node, ['neigh', 'show', 'dev', CNI_NAME]);
    expect(after.map((n) => n.dst)).not.toContain(spec.address);

    await dp.deleteInstance(instanceRecordOf(spec), cniRecord);
    const tap = instanceSpec(23, { kind: 'tap' });
    await dp.deleteInstance(instanceRecordOf(tap), cniRecord);
    expect(await bridgePorts()).toEqual([]);
    expect((await link(node, CNI_NAME))!.mtu).toBe(cniSpec.mtu);
  });

  it('without the CNI a create is FAILED_PRECONDITION and leaves nothing', async () => {
    const other = await namespaces.add('nocni');
    const dp2 = new Iproute2Dataplane({ netns: other });
    const err = await dp2.createInstance(instanceSpec(32)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(/CNI bridge nodenet0 does not exist/);
    expect((await ipJson<Json[]>(other, ['link', 'show'])).map((l) => l.ifname)).toEqual(['lo']);
    // The same into a namespace (the namespace configurator makes the pair): nothing there either.
    const pod = await namespaces.add('nocni-pod');
    const inPod = await dp2.createInstance(instanceSpec(33, { netns: pod })).catch((e: unknown) => e);
    expect(inPod).toBeInstanceOf(FailedPreconditionError);
    expect((inPod as Error).message).toMatch(/CNI bridge nodenet0 does not exist/);
    expect((await ipJson<Json[]>(pod, ['link', 'show'])).map((l) => l.ifname)).toEqual(['lo']);
    // Deleting is tolerant of a missing link and a missing CNI alike.
    await dp2.deleteInstance(instanceRecordOf(instanceSpec(32)), cniRecord);
    await dp2.close();
  });

  it('a CNI bridge recreated behind its back (not through ensureCni) does not fail the next create', async () => {
    const other = await namespaces.add('recni');
    const dp2 = new Iproute2Dataplane({ netns: other });
    try {
      await dp2.ensureCni(cniSpec);
      await dp2.createInstance(instanceSpec(34)); // the create session now knows nodenet0's index
      await sh('ip', ['-n', other, '-batch', '-'], `link del ${CNI_NAME}\nlink add nnt-filler type bridge\n`);
      await dp2.ensureCni(cniSpec); // through ensureCni: the sessions are reset
      await dp2.createInstance(instanceSpec(35));
      // Behind its back: the sessions still hold the index of the bridge made just now.
      await sh('ip', ['-n', other, '-batch', '-'], `link del ${CNI_NAME}\nlink add nnt-filler2 type bridge\n`);
      await sh('ip', ['-n', other, 'link', 'add', CNI_NAME, 'type', 'bridge']);
      const last = instanceSpec(36);
      await dp2.createInstance(last);
      // And into a namespace (the configurator names the bridge by name on every request).
      await sh(
        'ip',
        ['-n', other, '-batch', '-'],
        `link del ${CNI_NAME}\nlink add nnt-filler3 type bridge\nlink add ${CNI_NAME} type bridge\n`,
      );
      const pod = await namespaces.add('recni-pod');
      const inPod = instanceSpec(38, { netns: pod });
      await dp2.createInstance(inPod);
      const ports = (await ipJson<Json[]>(other, ['link', 'show', 'master', CNI_NAME])).map((l) => l.ifname);
      expect(ports).toEqual([inPod.hostIfname]);
      expect((await ipJson<Json[]>(pod, ['link', 'show'])).map((l) => l.ifname)).toEqual(['lo', 'eth0']);
    } finally {
      await dp2.close();
    }
  });

  it('concurrent deletes share one link-group deletion, and each removes its own pair only', async () => {
    const specs = Array.from({ length: 12 }, (_, i) => instanceSpec(70 + i));
    await Promise.all(specs.map((sp) => dp.createInstance(sp)));
    const keep = instanceSpec(90);
    await dp.createInstance(keep);
    const runs = commandsRun.length;
    await Promise.all(specs.map((sp) => dp.deleteInstance(instanceRecordOf(sp), cniRecord)));
    const spawned = commandsRun.slice(runs).map((c) => [c[0], ...c[1]].join(' '));
    // One listing (to find an unused link group) per group of deletes that queued up; the deletes themselves
    // go through the delete session.
    expect(spawned.length).toBeLessThanOrEqual(2);
    for (const c of spawned) expect(c).toMatch(/-j link show$/);
    const left = await nodeLinkNames();
    for (const sp of specs) {
      expect(left).not.toContain(sp.hostIfname);
      expect(left).not.toContain(sp.handle);
    }
    expect(left).toContain(keep.hostIfname);
    await dp.deleteInstance(instanceRecordOf(keep), cniRecord);
    expect(await nodeLinkNames()).not.toContain(keep.hostIfname);
  });

  it('a full bridge (1,023 ports, the kernel maximum) refuses the next create with FAILED_PRECONDITION and leaves nothing', async () => {
    const other = await namespaces.add('full');
    const dp2 = new Iproute2Dataplane({ netns: other });
    try {
      await dp2.ensureCni(cniSpec);
      const fill = Array.from(
        { length: 1023 },
        (_, i) => `tuntap add dev nnt-f${i} mode tap\nlink set dev nnt-f${i} master ${CNI_NAME}\n`,
      ).join('');
      await sh('ip', ['-n', other, '-batch', '-'], fill);
      const before = (await ipJson<Json[]>(other, ['link', 'show'])).length;
      const spec = instanceSpec(37);
      const err = await dp2.createInstance(spec).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect((err as Error).message).toMatch(/most ports a Linux bridge can hold \(1,023\): delete an interface first/);
      expect((await ipJson<Json[]>(other, ['link', 'show'])).length).toBe(before);
      // The same into a namespace (the namespace configurator makes the pair).
      const pod = await namespaces.add('full-pod');
      const inPod = await dp2.createInstance(instanceSpec(39, { netns: pod })).catch((e: unknown) => e);
      expect(inPod).toBeInstanceOf(FailedPreconditionError);
      expect((inPod as Error).message).toMatch(/most ports a Linux bridge can hold \(1,023\)/);
      expect((await ipJson<Json[]>(other, ['link', 'show'])).length).toBe(before);
      expect((await ipJson<Json[]>(pod, ['link', 'show'])).map((l) => l.ifname)).toEqual(['lo']);
    } finally {
      await dp2.close();
    }
  });

  it('refuses a TAP in a namespace without running anything', async () => {
    const runs = commandsRun.length;
    const spec = { ...instanceSpec(33, { kind: 'tap' }), netns: parseNetnsRef('pod', 'netns') };
    await expect(dp.createInstance(spec)).rejects.toThrow(/leave netns out for kind TAP/);
    expect(commandsRun.length).toBe(runs);
  });

  it('40 parallel creates (veth into 40 namespaces) all succeed and all are bridge ports', async () => {
    const pods = await namespaces.addMany(40, 'par');
    const specs = pods.map((pod, i) => instanceSpec(100 + i, { netns: pod }));
    const results = await Promise.allSettled(specs.map((s) => dp.createInstance(s)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect((await bridgePorts()).sort()).toEqual(specs.map((s) => s.hostIfname).sort());
    expect(await ping(pods[0]!, specs[39]!.address)).toBe(0);
    await Promise.all(specs.map((s) => dp.deleteInstance(instanceRecordOf(s), cniRecord)));
    expect(await bridgePorts()).toEqual([]);
  });
});

describe('latency (reported, not asserted)', () => {
  it('measures createInstance (veth + netns) and deleteInstance over 50 instances', async () => {
    const pods = await namespaces.addMany(50, 'lat');
    const specs = pods.map((pod, i) => instanceSpec(150 + i, { netns: pod }));
    const create: number[] = [];
    const remove: number[] = [];
    for (const s of specs) {
      const t = performance.now();
      await dp.createInstance(s);
      create.push(performance.now() - t);
    }
    for (const s of specs) {
      const t = performance.now();
      await dp.deleteInstance(instanceRecordOf(s), cniRecord);
      remove.push(performance.now() - t);
    }
    const plain: number[] = [];
    const plainSpecs = Array.from({ length: 50 }, (_, i) => instanceSpec(150 + i));
    for (const s of plainSpecs) {
      const t = performance.now();
      await dp.createInstance(s);
      plain.push(performance.now() - t);
    }
    await Promise.all(plainSpecs.map((s) => dp.deleteInstance(instanceRecordOf(s), cniRecord)));
    const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms, p90 ${percentile(xs, 90).toFixed(1)} ms`;
    console.log(`[iproute2] createInstance veth+netns (n=50): ${fmt(create)}`);
    console.log(`[iproute2] deleteInstance veth+netns (n=50): ${fmt(remove)}`);
    console.log(`[iproute2] createInstance veth, no netns (n=50): ${fmt(plain)}`);
    expect(create).toHaveLength(50);
    expect(await bridgePorts()).toEqual([]);
  });
});

describe('the namespace configurator', () => {
  it('a namespace that already has a default route: FAILED_PRECONDITION naming it, and nothing is left behind', async () => {
    const pod = await namespaces.add('hasroute');
    await sh(
      'ip',
      ['-n', pod, '-batch', '-'],
      'link add d0 type veth peer name d1\naddress add 10.99.0.2/24 dev d0\nlink set d0 up\nlink set d1 up\nroute add default via 10.99.0.1\n',
    );
    const nodeBefore = await nodeLinkNames();
    const podBefore = (await ipJson<Json[]>(pod, ['link', 'show'])).map((l) => l.ifname);
    const err = await dp.createInstance(instanceSpec(38, { netns: pod })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toMatch(new RegExp(`network namespace ${pod} already has a default route`));
    expect(await nodeLinkNames()).toEqual(nodeBefore);
    expect((await ipJson<Json[]>(pod, ['link', 'show'])).map((l) => l.ifname)).toEqual(podBefore);
  });

  it('where the helper cannot run (no such program), creates fall back to nsenter + ip and still work', async () => {
    const other = await namespaces.add('nohelper');
    const pod = await namespaces.add('nohelper-pod');
    const warnings: unknown[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (obj: unknown) => warnings.push(obj) };
    const dp2 = new Iproute2Dataplane({ netns: other, logger, netnsHelper: ['nodenet-no-such-helper'] });
    try {
      await dp2.ensureCni(cniSpec);
      const a = instanceSpec(39, { netns: pod });
      await dp2.createInstance(a);
      expect(await ipv4Of(pod, 'eth0')).toEqual([`${a.address}/24`]);
      expect(warnings).toEqual([expect.objectContaining({ reason: expect.stringMatching(/nodenet-no-such-helper/) as unknown })]);
      // The next create goes to ip directly (one nsenter process), without asking the helper again.
      const pod2 = await namespaces.add('nohelper-pod2');
      const runs = commandsRun.length;
      await dp2.createInstance(instanceSpec(40, { netns: pod2 }));
      expect(commandsRun.slice(runs).map((c) => [c[0], ...c[1]].join(' '))).toEqual([`nsenter --net=/run/netns/${pod2} -- ip -batch -`]);
      expect(warnings).toHaveLength(1);
    } finally {
      await dp2.close();
    }
  });
});
