/**
 * A cluster for the conformance suite (and the demo): a topology with N nodes on one underlay plus the
 * world, the real daemon in every node namespace configured for the chosen backend, overlay (vxlan,
 * host-gw) and membership (static peers from the config, or a private etcd on its own underlay host),
 * node i's CNI at 198.19.<i>.1 in 198.19.<i>.0/24, instances made through the netns extension, and the
 * probes cluster tests need: who reaches whom (ping and TCP with the source address the server saw), the
 * overlay routes a node holds (`proto 78`), and continuous ping and TCP streams to watch a disturbance.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  createNetworkAdminClient,
  type CreateInterfaceResponse,
  type NetworkAdminApiClient,
  type NetworkApiClient,
  type Peer,
} from '@nodenet/api';
import {
  Daemon,
  EchoServer,
  EtcdServer,
  TestScope,
  Topology,
  echo,
  ipJson,
  ping,
  randomPayload,
  startEchoServer,
  type DaemonConfig,
  type NodeHost,
  type RouteInfo,
  type WorldHost,
} from '@nodenet/testkit';
import { backendProfile } from './backends.js';
import { VXLAN_OVERHEAD } from './fixture.js';

export type OverlayMode = 'vxlan' | 'host-gw';
export type MembershipType = 'static' | 'etcd';

/** The routing protocol number nodenet tags its overlay routes with (`ip route show proto 78`). */
export const OVERLAY_ROUTE_PROTOCOL = 78;
export const CLUSTER_PREFIX_LENGTH = 24;
export const ETCD_PREFIX = '/nodenet';

/** Node i's instance subnet and gateway. */
export function nodeSubnet(index: number): string {
  return `198.19.${index}.0/${CLUSTER_PREFIX_LENGTH}`;
}
export function nodeGateway(index: number): string {
  return `198.19.${index}.1`;
}

export interface ClusterFixtureOptions {
  readonly backend: string;
  /** Nodes with a running daemon and a CNI at start. Default 3. */
  readonly nodes?: number;
  /** Default vxlan. */
  readonly overlay?: OverlayMode;
  /** Default static (every node lists the others as peers). */
  readonly membership?: MembershipType;
  /** etcd: the nodes' lease TTL. Default 3 s. */
  readonly leaseTtlSeconds?: number;
  /** Default 2 s. */
  readonly reconcileIntervalSeconds?: number;
  /** Default 1500. */
  readonly underlayMtu?: number;
  /** Extra daemon config for every node (shallow merge, last). */
  readonly config?: DaemonConfig;
}

/** An instance of one node, made through the netns extension (the daemon moved and configured it). */
export interface ClusterInstance {
  readonly node: ClusterNode;
  readonly handle: string;
  readonly address: string;
  /** The instance's namespace; its interface inside is `eth0`. */
  readonly ns: string;
  readonly response: CreateInterfaceResponse;
}

export interface AddNodeOptions {
  /** Start its daemon. Default true. */
  readonly start?: boolean;
  /** Create its CNI (needs start). Default true. */
  readonly cni?: boolean;
  /** static: the peers in its config. Default: every node already in the cluster. */
  readonly staticPeers?: readonly ClusterNode[];
}

export class ClusterNode {
  private addressCounter = 10;
  private portCounter = 30000;
  private currentDaemon: Daemon | undefined;
  private adminClient: NetworkAdminApiClient | undefined;

  constructor(
    readonly cluster: ClusterFixture,
    readonly host: NodeHost,
  ) {}

  get index(): number {
    return this.host.index;
  }
  /** `node-<index>`, the daemon's nodeName. */
  get name(): string {
    return this.host.name;
  }
  get ns(): string {
    return this.host.ns;
  }
  /** The node's underlay address (198.18.0.<index>). */
  get address(): string {
    return this.host.address;
  }
  get subnet(): string {
    return nodeSubnet(this.index);
  }
  get gateway(): string {
    return nodeGateway(this.index);
  }

