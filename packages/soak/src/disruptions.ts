/**
 * What the soak does behind the daemon's back, in the node namespace only, and how it sees the repair:
 * nodenet's nftables tables flushed or deleted (repaired when the table's rules and elements are as they
 * were), an instance's host veth end deleted (repaired when it exists again, up, and a port of the CNI
 * again: the kernel link's master with iproute2, OVSDB with ovs, whose userspace-datapath ports have no master).
 */
import { link, nsExec } from '@nodenet/testkit';
import { TABLE } from '@nodenet/nftables';

export type DisruptionKind = 'flush-ip-table' | 'delete-bridge-table' | 'delete-host-veth' | 'delete-ip-table' | 'flush-bridge-table';

/** The order the soak cycles through. */
export const DISRUPTIONS: readonly DisruptionKind[] = [
  'flush-ip-table',
  'delete-bridge-table',
  'delete-host-veth',
  'delete-ip-table',
  'flush-bridge-table',
];

/** Rule and element counts of one of nodenet's tables ('' when it is absent): equal before and after a repair. */
export async function tableFingerprint(ns: string, family: 'ip' | 'bridge'): Promise<string> {
  const r = await nsExec(ns, 'nft', ['-j', 'list', 'table', family, TABLE], { allowFailure: true });
  if (r.exitCode !== 0) return '';
  const items = (JSON.parse(r.stdout) as { nftables?: Array<Record<string, { elem?: unknown[] }>> }).nftables ?? [];
  let rules = 0;
  const sets: string[] = [];
  for (const item of items) {
    if (item.rule) rules += 1;
    const set = item.set ?? item.map;
    if (set) sets.push(`${(set as { name?: string }).name}=${set.elem?.length ?? 0}`);
  }
  return `rules=${rules} ${sets.sort().join(' ')}`;
}

export interface Disruption {
  readonly kind: DisruptionKind;
  /** What was done, for the log. */
  readonly what: string;
  /** Resolves true once the daemon has put things back as they were. */
  readonly repaired: () => Promise<boolean>;
}

/** The switch (CNI) a link of the node is a port of, read where the backend keeps it; undefined: none. */
export type SwitchOf = (ifname: string) => Promise<string | undefined>;

/**
 * Does `kind` to the node and returns how to tell it was repaired. `hostInterface` is for delete-host-veth,
 * `switchOf` tells whether the recreated link is a port of the CNI again.
 */
export async function disrupt(
  ns: string,
  kind: DisruptionKind,
  hostInterface: string | undefined,
  switchOf: SwitchOf,
): Promise<Disruption> {
  if (kind === 'delete-host-veth') {
    if (!hostInterface) throw new Error('delete-host-veth needs a live instance');
    await nsExec(ns, 'ip', ['link', 'del', hostInterface]);
    return {
      kind,
      what: `ip link del ${hostInterface}`,
      repaired: async () => {
        // Back in the bridge with its peer (the instance end) up again.
        const l = await link(ns, hostInterface);
        return l !== undefined && l.flags.includes('LOWER_UP') && (await switchOf(hostInterface)) !== undefined;
      },
    };
  }
  const family = kind.endsWith('-ip-table') ? 'ip' : 'bridge';
  const before = await tableFingerprint(ns, family);
  const verb = kind.startsWith('flush') ? 'flush' : 'delete';
  await nsExec(ns, 'nft', [verb, 'table', family, TABLE]);
  return {
    kind,
    what: `nft ${verb} table ${family} ${TABLE} (was ${before})`,
    repaired: async () => (await tableFingerprint(ns, family)) === before,
  };
}
