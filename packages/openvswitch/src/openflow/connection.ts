/**
 * One long-lived OpenFlow 1.4 connection to ovs-vswitchd, through the bridge's management socket
 * (`RUNDIR/BRIDGE.mgmt`, where ovs-ofctl connects): nodenet is not the bridge's controller, so the
 * switch's fail mode and its flows are not affected by this connection coming and going (a restart of
 * nodenet stays hitless). Flow-mods go out back to back with one barrier (errors matched to the flow-mod by
 * xid), or as one atomic bundle; packet-outs likewise with one barrier; flows read back through multipart flow stats. The switch's echo requests
 * are answered. When the connection drops, calls in flight fail with OpenFlowConnectionLostError (an
 * UnavailableError saying whether the call may have changed the switch) and the next call dials again
 * (emitting 'reconnected' so the owner can re-assert its flows).
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { InternalError, UnavailableError } from '@nodenet/core';
import { connectOptionsOf } from '../remote.js';
import { BUNDLE_CTRL, MSG, MULTIPART, OFP_HEADER_LEN, OFP_VERSION } from './constants.js';
import {
  aggregateStatsRequest,
  barrierRequest,
  bundleAdd,
  bundleControl,
  decodeAggregateStats,
  decodeBundleControl,
  decodeError,
  decodeFeaturesReply,
  decodeFlowFingerprints,
  decodeFlowStats,
  decodeHeader,
  decodeMultipartReply,
  encodeFlowMod,
  encodePacketOut,
  errorName,
  flowStatsRequest,
  hello,
  helloVersions,
  message,
  type AggregateStats,
  type FeaturesReply,
  type FlowFingerprint,
  type FlowMod,
  type FlowStats,
  type FlowStatsRequest,
  type PacketOut,
} from './messages.js';

export interface OpenFlowConnectionOptions {
  /** `unix:RUNDIR/BRIDGE.mgmt` (or `tcp:HOST:PORT` of a switch listening with ptcp:). */
  readonly target: string;
  /** How long a call waits for the switch. Default 10 s. */
  readonly requestTimeoutMs?: number;
}

/** The switch refused a message: which one (by index in the call) and OpenFlow's error type and code. */
export class OpenFlowError extends InternalError {
  constructor(
    step: string,
    readonly target: string,
    readonly errorType: number,
    readonly errorCode: number,
    /** The failed message's index in the call, if the error names one. */
    readonly index: number | undefined,
    /** What the call sent: `flow-mod`, `packet-out`. */
    kind = 'flow-mod',
  ) {
    super(
      step,
      `ovs-vswitchd at ${target} refused ${index === undefined ? 'the request' : `${kind} ${index}`}: ${errorName({ type: errorType, code: errorCode })}`,
    );
  }
}

/**
 * The connection dropped during a call (while dialling or awaiting a reply). `mayHaveApplied` says whether
 * the switch may have acted on the call: false when nothing that changes the switch had been written (a
 * read, a bundle whose commit was not sent, a dial that did not complete), true once flow-mods, packet-outs
 * or a bundle commit went out (the switch may have applied them before the reply was lost). A false one is
 * safe to repeat on a new connection whatever the call.
 */
export class OpenFlowConnectionLostError extends UnavailableError {
  constructor(
    readonly target: string,
    readonly mayHaveApplied: boolean,
    step?: string,
    /** How it ended, as the socket said: `closed by ovs-vswitchd`, or the error (e.g. ECONNRESET). */
    readonly how = '',
  ) {
    super(
      `${step === undefined ? 'OpenFlow' : step}: the connection to ovs-vswitchd at ${target} was lost${how === '' ? '' : ` (${how})`}${
        step === undefined
          ? ''
          : mayHaveApplied
            ? ' after the request was sent (it may have been applied)'
            : ' before the request was applied'
      }`,
    );
  }
}

interface Waiter {
  /** Reply types that complete the wait (an ERROR with this xid always does). */
  readonly types: readonly number[];
  readonly resolve: (msgs: Buffer[]) => void;
  readonly reject: (e: Error) => void;
  /** Multipart replies received so far. */
  readonly parts: Buffer[];
}

export interface OpenFlowConnectionEvents {
  reconnected: [];
  disconnected: [];
}

