/**
 * One long-lived OVSDB session (RFC 7047 JSON-RPC over a unix socket or TCP): requests with ids, transact,
 * the server's echo answered (and our own sent, so a dead peer is noticed), monitors kept as local replicas,
 * and reconnection with backoff that replays the session: monitors are re-issued (their replicas rebuilt
 * from the server's initial rows) before 'reconnected' is emitted, so the owner re-asserts its state
 * against an up-to-date view. Requests made while disconnected wait for the reconnection (up to their
 * timeout); requests in flight when the connection drops fail with UnavailableError (the owner decides
 * whether a transaction is safe to repeat).
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { UnavailableError } from '@nodenet/core';
import { DEFAULT_BACKOFF, backoffDelay, connectOptionsOf, type Backoff } from '../remote.js';
import { JsonObjectSplitter } from './json-stream.js';
import { transactionError, type Operation, type OperationResult } from './operations.js';
import { MonitorReplica, type MonitorRequests, type TableUpdates2 } from './replica.js';
import { ColumnKinds } from './schema.js';

export interface OvsdbClientOptions {
  /** `unix:/path/db.sock` or `tcp:HOST:PORT`. */
  readonly remote: string;
  /** Default `Open_vSwitch`. */
  readonly database?: string;
  readonly backoff?: Backoff;
  /** How long a request waits for its reply (including a reconnection). Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** Our echo probe interval; a probe unanswered for as long drops the connection. Default 5 s; 0: off. */
  readonly echoIntervalMs?: number;
}

interface Pending {
  readonly method: string;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A JSON-RPC error reply (`error` not null): OVSDB's error and details. */
export class OvsdbRpcError extends UnavailableError {
  constructor(
    readonly method: string,
    readonly remote: string,
    readonly error: unknown,
  ) {
    const e = error as { error?: string; details?: string } | string;
    const text = typeof e === 'string' ? e : `${e.error ?? JSON.stringify(e)}${e.details ? `: ${e.details}` : ''}`;
    super(`OVSDB at ${remote} answered ${method} with an error: ${text}`);
  }
}

export interface OvsdbClientEvents {
  /** The session was re-established and every monitor re-issued. */
  reconnected: [];
  /** The connection dropped (reconnection follows unless closed). */
  disconnected: [Error | undefined];
}

export class OvsdbClient extends EventEmitter<OvsdbClientEvents> {
  readonly remote: string;
  readonly database: string;
  private readonly backoff: Backoff;
  private readonly requestTimeoutMs: number;
  private readonly echoIntervalMs: number;
  private socket: Socket | undefined;
  private splitter = new JsonObjectSplitter();
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waitingForConnection = new Set<() => void>();
  private readonly monitors = new Map<string, MonitorReplica>();
  private nextMonitorId = 1;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private echoTimer: NodeJS.Timeout | undefined;
  private echoOutstanding = false;
  private kinds: ColumnKinds | undefined;

  private constructor(options: OvsdbClientOptions) {
    super();
    this.remote = options.remote;
    connectOptionsOf(this.remote);
    this.database = options.database ?? 'Open_vSwitch';
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.echoIntervalMs = options.echoIntervalMs ?? 5_000;
  }

