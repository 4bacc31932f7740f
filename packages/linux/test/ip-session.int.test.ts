/**
 * IpSession (a long-lived `ip -force -batch -`) against the real kernel, in a namespace the test makes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNetnsRef } from '@nodenet/core';
import { IpBatchError, type IpLine } from '../src/ip-batch.js';
import { IpSession, ipSessionFraming } from '../src/ip-session.js';
import { TestScope, exec, ipJson } from '@nodenet/testkit';

const sh = async (file: string, args: string[], input?: string) => (await exec(file, args, input === undefined ? {} : { input })).stdout;
let scope: TestScope;
let ns: string;
let session: IpSession;

const line = (id: string, text: string): IpLine => ({ id, args: text.split(' '), step: `step ${id}` });
const names = async () => (await ipJson<{ ifname: string }[]>(ns, ['link', 'show'])).map((l) => l.ifname);

beforeAll(async () => {
  scope = await TestScope.create();
  ns = await scope.createNamespace();
  session = new IpSession(parseNetnsRef(ns, 'netns'));
});

afterAll(async () => {
  session.close();
  await scope.cleanup();
});

describe('ipSessionFraming', () => {
  it("finds a marker only with its Command failed line, and returns the line's own failure text", () => {
    const head = 'Cannot find device "x"\nCommand failed -:7\nObject "nnmark4" is unknown, try "ip help".\n';
    expect(ipSessionFraming.find(head, 4)).toBeNull(); // the marker's own Command failed line has not arrived
    const all = `${head}Command failed -:8\nObject "nnmark5"`;
    expect(ipSessionFraming.find(all, 4)).toEqual({ output: 'Cannot find device "x"', consumed: all.indexOf('Object "nnmark5"') });
    expect(ipSessionFraming.find(all, 3)).toBeNull();
    expect(ipSessionFraming.marker(9)).toBe('nnmark9\n');
  });
});

describe('IpSession', () => {
  it('runs lines in order; without force it stops at the first failure and never writes the rest', async () => {
    await session.batch([line('a', 'link add nns-br0 type bridge')], { step: 'make a bridge' });
    const failing = session.batch(
      [line('up', 'link set dev nns-br0 up'), line('bad', 'link set dev nns-nope up'), line('later', 'link add nns-br1 type bridge')],
      { step: 'three lines' },
    );
    const e = await failing.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IpBatchError);
    expect((e as IpBatchError).failedLine?.id).toBe('bad');
    expect((e as IpBatchError).detail).toMatch(/Cannot find device "nns-nope"/);
    expect((e as IpBatchError).failures).toEqual([{ line: 2, message: 'Cannot find device "nns-nope"' }]);
    expect(await names()).toContain('nns-br0');
    expect(await names()).not.toContain('nns-br1');
  });

  it('with force runs every line and returns the failures by line', async () => {
    const failures = await session.batch(
      [line('x', 'link del dev nns-gone1'), line('y', 'link add nns-br2 type bridge'), line('z', 'link del dev nns-gone2')],
      { step: 'tolerant', force: true },
    );
    expect(failures.map((f) => f.line)).toEqual([1, 3]);
    expect(failures[0]!.message).toMatch(/nns-gone1/);
    expect(await names()).toContain('nns-br2');
  });

  it('concurrent batches each get their own answers', async () => {
    const made = Array.from({ length: 30 }, (_, i) => `nns-c${i}`);
    const results = await Promise.allSettled(
      made.map((n, i) =>
        session.batch([line('add', `link add ${n} type bridge`), ...(i % 5 === 0 ? [line('dup', `link add ${n} type bridge`)] : [])], {
          step: n,
        }),
      ),
    );
    results.forEach((r, i) => expect(r.status, made[i]).toBe(i % 5 === 0 ? 'rejected' : 'fulfilled'));
    const present = await names();
    for (const n of made) expect(present).toContain(n);
  });

  it('an argument that makes ip exit fails that line, and the next request gets a new process', async () => {
    const e = await session.batch([line('bad', 'link set dev nns-br0 mtu notanumber')], { step: 'bad mtu' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IpBatchError);
    expect((e as IpBatchError).detail).toMatch(/notanumber|Invalid|wrong/i);
    await session.batch([line('ok', 'link add nns-after type bridge')], { step: 'after' });
    expect(await names()).toContain('nns-after');
  });

  it('after the process is killed from outside, the next request works', async () => {
    // pkill exits non-zero (and sh throws) when it matched no process: the session must have been running.
    await sh('pkill', ['-KILL', '-f', `^ip -n ${ns} -force -batch -$`]);
    // The request racing the kill may fail; the one after it must not.
    await session.batch([line('one', 'link add nns-k1 type bridge')], { step: 'k1' }).catch(() => undefined);
    await session.batch([line('two', 'link add nns-k2 type bridge')], { step: 'k2' });
    expect(await names()).toContain('nns-k2');
  });

  it('reset drops what ip remembered: a bridge recreated behind its back is found again', async () => {
    await session.batch([line('m1', 'link add nns-v1 master nns-br0 type veth peer name nns-p1')], { step: 'port 1' });
    await sh('ip', ['-n', ns, '-batch', '-'], 'link del nns-br0\nlink add nns-filler type bridge\nlink add nns-br0 type bridge\n');
    // Measured: without a reset the session names nns-br0 by its old index and the kernel refuses it.
    const stale = await session
      .batch([line('m2', 'link add nns-v2 master nns-br0 type veth peer name nns-p2')], { step: 'port 2' })
      .catch((x: unknown) => x);
    expect(stale).toBeInstanceOf(IpBatchError);
    session.reset();
    await session.batch([line('m3', 'link add nns-v3 master nns-br0 type veth peer name nns-p3')], { step: 'port 3' });
    const ports = (await ipJson<{ ifname: string }[]>(ns, ['link', 'show', 'master', 'nns-br0'])).map((l) => l.ifname);
    expect(ports).toEqual(['nns-v3']);
  });
});