  /** The node as a static peer (AddPeer, config). */
  get peer(): Peer {
    return { name: this.name, underlayAddress: this.address, subnet: this.subnet };
  }

  get daemon(): Daemon {
    if (!this.currentDaemon) throw new Error(`${this.name} has no daemon yet: call startDaemon()`);
    return this.currentDaemon;
  }

  get hasDaemon(): boolean {
    return this.currentDaemon !== undefined;
  }

  get running(): boolean {
    return this.currentDaemon !== undefined && this.currentDaemon.exit === undefined;
  }

  get api(): NetworkApiClient {
    return this.daemon.network();
  }

  /** The NetworkAdmin client of the running daemon (a new one after each restart). */
  get admin(): NetworkAdminApiClient {
    this.adminClient ??= createNetworkAdminClient(this.daemon.target);
    return this.adminClient;
  }

  /** Starts the daemon the first time (with `config`), or again with the config it had. Waits for SERVING. */
  async startDaemon(config?: DaemonConfig): Promise<Daemon> {
    if (this.running) throw new Error(`${this.name}: the daemon is already running`);
    this.closeAdmin();
    if (this.currentDaemon) {
      this.currentDaemon = await this.currentDaemon.restart();
    } else {
      const f = this.cluster;
      const backendConfig = await backendProfile(f.backend).prepareNode(f.scope, this.host);
      this.currentDaemon = await Daemon.start({
        scope: f.scope,
        node: this.host,
        backend: f.backend,
        config: { ...backendConfig, ...config },
      });
    }
    return this.currentDaemon;
  }

  /** SIGTERM, expecting exit 0. */
  async stopDaemon(): Promise<void> {
    this.closeAdmin();
    const exit = await this.daemon.stop();
    if (exit.exitCode !== 0)
      throw new Error(`${this.name}: the daemon exited with ${JSON.stringify(exit)} on SIGTERM, not 0: ${this.daemon.diagnostics()}`);
  }

  /** SIGKILL: the daemon dies without a word (its etcd lease is left to expire). */
  async killDaemon(): Promise<void> {
    this.closeAdmin();
    await this.daemon.kill();
  }

  /** SIGTERM, then start again with the same config and state dir. Returns how long it was down (ms). */
  async restartDaemon(): Promise<number> {
    const started = performance.now();
    await this.stopDaemon();
    await this.startDaemon();
    return performance.now() - started;
  }

  async createCni(): Promise<string> {
    return (await this.api.createContainerNetworkInterface({ ipAddress: this.gateway, subNetwork: this.subnet })).interfaceName;
  }

  /** A fresh instance address: 198.19.<i>.11, .12, ... */
  nextAddress(): string {
    this.addressCounter += 1;
    if (this.addressCounter > 254) throw new Error(`${this.name}: the fixture ran out of instance addresses`);
    return `198.19.${this.index}.${this.addressCounter}`;
  }

  /** A fresh port number for servers and published ports. */
  nextPort(): number {
    this.portCounter += 1;
    return this.portCounter;
  }

  /** Creates an instance through the netns extension (the daemon moves it into a fresh namespace and configures it). */
  async addInstance(options: { address?: string; ports?: number[] } = {}): Promise<ClusterInstance> {
    const address = options.address ?? this.nextAddress();
    const ns = await this.cluster.topology.createInstanceNamespace();
    let response: CreateInterfaceResponse;
    try {
      response = await this.api.createInterface({ ipAddress: address, ports: options.ports ?? [], netns: ns });
    } catch (e) {
      const incidents = this.cluster.incidents().filter((i) => i.startsWith(`${this.name} `));
      // Keeps the gRPC status (code, details) so callers can still tell failures apart.
      const { code, details } = e as { code?: unknown; details?: unknown };
      throw Object.assign(
        new Error(
          `${this.name}: CreateInterface ${address} failed: ${(e as Error).message}; daemon incidents: ${JSON.stringify(incidents)}`,
          { cause: e },
        ),
        { code, details },
      );
    }
    return { node: this, handle: response.interfaceName, address, ns, response };
  }

