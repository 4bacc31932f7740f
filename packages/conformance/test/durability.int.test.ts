// Conformance: durability (CONTRACT.md, CreateContainerNetworkInterface "Durable", and "The daemon":
// SIGTERM leaves the network in place, instances keep talking while the daemon is down, a restarted
// daemon adopts what is there).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, ipBatch, ipv4AddressesOf, link, links, nftRuleset, nsExec, ping, readSysctls, rpcError, startEchoServers, writeSysctls } from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NODE_SUBNET, NodeFixture, type Instance } from '../src/index.js';

describe.each(BACKENDS)('durability (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend });
  });
  afterAll(() => f?.close());

  /** The instance talks to the world, and the world reaches its published port. */
  async function expectWorking(inst: Instance, port: number, tcp: Awaited<ReturnType<typeof startEchoServers>>['tcp']): Promise<void> {
    const p = await ping(inst.ns!, f.world.address);
    expect(p.ok, p.output).toBe(true);
    const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
    expect(t.ok, t.error).toBe(true);
    expect(tcp.receivedPayload(t.payload)).toHaveLength(1);
  }

  for (const how of ['stop', 'kill'] as const) {
    it(`${how === 'stop' ? 'SIGTERM' : 'SIGKILL'}: instances keep talking while the daemon is down; the restarted daemon adopts them`, async () => {
      const port = f.nextPort();
      const inst = await f.addInstance(undefined, { ports: [port] });
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      await expectWorking(inst, port, tcp);

      await f.restartDaemon(how, () => expectWorking(inst, port, tcp));

      await expectWorking(inst, port, tcp);
      expect((await f.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET })).interfaceName).toBe('nodenet0');
      const again = await f.api.createInterface({ ipAddress: inst.address, ports: [port] });
      expect(again.interfaceName).toBe(inst.handle);
      const taken = await rpcError(f.api.createInterface({ ipAddress: f.nextAddress(), ports: [port] }));
      expect(taken.codeName, 'the adopted instance still owns its port').toBe('ALREADY_EXISTS');
      await f.api.deleteInterface({ interfaceName: inst.handle });
      expect(await link(inst.ns!, 'eth0')).toBeUndefined();
      expect((await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port, timeoutMs: 1000 })).ok).toBe(false);
    });
  }

  it('after a reboot (kernel state gone) the daemon brings the CNI back before it reports SERVING', async () => {
    await f.restartDaemon('stop', async () => {
      // What a reboot leaves: no nodenet links, no nftables rules, forwarding off. The state dir survives.
      const nodenetLinks = (await links(f.ns)).map((l) => l.ifname).filter((n) => n === 'nodenet0' || /^nn[ih]-/.test(n));
      await ipBatch(f.ns, nodenetLinks.map((n) => `link del ${n}`), { force: true });
      await nsExec(f.ns, 'nft', ['flush', 'ruleset']);
      await writeSysctls(f.ns, { 'net.ipv4.ip_forward': 0 });
      expect(await link(f.ns, 'nodenet0')).toBeUndefined();
    });
    // Checked right after SERVING, with no request in between.
    const cni = await link(f.ns, 'nodenet0');
    expect(cni, 'nodenet0 is back').toBeDefined();
    expect(cni!.flags).toContain('UP');
    expect(await ipv4AddressesOf(f.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
    expect(await readSysctls(f.ns, ['net.ipv4.ip_forward'])).toEqual({ 'net.ipv4.ip_forward': '1' });
    const tables = (await nftRuleset(f.ns)).flatMap((o) => {
      const t = (o as { table?: { family: string; name: string } }).table;
      return t ? [`${t.family} ${t.name}`] : [];
    });
    expect(tables).toEqual(expect.arrayContaining(['ip nodenet']));

    // And it works: a new instance reaches the world (masqueraded) and publishes a port.
    const port = f.nextPort();
    const inst = await f.addInstance(undefined, { ports: [port], via: 'netns' });
    const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
    await expectWorking(inst, port, tcp);
  });
});
