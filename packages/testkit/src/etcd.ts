/**
 * A private etcd server for tests: one member, data in a scope temp dir, running inside a namespace
 * (daemons in node namespaces cannot reach the root namespace's loopback, so etcd must sit where the
 * nodes can reach it). `startOnFabric` gives it its own host on a topology's underlay; reads of the keys go
 * through etcd's JSON gateway with curl inside that namespace (the test process stays in the root
 * namespace). Stopped by the scope's cleanup.
 */
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { assertNamespaceName, ipBatch, nsExec } from './exec.js';
import type { TestScope } from './scope.js';
import type { Topology } from './topology.js';
import { UNDERLAY_PREFIX_LENGTH } from './topology.js';

/** Where etcd gets its own host on the underlay by default (above the node and world addresses). */
export const ETCD_UNDERLAY_ADDRESS = '198.18.0.250';
export const ETCD_CLIENT_PORT = 2379;

export interface EtcdOptions {
  /** The namespace etcd runs in; it must hold `address`. */
  readonly ns: string;
  /** The address clients use (etcd listens there). */
  readonly address: string;
  /** Default 2379. */
  readonly clientPort?: number;
  /** How long start() waits for /health. Default 20 s. */
  readonly readyTimeoutMs?: number;
}

export interface EtcdKeyValue {
  readonly key: string;
  readonly value: string;
  /** The lease id ("0" when the key has none). */
  readonly lease: string;
}

const OUTPUT_TAIL = 4000;

export class EtcdServer {
  private output = '';
  private exitedFlag = false;

  private constructor(
    readonly scope: TestScope,
    readonly ns: string,
    readonly address: string,
    readonly clientPort: number,
    readonly dataDir: string,
    private child: ResultPromise,
  ) {
    this.attach(child);
  }

  private attach(child: ResultPromise): void {
    this.child = child;
    this.exitedFlag = false;
    this.scope.trackPid(child.pid);
    const keep = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    void child.then(() => {
      if (child === this.child) this.exitedFlag = true;
      this.scope.untrackPid(child.pid);
    });
  }

  /** The client URL, e.g. http://198.18.0.250:2379 (for the daemons' membership.etcd.endpoints). */
  get url(): string {
    return `http://${this.address}:${this.clientPort}`;
  }

  get exited(): boolean {
    return this.exitedFlag;
  }

  /** Starts etcd inside `options.ns` and waits until /health says true. */
  static async start(scope: TestScope, options: EtcdOptions): Promise<EtcdServer> {
    const ns = assertNamespaceName(options.ns);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(options.address)) throw new Error(`EtcdServer: '${options.address}' is not an IPv4 address`);
    const clientPort = options.clientPort ?? ETCD_CLIENT_PORT;
    const dir = await scope.createTempDir();
    const server = new EtcdServer(scope, ns, options.address, clientPort, dir, spawnEtcd(ns, options.address, clientPort, dir));
    scope.defer(`etcd in ${ns}`, () => server.stop());
    await server.waitHealthy(options.readyTimeoutMs ?? 20_000);
    return server;
  }

  /** Starts etcd again on the same data directory after stop() (its keys and leases as etcd persisted them). */
  async restart(readyTimeoutMs = 20_000): Promise<void> {
    await this.stop();
    this.attach(spawnEtcd(this.ns, this.address, this.clientPort, this.dataDir));
    await this.waitHealthy(readyTimeoutMs);
  }

  /**
   * Gives etcd its own namespace on `topology`'s underlay (a veth into the fabric bridge) at `address`
   * (default 198.18.0.250) and starts it there.
   */
  static async startOnFabric(
    scope: TestScope,
    topology: Topology,
    options: { address?: string; clientPort?: number } = {},
  ): Promise<EtcdServer> {
    const address = options.address ?? ETCD_UNDERLAY_ADDRESS;
    const lastOctet = address.split('.').pop();
    const ns = await scope.createNamespace();
    const mtu = topology.options.underlayMtu;
    const fabricPort = `e${lastOctet}`;
    await ipBatch(topology.fabric, [
      `link add ${fabricPort} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${ns}`,
      `link set ${fabricPort} master br0`,
      `link set ${fabricPort} up`,
    ]);
    await ipBatch(ns, [`addr add ${address}/${UNDERLAY_PREFIX_LENGTH} dev eth0`, 'link set eth0 up']);
    return EtcdServer.start(scope, { ns, address, ...(options.clientPort ? { clientPort: options.clientPort } : {}) });
  }

  /** Polls /health (curl inside the namespace) until it reports true. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exitedFlag) throw new Error(`etcd in ${this.ns} exited at start: ${this.diagnostics()}`);
      const r = await nsExec(this.ns, 'curl', ['-s', '--max-time', '1', `${this.url}/health`], { allowFailure: true });
      if (r.exitCode === 0 && /"health"\s*:\s*"true"/.test(r.stdout)) return;
      last = r.stdout.trim() || r.stderr.trim() || `curl exit ${r.exitCode}`;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`etcd in ${this.ns} was not healthy within ${timeoutMs} ms (last: ${last}): ${this.diagnostics()}`);
  }

  /** The keys under `prefix` with their values and leases (etcd's v3 JSON gateway). */
  async list(prefix: string): Promise<EtcdKeyValue[]> {
    const key = Buffer.from(prefix, 'utf8');
    const body = JSON.stringify({ key: key.toString('base64'), range_end: prefixRangeEnd(key).toString('base64') });
    const r = await nsExec(this.ns, 'curl', ['-s', '--max-time', '2', '-X', 'POST', `${this.url}/v3/kv/range`, '-d', body]);
    const parsed = JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value?: string; lease?: string }> };
    return (parsed.kvs ?? []).map((kv) => ({
      key: Buffer.from(kv.key, 'base64').toString('utf8'),
      value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
      lease: kv.lease ?? '0',
    }));
  }

  /** SIGTERM (SIGKILL after 5 s). */
  async stop(): Promise<void> {
    if (this.exitedFlag) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.child;
    clearTimeout(timer);
  }

  /** The tail of etcd's output, for error messages. */
  diagnostics(): string {
    return this.output.trim() || '(no output)';
  }
}

/** The end of the key range holding every key that starts with `prefix` (last byte + 1, as etcd clients do). */
function prefixRangeEnd(prefix: Buffer): Buffer {
  for (let i = prefix.length - 1; i >= 0; i -= 1) {
    if (prefix[i]! < 0xff) {
      const end = Buffer.from(prefix.subarray(0, i + 1));
      end[i] = prefix[i]! + 1;
      return end;
    }
  }
  return Buffer.from([0]); // every key
}

/** Shorthand for EtcdServer.start. */
export function startEtcd(scope: TestScope, options: EtcdOptions): Promise<EtcdServer> {
  return EtcdServer.start(scope, options);
}

/** Spawns one etcd member in `ns` keeping its data in `dir`/data (a restart reuses it). */
function spawnEtcd(ns: string, address: string, clientPort: number, dir: string): ResultPromise {
  const clientUrl = `http://${address}:${clientPort}`;
  // The peer URL stays on the namespace's loopback: a single member never talks to others.
  const peerUrl = 'http://127.0.0.1:2380';
  return execa(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'etcd',
      '--name',
      'nnt',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      clientUrl,
      '--advertise-client-urls',
      clientUrl,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      `nnt=${peerUrl}`,
      '--logger',
      'zap',
      '--log-level',
      'warn',
    ],
    { reject: false, buffer: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', cleanup: true },
  );
}
