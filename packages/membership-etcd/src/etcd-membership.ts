/**
 * Cluster membership kept in etcd. Each node keeps its record and the claim on its subnet on one lease
 * (renewed by keepalives), and watches the records of the others. See records.ts for the key layout.
 *
 * Atomicity of claims: announce() reads everything under the prefix at revision R, checks for overlaps
 * (any prefix length), and writes its record and claim in one transaction guarded by "no key under
 * nodes/ or subnets/ was created or modified after R" (a mod-revision comparison over each key range).
 * A claim written concurrently by another node makes the transaction fail, and announce() reads and
 * checks again, so two nodes cannot both win overlapping subnets; no race remains. (Keys deleted after R
 * only free subnets, so deletions need no guard.)
 */
import { setTimeout as delay } from 'node:timers/promises';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  CompareResult,
  CompareTarget,
  type IOptions,
  type Lease,
  type Watcher,
  type IWatchResponse,
  type IKeyValue,
  type IRequestOp,
} from 'etcd3';
import {
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  Mutex,
  NodenetError,
  UnavailableError,
  parseNodeName,
  sameNodeRecord,
  describeNodeSubnets,
  subnetsOfNode,
  silentLogger,
  type Logger,
  type Membership,
  type MembershipStatus,
  type NodeRecord,
} from '@nodenet/core';
import {
  KeyLayout,
  checkClaim,
  decodeNodeRecord,
  encodeNodeRecord,
  parseClaimHolder,
  prefixRangeEnd,
  type LiveClaim,
  type LiveRecord,
} from './records.js';
import { checkEtcdEndpointSchemes, checkEtcdTlsMaterial, explainEtcdTlsFailure, type EtcdTlsMaterial } from './tls.js';

export interface EtcdMembershipOptions {
  /** etcd client URLs, e.g. `http://127.0.0.1:2379` (all http or all https). */
  readonly endpoints: readonly string[];
  /**
   * TLS towards https endpoints (PEM contents, see readEtcdTlsFiles): `ca` verifies etcd's server
   * certificate (absent: the system's roots); `cert` + `key` are the client certificate etcd may require.
   * Absent with https endpoints: the system's roots, no client certificate.
   */
  readonly tls?: EtcdTlsMaterial;
  /** Key prefix of this cluster, e.g. `/nodenet`. */
  readonly prefix: string;
  /** TTL of this node's lease: its record disappears this long after its daemon stops renewing it. */
  readonly leaseTtlSeconds: number;
  /** This node's name: its own record is not a peer. */
  readonly nodeName: string;
  readonly logger?: Logger;
  /** A client to use instead of one built from `endpoints` (then stop() does not close it). */
  readonly client?: Etcd3;
  /** stop() revokes the lease so peers drop this node at once. Default false: a restarting daemon should not disturb peers. */
  readonly revokeOnStop?: boolean;
  /**
   * stop() without revoke moves this node's record and claim onto a lease of this many seconds (when longer
   * than the TTL), so that peers keep routing to it while its daemon restarts, however long the restart
   * takes under load; a restarted daemon takes them over, otherwise they expire after it. Default 0: they
   * expire with the normal lease.
   */
  readonly restartGraceSeconds?: number;
  /** Deadline of each etcd request, and so of start()'s first read. Default 5000 ms. */
  readonly requestTimeoutMs?: number;
  /** Backoff of retries (re-announce, re-list, watch reconnects): first and largest delay. Default 250 / 5000 ms. */
  readonly retryDelayMs?: { readonly initial: number; readonly max: number };
  /** How often announce() re-reads and retries when records change under it. Default 8. */
  readonly maxClaimAttempts?: number;
}

/** What a read of the whole prefix found. */
interface Snapshot {
  readonly revision: number;
  readonly nodes: readonly LiveRecord[];
  readonly claims: readonly LiveClaim[];
}

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type WatchBackoff = NonNullable<FaultHandling['watchBackoff']>;
type HostPolicy = ReturnType<NonNullable<FaultHandling['host']>>;

/**
 * A per-host policy that lets every call through. etcd3's default per-host circuit breaker stops calling
 * a host for 5 s after 3 failures: with several endpoints that skips a dead one, with a single endpoint
 * it only delays recovery after etcd comes back. (etcd3 only calls execute().)
 */
