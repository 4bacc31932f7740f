/**
 * The iproute2 overlay: how this node's instances reach other nodes' subnets.
 * - vxlan: one VXLAN device (`nodenet-vx`) and per peer an onlink route, a permanent neighbour entry and a
 *   permanent FDB entry (see overlay-scripts.ts). Per batch of peer changes (PeerSync applies sets): one `ip -batch` and one `bridge -batch`
 *   process, run side by side.
 * - host-gw: per peer one route via the peer's underlay address (peers must share this node's L2 segment):
 *   @nodenet/linux's HostGwOverlay, the same as the ovs backend's; this overlay adds the removal of a VXLAN
 *   device left from vxlan mode.
 * Every route carries `proto 78`, so what nodenet owns is visible in the kernel and listable.
 */
import {
  FailedPreconditionError,
  InternalError,
  Mutex,
  vxlanOverhead,
  checkOverlaySettings,
  checkPeerIsOther,
  parseNetnsRef,
  sameNodeRecord,
  silentLogger,
  type HostInfo,
  type Logger,
  type NetnsRef,
  type NodeRecord,
  type Overlay,
  type OverlayMode,
  type Repairs,
  type PeerBatchResult,
  allFailed,
  mergeBatchResults,
  throwIfFailed,
} from '@nodenet/core';
import {
  HostGwOverlay,
  IpBatchError,
  IpRunner,
  readProgrammedPeers,
  runPeerBatch,
  unexpectedFailure,
  withNeighbourDeletes,
  type PeerLines,
  type IpBatchFailure,
  type IpLine,
  type ProgrammedPeer,
} from '@nodenet/linux';
import {
  DELETE_LINE_IDS,
  OVERLAY_DEVICE,
  OVERLAY_LINE,
  createVxlanScript,
  deleteVxlanScript,
  foreignDeviceProblem,
  parseFdbEntries,
  parseNeighbours,
  parseVxlanDevice,
  removeVxlanPeerScripts,
  repairVxlanScript,
  stalePeerScripts,
  vxlanEndpointSpec,
  vxlanPeerScripts,
  vxlanRecreateReasons,
  type OverlayScripts,
  type VxlanDeviceState,
  type VxlanEndpointSpec,
} from './overlay-scripts.js';

export interface Iproute2OverlayOptions {
  readonly mode: OverlayMode;
  /** VXLAN network identifier, MIN_VNI..MAX_VNI (vxlan mode). */
  readonly vni: number;
  /** VXLAN UDP port (vxlan mode). */
  readonly port: number;
  /** The node's underlay, from HostProbe.probeHost. */
  readonly host: HostInfo;
  /** The node namespace to manage: a name under /run/netns or a path. Default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
}

export class Iproute2Overlay implements Overlay {
  readonly mode: OverlayMode;
  readonly overhead: number;
  private readonly vni: number;
  private readonly port: number;
  private readonly host: HostInfo;
  /** host-gw mode: the routes (@nodenet/linux, shared with the ovs backend). */
  private readonly hostGw: HostGwOverlay | undefined;
  private readonly ip: IpRunner;
  private readonly bridge: IpRunner;
  private readonly logger: Logger;
  private readonly mutex = new Mutex();
  /**
   * What this object programmed, by peer name. ensurePeer uses it to delete a changed peer's superseded
   * entries; ensureEndpoint uses it to program the peers again after the kernel dropped their routes and
   * neighbour entries (it does when the device is recreated, goes down or changes its MAC).
   */
  private readonly programmed = new Map<string, NodeRecord>();

  constructor(options: Iproute2OverlayOptions) {
    checkOverlaySettings(options);
    this.mode = options.mode;
    // 50 bytes over an IPv4 underlay, 70 over an IPv6 one: the instance MTU follows the underlay's family.
    this.overhead = options.mode === 'vxlan' ? vxlanOverhead(options.host.underlayAddress) : 0;
    this.vni = options.vni;
    this.port = options.port;
    this.host = options.host;
    this.hostGw =
      options.mode === 'host-gw'
        ? new HostGwOverlay({
            host: options.host,
            ...(options.netns === undefined ? {} : { netns: options.netns }),
            ...(options.logger ? { logger: options.logger } : {}),
          })
        : undefined;
    const netns: NetnsRef | undefined = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.ip = new IpRunner(netns);
    this.bridge = new IpRunner(netns, 'bridge');
    this.logger = options.logger ?? silentLogger;
  }

