/**
 * flushConntrack on the real kernel, both ways it deletes (the ctnetlink cleaner, and `conntrack -R` where
 * perl cannot run): entries of both families, in every position the contract names (original source,
 * original destination, reply source), in a zone, ICMP too; the other addresses' entries stay. The entries
 * are made with `conntrack -I` in a namespace of the test's own (packet-filter.int.test.ts makes them with
 * real traffic).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IpAddress } from '@nodenet/core';
import { NftPacketFilter } from '../src/index.js';
import { deleteNamespaces, inNs, newNamespace } from './fixture.js';

const A4 = '198.19.1.2' as IpAddress;
const A6 = 'fd19:0:0:1::2' as IpAddress;
const B4 = '198.19.1.3';
const B6 = 'fd19:0:0:1::3';
const WORLD4 = '198.18.0.9';
const WORLD6 = '2001:db8:18::9';
const NODE4 = '198.18.0.1';
const NODE6 = '2001:db8:18::1';

/** `conntrack -I` arguments: per address of a family, as original source, original destination, reply source (DNAT), ICMP. */
function entries(address: string, world: string, node: string, v6: boolean, sport: number): string[][] {
  const est = ['--state', 'ESTABLISHED', '-u', 'SEEN_REPLY', '-t', '300'];
  return [
    ['-s', address, '-d', world, '-p', 'tcp', '--sport', '40000', '--dport', '443', ...est],
    ['-s', world, '-d', address, '-p', 'udp', '--sport', '40001', '--dport', '53', '-t', '300', '-w', '3'],
    [
      ...['-s', world, '-d', node, '-r', address, '-q', world, '-p', 'tcp'],
      // Another address's DNAT entry differs only in the client's port (the original tuple is the key).
      ...['--sport', String(sport), '--dport', '8080', '--reply-port-src', '80', '--reply-port-dst', String(sport), ...est],
    ],
    v6
      ? ['-s', world, '-d', address, '-p', 'icmpv6', '--icmpv6-type', '128', '--icmpv6-code', '0', '--icmpv6-id', '7', '-t', '300']
      : ['-s', world, '-d', address, '-p', 'icmp', '--icmp-type', '8', '--icmp-code', '0', '--icmp-id', '7', '-t', '300'],
  ];
}

/** Every entry of both families in `ns`, one line each. */
async function table(ns: string): Promise<string[]> {
  const lines: string[] = [];
  for (const family of ['ipv4', 'ipv6']) {
    const r = await inNs(ns, ['conntrack', '-L', '-f', family]);
    lines.push(...r.stdout.split('\n').filter((l) => l.trim() !== ''));
  }
  return [...new Set(lines)];
}

const naming = (address: string) => (line: string) => line.includes(`=${address} `);

describe.each([
  // No conntrack: only the cleaner can pass.
  { way: 'the ctnetlink cleaner', commands: { conntrack: 'conntrack-not-installed' } },
  { way: 'conntrack -R (no perl)', commands: { conntrackHelper: ['perl-not-installed'] as [string] } },
])('flushConntrack through $way', ({ commands }) => {
  const names: string[] = [];
  let ns: string;
  let filter: NftPacketFilter;

  beforeAll(async () => {
    ns = await newNamespace('ct', names);
    filter = new NftPacketFilter({ netns: ns, commands });
    for (const [address, v6, sport] of [
      [A4, false, 40002],
      [B4, false, 40003],
      [A6, true, 40002],
      [B6, true, 40003],
    ] as const) {
      for (const args of entries(address, v6 ? WORLD6 : WORLD4, v6 ? NODE6 : NODE4, v6, sport)) {
        const r = await inNs(ns, ['conntrack', '-I', ...args]);
        expect(r.exitCode, `conntrack -I ${args.join(' ')}: ${r.stderr}`).toBe(0);
      }
    }
  });

  afterAll(async () => {
    filter?.close();
    await deleteNamespaces(names);
  });

  it("deletes both families' entries of the addresses in one call, in every position, and no others", async () => {
    const before = await table(ns);
    for (const address of [A4, A6, B4, B6]) expect(before.filter(naming(address)), before.join('\n')).toHaveLength(4);
    expect(before.some((l) => l.includes(`zone=3`) && naming(A6)(l))).toBe(true);

    await filter.flushConntrack([A4, A6]);
    const after = await table(ns);
    expect(after.filter(naming(A4))).toEqual([]);
    expect(after.filter(naming(A6))).toEqual([]);
    expect(after.filter(naming(B4))).toHaveLength(4);
    expect(after.filter(naming(B6))).toHaveLength(4);
    expect(after).toHaveLength(8);
  });

  it('is idempotent: nothing left to delete, or an address never seen, is fine', async () => {
    await filter.flushConntrack([A4, A6]);
    await filter.flushConntrack(['198.19.1.250' as IpAddress]);
    await filter.flushConntrack([]);
    expect(await table(ns)).toHaveLength(8);
  });

  it('concurrent flushes (one of them a bad address) each get their own answer', async () => {
    const results = await Promise.allSettled([
      filter.flushConntrack([B4 as IpAddress]),
      filter.flushConntrack(['not-an-address' as IpAddress]),
      filter.flushConntrack([B6 as IpAddress]),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await table(ns)).toEqual([]);
  });
});
