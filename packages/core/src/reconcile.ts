/**
 * Reconciliation: what nodenet intends (its records) against what exists (links and filter elements it
 * owns). The planner is pure: given both sides and the work in flight, it says what to repair and what
 * to remove. Only what nodenet owns is ever considered: links with its owner tag, elements of its tables.
 */
import { OWNER_ALIAS_PREFIX, type IfName } from './names.js';
import { portKey, type Port, type PortMapping, type Protocol } from './ports.js';
import { addressFamily, linkLocalForMac, type IpAddress } from './net6.js';
import { addressList, instanceAddressesOfRecord } from './addressing.js';
import type { InstanceRecord } from './model.js';
import type { AllowedSource, FilterElements, LinkState, PublishedPort } from './ports-of-core.js';

/** Work that must not be touched: creates and deletes in flight. */
export interface BusySet {
  readonly handles: ReadonlySet<string>;
  readonly addresses: ReadonlySet<string>;
  readonly portKeys: ReadonlySet<string>;
}

export interface ReconcilePlan {
  /** Records whose bridge port is missing: recreate (namespace alive) or release. */
  readonly missingInterfaces: InstanceRecord[];
  /** Records whose bridge port exists but is no longer a port of the CNI (reported only by backends that report `master`). */
  readonly detachedPorts: InstanceRecord[];
  /** Records whose interface exists but whose ports or admitted source are missing from the filter. */
  readonly missingRules: InstanceRecord[];
  /** Owned links that no record explains (e.g. a create cut short by a crash). */
  readonly orphanLinks: IfName[];
  /** Filter elements that no record explains. */
  readonly orphanElements: FilterElements;
}

export interface PlanInput {
  /** Every record now: what explains an owned link or element. */
  readonly records: readonly InstanceRecord[];
  /** Handles whose kernel state is checked: records that existed before the kernel was listed (newer ones may not show yet). */
  readonly checkable: ReadonlySet<string>;
  /** The CNI's name (an owned link that is not an instance's). */
  readonly cniName: string | null;
  /** Other links nodenet owns that are not instances' (e.g. the overlay device). */
  readonly infrastructureLinks: ReadonlySet<string>;
  readonly links: readonly LinkState[];
  readonly elements: FilterElements;
  readonly busy: BusySet;
}

const sourceKey = (ifname: string, address: string) => `${ifname}|${address}`;
const portValue = (p: { address: string; instancePort: number }) => `${p.address}:${p.instancePort}`;
/**
 * A published port's place: its key in the map of its address's family (a dual-stack port is in both), on
 * every address or on one host address (each has its own map element).
 */
const placeKey = (p: { protocol: Protocol; hostPort: number; hostAddress?: string }, address: string) =>
  `${portKey(p.protocol, p.hostPort as Port)}|v${addressFamily(address)}${p.hostAddress === undefined ? '' : `@${p.hostAddress}`}`;

/** The instance addresses a mapping is published to: on one host address, only those of that address's family. */
function publishedTo(m: PortMapping, addresses: readonly string[]): string[] {
  const family = m.hostAddress === undefined ? undefined : addressFamily(m.hostAddress);
  return addresses.filter((a) => family === undefined || addressFamily(a as IpAddress) === family);
}

/** The filter addresses of a record: its addresses, and with IPv6 its link-local one (admitted as a source too). */
function filterAddressesOf(r: InstanceRecord): { addresses: string[]; sources: string[] } {
  const addresses = addressList(instanceAddressesOfRecord(r));
  const linkLocal = addresses.some((a) => addressFamily(a) === 6) ? [linkLocalForMac(r.mac)] : [];
  return { addresses, sources: [...addresses, ...linkLocal] };
}