  // ---------------------------------------------------------------------------------------------------
  // Endpoint

  /** Converges the endpoint; returns what it repaired (an existing device that drifted, or one that was deleted). */
  ensureEndpoint(self: NodeRecord): Promise<Repairs> {
    return this.mutex.run(async () => {
      if (this.mode === 'vxlan') return this.ensureVxlanDevice(vxlanEndpointSpec(self, this.host, this.vni, this.port));
      await this.removeLeftoverVxlanDevice();
      return [];
    });
  }

  private async ensureVxlanDevice(spec: VxlanEndpointSpec): Promise<Repairs> {
    const state = await this.readDevice();
    if (state === null) {
      await this.createDevice(spec);
      this.logger.info({ device: spec.name, vni: spec.vni, port: spec.port, mtu: spec.mtu, local: spec.local }, 'VXLAN device created');
      const peers = this.programmed.size;
      await this.reprogramPeers('the VXLAN device was created');
      // Peers programmed before: the device existed and was deleted behind nodenet's back.
      return peers > 0 ? [`the VXLAN device ${spec.name} was missing: created, ${peers} peer(s) programmed again`] : [];
    }
    const foreign = foreignDeviceProblem(state);
    if (foreign) throw new FailedPreconditionError(foreign);
    const reasons = vxlanRecreateReasons(spec, state);
    if (reasons.length > 0) {
      // The kernel cannot change a live device's VNI or port.
      await this.deleteDevice(`delete ${spec.name} to recreate it`);
      await this.createDevice(spec);
      this.logger.warn({ device: spec.name, changed: reasons }, 'VXLAN device recreated: its VNI or port differed from the config');
      await this.reprogramPeers('the VXLAN device was recreated');
      return [`the VXLAN device ${spec.name} differed (${reasons.join(', ')}): recreated`];
    }
    const repair = repairVxlanScript(spec, state);
    if (repair.length === 0) return [];
    await this.ip.batch(repair, { step: `repair the VXLAN device ${spec.name}` });
    this.logger.warn({ device: spec.name, fixed: repair.map((l) => l.step) }, 'VXLAN device differed from the config and was repaired');
    // The kernel drops a device's routes and neighbour entries (permanent ones too) when it goes down or
    // changes its MAC; programming the peers again after any repair is cheap and covers every case.
    await this.reprogramPeers('the VXLAN device was repaired');
    return [`the VXLAN device ${spec.name} differed from the config: ${repair.map((l) => l.step).join(', ')}`];
  }

  private async createDevice(spec: VxlanEndpointSpec): Promise<void> {
    const lines = createVxlanScript(spec);
    try {
      await this.ip.batch(lines, { step: `create the VXLAN device ${spec.name}` });
    } catch (e) {
      // Not there a moment ago: whatever the batch made of it is ours to remove (unless creating it failed).
      if (!(e instanceof IpBatchError && e.failedLine?.id === OVERLAY_LINE.createDevice)) {
        await this.deleteDevice(`remove the half-made VXLAN device ${spec.name}`).catch((err: unknown) =>
          this.logger.error({ device: spec.name, err: (err as Error).message }, 'roll-back failed: the VXLAN device may be left behind'),
        );
      }
      throw e;
    }
  }

  /** host-gw needs no device; a nodenet VXLAN device left from an earlier vxlan configuration goes. */
  private async removeLeftoverVxlanDevice(): Promise<void> {
    const state = await this.readDevice();
    if (state === null || foreignDeviceProblem(state) !== null) return;
    await this.deleteDevice(`delete the leftover VXLAN device ${OVERLAY_DEVICE}`);
    this.logger.info({ device: OVERLAY_DEVICE }, 'overlay mode is host-gw: removed the VXLAN device left from vxlan mode');
  }

  private async readDevice(): Promise<VxlanDeviceState | null> {
    const json = await this.ip.json(['-d', 'addr', 'show', 'dev', OVERLAY_DEVICE], `read ${OVERLAY_DEVICE}`);
    return json === null ? null : parseVxlanDevice(json);
  }