  /** The overlay routes the node holds (`ip -j route show proto 78`). */
  overlayRoutes(): Promise<RouteInfo[]> {
    return ipJson<RouteInfo[]>(this.ns, ['route', 'show', 'proto', String(OVERLAY_ROUTE_PROTOCOL)]);
  }

  /** The subnets the node has overlay routes to, sorted. */
  async routedSubnets(): Promise<string[]> {
    return (await this.overlayRoutes()).map((r) => r.dst).sort();
  }

  closeAdmin(): void {
    this.adminClient?.close();
    this.adminClient = undefined;
  }
}

export class ClusterFixture {
  readonly nodes: ClusterNode[] = [];

  private constructor(
    readonly scope: TestScope,
    readonly topology: Topology,
    readonly backend: string,
    readonly overlay: OverlayMode,
    readonly membership: MembershipType,
    readonly leaseTtlSeconds: number,
    readonly reconcileIntervalSeconds: number,
    readonly etcd: EtcdServer | undefined,
    private readonly extraConfig: DaemonConfig,
  ) {}

  /** Builds the topology (and etcd), starts every node's daemon and creates every CNI. */
  static async start(options: ClusterFixtureOptions): Promise<ClusterFixture> {
    const scope = await TestScope.create();
    try {
      const count = options.nodes ?? 3;
      const topology = await Topology.create(scope, { nodes: 0, underlayMtu: options.underlayMtu ?? 1500 });
      const membership = options.membership ?? 'static';
      const etcd = membership === 'etcd' ? await EtcdServer.startOnFabric(scope, topology) : undefined;
      const f = new ClusterFixture(
        scope,
        topology,
        options.backend,
        options.overlay ?? 'vxlan',
        membership,
        options.leaseTtlSeconds ?? 3,
        options.reconcileIntervalSeconds ?? 2,
        etcd,
        options.config ?? {},
      );
      const hosts = await Promise.all(Array.from({ length: count }, () => topology.addNode()));
      const nodes = hosts.map((h) => new ClusterNode(f, h));
      f.nodes.push(...nodes);
      // Every node knows every other one from the start (static); etcd finds them itself.
      await Promise.all(nodes.map((n) => n.startDaemon(f.daemonConfig(nodes.filter((o) => o !== n)))));
      await Promise.all(nodes.map((n) => n.createCni()));
      return f;
    } catch (e) {
      await scope.cleanup().catch(() => undefined);
      throw e;
    }
  }

  get world(): WorldHost {
    return this.topology.world;
  }

  /** The instance MTU the contract promises: underlay MTU - 50 with vxlan, the underlay MTU with host-gw. */
  get instanceMtu(): number {
    return this.topology.options.underlayMtu - (this.overlay === 'vxlan' ? VXLAN_OVERHEAD : 0);
  }

  node(index: number): ClusterNode {
    const n = this.nodes.find((x) => x.index === index);
    if (!n) throw new Error(`no node ${index} in this cluster (it has ${this.nodes.map((x) => x.index).join(', ')})`);
    return n;
  }

  /** The daemon config of a node: backend extras, overlay, membership (static: `staticPeers`), reconcile interval. */
  daemonConfig(staticPeers: readonly ClusterNode[]): DaemonConfig {
    const membership =
      this.membership === 'etcd'
        ? { type: 'etcd', etcd: { endpoints: [this.etcd!.url], prefix: ETCD_PREFIX, leaseTtlSeconds: this.leaseTtlSeconds } }
        : { type: 'static', peers: staticPeers.map((p) => p.peer) };
    return {
      overlay: { mode: this.overlay },
      membership,
      reconcileIntervalSeconds: this.reconcileIntervalSeconds,
      ...this.extraConfig,
    };
  }

