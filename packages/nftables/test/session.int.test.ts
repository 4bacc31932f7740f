/**
 * The `nft -i` session that applies addInstance / removeInstance, on the real kernel in a test namespace:
 * it is used (no one-shot nft for those), a failed line applies nothing, one-shot rewrites of the tables do
 * not confuse it, and it recovers from its process being killed.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InternalError, type IfName, type InstanceRules, type Ipv4Address } from '@nodenet/core';
import { CommandError, SessionExitedError } from '@nodenet/sys';
import { NftPacketFilter } from '../src/index.js';
import { both, deleteNamespaces, filterBase, mapping, newNamespace, nft, recordingLogger, sh, snapshot } from './fixture.js';

const names: string[] = [];
const filters: NftPacketFilter[] = [];
afterEach(() => {
  for (const f of filters.splice(0)) f.close();
});
afterAll(async () => {
  await deleteNamespaces(names);
});

function instance(i: number, ports = both(30000 + i)): InstanceRules {
  return { hostIfname: `nnh-${i.toString(16).padStart(8, '0')}` as IfName, ipv4: `198.19.1.${i + 2}` as Ipv4Address, ports };
}

async function setUp(label: string) {
  const ns = await newNamespace(label, names);
  const log = recordingLogger();
  const filter = new NftPacketFilter({ netns: ns, logger: log.logger });
  filters.push(filter);
  await filter.ensureBase(filterBase());
  return { ns, filter, log };
}

/** The pids of `nft -i` processes in the namespace (the session's; nsenter execs, so it is the child itself). */
async function sessionPids(ns: string): Promise<number[]> {
  const pids = (await sh('ip', ['netns', 'pids', ns]))
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);
  const out: number[] = [];
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const argv = cmdline.split('\0');
    if (argv[0]?.endsWith('nft') && argv.includes('-i')) out.push(pid);
  }
  return out;
}

async function onlySession(ns: string): Promise<number> {
  const pids = await sessionPids(ns);
  expect(pids).toHaveLength(1);
  return pids[0]!;
}