  /** Programs every remembered peer again (in one ip and one bridge process). */
  private async reprogramPeers(why: string): Promise<void> {
    if (this.programmed.size === 0) return;
    const peers = [...this.programmed.values()];
    const scripts = peers.map((p) => this.peerScripts(p));
    await this.runScripts({ ip: scripts.flatMap((s) => s.ip), bridge: scripts.flatMap((s) => s.bridge) }, 'program the peers again');
    this.logger.info({ peers: peers.map((p) => p.name), why }, 'peers programmed again');
  }

  // ---------------------------------------------------------------------------------------------------
  // Peers

  validatePeer(peer: NodeRecord): void {
    if (this.hostGw) this.hostGw.validatePeer(peer);
    else checkPeerIsOther(this.host, peer);
  }

  async ensurePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.ensurePeers([peer]), peer);
  }

  async removePeer(peer: NodeRecord): Promise<void> {
    throwIfFailed(await this.removePeers([peer]), peer);
  }

  /**
   * Every peer's route, neighbour and FDB entries in one `ip -batch` and one `bridge -batch` (side by side).
   * A peer with a failed line is reported and not remembered as programmed (its `replace` lines converge on
   * the retry).
   */
  ensurePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    if (this.hostGw) return this.hostGw.ensurePeers(peers);
    return this.mutex.run(async () => {
      const started = performance.now();
      const invalid = new Map<string, Error>();
      const batch: { peer: NodeRecord; scripts: OverlayScripts }[] = [];
      for (const peer of peers) {
        try {
          checkPeerIsOther(this.host, peer);
        } catch (e) {
          invalid.set(peer.name, e as Error);
          continue;
        }
        const previous = this.programmed.get(peer.name);
        batch.push({ peer, scripts: this.peerScripts(peer, previous && !sameNodeRecord(previous, peer) ? previous : undefined) });
      }
      const step = peers.length === 1 ? `program peer ${peers[0]!.name}` : `program ${batch.length} peers`;
      const result = mergeBatchResults({ failed: invalid }, await this.runPeerScripts(batch, step));
      for (const { peer } of batch) if (!result.failed.has(peer.name)) this.programmed.set(peer.name, peer);
      this.logger.debug(
        { peers: batch.length, failed: result.failed.size, ms: Math.round((performance.now() - started) * 10) / 10 },
        'peers programmed',
      );
      return result;
    });
  }

  /** Every peer's entries (and a changed peer's remembered ones) deleted in one `ip -batch` and one `bridge -batch`. */
  removePeers(peers: readonly NodeRecord[]): Promise<PeerBatchResult> {
    if (this.hostGw) return this.hostGw.removePeers(peers);
    return this.mutex.run(async () => {
      const batch = peers.map((peer) => {
        const records = [peer];
        const remembered = this.programmed.get(peer.name);
        if (remembered && !sameNodeRecord(remembered, peer)) records.push(remembered);
        const scripts = records.map(removeVxlanPeerScripts);
        return { peer, scripts: { ip: scripts.flatMap((s) => s.ip), bridge: scripts.flatMap((s) => s.bridge) } };
      });
      const result = await this.runPeerScripts(
        batch,
        peers.length === 1 ? `remove peer ${peers[0]!.name}` : `remove ${peers.length} peers`,
        peers.length > 1,
      );
      for (const peer of peers) if (!result.failed.has(peer.name)) this.programmed.delete(peer.name);
      return result;
    });
  }

  /** The ip lines and the bridge lines of every peer, one process each, side by side; failures by peer. */
  private async runPeerScripts(
    batch: readonly { peer: NodeRecord; scripts: OverlayScripts }[],
    step: string,
    readNeighbours = false,
  ): Promise<PeerBatchResult> {
    let ip: PeerLines[] = batch.map(({ peer, scripts }) => ({ peer, lines: scripts.ip }));
    if (readNeighbours) {
      try {
        ip = await withNeighbourDeletes(this.ip, OVERLAY_DEVICE, ip, OVERLAY_LINE.deleteNeighbour);
      } catch (e) {
        return allFailed(
          batch.map((b) => b.peer),
          e,
        );
      }
    }
    const bridge: PeerLines[] = batch.map(({ peer, scripts }) => ({ peer, lines: scripts.bridge }));
    const explain = (f: IpBatchFailure, line: IpLine | undefined) => this.explainFailure(f, line, step);
    const [a, b] = await Promise.all([
      runPeerBatch(this.ip, ip, step, DELETE_LINE_IDS, explain),
      runPeerBatch(this.bridge, bridge, step, DELETE_LINE_IDS, explain),
    ]);
    return mergeBatchResults(a, b);
  }

  private peerScripts(peer: NodeRecord, previous?: NodeRecord): OverlayScripts {
    return vxlanPeerScripts(peer, previous);
  }

  /**
   * The routes nodenet installed (marked `proto 78`), whatever the mode: the input of reconciliation.
   * One `ip -j route show` process.
   */
  listProgrammedPeers(): Promise<ProgrammedPeer[]> {
    return this.mutex.run(() => readProgrammedPeers(this.ip));
  }

  /**
   * Removes what nodenet programmed for peers not in `wanted`: its routes to other subnets (also ones left
   * by the other mode) and, on its VXLAN device, neighbour entries and FDB entries no wanted peer uses
   * (e.g. left by a daemon that stopped before removing a peer). Returns what it removed, for the log.
   * Wanted peers' entries are not touched: ensurePeer converges them.
   */
  removeStalePeers(wanted: readonly NodeRecord[]): Promise<string[]> {
    if (this.hostGw) return this.hostGw.removeStalePeers(wanted);
    return this.mutex.run(async () => {
      const [routes, neighbours, fdb] = await Promise.all([
        readProgrammedPeers(this.ip),
        this.ip.json(['neigh', 'show', 'dev', OVERLAY_DEVICE], `list the neighbour entries on ${OVERLAY_DEVICE}`),
        this.bridge.json(['fdb', 'show', 'dev', OVERLAY_DEVICE], `list the FDB entries on ${OVERLAY_DEVICE}`),
      ]);
      const stale = stalePeerScripts(wanted, routes, parseNeighbours(neighbours ?? []), parseFdbEntries(fdb ?? []));
      await this.runScripts(stale, 'remove stale peer entries');
      const names = new Set(wanted.map((p) => p.name));
      for (const name of [...this.programmed.keys()]) if (!names.has(name)) this.programmed.delete(name);
      if (stale.removed.length > 0) this.logger.info({ removed: stale.removed }, 'stale overlay entries removed');
      return stale.removed;
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Running scripts

  /**
   * Runs the ip and the bridge script side by side (one process each, -force so every line runs) and
   * throws for the first failure that is not a delete finding nothing.
   */
  private async runScripts(scripts: OverlayScripts, step: string): Promise<void> {
    const results = await Promise.allSettled([
      this.ip.batch(scripts.ip, { step, force: true }),
      this.bridge.batch(scripts.bridge, { step, force: true }),
    ]);
    for (const [i, result] of results.entries()) {
      if (result.status === 'rejected') throw result.reason;
      const lines = i === 0 ? scripts.ip : scripts.bridge;
      this.throwUnexpected(result.value, lines, step);
    }
  }

  private deleteDevice(step: string): Promise<void> {
    return this.runScripts({ ip: deleteVxlanScript(), bridge: [] }, step);
  }

  private throwUnexpected(failures: readonly IpBatchFailure[], lines: readonly IpLine[], step: string): void {
    const unexpected = unexpectedFailure(failures, lines, DELETE_LINE_IDS);
    if (!unexpected) return;
    throw this.explainFailure(unexpected.failure, unexpected.line, step);
  }

  private explainFailure(f: IpBatchFailure, line: IpLine | undefined, step: string): Error {
    if (this.mode === 'vxlan' && f.message.includes(`Cannot find device "${OVERLAY_DEVICE}"`)) {
      return new FailedPreconditionError(
        `the VXLAN device ${OVERLAY_DEVICE} does not exist (${line?.step ?? step} failed): the overlay endpoint must be created first (CreateContainerNetworkInterface, or a daemon restart, creates it)`,
      );
    }
    return new InternalError(line?.step ?? step, f.message || 'failed without a message');
  }
}
