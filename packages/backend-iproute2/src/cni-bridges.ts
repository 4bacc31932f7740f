/**
 * The CNI's bridges, the pure parts (the I/O is CniBridgeSet in cni-bridge-set.ts). A Linux bridge holds at
 * most 1,023 ports (BR_MAX_PORTS), so a node with more instances needs more than one: the CNI bridge
 * (nodenet0, which holds the gateway address) and overflow bridges nodenet0b1, nodenet0b2, ..., each joined
 * to the CNI bridge by a veth pair (nodenet0bK-up is a port of the CNI bridge, nodenet0bK-dn a port of the
 * overflow bridge). Together they are one L2 segment: an instance on
 * an overflow bridge reaches the gateway and every other instance through that pair (one more bridge hop),
 * and the node sees its routed traffic on nodenet0 like any other instance's, so the ip-family rules (guard,
 * NAT, published ports) apply unchanged. The bridge family's anti-spoofing matches instance ports by name
 * (nnh-*, nni-*), so frames crossing the pair, already checked at the port they came in by, pass.
 *
 * Outside this backend nothing changes: the overflow bridges and their pairs are not listed as owned links,
 * and an instance port on an overflow bridge is reported as a port of the CNI.
 *
 * Which port is on which bridge is kept in memory (BridgePlacement): loaded once from a listing of the
 * kernel's links, then kept by the creates and deletes that go through the daemon. A bridge takes up to
 * `portsPerBridge` instance ports (default 1,000), so the CNI bridge keeps 23 ports for pairs; the kernel's
 * refusal of a port (EXFULL) is the backstop when something else filled a bridge.
 */
import { FailedPreconditionError, OWNER_ALIAS_PREFIX, type CniSpec, type IfName } from '@nodenet/core';
import type { IpLine, IpLink } from '@nodenet/linux';

/** The alias of an overflow bridge. */
export const OVERFLOW_BRIDGE_ALIAS = `${OWNER_ALIAS_PREFIX}cni-overflow`;
/** The alias of both ends of the pair that joins an overflow bridge to the CNI bridge. */
export const OVERFLOW_LINK_ALIAS = `${OWNER_ALIAS_PREFIX}cni-link`;

/** A Linux bridge's most ports (BR_MAX_PORTS - 1: port number 0 is not used). */
export const BRIDGE_MAX_PORTS = 1023;
export const DEFAULT_PORTS_PER_BRIDGE = 1000;
/** Two digits keep `nodenet0bKK-up` within the 15 characters of an interface name. */
const MAX_OVERFLOW_DIGITS_BOUND = 99;

export function overflowBridgeName(cni: string, index: number): string {
  return `${cni}b${index}`;
}

/** The pair that joins overflow bridge `index` to the CNI bridge: `up` is the CNI bridge's port, `down` the overflow bridge's. */
export function overflowLinkNames(cni: string, index: number): { readonly up: string; readonly down: string } {
  const bridge = overflowBridgeName(cni, index);
  return { up: `${bridge}-up`, down: `${bridge}-dn` };
}

/** The number of an overflow bridge of `cni` by its name (nodenet0b3 -> 3), or undefined. */
export function overflowIndexOf(cni: string, name: string | undefined): number | undefined {
  if (name === undefined || !name.startsWith(`${cni}b`)) return undefined;
  const digits = name.slice(cni.length + 1);
  return /^[1-9][0-9]?$/.test(digits) ? Number(digits) : undefined;
}

/** Whether `link` is one of the CNI's overflow bridges or their pairs (by name and alias: both must match). */
export function isOverflowInfrastructure(cni: string, link: Pick<IpLink, 'ifname' | 'alias'>): boolean {
  if (link.alias === OVERFLOW_BRIDGE_ALIAS) return overflowIndexOf(cni, link.ifname) !== undefined;
  if (link.alias === OVERFLOW_LINK_ALIAS) {
    const m = /^(.*)-(up|dn)$/.exec(link.ifname);
    return m !== null && overflowIndexOf(cni, m[1]) !== undefined;
  }
  return false;
}

/** Whether `name` is the CNI bridge or one of its overflow bridges. */
export function isCniBridge(cni: string, name: string | undefined): boolean {
  return name === cni || overflowIndexOf(cni, name) !== undefined;
}

/**
 * Makes overflow bridge `index` and its pair, each with the CNI's MTU, no IPv6 address generation and
 * nodenet's aliases, and brings them up. The bridge's MTU is set after creation for the reason createCniScript
 * gives. The bridge has no address and no MAC of nodenet's choosing: nothing is addressed to it.
 */
