/**
 * The CNI's bridges at work: where each instance port goes, making and repairing overflow bridges, and what
 * deleting the CNI removes with it. The pure parts (names, scripts, BridgePlacement) are in cni-bridges.ts;
 * this class does the I/O, through the dataplane's `ip` runner, only when a port goes on an overflow bridge
 * not checked yet, when the CNI is converged or deleted, or on a failure (never on the happy path of a
 * create onto a known bridge).
 */
import { FailedPreconditionError, type CniSpec, type IfName, type Logger } from '@nodenet/core';
import {
  causedBy,
  deleteLinkScript,
  deviceMissingRe,
  failedAt,
  parseIpLinks,
  type IpLine,
  type IpLink,
  type IpRunner,
} from '@nodenet/linux';
import {
  BridgePlacement,
  OVERFLOW_LINE,
  bridgeNameOf,
  createOverflowScript,
  deleteOverflowScript,
  overflowBridgeName,
  overflowBridgesIn,
  overflowLinkNames,
  repairOverflowScript,
} from './cni-bridges.js';

/** The bridge a port goes on: its placement number (0: the CNI bridge) and name. */
export interface PlacedPort {
  readonly index: number;
  readonly bridge: string;
}

export class CniBridgeSet {
  private readonly placement: BridgePlacement;
  private placementLoad: Promise<void> | undefined;
  /**
   * Overflow bridges checked (made or repaired) since they were last found missing, by number; `checkedAt`:
   * the number of link listings started when the check finished (unset while it runs).
   */
  private readonly overflowReady = new Map<number, { ready: Promise<void>; checkedAt?: number }>();
  /**
   * Link listings started so far. A listing that started before a bridge was made does not show it: only
   * one started after the check finished may forget it (else a reconcile listing taken while a burst crosses
   * 1,000 ports made concurrent creates make the same bridge twice: `File exists`).
   */
  private listingsStarted = 0;

  constructor(
    private readonly node: IpRunner,
    private readonly cni: IfName,
    portsPerBridge: number | undefined,
    private readonly logger: Logger,
    /** Called after links were made or changed (the dataplane's `ip` sessions may hold stale indexes). */
    private readonly onLinksChanged: () => void,
    /** Removes a half-made link without throwing (the dataplane's roll-back; the original error is reported). */
    private readonly removeQuietly: (name: string, step: string) => Promise<void>,
  ) {
    this.placement = new BridgePlacement(cni, portsPerBridge);
  }

  /** Where port `port` goes: a bridge of the CNI with room (made first if it is an overflow bridge not there yet). */
  async place(port: IfName, cni: CniSpec): Promise<PlacedPort> {
    if (!this.placement.loaded) await this.load();
    const index = this.placement.place(port);
    if (index > 0) {
      try {
        await this.ensureOverflow(cni, index);
      } catch (e) {
        this.placement.release(port);
        throw e;
      }
    }
    return { index, bridge: bridgeNameOf(cni.name, index) };
  }

  /** The port left its bridge (deleted, or its create failed). */
  release(port: string): void {
    this.placement.release(port);
  }

  /**
   * After a create on `placed` failed with `e`: whether placing it again may succeed, i.e. the kernel refused
   * the bridge for being full (something else holds ports on it: placed elsewhere from now on) or an overflow
   * bridge was deleted behind the daemon's back (made again by the next placement).
   */
  refusedBecauseOfBridge(placed: PlacedPort, e: unknown): boolean {
    if (causedBy(e, /Exchange full/)) {
      this.placement.markFull(placed.index);
      return true;
    }
    if (placed.index > 0 && causedBy(e, deviceMissingRe(placed.bridge))) {
      this.overflowReady.delete(placed.index);
      return true;
    }
    return false;
  }

  /**
   * What a listing of every link (reconcile's) tells: where the instance ports are, when not known yet (this
   * spares the first create a read), and which overflow bridges are gone.
   */
  noteListing(links: readonly IpLink[], listing: number): void {
    if (!this.placement.loaded && this.placementLoad === undefined) this.placement.load(links);
    this.forgetMissing(overflowBridgesIn(this.cni, links), listing);
  }

  /** Call right before listing the links; pass what it returns to noteListing with that listing. */
  listingStarts(): number {
    return ++this.listingsStarted;
  }

