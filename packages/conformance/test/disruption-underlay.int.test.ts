// The underlay link of a node down and up again: `ip link set eth0 down` in node 1's namespace
// (its NIC, which carries the VXLAN tunnel or the host-gw routes), LINK_DOWN_MS later up again, with traffic
// running: a ping every 20 ms from an instance on node 1 to one on node 2, and a TCP echo every 50 ms from
// the world through a port node 1 publishes. The kernel drops what went through the link while it was down
// (routes via the peers, neighbour entries); the daemon must put back what of it is nodenet's (host-gw:
// the `proto 78` routes via the peers' underlay addresses) once the link is up, and traffic must flow again.
// The periodic reconcile is set to an hour: only events repair here. Measured from the link coming up (the
// time to repair, the probes lost after it) and printed (`[disruption]` lines), never asserted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsExec, startSocatEcho } from '@nodenet/testkit';
import { BACKENDS, ClusterFixture, PortProbe, ReplyLog, backendProfile, type ClusterInstance, type Outage } from '../src/index.js';
import { sleep } from '../src/durability.js';

const PERIODIC_SECONDS = 3600;
const GIVE_UP_MS = 15_000;
/** How long the link stays down: long enough for every notification of its going down to be handled. */
const LINK_DOWN_MS = 2_000;

const OVERLAYS = ['vxlan', 'host-gw'] as const;

describe.each(BACKENDS.flatMap((backend) => OVERLAYS.map((overlay) => [backend, overlay] as const)))(
  'the underlay link down and up (%s backend, %s overlay)',
  (backend, overlay) => {
    let c: ClusterFixture;
    let a: ClusterInstance; // on node 1: publishes a port (echo server), pings b
    let b: ClusterInstance; // on node 2
    let port: number;
    let pings: ReplyLog;
    let probe: PortProbe;
    const profile = backendProfile(backend);

    beforeAll(async () => {
      c = await ClusterFixture.start({ backend, nodes: 2, overlay, membership: 'static', reconcileIntervalSeconds: PERIODIC_SECONDS });
      port = c.node(1).nextPort();
      a = await c.node(1).addInstance({ ports: [port] });
      b = await c.node(2).addInstance();
      await startSocatEcho(c.scope, a.ns, 'tcp', port);
      pings = ReplyLog.start(c.scope, a.ns, b.address);
      probe = PortProbe.start(c.scope, c.world.ns, c.node(1).address, port);
      const start = Date.now();
      await pings.settledOutage(start, GIVE_UP_MS);
      await probe.settledOutage(start, GIVE_UP_MS);
    });
    afterAll(async () => {
      await pings?.stop();
      await probe?.stop();
      await c?.close();
    });

    /** What node 1 must hold for the path to node 2 (a check that throws counts as not yet). */
    const pathProblems = async (): Promise<string[]> => {
      const node1 = c.node(1);
      const peer = { subnet: c.node(2).subnet, underlayAddress: c.node(2).address };
      if (overlay === 'vxlan') return profile.vxlanPathProblems(node1.host, peer);
      const route = (await node1.overlayRoutes()).find((r) => r.dst === peer.subnet);
      return route?.gateway === peer.underlayAddress
        ? []
        : [`node-1 has no proto 78 route to ${peer.subnet} via ${peer.underlayAddress} (${JSON.stringify(route ?? null)})`];
    };

    it('traffic flows again once the link is up; what the kernel dropped of nodenet is put back', async () => {
      const node1 = c.node(1);
      const ifname = node1.host.underlayIfname;
      expect(await pathProblems()).toEqual([]);
      const routesBefore = await node1.routedSubnets();
      const mark = node1.daemon.logs.length;
      await nsExec(node1.ns, 'ip', ['link', 'set', ifname, 'down']);
      await sleep(LINK_DOWN_MS);
      const whileDown = await pathProblems().catch((e: unknown) => [String(e)]);
      const upAt = Date.now();
      const upStarted = performance.now();
      await nsExec(node1.ns, 'ip', ['link', 'set', ifname, 'up']);
      let last: string[];
      for (;;) {
        last = await pathProblems().catch((e: unknown) => [String(e)]);
        if (last.length === 0) break;
        if (performance.now() - upStarted > GIVE_UP_MS) {
          const logged = node1.daemon.logs
            .slice(mark)
            .filter(
              (l) =>
                ['repair', 'event-pass', 'reconcile-error', 'reconciled'].includes(String(l.event)) || l.level === 40 || l.level === 50,
            )
            .map((l) => JSON.stringify(l));
          throw new Error(
            `not repaired within ${GIVE_UP_MS} ms of the link coming up: ${JSON.stringify(last)}; logged: ${logged.join(' | ')}`,
          );
        }
        await sleep(20);
      }
      const repairMs = Math.round(performance.now() - upStarted);
      const outages = await Promise.all([pings, probe].map((p) => p.settledOutage(upAt, GIVE_UP_MS)));
      expect(await node1.routedSubnets()).toEqual(routesBefore);
      // Only event passes ran (the periodic one is an hour away).
      const passes = node1.daemon.logs.slice(mark).filter((l) => l.event === 'reconciled');
      expect(passes.every((l) => l.trigger === 'event')).toBe(true);
      // host-gw: the routes went silently with the link (no event); the link's connected route reappearing sets
      // off the pass that puts them back. Its line comes when the pass ends (an ovs pass takes a second or more).
      const eventPass = () => node1.daemon.logs.slice(mark).some((l) => l.event === 'event-pass');
      if (overlay === 'host-gw') while (!eventPass() && performance.now() - upStarted < GIVE_UP_MS) await sleep(50);
      const repairs = node1.daemon.logs
        .slice(mark)
        .filter((l) => l.event === 'repair')
        .map((l) => String(l.repair));
      const eventCauses = node1.daemon.logs
        .slice(mark)
        .filter((l) => l.event === 'event-pass')
        .flatMap((l) => (Array.isArray(l.causes) ? (l.causes as unknown[]).map(String) : []));
      if (overlay === 'host-gw') expect(eventCauses.join('\n')).toMatch(new RegExp(`connected route .* on ${ifname} appeared`));
      const o = (x: Outage) => `${x.lost}/${x.sent} lost, first good reply after ${x.outageMs} ms`;
      console.log(
        `[disruption] ${backend} | underlay link down ${LINK_DOWN_MS} ms and up (${overlay}) | repaired ${repairMs} ms after link up | ping ${o(outages[0]!)} | port ${o(outages[1]!)} | dropped while down: ${JSON.stringify(whileDown)} | repairs: ${JSON.stringify(repairs)} | event causes: ${JSON.stringify(eventCauses)}`,
      );
    });
  },
);