export function planReconcile(input: PlanInput): ReconcilePlan {
  const linkNames = new Set(input.links.map((l) => l.name));
  const masterOf = new Map(input.links.map((l) => [l.name, l.master]));
  const detachedPorts: InstanceRecord[] = [];
  const portsHeld = new Map(input.elements.ports.map((p) => [placeKey(p, p.address), portValue(p)]));
  const sourcesHeld = new Set(input.elements.sources.map((s) => sourceKey(s.ifname, s.address)));

  const missingInterfaces: InstanceRecord[] = [];
  const missingRules: InstanceRecord[] = [];
  const explainedLinks = new Set<string>();
  const explainedPorts = new Map<string, string>();
  const explainedSources = new Set<string>();

  for (const r of input.records) {
    explainedLinks.add(r.hostIfname);
    explainedLinks.add(r.handle);
    const own = filterAddressesOf(r);
    for (const a of own.sources) explainedSources.add(sourceKey(r.hostIfname, a));
    for (const m of r.ports)
      for (const a of publishedTo(m, own.addresses))
        explainedPorts.set(placeKey(m, a), portValue({ address: a, instancePort: m.instancePort }));
    if (input.busy.handles.has(r.handle) || !input.checkable.has(r.handle)) continue;
    if (!linkNames.has(r.hostIfname)) {
      missingInterfaces.push(r);
      continue;
    }
    const master = masterOf.get(r.hostIfname);
    if (master !== undefined && input.cniName !== null && master !== input.cniName) detachedPorts.push(r);
    const rulesOk =
      own.sources.every((a) => sourcesHeld.has(sourceKey(r.hostIfname, a))) &&
      r.ports.every((m) =>
        publishedTo(m, own.addresses).every(
          (a) => portsHeld.get(placeKey(m, a)) === portValue({ address: a, instancePort: m.instancePort }),
        ),
      );
    if (!rulesOk) missingRules.push(r);
  }

  const orphanLinks = input.links
    .filter((l) => l.ownerTag?.startsWith(OWNER_ALIAS_PREFIX))
    .filter((l) => l.name !== input.cniName && !input.infrastructureLinks.has(l.name))
    .filter((l) => !explainedLinks.has(l.name))
    .filter((l) => !input.busy.handles.has(handleOfOwnerTag(l.ownerTag!)))
    .map((l) => l.name as IfName);

  const orphanPorts: PublishedPort[] = input.elements.ports.filter((p) => {
    if (input.busy.portKeys.has(portKey(p.protocol, p.hostPort as never)) || input.busy.addresses.has(p.address)) return false;
    return explainedPorts.get(placeKey(p, p.address)) !== portValue(p);
  });
  const orphanSources: AllowedSource[] = input.elements.sources.filter((s) => {
    if (input.busy.addresses.has(s.address)) return false;
    return !explainedSources.has(sourceKey(s.ifname, s.address));
  });

  return { missingInterfaces, detachedPorts, missingRules, orphanLinks, orphanElements: { ports: orphanPorts, sources: orphanSources } };
}

/** `nodenet:nni-1a2b3c4d` -> `nni-1a2b3c4d`. */
export function handleOfOwnerTag(tag: string): string {
  return tag.startsWith(OWNER_ALIAS_PREFIX) ? tag.slice(OWNER_ALIAS_PREFIX.length) : '';
}

/**
 * What a repair put right, a fixed set (metrics count repairs by kind): `cni` (the CNI, its address or
 * sysctls), `packet_filter` (nodenet's tables and chains), `orphan_link` / `orphan_filter_element` (one per
 * removed object), `detached_port`, `missing_rules`, `instance_recreated`, `instance_released`, and
 * `overlay` (stale overlay entries, reported by the cluster side).
 */
export const REPAIR_KINDS = [
  'cni',
  'packet_filter',
  'orphan_link',
  'orphan_filter_element',
  'detached_port',
  'missing_rules',
  'instance_recreated',
  'instance_released',
  'overlay',
] as const;
export type RepairKind = (typeof REPAIR_KINDS)[number];

/**
 * How a reconcile pass was set off: `start` (restore before SERVING), `periodic` (the safety-net interval),
 * `event` (a change notification from the kernel or Open vSwitch about something nodenet owns).
 */
export const REPAIR_TRIGGERS = ['start', 'periodic', 'event'] as const;
export type RepairTrigger = (typeof REPAIR_TRIGGERS)[number];

/** What sets a pass off, and (for events) the changes seen, named in every repair line. */
export interface ReconcileCause {
  readonly trigger: RepairTrigger;
  /** The changes that set an event pass off (e.g. `link nnh-1a2b3c4d deleted`), at most a few. */
  readonly causes?: readonly string[];
}

/** The outcome of one reconcile pass, kept for the inspect RPC. */
export interface ReconcileReport {
  /** How the pass was set off (a metric's label: repairs found by events vs by the periodic pass). */
  readonly trigger: RepairTrigger;
  readonly startedAt: string;
  readonly durationMs: number;
  /** What was wrong and was put right, one line each. */
  readonly repairs: readonly string[];
  /** How many objects each kind of repair put right (a line may cover several, e.g. orphan links). */
  readonly repairCounts: Readonly<Partial<Record<RepairKind, number>>>;
  /** What could not be checked or repaired (retried on the next pass). */
  readonly errors: readonly string[];
  /**
   * Where the pass's time went, ms per step in order (`cni`, `filter`: converging them; `list`: reading links
   * and filter elements; `fix`: the repairs the plan called for). For the event-repair latency breakdown.
   */
  readonly phases?: Readonly<Record<string, number>>;
}