  /**
   * Brings every overflow bridge found and its pair to the spec (one listing of the links; one batch when
   * something is wrong); returns what was wrong. Runs when any overflow bridge is known, or `cniRemade` (a
   * CNI bridge made again has none of the pairs' ends); otherwise costs nothing.
   */
  async converge(spec: CniSpec, cniRemade: boolean): Promise<string[]> {
    if (!cniRemade && this.overflowReady.size === 0 && this.placement.occupancy().length <= 1) return [];
    const listing = this.listingStarts();
    const { links, byName } = await this.listLinks(`list the overflow bridges of ${spec.name}`);
    const found = overflowBridgesIn(spec.name, links);
    this.forgetMissing(found, listing);
    const repairs = found.flatMap((index) => repairOverflowScript(spec, index, byName));
    if (repairs.length > 0) {
      await this.node.batch(
        repairs.flatMap((r) => r.lines),
        { step: `repair the overflow bridges of ${spec.name}` },
      );
      this.onLinksChanged();
    }
    return repairs.map((r) => r.found);
  }

  /** The lines that delete the overflow bridges and pairs among `links` (with the CNI); forgets every placement. */
  deleteAll(links: readonly IpLink[]): IpLine[] {
    this.placement.reset();
    this.overflowReady.clear();
    return deleteOverflowScript(this.cni, links);
  }

  private load(): Promise<void> {
    this.placementLoad ??= this.listLinks('list the ports of the CNI bridges')
      .then(({ links }) => {
        if (!this.placement.loaded) this.placement.load(links);
      })
      .finally(() => {
        this.placementLoad = undefined;
      });
    return this.placementLoad;
  }

  /** Overflow bridges not among `found` (by listing number `listing`) are made again by the next port placed on them. */
  private forgetMissing(found: readonly number[], listing: number): void {
    for (const [index, entry] of [...this.overflowReady]) {
      if (!found.includes(index) && entry.checkedAt !== undefined && entry.checkedAt < listing) this.overflowReady.delete(index);
    }
  }

  /** Makes overflow bridge `index` and its pair, or repairs them; once per bridge until it is found missing. */
  private ensureOverflow(cni: CniSpec, index: number): Promise<void> {
    const known = this.overflowReady.get(index);
    if (known) return known.ready;
    const entry: { ready: Promise<void>; checkedAt?: number } = { ready: this.makeOverflow(cni, index) };
    this.overflowReady.set(index, entry);
    entry.ready.then(
      () => (entry.checkedAt = this.listingsStarted),
      () => {
        if (this.overflowReady.get(index) === entry) this.overflowReady.delete(index);
      },
    );
    return entry.ready;
  }

  private async makeOverflow(cni: CniSpec, index: number): Promise<void> {
    const bridge = overflowBridgeName(cni.name, index);
    const { byName } = await this.listLinks(`read overflow bridge ${bridge}`);
    const existing = byName.get(bridge);
    let lines: IpLine[];
    if (existing === undefined) {
      const { up, down } = overflowLinkNames(cni.name, index);
      // A pair left from a bridge deleted behind the daemon's back is made again with the bridge.
      const leftover = [up, down].filter((n) => byName.has(n)).slice(0, 1);
      lines = [...leftover.flatMap((n) => deleteLinkScript(n)), ...createOverflowScript(cni, index)];
    } else {
      if (overflowBridgesIn(cni.name, [existing]).length === 0) {
        throw new FailedPreconditionError(
          `a link named ${bridge} already exists on this node and is not nodenet's (its alias is ${existing.alias ? `'${existing.alias}'` : 'unset'}): nodenet needs that name for an overflow bridge of ${cni.name} (it has ${this.placement.portsPerBridge} instance ports); remove or rename that link`,
        );
      }
      lines = repairOverflowScript(cni, index, byName).flatMap((r) => r.lines);
    }
    if (lines.length === 0) return;
    try {
      await this.node.batch(lines, { step: `make overflow bridge ${bridge} of ${cni.name}` });
    } catch (e) {
      if (existing === undefined && !failedAt(e, OVERFLOW_LINE.createBridge)) await this.removeQuietly(bridge, `roll back ${bridge}`);
      if (failedAt(e, OVERFLOW_LINE.createPair) && causedBy(e, /Exchange full/)) {
        throw new FailedPreconditionError(
          `the CNI bridge ${cni.name} already has the most ports a Linux bridge can hold (1,023): delete an interface first, or run more instances on other nodes (ports nodenet did not make fill it, so no overflow bridge can be joined to it)`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      this.onLinksChanged();
    }
    this.logger.info(
      { cni: cni.name, bridge, occupancy: this.placement.occupancy() },
      existing === undefined ? 'overflow bridge created' : 'overflow bridge repaired',
    );
  }

  /** Every link of the node namespace (one `ip -j link show`), and by name. */
  private async listLinks(step: string): Promise<{ links: IpLink[]; byName: Map<string, IpLink> }> {
    const links = parseIpLinks((await this.node.json(['link', 'show'], step)) ?? []);
    return { links, byName: new Map(links.map((l) => [l.ifname, l])) };
  }
}