  /** Connects (UnavailableError naming the socket if that fails) and reads the database schema. */
  static async connect(options: OvsdbClientOptions): Promise<OvsdbClient> {
    const client = new OvsdbClient(options);
    try {
      await client.open();
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  get connected(): boolean {
    return this.socket !== undefined;
  }

  /** A JSON-RPC request; resolves with `result`, rejects with OvsdbRpcError or UnavailableError. */
  async request(method: string, params: unknown[]): Promise<unknown> {
    if (this.closed) throw new UnavailableError(`OVSDB ${method}: the session with ${this.remote} is closed`);
    const deadline = Date.now() + this.requestTimeoutMs;
    if (!this.socket) await this.waitForConnection(method, deadline);
    return this.send(method, params, deadline);
  }

  /**
   * A transaction on the client's database; resolves with one result per operation, or rejects with an
   * OvsdbTransactionError naming the operation that failed and OVSDB's error and details.
   */
  async transact(ops: readonly Operation[], step = 'OVSDB transaction'): Promise<OperationResult[]> {
    const results = (await this.request('transact', [this.database, ...ops])) as (OperationResult | null)[];
    const error = transactionError(step, this.remote, ops, results);
    if (error) throw error;
    return results as OperationResult[];
  }

  /**
   * Monitors tables (monitor_cond, update2): the replica holds their rows (the columns asked for, `_uuid`
   * as the key) and follows every change, across reconnections.
   */
  async monitor(tables: MonitorRequests): Promise<MonitorReplica> {
    const id = `nodenet-monitor-${this.nextMonitorId++}`;
    const replica = new MonitorReplica(id, tables, this.kinds!, (r) => this.cancelMonitor(r));
    this.monitors.set(id, replica);
    try {
      await this.issueMonitor(replica);
    } catch (e) {
      this.monitors.delete(id);
      throw e;
    }
    return replica;
  }

  /** Ends the session for good: pending requests fail, no reconnection. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.echoTimer);
    this.socket?.destroy();
    this.socket = undefined;
    this.failPending(new UnavailableError(`OVSDB: the session with ${this.remote} was closed`));
    for (const wake of this.waitingForConnection) wake();
  }

  // -------------------------------------------------------------------------------------------------

  private async open(): Promise<void> {
    const socket = await this.dial();
    this.attach(socket);
    if (!this.kinds) {
      const schema = await this.send('get_schema', [this.database], Date.now() + this.requestTimeoutMs);
      this.kinds = new ColumnKinds(schema);
    }
  }

  private dial(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(connectOptionsOf(this.remote));
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', (e) => {
        socket.destroy();
        reject(
          new UnavailableError(
            `cannot reach OVSDB at ${this.remote} (${(e as NodeJS.ErrnoException).code ?? e.message}): is ovsdb-server running, and is the remote right?`,
            { cause: e },
          ),
        );
      });
    });
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    this.splitter = new JsonObjectSplitter();
    socket.setNoDelay?.(true);
    socket.on('data', (chunk) => {
      let messages: unknown[];
      try {
        messages = this.splitter.push(chunk);
      } catch (e) {
        socket.destroy(e as Error);
        return;
      }
      for (const m of messages) this.dispatch(m as RpcMessage);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.lost(socket));
    for (const wake of this.waitingForConnection) wake();
    if (this.echoIntervalMs > 0) {
      this.echoOutstanding = false;
      this.echoTimer = setInterval(() => this.probe(socket), this.echoIntervalMs);
      this.echoTimer.unref();
    }
  }

  private probe(socket: Socket): void {
    if (this.echoOutstanding) {
      socket.destroy(new Error(`no echo reply within ${this.echoIntervalMs} ms`));
      return;
    }
    this.echoOutstanding = true;
    this.send('echo', ['nodenet'], Date.now() + this.echoIntervalMs * 2).then(
      () => {
        this.echoOutstanding = false;
      },
      () => undefined,
    );
  }

  private lost(socket: Socket): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    clearInterval(this.echoTimer);
    const error = new UnavailableError(`OVSDB: the connection to ${this.remote} was lost`);
    this.failPending(error);
    if (this.closed) return;
    this.emit('disconnected', error);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = backoffDelay(this.backoff, this.attempt++);
    this.reconnectTimer = setTimeout(() => {
      void this.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private async reconnect(): Promise<void> {
    if (this.closed) return;
    let socket: Socket;
    try {
      socket = await this.dial();
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.attach(socket);
    try {
      // Replay: every monitor again, its replica rebuilt from the initial rows.
      for (const replica of this.monitors.values()) await this.issueMonitor(replica);
    } catch {
      socket.destroy();
      return;
    }
    this.attempt = 0;
    this.emit('reconnected');
  }

  private async issueMonitor(replica: MonitorReplica): Promise<void> {
    const initial = (await this.request('monitor_cond', [this.database, replica.id, replica.requests()])) as TableUpdates2;
    replica.reset(initial);
  }

  private async cancelMonitor(replica: MonitorReplica): Promise<void> {
    this.monitors.delete(replica.id);
    if (this.socket) await this.request('monitor_cancel', [replica.id]).catch(() => undefined);
  }

  private send(method: string, params: unknown[], deadline: number): Promise<unknown> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new UnavailableError(`OVSDB ${method}: not connected to ${this.remote}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(new UnavailableError(`OVSDB ${method}: no reply from ${this.remote} within ${this.requestTimeoutMs} ms`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.pending.set(id, { method, resolve, reject, timer });
      socket.write(JSON.stringify({ method, params, id }));
    });
  }

  private waitForConnection(method: string, deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waitingForConnection.delete(wake);
          reject(
            new UnavailableError(
              `OVSDB ${method}: could not reconnect to ${this.remote} within ${this.requestTimeoutMs} ms: is ovsdb-server running?`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const wake = () => {
        clearTimeout(timer);
        this.waitingForConnection.delete(wake);
        if (this.closed) reject(new UnavailableError(`OVSDB ${method}: the session with ${this.remote} was closed`));
        else resolve();
      };
      this.waitingForConnection.add(wake);
    });
  }

  private dispatch(m: RpcMessage): void {
    if ('method' in m && typeof m.method === 'string') {
      if (m.method === 'echo' && m.id !== undefined && m.id !== null) {
        this.socket?.write(JSON.stringify({ id: m.id, result: m.params ?? [], error: null }));
      } else if (m.method === 'update2') {
        // monitor_cond's notification (the only kind of monitor this client issues).
        const [monitorId, updates] = (m.params ?? []) as [string, TableUpdates2];
        this.monitors.get(monitorId)?.apply(updates);
      }
      return;
    }
    const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined;
    if (!p) return;
    this.pending.delete(m.id as number);
    clearTimeout(p.timer);
    if (m.error !== null && m.error !== undefined) p.reject(new OvsdbRpcError(p.method, this.remote, m.error));
    else p.resolve(m.result);
  }

  private failPending(error: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new UnavailableError(`${error.message} (${p.method} in flight)`, { cause: error }));
    }
  }
}

interface RpcMessage {
  readonly id?: unknown;
  readonly method?: string;
  readonly params?: unknown[];
  readonly result?: unknown;
  readonly error?: unknown;
}
