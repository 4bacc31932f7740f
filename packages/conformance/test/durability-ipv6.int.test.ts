// Conformance: the durability guarantees with IPv6, on a dual-stack and on an IPv6-only node: kill -9 of the
// daemon (alone, or with its process group) in the middle of bursts of creates and deletes leaves every
// instance whole in every family or wholly gone; a reboot (the node namespace wiped) restores from the records
// the IPv6 gateway, the instances' IPv6 addresses and routes, the ip6 published ports and the bridge's IPv6
// guards; drift of the IPv6 state (the gateway, the guard's elements, ip6 map elements, an instance's port) is
// repaired by the change events alone (the periodic pass is off here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec, ipJson, nsExec, ping, readSysctls, startSocatEcho, type LogLine } from '@nodenet/testkit';
import { DUAL_GATEWAY6, IPV6_BACKENDS, NODE_GATEWAY, NodeFixture, ONLY_GATEWAY6, type Instance, type NodeFamilies } from '../src/index.js';
import { runCrashRounds } from '../src/crash-rounds.js';
import { consistencyProblems, sleep, tcpEchoOnce } from '../src/durability.js';

const ROUNDS = Number(process.env.NODENET_CRASH_ROUNDS_IPV6 ?? 10);
/** How long a repair may take before the test gives up (a loaded machine); repairs are logged, not timed. */
const GIVE_UP_MS = 30_000;

const NODES: { name: string; families: NodeFamilies }[] = [
  { name: 'dual-stack', families: 'dual' },
  { name: 'IPv6-only', families: 'ipv6' },
];