export class OpenFlowConnection extends EventEmitter<OpenFlowConnectionEvents> {
  readonly target: string;
  private readonly requestTimeoutMs: number;
  private socket: Socket | undefined;
  private connecting: Promise<void> | undefined;
  private buffered: Buffer = Buffer.alloc(0);
  private nextXid = 1;
  private nextBundleId = 1;
  private readonly waiters = new Map<number, Waiter>();
  /** Errors for xids nobody awaits directly (flow-mods before a barrier). */
  private readonly errors = new Map<number, Buffer>();
  private everConnected = false;
  private closed = false;
  private switchFeatures: FeaturesReply | undefined;

  private constructor(options: OpenFlowConnectionOptions) {
    super();
    this.target = options.target;
    connectOptionsOf(this.target, 'target');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  }

  /** Connects, negotiates OpenFlow 1.4 and reads the switch's features (UnavailableError if it cannot). */
  static async connect(options: OpenFlowConnectionOptions): Promise<OpenFlowConnection> {
    const c = new OpenFlowConnection(options);
    await c.ensureConnected();
    return c;
  }

  get features(): FeaturesReply | undefined {
    return this.switchFeatures;
  }

  get connected(): boolean {
    return this.socket !== undefined;
  }

  /**
   * Sends the flow-mods in order, then a barrier: resolves once the switch has applied all of them, or
   * rejects with the first one it refused (the others were applied: use bundle() for all or nothing).
   */
  async flowMods(mods: readonly FlowMod[], step = 'modify flows'): Promise<void> {
    await this.call(step, (sent) => this.sendWithBarrier(mods, encodeFlowMod, step, 'flow-mod', sent));
  }

  /**
   * Sends the packets (OFPT_PACKET_OUT) in order, then a barrier: resolves once the switch has taken all of
   * them through their actions, or rejects with the first one it refused (by index).
   */
  async packetOuts(packets: readonly PacketOut[], step = 'send packets'): Promise<void> {
    await this.call(step, (sent) => this.sendWithBarrier(packets, encodePacketOut, step, 'packet-out', sent));
  }

  /**
   * The flow-mods as one atomic, ordered bundle: all applied or none (a refused flow-mod discards the
   * bundle and is reported by index).
   */
  async bundle(mods: readonly FlowMod[], step = 'modify flows in a bundle'): Promise<void> {
    await this.call(step, (committed) => this.bundleOnce(mods, step, committed));
  }

  /** bundle(): the switch applies nothing before the commit is written (`committed` is told then). */
  private async bundleOnce(mods: readonly FlowMod[], step: string, committed: () => void): Promise<void> {
    await this.ensureConnected();
    const id = this.nextBundleId++;
    const openXid = this.xid();
    await this.bundleControl(openXid, id, BUNDLE_CTRL.OPEN_REQUEST, BUNDLE_CTRL.OPEN_REPLY, step);
    const xids = mods.map(() => this.xid());
    const barrierXid = this.xid();
    await this.request(
      Buffer.concat([...mods.map((m, i) => bundleAdd(xids[i]!, id, encodeFlowMod(m, xids[i]!))), barrierRequest(barrierXid)]),
      barrierXid,
      [MSG.BARRIER_REPLY],
      step,
    );
    try {
      this.throwFirstError(xids, step);
    } catch (e) {
      await this.bundleControl(this.xid(), id, BUNDLE_CTRL.DISCARD_REQUEST, BUNDLE_CTRL.DISCARD_REPLY, step).catch(() => undefined);
      throw e;
    }
    // A commit that fails (a flow-mod refused when applied) is an ERROR on the commit's xid; the bundle is discarded.
    await this.bundleControl(this.xid(), id, BUNDLE_CTRL.COMMIT_REQUEST, BUNDLE_CTRL.COMMIT_REPLY, step, committed);
  }

  /** The flows matching the request (all tables, all cookies by default). */
  async dumpFlows(request: FlowStatsRequest = {}, step = 'read flows'): Promise<FlowStats[]> {
    return (await this.call(step, () => this.flowStatsBodies(request, step))).flatMap(decodeFlowStats);
  }

  /** The flows matching the request as fingerprints (rule and content, undecoded: see FlowFingerprint). */
  async flowFingerprints(request: FlowStatsRequest = {}, step = 'read flows'): Promise<FlowFingerprint[]> {
    return (await this.call(step, () => this.flowStatsBodies(request, step))).flatMap(decodeFlowFingerprints);
  }

