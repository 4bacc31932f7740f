/**
 * EtcdMembership against a real etcd (Debian's etcd-server) started by the test on free loopback ports.
 * Every test uses its own key prefix; nodes, proxies and clients are stopped after each test, etcd after
 * the file. Times are measured and printed ([measure] lines), never asserted tightly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { FailedPreconditionError, UnavailableError } from '@nodenet/core';
import { EtcdMembership, type EtcdMembershipOptions } from '../src/index.js';
import { FAST_RETRY, TTL, measure, rec, useEtcd, type TestMembership } from './etcd-suite.js';
import { PeerRecorder, TcpProxy, freePort, waitFor } from './harness.js';

const EXPIRY_BOUND_MS = TTL * 1000 + 10_000; // generous: "gone within TTL + ~2 s" is measured, not asserted

const suite = useEtcd();
const { newPrefix } = suite;
let raw: Etcd3;

beforeAll(() => {
  raw = new Etcd3({ hosts: [suite.etcd.url] });
});

afterAll(() => {
  raw?.close();
});

/** An EtcdMembership for `name`, started (its stop() is registered for cleanup). */
async function node(prefix: string, name: string, options: Partial<EtcdMembershipOptions> = {}): Promise<TestMembership> {
  const t = suite.membership(prefix, name, options);
  await t.m.start(t.peers.listener);
  return t;
}

async function proxyToEtcd(): Promise<TcpProxy> {
  const proxy = await TcpProxy.start(suite.etcd.clientPort);
  suite.defer(() => proxy.close());
  return proxy;
}

async function value(key: string): Promise<string | null> {
  return raw.get(key).string();
}

async function leaseOf(key: string): Promise<string | null> {
  const res = await raw.kv.range({ key: Buffer.from(key) });
  return res.kvs[0]?.lease ?? null;
}

function names(t: TestMembership): string[] {
  return t.peers.summary();
}