export function createOverflowScript(cni: CniSpec, index: number): IpLine[] {
  const bridge = overflowBridgeName(cni.name, index);
  return [
    { id: OVERFLOW_LINE.createBridge, args: ['link', 'add', 'name', bridge, 'type', 'bridge'], step: `create overflow bridge ${bridge}` },
    {
      id: OVERFLOW_LINE.configureBridge,
      args: ['link', 'set', 'dev', bridge, 'mtu', String(cni.mtu), 'alias', OVERFLOW_BRIDGE_ALIAS, 'addrgenmode', 'none', 'up'],
      step: `set MTU ${cni.mtu} and owner alias on ${bridge} and bring it up`,
    },
    ...createPairScript(cni, index),
  ];
}

function createPairScript(cni: CniSpec, index: number): IpLine[] {
  const bridge = overflowBridgeName(cni.name, index);
  const { up, down } = overflowLinkNames(cni.name, index);
  const mtu = String(cni.mtu);
  return [
    {
      id: OVERFLOW_LINE.createPair,
      args: ['link', 'add', 'name', up, 'mtu', mtu, 'master', cni.name, 'type', 'veth', 'peer', 'name', down, 'mtu', mtu],
      step: `create the pair ${up}/${down} joining ${bridge} to ${cni.name}`,
    },
    ...tagPairEndLines(up, cni.name),
    ...tagPairEndLines(down, bridge),
  ];
}

function tagPairEndLines(name: string, master: string): IpLine[] {
  return [
    {
      id: OVERFLOW_LINE.attachPair,
      args: ['link', 'set', 'dev', name, 'master', master, 'alias', OVERFLOW_LINK_ALIAS, 'addrgenmode', 'none', 'up'],
      step: `attach ${name} to ${master} and bring it up`,
    },
  ];
}

export const OVERFLOW_LINE = {
  createBridge: 'create-overflow-bridge',
  configureBridge: 'configure-overflow-bridge',
  createPair: 'create-overflow-pair',
  attachPair: 'attach-overflow-pair',
  repair: 'repair-overflow',
  delete: 'delete-overflow',
} as const;

/** One thing an overflow bridge or its pair had wrong: what was found and the lines that fix it. */
export interface OverflowRepair {
  readonly found: string;
  readonly lines: IpLine[];
}

/**
 * What brings overflow bridge `index` (which exists: `links` holds it) and its pair to the CNI's spec: the
 * pair present (made again, both ends, when either is missing), each end on its bridge and up, MTUs, the bridge up.
 */
export function repairOverflowScript(cni: CniSpec, index: number, links: ReadonlyMap<string, IpLink>): OverflowRepair[] {
  const bridgeName = overflowBridgeName(cni.name, index);
  const { up, down } = overflowLinkNames(cni.name, index);
  const bridge = links.get(bridgeName);
  const repairs: OverflowRepair[] = [];
  const set = (name: string, args: string[], what: string): IpLine => ({
    id: OVERFLOW_LINE.repair,
    args: ['link', 'set', 'dev', name, ...args],
    step: `${what} on ${name}`,
  });
  if (bridge !== undefined) {
    if (bridge.mtu !== cni.mtu)
      repairs.push({
        found: `MTU of ${bridgeName} was ${bridge.mtu}: set to ${cni.mtu}`,
        lines: [set(bridgeName, ['mtu', String(cni.mtu)], 'set MTU')],
      });
    if (!bridge.flags.includes('UP'))
      repairs.push({ found: `${bridgeName} was down: brought up`, lines: [set(bridgeName, ['up'], 'bring up')] });
  }
  const upLink = links.get(up);
  const downLink = links.get(down);
  if (upLink === undefined || downLink === undefined) {
    const survivor = upLink ?? downLink;
    repairs.push({
      found: `the pair joining ${bridgeName} to ${cni.name} was missing: made again`,
      lines: [
        ...(survivor === undefined
          ? []
          : [{ id: OVERFLOW_LINE.delete, args: ['link', 'del', 'dev', survivor.ifname], step: `delete ${survivor.ifname}` }]),
        ...createPairScript(cni, index),
      ],
    });
    return repairs;
  }
  for (const [end, master] of [
    [upLink, cni.name],
    [downLink, bridgeName],
  ] as const) {
    if (end.master !== master) {
      repairs.push({ found: `${end.ifname} was not a port of ${master}: attached again`, lines: tagPairEndLines(end.ifname, master) });
      continue;
    }
    if (end.mtu !== cni.mtu)
      repairs.push({
        found: `MTU of ${end.ifname} was ${end.mtu}: set to ${cni.mtu}`,
        lines: [set(end.ifname, ['mtu', String(cni.mtu)], 'set MTU')],
      });
    if (!end.flags.includes('UP'))
      repairs.push({ found: `${end.ifname} was down: brought up`, lines: [set(end.ifname, ['up'], 'bring up')] });
  }
  return repairs;
}

