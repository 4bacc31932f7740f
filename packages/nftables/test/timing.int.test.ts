/**
 * Measures (and prints; asserts nothing about time) what publishing one more port costs with ~5 and with
 * ~5,000 ports already published: addInstance / removeInstance medians over 50 instances, each with one
 * port (TCP and UDP), removed again after each measurement so the map stays at its size. At both sizes
 * also a no-op ensureBase (what the reconcile loop pays every pass), listElements, and an ensureBase that
 * repairs one deleted rule; at the start, the first ensureBase (reference built in a scratch namespace).
 * Also the p50 of 200 single adds and removes (one port, both protocols) with ~0 and ~2,000 map elements.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { IfName, Ipv4Address } from '@nodenet/core';
import { NftPacketFilter } from '../src/index.js';
import { both, deleteNamespaces, filterBase, newNamespace, nft, ruleHandle, snapshot } from './fixture.js';

const names: string[] = [];
afterAll(async () => {
  await deleteNamespaces(names);
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function time(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

function instance(i: number, ports: number[]) {
  return {
    // 198.19.0.0/16 gives room for every instance of the test (i < 65000).
    hostIfname: `nnh-${i.toString(16).padStart(8, '0')}` as IfName,
    ipv4: `198.19.${Math.floor(i / 250)}.${(i % 250) + 2}` as Ipv4Address,
    ports: ports.flatMap((p) => both(p)),
  };
}

describe('timing', () => {
  it('addInstance / removeInstance one at a time: p50 of 200, with ~0 and ~2,000 elements already in the map', async () => {
    const ns = await newNamespace('timing-p50', names);
    const filter = new NftPacketFilter({ netns: ns });
    await filter.ensureBase(filterBase());
    const measure = async (label: string) => {
      const add: number[] = [];
      const remove: number[] = [];
      for (let i = 0; i < 200; i++) {
        const rules = instance(60000 + i, [40000 + i]);
        add.push(await time(() => filter.addInstance(rules)));
        remove.push(await time(() => filter.removeInstance(rules)));
      }
      const s = await snapshot(ns);
      console.log(
        `[nftables timing] ${label}: ${s.ports.length} map elements, ${s.sources.length} sources: ` +
          `addInstance p50 ${median(add).toFixed(2)} ms (min ${Math.min(...add).toFixed(2)}), ` +
          `removeInstance p50 ${median(remove).toFixed(2)} ms (min ${Math.min(...remove).toFixed(2)})`,
      );
      return s;
    };
    expect((await measure('~0')).ports).toHaveLength(0);
    // ~2,000 elements: 10 instances with 100 ports, both protocols.
    for (let i = 0; i < 10; i++)
      await filter.addInstance(
        instance(
          i + 1,
          Array.from({ length: 100 }, (_, k) => 1000 + i * 100 + k),
        ),
      );
    expect((await measure('~2,000')).ports).toHaveLength(2000);
    filter.close();
  });

  it('addInstance / removeInstance at ~5 and ~5,000 published ports', async () => {
    const ns = await newNamespace('timing', names);
    const filter = new NftPacketFilter({ netns: ns });
    const first = await time(async () => void (await filter.ensureBase(filterBase())));
    console.log(`[nftables timing] first ensureBase (empty namespace; builds the reference): ${first.toFixed(1)} ms`);
    const restartedFirst = await time(async () => void (await new NftPacketFilter({ netns: ns }).ensureBase(filterBase())));
    console.log(
      `[nftables timing] first no-op ensureBase of a fresh NftPacketFilter (as after a restart): ${restartedFirst.toFixed(1)} ms`,
    );

    /** ensureBase when all is right (20 runs), listElements (10 runs), ensureBase repairing a deleted rule (5 runs). */
    const measureConverge = async (label: string, published: number) => {
      const noop: number[] = [];
      for (let i = 0; i < 20; i++) {
        noop.push(
          await time(async () => {
            expect(await filter.ensureBase(filterBase())).toEqual([]);
          }),
        );
      }
      const list: number[] = [];
      for (let i = 0; i < 10; i++) {
        list.push(
          await time(async () => {
            expect((await filter.listElements()).ports).toHaveLength(published * 2);
          }),
        );
      }
      const repair: number[] = [];
      for (let i = 0; i < 5; i++) {
        await nft(ns, `delete rule ip nodenet postrouting handle ${await ruleHandle(ns, 'ip', 'postrouting', 'egress')}\n`);
        repair.push(
          await time(async () => {
            expect(await filter.ensureBase(filterBase())).toEqual(['chain ip nodenet postrouting had 1 rules, expected 2']);
          }),
        );
      }
      console.log(
        `[nftables timing] ${label}: ${published} ports published: no-op ensureBase median ${median(noop).toFixed(1)} ms ` +
          `(min ${Math.min(...noop).toFixed(1)}, max ${Math.max(...noop).toFixed(1)}), listElements median ${median(list).toFixed(1)} ms ` +
          `(min ${Math.min(...list).toFixed(1)}), ensureBase repairing a deleted rule median ${median(repair).toFixed(1)} ms`,
      );
    };

    const measure = async (label: string, published: number) => {
      const add: number[] = [];
      const remove: number[] = [];
      for (let i = 0; i < 50; i++) {
        const rules = instance(60000 + i, [40000 + i]);
        add.push(await time(() => filter.addInstance(rules)));
        remove.push(await time(() => filter.removeInstance(rules)));
      }
      const s = await snapshot(ns);
      expect(s.ports).toHaveLength(published * 2);
      console.log(
        `[nftables timing] ${label}: ${published} ports published (${s.ports.length} map elements), ${s.rules} rules: ` +
          `addInstance median ${median(add).toFixed(1)} ms (min ${Math.min(...add).toFixed(1)}), ` +
          `removeInstance median ${median(remove).toFixed(1)} ms (min ${Math.min(...remove).toFixed(1)})`,
      );
      return s.rules;
    };

    // ~5: one instance with 5 ports.
    await filter.addInstance(instance(0, [1, 2, 3, 4, 5]));
    const rulesAt5 = await measure('~5', 5);
    await measureConverge('~5', 5);

    // ~5,000: 50 instances with 100 ports each (the first has its 5 already, so 4,995 more).
    await filter.removeInstance(instance(0, [1, 2, 3, 4, 5]));
    const fill: number[] = [];
    for (let i = 0; i < 50; i++) {
      fill.push(
        await time(() =>
          filter.addInstance(
            instance(
              i + 1,
              Array.from({ length: 100 }, (_, k) => 1000 + i * 100 + k),
            ),
          ),
        ),
      );
    }
    const rulesAt5000 = await measure('~5,000', 5000);
    await measureConverge('~5,000', 5000);
    expect(rulesAt5000).toBe(rulesAt5);
    console.log(`[nftables timing] addInstance with 100 ports (both protocols) while filling: median ${median(fill).toFixed(1)} ms`);
    const rewrite = await time(async () => {
      await nft(ns, 'delete table bridge nodenet\n');
      await filter.ensureBase(filterBase());
    });
    console.log(
      `[nftables timing] ensureBase rebuilding the bridge table (plus the test's nft delete) with 5,000 ports published: ${rewrite.toFixed(1)} ms`,
    );
    const flush = await time(() => filter.flushConntrack(['198.19.1.2' as Ipv4Address]));
    console.log(`[nftables timing] flushConntrack with nothing to delete: ${flush.toFixed(1)} ms`);
    filter.close();
  });
});
