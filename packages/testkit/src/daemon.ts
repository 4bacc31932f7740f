/**
 * Starts the real daemon (`node packages/server/dist/main.js --config FILE`) inside a node namespace:
 * writes its config into a temp dir (unix socket and stateDir there too), collects its JSON log lines
 * and stderr, waits for grpc.health.v1 SERVING, and stops (SIGTERM) or kills (SIGKILL) it. The scope's
 * cleanup stops whatever is still running.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import type { NetworkApiClient } from '@nodenet/api';
import { connectHealth, connectNetwork, connectSeed, type HealthClient, type SeedClient } from './clients.js';
import { proxyToNamespaceTcp } from './proxy.js';
import type { TestScope } from './scope.js';
import type { NodeHost } from './topology.js';

/** The repository root (this file is packages/testkit/{src,dist}/daemon.*). */
export const repoRoot: string = fileURLToPath(new URL('../../../', import.meta.url));
/** The built daemon; `NODENET_SERVER_MAIN` overrides it. */
export const serverMainPath: string = process.env.NODENET_SERVER_MAIN ?? join(repoRoot, 'packages/server/dist/main.js');

/**
 * The node flags of the `nodenetd` command (its shebang `#!/usr/bin/env -S node FLAGS`), so that tests and
 * benchmarks run the daemon with the heap settings it is installed with.
 */