const neverAborted = new AbortController().signal;
const passThroughPolicy = {
  execute: async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => fn({ signal: neverAborted }),
} as unknown as HostPolicy;

/** Exponential backoff with jitter, in the shape etcd3's watch manager takes (a factory: next() gives the first delay). */
function watchBackoff(initial: number, max: number): WatchBackoff {
  const step = (base: number): WatchBackoff => ({
    duration: Math.round(base * (0.5 + Math.random() / 2)),
    next: () => step(Math.min(max, base * 2)),
  });
  return { duration: 0, next: () => step(initial) };
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const ENDPOINT_RE = /^https?:\/\/[^\s/]+\/?$/;

export class EtcdMembership implements Membership {
  readonly type = 'etcd' as const;
  private readonly keys: KeyLayout;
  private readonly endpoints: readonly string[];
  /** Whether this node presents a client certificate (for explaining handshake failures). */
  private readonly clientCert: boolean;
  private readonly ttl: number;
  private readonly nodeName: string;
  private readonly logger: Logger;
  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  private readonly revokeOnStop: boolean;
  private readonly restartGrace: number;
  private readonly requestTimeoutMs: number;
  private readonly retryDelay: { readonly initial: number; readonly max: number };
  private readonly maxClaimAttempts: number;
  /** Serializes announce() and re-announcing. */
  private readonly claimMutex = new Mutex();
  private readonly stopping = new AbortController();

  private state: 'new' | 'running' | 'stopped' = 'new';
  private listener: ((peers: readonly NodeRecord[]) => void) | null = null;
  /** Valid peer records by name (this node excluded). */
  private readonly byName = new Map<string, NodeRecord>();
  private lastNotified: readonly NodeRecord[] | null = null;

  private watcher: Watcher | null = null;
  /** Bumped whenever the watcher is replaced: events of an older one are ignored. */
  private watchGeneration = 0;
  /** The highest revision the watch has delivered everything up to. */
  private seenRevision = 0;
  private watchDisconnectedAt: number | null = null;
  /** The TLS handshake failure last logged for this disconnection, if any. */
  private watchTlsFailure: string | null = null;
  private resyncing = false;

  private self: NodeRecord | null = null;
  private lease: Lease | null = null;
  private leaseId: string | null = null;
  private leaseRenewedAt: number | null = null;
  private leaseRenewFailures = 0;
  private reannouncing = false;

  constructor(options: EtcdMembershipOptions) {
    this.keys = new KeyLayout(options.prefix);
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new InvalidArgumentError('membership.etcd.endpoints', 'must list at least one endpoint, e.g. http://127.0.0.1:2379');
    }
    options.endpoints.forEach((e, i) => {
      if (typeof e !== 'string' || !ENDPOINT_RE.test(e)) {
        throw new InvalidArgumentError(
          `membership.etcd.endpoints[${i}]`,
          `'${String(e)}' is not an etcd URL: use http://HOST:PORT or https://HOST:PORT`,
        );
      }
    });
    const [schemeProblem] = checkEtcdEndpointSchemes(options.endpoints, options.tls !== undefined);
    if (schemeProblem) throw new InvalidArgumentError(schemeProblem.key, schemeProblem.message);
    if (options.tls !== undefined) {
      const [problem] = checkEtcdTlsMaterial(options.tls);
      if (problem) throw new InvalidArgumentError(problem.key, problem.message);
    }
    if (!Number.isInteger(options.leaseTtlSeconds) || options.leaseTtlSeconds < 1) {
      throw new InvalidArgumentError(
        'membership.etcd.leaseTtlSeconds',
        `must be a whole number of seconds >= 1 (got ${String(options.leaseTtlSeconds)})`,
      );
    }
    this.endpoints = [...(options.endpoints as readonly string[])];
    this.clientCert = options.tls?.cert !== undefined;
    this.ttl = options.leaseTtlSeconds;
    this.nodeName = parseNodeName(options.nodeName, 'nodeName');
    this.logger = options.logger ?? silentLogger;
    this.revokeOnStop = options.revokeOnStop ?? false;
    this.restartGrace = options.restartGraceSeconds ?? 0;
    if (!Number.isInteger(this.restartGrace) || this.restartGrace < 0) {
      throw new InvalidArgumentError(
        'membership.etcd.restartGraceSeconds',
        `must be a whole number of seconds >= 0 (got ${String(options.restartGraceSeconds)})`,
      );
    }
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.retryDelay = options.retryDelayMs ?? { initial: 250, max: 5000 };
    this.maxClaimAttempts = options.maxClaimAttempts ?? 8;
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new Etcd3({
        hosts: [...this.endpoints],
        ...(options.tls
          ? {
              credentials: {
                // null: grpc-js falls back to the system's roots (etcd3's type wants a Buffer, grpc-js takes null).
                rootCertificate: (options.tls.ca ?? null) as Buffer,
                ...(options.tls.cert && options.tls.key ? { certChain: options.tls.cert, privateKey: options.tls.key } : {}),
              },
            }
          : {}),
        faultHandling: {
          watchBackoff: watchBackoff(this.retryDelay.initial, this.retryDelay.max),
          ...(this.endpoints.length === 1 ? { host: () => passThroughPolicy } : {}),
        },
        grpcOptions: {
          // grpc-js backs reconnects off up to 120 s: etcd would be back long before we noticed.
          'grpc.initial_reconnect_backoff_ms': this.retryDelay.initial,
          'grpc.max_reconnect_backoff_ms': this.retryDelay.max,
          // Pings find a dead connection (peer gone without a reset) that a quiet watch would never notice.
          // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
          'grpc.keepalive_time_ms': 10_000,
          'grpc.keepalive_timeout_ms': 5_000,
        },
      });
  }

  async start(listener: (peers: readonly NodeRecord[]) => void): Promise<void> {
    if (this.state !== 'new') throw new InternalError('start etcd membership', `cannot start: membership is ${this.state}`);
    this.state = 'running';
    this.listener = listener;
    let snapshot: Snapshot;
    try {
      snapshot = await this.readAll();
    } catch (e) {
      // Back to 'new', client kept: the caller may retry start() until etcd answers (the daemon does).
      if (!this.isStopped()) {
        this.state = 'new';
        this.listener = null;
      }
      const tls = explainEtcdTlsFailure(errorMessage(e), this.clientCert);
      throw new UnavailableError(
        tls !== null
          ? `etcd at ${this.endpoints.join(', ')}: ${tls}`
          : `etcd is not reachable at ${this.endpoints.join(', ')} (${errorMessage(e)}): start etcd or fix membership.etcd.endpoints`,
        { cause: e },
      );
    }
    if (this.isStopped()) return; // stop() came while reading
    this.replacePeers(snapshot.nodes);
    this.notify(true);
    this.watchFrom(snapshot.revision + 1);
    this.logger.info(
      { prefix: this.keys.prefix, endpoints: this.endpoints, revision: snapshot.revision, peers: this.byName.size },
      'etcd membership started',
    );
  }

  announce(self: NodeRecord): Promise<void> {
    if (self.name !== this.nodeName) {
      return Promise.reject(new InvalidArgumentError('name', `this membership is for node ${this.nodeName}, not ${self.name}`));
    }
    if (this.state === 'stopped') return Promise.reject(new FailedPreconditionError('etcd membership is stopped: cannot announce'));
    return this.claimMutex.run(async () => {
      await this.claim(self);
      this.self = self;
      this.logger.info(
        { node: self.name, subnet: describeNodeSubnets(self), underlay: self.underlayAddress, lease: this.leaseId },
        'announced this node in etcd',
      );
    });
  }

  peers(): readonly NodeRecord[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** This node's lease: its id and when etcd last confirmed a renewal (ms since the epoch); null before announce or while lost. */
  leaseInfo(): { readonly id: string; readonly renewedAt: number } | null {
    return this.leaseId !== null && this.leaseRenewedAt !== null ? { id: this.leaseId, renewedAt: this.leaseRenewedAt } : null;
  }

  /** Connected: started, and the watch is not disconnected. */
  status(): MembershipStatus {
    return { connected: this.state === 'running' && this.watchDisconnectedAt === null, leaseRenewFailures: this.leaseRenewFailures };
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.stopping.abort();
    this.listener = null;
    this.watchGeneration++;
    const watcher = this.watcher;
    this.watcher = null;
    if (watcher) {
      // cancel() waits for etcd's answer, which never comes while etcd is unreachable.
      await Promise.race([watcher.cancel().catch(() => undefined), delay(1000, undefined, { ref: false })]);
    }
    const lease = this.lease;
    const leaseId = this.leaseId;
    this.lease = null;
    this.leaseId = null;
    if (lease) {
      if (this.revokeOnStop) {
        try {
          await lease.revoke({ deadline: this.deadline() });
          this.logger.info({ node: this.nodeName }, "revoked this node's etcd lease: peers drop it now");
        } catch (e) {
          lease.release();
          this.logger.warn(
            { node: this.nodeName, err: this.describe(e) },
            `could not revoke this node's etcd lease: its record expires within ${this.ttl} s`,
          );
        }
      } else {
        if (this.restartGrace > this.ttl && this.self && leaseId !== null) await this.leaveRecordForRestart(this.self, leaseId);
        lease.release(); // stop renewing: the record expires with the lease (or the grace lease)
      }
    }
    if (this.ownsClient) this.client.close();
  }

  /**
   * Moves this node's record and claim from its lease onto a fresh lease of restartGraceSeconds that nobody
   * renews, in one transaction that only applies while they are still on this node's lease. Peers see the
   * same record (no change); a restarted daemon's announce takes it over; without one it expires then.
   */
  private async leaveRecordForRestart(self: NodeRecord, leaseId: string): Promise<void> {
    // The record and one claim per subnet (IPv4 and IPv6), all moved together.
    const keys = [this.keys.nodeKey(self.name), ...subnetsOfNode(self).map((s) => this.keys.claimKey(s))];
    try {
      const grace = await this.client.leaseClient.leaseGrant({ TTL: this.restartGrace }, { deadline: this.deadline() });
      const res = await this.client.kv.txn(
        {
          compare: keys.map((key) => ({ key: Buffer.from(key), target: CompareTarget.Lease, result: CompareResult.Equal, lease: leaseId })),
          success: [
            { request_put: { key: Buffer.from(keys[0]!), value: Buffer.from(encodeNodeRecord(self)), lease: grace.ID } },
            ...keys.slice(1).map((key) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(self.name), lease: grace.ID } })),
          ],
          failure: [],
        },
        { deadline: this.deadline() },
      );
      if (res.succeeded) {
        this.logger.info(
          { node: self.name, graceSeconds: this.restartGrace, lease: grace.ID },
          `left this node's record in etcd for ${this.restartGrace} s: peers keep routing to it until a restarted daemon takes it over`,
        );
      } else {
        this.logger.warn({ node: self.name }, `this node's record is no longer on its lease: left as it is (expires within ${this.ttl} s)`);
      }
    } catch (e) {
      this.logger.warn(
        { node: self.name, err: this.describe(e) },
        `could not keep this node's record for a restart: it expires within ${this.ttl} s`,
      );
    }
  }

  // --- claiming -------------------------------------------------------------------------------------

  /** Writes `self`'s record and subnet claim on the current lease (granting one if needed), atomically with the overlap check. */
  private async claim(self: NodeRecord): Promise<void> {
    let retryReason = '';
    for (let attempt = 1; attempt <= this.maxClaimAttempts; attempt++) {
      if (this.state === 'stopped') throw new FailedPreconditionError('etcd membership is stopped: cannot announce');
      const leaseId = await this.ensureLease();
      const snapshot = await this.etcd('read the cluster records', () => this.readAll());
      const verdict = checkClaim(self, snapshot.nodes, snapshot.claims, leaseId);
      if (!verdict.ok) throw new FailedPreconditionError(verdict.message);
      const unchangedSince = (prefix: string) => ({
        key: Buffer.from(prefix),
        range_end: prefixRangeEnd(prefix),
        target: CompareTarget.Mod,
        result: CompareResult.Less,
        mod_revision: snapshot.revision + 1,
      });
      const success: IRequestOp[] = [
        { request_put: { key: Buffer.from(this.keys.nodeKey(self.name)), value: Buffer.from(encodeNodeRecord(self)), lease: leaseId } },
        // One claim per subnet (IPv4 and IPv6), in the same transaction as the record.
        ...subnetsOfNode(self).map((subnet) => ({
          request_put: { key: Buffer.from(this.keys.claimKey(subnet)), value: Buffer.from(self.name), lease: leaseId },
        })),
        ...verdict.staleOwnClaims.map((s) => ({ request_delete_range: { key: Buffer.from(this.keys.claimKey(s)) } })),
      ];
      let succeeded: boolean;
      try {
        const res = await this.client.kv.txn(
          { compare: [unchangedSince(this.keys.nodes), unchangedSince(this.keys.subnets)], success, failure: [] },
          { deadline: this.deadline() },
        );
        succeeded = res.succeeded;
      } catch (e) {
        if (e instanceof EtcdLeaseInvalidError) {
          // etcd expired the lease before our client noticed: take a new one.
          this.logger.warn({ lease: leaseId }, 'etcd lease expired: granting a new one');
          this.dropLease();
          retryReason = `etcd kept reporting the new lease as expired (${errorMessage(e)})`;
          continue;
        }
        throw this.unavailable("write this node's record", e);
      }
      if (succeeded) {
        if (verdict.staleOwnClaims.length > 0) {
          this.logger.info({ released: verdict.staleOwnClaims.map(String) }, "released this node's claims on subnets it no longer uses");
        }
        return;
      }
      retryReason = `the records under ${this.keys.prefix} kept changing`;
      this.logger.debug({ attempt, revision: snapshot.revision }, 'cluster records changed while claiming: checking again');
      await delay(Math.round(Math.random() * 50 * attempt));
    }
    throw new UnavailableError(`could not announce ${self.name} in ${this.maxClaimAttempts} attempts: ${retryReason}; try again`);
  }

  /** The id of a live lease, granting one (which starts its keepalives) if there is none. */
  private async ensureLease(): Promise<string> {
    if (this.lease && this.leaseId && !this.lease.revoked()) return this.leaseId;
    this.dropLease();
    const lease = this.client.lease(this.ttl, { deadline: this.deadline() });
    lease.on('lost', (err) => this.onLeaseLost(lease, err));
    lease.on('keepaliveSucceeded', () => {
      if (lease === this.lease) this.leaseRenewedAt = Date.now();
    });
    lease.on('keepaliveFailed', () => {
      if (lease === this.lease) this.leaseRenewFailures++;
    });
    let id: string;
    try {
      id = await lease.grant();
    } catch (e) {
      throw this.unavailable('grant a lease', e);
    }
    this.lease = lease;
    this.leaseId = id;
    this.leaseRenewedAt = Date.now();
    return id;
  }

  private dropLease(): void {
    this.lease?.release();
    this.lease = null;
    this.leaseId = null;
    this.leaseRenewedAt = null;
  }

  private onLeaseLost(lease: Lease, err: Error): void {
    if (lease !== this.lease || this.state === 'stopped') return; // an older lease, or a grant that failed (announce reports it)
    this.lease = null;
    this.leaseId = null;
    this.leaseRenewedAt = null;
    this.logger.warn(
      { node: this.nodeName, endpoints: this.endpoints, err: this.describe(err), leaseTtlSeconds: this.ttl },
      'lost the etcd lease (etcd unreachable for longer than its TTL, or it expired): re-announcing with a new lease once etcd answers',
    );
    this.reannounceSoon('the lease was lost');
  }

  /** Re-announces this node in the background until it succeeds (or stop()), with backoff. */
  private reannounceSoon(reason: string): void {
    if (this.reannouncing || !this.self || this.state === 'stopped') return;
    this.reannouncing = true;
    void (async () => {
      let wait = this.retryDelay.initial;
      try {
        while (this.state !== 'stopped' && this.self) {
          const self = this.self;
          try {
            await this.claimMutex.run(() => this.claim(self));
            this.logger.info(
              { node: self.name, subnet: describeNodeSubnets(self), lease: this.leaseId, reason },
              're-announced this node in etcd',
            );
            return;
          } catch (e) {
            if (this.isStopped()) return;
            const fields = { node: self.name, err: errorMessage(e), retryInMs: wait };
            if (e instanceof FailedPreconditionError)
              this.logger.error(fields, 'cannot re-announce this node: another node holds what it needs');
            else this.logger.warn(fields, 'could not re-announce this node yet');
          }
          if (!(await this.sleep(wait))) return;
          wait = Math.min(this.retryDelay.max, wait * 2);
        }
      } finally {
        this.reannouncing = false;
      }
    })();
  }

  // --- watching -------------------------------------------------------------------------------------

  /** Reads the records and claims under the prefix, at one revision. */
  private async readAll(): Promise<Snapshot> {
    const res = await this.client.kv.range(
      { key: Buffer.from(this.keys.root), range_end: prefixRangeEnd(this.keys.root) },
      { deadline: this.deadline() },
    );
    const nodes: LiveRecord[] = [];
    const claims: LiveClaim[] = [];
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (key.startsWith(this.keys.nodes)) {
        const record = this.decode(kv);
        if (record) nodes.push({ record, lease: kv.lease });
      } else {
        const subnet = this.keys.subnetOfClaimKey(key);
        const holder = subnet ? parseClaimHolder(kv.value.toString()) : null;
        if (subnet && holder) claims.push({ subnet, holder, lease: kv.lease });
        else if (key.startsWith(this.keys.subnets)) this.logger.warn({ key }, 'ignoring a malformed subnet claim in etcd');
      }
    }
    return { revision: Number(res.header.revision), nodes, claims };
  }

  /** A node record from etcd, or null (logged) if it is malformed. */
  private decode(kv: IKeyValue): NodeRecord | null {
    const key = kv.key.toString();
    const name = this.keys.nameOfNodeKey(key);
    if (name === null) return null;
    try {
      return decodeNodeRecord(key, name, kv.value.toString());
    } catch (e) {
      this.logger.warn({ key, err: errorMessage(e), revision: kv.mod_revision }, 'ignoring a malformed node record in etcd');
      return null;
    }
  }

  private watchFrom(revision: number): void {
    const generation = ++this.watchGeneration;
    this.seenRevision = revision - 1;
    const watcher = this.client.watch().prefix(this.keys.nodes).startRevision(String(revision)).watcher();
    this.watcher = watcher;
    const current = () => generation === this.watchGeneration && this.state === 'running';
    watcher.on('data', (res) => {
      if (!current()) return;
      try {
        this.onWatchData(res);
      } catch (e) {
        // etcd3 rethrows a data handler's error outside any handler: it would crash the daemon.
        this.logger.error({ err: errorMessage(e) }, 'could not apply an etcd watch event');
      }
    });
    watcher.on('disconnected', (err) => {
      if (!current()) return;
      // etcd3 moves the resume point to the revision in the "created" answer before etcd has replayed
      // the events up to it; resume from what was actually delivered instead.
      watcher.request.start_revision = String(this.seenRevision + 1);
      const tlsFailure = explainEtcdTlsFailure(errorMessage(err), this.clientCert);
      if (this.watchDisconnectedAt === null) {
        this.watchDisconnectedAt = Date.now();
        this.watchTlsFailure = tlsFailure;
        this.logger.warn(
          { endpoints: this.endpoints, err: tlsFailure ?? errorMessage(err), revision: this.seenRevision },
          'etcd watch disconnected: resuming when etcd answers',
        );
      } else if (tlsFailure !== null && tlsFailure !== this.watchTlsFailure) {
        // A handshake failure does not heal by retrying (a certificate or CA changed): say so, once per reason.
        this.watchTlsFailure = tlsFailure;
        this.logger.error({ endpoints: this.endpoints, err: tlsFailure }, 'etcd watch cannot reconnect: the TLS handshake with etcd fails');
      }
    });
    watcher.on('connected', () => {
      if (!current() || this.watchDisconnectedAt === null) return;
      this.logger.info({ fromRevision: this.seenRevision + 1, downMs: Date.now() - this.watchDisconnectedAt }, 'etcd watch resumed');
      this.watchDisconnectedAt = null;
      this.watchTlsFailure = null;
    });
    watcher.on('error', (err) => {
      if (!current()) return;
      // etcd cancels a watch whose start revision was compacted away (and for nothing else we ask for).
      this.logger.warn(
        { err: errorMessage(err), wantedRevision: this.seenRevision + 1 },
        'etcd canceled the watch (its revision was probably compacted): re-listing',
      );
      this.resync();
    });
  }

  private onWatchData(res: IWatchResponse): void {
    for (const ev of res.events) {
      const key = ev.kv.key.toString();
      const name = this.keys.nameOfNodeKey(key);
      if (name === null) continue;
      const deleted = String(ev.type).toUpperCase() === 'DELETE';
      if (name === this.nodeName) {
        this.onOwnRecordEvent(deleted, ev.kv);
        continue;
      }
      const record = deleted ? null : this.decode(ev.kv);
      if (record) this.byName.set(name, record);
      else this.byName.delete(name); // gone, or malformed (treated as absent)
    }
    const revision = Number(res.header.revision);
    if (revision > this.seenRevision) this.seenRevision = revision;
    this.notify(false);
  }

  private onOwnRecordEvent(deleted: boolean, kv: IKeyValue): void {
    if (!this.self || this.state !== 'running') return;
    if (deleted) {
      this.reannounceSoon('its record was deleted from etcd');
    } else if (this.leaseId !== null && kv.lease !== this.leaseId) {
      this.logger.warn(
        { node: this.nodeName, lease: kv.lease },
        "this node's record was written under another lease: is another daemon using this node's name?",
      );
    }
  }

  /** After the watch was canceled: read everything again and watch from there, retrying until etcd answers. */
  private resync(): void {
    if (this.resyncing) return;
    this.resyncing = true;
    this.watchGeneration++; // the canceled watcher is already detached; ignore anything else from it
    this.watcher = null;
    void (async () => {
      let wait = this.retryDelay.initial;
      try {
        while (this.state === 'running') {
          try {
            const snapshot = await this.readAll();
            if (this.state !== 'running') return;
            this.replacePeers(snapshot.nodes);
            this.notify(false);
            this.watchFrom(snapshot.revision + 1);
            this.logger.info(
              { revision: snapshot.revision, peers: this.byName.size },
              're-listed the cluster records after the watch was canceled',
            );
            return;
          } catch (e) {
            this.logger.warn(
              { endpoints: this.endpoints, err: this.describe(e), retryInMs: wait },
              'could not re-list the cluster records yet',
            );
          }
          if (!(await this.sleep(wait))) return;
          wait = Math.min(this.retryDelay.max, wait * 2);
        }
      } finally {
        this.resyncing = false;
      }
    })();
  }

  private replacePeers(nodes: readonly LiveRecord[]): void {
    this.byName.clear();
    for (const { record } of nodes) {
      if (record.name !== this.nodeName) this.byName.set(record.name, record);
    }
  }

  /** Calls the listener with the peer set if it changed since the last call (or `always`). */
  private notify(always: boolean): void {
    const peers = this.peers();
    const last = this.lastNotified;
    const same = last !== null && last.length === peers.length && last.every((p, i) => sameNodeRecord(p, peers[i]!));
    if (same && !always) return;
    this.lastNotified = peers;
    try {
      this.listener?.(peers);
    } catch (e) {
      this.logger.error({ err: errorMessage(e) }, 'membership listener failed');
    }
  }

  // --- helpers --------------------------------------------------------------------------------------

  /** A method, so TypeScript does not narrow `state` across awaits. */
  private isStopped(): boolean {
    return this.state === 'stopped';
  }

  private deadline(): number {
    return Date.now() + this.requestTimeoutMs;
  }

  /** Runs an etcd request, turning a failure into UnavailableError. */
  private async etcd<T>(step: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.unavailable(step, e);
    }
  }

  private unavailable(step: string, e: unknown): NodenetError {
    if (e instanceof NodenetError) return e;
    return new UnavailableError(`etcd at ${this.endpoints.join(', ')} could not ${step}: ${this.describe(e)}`, { cause: e });
  }

  /** An etcd error's message, or the plain explanation of a TLS handshake failure. */
  private describe(e: unknown): string {
    const message = errorMessage(e);
    return explainEtcdTlsFailure(message, this.clientCert) ?? message;
  }

  /** Waits `ms`; false if stop() came first. */
  private async sleep(ms: number): Promise<boolean> {
    try {
      await delay(ms, undefined, { signal: this.stopping.signal });
      return true;
    } catch {
      return false;
    }
  }
}
