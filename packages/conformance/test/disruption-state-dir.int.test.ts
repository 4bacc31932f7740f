// The daemon's state directory read-only, then full, with traffic running (a ping every 20 ms
// between two instances, a TCP echo through a published port every 50 ms from outside the node). The state
// directory is a small tmpfs of the test's own (`mount -o remount,ro`, then a file that fills it).
// - Requests that must write state fail: read-only UNAVAILABLE, full RESOURCE_EXHAUSTED, each with a message
//   saying what to fix; a refused create leaves no trace in the kernel (rolled back), a refused delete
//   touches nothing (the release is noted before anything is removed).
// - The daemon stays up and SERVING: its instances keep their network, reads and idempotent repeats answer.
//   (Health stays SERVING on purpose: NOT_SERVING would make supervisors restart a daemon that cannot help
//   it, and a restart is worse: the start itself writes to the state directory.)
// - Once the directory is writable (or has space) again, creates and deletes work without a restart.
// Figures (first good create after the fix, replies lost) are printed (`[disruption]` lines), never asserted.
import { statfsSync, closeSync, openSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestScope, exec, rpcError, settle, startSocatEcho } from '@nodenet/testkit';
import { BACKENDS, NodeFixture, PortProbe, ReplyLog, type Instance, type Outage } from '../src/index.js';
import { consistencyProblems, sleep } from '../src/durability.js';

const GIVE_UP_MS = 15_000;
/** The state directory's tmpfs: room for a few hundred records. */
const STATE_TMPFS_SIZE = '2m';

/** Mounts a private tmpfs (mode 0700: the daemon refuses a world-writable state directory); unmounted by the scope. */
async function mountStateTmpfs(scope: TestScope): Promise<string> {
  const dir = join(await scope.createTempDir(), 'state');
  await exec('mkdir', ['-m', '0700', dir]);
  await exec('mount', ['-t', 'tmpfs', '-o', `size=${STATE_TMPFS_SIZE},mode=0700`, 'nodenet-test-state', dir]);
  // Lazy: the daemon's own mount namespace (ip netns exec) may still hold a copy while it stops.
  scope.defer(`unmount ${dir}`, async () => {
    await exec('umount', ['-l', dir], { allowFailure: true });
  });
  return dir;
}

/** Writes zeros into `file` until the file system says ENOSPC. */
function fillUp(file: string): number {
  const fd = openSync(file, 'w', 0o600);
  const chunk = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  return written;
}