  /**
   * How many flows match the request (and their packet and byte totals): one small reply whatever the
   * number of flows, so cheap enough to poll.
   */
  async aggregate(request: FlowStatsRequest = {}, step = 'count flows'): Promise<AggregateStats> {
    const replies = await this.call(step, async () => {
      await this.ensureConnected();
      const xid = this.xid();
      return this.request(aggregateStatsRequest(xid, request), xid, [MSG.MULTIPART_REPLY], step);
    });
    const part = replies.map(decodeMultipartReply).find((p) => p.type === MULTIPART.AGGREGATE);
    if (!part) throw new InternalError(step, `ovs-vswitchd at ${this.target} sent no aggregate stats reply`);
    return decodeAggregateStats(part.body);
  }

  /** The bodies of a flow stats request's reply parts. */
  private async flowStatsBodies(request: FlowStatsRequest, step: string): Promise<Buffer[]> {
    await this.ensureConnected();
    const xid = this.xid();
    const replies = this.request(flowStatsRequest(xid, request), xid, [MSG.MULTIPART_REPLY], step);
    return (await replies).flatMap((r) => {
      const part = decodeMultipartReply(r);
      return part.type === MULTIPART.FLOW ? [part.body] : [];
    });
  }

  /** An echo round trip (a liveness check). */
  async echo(step = 'echo'): Promise<void> {
    await this.call(step, async () => {
      await this.ensureConnected();
      const xid = this.xid();
      await this.request(message(MSG.ECHO_REQUEST, xid), xid, [MSG.ECHO_REPLY], step);
    });
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
    this.socket = undefined;
    this.failAll(new UnavailableError(`OpenFlow: the connection to ${this.target} was closed`));
  }

  // -------------------------------------------------------------------------------------------------

  /**
   * One call: a loss of the connection during `body` is reported as OpenFlowConnectionLostError for this
   * call, applied or not as `body` said (it calls `applying` right after writing what changes the switch).
   */
  private async call<T>(step: string, body: (applying: () => void) => Promise<T>): Promise<T> {
    let mayHaveApplied = false;
    try {
      return await body(() => {
        mayHaveApplied = true;
      });
    } catch (e) {
      if (e instanceof OpenFlowConnectionLostError) throw new OpenFlowConnectionLostError(this.target, mayHaveApplied, step, e.how);
      throw e;
    }
  }

  private xid(): number {
    const x = this.nextXid;
    this.nextXid = this.nextXid >= 0xfffffff0 ? 1 : this.nextXid + 1;
    return x;
  }

  /** Messages back to back and one barrier (one socket write); errors matched to their message by xid. */
  private async sendWithBarrier<T>(
    items: readonly T[],
    encode: (item: T, xid: number) => Buffer,
    step: string,
    kind: string,
    sent: () => void,
  ): Promise<void> {
    await this.ensureConnected();
    const xids = items.map(() => this.xid());
    const out = items.map((m, i) => encode(m, xids[i]!));
    const barrierXid = this.xid();
    const done = this.request(Buffer.concat([...out, barrierRequest(barrierXid)]), barrierXid, [MSG.BARRIER_REPLY], step);
    sent();
    await done;
    this.throwFirstError(xids, step, kind);
  }

  private throwFirstError(xids: readonly number[], step: string, kind = 'flow-mod'): void {
    let first: OpenFlowError | undefined;
    xids.forEach((x, i) => {
      const e = this.errors.get(x);
      this.errors.delete(x);
      if (e && !first) {
        const err = decodeError(e);
        first = new OpenFlowError(step, this.target, err.type, err.code, i, kind);
      }
    });
    if (first) throw first;
  }

  private async bundleControl(xid: number, id: number, type: number, expect: number, step: string, sent?: () => void): Promise<void> {
    const reply = this.request(bundleControl(xid, id, type), xid, [MSG.BUNDLE_CONTROL], step);
    sent?.();
    const [r] = await reply;
    const ctrl = decodeBundleControl(r!);
    if (ctrl.type !== expect) throw new InternalError(step, `bundle ${id}: expected control reply ${expect}, got ${ctrl.type}`);
  }

  private async ensureConnected(): Promise<void> {
    if (this.closed) throw new UnavailableError(`OpenFlow: the connection to ${this.target} is closed`);
    if (this.socket) return;
    this.connecting ??= this.dial().finally(() => {
      this.connecting = undefined;
    });
    await this.connecting;
  }

