/**
 * What ensureBase compares (pure, unit-tested): nodenet's tables as the kernel lists them against a
 * reference, the same tables as the kernel reported them back when nft installed them into an empty
 * namespace (see NftPacketFilter.reference). Both sides come from the same nft and the same kernel, reduced
 * to the same shapes (listing.ts), so "equal" needs no knowledge of how nft spells an expression, and a
 * deleted, added, reordered or modified rule, a changed hook, priority, policy or set type, an unexpected
 * chain or set, a dormant table and a missing table are all differences.
 *
 * Elements are not part of the shapes: published_ports and allowed_sources belong to instances (core
 * compares them with its records), and cluster_subnets is compared by content, as CIDRs.
 */
import type { BaseShape, TableShape } from './listing.js';
import { CLUSTER_SUBNETS, TABLE, type BaseRepair, type Family, type TableRepair } from './script.js';

export interface Drift {
  /** One line per difference, for the repair report; empty when everything is right. */
  readonly repairs: readonly string[];
  /** What to rewrite (null when nothing): chains and sets that are right are left alone. */
  readonly repair: BaseRepair | null;
}

const FAMILIES: readonly Family[] = ['ip', 'ip6', 'bridge'];

/** cluster_subnets' contents by table family (an array: the ip table's, as before IPv6). */
export type SubnetsByFamily = Partial<Record<'ip' | 'ip6', readonly string[] | null>>;

function byFamily(s: readonly string[] | null | SubnetsByFamily): SubnetsByFamily {
  return s === null || Array.isArray(s) ? { ip: s as readonly string[] | null } : (s as SubnetsByFamily);
}

/**
 * Compares `listed` with `reference` (nodenet's objects only) and the cluster_subnets contents (CIDRs;
 * null: the set is absent) with `expectedSubnets`.
 */
export function diffBase(
  reference: BaseShape,
  listed: BaseShape,
  expectedSubnetsInput: readonly string[] | SubnetsByFamily,
  listedSubnetsInput: readonly string[] | null | SubnetsByFamily,
): Drift {
  const expectedByFamily = byFamily(expectedSubnetsInput);
  const listedByFamily = byFamily(listedSubnetsInput);
  const repairs: string[] = [];
  const tables: TableRepair[] = [];
  let refillSubnets = false;
  if (!reference.bridge) throw new Error(`the reference has no table bridge ${TABLE}`);
  for (const family of FAMILIES) {
    const want = reference[family];
    if (!want) continue;
    const d = diffTable(want, listed[family] ?? null);
    repairs.push(...d.repairs);
    if (d.repair) tables.push(d.repair);
    // A missing or recreated cluster_subnets is refilled; its contents are reported only when it was kept.
    if (family !== 'bridge' && d.recreatedSets.includes(CLUSTER_SUBNETS)) refillSubnets = true;
  }
  for (const family of ['ip', 'ip6'] as const) {
    if (!reference[family] || refillSubnets) continue;
    const held = listedByFamily[family] ?? null;
    const expected = expectedByFamily[family] ?? [];
    const at = family === 'ip' ? 'cluster_subnets' : 'ip6 cluster_subnets';
    if (held !== null && !sameMembers(held, expected)) {
      refillSubnets = true;
      repairs.push(`${at} differed: held ${shown(held)}, expected ${shown(expected)}`);
    }
    const table = listed[family];
    if (!refillSubnets && held === null && table && table.sets.has(CLUSTER_SUBNETS)) {
      // Listed as present in the table but not readable on its own: rewrite it rather than guess.
      refillSubnets = true;
      repairs.push(`${at} could not be read: refilled`);
    }
  }
  if (repairs.length === 0) return { repairs, repair: null };
  return { repairs, repair: { tables, clusterSubnets: refillSubnets } };
}

interface TableDrift {
  readonly repairs: string[];
  readonly repair: TableRepair | null;
  /** Sets and maps that the repair (re)creates (missing, or deleted for a differing declaration). */
  readonly recreatedSets: string[];
}

