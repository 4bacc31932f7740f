import { describe, expect, it } from 'vitest';
import { GroupCommitter } from '@nodenet/sys';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('GroupCommitter', () => {
  it('commits an item alone at once when idle', async () => {
    const commits: number[][] = [];
    const g = new GroupCommitter<number>(async (items) => void commits.push([...items]));
    await g.submit(1);
    expect(commits).toEqual([[1]]);
  });

  it('groups what arrives while a commit runs', async () => {
    const commits: number[][] = [];
    const g = new GroupCommitter<number>(async (items) => {
      commits.push([...items]);
      await tick();
    });
    await Promise.all([1, 2, 3, 4, 5].map((i) => g.submit(i)));
    expect(commits).toEqual([[1], [2, 3, 4, 5]]);
  });

  it('gives each item of a failed group its own answer', async () => {
    const commits: number[][] = [];
    const g = new GroupCommitter<number>(async (items) => {
      commits.push([...items]);
      await tick();
      if (items.includes(3)) throw new Error(`bad ${items.join(',')}`);
    });
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => g.submit(i)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(((results[2] as PromiseRejectedResult).reason as Error).message).toBe('bad 3');
    expect(commits).toEqual([[1], [2, 3, 4], [2], [3], [4]]);
  });

  it('respects the batch limit and keeps going after failures', async () => {
    const commits: number[][] = [];
    const g = new GroupCommitter<number>(async (items) => {
      commits.push([...items]);
      await tick();
    }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((i) => g.submit(i)));
    expect(commits).toEqual([[1], [2, 3], [4, 5]]);
    await g.submit(6);
    expect(commits.at(-1)).toEqual([6]);
  });
});
