// Conformance: concurrent requests (CONTRACT.md, "Errors and atomicity": two creates for one address or
// one port cannot both succeed) and many creates in parallel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adoptInterface, echo, links, ping, settle, startSocatEcho } from '@nodenet/testkit';
import { BACKENDS, NODE_GATEWAY, NODE_PREFIX_LENGTH, NodeFixture } from '../src/index.js';

const HANDLE_RE = /^nni-[0-9a-f]{8}$/;

async function nodenetLinks(ns: string): Promise<string[]> {
  return (await links(ns))
    .map((l) => l.ifname)
    .filter((n) => /^nn[ih]-/.test(n))
    .sort();
}

/** Runs `fn` over `items` with at most `limit` at a time (process spawns on 2 cores). */
async function inBatches<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += limit) {
    out.push(...(await Promise.all(items.slice(i, i + limit).map((item, j) => fn(item, i + j)))));
  }
  return out;
}

describe.each(BACKENDS)('concurrency (%s backend)', (backend) => {
  let f: NodeFixture;
  beforeAll(async () => {
    f = await NodeFixture.start({ backend });
  });
  afterAll(() => f?.close());

  it('40 parallel creates (netns + a published port each) all succeed with distinct names, and all work', async () => {
    const count = 40;
    const namespaces = await inBatches(Array.from({ length: count }), 10, () => f.topology.createInstanceNamespace());
    const instances = namespaces.map((ns) => ({ ns, address: f.nextAddress(), port: f.nextPort() }));
    const started = performance.now();
    const outcomes = await Promise.all(
      instances.map((i) => settle(f.api.createInterface({ ipAddress: i.address, ports: [i.port], netns: i.ns }))),
    );
    const elapsed = performance.now() - started;
    console.log(
      `[measure] ${backend}: ${count} parallel CreateInterface (netns + 1 port) took ${elapsed.toFixed(0)} ms (${(elapsed / count).toFixed(1)} ms per create)`,
    );
    const failures = outcomes.filter((o) => !o.ok);
    expect(failures, JSON.stringify(failures.slice(0, 3))).toEqual([]);
    const names = outcomes.map((o) => (o.ok ? o.value.interfaceName : ''));
    for (const name of names) expect(name).toMatch(HANDLE_RE);
    expect(new Set(names).size).toBe(count);

    // Every instance talks: to the gateway, and through its published port from the world.
    await inBatches(instances, 10, async (i) => {
      const p = await ping(i.ns, NODE_GATEWAY);
      expect(p.ok, p.output).toBe(true);
      await startSocatEcho(f.scope, i.ns, 'tcp', i.port);
    });
    const replies = await inBatches(instances, 8, (i) => echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port: i.port }));
    expect(replies.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);

    const deleteStarted = performance.now();
    const deletes = await Promise.all(names.map((interfaceName) => settle(f.api.deleteInterface({ interfaceName }))));
    console.log(`[measure] ${backend}: ${count} parallel DeleteInterface took ${(performance.now() - deleteStarted).toFixed(0)} ms`);
    expect(deletes.filter((d) => !d.ok)).toEqual([]);
  });

  it('10 concurrent creates for one address (different ports): exactly one wins, the others get ALREADY_EXISTS', async () => {
    const address = f.nextAddress();
    const ports = Array.from({ length: 10 }, () => f.nextPort());
    const before = await nodenetLinks(f.ns);
    const outcomes = await Promise.all(ports.map((port) => settle(f.api.createInterface({ ipAddress: address, ports: [port] }))));
    const winners = outcomes.flatMap((o, i) => (o.ok ? [{ port: ports[i]!, handle: o.value.interfaceName }] : []));
    expect(winners).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok).map((o) => (o.ok ? '' : o.codeName))).toEqual(Array(9).fill('ALREADY_EXISTS'));
    const after = await nodenetLinks(f.ns);
    expect(
      after.filter((n) => !before.includes(n)),
      'one veth pair was made',
    ).toHaveLength(2);

    // The winner's port is published, the losers' are not.
    const winner = winners[0]!;
    const ns = await f.topology.createInstanceNamespace();
    await adoptInterface({
      nodeNs: f.ns,
      handle: winner.handle,
      instanceNs: ns,
      address,
      prefixLength: NODE_PREFIX_LENGTH,
      gateway: NODE_GATEWAY,
    });
    for (const port of ports) await startSocatEcho(f.scope, ns, 'tcp', port);
    for (const port of ports) {
      const r = await echo(f.world.ns, { protocol: 'tcp', host: f.node.address, port, timeoutMs: 1500 });
      expect(r.ok, `port ${port} (winner ${winner.port}): ${r.error}`).toBe(port === winner.port);
    }
  });

  it('10 concurrent creates for one port (different addresses): exactly one wins, the losers leave nothing', async () => {
    const port = f.nextPort();
    const addresses = Array.from({ length: 10 }, () => f.nextAddress());
    const before = await nodenetLinks(f.ns);
    const outcomes = await Promise.all(addresses.map((ipAddress) => settle(f.api.createInterface({ ipAddress, ports: [port] }))));
    const winners = outcomes.flatMap((o, i) => (o.ok ? [addresses[i]!] : []));
    expect(winners).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok).map((o) => (o.ok ? '' : o.codeName))).toEqual(Array(9).fill('ALREADY_EXISTS'));
    expect((await nodenetLinks(f.ns)).filter((n) => !before.includes(n))).toHaveLength(2);
    // A loser's address is free.
    const loser = addresses.find((a) => a !== winners[0])!;
    expect((await f.api.createInterface({ ipAddress: loser })).interfaceName).toMatch(HANDLE_RE);
  });

  it('10 concurrent identical creates all return the same name', async () => {
    const request = { ipAddress: f.nextAddress(), ports: [f.nextPort()] };
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => settle(f.api.createInterface(request))));
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    const names = new Set(outcomes.map((o) => (o.ok ? o.value.interfaceName : '')));
    expect(names.size).toBe(1);
  });

  it('10 concurrent deletes of one handle all return OK and remove it', async () => {
    const r = await f.api.createInterface({ ipAddress: f.nextAddress() });
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => settle(f.api.deleteInterface({ interfaceName: r.interfaceName }))));
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(await nodenetLinks(f.ns)).not.toContain(r.interfaceName);
    expect(await nodenetLinks(f.ns)).not.toContain(r.hostInterfaceName);
  });
});
