/**
 * Open vSwitch's change notifications, followed in the daemon over long-lived connections instead of an
 * `ovsdb-client monitor` and an `ovs-ofctl monitor` process (no process on the repair path, nothing to
 * restart with back-off, and no stdio buffering between a change and its notice):
 * - an OVSDB monitor (monitor_cond on its own session): Bridge and Interface rows of nodenet's, deleted or
 *   changed (classifyOvsdbRowChange);
 * - the CNI bridge's flow table, through its management socket: nodenet's flows counted per cookie class
 *   with aggregate stats every POLL_MS (one small request and reply per class, whatever the number of
 *   flows); a class with fewer flows than at the last look had flows deleted (classifyFlowCounts). Unlike a
 *   flow monitor, this sees no echo of nodenet re-asserting a peer's flows in place (the counts stay), and
 *   it needs no flag on the flows. A flow modified in place (ovs-ofctl mod-flows, or replaced with the same
 *   cookie) changes no count: every FINGERPRINT_EVERY-th look dumps the classes' flows instead, as undecoded
 *   fingerprints (rule -> content), and a rule whose content changed is a change (classifyFlowFingerprints).
 *   Measured at 1,556 flows (load ~33): a fingerprint look costs the daemon 1.5-1.7 ms CPU and ovs-vswitchd
 *   1.5-1.6 ms, a count 0.2 ms each, a decoded dump 4.4-4.8 and 1.8 ms. An OpenFlow flow monitor would cost
 *   nothing while idle, but reports every flow-mod, nodenet's own re-assertions included (each one setting
 *   off a pass that re-asserts again, unless a replica of the table filtered them), and needs OVS 3.0 or
 *   later for OpenFlow 1.4's: fingerprints every 400 ms add ~0.4 % of a core on each side at that size.
 * Either one losing its connection and getting it back is a change in itself (OVS restarted: its flows or
 * its database may be gone): the watcher runs a full pass.
 */
import { COOKIE_CLASS, classCookieMatch, type CookieClass } from '@nodenet/backend-ovs';
import type { Logger } from '@nodenet/core';
import { OpenFlowConnection, OvsdbClient, type MonitorReplica } from '@nodenet/openvswitch';
import { join } from 'node:path';
import { classifyFlowCounts, classifyFlowFingerprints, classifyOvsdbRowChange } from './change-events.js';
import type { DaemonConfig } from './config.js';

/** How often the flow table is counted (a deletion is noticed within this, plus a round trip). */
export const POLL_MS = 100;
/** Every this many looks, the flows are fingerprinted instead of counted (a modification noticed within POLL_MS times this). */
export const FINGERPRINT_EVERY = 4;
/**
 * While OVS cannot be reached: retries from RETRY_FIRST_MS doubling up to RETRY_MAX_MS. The cap is what a
 * restart of OVS adds at most to noticing it is back (measured with 500: the flow table seen again ~400 ms
 * after ovs-vswitchd's restart); a failed attempt on a missing socket costs next to nothing.
 */
const RETRY_FIRST_MS = 25;
const RETRY_MAX_MS = 100;
/** A request to OVS that takes longer than this counts as a lost connection. */
const REQUEST_TIMEOUT_MS = 5_000;
/** The CNI bridge whose flow table is watched. */
const CNI_BRIDGE = 'nodenet0';

/** Where a change source reports: a relevant change, or its connection back after a loss. */
export interface ChangeSink {
  change(cause: string): void;
  /** The source reached OVS again after it could not (changes may have been missed meanwhile). */
  reconnected(): void;
  readonly logger: Logger;
}

/** A long-lived follower of changes inside the daemon (as opposed to a monitor process). */
export interface ChangeSource {
  readonly name: string;
  start(sink: ChangeSink): void;
  stop(): Promise<void>;
}

/**
 * The in-process sources for a config: OVS's with the ovs backend, none otherwise. `hasCni` says whether the
 * node has its CNI (so the CNI bridge should be there); without one, no bridge to watch is no gap.
 */