/** Waits until the process is gone (reaped by its parent, this process). */
async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null)) === null) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${pid} did not go away`);
}

const ports = (s: Awaited<ReturnType<typeof snapshot>>, address: string) => s.ports.filter((p) => p.address === address);
const sources = (s: Awaited<ReturnType<typeof snapshot>>, address: string) => s.sources.filter((p) => p.address === address);

describe('NftPacketFilter element changes through an nft -i session', () => {
  it('addInstance and removeInstance go through one long-lived nft -i, not a one-shot nft', async () => {
    const { ns, filter, log } = await setUp('sess-use');
    const oneShotBefore = log.entries.filter((e) => e.msg === 'nft transaction').length;
    for (let i = 0; i < 5; i++) await filter.addInstance(instance(i));
    const pid = await onlySession(ns);
    let s = await snapshot(ns);
    expect(s.ports).toHaveLength(10);
    expect(s.sources).toHaveLength(5);
    for (let i = 0; i < 5; i++) await filter.removeInstance(instance(i));
    s = await snapshot(ns);
    expect(s.ports).toEqual([]);
    expect(s.sources).toEqual([]);
    expect(await onlySession(ns)).toBe(pid);
    expect(log.entries.filter((e) => e.msg === 'nft transaction')).toHaveLength(oneShotBefore);
    expect(log.entries.filter((e) => e.msg === 'nft session transaction')).toHaveLength(10);
  });

  it('a failing command fails the whole line: nothing of the transaction is applied, and the error is a CommandError', async () => {
    const { ns, filter } = await setUp('sess-atomic');
    const a = instance(1, [...both(31000), mapping('tcp', 31001)]);
    // The bridge table is gone: the map elements (first on the line) go in, the set element fails.
    await nft(ns, 'delete table bridge nodenet\n');
    const err = await filter.addInstance(a).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toBeInstanceOf(InternalError);
    expect((err as CommandError).stderr).toMatch(/^Error: No such file or directory/m);
    expect((err as CommandError).stderr).toContain('add element bridge nodenet allowed_sources { "nnh-00000001" . 198.19.1.3 }');
    expect((err as Error).message).toContain(`publish the ports of ${a.ipv4!}`);
    const map = await sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'map', 'ip', 'nodenet', 'published_ports']);
    expect(map).not.toContain('31000');
    // Repaired, the same session applies it.
    await filter.ensureBase(filterBase());
    await filter.addInstance(a);
    const s = await snapshot(ns);
    expect(ports(s, a.ipv4!)).toHaveLength(3);
    expect(sources(s, a.ipv4!)).toEqual([{ ifname: a.hostIfname, address: a.ipv4! }]);
  });

  it('a group of concurrent adds with one conflicting request: the others still apply, the conflict is replaced', async () => {
    const { ns, filter, log } = await setUp('sess-group');
    // 31500/tcp is left mapped to an address no instance has.
    await filter.addInstance({
      hostIfname: 'nnh-0000dead' as IfName,
      ipv4: '198.19.1.250' as Ipv4Address,
      ports: [mapping('tcp', 31500)],
    });
    const all = Array.from({ length: 8 }, (_, i) => instance(i + 10, i === 3 ? both(31500) : both(31510 + i)));
    await Promise.all(all.map((r) => filter.addInstance(r)));
    const s = await snapshot(ns);
    for (const r of all) expect(ports(s, r.ipv4!), r.ipv4).toHaveLength(2);
    expect(s.ports.filter((p) => p.hostPort === 31500).map((p) => p.address)).toEqual([all[3]!.ipv4, all[3]!.ipv4]);
    expect(log.entries.some((e) => e.msg === 'replacing published ports left mapped to another address')).toBe(true);
    await Promise.all(all.map((r) => filter.removeInstance(r)));
    // The leftover's mapping was replaced, so nothing is left.
    expect((await snapshot(ns)).ports).toEqual([]);
  });

  it('keeps working when one-shot nft deletes and recreates the tables under it (ensureBase, removeBase)', async () => {
    const { ns, filter } = await setUp('sess-rewrite');
    await filter.addInstance(instance(1));
    const pid = await onlySession(ns);
    await nft(ns, 'delete table ip nodenet\ndelete table bridge nodenet\n');
    expect(await filter.ensureBase(filterBase())).not.toEqual([]);
    await filter.addInstance(instance(2));
    let s = await snapshot(ns);
    expect(s.ports.map((p) => p.address)).toEqual([instance(2).ipv4, instance(2).ipv4]);
    expect(s.sources.map((p) => p.address)).toEqual([instance(2).ipv4]);
    await filter.removeBase();
    await filter.ensureBase(filterBase());
    await filter.addInstance(instance(3));
    await filter.removeInstance(instance(2)); // gone with the tables: fine
    s = await snapshot(ns);
    expect(s.ports.map((p) => p.address)).toEqual([instance(3).ipv4, instance(3).ipv4]);
    expect(await onlySession(ns)).toBe(pid);
    // The tables gone while the session runs: removeInstance is still fine, addInstance says what is missing.
    await filter.removeBase();
    await filter.removeInstance(instance(3));
    await expect(filter.addInstance(instance(4))).rejects.toThrow(/No such file or directory/);
    expect(await onlySession(ns)).toBe(pid);
  });

  it('a request whose process is killed fails; the next one starts a new process and works', async () => {
    const { ns, filter } = await setUp('sess-kill');
    await filter.addInstance(instance(1));
    const first = await onlySession(ns);
    // Stopped, the process cannot read the request: it is certainly pending when the process dies.
    process.kill(first, 'SIGSTOP');
    const pending = filter.addInstance(instance(2)).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    process.kill(first, 'SIGKILL');
    const err = await pending;
    expect(err).toBeInstanceOf(SessionExitedError);
    expect(err).toBeInstanceOf(InternalError);
    expect((err as Error).message).toMatch(/exited \(SIGKILL\)/);
    expect(ports(await snapshot(ns), instance(2).ipv4!)).toEqual([]);
    await gone(first);

    await filter.addInstance(instance(2));
    const second = await onlySession(ns);
    expect(second).not.toBe(first);
    expect(ports(await snapshot(ns), instance(2).ipv4!)).toHaveLength(2);

    // Killed while idle: the next request starts another process.
    process.kill(second, 'SIGKILL');
    await gone(second);
    await new Promise((r) => setTimeout(r, 20));
    await filter.removeInstance(instance(2));
    expect(ports(await snapshot(ns), instance(2).ipv4!)).toEqual([]);
    expect(await onlySession(ns)).not.toBe(second);
  });

  it('close() ends the process; a later change starts another', async () => {
    const { ns, filter } = await setUp('sess-close');
    await filter.addInstance(instance(1));
    const pid = await onlySession(ns);
    filter.close();
    await gone(pid);
    expect(await sessionPids(ns)).toEqual([]);
    await filter.removeInstance(instance(1));
    expect(await onlySession(ns)).not.toBe(pid);
    expect((await snapshot(ns)).ports).toEqual([]);
  });
});
