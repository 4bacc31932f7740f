/**
 * ensureBase's comparison, on output captured from nftables 1.0.6 (test/fixtures):
 *   echo.json            `unshare --net -- nft -j --echo -f FILE` of the install script of filterBase() without
 *                        cluster subnets (what NftPacketFilter builds its reference from)
 *   list-ip.json,        `nft -j -t list table ip|bridge nodenet` after installing the same base with
 *   list-bridge.json     cluster subnets 198.19.1.0/24, 198.19.2.0/24 and one port / one source added
 *   cluster-subnets.json `nft -j list set ip nodenet cluster_subnets` of the same
 * Each case edits the listing the way a drift would and checks what is reported and what is rewritten.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Subnet, type FilterBase, type IfName, type Ipv4Address } from '@nodenet/core';
import { ensureBaseScript } from '../src/index.js';
import { diffBase } from '../src/drift.js';
import { parseEchoShapes, parseSubnetElements, parseTableShape, type BaseShape } from '../src/listing.js';
import { clusterSubnetElements, repairScript, repairScripts } from '../src/script.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

const base: FilterBase = {
  cniName: 'nodenet0' as IfName,
  ipv4: { subnet: Subnet.of('198.19.1.0/24'), gateway: '198.19.1.1' as Ipv4Address },
  clusterSubnets: [Subnet.of('198.19.1.0/24'), Subnet.of('198.19.2.0/24')],
};
const expectedSubnets = clusterSubnetElements(base);
const reference = parseEchoShapes(fixture('echo.json'));

type Obj = Record<string, Record<string, unknown>>;
type Doc = { nftables: Obj[] };

/** The captured listings, each passed through `edit` (which may mutate the objects) first. */
function listed(edit: { ip?: (objects: Obj[]) => Obj[] | null; bridge?: (objects: Obj[]) => Obj[] | null } = {}): BaseShape {
  const read = (family: 'ip' | 'bridge') => {
    const doc = JSON.parse(fixture(`list-${family}.json`)) as Doc;
    const edited = (edit[family] ?? ((o) => o))(doc.nftables);
    return edited === null ? null : parseTableShape(JSON.stringify({ nftables: edited }), family);
  };
  return { ip: read('ip'), bridge: read('bridge') };
}

const subnets = parseSubnetElements(fixture('cluster-subnets.json'));
const rulesOf = (objects: Obj[], chain: string) => objects.filter((o) => o.rule?.chain === chain);
const lines = (script: string) => script.trimEnd().split('\n');

describe('the reference', () => {
  it('built from the echo equals the listing of the same install (handles and elements aside)', () => {
    expect(reference.ip).not.toBeNull();
    expect(listed()).toEqual(reference);
  });

  it('holds every chain with its rules and every set, per table', () => {
    expect([...reference.ip!.chains.keys()]).toEqual(['guard', 'prerouting', 'output', 'postrouting']);
    expect([...reference.ip!.sets.keys()]).toEqual(['published_ports', 'cluster_subnets']);
    expect(reference.ip!.chains.get('postrouting')!.rules.map((r) => r.comment)).toEqual(['hairpin', 'egress']);
    expect([...reference.bridge!.chains.keys()]).toEqual(['prerouting', 'instance_port']);
    expect(reference.bridge!.chains.get('instance_port')!.rules).toHaveLength(3);
  });
});

