import { describe, expect, it } from 'vitest';
import { InternalError, Subnet, parseIpv4Address, type NodeRecord } from '@nodenet/core';
import { IpBatchError, runPeerBatch, withNeighbourDeletes, type IpBatchFailure, type IpLine, type IpRunner } from '@nodenet/linux';

const peer = (n: number): NodeRecord => ({
  name: `node-${n}`,
  underlayAddress: parseIpv4Address(`198.18.0.${n}`, 'u'),
  subnet: Subnet.of(`198.19.${n}.0/24`),
});
const line = (id: string, n: number): IpLine => ({ id, args: ['route', 'replace', `198.19.${n}.0/24`], step: `${id} of node-${n}` });

/** An IpRunner that records the script it got and answers with canned failures (or throws). */
function fakeRunner(answer: IpBatchFailure[] | Error): IpRunner & { scripts: IpLine[][] } {
  const scripts: IpLine[][] = [];
  return {
    scripts,
    batch: async (lines: readonly IpLine[]) => {
      scripts.push([...lines]);
      if (answer instanceof Error) throw answer;
      return answer;
    },
  } as unknown as IpRunner & { scripts: IpLine[][] };
}

const explain = (f: IpBatchFailure, l: IpLine | undefined, step: string) => new InternalError(l?.step ?? step, f.message);
const parts = [1, 2, 3].map((n) => ({ peer: peer(n), lines: [line('delete-route', n), line('peer-route', n)] }));

describe('runPeerBatch', () => {
  it('runs every peer in one script and maps each failing line to its peer', async () => {
    // Lines: 1-2 node-1, 3-4 node-2, 5-6 node-3. Line 4 (node-2's route) failed; line 5 is a delete finding nothing.
    const runner = fakeRunner([
      { line: 4, message: 'Error: Nexthop has invalid gateway.' },
      { line: 5, message: 'RTNETLINK answers: No such process' },
    ]);
    const result = await runPeerBatch(runner, parts, 'program 3 peers', new Set(['delete-route']), explain);
    expect(runner.scripts).toHaveLength(1);
    expect(runner.scripts[0]).toHaveLength(6);
    expect([...result.failed.keys()]).toEqual(['node-2']);
    expect(result.failed.get('node-2')?.message).toMatch(/peer-route of node-2.*invalid gateway/);
  });

  it('fails every peer when the batch as a whole fails, and runs nothing for an empty batch', async () => {
    const error = new IpBatchError('program 3 peers', 'ip -force -batch -', undefined, 'Error: argument "x" is wrong', []);
    const result = await runPeerBatch(fakeRunner(error), parts, 'program 3 peers', new Set(), explain);
    expect([...result.failed.keys()]).toEqual(['node-1', 'node-2', 'node-3']);
    expect(result.failed.get('node-3')).toBe(error);
    const idle = fakeRunner([]);
    expect((await runPeerBatch(idle, [{ peer: peer(1), lines: [] }], 'nothing', new Set(), explain)).failed.size).toBe(0);
    expect(idle.scripts).toEqual([]);
  });
});

describe('withNeighbourDeletes', () => {
  const flush = (address: string): IpLine => ({
    id: 'delete-neighbour',
    args: ['neigh', 'flush', 'to', address, 'dev', 'nodenet-vx', 'nud', 'all'],
    step: `delete ${address}`,
  });
  it('turns each flush into a del of an entry that is there (read once), and drops the others', async () => {
    const reads: string[][] = [];
    const runner = {
      json: async (args: readonly string[]) => {
        reads.push([...args]);
        return [{ dst: '198.19.1.0', lladdr: '02:6f:00:00:00:01' }, { dst: '198.19.3.0' }];
      },
    } as unknown as IpRunner;
    const out = await withNeighbourDeletes(
      runner,
      'nodenet-vx',
      [1, 2, 3].map((n) => ({ peer: peer(n), lines: [line('delete-route', n), flush(`198.19.${n}.0`)] })),
      'delete-neighbour',
    );
    expect(reads).toEqual([['neigh', 'show', 'dev', 'nodenet-vx']]);
    expect(out.map((p) => p.lines.map((l) => l.args.join(' ')))).toEqual([
      ['route replace 198.19.1.0/24', 'neigh del 198.19.1.0 dev nodenet-vx'],
      ['route replace 198.19.2.0/24'],
      ['route replace 198.19.3.0/24', 'neigh del 198.19.3.0 dev nodenet-vx'],
    ]);
  });
});