function diffTable(want: TableShape, have: TableShape | null): TableDrift {
  const at = `${want.family} ${TABLE}`;
  if (!have) {
    return {
      repairs: [`table ${at} was missing`],
      repair: { family: want.family, flush: [], deleteChains: [], deleteSets: [], refill: [...want.chains.keys()] },
      recreatedSets: [...want.sets.keys()],
    };
  }
  const repairs: string[] = [];
  const deleteChains: string[] = [];
  const deleteSets: { kind: 'set' | 'map'; name: string }[] = [];
  const refill = new Set<string>();
  const recreatedSets: string[] = [];
  let reset = false;

  if (have.attributes !== want.attributes) {
    // `add table` resets them (e.g. clears `flags dormant`, which would switch every chain off).
    repairs.push(`table ${at} had attributes ${have.attributes}, expected ${want.attributes}`);
    reset = true;
  }

  for (const [name, set] of want.sets) {
    const held = have.sets.get(name);
    if (!held) {
      repairs.push(`${set.kind} ${at} ${name} was missing`);
      recreatedSets.push(name);
    } else if (held.kind !== set.kind || held.declaration !== set.declaration) {
      const lost = name === CLUSTER_SUBNETS ? '' : ' (recreated empty: its elements must be added again)';
      repairs.push(
        `${held.kind} ${at} ${name} was ${held.kind === set.kind ? '' : `a ${held.kind} `}declared ${held.described}, expected ${set.described}${lost}`,
      );
      deleteSets.push({ kind: held.kind, name });
      recreatedSets.push(name);
    }
  }
  for (const [name, held] of have.sets) {
    if (!want.sets.has(name)) {
      repairs.push(`unexpected ${held.kind} ${at} ${name}: removed`);
      deleteSets.push({ kind: held.kind, name });
    }
  }

  for (const [name, chain] of want.chains) {
    const held = have.chains.get(name);
    if (!held) {
      repairs.push(`chain ${at} ${name} was missing`);
      refill.add(name);
      continue;
    }
    if (held.declaration !== chain.declaration) {
      // A hook, type or priority cannot be changed in place: the chain is deleted and added again.
      repairs.push(`chain ${at} ${name} was ${held.described}, expected ${chain.described}`);
      deleteChains.push(name);
      refill.add(name);
      continue;
    }
    if (held.rules.length !== chain.rules.length) {
      repairs.push(`chain ${at} ${name} had ${held.rules.length} rules, expected ${chain.rules.length}`);
      refill.add(name);
      continue;
    }
    const differing = chain.rules.flatMap((rule, i) =>
      held.rules[i]!.body === rule.body ? [] : [`${i + 1}${rule.comment ? ` ("${rule.comment}")` : ''}`],
    );
    if (differing.length > 0) {
      repairs.push(
        `chain ${at} ${name}: rule${differing.length > 1 ? 's' : ''} ${differing.join(', ')} differed from what nodenet installs`,
      );
      refill.add(name);
    }
  }
  for (const name of have.chains.keys()) {
    if (!want.chains.has(name)) {
      repairs.push(`unexpected chain ${at} ${name}: removed`);
      deleteChains.push(name);
    }
  }

  const deleting = deleteChains.length + deleteSets.length > 0;
  if (deleting) {
    // A deleted chain or set may be referenced (a jump, a lookup) from any chain: flush them all first, so
    // nodenet's chains are all refilled, in the same transaction.
    for (const name of want.chains.keys()) refill.add(name);
  }
  if (!reset && !deleting && refill.size === 0 && recreatedSets.length === 0) return { repairs, repair: null, recreatedSets };
  return {
    repairs,
    repair: {
      family: want.family,
      ...(reset ? { reset } : {}),
      flush: deleting ? [...have.chains.keys()] : [],
      deleteChains,
      deleteSets,
      refill: [...want.chains.keys()].filter((c) => refill.has(c)),
    },
    recreatedSets,
  };
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function shown(list: readonly string[]): string {
  return list.length === 0 ? 'nothing' : list.join(', ');
}
