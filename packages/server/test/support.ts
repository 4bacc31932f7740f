/**
 * Helpers of the daemon's integration tests: a node namespace with an underlay veth to a "world"
 * namespace (198.18.0.1/24 <-> 198.18.0.100/24, default route via the world), the real daemon process
 * started inside it, and gRPC clients (API, health, reflection). Everything made is registered in a
 * Cleanup and undone in afterEach, also when a test fails.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { credentials, loadPackageDefinition, Metadata, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

const execFileAsync = promisify(execFile);

export const SERVER_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const IP = '/usr/sbin/ip';

export async function sh(file: string, args: readonly string[], options: { input?: string; allowFailure?: boolean } = {}) {
  try {
    const child = execFileAsync(file, [...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
    if (options.input !== undefined) {
      child.child.stdin!.end(options.input);
    }
    const r = await child;
    return { stdout: r.stdout, stderr: r.stderr, exitCode: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number | string };
    if (!options.allowFailure) throw new Error(`${file} ${args.join(' ')} failed: ${err.stderr ?? String(e)}`, { cause: e });
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', exitCode: typeof err.code === 'number' ? err.code : -1 };
  }
}

/** Undo steps, last registered first; keeps going past failures. */
export class Cleanup {
  private readonly steps: (() => Promise<unknown>)[] = [];
  add(step: () => Promise<unknown>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.steps.length > 0) {
      try {
        await this.steps.pop()!();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }
}

let counter = 0;
export function uniqueName(): string {
  return `nnt-${process.pid}-${++counter}`;
}

export async function tempDir(cleanup: Cleanup): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `nnt-${process.pid}-srv-`));
  cleanup.add(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function deleteNamespace(ns: string): Promise<void> {
  // Processes still inside keep the namespace alive: end the ones there (tests start only their own).
  const pids = (await sh(IP, ['netns', 'pids', ns], { allowFailure: true })).stdout
    .split('\n')
    .map(Number)
    .filter((n) => n > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await sh(IP, ['netns', 'del', ns], { allowFailure: true });
}

export async function createNamespace(cleanup: Cleanup): Promise<string> {
  const ns = uniqueName();
  await sh(IP, ['netns', 'add', ns]);
  cleanup.add(() => deleteNamespace(ns));
  await sh(IP, ['-n', ns, 'link', 'set', 'lo', 'up']);
  return ns;
}

export interface NodeTopology {
  readonly node: string;
  readonly world: string;
  readonly underlayAddress: '198.18.0.1';
  readonly worldAddress: '198.18.0.100';
}

/** A node namespace whose underlay `ul0` (198.18.0.1/24) reaches a world namespace (198.18.0.100/24), the default route. */
export async function createNode(cleanup: Cleanup): Promise<NodeTopology> {
  const node = await createNamespace(cleanup);
  const world = await createNamespace(cleanup);
  await sh(IP, ['link', 'add', 'ul0', 'netns', node, 'type', 'veth', 'peer', 'name', 'ul0', 'netns', world]);
  await sh(IP, ['-n', node, '-batch', '-'], {
    input: 'addr add 198.18.0.1/24 dev ul0\nlink set ul0 up\nroute add default via 198.18.0.100\n',
  });
  await sh(IP, ['-n', world, '-batch', '-'], { input: 'addr add 198.18.0.100/24 dev ul0\nlink set ul0 up\n' });
  return { node, world, underlayAddress: '198.18.0.1', worldAddress: '198.18.0.100' };
}

/** What a test compares to show that a refused start changed nothing in the namespace. */
export async function namespaceSnapshot(ns: string): Promise<string> {
  const parts = await Promise.all([
    sh(IP, ['-n', ns, '-d', 'link', 'show']),
    sh(IP, ['-n', ns, '-4', 'addr', 'show']),
    sh(IP, ['-n', ns, '-4', 'route', 'show', 'table', 'all']),
    sh(IP, ['netns', 'exec', ns, 'nft', 'list', 'ruleset']),
    sh(IP, ['netns', 'exec', ns, 'sysctl', '-n', 'net.ipv4.ip_forward']),
  ]);
  // IPv4 only: IPv6 link-local addresses finish duplicate address detection by themselves meanwhile.
  return parts.map((p) => p.stdout).join('\n---\n');
}

export async function linkExists(ns: string, name: string): Promise<boolean> {
  return (await sh(IP, ['-n', ns, 'link', 'show', 'dev', name], { allowFailure: true })).exitCode === 0;
}

// -------------------------------------------------------------------------------------------------------
// The daemon process

export type LogLine = Record<string, unknown>;

export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  readonly nonJson: string[];
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching, or rejects when the process exits first / on timeout. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export function spawnDaemon(
  cleanup: Cleanup,
  ns: string,
  args: readonly string[],
  options: { env?: Record<string, string> } = {},
): DaemonProcess {
  const child = spawn(IP, ['netns', 'exec', ns, process.execPath, SERVER_MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const logs: LogLine[] = [];
  const nonJson: string[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters) w();
    }),
  );
  let exitedNow = false;
  void exited.then(() => (exitedNow = true));
  cleanup.add(async () => {
    if (!exitedNow) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) logs.push(parsed as LogLine);
      else nonJson.push(line);
    } catch {
      nonJson.push(line);
    }
    for (const w of waiters) w();
  });
  const waitForLog = (match: (l: LogLine) => boolean, timeoutMs = 30_000) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = logs.find(match);
        if (found) return done(() => resolve(found));
        if (exitedNow)
          return done(() =>
            reject(new Error(`the daemon exited before the expected log line; stderr: ${stderr}; logs: ${JSON.stringify(logs)}`)),
          );
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`timed out waiting for a log line; stderr: ${stderr}; logs: ${JSON.stringify(logs)}`))),
        timeoutMs,
      );
      const done = (f: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        f();
      };
      waiters.add(check);
      check();
    });
  return { child, logs, nonJson, stderr: () => stderr, exited, waitForLog };
}

