import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStateStore, RECORD_FORMAT_VERSION, RecordFormatError } from '@nodenet/state';

/** A state directory written by nodenet 0.1 (record format 1), committed before any format change. */
const FIXTURE_V1 = fileURLToPath(new URL('./fixtures/state-v1', import.meta.url));

describe('record format versions', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-format-'));
    await cp(FIXTURE_V1, dir, { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the state directory of format 1 (the fixture) with every field', async () => {
    const state = await new FileStateStore(dir).load();
    expect(state.cni).toEqual({
      name: 'nodenet0',
      gateway: '198.19.1.1',
      subnet: '198.19.1.0/24',
      mtu: 1450,
      mac: '02:6e:c6:13:01:01',
      createdAt: '2026-12-06T19:58:00.000Z',
    });
    expect(state.instances.map((r) => [r.handle, r.kind, r.address])).toEqual([
      ['nni-0a624c91', 'veth', '198.19.1.2'],
      ['nni-c1d395db', 'tap', '198.19.1.3'],
    ]);
    expect(state.instances[0]).toMatchObject({ netns: 'web1', ifname: 'eth0', netnsId: '4:4026532451', hostIfname: 'nnh-0a624c91' });
    expect(state.instances[0]!.ports).toEqual([
      { protocol: 'tcp', hostPort: 8080, instancePort: 8080 },
      { protocol: 'udp', hostPort: 8080, instancePort: 8080 },
      { protocol: 'tcp', hostPort: 8081, instancePort: 80 },
    ]);
    expect(state.released).toEqual(['nni-5f00e1a7']);
  });

  it('writes the oldest format that holds the record (1 without host addresses), which it reads back', async () => {
    const store = new FileStateStore(dir);
    const state = await store.load();
    await store.saveInstance(state.instances[1]!);
    const written = JSON.parse(await readFile(join(dir, 'instances', 'nni-c1d395db.json'), 'utf8')) as { version: number };
    expect(written.version).toBe(1);
    expect((await new FileStateStore(dir).load()).instances[1]).toEqual(state.instances[1]);
  });

  it('refuses a record of a newer format, naming the file and saying to upgrade nodenet', async () => {
    const file = join(dir, 'instances', 'nni-c1d395db.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as { version: number };
    await writeFile(file, JSON.stringify({ ...env, version: RECORD_FORMAT_VERSION + 1 }));
    const err = await new FileStateStore(dir).load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecordFormatError);
    expect((err as RecordFormatError).code).toBe('FAILED_PRECONDITION');
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(new RegExp(`format version ${RECORD_FORMAT_VERSION + 1}, written by a newer nodenet`));
    expect((err as Error).message).toMatch(/Upgrade nodenet/);
  });

  it('refuses a record without a usable version, naming the file', async () => {
    const file = join(dir, 'cni.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    for (const version of [undefined, '1', 0, 1.5]) {
      await writeFile(file, JSON.stringify({ ...env, version }));
      await expect(new FileStateStore(dir).load()).rejects.toThrow(new RegExp(`${file}.*no valid record format version`));
    }
  });
});