describe('EtcdMembership with a real etcd', () => {
  it('three nodes see each other (never themselves); records and claims are stored on the lease', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    const c = await node(p, 'c');
    expect(a.peers.latest()).toEqual([]); // start() calls the listener at once
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await c.m.announce(rec('c', '198.18.0.3', '198.19.3.0/24'));
    await waitFor('a to see b and c', () => names(a).join() === 'b=198.18.0.2@198.19.2.0/24,c=198.18.0.3@198.19.3.0/24', 5000);
    await waitFor('b to see a and c', () => names(b).join() === 'a=198.18.0.1@198.19.1.0/24,c=198.18.0.3@198.19.3.0/24', 5000);
    await waitFor('c to see a and b', () => names(c).join() === 'a=198.18.0.1@198.19.1.0/24,b=198.18.0.2@198.19.2.0/24', 5000);
    expect(a.m.peers().map((x) => x.name)).toEqual(['b', 'c']);

    expect(JSON.parse((await value(`${p}/nodes/a`))!)).toEqual({
      version: 1,
      name: 'a',
      underlayAddress: '198.18.0.1',
      subnet: '198.19.1.0/24',
    });
    expect(await value(`${p}/subnets/198.19.1.0_24`)).toBe('a');
    const lease = a.m.leaseInfo()?.id;
    expect(lease).toBeTruthy();
    expect(await leaseOf(`${p}/nodes/a`)).toBe(lease);
    expect(await leaseOf(`${p}/subnets/198.19.1.0_24`)).toBe(lease);
  });

  it('a changed record reaches peers; a changed subnet releases the old claim', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).join() === 'b=198.18.0.2@198.19.2.0/24', 5000);
    const callsBefore = a.peers.calls.length;
    await b.m.announce(rec('b', '198.18.0.22', '198.19.22.0/24'));
    await waitFor('a to see the new b', () => names(a).join() === 'b=198.18.0.22@198.19.22.0/24', 5000);
    expect(a.peers.calls.length).toBe(callsBefore + 1); // one call per change, no intermediate states
    expect(await value(`${p}/subnets/198.19.2.0_24`)).toBeNull();
    expect(await value(`${p}/subnets/198.19.22.0_24`)).toBe('b');
    // Announcing the same record again changes nothing peers can see.
    await b.m.announce(rec('b', '198.18.0.22', '198.19.22.0/24'));
    await new Promise((r) => setTimeout(r, 300));
    expect(a.peers.calls.length).toBe(callsBefore + 1);
  });

  it('a stopped node (no revoke) disappears when its lease expires; stop() ends keepalive and watch', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).length === 1, 5000);
    await waitFor('b to see a', () => names(b).length === 1, 5000);

    const lease = b.m.leaseInfo()!;
    const stoppedAt = Date.now();
    await b.m.stop();
    expect(await value(`${p}/nodes/b`)).not.toBeNull(); // not revoked: peers keep it until the TTL runs out
    const callsOfB = b.peers.calls.length;

    const gone = await waitFor(
      'a to drop b',
      () => a.peers.calls.find((c) => c.at >= stoppedAt && c.peers.length === 0),
      EXPIRY_BOUND_MS,
      10,
    );
    const expiresAt = lease.renewedAt + TTL * 1000;
    measure('stop (no revoke) -> peer listener without the node', gone.at - stoppedAt);
    measure('lease expiry (last renewal + TTL) -> peer listener called', gone.at - expiresAt);
    expect(gone.at - stoppedAt).toBeLessThan(EXPIRY_BOUND_MS);

    // b's watch is stopped: a's own later change reaches no listener of b.
    await a.m.announce(rec('a', '198.18.0.11', '198.19.1.0/24'));
    await new Promise((r) => setTimeout(r, 300));
    expect(b.peers.calls.length).toBe(callsOfB);
  });

  it('restartGraceSeconds: a stopped node stays a peer past its TTL (its record moved to an unrenewed lease); a restart takes it over; stopped for good, it goes with the grace', async () => {
    const p = newPrefix();
    const grace = TTL + 4;
    const self = rec('a', '198.18.0.1', '198.19.1.0/24');
    const a = await node(p, 'a', { restartGraceSeconds: grace });
    const b = await node(p, 'b');
    await a.m.announce(self);
    await waitFor('b to see a', () => names(b).length === 1, 5000);
    const oldLease = a.m.leaseInfo()!.id;
    const stoppedAt = Date.now();
    await a.m.stop();
    const graceLease = await leaseOf(`${p}/nodes/a`);
    expect(graceLease).not.toBeNull();
    expect(graceLease).not.toBe(oldLease);
    expect(await leaseOf(`${p}/subnets/198.19.1.0_24`)).toBe(graceLease);
    const neverLostA = () => b.peers.calls.filter((c) => c.at >= stoppedAt).every((c) => c.peers.some((x) => x.name === 'a'));

    // Past the old lease's TTL (the daemon is still "restarting"), b has not lost a.
    await new Promise((r) => setTimeout(r, TTL * 1000 + 2000));
    expect(await value(`${p}/nodes/a`)).not.toBeNull();
    expect(neverLostA()).toBe(true);

    // The restarted node takes the record over; the grace lease then runs out taking nothing with it.
    const a2 = await node(p, 'a', { restartGraceSeconds: grace });
    await a2.m.announce(self);
    expect(await leaseOf(`${p}/nodes/a`)).toBe(a2.m.leaseInfo()!.id);
    expect(await leaseOf(`${p}/subnets/198.19.1.0_24`)).toBe(a2.m.leaseInfo()!.id);
    await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + (grace + 2) * 1000 - Date.now())));
    expect(neverLostA()).toBe(true);
    expect(names(b)).toEqual(['a=198.18.0.1@198.19.1.0/24']);

    // Stopped without a restart: b drops it once the grace lease ends.
    const stopped2 = Date.now();
    await a2.m.stop();
    const gone = await waitFor(
      'b to drop a',
      () => b.peers.calls.find((c) => c.at >= stopped2 && c.peers.length === 0),
      grace * 1000 + 10_000,
      10,
    );
    measure(`stop (restartGraceSeconds ${grace}) -> peer listener without the node`, gone.at - stopped2);
    expect(await value(`${p}/nodes/a`)).toBeNull();
  });

  it('revokeOnStop removes the node at once', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b', { revokeOnStop: true });
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).length === 1, 5000);
    const stoppedAt = Date.now();
    await b.m.stop();
    expect(await value(`${p}/nodes/b`)).toBeNull();
    expect(await value(`${p}/subnets/198.19.2.0_24`)).toBeNull();
    const gone = await waitFor('a to drop b', () => a.peers.calls.find((c) => c.at >= stoppedAt && c.peers.length === 0), 5000, 5);
    measure('stop (revokeOnStop) -> peer listener without the node', gone.at - stoppedAt);
  });

  it('refuses a subnet overlapping a live node (same and other prefix lengths), accepts it after the holder expired', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.4.0/24'));

    for (const subnet of ['198.19.4.0/24', '198.19.0.0/16', '198.19.4.128/25']) {
      const err = await b.m.announce(rec('b', '198.18.0.2', subnet)).catch((e: unknown) => e);
      expect(err, subnet).toBeInstanceOf(FailedPreconditionError);
      expect((err as Error).message).toContain('live node a');
      expect((err as Error).message).toContain('198.19.4.0/24');
    }
    const sameUnderlay = await b.m.announce(rec('b', '198.18.0.1', '198.19.5.0/24')).catch((e: unknown) => e);
    expect(sameUnderlay).toBeInstanceOf(FailedPreconditionError);
    expect((sameUnderlay as Error).message).toContain('live node a');
    // A refused announce leaves nothing behind.
    expect(await value(`${p}/nodes/b`)).toBeNull();
    expect((await raw.getAll().prefix(`${p}/subnets/`).keys()).sort()).toEqual([`${p}/subnets/198.19.4.0_24`]);

    const stoppedAt = Date.now();
    await a.m.stop();
    await waitFor("a's record to expire", () => names(b).length === 0 && b.peers.calls.some((c) => c.at >= stoppedAt), EXPIRY_BOUND_MS);
    await b.m.announce(rec('b', '198.18.0.2', '198.19.0.0/16'));
    measure('holder stopped -> overlapping announce accepted', Date.now() - stoppedAt);

    // Now the other way round: a (restarted) is refused, naming b.
    const a2 = await node(p, 'a');
    const err = await a2.m.announce(rec('a', '198.18.0.1', '198.19.4.0/24')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toContain('live node b');
  });

  it('concurrent announces of overlapping subnets: exactly one wins', async () => {
    for (let round = 0; round < 5; round++) {
      const p = newPrefix();
      const subnets = ['198.19.8.0/24', '198.19.8.0/23', '198.19.8.0/22', '198.19.8.128/25', '198.19.9.0/24'];
      const nodes = await Promise.all(subnets.map((_, i) => node(p, `n${i}`)));
      const results = await Promise.allSettled(nodes.map((n, i) => n.m.announce(rec(`n${i}`, `198.18.0.${i + 1}`, subnets[i]!))));
      const won = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof FailedPreconditionError).length;
      expect(won + refused, `round ${round}: ${results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')).join('; ')}`).toBe(
        subnets.length,
      );
      // 198.19.9.0/24 overlaps only the /23 and /22; whatever won, the live claims never overlap.
      const claims = (await raw.getAll().prefix(`${p}/subnets/`).keys()).map((k) => k.slice(`${p}/subnets/`.length).replace('_', '/'));
      const parsed = claims.map((c) => rec('x', '198.18.0.1', c).subnet);
      for (let i = 0; i < parsed.length; i++)
        for (let j = i + 1; j < parsed.length; j++) expect(parsed[i]!.overlaps(parsed[j]!), claims.join(',')).toBe(false);
      expect(parsed.length).toBe(won);
      expect(won).toBeGreaterThanOrEqual(1);
      for (const n of nodes) await n.m.stop();
    }
  });

  it('re-announcing the same record after a restart takes over the old claim; another machine with the name is refused', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    const self = rec('a', '198.18.0.1', '198.19.1.0/24');
    await a.m.announce(self);
    await waitFor('b to see a', () => names(b).length === 1, 5000);
    const seenSince = Date.now();
    const oldLease = a.m.leaseInfo()!.id;
    await a.m.stop(); // a daemon restart: no revoke, the old lease lives on

    const a2 = await node(p, 'a');
    await a2.m.announce(self); // while the old record and claim still live
    const newLease = a2.m.leaseInfo()!.id;
    expect(newLease).not.toBe(oldLease);
    expect(await leaseOf(`${p}/nodes/a`)).toBe(newLease);
    expect(await leaseOf(`${p}/subnets/198.19.1.0_24`)).toBe(newLease);

    // Another machine using the name (other underlay address) is refused while a2 lives.
    const imposter = await node(p, 'a');
    const err = await imposter.m.announce(rec('a', '198.18.0.9', '198.19.9.0/24')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as Error).message).toContain('node name a is already announced by a live node with underlay address 198.18.0.1');

    // The old lease expires and takes nothing with it: b never loses a.
    await new Promise((r) => setTimeout(r, TTL * 1000 + 2000));
    expect(await value(`${p}/nodes/a`)).not.toBeNull();
    expect(b.peers.calls.filter((c) => c.at >= seenSince).every((c) => c.peers.some((x) => x.name === 'a'))).toBe(true);
    expect(names(b)).toEqual(['a=198.18.0.1@198.19.1.0/24']);
  });

  it('the watch resumes from its last revision after a disconnection and gets the changes made meanwhile', async () => {
    const p = newPrefix();
    const proxy = await proxyToEtcd();
    const a = await node(p, 'a', { endpoints: [proxy.url] });
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).length === 1, 5000);

    const cutAt = Date.now();
    proxy.cut();
    await waitFor('a to notice the disconnection', () => a.log.find('warn', 'etcd watch disconnected', cutAt), 10_000);
    await b.m.announce(rec('b', '198.18.0.22', '198.19.2.0/24'));
    const c = await node(p, 'c');
    await c.m.announce(rec('c', '198.18.0.3', '198.19.3.0/24'));
    const restoredAt = Date.now();
    proxy.restore();
    await waitFor('a to get the changes', () => names(a).join() === 'b=198.18.0.22@198.19.2.0/24,c=198.18.0.3@198.19.3.0/24', 20_000);
    measure('link restored -> changes delivered (watch resume)', Date.now() - restoredAt);
    expect(a.log.find('info', 'etcd watch resumed', cutAt)).toBeTruthy();
    expect(a.log.find('info', 're-listed', cutAt)).toBeUndefined(); // resumed, not re-listed
  });

  it('after compaction of the revision it wanted, the watcher re-lists and converges', async () => {
    const p = newPrefix();
    const proxy = await proxyToEtcd();
    const a = await node(p, 'a', { endpoints: [proxy.url] });
    const b = await node(p, 'b');
    const d = await node(p, 'd', { revokeOnStop: true });
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await d.m.announce(rec('d', '198.18.0.4', '198.19.4.0/24'));
    await waitFor('a to see b and d', () => names(a).length === 2, 5000);

    const cutAt = Date.now();
    proxy.cut();
    await waitFor('a to notice the disconnection', () => a.log.find('warn', 'etcd watch disconnected', cutAt), 10_000);
    for (const last of [31, 32, 33]) await b.m.announce(rec('b', `198.18.0.${last}`, '198.19.2.0/24'));
    const c = await node(p, 'c');
    await c.m.announce(rec('c', '198.18.0.3', '198.19.3.0/24'));
    await d.m.stop(); // revoked: gone while a cannot see it
    const revision = Number((await raw.kv.range({ key: Buffer.from(`${p}/`) })).header.revision);
    await raw.kv.compact({ revision, physical: true });

    const restoredAt = Date.now();
    proxy.restore();
    await waitFor('a to converge', () => names(a).join() === 'b=198.18.0.33@198.19.2.0/24,c=198.18.0.3@198.19.3.0/24', 20_000);
    measure('link restored -> converged after compaction (re-list)', Date.now() - restoredAt);
    expect(a.log.find('warn', 'canceled the watch', cutAt)).toBeTruthy();
    expect(a.log.find('info', 're-listed', cutAt)).toBeTruthy();
    // And the new watch works.
    await b.m.announce(rec('b', '198.18.0.34', '198.19.2.0/24'));
    await waitFor('a to see the next change', () => names(a).includes('b=198.18.0.34@198.19.2.0/24'), 5000);
  });

  it('a lease lost in a partition longer than the TTL is re-created and the node re-announced', async () => {
    const p = newPrefix();
    const proxy = await proxyToEtcd();
    const a = await node(p, 'a', { endpoints: [proxy.url] });
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await waitFor('b to see a', () => names(b).length === 1, 5000);

    const renewed = a.m.leaseInfo()!;
    const cutAt = Date.now();
    proxy.cut();
    const gone = await waitFor('b to drop a', () => b.peers.calls.find((c) => c.at >= cutAt && c.peers.length === 0), EXPIRY_BOUND_MS, 10);
    measure('partition -> peer drops the node', gone.at - cutAt);
    measure('lease expiry (last renewal + TTL) -> peer listener called (partition)', gone.at - (renewed.renewedAt + TTL * 1000));
    await waitFor('a to notice the lost lease', () => a.log.find('warn', 'lost the etcd lease', cutAt), 3 * TTL * 1000 + 10_000);
    const restoredAt = Date.now();
    proxy.restore();
    const back = await waitFor('b to see a again', () => b.peers.calls.find((c) => c.at >= restoredAt && c.peers.length === 1), 20_000, 10);
    measure('link restored -> peer sees the re-announced node', back.at - restoredAt);
    await waitFor('a to log the re-announce', () => a.log.find('info', 're-announced this node', cutAt), 5000);
    expect(await leaseOf(`${p}/nodes/a`)).toBe(a.m.leaseInfo()?.id);
    expect(a.m.leaseInfo()?.id).not.toBe(renewed.id);
  });

  it('malformed records under the prefix are logged and ignored', async () => {
    const p = newPrefix();
    await raw.put(`${p}/nodes/garbage`).value('not json');
    await raw
      .put(`${p}/nodes/liar`)
      .value(JSON.stringify({ version: 1, name: 'someone', underlayAddress: '198.18.0.7', subnet: '198.19.7.0/24' }));
    await raw.put(`${p}/nodes/old`).value(JSON.stringify({ name: 'old', underlayAddress: '198.18.0.8', subnet: '198.19.8.0/24' }));
    await raw
      .put(`${p}/nodes/bad name`)
      .value(JSON.stringify({ version: 1, name: 'bad name', underlayAddress: '198.18.0.9', subnet: '198.19.9.0/24' }));
    await raw.put(`${p}/subnets/nonsense`).value('x');
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    expect(a.peers.latest()).toEqual([]);
    expect(a.log.lines.filter((l) => l.level === 'warn' && l.msg.includes('malformed node record')).length).toBe(4);
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).join() === 'b=198.18.0.2@198.19.2.0/24', 5000);

    // While watching: a new malformed record is ignored; a peer's record turned malformed counts as absent.
    await raw.put(`${p}/nodes/c`).value('{"version":1,"name":"c"}');
    await raw.put(`${p}/nodes/b`).value('{"version":"one"}');
    await waitFor('a to drop the malformed b', () => names(a).length === 0, 5000);
    expect(a.log.find('warn', 'malformed node record')).toBeTruthy();
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b again', () => names(a).join() === 'b=198.18.0.2@198.19.2.0/24', 5000);
    // A subnet a record claims but is malformed does not block others; the stray claim key is ignored too.
    const c = await node(p, 'd');
    await c.m.announce(rec('d', '198.18.0.4', '198.19.7.0/24'));
  });

  it('the watch and leases survive an etcd restart on the same data dir; changes made after it are delivered', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('a to see b', () => names(a).length === 1, 5000);

    const stoppedAt = Date.now();
    raw.close();
    await suite.etcd.stop();
    await waitFor('a to notice etcd is gone', () => a.log.find('warn', 'etcd watch disconnected', stoppedAt), 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    await suite.etcd.start();
    const startedAt = Date.now();
    raw = new Etcd3({ hosts: [suite.etcd.url] });
    measure('etcd down (stop -> start)', startedAt - stoppedAt);

    // A change made once etcd is back: b moves, c joins.
    await retry(() => b.m.announce(rec('b', '198.18.0.22', '198.19.2.0/24')), 20_000);
    const c = await node(p, 'c');
    await c.m.announce(rec('c', '198.18.0.3', '198.19.3.0/24'));
    await waitFor('a to get the changes', () => names(a).join() === 'b=198.18.0.22@198.19.2.0/24,c=198.18.0.3@198.19.3.0/24', 20_000);
    measure('etcd started -> watcher delivered the changes', Date.now() - startedAt);
    expect(a.log.find('info', 'etcd watch resumed', stoppedAt)).toBeTruthy();
    // Both nodes are still announced a TTL later (leases kept alive or re-created).
    await new Promise((r) => setTimeout(r, TTL * 1000 + 1000));
    expect(names(b)).toEqual(['a=198.18.0.1@198.19.1.0/24', 'c=198.18.0.3@198.19.3.0/24']);
    expect(names(c)).toEqual(['a=198.18.0.1@198.19.1.0/24', 'b=198.18.0.22@198.19.2.0/24']);
  });

  it('etcd down longer than the lease: the node re-announces on a new lease when etcd is back, taking over its records', async () => {
    const p = newPrefix();
    const a = await node(p, 'a');
    const b = await node(p, 'b');
    await a.m.announce(rec('a', '198.18.0.1', '198.19.1.0/24'));
    await b.m.announce(rec('b', '198.18.0.2', '198.19.2.0/24'));
    await waitFor('both to see each other', () => names(a).length === 1 && names(b).length === 1, 5000);
    const oldLease = a.m.leaseInfo()!.id;

    const stoppedAt = Date.now();
    raw.close();
    await suite.etcd.stop();
    await waitFor('a to give its lease up', () => a.log.find('warn', 'lost the etcd lease', stoppedAt), 3 * TTL * 1000 + 10_000);
    measure('etcd stopped -> client declares the lease lost', Date.now() - stoppedAt);
    await suite.etcd.start();
    const startedAt = Date.now();
    raw = new Etcd3({ hosts: [suite.etcd.url] });
    const reannounced = await waitFor('a to re-announce', () => a.log.find('info', 're-announced this node', startedAt), 20_000);
    measure('etcd started -> node re-announced on a new lease', reannounced.at - startedAt);
    const newLease = a.m.leaseInfo()!.id;
    expect(newLease).not.toBe(oldLease);
    expect(await leaseOf(`${p}/nodes/a`)).toBe(newLease);
    expect(await leaseOf(`${p}/subnets/198.19.1.0_24`)).toBe(newLease);
    // etcd restored the old lease at its restart; when it expires it takes nothing: b keeps a.
    await new Promise((r) => setTimeout(r, TTL * 1000 + 2000));
    expect(await value(`${p}/nodes/a`)).not.toBeNull();
    expect(names(b)).toEqual(['a=198.18.0.1@198.19.1.0/24']);
    expect(names(a)).toEqual(['b=198.18.0.2@198.19.2.0/24']);
  });

  it('etcd unreachable at start: UnavailableError naming the endpoints, within the request timeout; a later start() succeeds', async () => {
    const port = await freePort(); // nothing listens there
    const refused = new EtcdMembership({
      endpoints: [`http://127.0.0.1:${port}`],
      prefix: '/x',
      leaseTtlSeconds: TTL,
      nodeName: 'a',
      requestTimeoutMs: 2000,
    });
    suite.defer(() => refused.stop());
    let t = Date.now();
    const err = await refused.start(() => undefined).catch((e: unknown) => e);
    measure('start() against a closed port -> UnavailableError', Date.now() - t);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(`http://127.0.0.1:${port}`);

    const proxy = await proxyToEtcd();
    proxy.blackhole(); // accepts, never answers
    const hanging = new EtcdMembership({
      endpoints: [proxy.url],
      prefix: '/x',
      leaseTtlSeconds: TTL,
      nodeName: 'a',
      requestTimeoutMs: 2000,
    });
    suite.defer(() => hanging.stop());
    t = Date.now();
    const err2 = await hanging.start(() => undefined).catch((e: unknown) => e);
    measure('start() against a silent endpoint (timeout 2000 ms) -> UnavailableError', Date.now() - t);
    expect(err2).toBeInstanceOf(UnavailableError);
    expect((err2 as Error).message).toContain(proxy.url);
    expect(Date.now() - t).toBeLessThan(2000 + 10_000);

    // The daemon retries start() in the background: once etcd answers, the same membership starts.
    const cutProxy = await proxyToEtcd();
    cutProxy.cut(); // connections refused
    const retried = new EtcdMembership({
      endpoints: [cutProxy.url],
      prefix: '/x',
      leaseTtlSeconds: TTL,
      nodeName: 'a',
      requestTimeoutMs: 2000,
      retryDelayMs: FAST_RETRY,
    });
    suite.defer(() => retried.stop());
    expect(await retried.start(() => undefined).catch((e: unknown) => e)).toBeInstanceOf(UnavailableError);
    cutProxy.restore();
    const peers = new PeerRecorder();
    t = Date.now();
    await retry(() => retried.start(peers.listener), 10_000);
    measure('etcd reachable again -> a retried start() succeeds', Date.now() - t);
    expect(peers.latest()).toEqual([]);
  });
});

async function retry(fn: () => Promise<unknown>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fn();
      return;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