describe.each(BACKENDS)('the state directory read-only, then full (%s backend)', (backend) => {
  let mountScope: TestScope;
  let stateDir: string;
  let f: NodeFixture;
  let a: Instance; // publishes a port (echo server), pings b
  let b: Instance;
  let port: number;
  let pings: ReplyLog;
  let probe: PortProbe;

  beforeAll(async () => {
    mountScope = await TestScope.create();
    stateDir = await mountStateTmpfs(mountScope);
    f = await NodeFixture.start({ backend, config: { stateDir, reconcileIntervalSeconds: 3600 } });
    port = f.nextPort();
    a = await f.addInstance(undefined, { ports: [port], via: 'netns' });
    b = await f.addInstance(undefined, { via: 'netns' });
    await startSocatEcho(f.scope, a.ns!, 'tcp', port);
    pings = ReplyLog.start(f.scope, a.ns!, b.address);
    probe = PortProbe.start(f.scope, f.world.ns, f.node.address, port);
    const start = Date.now();
    await pings.settledOutage(start, GIVE_UP_MS);
    await probe.settledOutage(start, GIVE_UP_MS);
  });
  afterAll(async () => {
    await pings?.stop();
    await probe?.stop();
    await f?.close();
    await mountScope?.cleanup();
  });

  const serving = async () => {
    const health = f.daemon.health();
    try {
      return [await health.check('', 2000), await health.check('network.Network', 2000)];
    } finally {
      health.close();
    }
  };
  const problems = async () => consistencyProblems(await f.ownedState());
  /** A create the daemon must refuse: its status and message, and no trace of it afterwards. */
  const refusedCreate = async (code: string, message: RegExp) => {
    const ns = await f.topology.createInstanceNamespace();
    const address = f.nextAddress();
    const newPort = f.nextPort();
    const failure = await rpcError(f.api.createInterface({ ipAddress: address, ports: [newPort], netns: ns }));
    expect(failure.codeName, failure.details).toBe(code);
    expect(failure.details).toMatch(message);
    // Rolled back: no link, no published port, no anti-spoofing element, no record, no temp file.
    const owned = await f.ownedState();
    expect(consistencyProblems(owned)).toEqual([]);
    expect(owned.records.map((r) => r.address).sort()).toEqual([a.address, b.address].sort());
    expect(owned.ports.some((p) => p.hostPort === newPort)).toBe(false);
    expect(owned.sources.some((s) => s.address === address)).toBe(false);
    expect((await exec('ip', ['-n', ns, '-o', 'link', 'show'])).stdout.trim().split('\n')).toHaveLength(1); // lo alone
    return { ns, address, newPort };
  };
  /** Polls a create from the moment the directory is fixed until one succeeds; its time and the handle. */
  const firstGoodCreate = async (fixedAt: number) => {
    for (;;) {
      const outcome = await settle(f.api.createInterface({ ipAddress: f.nextAddress(), ports: [f.nextPort()] }));
      if (outcome.ok) return { ms: Math.round(performance.now() - fixedAt), handle: outcome.value.interfaceName };
      if (performance.now() - fixedAt > GIVE_UP_MS)
        throw new Error(`no create succeeded after the fix: ${outcome.codeName} ${outcome.details}`);
      await sleep(20);
    }
  };
  const report = async (what: string, createMs: number, caseSince: number) => {
    const outages: Outage[] = await Promise.all([pings, probe].map((p) => p.settledOutage(caseSince, GIVE_UP_MS)));
    const o = (x: Outage) => `${x.lost}/${x.sent} lost, first good reply after ${x.outageMs} ms`;
    console.log(
      `[disruption] ${backend} | ${what} | first good create ${createMs} ms after the fix | ping ${o(outages[0]!)} | port ${o(outages[1]!)}`,
    );
    return outages;
  };

  it('read-only: writes are UNAVAILABLE saying to remount, nothing half-done, SERVING throughout; writable again: works without a restart', async () => {
    const caseSince = Date.now();
    const pid = f.daemon.pid;
    await exec('mount', ['-o', 'remount,ro', stateDir]);
    try {
      await refusedCreate('UNAVAILABLE', /read-only .*remount it read-write.*then retry/);
      // A delete is refused before it removes anything: b keeps its link, rules and record (and its traffic).
      const del = await rpcError(f.api.deleteInterface({ interfaceName: b.handle }));
      expect(del.codeName, del.details).toBe('UNAVAILABLE');
      expect(del.details).toMatch(/note the release of .*read-only/);
      expect(await problems()).toEqual([]);
      expect((await f.ownedState()).records.map((r) => r.handle)).toContain(b.handle);
      // What needs no write still answers: health, an identical create again, the CNI again, Inspect.
      expect(await serving()).toEqual(['SERVING', 'SERVING']);
      const again = await f.api.createInterface({ ipAddress: a.address, ports: [port], netns: a.ns! });
      expect(again.interfaceName).toBe(a.handle);
      expect((await f.inspect()).interfaces.map((i) => i.interfaceName).sort()).toEqual([a.handle, b.handle].sort());
      expect(f.daemon.logs.some((l) => typeof l.err === 'string' && /read-only/.test(l.err))).toBe(true);
    } finally {
      await exec('mount', ['-o', 'remount,rw', stateDir]);
    }
    const fixedAt = performance.now();
    const created = await firstGoodCreate(fixedAt);
    await f.api.deleteInterface({ interfaceName: created.handle });
    expect(await problems()).toEqual([]);
    expect(f.daemon.pid).toBe(pid);
    expect(f.daemon.exit).toBeUndefined();
    expect(await serving()).toEqual(['SERVING', 'SERVING']);
    await report('state dir read-only', created.ms, caseSince);
  });

  it('full: creates are RESOURCE_EXHAUSTED saying to free space, nothing half-done, SERVING throughout; space back: works without a restart', async () => {
    const caseSince = Date.now();
    const filler = join(stateDir, 'filler');
    const filled = fillUp(filler);
    try {
      expect(statfsSync(stateDir).bavail).toBe(0);
      await refusedCreate('RESOURCE_EXHAUSTED', /full .*free space on it, then retry/);
      await refusedCreate('RESOURCE_EXHAUSTED', /full/); // and again: nothing left over from the first
      expect(await serving()).toEqual(['SERVING', 'SERVING']);
      expect((await f.inspect()).interfaces).toHaveLength(2);
    } finally {
      await rm(filler, { force: true });
    }
    const fixedAt = performance.now();
    const created = await firstGoodCreate(fixedAt);
    await f.api.deleteInterface({ interfaceName: created.handle });
    expect(await problems()).toEqual([]);
    expect(await serving()).toEqual(['SERVING', 'SERVING']);
    await report(`state dir full (${Math.round(filled / 1024)} KiB filler)`, created.ms, caseSince);
    // Last (its traffic stops): b's delete, refused while read-only, goes through now.
    await f.api.deleteInterface({ interfaceName: b.handle });
    expect(await problems()).toEqual([]);
    expect((await f.ownedState()).records.map((r) => r.handle)).toEqual([a.handle]);
  });
});