  /** Adds a node to the underlay at run time and (by default) starts its daemon and creates its CNI. */
  async addNode(options: AddNodeOptions = {}): Promise<ClusterNode> {
    const node = new ClusterNode(this, await this.topology.addNode());
    const peers = options.staticPeers ?? [...this.nodes];
    this.nodes.push(node);
    if (options.start ?? true) {
      await node.startDaemon(this.daemonConfig(peers));
      if (options.cni ?? true) await node.createCni();
    }
    return node;
  }

  /** The node records etcd holds now (etcd membership only): name -> raw record. */
  async etcdNodeRecords(): Promise<Map<string, string>> {
    if (!this.etcd) throw new Error('this cluster has no etcd');
    const prefix = `${ETCD_PREFIX}/nodes/`;
    return new Map((await this.etcd.list(prefix)).map((kv) => [kv.key.slice(prefix.length), kv.value]));
  }

  /**
   * What the daemons logged as repairs, warnings or errors (`node-i: message`), for failure messages: a
   * reconcile pass that removed or recreated something explains most connectivity surprises.
   */
  incidents(): string[] {
    return this.nodes.flatMap((n) => {
      if (!n.hasDaemon) return [];
      return n.daemon.logs
        .filter((l) => l.event === 'repair' || l.level === 'warn' || l.level === 'error' || l.level === 40 || l.level === 50)
        .map(
          (l) =>
            `${n.name} ${typeof l.time === 'number' || typeof l.time === 'string' ? l.time : ''}: ${typeof l.msg === 'string' ? l.msg : JSON.stringify(l)}`,
        );
    });
  }

