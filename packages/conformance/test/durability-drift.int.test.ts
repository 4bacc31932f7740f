// Conformance: drift repair (the issue "Durable node state": at start and every reconcileIntervalSeconds,
// compare what nodenet owns with what it intends, repair what drifted, remove orphans it owns that no
// record explains, log each repair, and never touch what it does not own).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  echo,
  ipBatch,
  settle,
  ipv4AddressesOf,
  links,
  nsExec,
  ping,
  readSysctls,
  startSocatEcho,
  summarizeLink,
  withoutVolatile,
  writeSysctls,
  type LogLine,
  type PrivateOvs,
} from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NodeFixture, privateOvsOf, type Instance } from '../src/index.js';
import { consistencyProblems, sleep } from '../src/durability.js';

const INTERVAL_SECONDS = 2;
/** How long a repair may take before the test gives up: generous (a noisy machine), the delay is measured. */
const GIVE_UP_MS = INTERVAL_SECONDS * 5_000 + 10_000;

const FOREIGN_TABLE = `table inet foreign {
  set blocked {
    type ipv4_addr
    elements = { 192.0.2.99 }
  }
  chain input {
    type filter hook input priority 10; policy accept;
    ip saddr @blocked counter drop
  }
}
`;

describe.each(BACKENDS)('durability: drift repair every reconcile interval (%s backend)', (backend) => {
  let f: NodeFixture;
  let a: Instance; // placed with the netns extension: a missing port is recreated
  let b: Instance; // moved by the "runtime": a missing port means it is gone
  let portA: number;
  let portB: number;
  let ovs: PrivateOvs | undefined; // the ovs backend's switch: a foreign port is added there
  const measured: string[] = [];

  beforeAll(async () => {
    // The periodic pass alone (event-driven repair would repair before the test sees the drift: disruption.int.test.ts).
    f = await NodeFixture.start({ backend, config: { reconcileIntervalSeconds: INTERVAL_SECONDS, repairOnChange: false } });
    ovs = privateOvsOf(f.ns);
    portA = f.nextPort();
    portB = f.nextPort();
    a = await f.addInstance(undefined, { ports: [portA], via: 'netns' });
    b = await f.addInstance(undefined, { ports: [portB] });
    await startSocatEcho(f.scope, a.ns!, 'tcp', portA);
    // Things nodenet does not own: a link, a link someone attached to nodenet's bridge, an nftables table.
    await ipBatch(f.ns, [
      'link add fx0 type veth peer name fx0p',
      'link set fx0 alias someone-else:fx0 up',
      'link add fx1 type veth peer name fx1p',
      'link set fx1 up',
    ]);
    if (ovs) await ovs.vsctl(['add-port', 'nodenet0', 'fx1']);
    else await nsExec(f.ns, 'ip', ['link', 'set', 'fx1', 'master', 'nodenet0']);
    await nsExec(f.ns, 'nft', ['-f', '-'], { input: FOREIGN_TABLE });
  });
  afterAll(async () => {
    if (measured.length > 0)
      console.log(`[measure] ${backend}: drift repaired after (interval ${INTERVAL_SECONDS} s): ${measured.join('; ')}`);
    await f?.close();
  });

  async function foreign(): Promise<unknown> {
    const ls = (await links(f.ns)).filter((l) => /^fx[01]p?$/.test(l.ifname)).map(summarizeLink);
    const table = await nsExec(f.ns, 'nft', ['-j', 'list', 'table', 'inet', 'foreign'], { allowFailure: true });
    const switchPorts = ovs
      ? (await ovs.vsctl(['list-ports', 'nodenet0'])).stdout.split('\n').filter((p) => p.startsWith('fx'))
      : undefined;
    return { links: ls, switchPorts, table: table.exitCode === 0 ? withoutVolatile(JSON.parse(table.stdout)) : table.stderr.trim() };
  }

  async function owned() {
    return f.ownedState();
  }

  /**
   * Applies `drift`, then waits until `repaired()` holds; returns the repair lines logged meanwhile. The delay
   * is recorded for the report; the wait gives up only after GIVE_UP_MS.
   */
  async function driftAndWait(name: string, drift: () => Promise<void>, repaired: () => Promise<boolean>): Promise<string[]> {
    const mark = f.daemon.logs.length;
    const started = performance.now();
    await drift();
    while (!(await repaired())) {
      if (performance.now() - started > GIVE_UP_MS)
        throw new Error(`${name}: not repaired within ${GIVE_UP_MS} ms: ${f.daemon.diagnostics()}`);
      await sleep(100);
    }
    measured.push(`${name} ${Math.round(performance.now() - started)} ms`);
    // The pass that repaired it logs its repairs before its `reconciled` line.
    const passDone = (l: LogLine, i: number) => i >= mark && l.event === 'reconciled' && Number(l.repairs) > 0;
    while (!f.daemon.logs.some(passDone)) {
      if (performance.now() - started > GIVE_UP_MS)
        throw new Error(`${name}: no reconcile pass with repairs was logged: ${f.daemon.diagnostics()}`);
      await sleep(50);
    }
    return f.daemon.logs
      .slice(mark)
      .filter((l) => l.event === 'repair')
      .map((l) => String(l.repair));
  }

  async function expectAWorks(): Promise<void> {
    const p = await ping(a.ns!, f.world.address);
    expect(p.ok, p.output).toBe(true);
    const e = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: portA });
    expect(e.ok, e.error).toBe(true);
  }

  it("the CNI's address deleted: added back and logged; foreign links and rules untouched", async () => {
    const before = await foreign();
    const repairs = await driftAndWait(
      'CNI address deleted',
      () => nsExec(f.ns, 'ip', ['addr', 'del', `${NODE_GATEWAY}/24`, 'dev', 'nodenet0']).then(() => undefined),
      async () => (await ipv4AddressesOf(f.ns, 'nodenet0')).includes(`${NODE_GATEWAY}/24`),
    );
    expect(repairs.join('\n')).toContain(NODE_GATEWAY);
    await expectAWorks();
    expect(await foreign()).toEqual(before);
  });

  it('a host-side veth deleted (instance placed with netns): recreated in its namespace and working; foreign untouched', async () => {
    const before = await foreign();
    const hostEnd = a.response.hostInterfaceName ?? '';
    const repairs = await driftAndWait(
      `host veth of a netns instance deleted`,
      async () => {
        await nsExec(f.ns, 'ip', ['link', 'del', hostEnd]);
        expect(consistencyProblems(await owned()).join('\n'), 'the checker sees the missing link').toContain(hostEnd);
      },
      async () =>
        (await ipv4AddressesOf(a.ns!, 'eth0').catch((): string[] => [])).includes(`${a.address}/24`) &&
        consistencyProblems(await owned()).length === 0,
    );
    expect(repairs.join('\n')).toContain(a.handle);
    await expectAWorks();
    expect(await foreign()).toEqual(before);
  });

  it('a host-side veth deleted (instance moved by its runtime): released, its address and port free again', async () => {
    const before = await foreign();
    const repairs = await driftAndWait(
      'host veth of a runtime instance deleted',
      () => nsExec(f.ns, 'ip', ['link', 'del', b.response.hostInterfaceName ?? '']).then(() => undefined),
      async () => !(await owned()).records.some((r) => r.handle === b.handle),
    );
    expect(repairs.join('\n')).toContain(b.handle);
    expect(consistencyProblems(await owned())).toEqual([]);
    expect(await foreign()).toEqual(before);
    // The address and the port are free: a new instance takes both and is reachable on the port.
    b = await f.addInstance(b.address, { ports: [portB], via: 'netns' });
    await startSocatEcho(f.scope, b.ns!, 'tcp', portB);
    const e = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: portB });
    expect(e.ok, e.error).toBe(true);
  });

  it("an instance's anti-spoofing element deleted: restored", async () => {
    const hostEnd = a.response.hostInterfaceName ?? '';
    const repairs = await driftAndWait(
      'anti-spoofing element deleted',
      async () => {
        await nsExec(f.ns, 'nft', ['delete', 'element', 'bridge', 'nodenet', 'allowed_sources', `{ "${hostEnd}" . ${a.address} }`]);
        expect(consistencyProblems(await owned()).join('\n'), 'the checker sees the missing element').toContain(
          `its allowed_sources element ${hostEnd} . ${a.address} is missing`,
        );
      },
      async () => consistencyProblems(await owned()).length === 0,
    );
    expect(repairs.join('\n')).toContain(a.handle);
    await expectAWorks();
  });

  it('orphans nodenet owns (a tagged link, a published-port element) no record explains: removed; foreign untouched', async () => {
    const before = await foreign();
    const repairs = await driftAndWait(
      'orphan link and map element added',
      async () => {
        // What a create cut short leaves: a tagged pair on the bridge, with no record.
        await ipBatch(f.ns, [
          `link add nnh-0badf00d ${ovs ? '' : 'master nodenet0 '}type veth peer name nni-0badf00d`,
          'link set nnh-0badf00d alias nodenet:nni-0badf00d up',
        ]);
        await nsExec(f.ns, 'nft', ['add', 'element', 'ip', 'nodenet', 'published_ports', '{ tcp . 45000 : 198.19.1.250 . 45000 }']);
        const seen = consistencyProblems(await owned()).join('\n');
        expect(seen, 'the checker sees the orphan link').toContain('nnh-0badf00d');
        expect(seen, 'the checker sees the orphan element').toContain('45000');
      },
      async () => consistencyProblems(await owned()).length === 0,
    );
    expect(repairs.join('\n')).toContain('nnh-0badf00d');
    expect(repairs.join('\n')).toContain('45000');
    expect(await foreign()).toEqual(before);
  });

  it('forwarding turned off: turned back on', async () => {
    const repairs = await driftAndWait(
      'ip_forward set to 0',
      () => writeSysctls(f.ns, { 'net.ipv4.ip_forward': 0 }),
      async () => (await readSysctls(f.ns, ['net.ipv4.ip_forward']))['net.ipv4.ip_forward'] === '1',
    );
    expect(repairs.join('\n')).toMatch(/forward/);
    await expectAWorks();
  });

  it('nft flush ruleset: both tables rebuilt with every element; published ports work again; a foreign table added later stays', async () => {
    const repairs = await driftAndWait(
      'nft flush ruleset',
      () => nsExec(f.ns, 'nft', ['flush', 'ruleset']).then(() => undefined),
      async () => {
        const s = await owned();
        return s.tables.ip && s.tables.bridge && consistencyProblems(s).length === 0;
      },
    );
    expect(repairs.length).toBeGreaterThan(0);
    await expectAWorks();
    const e = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: portB });
    expect(e.ok, e.error).toBe(true);
    // The flush took the foreign table too: nodenet must not bring back what is not its own, nor remove it
    // once its owner re-adds it.
    const table = await nsExec(f.ns, 'nft', ['list', 'table', 'inet', 'foreign'], { allowFailure: true });
    expect(table.exitCode, 'nodenet did not recreate a table it does not own').not.toBe(0);
    await nsExec(f.ns, 'nft', ['-f', '-'], { input: FOREIGN_TABLE });
    const before = await foreign();
    await waitForPasses(2);
    expect(await foreign()).toEqual(before);
    expect(consistencyProblems(await owned())).toEqual([]);
  });

  it('periodic passes running alongside a stream of creates and deletes touch nothing acknowledged and repair nothing', async () => {
    // One call every 0..40 ms for several intervals, so that passes start, list and plan while creates finish.
    const count = 120;
    const namespaces: string[] = [];
    for (let i = 0; i < count / 2; i += 10) {
      namespaces.push(...(await Promise.all(Array.from({ length: 10 }, () => f.topology.createInstanceNamespace()))));
    }
    const passesBefore = f.daemon.logs.filter((l) => l.event === 'reconciled').length;
    const mark = f.daemon.logs.length;
    const acked: { handle: string; address: string }[] = [];
    const failures: string[] = [];
    const calls: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const address = f.nextAddress();
      const request = { ipAddress: address, ports: [f.nextPort()], ...(i % 2 === 0 ? { netns: namespaces[i / 2]! } : {}) };
      calls.push(
        settle(f.api.createInterface(request)).then((o) => {
          if (o.ok) acked.push({ handle: o.value.interfaceName, address });
          else failures.push(`${address}: ${o.codeName} ${o.details}`);
        }),
      );
      await sleep(Math.random() * 40);
    }
    await Promise.all(calls);
    expect(failures).toEqual([]);
    await waitForPasses(2);
    const afterCreates = await owned();
    const recorded = new Set(afterCreates.records.map((r) => r.handle));
    const passes = f.daemon.logs.filter((l) => l.event === 'reconciled').length - passesBefore;
    const repairs = f.daemon.logs
      .slice(mark)
      .filter((l) => l.event === 'repair')
      .map((l) => String(l.repair));
    console.log(
      `[measure] ${backend}: ${count} creates alongside ${passes} periodic passes: ${acked.filter((a) => !recorded.has(a.handle)).length} acknowledged instances lost, ${repairs.length} repairs`,
    );
    expect(
      acked.filter((a) => !recorded.has(a.handle)).map((a) => `${a.handle} (${a.address})`),
      'acknowledged instances lost',
    ).toEqual([]);
    expect(repairs, 'nothing had drifted: a pass must not "repair" work that was in flight').toEqual([]);
    expect(consistencyProblems(afterCreates)).toEqual([]);

    const deleteMark = f.daemon.logs.length;
    const deletes: Promise<void>[] = [];
    for (const a of acked) {
      deletes.push(
        settle(f.api.deleteInterface({ interfaceName: a.handle })).then((o) => {
          if (!o.ok) failures.push(`delete ${a.handle}: ${o.codeName} ${o.details}`);
        }),
      );
      await sleep(Math.random() * 40);
    }
    await Promise.all(deletes);
    expect(failures).toEqual([]);
    await waitForPasses(2);
    expect(
      f.daemon.logs
        .slice(deleteMark)
        .filter((l) => l.event === 'repair')
        .map((l) => String(l.repair)),
    ).toEqual([]);
    const afterDeletes = await owned();
    expect(afterDeletes.records.map((r) => r.handle).sort()).toEqual([a.handle, b.handle].sort());
    expect(consistencyProblems(afterDeletes)).toEqual([]);
  });

  async function waitForPasses(n: number): Promise<void> {
    const target = f.daemon.logs.filter((l) => l.event === 'reconciled').length + n;
    const deadline = performance.now() + GIVE_UP_MS;
    while (f.daemon.logs.filter((l) => l.event === 'reconciled').length < target) {
      if (performance.now() > deadline) throw new Error(`no ${n} reconcile passes within ${GIVE_UP_MS} ms: ${f.daemon.diagnostics()}`);
      await sleep(100);
    }
  }
});
