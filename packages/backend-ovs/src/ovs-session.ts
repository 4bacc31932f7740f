/**
 * The ovs backend's long-lived connections to Open vSwitch (@nodenet/openvswitch), instead of an ovs-vsctl
 * and an ovs-ofctl process per step: one OVSDB session (with ovs-vswitchd's cur_cfg watched, to wait for a
 * change to be applied as ovs-vsctl does) and one OpenFlow connection per bridge, through its management
 * socket. One session per Open vSwitch per process (OvsSession.shared): the dataplane and the overlay of a
 * daemon send their flow bundles, packet-outs and OVSDB transactions over the same connections.
 * Everything is opened on first use and re-opened after a loss; nothing here is needed for the switch to
 * keep forwarding (nodenet is not the bridge's controller).
 */
import { InternalError, UnavailableError } from '@nodenet/core';
import {
  OpenFlowConnection,
  OpenFlowConnectionLostError,
  OvsdbClient,
  VswitchConfigWaiter,
  VswitchTimeoutError,
  flowModOf,
  packetOutOf,
  uuidOf,
  type FlowMod,
  type FlowStats,
  type FlowStatsRequest,
  type Operation,
  type OperationResult,
} from '@nodenet/openvswitch';
import { mgmtSocket } from './names.js';
import { missingBridgeOf } from './ovsdb.js';
import { observedRequest } from './ovs-outcome.js';

export interface OvsSessionOptions {
  readonly db: string;
  readonly runDir: string;
  readonly timeoutSeconds: number;
}

interface Ovsdb {
  readonly client: OvsdbClient;
  readonly waiter: VswitchConfigWaiter;
}

/** The sessions in use in this process, by Open vSwitch (database, run directory, timeout). */
const sharedSessions = new Map<string, { session: OvsSession; users: number }>();

export class OvsSession {
  private ovsdb: Promise<Ovsdb> | undefined;
  private readonly bridges = new Map<string, OpenFlowConnection>();
  private closed = false;
  private sharedKey: string | undefined;

  constructor(private readonly options: OvsSessionOptions) {}

  /**
   * The process's session for this Open vSwitch, opened for the first user: every user of the same switch
   * shares its OVSDB session and its OpenFlow connection per bridge. Each user calls release() once.
   */
  static shared(options: OvsSessionOptions): OvsSession {
    const key = JSON.stringify([options.db, options.runDir, options.timeoutSeconds]);
    let entry = sharedSessions.get(key);
    if (!entry) {
      entry = { session: new OvsSession(options), users: 0 };
      entry.session.sharedKey = key;
      sharedSessions.set(key, entry);
    }
    entry.users++;
    return entry.session;
  }

  /** One user of a shared session is done; the last one closes it. */
  release(): void {
    const entry = this.sharedKey === undefined ? undefined : sharedSessions.get(this.sharedKey);
    if (entry?.session !== this) return this.close();
    if (--entry.users > 0) return;
    sharedSessions.delete(this.sharedKey!);
    this.close();
  }

  /** One OVSDB transaction; with `wait`, returns once ovs-vswitchd has applied it. */
  async transact(ops: readonly Operation[], step: string, wait: boolean): Promise<OperationResult[]> {
    try {
      return await observedRequest('ovsdb', async () => {
        const db = await this.openOvsdb();
        return wait ? await db.waiter.transactAndWait(ops, step, this.options.timeoutSeconds * 1000) : await db.client.transact(ops, step);
      });
    } catch (e) {
      if (e instanceof VswitchTimeoutError) throw vswitchdTimeout(step, this.options, e);
      const bridge = missingBridgeOf(e);
      if (bridge !== undefined)
        throw new InternalError(step, `no bridge named ${bridge} in the Open vSwitch database at ${this.options.db}`, { cause: e });
      throw e;
    }
  }

  /**
   * The UUIDs of the Port rows named `names` that exist, read at the moment (a select: a monitor could lag
   * behind another client's change of the same name, and one round trip on the session costs ~0.2 ms).
   */
  async portUuids(names: readonly string[], step: string): Promise<string[]> {
    if (names.length === 0) return [];
    // One select per name (OVSDB's conditions are all ANDed), in one transaction.
    const selected = await this.select(
      names.map((name) => ({ op: 'select', table: 'Port', where: [['name', '==', name]], columns: ['_uuid'] })),
      step,
    );
    return selected
      .flatMap((s) => s.rows ?? [])
      .flatMap((r) => {
        const u = uuidOf(r['_uuid']);
        return u === undefined ? [] : [u];
      });
  }

  /** A column of the Interface row named `name`, read at the moment (undefined: no such row). */
  async interfaceColumn(name: string, column: string, step: string): Promise<unknown> {
    const [selected] = await this.select([{ op: 'select', table: 'Interface', where: [['name', '==', name]], columns: [column] }], step);
    return selected?.rows?.[0]?.[column];
  }

  /** A read-only transaction, as is. */
  private select(ops: readonly Operation[], step: string): Promise<OperationResult[]> {
    return observedRequest('ovsdb', async () => (await this.openOvsdb()).client.transact(ops, step));
  }