export async function writeConfig(dir: string, config: Record<string, unknown>, name = 'nodenet.yaml'): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(config, null, 2)); // JSON is valid YAML
  return file;
}

/** Starts a daemon and waits for its `ready` log line. */
export async function startReadyDaemon(
  cleanup: Cleanup,
  ns: string,
  args: readonly string[],
  options: { env?: Record<string, string> } = {},
) {
  const started = performance.now();
  const d = spawnDaemon(cleanup, ns, args, options);
  await d.waitForLog((l) => l.event === 'ready');
  return Object.assign(d, { readyMs: performance.now() - started });
}

// -------------------------------------------------------------------------------------------------------
// Clients

const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

type WatchFn = (req: unknown) => NodeJS.ReadableStream & { cancel(): void };
type UnaryFn = (req: unknown, md: Metadata, opts: object, cb: (err: ServiceError | null, res: unknown) => void) => unknown;

export function healthClient(target: string, creds: ChannelCredentials = credentials.createInsecure()) {
  const pkg = loadPackageDefinition(loadSync(healthProtoPath, loaderOptions)) as unknown as {
    grpc: { health: { v1: { Health: new (t: string, c: ChannelCredentials) => Client & { check: UnaryFn; watch: WatchFn } } } };
  };
  const client = new pkg.grpc.health.v1.Health(target, creds);
  return {
    check: (service: string) =>
      new Promise<string>((resolve, reject) =>
        client.check({ service }, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
          err ? reject(err) : resolve((res as { status: string }).status),
        ),
      ),
    /** Opens a Watch stream; `events` collects the statuses, then 'end' or the error. */
    watch: (service: string) => {
      const events: string[] = [];
      const stream = client.watch({ service });
      stream.on('data', (m: { status: string }) => events.push(m.status));
      stream.on('error', (e: ServiceError) => events.push(`error ${e.code}`));
      stream.on('end', () => events.push('end'));
      return { events, cancel: () => stream.cancel() };
    },
    close: () => client.close(),
  };
}

const REFLECTION_PROTO = fileURLToPath(
  new URL('../../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto', import.meta.url),
);

/** Lists services through grpc.reflection.v1 (what grpcurl list does). */
export async function reflectionListServices(target: string): Promise<string[]> {
  const pkg = loadPackageDefinition(loadSync(REFLECTION_PROTO, loaderOptions)) as unknown as {
    grpc: {
      reflection: {
        v1: {
          ServerReflection: new (
            t: string,
            c: ChannelCredentials,
          ) => Client & { ServerReflectionInfo: () => NodeJS.ReadWriteStream & { end(): void; write(m: unknown): boolean } };
        };
      };
    };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(target, credentials.createInsecure());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on('data', (res: { list_services_response?: { service: { name: string }[] }; error_response?: { error_message: string } }) => {
        if (res.error_response) reject(new Error(res.error_response.error_message));
        else resolve((res.list_services_response?.service ?? []).map((s) => s.name));
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}

/** Runs test/fixtures/grpc-probe.mjs inside `ns` (e.g. the world namespace, for TCP/TLS from another host). */
export async function probeFromNamespace(
  ns: string,
  plan: Record<string, unknown>,
): Promise<{ health?: string; error?: { code: number; details: string }; calls?: unknown[] }> {
  const r = await sh(IP, ['netns', 'exec', ns, process.execPath, join(FIXTURES, 'grpc-probe.mjs'), JSON.stringify(plan)], {
    allowFailure: true,
  });
  if (r.exitCode !== 0) throw new Error(`grpc-probe failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout) as never;
}
