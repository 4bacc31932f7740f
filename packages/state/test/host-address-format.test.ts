/** Record format 2: a published port on one host address; records without one stay format 1. */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { InstanceRecord } from '@nodenet/core';
import { FileStateStore, RECORD_FORMAT_VERSION, recordFormatOf } from '@nodenet/state';

const FIXTURE_V1 = fileURLToPath(new URL('./fixtures/state-v1', import.meta.url));

describe('host addresses in instance records', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-hostaddr-'));
    await cp(FIXTURE_V1, dir, { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a record with a port on one address is written as format 2 and read back with it', async () => {
    expect(RECORD_FORMAT_VERSION).toBe(2);
    const store = new FileStateStore(dir);
    const state = await store.load();
    const record: InstanceRecord = {
      ...state.instances[0]!,
      ports: [
        { protocol: 'tcp', hostPort: 8080 as never, instancePort: 80 as never, hostAddress: '127.0.0.1' as never },
        { protocol: 'tcp', hostPort: 8081 as never, instancePort: 81 as never },
      ],
    };
    await store.saveInstance(record);
    const written = JSON.parse(await readFile(join(dir, 'instances', `${record.handle}.json`), 'utf8')) as {
      version: number;
      record: { ports: unknown[] };
    };
    expect(written.version).toBe(2);
    expect(written.record.ports[1]).toEqual({ protocol: 'tcp', hostPort: 8081, instancePort: 81 });
    const again = (await new FileStateStore(dir).load()).instances.find((r) => r.handle === record.handle);
    expect(again?.ports).toEqual(record.ports);
  });

  it('the format-1 records of the previous version read as ports on every address', async () => {
    const ports = (await new FileStateStore(dir).load()).instances.flatMap((r) => r.ports);
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) expect(p).not.toHaveProperty('hostAddress');
  });

  it('a host address that is not a unicast IPv4 address makes the record unreadable, naming the file', async () => {
    const file = join(dir, 'instances', 'nni-0a624c91.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as { record: { ports: Record<string, unknown>[] } };
    env.record.ports[0]!.hostAddress = '::1';
    await writeFile(file, JSON.stringify({ ...env, version: 2 }));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(new RegExp(`${file}.*IPv6`));
  });

  it('recordFormatOf: 2 only for an instance with a port on one address', () => {
    expect(recordFormatOf('instance', { ports: [{ protocol: 'tcp', hostPort: 1, instancePort: 1 }] })).toBe(1);
    expect(recordFormatOf('instance', { ports: [{ protocol: 'tcp', hostPort: 1, instancePort: 1, hostAddress: '127.0.0.1' }] })).toBe(2);
    expect(recordFormatOf('cni', { name: 'nodenet0' })).toBe(1);
  });
});