export function changeSources(config: Pick<DaemonConfig, 'backend' | 'ovs'>, hasCni: () => boolean = () => true): ChangeSource[] {
  if (config.backend !== 'ovs') return [];
  const target = `unix:${join(config.ovs.runDir, `${CNI_BRIDGE}.mgmt`)}`;
  return [new OvsdbChangeSource(config.ovs.db), new FlowTableWatch(CNI_BRIDGE, target, { bridgeExpected: hasCni })];
}

const retryDelay = (failures: number) => Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.max(0, failures - 1));
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Bridge and Interface rows through an OVSDB monitor on a session of its own. */
export class OvsdbChangeSource implements ChangeSource {
  readonly name = 'OVSDB monitor of Bridge, Interface';
  private client: OvsdbClient | undefined;
  private replica: MonitorReplica | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(private readonly remote: string) {}

  start(sink: ChangeSink): void {
    void this.connect(sink);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.client?.close();
    this.client = undefined;
  }

  private async connect(sink: ChangeSink): Promise<void> {
    if (this.stopped) return;
    let client: OvsdbClient | undefined;
    try {
      // The client reconnects by itself once it has connected (re-issuing the monitor); the first
      // connection is this loop's.
      client = await OvsdbClient.connect({
        remote: this.remote,
        backoff: { initialMs: RETRY_FIRST_MS, maxMs: RETRY_MAX_MS },
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
      });
      const replica = await client.monitor({
        Bridge: { columns: ['name', 'external_ids', 'datapath_id'] },
        Interface: { columns: ['name', 'external_ids', 'ofport'] },
      });
      if (this.stopped) {
        client.close();
        return;
      }
      replica.on('change', (table, _uuid, row, old) => {
        for (const cause of classifyOvsdbRowChange(table, row, old)) sink.change(cause);
      });
      client.on('disconnected', (e) =>
        sink.logger.warn(
          { event: 'monitor-exit', monitor: this.name, err: e?.message ?? 'closed' },
          `${this.name}: lost the OVSDB session (${e?.message ?? 'closed'}); reconnecting`,
        ),
      );
      // The monitor is re-issued (its replica rebuilt) before this: a full pass sees the database as it is.
      client.on('reconnected', () => sink.reconnected());
      this.client = client;
      this.replica = replica;
      if (this.failures > 0) sink.reconnected();
      this.failures = 0;
    } catch (e) {
      client?.close();
      if (this.failures === 0)
        sink.logger.warn(
          { event: 'monitor-exit', monitor: this.name, err: message(e), retryInMs: RETRY_FIRST_MS },
          `${this.name}: cannot reach OVSDB at ${this.remote} (${message(e)}); retrying`,
        );
      this.failures++;
      if (!this.stopped) {
        this.timer = setTimeout(() => void this.connect(sink), retryDelay(this.failures));
        this.timer.unref();
      }
    }
  }

  /** The rows followed (tests). */
  get rows(): MonitorReplica | undefined {
    return this.replica;
  }
}

export interface FlowTableWatchOptions {
  /** Default POLL_MS. */
  readonly pollMs?: number;
  /** Default FINGERPRINT_EVERY. */
  readonly fingerprintEvery?: number;
  /**
   * Whether the bridge should exist now (default: always). A switch unreachable only while it need not
   * exist (a node without its CNI yet) missed nothing: the bridge nodenet then creates is not a reconnection
   * (a full pass then waited behind the CNI's creation, and the passes after it behind that one, 5-8 s).
   */
  readonly bridgeExpected?: () => boolean;
}

/** nodenet's flows on a bridge, counted per cookie class every POLL_MS over an OpenFlow connection. */
export class FlowTableWatch implements ChangeSource {
  readonly name: string;
  private connection: OpenFlowConnection | undefined;
  private counts: Record<string, number> | undefined;
  /** Per class, the fingerprints (rule -> content) of the last fingerprinting look. */
  private fingerprints: Record<string, ReadonlyMap<string, string>> | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  /** Consecutive polls that could not reach the switch (0: reachable). */
  private failures = 0;
  /** Whether one of those failures came while the bridge should have been there (a gap to make up for). */
  private missedWhileExpected = false;
  private polls = 0;
  private readonly pollMs: number;
  private readonly fingerprintEvery: number;
  private readonly bridgeExpected: () => boolean;

