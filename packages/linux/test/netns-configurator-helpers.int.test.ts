/**
 * The namespace configurator's helper processes, against the real kernel in namespaces the test makes: many
 * creates at once are shared between the helpers (each instance made and configured, both helpers running in
 * the node namespace), a request that fails on one helper fails alone, and a configurator asked for one
 * helper runs one.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CNI_NAME, Subnet, macForAddress, parseIpv4Address, parseNetnsRef, type CniSpec } from '@nodenet/core';
import { ipBatch, ipJson, nsExec, TestScope } from '@nodenet/testkit';
import { instanceSpecFor } from '@nodenet/testkit/instance-specs';
import { IpBatchError } from '../src/ip-batch.js';
import { LINE } from '../src/link-scripts.js';
import { NETNS_HELPERS, NETNS_HELPER_PATH, NetnsConfigurator } from '../src/netns-configurator.js';

const gateway = parseIpv4Address('198.19.2.1', 'gateway');
const cni: CniSpec = { name: CNI_NAME, ipv4: { gateway, subnet: Subnet.of('198.19.2.0/24') }, mtu: 1450, mac: macForAddress(gateway) };

/** The helper processes running in namespace `ns`. */
async function helpersIn(ns: string): Promise<number> {
  const pids = (await nsExec(ns, 'ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean);
  let count = 0;
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(NETNS_HELPER_PATH)) count++;
  }
  return count;
}

describe("the namespace configurator's helpers", () => {
  let scope: TestScope;
  const configurators: NetnsConfigurator[] = [];

  beforeAll(async () => {
    scope = await TestScope.create();
  });
  afterAll(async () => {
    for (const c of configurators) c.close();
    await scope?.cleanup();
  });

  async function nodeWithBridge(): Promise<string> {
    const node = await scope.createNamespace();
    await ipBatch(node, [`link add ${CNI_NAME} type bridge`, `addr add 198.19.2.1/24 dev ${CNI_NAME}`, `link set ${CNI_NAME} up`]);
    return node;
  }

  it('creates at once are shared between the helpers; each instance is made and configured; a failure fails alone', async () => {
    expect(NETNS_HELPERS).toBeGreaterThan(1);
    const node = await nodeWithBridge();
    const configurator = new NetnsConfigurator(parseNetnsRef(node, 'node'));
    configurators.push(configurator);
    const count = 16;
    const namespaces = await Promise.all(Array.from({ length: count }, () => scope.createNamespace()));
    const specs = namespaces.map((ns, i) => instanceSpecFor(cni, 0x7100 + i, 10 + i, { netns: ns }));
    // One of them into a namespace that does not exist: it fails, the others do not.
    const missing = instanceSpecFor(cni, 0x71ff, 99, { netns: 'nnt-no-such-namespace' });
    const outcomes = await Promise.allSettled([
      ...specs.map((spec, i) => configurator.createVeth(spec, `/run/netns/${namespaces[i]}`, CNI_NAME, [])),
      configurator.createVeth(missing, '/run/netns/nnt-no-such-namespace', CNI_NAME, []),
    ]);
    expect(outcomes.slice(0, count).map((o) => o.status)).toEqual(Array.from({ length: count }, () => 'fulfilled'));
    const failed = outcomes[count]!;
    expect(failed.status).toBe('rejected');
    expect((failed as PromiseRejectedResult).reason).toBeInstanceOf(IpBatchError);
    expect(configurator.usable).toBe(true);
    expect(await helpersIn(node)).toBe(NETNS_HELPERS);
    for (const [i, ns] of namespaces.entries()) {
      const addrs = await ipJson<{ addr_info: { local?: string; family: string }[] }[]>(ns, ['addr', 'show', 'dev', 'eth0']);
      expect(addrs[0]!.addr_info.filter((a) => a.family === 'inet').map((a) => a.local)).toEqual([`198.19.2.${10 + i}`]);
    }
    const ports = await ipJson<{ ifname: string; master?: string }[]>(node, ['link', 'show', 'master', CNI_NAME]);
    expect(ports.map((p) => p.ifname).sort()).toEqual(specs.map((s) => s.hostIfname).sort());
  });

  it('asked for one helper, runs one', async () => {
    const node = await nodeWithBridge();
    const configurator = new NetnsConfigurator(parseNetnsRef(node, 'node'), undefined, undefined, 1);
    configurators.push(configurator);
    const namespaces = await Promise.all(Array.from({ length: 4 }, () => scope.createNamespace()));
    await Promise.all(
      namespaces.map((ns, i) =>
        configurator.createVeth(instanceSpecFor(cni, 0x7200 + i, 10 + i, { netns: ns }), `/run/netns/${ns}`, CNI_NAME, []),
      ),
    );
    expect(await helpersIn(node)).toBe(1);
  });

  it('a request refused on the node side names its line, whichever helper ran it', async () => {
    const node = await nodeWithBridge();
    const configurator = new NetnsConfigurator(parseNetnsRef(node, 'node'));
    configurators.push(configurator);
    const ns = await scope.createNamespace();
    const spec = instanceSpecFor(cni, 0x7300, 10, { netns: ns });
    await ipBatch(node, [`link add ${spec.hostIfname} type veth peer name x0`]);
    const e = await configurator
      .createVeth(spec, `/run/netns/${ns}`, CNI_NAME, [
        { id: LINE.createLink, args: ['link', 'add'], step: `create veth pair ${spec.hostIfname}` },
      ])
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(IpBatchError);
    expect((e as IpBatchError).failedLine?.id).toBe(LINE.createLink);
  });
});