/** The global addresses of `ifname` in `ns`, `address/prefix`, sorted. */
async function globalAddresses(ns: string, ifname: string): Promise<string[]> {
  const ls = await ipJson<{ addr_info: { local: string; prefixlen: number; scope: string }[] }[]>(ns, ['addr', 'show', 'dev', ifname]);
  return ls.flatMap((l) => l.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`)).sort();
}

/** The gateway of the IPv6 default route in `ns` (undefined: none). */
async function ipv6DefaultGateway(ns: string): Promise<string | undefined> {
  return (await ipJson<{ gateway?: string }[]>(ns, ['-6', 'route', 'show', 'default']))[0]?.gateway;
}

describe.each(IPV6_BACKENDS)('durability with IPv6 (%s backend)', (backend) => {
  describe.each(NODES)('$name node', ({ families }) => {
    const gateway6 = families === 'dual' ? DUAL_GATEWAY6 : ONLY_GATEWAY6;
    /** The addresses an instance has, as `ip addr` shows them on its eth0. */
    const addressesOf = (i: Instance) => (families === 'dual' ? [`${i.address}/24`, `${i.ipv6Address!}/64`] : [`${i.address}/64`]).sort();
    const ipv6Of = (i: Instance) => (families === 'dual' ? i.ipv6Address! : i.address);

    describe('kill -9 of the daemon during bursts of creates and deletes', () => {
      let f: NodeFixture;
      beforeAll(async () => {
        // Periodic passes and event repairs off: what the rounds see is the crash and the restart's doing.
        f = await NodeFixture.start({ backend, families, config: { reconcileIntervalSeconds: 86_400, repairOnChange: false } });
      });
      afterAll(() => f?.close());

      it('the node as the CNI create left it needs no repair: a restart right after finds nothing to do', async () => {
        // (The peer sync rewrote the cluster subnets after the CNI was made, and on a dual-stack node emptied
        // the ip6 set of the node's own IPv6 subnet: every restart then repaired it.)
        const before = await f.ownedState();
        const d = await f.restartDaemon('kill');
        const restored = await d.waitForLog((l) => l.event === 'restored');
        expect(restored.repairs).toEqual([]);
        expect(await f.ownedState()).toEqual(before);
      });

      it(
        `${ROUNDS} rounds (the daemon alone and its process group in turn): every instance whole in every family or gone, nothing left over`,
        { timeout: 400_000 },
        async () => {
          const { seed, summary: s } = await runCrashRounds(f, ROUNDS, ['daemon', 'group']);
          console.log(`[measure] ${backend} ${families}: crash rounds survived: ${s.rounds} (seed ${seed}); ${JSON.stringify(s)}`);
          expect(s.cutShort.createsThere + s.cutShort.createsGone + s.cutShort.deletesThere + s.cutShort.deletesGone).toBeGreaterThan(0);
          expect(s.acknowledgedCreates).toBeGreaterThan(0);
          // The last round checked the traffic of every live instance in every family.
          expect(s.trafficChecks).toBeGreaterThan(0);
        },
      );
    });

    describe('reboot and drift', () => {
      let f: NodeFixture;
      beforeAll(async () => {
        // Repairs come from the change events only (and the pass at start): the periodic pass is a day away.
        f = await NodeFixture.start({ backend, families, config: { reconcileIntervalSeconds: 86_400, repairOnChange: true } });
      });
      afterAll(() => f?.close());

      /** Pings the gateway and reaches the published port from the world, in every family of the node. */
      async function expectWorking(i: Instance, port: number): Promise<void> {
        for (const { gateway, node } of f.familyTargets()) {
          const p = await ping(i.ns!, gateway);
          expect(p.ok, `${i.handle} pings ${gateway}: ${p.output}`).toBe(true);
          const e = await tcpEchoOnce(f.world.ns, node, port);
          expect(e.ok, `port ${port} answers the world at ${node}: ${e.detail}`).toBe(true);
        }
      }

      /**
       * Applies `drift` and waits until `repaired()` holds and nothing nodenet owns is out of place; returns the
       * repairs logged meanwhile (each with its trigger).
       */
      async function driftAndWait(drift: () => Promise<unknown>, repaired: () => Promise<boolean>): Promise<LogLine[]> {
        const mark = f.daemon.logs.length;
        const started = performance.now();
        await drift();
        for (;;) {
          if ((await repaired()) && consistencyProblems(await f.ownedState()).length === 0) break;
          if (performance.now() - started > GIVE_UP_MS) throw new Error(`not repaired within ${GIVE_UP_MS} ms: ${f.daemon.diagnostics()}`);
          await sleep(100);
        }
        console.log(`[measure] ${backend} ${families}: repaired after ${Math.round(performance.now() - started)} ms`);
        // The pass that repaired it logs its repairs before its `reconciled` line.
        const passDone = (l: LogLine, i: number) => i >= mark && l.event === 'reconciled' && Number(l.repairs) > 0;
        while (!f.daemon.logs.some(passDone)) {
          if (performance.now() - started > GIVE_UP_MS)
            throw new Error(`no reconcile pass with repairs was logged: ${f.daemon.diagnostics()}`);
          await sleep(50);
        }
        return f.daemon.logs.slice(mark).filter((l) => l.event === 'repair');
      }

      const expectByEvents = (repairs: LogLine[]) => {
        expect(repairs.length, 'the repair was logged').toBeGreaterThan(0);
        expect(repairs.map((r) => r.trigger)).toEqual(repairs.map(() => 'event'));
      };

      it('reboot (node namespace wiped): IPv6 gateway, forwarding, ip6 table, instance addresses and routes, published ports and guards are back; a gone instance is released', async () => {
        const ports = { kept: f.nextPort(), gone: f.nextPort() };
        const kept = await f.addInstance(undefined, { ports: [ports.kept], via: 'netns' });
        const gone = await f.addInstance(undefined, { ports: [ports.gone], via: 'netns' });
        const cniAddresses = await globalAddresses(f.ns, 'nodenet0');
        expect(cniAddresses).toContain(`${gateway6}/64`);

        const { servingMs } = await f.rebootNode(async () => {
          await exec('ip', ['netns', 'del', gone.ns!]);
        });
        // Checked right after SERVING, with no request in between.
        expect(await globalAddresses(f.ns, 'nodenet0')).toEqual(cniAddresses);
        expect(await readSysctls(f.ns, ['net.ipv6.conf.all.forwarding'])).toEqual({ 'net.ipv6.conf.all.forwarding': '1' });
        const owned = await f.ownedState();
        expect(owned.tables).toEqual({ ip: families === 'dual', ip6: true, bridge: true });
        expect(consistencyProblems(owned)).toEqual([]);
        expect(owned.ports6.map((p) => `${p.protocol}/${p.hostPort} ${p.address}`)).toEqual(
          expect.arrayContaining([`tcp/${ports.kept} ${ipv6Of(kept)}`, `udp/${ports.kept} ${ipv6Of(kept)}`]),
        );
        const recorded = owned.records.map((r) => r.handle);
        expect(recorded).toContain(kept.handle);
        expect(recorded, 'the instance whose namespace went is released').not.toContain(gone.handle);
        expect(await globalAddresses(kept.ns!, 'eth0'), 'the surviving namespace has its interface back').toEqual(addressesOf(kept));
        expect(await ipv6DefaultGateway(kept.ns!)).toBe(gateway6);
        const restored = await f.daemon.waitForLog((l) => l.event === 'restored');
        console.log(
          `[measure] ${backend} ${families}: reboot: start -> SERVING ${servingMs.toFixed(0)} ms, restore ${String(restored.durationMs)} ms`,
        );

        // The guards are back: the rules, and what they do (a spoofed IPv6 source is dropped).
        const bridge = (await nsExec(f.ns, 'nft', ['list', 'table', 'bridge', 'nodenet'])).stdout;
        expect(bridge).toContain('no router adverts or redirects from instances');
        expect(bridge).toContain("neighbour adverts only for the port's own addresses");
        await startSocatEcho(f.scope, kept.ns!, 'tcp', ports.kept, { ipv6: true });
        await expectWorking(kept, ports.kept);
        const spoofed = `${gateway6.slice(0, -1)}ee`;
        await nsExec(kept.ns!, 'ip', ['addr', 'add', `${spoofed}/64`, 'dev', 'eth0', 'nodad']);
        const p = await ping(kept.ns!, gateway6, { source: spoofed });
        expect(p.ok, `a spoofed source ${spoofed} is dropped: ${p.output}`).toBe(false);
        await nsExec(kept.ns!, 'ip', ['addr', 'del', `${spoofed}/64`, 'dev', 'eth0']);

        // The gone instance's ports and addresses are free again.
        const reused = await f.addInstance(gone.address, { ports: [ports.gone], via: 'netns' });
        expect(await globalAddresses(reused.ns!, 'eth0')).toEqual(addressesOf(reused));
        for (const i of [kept, reused]) await f.api.deleteInterface({ interfaceName: i.handle });
        expect(consistencyProblems(await f.ownedState())).toEqual([]);
      });

      it('drift: the IPv6 gateway deleted from the bridge is added back (by the change events)', async () => {
        const repairs = await driftAndWait(
          () => nsExec(f.ns, 'ip', ['addr', 'del', `${gateway6}/64`, 'dev', 'nodenet0']),
          async () => (await globalAddresses(f.ns, 'nodenet0')).includes(`${gateway6}/64`),
        );
        expectByEvents(repairs);
        expect(repairs.map((r) => String(r.repair)).join('\n')).toContain(gateway6);
        if (families === 'dual') expect(await globalAddresses(f.ns, 'nodenet0')).toContain(`${NODE_GATEWAY}/24`);
      });

      it("drift: an instance's IPv6 admission (allowed_sources6, nd_targets) and its ip6 published port deleted are put back (by the change events)", async () => {
        const port = f.nextPort();
        const a = await f.addInstance(undefined, { ports: [port], via: 'netns' });
        await startSocatEcho(f.scope, a.ns!, 'tcp', port, { ipv6: true });
        const host = a.response.hostInterfaceName!;
        const held = async () => {
          const s = await f.ownedState();
          return (
            s.sources6.some((e) => e.ifname === host && e.address === ipv6Of(a)) &&
            s.ndTargets.some((e) => e.ifname === host && e.address === ipv6Of(a)) &&
            s.ports6.some((e) => e.hostPort === port && e.address === ipv6Of(a))
          );
        };
        expect(await held()).toBe(true);
        const repairs = await driftAndWait(async () => {
          await nsExec(f.ns, 'nft', ['flush', 'set', 'bridge', 'nodenet', 'allowed_sources6']);
          await nsExec(f.ns, 'nft', ['flush', 'set', 'bridge', 'nodenet', 'nd_targets']);
          await nsExec(f.ns, 'nft', ['delete', 'element', 'ip6', 'nodenet', 'published_ports', `{ tcp . ${port}, udp . ${port} }`]);
        }, held);
        expectByEvents(repairs);
        await expectWorking(a, port);
        await f.api.deleteInterface({ interfaceName: a.handle });
      });

      it("drift: an instance's host-side veth deleted: recreated in its namespace with its IPv6 address and route (by the change events)", async () => {
        const port = f.nextPort();
        const a = await f.addInstance(undefined, { ports: [port], via: 'netns' });
        const host = a.response.hostInterfaceName!;
        const repairs = await driftAndWait(
          () => nsExec(f.ns, 'ip', ['link', 'del', host]),
          async () => (await globalAddresses(a.ns!, 'eth0').catch(() => [])).length === addressesOf(a).length,
        );
        expectByEvents(repairs);
        expect(await globalAddresses(a.ns!, 'eth0')).toEqual(addressesOf(a));
        expect(await ipv6DefaultGateway(a.ns!)).toBe(gateway6);
        await startSocatEcho(f.scope, a.ns!, 'tcp', port, { ipv6: true });
        await expectWorking(a, port);
        await f.api.deleteInterface({ interfaceName: a.handle });
      });
    });
  });
});
