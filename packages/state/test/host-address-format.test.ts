/**
 * Record formats 2 and 3: a published port on one host address (3: an IPv6 one); records without one stay
 * format 1, with IPv4 host addresses only format 2.
 */
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
    expect(RECORD_FORMAT_VERSION).toBe(3);
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

  it('a record with a port on an IPv6 host address is written as format 3 and read back with it; format 2 still reads', async () => {
    const store = new FileStateStore(dir);
    const state = await store.load();
    const v4 = { protocol: 'udp', hostPort: 8082 as never, instancePort: 82 as never, hostAddress: '198.18.0.5' as never } as const;
    const record: InstanceRecord = {
      ...state.instances[0]!,
      ports: [{ protocol: 'tcp', hostPort: 8080 as never, instancePort: 80 as never, hostAddress: '2001:db8:18::5' as never }, v4],
    };
    await store.saveInstance(record);
    const file = join(dir, 'instances', `${record.handle}.json`);
    const written = JSON.parse(await readFile(file, 'utf8')) as { version: number; record: { ports: unknown[] } };
    expect(written.version).toBe(3);
    expect(written.record.ports[0]).toEqual({ protocol: 'tcp', hostPort: 8080, instancePort: 80, hostAddress: '2001:db8:18::5' });
    expect((await new FileStateStore(dir).load()).instances.find((r) => r.handle === record.handle)?.ports).toEqual(record.ports);

    // A format-2 record (what the previous version wrote for an IPv4 host address) reads unchanged.
    await writeFile(file, JSON.stringify({ ...written, version: 2, record: { ...written.record, ports: [v4] } }));
    expect((await new FileStateStore(dir).load()).instances.find((r) => r.handle === record.handle)?.ports).toEqual([v4]);
  });

  it('an IPv6 host address in non-canonical text makes the record unreadable, naming the file and the canonical form', async () => {
    const file = join(dir, 'instances', 'nni-0a624c91.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as { record: { ports: Record<string, unknown>[] } };
    env.record.ports[0]!.hostAddress = '2001:DB8:18::5';
    await writeFile(file, JSON.stringify({ ...env, version: 3 }));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(new RegExp(`${file}.*write 2001:db8:18::5`));
  });

  it('the format-1 records of the previous version read as ports on every address', async () => {
    const ports = (await new FileStateStore(dir).load()).instances.flatMap((r) => r.ports);
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) expect(p).not.toHaveProperty('hostAddress');
  });

  it('a host address that can publish nothing (::1) makes the record unreadable, naming the file', async () => {
    const file = join(dir, 'instances', 'nni-0a624c91.json');
    const env = JSON.parse(await readFile(file, 'utf8')) as { record: { ports: Record<string, unknown>[] } };
    env.record.ports[0]!.hostAddress = '::1';
    await writeFile(file, JSON.stringify({ ...env, version: 2 }));
    await expect(new FileStateStore(dir).load()).rejects.toThrow(new RegExp(`${file}.*::1 cannot publish a port`));
  });

  it('recordFormatOf: 2 only for an instance with a port on one address, 3 when one of them is IPv6', () => {
    expect(recordFormatOf('instance', { ports: [{ protocol: 'tcp', hostPort: 1, instancePort: 1 }] })).toBe(1);
    expect(recordFormatOf('instance', { ports: [{ protocol: 'tcp', hostPort: 1, instancePort: 1, hostAddress: '127.0.0.1' }] })).toBe(2);
    expect(
      recordFormatOf('instance', {
        ports: [
          { protocol: 'tcp', hostPort: 1, instancePort: 1, hostAddress: '127.0.0.1' },
          { protocol: 'tcp', hostPort: 1, instancePort: 1, hostAddress: 'fd00::5' },
        ],
      }),
    ).toBe(3);
    expect(recordFormatOf('cni', { name: 'nodenet0' })).toBe(1);
  });
});