describe('diffBase', () => {
  it('finds nothing when all is right: no repair, nothing to write', () => {
    expect(subnets).toEqual(['198.19.1.0/24', '198.19.2.0/24']);
    expect(diffBase(reference, listed(), expectedSubnets, subnets)).toEqual({ repairs: [], repair: null });
  });

  it('missing tables (a flushed ruleset): both reported, the full install is the repair', () => {
    const drift = diffBase(reference, { ip: null, bridge: null }, expectedSubnets, null);
    expect(drift.repairs).toEqual(['table ip nodenet was missing', 'table bridge nodenet was missing']);
    expect(repairScript(base, drift.repair!)).toBe(ensureBaseScript(base));
  });

  it('one missing table: only that table is rebuilt', () => {
    const drift = diffBase(reference, listed({ bridge: () => null }), expectedSubnets, subnets);
    expect(drift.repairs).toEqual(['table bridge nodenet was missing']);
    const script = repairScript(base, drift.repair!);
    expect(script).not.toMatch(/ ip nodenet/);
    expect(script).toContain('add rule bridge nodenet instance_port drop comment "default deny"');
  });

  it('a deleted rule: reported with the counts, only that chain refilled, elements untouched', () => {
    const drift = diffBase(reference, listed({ ip: (o) => o.filter((x) => x.rule?.comment !== 'egress') }), expectedSubnets, subnets);
    expect(drift.repairs).toEqual(['chain ip nodenet postrouting had 1 rules, expected 2']);
    expect(lines(repairScript(base, drift.repair!))).toEqual([
      'add table ip nodenet',
      'add map ip nodenet published_ports { type inet_proto . inet_service : ipv4_addr . inet_service; }',
      'add map ip nodenet published_host_ports { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }',
      'add set ip nodenet cluster_subnets { type ipv4_addr; flags interval; }',
      'add chain ip nodenet postrouting { type nat hook postrouting priority 100; policy accept; }',
      'flush chain ip nodenet postrouting',
      'add rule ip nodenet postrouting ct status dnat oifname "nodenet0" ip saddr { 198.19.1.0/24, 127.0.0.0/8 } masquerade comment "hairpin"',
      'add rule ip nodenet postrouting oifname != "nodenet0" ip saddr 198.19.1.0/24 ip daddr != @cluster_subnets masquerade comment "egress"',
    ]);
  });

  it('an emptied chain, and an added rule', () => {
    const emptied = diffBase(
      reference,
      listed({ bridge: (o) => o.filter((x) => x.rule?.chain !== 'prerouting') }),
      expectedSubnets,
      subnets,
    );
    expect(emptied.repairs).toEqual(['chain bridge nodenet prerouting had 0 rules, expected 2']);
    const added = diffBase(
      reference,
      listed({ ip: (o) => [...o, { rule: { family: 'ip', table: 'nodenet', chain: 'guard', handle: 99, expr: [{ accept: null }] } }] }),
      expectedSubnets,
      subnets,
    );
    expect(added.repairs).toEqual(['chain ip nodenet guard had 2 rules, expected 1']);
    expect(added.repair!.tables.map((t) => t.refill)).toEqual([['guard']]);
  });

  it('a modified rule with the same comment (e.g. replaced to DNAT only TCP) is found by its expressions', () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => {
          const rule = rulesOf(o, 'prerouting')[0]!.rule!;
          const expr = rule.expr as { match?: { left: unknown; right: unknown } }[];
          expr[1] = { match: { ...expr[1]!.match!, right: 'tcp' } };
          return o;
        },
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual(['chain ip nodenet prerouting: rule 1 ("published ports") differed from what nodenet installs']);
    expect(drift.repair!.tables.map((t) => t.refill)).toEqual([['prerouting']]);
  });

  it('swapped rules are a difference (order matters), named by position', () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => {
          const [a, b] = rulesOf(o, 'postrouting');
          const i = o.indexOf(a!);
          const j = o.indexOf(b!);
          [o[i], o[j]] = [o[j]!, o[i]!];
          return o;
        },
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual(['chain ip nodenet postrouting: rules 1 ("hairpin"), 2 ("egress") differed from what nodenet installs']);
  });

  it('a changed priority or policy: the chain is deleted and added again, every chain of the table refilled', () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => {
          const output = o.find((x) => x.chain?.name === 'output')!.chain!;
          output.prio = -90;
          return o;
        },
        bridge: (o) => {
          o.find((x) => x.chain?.name === 'prerouting')!.chain!.policy = 'drop';
          return o;
        },
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual([
      'chain ip nodenet output was type nat hook output priority -90 policy accept, expected type nat hook output priority -100 policy accept',
      'chain bridge nodenet prerouting was type filter hook prerouting priority -400 policy drop, expected type filter hook prerouting priority -400 policy accept',
    ]);
    const script = lines(repairScript(base, drift.repair!));
    // Flush everything first (jumps and lookups may reference what is deleted), then delete, then rebuild.
    const firstDelete = script.indexOf('delete chain ip nodenet output');
    expect(script.slice(0, firstDelete)).toEqual(
      ['guard', 'prerouting', 'output', 'postrouting'].map((c) => `flush chain ip nodenet ${c}`),
    );
    expect(script).toContain('delete chain bridge nodenet prerouting');
    expect(script.filter((l) => l.startsWith('add rule'))).toHaveLength(12);
    expect(script.filter((l) => /^(flush|delete) (set|map)/.test(l))).toEqual([]);
  });

  it('a dormant table: reported, and `add table` alone resets it', () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => {
          o.find((x) => x.table)!.table!.flags = 'dormant';
          return o;
        },
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual(['table ip nodenet had attributes {"flags":"dormant"}, expected {}']);
    // Woken in a transaction of its own first (the kernel refuses to wake a table and add base chains at once).
    const [reset, rest] = repairScripts(base, drift.repair!);
    expect(reset).toBe('add table ip nodenet\n');
    expect(lines(rest!).some((l) => /^(flush|delete)/.test(l))).toBe(false);
    expect(repairScripts(base, diffBase(reference, listed({ bridge: () => null }), expectedSubnets, subnets).repair!)).toHaveLength(1);
  });

  it("unexpected chains and sets in nodenet's tables are removed", () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => [
          ...o,
          { chain: { family: 'ip', table: 'nodenet', name: 'extra', handle: 50 } },
          { set: { family: 'ip', table: 'nodenet', name: 'blocked', handle: 51, type: 'ipv4_addr' } },
          { rule: { family: 'ip', table: 'nodenet', chain: 'extra', handle: 52, expr: [{ drop: null }] } },
        ],
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual(['unexpected set ip nodenet blocked: removed', 'unexpected chain ip nodenet extra: removed']);
    const script = lines(repairScript(base, drift.repair!));
    expect(script).toContain('flush chain ip nodenet extra');
    expect(script).toContain('delete chain ip nodenet extra');
    expect(script).toContain('delete set ip nodenet blocked');
  });

  it('a set with another declaration is recreated; cluster_subnets is then refilled, the map reported as emptied', () => {
    const drift = diffBase(
      reference,
      listed({
        ip: (o) => {
          delete o.find((x) => x.set?.name === 'cluster_subnets')!.set!.flags;
          o.find((x) => x.map?.name === 'published_ports')!.map!.map = 'ipv4_addr';
          return o;
        },
      }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual([
      'map ip nodenet published_ports was declared type inet_proto . inet_service : ipv4_addr, expected type inet_proto . inet_service : ipv4_addr . inet_service (recreated empty: its elements must be added again)',
      'set ip nodenet cluster_subnets was declared type ipv4_addr, expected type ipv4_addr flags interval',
    ]);
    const script = lines(repairScript(base, drift.repair!));
    expect(script).toContain('delete map ip nodenet published_ports');
    expect(script).toContain('delete set ip nodenet cluster_subnets');
    expect(script.slice(-2)).toEqual([
      'flush set ip nodenet cluster_subnets',
      'add element ip nodenet cluster_subnets { 198.19.1.0/24, 198.19.2.0/24 }',
    ]);
  });

  it('a missing set is added again (its chains, referencing it, show as changed too)', () => {
    const drift = diffBase(
      reference,
      listed({ bridge: (o) => o.filter((x) => x.set?.name !== 'allowed_sources' && x.rule?.chain !== 'instance_port') }),
      expectedSubnets,
      subnets,
    );
    expect(drift.repairs).toEqual([
      'set bridge nodenet allowed_sources was missing',
      'chain bridge nodenet instance_port had 0 rules, expected 3',
    ]);
    expect(repairScript(base, drift.repair!)).toContain('add set bridge nodenet allowed_sources { type ifname . ipv4_addr; }');
  });

  it('cluster_subnets with other contents: only the set is rewritten', () => {
    const drift = diffBase(reference, listed(), ['198.19.1.0/24', '198.19.2.0/24', '198.19.3.0/24'], subnets);
    expect(drift.repairs).toEqual([
      'cluster_subnets differed: held 198.19.1.0/24, 198.19.2.0/24, expected 198.19.1.0/24, 198.19.2.0/24, 198.19.3.0/24',
    ]);
    const withThird = { ...base, clusterSubnets: [...base.clusterSubnets, Subnet.of('198.19.3.0/24')] };
    expect(lines(repairScript(withThird, drift.repair!))).toEqual([
      'flush set ip nodenet cluster_subnets',
      'add element ip nodenet cluster_subnets { 198.19.1.0/24, 198.19.2.0/24, 198.19.3.0/24 }',
    ]);
    expect(diffBase(reference, listed(), expectedSubnets, []).repairs).toEqual([
      'cluster_subnets differed: held nothing, expected 198.19.1.0/24, 198.19.2.0/24',
    ]);
  });

  it('lists several differences at once', () => {
    const drift = diffBase(
      reference,
      listed({ ip: (o) => o.filter((x) => x.chain?.name !== 'guard' && x.rule?.chain !== 'guard'), bridge: () => null }),
      expectedSubnets,
      ['198.19.1.0/24'],
    );
    expect(drift.repairs).toEqual([
      'chain ip nodenet guard was missing',
      'table bridge nodenet was missing',
      'cluster_subnets differed: held 198.19.1.0/24, expected 198.19.1.0/24, 198.19.2.0/24',
    ]);
  });
});
