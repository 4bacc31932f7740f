// Conformance: durability (CONTRACT.md, CreateContainerNetworkInterface "Durable", and "The daemon":
// SIGTERM leaves the network in place, instances keep talking while the daemon is down, a restarted
// daemon adopts what is there; the issue "Durable node state": restart adopts and recreates nothing,
// reboot restores, a corrupt state file is a clear error, Inspect shows what is missing).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterfaceKind } from '@nodenet/api';
import {
  Daemon,
  echo,
  exec,
  ipJson,
  ipv4AddressesOf,
  link,
  links,
  nsExec,
  ping,
  readSysctls,
  rpcError,
  snapshot,
  startEchoServers,
  startSocatEcho,
  writeSysctls,
} from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NODE_SUBNET, NodeFixture, privateOvsOf, type Instance } from '../src/index.js';
import { Pinger, TcpSession, consistencyProblems, nftHandles, ownedKernelShape, sleep } from '../src/durability.js';

describe.each(BACKENDS)('durability (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    // No periodic pass during these tests: what they see is the restart's doing (or the lack of it).
    f = await NodeFixture.start({ backend, config: { reconcileIntervalSeconds: 86_400, repairOnChange: false } });
  });
  afterAll(() => f?.close());

  /** The instance talks to the world, and the world reaches its published port. */
  async function expectWorking(inst: Instance, port: number, tcp: Awaited<ReturnType<typeof startEchoServers>>['tcp']): Promise<void> {
    // Up to 5 echoes over ~2 s: once (1 of 3 CI runs, ovs, right after a reboot's restore) the single echo this
    // sent went unanswered within 2 s; the cause is not found. An outage that lasts still fails here.
    const p = await ping(inst.ns!, f.world.address, { count: 5, intervalSec: 0.5 });
    expect(p.ok, p.output).toBe(true);
    const t = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port });
    expect(t.ok, t.error).toBe(true);
    expect(tcp.receivedPayload(t.payload)).toHaveLength(1);
  }

  async function linksIn(ns: string): Promise<string[]> {
    return (await ipJson<Array<{ ifname: string }>>(ns, ['link', 'show'])).map((l) => l.ifname).filter((n) => n !== 'lo');
  }

  for (const how of ['stop', 'kill'] as const) {
    it(`${how === 'stop' ? 'SIGTERM' : 'SIGKILL'}: connections stay up and pings keep answering while the daemon is down; the restarted daemon adopts without recreating anything`, async () => {
      const port = f.nextPort();
      const sessionPort = f.nextPort();
      const worldPort = f.nextPort();
      const inst = await f.addInstance(undefined, { ports: [port, sessionPort] });
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      await startSocatEcho(f.scope, inst.ns!, 'tcp', sessionPort);
      await startSocatEcho(f.scope, f.world.ns, 'tcp', worldPort);
      await expectWorking(inst, port, tcp);

      // Long-lived traffic both ways: into the published port (DNAT) and out to the world (masquerade).
      const inbound = await TcpSession.open(f.scope, f.world.ns, f.node.address, sessionPort);
      const outbound = await TcpSession.open(f.scope, inst.ns!, f.world.address, worldPort);
      const before = await ownedKernelShape(f.ns);
      expect(Object.keys(before.links), 'the comparison below has links to compare').toEqual(
        expect.arrayContaining(['nodenet0', inst.response.hostInterfaceName]),
      );
      expect(nftHandles(before).length, 'and nft objects').toBeGreaterThan(5);
      const pinger = Pinger.start(f.scope, inst.ns!, f.world.address, 50);
      await sleep(300);

      let downFrom = 0;
      let downTo = 0;
      await f.restartDaemon(how, async () => {
        downFrom = performance.now();
        expect(await inbound.exchange('while-down'), `inbound session: ${inbound.stderr}`).toBe(true);
        expect(await outbound.exchange('while-down'), `outbound session: ${outbound.stderr}`).toBe(true);
        await expectWorking(inst, port, tcp); // new connections too
        await sleep(300);
        downTo = performance.now();
      });
      // Right after SERVING: nothing was recreated (same link indexes, same nft objects and handles).
      const after = await ownedKernelShape(f.ns);
      const restored = await f.daemon.waitForLog((l) => l.event === 'restored');

      expect(await inbound.exchange('after-restart'), `inbound session: ${inbound.stderr}`).toBe(true);
      expect(await outbound.exchange('after-restart'), `outbound session: ${outbound.stderr}`).toBe(true);
      expect(inbound.alive && outbound.alive, 'the same TCP connections, never re-opened').toBe(true);
      const repliesWhileDown = pinger.repliesBetween(downFrom, downTo);
      const pings = await pinger.stop(2500);
      console.log(
        `[measure] ${backend}: ${how}: ${pings.replies.size} pings answered of ${pings.lastSeq} sent across the restart (${repliesWhileDown} while down), lost ${pings.lost.length}`,
      );
      expect(repliesWhileDown, 'pings answered while the daemon was down').toBeGreaterThan(0);
      expect(pings.lost, 'pings lost across the restart').toEqual([]);

      expect(after.links, 'no owned link recreated').toEqual(before.links);
      expect(nftHandles(after), 'no nft table, chain, set or rule replaced').toEqual(nftHandles(before));
      expect(after.nft, "nodenet's nftables tables unchanged").toEqual(before.nft);
      expect(restored.repairs, 'a restart over an intact node repairs nothing').toEqual([]);

      await expectWorking(inst, port, tcp);
      expect((await f.api.createContainerNetworkInterface({ ipAddress: NODE_GATEWAY, subNetwork: NODE_SUBNET })).interfaceName).toBe(
        'nodenet0',
      );
      const again = await f.api.createInterface({ ipAddress: inst.address, ports: [port, sessionPort] });
      expect(again.interfaceName).toBe(inst.handle);
      const taken = await rpcError(f.api.createInterface({ ipAddress: f.nextAddress(), ports: [port] }));
      expect(taken.codeName, 'the adopted instance still owns its port').toBe('ALREADY_EXISTS');
      await inbound.close();
      await outbound.close();
      await f.api.deleteInterface({ interfaceName: inst.handle });
      expect(await link(inst.ns!, 'eth0')).toBeUndefined();
      expect((await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port, timeoutMs: 1000 })).ok).toBe(false);
    });
  }

  it('Inspect shows an interface whose bridge port went missing; the restart recreates it in its namespace and reports the repair', async () => {
    const port = f.nextPort();
    const a = await f.addInstance(undefined, { ports: [port], via: 'netns' });
    const b = await f.addInstance(undefined, { ports: [f.nextPort()] });
    const hostEnd = a.response.hostInterfaceName ?? '';
    expect(hostEnd).toMatch(/^nnh-[0-9a-f]{8}$/);
    await nsExec(f.ns, 'ip', ['link', 'del', hostEnd]);
    expect(await linksIn(a.ns!), 'the instance end went with the host end').toEqual([]);

    const seen = await f.inspect();
    expect(seen.cni).toMatchObject({ name: 'nodenet0', gateway: NODE_GATEWAY, subNetwork: NODE_SUBNET });
    const state = (handle: string) => seen.interfaces.find((i) => i.interfaceName === handle)?.state;
    expect(state(a.handle)).toBe('missing');
    expect(state(b.handle)).toBe('present');
    expect(seen.interfaces.find((i) => i.interfaceName === a.handle)).toMatchObject({
      ipAddress: a.address,
      netns: a.ns!,
      hostInterfaceName: hostEnd,
    });

    await f.restartDaemon('kill');
    const again = await f.inspect();
    expect(again.interfaces.find((i) => i.interfaceName === a.handle)?.state).toBe('present');
    expect(
      again.lastReconcile?.repairs.some((r) => r.includes(a.handle)),
      JSON.stringify(again.lastReconcile),
    ).toBe(true);
    expect(again.lastReconcile?.errors).toEqual([]);
    const logged = f.daemon.logs.filter((l) => l.event === 'repair').map((l) => String(l.repair));
    expect(
      logged.some((r) => r.includes(a.handle)),
      `repair logged: ${JSON.stringify(logged)}`,
    ).toBe(true);
    expect(await ipv4AddressesOf(a.ns!, 'eth0')).toEqual([`${a.address}/24`]);
    const { tcp } = await startEchoServers(f.scope, a.ns!, port);
    await expectWorking(a, port, tcp);
    for (const i of [a, b]) await f.api.deleteInterface({ interfaceName: i.handle });
  });

  it('a create cut short between making its veth pair and tagging it (crash mid-batch) leaves nothing after the restart', async () => {
    // What the crash-stress script's group kills left on the node (5 times in 60 rounds, measured): the rules
    // (installed first), the pair created on the CNI with its instance end in the instance's namespace, and no
    // owner alias yet, because `ip link set ... alias` is the batch's next line and the kernel takes no
    // alias at creation. No record: the create was never acknowledged.
    const id = Math.floor(Math.random() * 2 ** 32)
      .toString(16)
      .padStart(8, '0');
    const [host, inner] = [`nnh-${id}`, `nni-${id}`];
    const address = f.nextAddress();
    const port = f.nextPort();
    const ns = await f.topology.createInstanceNamespace();
    try {
      await f.restartDaemon('kill', async () => {
        const onBridge = privateOvsOf(f.ns) ? '' : 'master nodenet0 ';
        await nsExec(f.ns, 'ip', ['-batch', '-'], { input: `link add ${host} ${onBridge}type veth peer name ${inner} netns ${ns}\n` });
        await nsExec(f.ns, 'nft', ['-f', '-'], {
          input:
            `add element ip nodenet published_ports { tcp . ${port} : ${address} . ${port}, udp . ${port} : ${address} . ${port} }\n` +
            `add element bridge nodenet allowed_sources { "${host}" . ${address} }\n`,
        });
      });
      const state = await f.ownedState();
      expect(consistencyProblems(state)).toEqual([]);
      expect(
        (await links(f.ns)).map((l) => l.ifname).filter((n) => n.endsWith(id)),
        'the half-made pair is gone',
      ).toEqual([]);
      expect(await linksIn(ns), "nothing is left in the instance's namespace").toEqual([]);
      // And the address and the port are free for a real create.
      const inst = await f.addInstance(address, { ports: [port], via: 'netns' });
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      await expectWorking(inst, port, tcp);
      await f.api.deleteInterface({ interfaceName: inst.handle });
    } finally {
      // Whatever the daemon left, so that the tests after this one start from a clean node.
      await nsExec(f.ns, 'ip', ['link', 'del', host], { allowFailure: true });
    }
  });

  it("an instance's port taken off the CNI while the daemon was down (on ovs what a delete cut short between its switch and kernel steps leaves): the restart puts it back", async () => {
    const port = f.nextPort();
    const inst = await f.addInstance(undefined, { ports: [port], via: 'netns' });
    try {
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      const hostEnd = inst.response.hostInterfaceName ?? '';
      await f.restartDaemon('kill', async () => {
        const ovs = privateOvsOf(f.ns);
        if (ovs) await ovs.vsctl(['del-port', 'nodenet0', hostEnd]);
        else await nsExec(f.ns, 'ip', ['link', 'set', hostEnd, 'nomaster']);
      });
      expect(consistencyProblems(await f.ownedState())).toEqual([]);
      await expectWorking(inst, port, tcp);
    } finally {
      await f.api.deleteInterface({ interfaceName: inst.handle });
    }
  });

  it('reboot (node namespace deleted and recreated with its underlay): CNI, forwarding and nftables are back before SERVING; gone instances are released, a surviving namespace gets its interface back', async () => {
    const ports = { kept: f.nextPort(), gone: f.nextPort(), impostor: f.nextPort(), runtime: f.nextPort(), tap: f.nextPort() };
    const kept = await f.addInstance(undefined, { ports: [ports.kept], via: 'netns' });
    const gone = await f.addInstance(undefined, { ports: [ports.gone], via: 'netns' });
    const impostor = await f.addInstance(undefined, { ports: [ports.impostor], via: 'netns' });
    const runtime = await f.addInstance(undefined, { ports: [ports.runtime] });
    const tap = await f.api.createInterface({ ipAddress: f.nextAddress(), ports: [ports.tap], kind: InterfaceKind.TAP });
    const released = [gone.handle, impostor.handle, runtime.handle, tap.interfaceName];

    const { servingMs } = await f.rebootNode(async () => {
      // A reboot takes the instances' namespaces too; one (`kept`) outlives it here, and one name comes back
      // as another namespace (a new container under an old name): the daemon must not move anything into it.
      await exec('ip', ['netns', 'del', gone.ns!]);
      await exec('ip', ['netns', 'del', impostor.ns!]);
      await exec('ip', ['netns', 'add', impostor.ns!]);
    });
    // Checked right after SERVING, with no request in between.
    const cni = await link(f.ns, 'nodenet0');
    expect(cni, 'nodenet0 is back').toBeDefined();
    expect(cni!.flags).toContain('UP');
    expect(await ipv4AddressesOf(f.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
    expect(await readSysctls(f.ns, ['net.ipv4.ip_forward'])).toEqual({ 'net.ipv4.ip_forward': '1' });
    const owned = await f.ownedState();
    expect(owned.tables).toEqual({ ip: true, bridge: true });
    expect(consistencyProblems(owned)).toEqual([]);
    // (Records of earlier tests' instances may remain if those failed: only this test's are judged.)
    const recorded = owned.records.map((r) => r.handle);
    expect(recorded).toContain(kept.handle);
    expect(
      recorded.filter((h) => released.includes(h)),
      'gone instances are released',
    ).toEqual([]);
    expect(await ipv4AddressesOf(kept.ns!, 'eth0'), 'the surviving namespace has its interface back').toEqual([`${kept.address}/24`]);
    expect(await linksIn(impostor.ns!), 'nothing was moved into a namespace that only has the old name').toEqual([]);
    const releasedLog = (await readFile(join(f.daemon.stateDir, 'released.log'), 'utf8')).split('\n');
    expect(releasedLog).toEqual(expect.arrayContaining(released));
    const restored = await f.daemon.waitForLog((l) => l.event === 'restored');
    const repairs = (restored.repairs as string[]).join('\n');
    for (const h of [kept.handle, ...released]) expect(repairs, `the restore names ${h}`).toContain(h);
    console.log(
      `[measure] ${backend}: reboot: start -> SERVING ${servingMs.toFixed(0)} ms, restore ${String(restored.durationMs)} ms, ${(restored.repairs as string[]).length} repairs`,
    );

    // The surviving instance works again; a released handle deletes as OK; freed addresses and ports are reusable.
    const { tcp } = await startEchoServers(f.scope, kept.ns!, ports.kept);
    await expectWorking(kept, ports.kept, tcp);
    await f.api.deleteInterface({ interfaceName: gone.handle });
    const reused = await f.addInstance(gone.address, { ports: [ports.runtime, ports.tap], via: 'netns' });
    const reusedServers = await startEchoServers(f.scope, reused.ns!, ports.runtime);
    await expectWorking(reused, ports.runtime, reusedServers.tcp);
    for (const i of [kept, reused]) await f.api.deleteInterface({ interfaceName: i.handle });
  });

  const corruptions = [
    { what: 'a truncated instance record', file: 'instance', corrupt: (text: string) => text.slice(0, Math.floor(text.length / 2)) },
    { what: 'an empty instance record', file: 'instance', corrupt: () => '' },
    { what: 'a CNI record that is not JSON', file: 'cni', corrupt: () => '{"version": 1, "kind": "cni", "record": {' },
  ] as const;
  for (const c of corruptions) {
    it(`${c.what}: the daemon refuses to start naming the file and what to do, exits non-zero, and changes nothing`, async () => {
      const port = f.nextPort();
      const inst = await f.addInstance(undefined, { ports: [port], via: 'netns' });
      const { tcp } = await startEchoServers(f.scope, inst.ns!, port);
      await f.restartDaemon('stop', async () => {
        const stateDir = f.daemon.stateDir;
        const file = c.file === 'cni' ? join(stateDir, 'cni.json') : join(stateDir, 'instances', `${inst.handle}.json`);
        const original = await readFile(file, 'utf8');
        const corrupted = c.corrupt(original);
        await writeFile(file, corrupted);
        const node = await snapshot(f.ns);
        const files = await f.daemon.readState();

        const refused = await Daemon.spawn(f.daemon.options, f.daemon.launch);
        const exit = await refused.exited;
        expect(exit.signal, refused.diagnostics()).toBeUndefined();
        expect(exit.exitCode, refused.diagnostics()).not.toBe(0);
        expect(refused.stderr, 'names the file').toContain(file);
        expect(refused.stderr, 'says what to do').toMatch(/restore|move it|remove it|delete/i);
        expect(await snapshot(f.ns), 'nothing on the node changed').toEqual(node);
        expect(await f.daemon.readState(), 'no state file was reset or rewritten').toEqual(files);
        await expectWorking(inst, port, tcp); // the instance never noticed

        await writeFile(file, original);
      });
      // With the file restored, nothing was lost.
      expect((await f.api.createInterface({ ipAddress: inst.address, ports: [port], netns: inst.ns! })).interfaceName).toBe(inst.handle);
      await expectWorking(inst, port, tcp);
      await f.api.deleteInterface({ interfaceName: inst.handle });
    });
  }

  it('forwarding turned off while the daemon was down is turned back on before SERVING', async () => {
    await f.restartDaemon('stop', () => writeSysctls(f.ns, { 'net.ipv4.ip_forward': 0 }));
    expect(await readSysctls(f.ns, ['net.ipv4.ip_forward'])).toEqual({ 'net.ipv4.ip_forward': '1' });
    const restored = await f.daemon.waitForLog((l) => l.event === 'restored');
    expect(JSON.stringify(restored.repairs)).toMatch(/forward/);
  });
});