  private async dial(): Promise<void> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(connectOptionsOf(this.target, 'target'));
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e) => {
        s.destroy();
        reject(
          new UnavailableError(
            `cannot reach ovs-vswitchd at ${this.target} (${(e as NodeJS.ErrnoException).code ?? e.message}): is ovs-vswitchd running and does the bridge exist?`,
            { cause: e },
          ),
        );
      });
    });
    this.socket = socket;
    this.buffered = Buffer.alloc(0);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk) => this.received(socket, chunk));
    let failure: Error | undefined;
    socket.on('error', (e) => void (failure = e));
    socket.on('close', () => this.lost(socket, failure));
    try {
      const helloXid = this.xid();
      const peerHello = this.request(hello(helloXid), helloXid, [MSG.HELLO], 'OpenFlow hello', true);
      const [h] = await peerHello;
      if (!helloVersions(h!).includes(OFP_VERSION))
        throw new UnavailableError(`ovs-vswitchd at ${this.target} does not offer OpenFlow 1.4 (versions ${helloVersions(h!).join(', ')})`);
      const fx = this.xid();
      const features = this.request(message(MSG.FEATURES_REQUEST, fx), fx, [MSG.FEATURES_REPLY], 'OpenFlow features');
      this.switchFeatures = decodeFeaturesReply((await features)[0]!);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    if (this.everConnected) this.emit('reconnected');
    this.everConnected = true;
  }

  /**
   * Waits for the reply to `xid` (or for the switch's HELLO, whatever its xid, with `anyXid`). Multipart
   * replies are collected until the last part.
   */
  private await(xid: number, types: readonly number[], step: string, anyXid = false): Promise<Buffer[]> {
    const key = anyXid ? -1 : xid;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        reject(new UnavailableError(`${step}: no reply from ovs-vswitchd at ${this.target} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.waiters.set(key, {
        types,
        parts: [],
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e instanceof OpenFlowError ? new OpenFlowError(step, this.target, e.errorType, e.errorCode, undefined) : e);
        },
      });
    });
  }

  /**
   * Writes `msg` and waits for its reply (see await). Closed, or lost already (between two awaits of a
   * call): nothing is written, nothing awaited.
   */
  private request(msg: Buffer, xid: number, types: readonly number[], step: string, anyXid = false): Promise<Buffer[]> {
    if (this.closed) throw new UnavailableError(`OpenFlow: the connection to ${this.target} is closed`);
    if (!this.socket) throw new OpenFlowConnectionLostError(this.target, false);
    const reply = this.await(xid, types, step, anyXid);
    this.socket.write(msg);
    return reply;
  }

  private received(socket: Socket, chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= OFP_HEADER_LEN) {
      const len = this.buffered.readUInt16BE(2);
      if (len < OFP_HEADER_LEN) {
        socket.destroy(new Error(`OpenFlow message with length ${len}`));
        return;
      }
      if (this.buffered.length < len) return;
      const msg = Buffer.from(this.buffered.subarray(0, len));
      this.buffered = this.buffered.subarray(len);
      this.dispatch(msg);
    }
  }

  private dispatch(msg: Buffer): void {
    const h = decodeHeader(msg);
    if (h.type === MSG.ECHO_REQUEST) {
      const reply = Buffer.from(msg);
      reply.writeUInt8(MSG.ECHO_REPLY, 1);
      this.socket?.write(reply);
      return;
    }
    const w = this.waiters.get(h.type === MSG.HELLO ? -1 : h.xid);
    if (h.type === MSG.ERROR) {
      // HELLO_FAILED answers the hello, whose waiter is not keyed by xid.
      const key = w ? h.xid : msg.readUInt16BE(8) === 0 && this.waiters.has(-1) ? -1 : undefined;
      const target = key === undefined ? undefined : this.waiters.get(key);
      if (target && key !== undefined) {
        this.waiters.delete(key);
        const e = decodeError(msg);
        target.reject(new OpenFlowError('OpenFlow', this.target, e.type, e.code, undefined));
      } else this.errors.set(h.xid, msg);
      return;
    }
    if (!w || !w.types.includes(h.type)) return;
    if (h.type === MSG.MULTIPART_REPLY) {
      w.parts.push(msg);
      if (decodeMultipartReply(msg).more) return;
    } else w.parts.push(msg);
    this.waiters.delete(h.type === MSG.HELLO ? -1 : h.xid);
    w.resolve(w.parts);
  }

  private lost(socket: Socket, failure: Error | undefined): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.errors.clear();
    const how = failure === undefined ? 'closed by ovs-vswitchd' : ((failure as NodeJS.ErrnoException).code ?? failure.message);
    this.failAll(new OpenFlowConnectionLostError(this.target, false, undefined, how));
    if (!this.closed) this.emit('disconnected');
  }

  private failAll(e: Error): void {
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of waiters) w.reject(e);
  }
}
