/**
 * A fake OpenFlow switch on a unix socket, for unit tests of what happens when the connection to
 * ovs-vswitchd drops at a chosen point of a call (the real switch cannot be made to drop it at a given
 * message). It speaks just enough OpenFlow 1.3 / 1.4 to serve a client: HELLO (offering both), FEATURES,
 * ECHO, BARRIER, BUNDLE_CONTROL (open, close, commit, discard) with BUNDLE_ADD_MESSAGE, FLOW_MOD,
 * PACKET_OUT and flow / aggregate stats (always empty), each answered in the version the client used. It
 * counts what it applied (flow-mods, in or out of a committed bundle, and packet-outs), so a test can tell
 * whether a request that lost its connection took effect, and how often.
 *
 * As a relay (FakeOpenFlowSwitch.relay) it forwards each connection to a real switch's socket instead,
 * dropping it at the chosen points all the same: `after` a message with a reply, the message reached the
 * switch and its reply is what is withheld (so the switch did act on it).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The messages the fake tells apart (OpenFlow 1.3 / 1.4 numbers; a bundle's control by its type). */
export type FakeOpenFlowStep =
  | 'hello'
  | 'features'
  | 'echo'
  | 'barrier'
  | 'flow-mod'
  | 'packet-out'
  | 'multipart'
  | 'bundle-open'
  | 'bundle-add'
  | 'bundle-commit'
  | 'bundle-discard';

/**
 * Where the connection drops: at the `nth` (1-based, counted from when the drop was asked) message of
 * `step`, either `before` the switch acts on it (it is ignored) or `after` it acted (applied, no reply).
 */
export interface FakeOpenFlowDrop {
  readonly step: FakeOpenFlowStep;
  readonly when?: 'before' | 'after';
  readonly nth?: number;
}

// OpenFlow's numbers restated, not imported: @nodenet/openvswitch tests with this fake (a dependency on it
// would be a cycle), and a fake written from the specification checks the client rather than mirrors it.
const HEADER = 8;
const T = {
  HELLO: 0,
  ERROR: 1,
  ECHO_REQUEST: 2,
  ECHO_REPLY: 3,
  FEATURES_REQUEST: 5,
  FEATURES_REPLY: 6,
  PACKET_OUT: 13,
  FLOW_MOD: 14,
  MULTIPART_REQUEST: 18,
  MULTIPART_REPLY: 19,
  BARRIER_REQUEST: 20,
  BARRIER_REPLY: 21,
  BUNDLE_CONTROL: 33,
  BUNDLE_ADD_MESSAGE: 34,
} as const;
const BUNDLE = { OPEN: 0, CLOSE: 2, COMMIT: 4, DISCARD: 6 } as const;
const MULTIPART_AGGREGATE = 2;

/** One message as the fake received it. */
export interface FakeOpenFlowMessage {
  /** Which connection (1 for the first accepted, and so on). */
  readonly connection: number;
  readonly step: FakeOpenFlowStep | 'other';
  readonly xid: number;
}

