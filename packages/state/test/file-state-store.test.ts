import { mkdtemp, readdir, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CniRecord, IfName, InstanceRecord } from '@nodenet/core';
import { FileStateStore, StateFileError } from '@nodenet/state';

const cni: CniRecord = {
  name: 'nodenet0' as IfName,
  gateway: '198.19.1.1' as CniRecord['gateway'],
  subnet: '198.19.1.0/24',
  mtu: 1450,
  mac: '02:6e:c6:13:01:01',
  createdAt: '2026-11-28T00:00:00.000Z',
};

function instance(n: number, extra: Partial<InstanceRecord> = {}): InstanceRecord {
  const id = n.toString(16).padStart(8, '0');
  return {
    handle: `nni-${id}` as IfName,
    hostIfname: `nnh-${id}` as IfName,
    kind: 'veth',
    address: `198.19.1.${n + 1}` as InstanceRecord['address'],
    ports: [{ protocol: 'tcp', hostPort: 8080, instancePort: 80 } as InstanceRecord['ports'][number]],
    mac: '02:6e:c6:13:01:02',
    mtu: 1450,
    createdAt: '2026-11-28T00:00:00.000Z',
    ...extra,
  };
}

describe('FileStateStore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts empty and creates its directory', async () => {
    const store = new FileStateStore(join(dir, 'sub'));
    expect(await store.load()).toEqual({ cni: null, instances: [], released: [] });
    expect(await readdir(join(dir, 'sub'))).toContain('instances');
  });

  it('round-trips the CNI, instances and released handles across instances of the store', async () => {
    const a = new FileStateStore(dir);
    await a.load();
    await a.saveCni(cni);
    await a.saveInstance(instance(1));
    await a.saveInstance(instance(2, { kind: 'tap', netns: undefined }));
    await a.saveInstance(
      instance(3, { netns: '/proc/1/ns/net' as InstanceRecord['netns'], ifname: 'eth0' as IfName, netnsId: '4:4026532000' }),
    );
    await a.releaseInstance(instance(2).handle);

    const b = new FileStateStore(dir);
    const state = await b.load();
    expect(state.cni).toEqual(cni);
    expect(state.instances.map((r) => r.handle)).toEqual([instance(1).handle, instance(3).handle]);
    expect(state.instances[1]).toEqual(
      instance(3, { netns: '/proc/1/ns/net' as InstanceRecord['netns'], ifname: 'eth0' as IfName, netnsId: '4:4026532000' }),
    );
    expect(state.released).toEqual([instance(2).handle]);
    // No temp files are left behind by atomic writes.
    expect((await readdir(join(dir, 'instances'))).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a truncated record, naming the file and what to do', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    await store.saveInstance(instance(1));
    const file = join(dir, 'instances', `${instance(1).handle}.json`);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, text.length / 2));
    const err = await new FileStateStore(dir).load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as StateFileError).code).toBe('FAILED_PRECONDITION');
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/truncated/);
    expect((err as Error).message).toMatch(/restore the file from a backup/);
  });

  it('refuses a record whose content is invalid (bad address) or of another format version', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    await store.saveCni(cni);
    await writeFile(join(dir, 'cni.json'), JSON.stringify({ version: 1, kind: 'cni', record: { ...cni, gateway: '198.19.1.01' } }));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(/cni\.json.*not a canonical IPv4 address/);
    await writeFile(join(dir, 'cni.json'), JSON.stringify({ version: 7, kind: 'cni', record: cni }));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(/record format version 7, written by a newer nodenet/);
  });

  it('refuses a record stored under another handle name', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    await store.saveInstance(instance(1));
    const from = join(dir, 'instances', `${instance(1).handle}.json`);
    await writeFile(join(dir, 'instances', 'nni-ffffffff.json'), await readFile(from));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(/records handle nni-00000001, not nni-ffffffff/);
  });

  it('ignores a torn last line of the released log and removes orphaned temp files', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    await store.saveInstance(instance(1));
    await store.releaseInstance(instance(1).handle);
    await appendFile(join(dir, 'released.log'), 'nni-000');
    await writeFile(join(dir, 'instances', 'nni-00000009.json.tmp-abcd'), '{"vers');
    const state = await new FileStateStore(dir).load();
    expect(state.released).toEqual([instance(1).handle]);
    expect(await readdir(join(dir, 'instances'))).toEqual([]);
  });

  it('bounds the released log, keeping the newest handles', async () => {
    const store = new FileStateStore(dir, { maxReleased: 3 });
    await store.load();
    for (let i = 1; i <= 8; i++) {
      await store.saveInstance(instance(i));
      await store.releaseInstance(instance(i).handle);
    }
    const state = await new FileStateStore(dir, { maxReleased: 3 }).load();
    expect(state.released).toEqual([6, 7, 8].map((i) => instance(i).handle));
    const lines = (await readFile(join(dir, 'released.log'), 'utf8')).trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(6);
  });

  it('beginRelease notes the handle once; a release cut short leaves the record in effect beside the note', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    await store.saveInstance(instance(1));
    await store.saveInstance(instance(2));
    await store.beginRelease(instance(1).handle);
    await store.releaseInstance(instance(1).handle);
    await store.beginRelease(instance(2).handle); // the delete's kernel work then failed: no releaseInstance
    expect((await readFile(join(dir, 'released.log'), 'utf8')).split('\n')).toEqual(['nni-00000001', 'nni-00000002', '']);
    const state = await new FileStateStore(dir).load();
    expect(state.instances.map((r) => r.handle)).toEqual(['nni-00000002']);
    expect(state.released).toEqual(['nni-00000001', 'nni-00000002']);
  });

  it('a write the file system refuses names the file and the fix, with the status it means', async () => {
    await writeFile(join(dir, 'a-file'), '');
    const store = new FileStateStore(join(dir, 'a-file', 'state')); // ENOTDIR: not a refusal, so INTERNAL
    await expect(store.saveCni(cni)).rejects.toMatchObject({ code: 'INTERNAL', message: /^write the CNI record: ENOTDIR/ });
  });

  it('stages a record: written beside its place, in effect only once committed', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    const staged = await store.stageInstance(instance(1));
    // On disk (a crash now leaves a temp file), not a record: load() removes it and returns nothing.
    const files = await readdir(join(dir, 'instances'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^nni-00000001\.json\.tmp-[0-9a-f]{8}$/);
    expect((JSON.parse(await readFile(join(dir, 'instances', files[0]!), 'utf8')) as { record: unknown }).record).toEqual(instance(1));
    await staged.commit();
    expect(await readdir(join(dir, 'instances'))).toEqual(['nni-00000001.json']);
    expect((await new FileStateStore(dir).load()).instances).toEqual([instance(1)]);
    await expect(staged.commit()).rejects.toThrow(/already committed or discarded/);
  });

  it('discards a staged record without a trace, and a crash before the commit loses it', async () => {
    const store = new FileStateStore(dir);
    await store.load();
    const discarded = await store.stageInstance(instance(1));
    await discarded.discard();
    await discarded.discard(); // tolerant
    expect(await readdir(join(dir, 'instances'))).toEqual([]);
    await store.stageInstance(instance(2)); // never committed: the daemon "crashed"
    const state = await new FileStateStore(dir).load();
    expect(state.instances).toEqual([]);
    expect(await readdir(join(dir, 'instances'))).toEqual([]);
  });

  it('a commit whose directory sync fails leaves no record in effect', async () => {
    let failSync = false;
    const store = new FileStateStore(dir, {
      waitInline: () => {
        if (failSync) throw new Error('EIO: the directory could not be synced');
        return false;
      },
    });
    await store.load();
    const staged = await store.stageInstance(instance(1));
    failSync = true; // the commit renames, then syncs the directory: that step fails
    await expect(staged.commit()).rejects.toThrow(/EIO/);
    expect(await readdir(join(dir, 'instances'))).toEqual([]);
    expect((await new FileStateStore(dir).load()).instances).toEqual([]);
  });

  it('waits for the disk inline or through the thread pool as waitInline says, with the same result', async () => {
    let inline = true;
    let asked = 0;
    const store = new FileStateStore(dir, {
      waitInline: () => {
        asked++;
        return inline;
      },
    });
    await store.load();
    await store.saveCni(cni);
    await store.saveInstance(instance(1));
    inline = false;
    await store.saveInstance(instance(2));
    await (await store.stageInstance(instance(3))).commit();
    inline = true;
    await store.releaseInstance(instance(2).handle);
    expect(asked).toBeGreaterThanOrEqual(6);
    const state = await new FileStateStore(dir).load();
    expect(state.cni).toEqual(cni);
    expect(state.instances.map((r) => r.handle)).toEqual([instance(1).handle, instance(3).handle]);
    expect(state.released).toEqual([instance(2).handle]);
  });

  it('concurrent writers (nothing inline): staged, saved and released records all land, sharing directory syncs', async () => {
    const store = new FileStateStore(dir, { waitInline: () => false });
    await store.load();
    await store.saveCni(cni);
    const n = 40;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        if (i % 2 === 0) await (await store.stageInstance(instance(i + 1))).commit();
        else await store.saveInstance(instance(i + 1));
      }),
    );
    // A staged record discarded while others commit leaves nothing behind.
    const discarded = await store.stageInstance(instance(n + 1));
    await Promise.all([discarded.discard(), ...Array.from({ length: 10 }, (_, i) => store.releaseInstance(instance(i + 1).handle))]);
    expect((await readdir(join(dir, 'instances'))).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const state = await new FileStateStore(dir).load();
    expect(state.instances.map((r) => r.handle)).toEqual(Array.from({ length: n - 10 }, (_, i) => instance(i + 11).handle));
    expect([...state.released].sort()).toEqual(Array.from({ length: 10 }, (_, i) => instance(i + 1).handle).sort());
  });
});