  constructor(
    private readonly bridge: string,
    private readonly target: string,
    options: FlowTableWatchOptions = {},
  ) {
    this.name = `flow table of ${bridge}`;
    this.pollMs = options.pollMs ?? POLL_MS;
    this.fingerprintEvery = options.fingerprintEvery ?? FINGERPRINT_EVERY;
    this.bridgeExpected = options.bridgeExpected ?? (() => true);
  }

  start(sink: ChangeSink): void {
    this.schedule(sink, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    // Closing first fails a request in flight at once: a poll waiting on a hung switch does not hold the stop.
    this.connection?.close();
    await this.polling;
    this.connection = undefined;
  }

  /** Polls made so far (tests). */
  get pollCount(): number {
    return this.polls;
  }

  private schedule(sink: ChangeSink, ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.polling = this.poll(sink).finally(() => {
        this.polling = undefined;
        this.schedule(sink, this.failures > 0 ? retryDelay(this.failures) : this.pollMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async poll(sink: ChangeSink): Promise<void> {
    this.polls++;
    try {
      // connect() fails while the socket is not there; once connected, a lost connection dials again on the next call.
      if (!this.connection) {
        const connection = await OpenFlowConnection.connect({ target: this.target, requestTimeoutMs: REQUEST_TIMEOUT_MS });
        if (this.stopped) {
          connection.close();
          return;
        }
        this.connection = connection;
      }
      const classes = Object.entries(COOKIE_CLASS) as [string, CookieClass][];
      // The first look after (re)connecting fingerprints too: the next ones compare against it.
      const fingerprinting = this.fingerprints === undefined || this.polls % this.fingerprintEvery === 0;
      const connection = this.connection;
      const fingerprints = fingerprinting
        ? await Promise.all(
            classes.map(async ([, cls]) => {
              const flows = await connection.flowFingerprints(classCookieMatch(cls), `fingerprint nodenet's flows on ${this.bridge}`);
              return new Map(flows.map((f) => [f.rule, f.content]));
            }),
          )
        : undefined;
      const totals = fingerprints
        ? fingerprints.map((f) => f.size)
        : (
            await Promise.all(
              classes.map(([, cls]) => connection.aggregate(classCookieMatch(cls), `count nodenet's flows on ${this.bridge}`)),
            )
          ).map((t) => t.flowCount);
      if (this.stopped) return;
      const counts = Object.fromEntries(classes.map(([name], i) => [name, totals[i]!]));
      const byClass = fingerprints && Object.fromEntries(classes.map(([name], i) => [name, fingerprints[i]!]));
      if (this.failures > 0) {
        if (this.missedWhileExpected) sink.reconnected();
      } else {
        if (this.counts) for (const cause of classifyFlowCounts(this.bridge, this.counts, counts)) sink.change(cause);
        if (byClass && this.fingerprints)
          for (const [name] of classes)
            for (const cause of classifyFlowFingerprints(this.bridge, name, this.fingerprints[name]!, byClass[name]!)) sink.change(cause);
      }
      this.counts = counts;
      if (byClass) this.fingerprints = byClass;
      this.failures = 0;
      this.missedWhileExpected = false;
    } catch (e) {
      if (this.stopped) return;
      // The table may be another once the switch is back: the first look then takes fingerprints anew.
      this.fingerprints = undefined;
      if (this.bridgeExpected()) this.missedWhileExpected = true;
      if (this.failures === 0)
        sink.logger.warn(
          { event: 'monitor-exit', monitor: this.name, err: message(e), retryInMs: RETRY_FIRST_MS },
          `${this.name}: cannot count flows (${message(e)}); retrying`,
        );
      this.failures++;
    }
  }
}