export class FakeOpenFlowSwitch {
  /** Every message received, in order. */
  readonly received: FakeOpenFlowMessage[] = [];
  /** Flow-mods applied: sent outside a bundle, or in a bundle when it was committed. */
  flowModsApplied = 0;
  bundlesCommitted = 0;
  packetOutsSent = 0;
  /** Connections accepted so far. */
  connections = 0;
  private readonly drops: { drop: FakeOpenFlowDrop; seen: number }[] = [];
  private readonly sockets = new Set<Socket>();
  /** The client sides of the connections open. */
  private readonly clients = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly dir: string,
    /** The socket's path. */
    readonly path: string,
    /** Relaying to a real switch (see relay). */
    private readonly relaying: boolean,
  ) {}

  /** Listens on `DIR/BRIDGE.mgmt` in a new temp dir (where OvsSession looks for `bridge` with runDir DIR). */
  static start(bridge = 'br0'): Promise<FakeOpenFlowSwitch> {
    return FakeOpenFlowSwitch.listen(bridge, undefined);
  }

  /**
   * Listens as start() does, relaying every connection to the switch at `upstream` (a socket path, e.g. a
   * real bridge's `RUNDIR/BRIDGE.mgmt`); the counts of what was applied stay 0 (the switch keeps them).
   */
  static relay(upstream: string, bridge = 'br0'): Promise<FakeOpenFlowSwitch> {
    return FakeOpenFlowSwitch.listen(bridge, upstream);
  }

  private static async listen(bridge: string, upstream: string | undefined): Promise<FakeOpenFlowSwitch> {
    const dir = await mkdtemp(join(tmpdir(), 'nn-fake-of-'));
    const path = join(dir, `${bridge}.mgmt`);
    const server = createServer();
    const sw = new FakeOpenFlowSwitch(server, dir, path, upstream !== undefined);
    server.on('connection', (s) => (upstream === undefined ? sw.accept(s) : sw.relayConnection(s, upstream)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return sw;
  }

  /** The run directory holding the socket. */
  get runDir(): string {
    return this.dir;
  }

  /** `unix:PATH`, an OpenFlowConnection target. */
  get target(): string {
    return `unix:${this.path}`;
  }

  /** Drops the connection at a point to come (each drop once; several may be pending). */
  dropAt(drop: FakeOpenFlowDrop): void {
    if (this.relaying && drop.when === 'after' && !HAS_REPLY.has(drop.step))
      throw new Error(`a relay drops 'after' only a message the switch answers, not ${drop.step}`);
    this.drops.push({ drop, seen: 0 });
  }

  /** Drops every open connection now (as a restart of the switch would). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** How many client connections are open. */
  connectionsOpen(): number {
    return this.clients.size;
  }

  /** The steps received on one connection, in order. */
  stepsOn(connection: number): (FakeOpenFlowStep | 'other')[] {
    return this.received.filter((m) => m.connection === connection).map((m) => m.step);
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private accept(socket: Socket): void {
    const connection = ++this.connections;
    this.sockets.add(socket);
    this.clients.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.clients.delete(socket);
    });
    socket.on('error', () => undefined);
    // Offers OpenFlow 1.3 and 1.4 (version bitmap), as ovs-vswitchd does, before the client speaks.
    const bitmap = Buffer.alloc(8);
    bitmap.writeUInt16BE(1, 0);
    bitmap.writeUInt16BE(8, 2);
    bitmap.writeUInt32BE((1 << 4) | (1 << 5), 4);
    socket.write(frame(5, T.HELLO, 0, bitmap));
    const bundles = new Map<number, number>(); // bundle id -> flow-mods added
    frames(socket, (msg) => {
      if (this.handle(socket, connection, msg, bundles)) return true;
      socket.destroy();
      return false;
    });
  }

  private relayConnection(client: Socket, upstreamPath: string): void {
    const connection = ++this.connections;
    const upstream = connect(upstreamPath);
    this.clients.add(client);
    client.on('close', () => this.clients.delete(client));
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => undefined);
    }
    /** The xid whose reply ends the connection instead of being relayed (a drop `after`). */
    let dropOnReplyTo: number | undefined;
    frames(upstream, (msg) => {
      if (dropOnReplyTo !== undefined && msg.readUInt32BE(4) === dropOnReplyTo) {
        client.destroy();
        return false;
      }
      client.write(msg);
      return true;
    });
    frames(client, (msg) => {
      const xid = msg.readUInt32BE(4);
      const step = stepOf(msg.readUInt8(1), msg);
      this.received.push({ connection, step, xid });
      const drop = step === 'other' ? undefined : this.dropFor(step);
      if (drop === 'before') {
        client.destroy();
        return false;
      }
      if (drop === 'after') dropOnReplyTo = xid;
      upstream.write(msg);
      return true;
    });
  }

  /** Acts on one message; false: the connection drops here. */
  private handle(socket: Socket, connection: number, msg: Buffer, bundles: Map<number, number>): boolean {
    const version = msg.readUInt8(0);
    const type = msg.readUInt8(1);
    const xid = msg.readUInt32BE(4);
    const step = stepOf(type, msg);
    this.received.push({ connection, step, xid });
    const drop = step === 'other' ? undefined : this.dropFor(step);
    if (drop === 'before') return false;
    const reply = (t: number, body: Buffer = Buffer.alloc(0)) => {
      if (drop === undefined) socket.write(frame(version, t, xid, body));
    };
    switch (type) {
      case T.FEATURES_REQUEST: {
        const body = Buffer.alloc(24);
        body.writeBigUInt64BE(0x6e6en, 0); // datapath id
        body.writeUInt8(254, 12); // n_tables
        reply(T.FEATURES_REPLY, body);
        break;
      }
      case T.ECHO_REQUEST:
        reply(T.ECHO_REPLY, msg.subarray(HEADER));
        break;
      case T.BARRIER_REQUEST:
        reply(T.BARRIER_REPLY);
        break;
      case T.FLOW_MOD:
        this.flowModsApplied++;
        break;
      case T.PACKET_OUT:
        this.packetOutsSent++;
        break;
      case T.MULTIPART_REQUEST: {
        const kind = msg.readUInt16BE(HEADER);
        const body = Buffer.alloc(kind === MULTIPART_AGGREGATE ? 8 + 24 : 8);
        body.writeUInt16BE(kind, 0);
        reply(T.MULTIPART_REPLY, body);
        break;
      }
      case T.BUNDLE_ADD_MESSAGE: {
        const id = msg.readUInt32BE(HEADER);
        if (bundles.has(id)) bundles.set(id, bundles.get(id)! + 1);
        break;
      }
      case T.BUNDLE_CONTROL: {
        const id = msg.readUInt32BE(HEADER);
        const control = msg.readUInt16BE(HEADER + 4);
        if (control === BUNDLE.OPEN) bundles.set(id, 0);
        if (control === BUNDLE.COMMIT) {
          this.flowModsApplied += bundles.get(id) ?? 0;
          this.bundlesCommitted++;
        }
        if (control === BUNDLE.COMMIT || control === BUNDLE.DISCARD) bundles.delete(id);
        const body = Buffer.from(msg.subarray(HEADER, HEADER + 8));
        body.writeUInt16BE(control + 1, 4); // the reply to each request is its number + 1
        reply(T.BUNDLE_CONTROL, body);
        break;
      }
      default:
        break; // HELLO, and anything else: no answer
    }
    return drop === undefined;
  }

  /** 'before' / 'after' when a pending drop is due at this message (and consumes it). */
  private dropFor(step: FakeOpenFlowStep): 'before' | 'after' | undefined {
    for (const d of this.drops) if (d.drop.step === step) d.seen++;
    const i = this.drops.findIndex((d) => d.drop.step === step && d.seen >= (d.drop.nth ?? 1));
    if (i < 0) return undefined;
    const [due] = this.drops.splice(i, 1);
    return due!.drop.when ?? 'before';
  }
}