  async close(): Promise<void> {
    for (const n of this.nodes) n.closeAdmin();
    await this.scope.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------------
// Who reaches whom

export interface PairResult {
  readonly from: ClusterInstance;
  readonly to: ClusterInstance;
  readonly ping: {
    readonly ok: boolean;
    readonly received: number;
    readonly transmitted: number;
    readonly avgRttMs?: number;
    readonly output: string;
  };
  readonly tcp: { readonly ok: boolean; readonly seenSource?: string; readonly error?: string };
}

/** Parses ping's `rtt min/avg/max/mdev = a/b/c/d ms` line: the average in ms. */
export function parsePingAverage(output: string): number | undefined {
  const m = /= [\d.]+\/([\d.]+)\/[\d.]+\/[\d.]+ ms/.exec(output);
  return m ? Number(m[1]) : undefined;
}

/** Every ordered pair of instances on different nodes. */
export function crossNodePairs(instances: readonly ClusterInstance[]): Array<[ClusterInstance, ClusterInstance]> {
  const pairs: Array<[ClusterInstance, ClusterInstance]> = [];
  for (const a of instances) for (const b of instances) if (a.node !== b.node) pairs.push([a, b]);
  return pairs;
}

/** Runs `work` over `items` with at most `limit` at a time (the machine has 2 cores; every probe is a process). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Pings and talks TCP for every pair (ordered) given; a TCP echo server on `port` runs in every destination
 * (started here, once per instance and port) and records the source address each connection came from.
 */
export async function probePairs(
  scope: TestScope,
  pairs: ReadonlyArray<readonly [ClusterInstance, ClusterInstance]>,
  options: { port?: number; pingCount?: number; concurrency?: number } = {},
): Promise<PairResult[]> {
  const port = options.port ?? 7007;
  let servers = echoServersByScope.get(scope);
  if (!servers) {
    servers = new Map();
    echoServersByScope.set(scope, servers);
  }
  const known = servers;
  const serverOf = (inst: ClusterInstance): Promise<EchoServer> => {
    const key = `${inst.ns}:${port}`;
    let s = known.get(key);
    if (!s) {
      s = startEchoServer(scope, inst.ns, { protocol: 'tcp', port });
      known.set(key, s);
    }
    return s;
  };
  await Promise.all(pairs.map(([, to]) => serverOf(to)));
  return mapLimit(pairs, options.concurrency ?? 4, async ([from, to]) => {
    const p = await ping(from.ns, to.address, { count: options.pingCount ?? 3, intervalSec: 0.2, timeoutSec: 1 });
    const server = await serverOf(to);
    const payload = randomPayload(`${from.address}-to-${to.address}`);
    const t = await echo(from.ns, { protocol: 'tcp', host: to.address, port, payload, timeoutMs: 3000 });
    const seen = server.receivedPayload(payload)[0];
    const avg = parsePingAverage(p.output);
    return {
      from,
      to,
      ping: {
        ok: p.ok,
        received: p.received,
        transmitted: p.transmitted,
        ...(avg !== undefined ? { avgRttMs: avg } : {}),
        output: p.output,
      },
      tcp: { ok: t.ok, ...(seen ? { seenSource: seen.peerAddress } : {}), ...(t.error ? { error: t.error } : {}) },
    };
  });
}
/** Echo servers probePairs started, per scope, by `ns:port` (reused by later probes of the same instances). */
const echoServersByScope = new WeakMap<TestScope, Map<string, Promise<EchoServer>>>();

/** Whether `from` reaches `to` now (one quick ping). */
export async function reaches(from: ClusterInstance, to: ClusterInstance | string, timeoutSec = 1): Promise<boolean> {
  return (await ping(from.ns, typeof to === 'string' ? to : to.address, { count: 1, timeoutSec })).ok;
}

// ---------------------------------------------------------------------------------------------------
// Waiting and measuring

/** Polls `probe` until it returns true; resolves with the time it took (ms), or throws after `timeoutMs`. */
export async function waitUntil(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<number> {
  const started = performance.now();
  const deadline = started + timeoutMs;
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** A process in a namespace (argument array, no shell) tracked by the scope and killed at cleanup. */
export interface Background {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

export function startInNamespace(scope: TestScope, ns: string, what: string, argv: readonly string[]): Background {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  scope.trackPid(child.pid);
  const exited = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
  void exited.then(() => scope.untrackPid(child.pid));
  scope.defer(what, async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { child, exited };
}

// ---------------------------------------------------------------------------------------------------
// Continuous probes (to see what a disturbance costs)

/** `ping -i INTERVAL DEST` running in `ns` until stop(): counts what was lost meanwhile. */
export class ContinuousPing {
  private output = '';
  private constructor(
    readonly ns: string,
    readonly destination: string,
    private readonly proc: Background,
  ) {
    const child = proc.child;
    child.stdout!.on('data', (c: Buffer) => (this.output += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (this.output += c.toString('utf8')));
  }

  static start(scope: TestScope, ns: string, destination: string, intervalSec = 0.1): ContinuousPing {
    const proc = startInNamespace(scope, ns, `ping ${destination} in ${ns}`, [
      'ping',
      '-n',
      '-i',
      String(intervalSec),
      '-W',
      '1',
      destination,
    ]);
    return new ContinuousPing(ns, destination, proc);
  }

  /** SIGINT (ping prints its summary) and the counts; `lost` = transmitted - received. */
  async stop(): Promise<{ transmitted: number; received: number; lost: number; output: string }> {
    this.proc.child.kill('SIGINT');
    await this.proc.exited;
    const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(this.output);
    const transmitted = m ? Number(m[1]) : 0;
    const received = m ? Number(m[2]) : 0;
    return { transmitted, received, lost: transmitted - received, output: this.output.trim().split('\n').slice(-3).join(' | ') };
  }
}

/**
 * One TCP connection from `ns` to `host:port` (an echo server that streams back, e.g. socat PIPE): sends a
 * line every `intervalMs` and counts the echoes; `maxGapMs` is the longest time between two echoes.
 */
const STREAM_CLIENT = `
import net from 'node:net';
const [host, portText, intervalText] = process.argv.slice(1);
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
let sent = 0, received = 0, buffered = '', lastEcho = 0, maxGapMs = 0, error = null, closed = false, timer = null;
const socket = net.connect({ host, port: Number(portText) }, () => {
  socket.setNoDelay(true);
  lastEcho = Date.now();
  emit({ event: 'connected', localAddress: socket.localAddress, localPort: socket.localPort });
  timer = setInterval(() => { sent += 1; socket.write(sent + '\\n'); }, Number(intervalText));
});
socket.setEncoding('utf8');
socket.on('data', (chunk) => {
  buffered += chunk;
  for (let i = buffered.indexOf('\\n'); i >= 0; i = buffered.indexOf('\\n')) {
    buffered = buffered.slice(i + 1);
    received += 1;
    const now = Date.now();
    maxGapMs = Math.max(maxGapMs, now - lastEcho);
    lastEcho = now;
  }
});
socket.on('error', (e) => { error = e.message; });
socket.on('close', () => { closed = true; if (timer) clearInterval(timer); });
const report = () => emit({ event: 'done', sent, received, maxGapMs, error, closed });
process.on('SIGTERM', () => {
  if (timer) clearInterval(timer);
  const until = Date.now() + 3000;
  const check = () => {
    if (received >= sent || closed || Date.now() > until) { report(); process.exit(0); }
    setTimeout(check, 20);
  };
  check();
});
`;

export interface StreamReport {
  readonly sent: number;
  readonly received: number;
  readonly maxGapMs: number;
  readonly error: string | null;
  readonly closed: boolean;
  /** The client's own address as its socket saw it. */
  readonly localAddress?: string;
}

export class TcpStream {
  private lines: Array<Record<string, unknown>> = [];
  private stderr = '';
  private exitedEarly = false;
  private constructor(private readonly proc: Background) {
    const child = proc.child;
    void proc.exited.then(() => (this.exitedEarly = true));
    let pending = '';
    child.stdout!.on('data', (c: Buffer) => {
      pending += c.toString('utf8');
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.stderr += `${line}\n`;
        }
      }
    });
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString('utf8')));
  }

  /** Connects and waits until the connection is up. */
  static async start(scope: TestScope, ns: string, host: string, port: number, intervalMs = 50): Promise<TcpStream> {
    const client = startInNamespace(scope, ns, `tcp stream ${host}:${port} from ${ns}`, [
      process.execPath,
      '--input-type=module',
      '-e',
      STREAM_CLIENT,
      host,
      String(port),
      String(intervalMs),
    ]);
    const stream = new TcpStream(client);
    await waitUntil(
      `a TCP connection from ${ns} to ${host}:${port} is up (${stream.stderr.trim()})`,
      () => stream.connected || stream.exitedEarly,
      5000,
      20,
    );
    if (!stream.connected) throw new Error(`the TCP stream from ${ns} to ${host}:${port} did not connect: ${stream.stderr.trim()}`);
    return stream;
  }

  get connected(): boolean {
    return this.lines.some((l) => l.event === 'connected');
  }

  /** Stops sending, waits for the outstanding echoes (up to 3 s) and reports. */
  async stop(): Promise<StreamReport> {
    this.proc.child.kill('SIGTERM');
    await this.proc.exited;
    const done = this.lines.find((l) => l.event === 'done');
    const connected = this.lines.find((l) => l.event === 'connected');
    if (!done) throw new Error(`the TCP stream client ended without a report: ${this.stderr.trim()}`);
    return {
      sent: Number(done.sent),
      received: Number(done.received),
      maxGapMs: Number(done.maxGapMs),
      error: (done.error as string | null) ?? null,
      closed: done.closed === true,
      ...(typeof connected?.localAddress === 'string' ? { localAddress: connected.localAddress } : {}),
    };
  }
}
