/**
 * The daemon's link to the cluster: membership (static or etcd) feeding the overlay through PeerSync, the
 * join of this node once its CNI exists, and the periodic reconcile loop that keeps node and overlay as
 * recorded. Membership that cannot be reached (etcd down) never stops the node serving its own instances:
 * it is retried in the background.
 */
import {
  UnavailableError,
  asNodenetError,
  type HostInfo,
  type ReconcileCause,
  type RepairKind,
  type RepairTrigger,
  type Logger,
  type Membership,
  type NodeNetwork,
  type NodeRecord,
  type PeerSync,
  type NodeSubnets,
  describeNodeSubnets,
} from '@nodenet/core';
import type { DaemonConfig } from './config.js';

const RETRY_MS = 2000;

export class ClusterLink {
  private started = false;
  private self: NodeRecord | null = null;
  private joined = false;
  private joining: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private peerSetKey: string | null = null;
  private peersChangedAt: number | null = null;

  constructor(
    private readonly config: DaemonConfig,
    private readonly host: HostInfo,
    readonly membership: Membership,
    readonly sync: PeerSync,
    private readonly logger: Logger,
  ) {}

  /** Starts membership; when it cannot be reached, keeps retrying in the background. */
  async start(): Promise<void> {
    try {
      await this.membership.start((peers) => {
        this.notePeers(peers);
        // Nothing waits for this change: a failure is logged here (the overlay's own peers are retried by the
        // next sync; the cluster set by the reconcile pass that follows restore), never left unhandled.
        this.sync.update(peers).catch((e: unknown) => {
          this.logger.error(
            { event: 'peer-sync-failed', err: asNodenetError(e, 'apply the peer set').message },
            'could not apply the peer set: retried by the next pass',
          );
        });
      });
      this.started = true;
      this.logger.info(
        { event: 'membership-started', type: this.membership.type, peers: this.membership.peers().length },
        'membership started',
      );
    } catch (e) {
      this.logger.error(
        { event: 'membership-unavailable', err: asNodenetError(e, 'start membership').message },
        'membership unavailable: retrying in the background',
      );
      this.scheduleRetry();
    }
  }

  /** Announces this node's subnets and programs the overlay (CreateContainerNetworkInterface, and restore). */
  join(subnets: NodeSubnets): Promise<void> {
    // One join at a time: a reconcile pass may ask while CreateContainerNetworkInterface is joining.
    this.joining ??= this.doJoin(subnets).finally(() => (this.joining = null));
    return this.joining;
  }

  private async doJoin(subnets: NodeSubnets): Promise<void> {
    const self: NodeRecord = {
      name: this.config.nodeName,
      underlayAddress: this.host.underlayAddress,
      ...(subnets.subnet ? { subnet: subnets.subnet } : {}),
      ...(subnets.ipv6Subnet ? { ipv6Subnet: subnets.ipv6Subnet } : {}),
    };
    const subnet = describeNodeSubnets(self);
    this.self = self;
    if (!this.started) {
      if (this.config.membership.type === 'etcd') {
        // Refuse rather than risk taking a subnet another live node holds.
        throw new UnavailableError(
          `etcd at ${this.config.membership.etcd.endpoints.join(', ')} is not reachable: cannot check that ${subnet} is free; retry when etcd is up`,
        );
      }
    }
    await this.membership.announce(self);
    await this.sync.setSelf(self);
    this.joined = true;
    this.logger.info({ event: 'joined', subnet: String(subnet), underlay: self.underlayAddress }, 'joined the cluster');
  }

  /** One reconcile pass of the cluster side: rejoin if needed, re-apply peers, remove stale overlay entries. */
  async resync(): Promise<readonly string[]> {
    if (this.self && !this.joined && this.started) await this.join(this.self);
    return this.sync.resync();
  }

  /** When the set of peers last changed (or was first learned), ms since the epoch; null before membership reported. */
  get lastPeerChangeAt(): number | null {
    return this.peersChangedAt;
  }

  private notePeers(peers: readonly NodeRecord[]): void {
    const key = peers
      .map((p) => `${p.name}|${p.underlayAddress}|${describeNodeSubnets(p)}`)
      .sort()
      .join(',');
    if (key !== this.peerSetKey) this.peersChangedAt = Date.now();
    this.peerSetKey = key;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.membership.stop();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      void (async () => {
        await this.start();
        if (this.started && this.self && !this.joined) {
          await this.join(this.self).catch((e: unknown) =>
            this.logger.error({ err: asNodenetError(e, 'join').message }, 'could not join the cluster'),
          );
        }
      })();
    }, RETRY_MS);
  }
}

/** What one pass of node and overlay did: its repair lines, how many objects per kind, ms per step. */
export interface PassResult {
  readonly repairs: readonly string[];
  readonly repairCounts: Readonly<Partial<Record<RepairKind, number>>>;
  readonly phases: Readonly<Record<string, number>>;
}

/** Runs a reconcile pass of the node and of the cluster link every interval. */
export class ReconcileLoop {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly network: NodeNetwork,
    private readonly cluster: ClusterLink,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    /** Told how many stale overlay entries a pass removed (metrics). */
    private readonly onOverlayRepairs?: (count: number, trigger: RepairTrigger) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (!this.running)
        this.running = this.pass()
          .then(() => undefined)
          .finally(() => (this.running = null));
    }, this.intervalMs);
    this.timer.unref();
  }

  /**
   * One pass of node and overlay; returns what it repaired (both) and where the time went. `cause` says how
   * it was set off; `scope` limits an event pass to the part its changes concern (the node's pass, the
   * overlay's resync), so the repair is not held up by listing and converging what did not change.
   */
  async pass(cause: ReconcileCause = { trigger: 'periodic' }, scope: 'node' | 'overlay' | 'all' = 'all'): Promise<PassResult> {
    const repairs: string[] = [];
    const repairCounts: Partial<Record<RepairKind, number>> = {};
    const phases: Record<string, number> = {};
    if (scope !== 'overlay') {
      const report = await this.network.reconcile(cause);
      repairs.push(...report.repairs);
      Object.assign(repairCounts, report.repairCounts);
      Object.assign(phases, report.phases);
    }
    if (scope === 'node') return { repairs, repairCounts, phases };
    const overlayStarted = performance.now();
    try {
      const removed = await this.cluster.resync();
      if (removed.length > 0) repairCounts.overlay = (repairCounts.overlay ?? 0) + removed.length;
      for (const r of removed)
        this.logger.warn(
          { event: 'repair', repair: r, trigger: cause.trigger, ...(cause.causes ? { causes: cause.causes } : {}) },
          `repaired (${cause.trigger}): ${r}`,
        );
      repairs.push(...removed);
      this.onOverlayRepairs?.(removed.length, cause.trigger);
    } catch (e) {
      this.logger.error({ event: 'reconcile-error', err: asNodenetError(e, 'resync the overlay').message }, 'overlay resync failed');
    }
    phases['overlay'] = Math.round((performance.now() - overlayStarted) * 10) / 10;
    return { repairs, repairCounts, phases };
  }

  /** Stops the interval; waits for a pass in flight up to `waitMs` (a pass left running sees its adapters close). */
  async stop(waitMs = Infinity): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (!this.running) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((done) => {
      if (Number.isFinite(waitMs)) timer = setTimeout(done, waitMs);
    });
    await Promise.race([this.running.catch(() => undefined), expired]);
    clearTimeout(timer);
  }
}