/** The messages a switch answers (what a relay can drop `after`: once the answer comes). */
const HAS_REPLY = new Set<FakeOpenFlowStep | 'other'>([
  'features',
  'echo',
  'barrier',
  'multipart',
  'bundle-open',
  'bundle-commit',
  'bundle-discard',
]);

/** Calls `each` with every OpenFlow message `socket` receives, until it returns false. */
function frames(socket: Socket, each: (msg: Buffer) => boolean): void {
  let buffered = Buffer.alloc(0);
  let done = false;
  socket.on('data', (chunk) => {
    if (done) return;
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= HEADER && buffered.length >= buffered.readUInt16BE(2)) {
      const len = Math.max(buffered.readUInt16BE(2), HEADER);
      const msg = buffered.subarray(0, len);
      buffered = buffered.subarray(len);
      if (!each(msg)) {
        done = true;
        return;
      }
    }
  });
}

function stepOf(type: number, msg: Buffer): FakeOpenFlowStep | 'other' {
  switch (type) {
    case T.HELLO:
      return 'hello';
    case T.FEATURES_REQUEST:
      return 'features';
    case T.ECHO_REQUEST:
      return 'echo';
    case T.BARRIER_REQUEST:
      return 'barrier';
    case T.FLOW_MOD:
      return 'flow-mod';
    case T.PACKET_OUT:
      return 'packet-out';
    case T.MULTIPART_REQUEST:
      return 'multipart';
    case T.BUNDLE_ADD_MESSAGE:
      return 'bundle-add';
    case T.BUNDLE_CONTROL: {
      const control = msg.length >= HEADER + 6 ? msg.readUInt16BE(HEADER + 4) : -1;
      return control === BUNDLE.OPEN
        ? 'bundle-open'
        : control === BUNDLE.COMMIT
          ? 'bundle-commit'
          : control === BUNDLE.DISCARD
            ? 'bundle-discard'
            : 'other';
    }
    default:
      return 'other';
  }
}

function frame(version: number, type: number, xid: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(HEADER);
  header.writeUInt8(version, 0);
  header.writeUInt8(type, 1);
  header.writeUInt16BE(HEADER + body.length, 2);
  header.writeUInt32BE(xid, 4);
  return Buffer.concat([header, body]);
}