export const daemonNodeFlags: readonly string[] = (() => {
  const first = readFileSync(join(repoRoot, 'packages/server/bin/nodenetd.js'), 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node((?: --[a-z0-9-]+=\S+)*)$/.exec(first);
  if (!m) throw new Error(`packages/server/bin/nodenetd.js: unexpected first line ${JSON.stringify(first)}`);
  return m[1]!.trim().split(' ').filter(Boolean);
})();

export type DaemonConfig = Record<string, unknown>;
export type LogLine = Record<string, unknown>;

export interface DaemonOptions {
  readonly scope: TestScope;
  readonly node: NodeHost;
  /** Default `iproute2`. */
  readonly backend?: string;
  /**
   * Config keys to set or override (shallow merge over the kit's defaults: nodeName, underlayAddress,
   * listen, backend, stateDir, membership (static, no peers), logLevel).
   */
  readonly config?: DaemonConfig;
  /** Extra command-line flags. */
  readonly args?: readonly string[];
  /**
   * Listen on TCP inside the node namespace (`0.0.0.0:<port>`, insecure) instead of the unix socket; the
   * kit reaches it through a unix-socket proxy, so `target` still works from the test process.
   */
  readonly tcpPort?: number;
  /** How long start() waits for SERVING. Default 30 s. */
  readonly readyTimeoutMs?: number;
  /**
   * The daemon's command line before `--config FILE` (default: node with the daemon's flags and
   * serverMainPath), e.g. a packaged `nodenetd` launcher, or one wrapped in `setpriv`.
   */
  readonly command?: readonly [string, ...string[]];
  /** Environment variables added to the daemon's. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface DaemonExit {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
}

interface Launch {
  readonly dir: string;
  readonly configPath: string;
  readonly config: DaemonConfig;
}

export class Daemon {
  /** Parsed JSON log lines from stdout, in order. */
  readonly logs: LogLine[] = [];
  /** Lines on stdout that are not JSON objects (the contract says there are none). */
  readonly nonJsonStdout: string[] = [];
  stderr = '';
  /** Resolves when the process has exited. */
  readonly exited: Promise<DaemonExit>;
  private exitInfo: DaemonExit | undefined;
  private networkClient: NetworkApiClient | undefined;
  private seedClient: SeedClient | undefined;
  private logWaiters: Array<() => void> = [];

  private constructor(
    readonly options: DaemonOptions,
    readonly launch: Launch,
    /** The gRPC target the test process uses (`unix://...`). */
    readonly target: string,
    private readonly child: ResultPromise,
  ) {
    options.scope.trackPid(child.pid);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const parsed: unknown = JSON.parse(line);
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) this.logs.push(parsed as LogLine);
        else this.nonJsonStdout.push(line);
      } catch {
        this.nonJsonStdout.push(line);
      }
      for (const wake of this.logWaiters.splice(0)) wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
    });
    this.exited = child.then((r) => {
      this.exitInfo = { exitCode: r.exitCode, signal: r.signal };
      options.scope.untrackPid(child.pid);
      for (const wake of this.logWaiters.splice(0)) wake();
      return this.exitInfo;
    });
  }

  /** Writes the config and spawns the daemon without waiting for it to be ready (e.g. to test a bad config). */
  static async spawn(options: DaemonOptions, reuse?: Launch): Promise<Daemon> {
    const { scope, node } = options;
    let launch = reuse;
    if (!launch) {
      const dir = await scope.createTempDir();
      const config: DaemonConfig = {
        nodeName: node.name,
        underlayAddress: node.address,
        listen: options.tcpPort ? `0.0.0.0:${options.tcpPort}` : `unix://${join(dir, 'nodenet.sock')}`,
        cni: { listen: `unix://${join(dir, 'cni.sock')}` },
        ...(options.tcpPort ? { insecure: true } : {}),
        backend: options.backend ?? 'iproute2',
        stateDir: join(dir, 'state'),
        membership: { type: 'static', peers: [] },
        logLevel: 'info',
        ...options.config,
      };
      const configPath = join(dir, 'config.yaml');
      // JSON is valid YAML.
      await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
      launch = { dir, configPath, config };
    }
    let target: string;
    if (options.tcpPort) {
      const proxy = await proxyToNamespaceTcp(scope, node.ns, '127.0.0.1', options.tcpPort);
      target = `unix://${proxy.socketPath}`;
    } else {
      const listen = String(launch.config.listen);
      target = listen.startsWith('unix:') ? listen : `unix://${join(launch.dir, 'nodenet.sock')}`;
    }
    const command = options.command ?? [process.execPath, ...daemonNodeFlags, serverMainPath];
    const child = execa('ip', ['netns', 'exec', node.ns, ...command, '--config', launch.configPath, ...(options.args ?? [])], {
      reject: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      cleanup: true,
      ...(options.env ? { env: options.env } : {}),
    });
    const daemon = new Daemon(options, launch, target, child);
    scope.defer(`daemon on ${node.ns}`, () => daemon.shutdown());
    return daemon;
  }

  /** Spawns the daemon and waits until it reports SERVING for "" and "network.Network". */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const daemon = await Daemon.spawn(options);
    await daemon.waitForServing(options.readyTimeoutMs ?? 30_000);
    return daemon;
  }

  get node(): NodeHost {
    return this.options.node;
  }

  get dir(): string {
    return this.launch.dir;
  }

  get stateDir(): string {
    return String(this.launch.config.stateDir);
  }

  /** The CNI plugin's socket (the conflist's `socket`), unless the test's config turned it off. */
  get cniSocket(): string {
    const cni = this.launch.config.cni as { listen?: string } | undefined;
    return String(cni?.listen ?? '').replace(/^unix:\/\//, '');
  }

  get config(): DaemonConfig {
    return this.launch.config;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Set once the process has exited. */
  get exit(): DaemonExit | undefined {
    return this.exitInfo;
  }

  /** The full API client (one per daemon, closed when the daemon stops). */
  network(): NetworkApiClient {
    this.networkClient ??= connectNetwork(this.target);
    return this.networkClient;
  }

  /** A client built from seed.proto alone. */
  seed(): SeedClient {
    this.seedClient ??= connectSeed(this.target);
    return this.seedClient;
  }

  /** A fresh health client (close it when done). */
  health(): HealthClient {
    return connectHealth(this.target);
  }

  /** Polls grpc.health.v1 Check until both "" and "network.Network" are SERVING; throws if the daemon exits first. */
  async waitForServing(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exitInfo) {
        throw new Error(`the daemon exited before it was SERVING (${describeExit(this.exitInfo)}): ${this.diagnostics()}`);
      }
      // A new channel per attempt: a channel that failed to connect backs off for a second or more.
      const health = this.health();
      try {
        const [all, network] = await Promise.all([health.check('', 1000), health.check('network.Network', 1000)]);
        if (all === 'SERVING' && network === 'SERVING') return;
        last = `health "" ${all}, "network.Network" ${network}`;
      } catch (e) {
        last = (e as Error).message;
      } finally {
        health.close();
      }
      await sleep(50);
    }
    throw new Error(`the daemon was not SERVING within ${timeoutMs} ms (last: ${last}): ${this.diagnostics()}`);
  }

  /** Waits for a log line matching `predicate` (already logged ones count). */
  async waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs.find(predicate);
      if (found) return found;
      if (this.exitInfo) throw new Error(`the daemon exited (${describeExit(this.exitInfo)}) before logging the line waited for`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching log line within ${timeoutMs} ms: ${this.diagnostics()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.logWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SIGTERM, then waits for the exit (SIGKILL after `timeoutMs`, and then it throws). */
  async stop(timeoutMs = 15_000): Promise<DaemonExit> {
    this.closeClients();
    if (this.exitInfo) return this.exitInfo;
    this.child.kill('SIGTERM');
    const exit = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
    if (exit) return exit;
    this.child.kill('SIGKILL');
    await this.exited;
    throw new Error(`the daemon did not exit within ${timeoutMs} ms of SIGTERM; it was killed: ${this.diagnostics()}`);
  }

  /** SIGKILL (a crash): nothing graceful happens. */
  async kill(): Promise<DaemonExit> {
    this.closeClients();
    if (this.exitInfo) return this.exitInfo;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** Stops this daemon (if running) and starts a new one with the same config, socket and state dir. */
  async restart(): Promise<Daemon> {
    if (!this.exitInfo) await this.stop();
    const next = await Daemon.spawn(this.options, this.launch);
    await next.waitForServing(this.options.readyTimeoutMs ?? 30_000);
    return next;
  }

  /** The files of the state dir, path (relative) -> content. */
  async readState(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const path = join(dir, e.name);
        if (e.isDirectory()) await walk(path);
        else if (e.isFile()) {
          // A file listed a moment ago may be gone: the daemon's temp files are renamed over their record.
          const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
            if (err.code === 'ENOENT') return undefined;
            throw err;
          });
          if (text !== undefined) out[relative(this.stateDir, path)] = text;
        }
      }
    };
    await walk(this.stateDir);
    return out;
  }

  /** Stderr and the last log lines, for error messages. */
  diagnostics(): string {
    const tail = this.logs.slice(-10).map((l) => JSON.stringify(l));
    return `stderr: ${this.stderr.trim().slice(-2000) || '(empty)'}; last logs: ${tail.join(' | ') || '(none)'}`;
  }

  private closeClients(): void {
    this.networkClient?.close();
    this.networkClient = undefined;
    this.seedClient?.close();
    this.seedClient = undefined;
  }

  /** Cleanup: stop gracefully if still running, kill if that hangs. */
  private async shutdown(): Promise<void> {
    this.closeClients();
    if (this.exitInfo) return;
    this.child.kill('SIGTERM');
    const exit = await Promise.race([this.exited, sleep(5000).then(() => undefined)]);
    if (!exit) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

function describeExit(exit: DaemonExit): string {
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.exitCode}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Shorthand for Daemon.start. */
export function startDaemon(options: DaemonOptions): Promise<Daemon> {
  return Daemon.start(options);
}
