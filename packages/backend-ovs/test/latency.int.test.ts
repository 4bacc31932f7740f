/**
 * Create and delete latency of OvsDataplane in-process (private OVS, userspace datapath), reported and
 * not asserted (machines are noisy): sequential creates with the netns extension and without, sequential
 * and concurrent deletes, where a create's time goes (the `doneAtMs` of its debug line) and the processes
 * each create starts. What is asserted is what a create and a delete do, not how fast.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RecordedCommand } from '@nodenet/testkit/recording-sys';
import type { InstanceSpec, Logger } from '@nodenet/core';
import { PrivateOvs, TestScope, Topology, ipv4AddressesOf, link } from '@nodenet/testkit';
import { OvsDataplane } from '../src/index.js';
import { cniRecordOf, cniSpecFor, instanceSpec } from './fixture.js';
import { instanceRecordOf } from '@nodenet/testkit/instance-specs';

/** Every command the code under test started (file, args, options), through either runner, in order. */
const commandsRun = vi.hoisted((): RecordedCommand[] => []);
// Pass-through spies on both runners (see recordingSys).
vi.mock('@nodenet/sys', async (original) => (await import('@nodenet/testkit/recording-sys')).recordingSys(original, commandsRun));

/** The `doneAtMs` of each 'instance interface created' debug line. */
const createdParts: Record<string, number>[] = [];
const capturing: Logger = {
  debug(obj, msg) {
    if (msg === 'instance interface created') createdParts.push((obj as { doneAtMs: Record<string, number> }).doneAtMs);
  },
  info() {},
  warn() {},
  error() {},
};

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}
const fmt = (xs: readonly number[]) => `median ${median(xs).toFixed(1)} ms, p90 ${percentile(xs, 90).toFixed(1)} ms`;
/** Median of each part's completion time over the captured creates. */
function parts(captured: readonly Record<string, number>[]): string {
  const keys = [...new Set(captured.flatMap((c) => Object.keys(c)))];
  return keys.map((k) => `${k} ${median(captured.flatMap((c) => (c[k] === undefined ? [] : [c[k]]))).toFixed(1)}`).join(', ');
}

describe('OvsDataplane latency (reported, not asserted)', () => {
  const N = 30;
  let scope: TestScope;
  let topology: Topology;
  let dataplane: OvsDataplane;
  const cni = cniSpecFor(5);
  const cniRecord = cniRecordOf(cni);

  beforeAll(async () => {
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 1 });
    const host = topology.node(1);
    const ovs = await PrivateOvs.start(scope, host.ns);
    dataplane = new OvsDataplane({ ...ovs.config, netns: host.ns, logger: capturing });
    scope.defer('close the dataplane', () => dataplane.close());
    await dataplane.ensureCni(cni);
  });
  afterAll(() => scope?.cleanup());

  it(`measures ${N} sequential creates (veth + netns) and deletes, and ${N} plain creates deleted at once`, async () => {
    const namespaces = await Promise.all(Array.from({ length: N }, () => topology.createInstanceNamespace()));
    const specs = namespaces.map((ns, i) => instanceSpec(cni, 100 + i, { netns: ns, ifname: 'eth0' }));
    const create: number[] = [];
    const remove: number[] = [];
    const spawned: number[] = [];
    createdParts.length = 0;
    for (const s of specs) {
      const before = commandsRun.length;
      const t = performance.now();
      await dataplane.createInstance(s);
      create.push(performance.now() - t);
      spawned.push(commandsRun.length - before);
    }
    const netnsParts = parts(createdParts);
    expect(await ipv4AddressesOf(specs[0]!.netns!, 'eth0')).toEqual([`${specs[0]!.address}/24`]);
    for (const s of specs) {
      const t = performance.now();
      await dataplane.deleteInstance(instanceRecordOf(s), cniRecord);
      remove.push(performance.now() - t);
    }
    for (const s of specs) expect(await link(topology.node(1).ns, s.hostIfname)).toBeUndefined();

    const plainSpecs: InstanceSpec[] = Array.from({ length: N }, (_, i) => instanceSpec(cni, 150 + i));
    const plain: number[] = [];
    createdParts.length = 0;
    for (const s of plainSpecs) {
      const t = performance.now();
      await dataplane.createInstance(s);
      plain.push(performance.now() - t);
    }
    const plainParts = parts(createdParts);
    const t = performance.now();
    await Promise.all(plainSpecs.map((s) => dataplane.deleteInstance(instanceRecordOf(s), cniRecord)));
    const together = performance.now() - t;
    for (const s of plainSpecs) expect(await link(topology.node(1).ns, s.hostIfname)).toBeUndefined();

    console.log(
      `[ovs] createInstance veth+netns (n=${N}): ${fmt(create)}; parts done at (median ms): ${netnsParts}; processes per create: median ${median(spawned)}`,
    );
    console.log(`[ovs] deleteInstance veth+netns, one at a time (n=${N}): ${fmt(remove)}`);
    console.log(`[ovs] createInstance veth, no netns (n=${N}): ${fmt(plain)}; parts done at (median ms): ${plainParts}`);
    console.log(`[ovs] deleteInstance x${N} concurrently: ${together.toFixed(1)} ms in all`);
    expect(create).toHaveLength(N);
  });
});