/**
 * Deletes the overflow bridges and pair ends among `links` (deleting one end of a pair deletes both; run with
 * -force, so the other end's line finds nothing and passes).
 */
export function deleteOverflowScript(cni: string, links: readonly Pick<IpLink, 'ifname' | 'alias'>[]): IpLine[] {
  return links
    .filter((l) => isOverflowInfrastructure(cni, l))
    .map((l) => ({ id: OVERFLOW_LINE.delete, args: ['link', 'del', 'dev', l.ifname], step: `delete ${l.ifname}` }));
}

/** The overflow bridges of `cni` that `links` holds (nodenet's, by name and alias), by number. */
export function overflowBridgesIn(cni: string, links: readonly Pick<IpLink, 'ifname' | 'alias'>[]): number[] {
  return links
    .filter((l) => l.alias === OVERFLOW_BRIDGE_ALIAS)
    .map((l) => overflowIndexOf(cni, l.ifname))
    .filter((i): i is number => i !== undefined)
    .sort((a, b) => a - b);
}

/**
 * Which instance port is on which of the CNI's bridges, and where the next one goes: the lowest-numbered
 * bridge with room (the CNI bridge is number 0), so deletes free room that later creates fill. Pure: the
 * dataplane loads it from a listing and makes the bridges it names.
 */
export class BridgePlacement {
  private readonly bridgeOf = new Map<string, number>();
  private readonly counts: number[] = [];
  /** Bridges the kernel refused a port although their count had room (something else holds ports there). */
  private readonly full = new Set<number>();
  private isLoaded = false;
  readonly maxOverflow: number;

  constructor(
    readonly cni: string,
    readonly portsPerBridge: number = DEFAULT_PORTS_PER_BRIDGE,
  ) {
    if (!Number.isInteger(portsPerBridge) || portsPerBridge < 1 || portsPerBridge >= BRIDGE_MAX_PORTS) {
      throw new RangeError(`portsPerBridge must be an integer from 1 to ${BRIDGE_MAX_PORTS - 1}, not ${portsPerBridge}`);
    }
    // The CNI bridge holds its own instance ports plus one pair end per overflow bridge.
    this.maxOverflow = Math.min(BRIDGE_MAX_PORTS - portsPerBridge, MAX_OVERFLOW_DIGITS_BOUND);
  }

  get loaded(): boolean {
    return this.isLoaded;
  }

  /** Takes the instance ports (nnh-*, nni-* on one of the CNI's bridges) from a listing of every link. */
  load(links: readonly IpLink[]): void {
    this.reset();
    for (const l of links) {
      if (!/^nn[hi]-[0-9a-f]{8}$/.test(l.ifname)) continue;
      const index = l.master === this.cni ? 0 : overflowIndexOf(this.cni, l.master);
      if (index !== undefined) this.add(l.ifname, index);
    }
    this.isLoaded = true;
  }

  reset(): void {
    this.bridgeOf.clear();
    this.counts.length = 0;
    this.full.clear();
    this.isLoaded = false;
  }

  /** Reserves room for `port` on the lowest-numbered bridge with room; returns that bridge's number (0: the CNI bridge). */
  place(port: string): number {
    this.release(port);
    for (let index = 0; index <= this.maxOverflow; index++) {
      if ((this.counts[index] ?? 0) < this.portsPerBridge && !this.full.has(index)) {
        this.add(port, index);
        return index;
      }
    }
    throw new FailedPreconditionError(
      `the node's ${this.maxOverflow + 1} bridges (${this.cni} and ${this.cni}b1 to ${this.cni}b${this.maxOverflow}) already hold ${this.portsPerBridge} instance ports each: delete an interface first, or run more instances on other nodes`,
    );
  }

  /** The kernel refused a port on bridge `index` (EXFULL) although it looked to have room: place no more there. */
  markFull(index: number): void {
    this.full.add(index);
  }

  release(port: string): void {
    const index = this.bridgeOf.get(port);
    if (index === undefined) return;
    this.bridgeOf.delete(port);
    this.counts[index] = (this.counts[index] ?? 1) - 1;
    this.full.delete(index);
  }

  /** The bridge number `port` was placed on, if known. */
  bridgeIndexOf(port: string): number | undefined {
    return this.bridgeOf.get(port);
  }

  /** Instance ports per bridge number (for tests and logs). */
  occupancy(): number[] {
    return Array.from({ length: this.counts.length }, (_, i) => this.counts[i] ?? 0);
  }

  private add(port: string, index: number): void {
    this.bridgeOf.set(port, index);
    this.counts[index] = (this.counts[index] ?? 0) + 1;
  }
}

/** The bridge's name for a placement number (0: the CNI bridge itself). */
export function bridgeNameOf(cni: IfName | string, index: number): string {
  return index === 0 ? cni : overflowBridgeName(cni, index);
}