  /**
   * Flow-mods (`add FLOW`, `delete FLOW`, `delete_strict FLOW` lines) as one atomic bundle. Repeating a
   * bundle after a lost connection is safe (adding a flow that is there replaces it; deleting one that is
   * gone is no error).
   */
  async bundle(bridge: string, script: string, step: string): Promise<void> {
    const mods = scriptFlowMods(script);
    if (mods.length === 0) return;
    await this.withFlowConnection(bridge, 'idempotent', (c) => c.bundle(mods, step));
  }

  /** The flows the request selects (flow stats over the connection, as `ovs-ofctl dump-flows` reads them). */
  dumpFlows(bridge: string, request: FlowStatsRequest, step: string): Promise<FlowStats[]> {
    return this.withFlowConnection(bridge, 'idempotent', (c) => c.dumpFlows(request, step));
  }

  /**
   * Packet-outs (ovs-ofctl's `in_port=P,packet=HEX,actions=A` text) back to back with one barrier. Not
   * repeated once sent (a lost connection after that may have sent them: the caller hears UNAVAILABLE).
   */
  async packetOuts(bridge: string, packets: readonly string[], step: string): Promise<void> {
    if (packets.length === 0) return;
    const parsed = packets.map((p) => packetOutOf(p));
    await this.withFlowConnection(bridge, 'once', (c) => c.packetOuts(parsed, step));
  }

  /**
   * `call` on the bridge's connection. When the connection is lost during the call (the bridge recreated,
   * ovs-vswitchd restarted or dropping its connections, also while this call dialled it), the call is
   * repeated once on a new connection if that is safe: it had not reached the switch, or it is `idempotent`
   * (repeating it leaves the switch as once does). Otherwise, and for any other failure, the caller hears it.
   */
  private withFlowConnection<T>(bridge: string, repeat: 'idempotent' | 'once', call: (c: OpenFlowConnection) => Promise<T>): Promise<T> {
    return observedRequest('openflow', async () => {
      try {
        return await call(await this.openFlow(bridge));
      } catch (e) {
        if (!(e instanceof OpenFlowConnectionLostError && (repeat === 'idempotent' || !e.mayHaveApplied))) throw e;
        return call(await this.openFlow(bridge));
      }
    });
  }

  close(): void {
    this.closed = true;
    for (const c of this.bridges.values()) c.close();
    this.bridges.clear();
    const db = this.ovsdb;
    this.ovsdb = undefined;
    void db?.then(
      (d) => d.client.close(),
      () => undefined,
    );
  }

  private openOvsdb(): Promise<Ovsdb> {
    if (this.closed) throw new InternalError('reach Open vSwitch', 'the OVS session was closed');
    this.ovsdb ??= (async () => {
      const client = await OvsdbClient.connect({ remote: this.options.db, requestTimeoutMs: this.options.timeoutSeconds * 1000 });
      try {
        return { client, waiter: await VswitchConfigWaiter.start(client) };
      } catch (e) {
        client.close();
        throw e;
      }
    })();
    // A failed first connection is retried by the next call (the client reconnects by itself once open).
    this.ovsdb.catch(() => {
      this.ovsdb = undefined;
    });
    return this.ovsdb;
  }

  private async openFlow(bridge: string): Promise<OpenFlowConnection> {
    let c = this.bridges.get(bridge);
    if (!c) {
      c = await OpenFlowConnection.connect({
        target: mgmtSocket(this.options.runDir, bridge),
        requestTimeoutMs: this.options.timeoutSeconds * 1000,
      });
      const existing = this.bridges.get(bridge);
      if (existing || this.closed) {
        // Another call connected meanwhile (or the session closed): keep one connection per bridge.
        c.close();
        if (!existing) throw new InternalError('reach Open vSwitch', 'the OVS session was closed');
        return existing;
      }
      this.bridges.set(bridge, c);
    }
    return c;
  }
}

/** ovs-vswitchd did not apply a change in time (through ovs-vsctl or the OVSDB session): UNAVAILABLE naming where it was expected. */
export function vswitchdTimeout(
  step: string,
  ovs: { db: string; runDir: string; timeoutSeconds: number },
  cause: unknown,
): UnavailableError {
  return new UnavailableError(
    `${step}: ovs-vswitchd did not apply the change within ${ovs.timeoutSeconds} s (database ${ovs.db}, run directory ${ovs.runDir}): is ovs-vswitchd running? Start it (e.g. systemctl start openvswitch-switch) and retry`,
    { cause },
  );
}

const SCRIPT_VERBS: Readonly<Record<string, FlowMod['command']>> = {
  add: 'add',
  modify: 'modify',
  modify_strict: 'modifyStrict',
  delete: 'delete',
  delete_strict: 'deleteStrict',
};

/** The flow-mods of an `ovs-ofctl add-flows` script (flows.ts writes them). */
export function scriptFlowMods(script: string): FlowMod[] {
  return script
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const space = line.indexOf(' ');
      const command = SCRIPT_VERBS[line.slice(0, space)];
      if (space < 0 || !command)
        throw new InternalError('write flows', `'${line}' is not a flow-mod line (add, modify[_strict], delete[_strict] FLOW)`);
      return flowModOf(command, line.slice(space + 1).trim());
    });
}
