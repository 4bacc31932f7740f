/**
 * Test helpers: a private etcd server on free loopback ports with a temp data dir, a TCP proxy that can
 * cut one client off etcd (to simulate a partition without stopping etcd), a logger that keeps lines,
 * and polling helpers. Processes are started with argument arrays (no shell).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger, NodeRecord } from '@nodenet/core';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | null | false, timeoutMs: number, everyMs = 20): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** TLS for etcd's client URL (the peer URL stays plain http on loopback). */
export interface EtcdServerTls {
  /** Server certificate and key (read by etcd at each handshake: swap the files and restart to rotate). */
  readonly cert: string;
  readonly key: string;
  /** CA of client certificates (--trusted-ca-file). */
  readonly trustedCa: string;
  /** --client-cert-auth: refuse clients without a certificate signed by trustedCa. */
  readonly clientCertAuth: boolean;
  /** Client certificate the health probe presents (needed with clientCertAuth). */
  readonly probe?: { readonly cert: string; readonly key: string };
}

/** One etcd member on 127.0.0.1; stop()/start() keep the data dir (a restart), destroy() removes it. */
export class EtcdServer {
  private proc: ChildProcess | null = null;
  private constructor(
    readonly dir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly tls: EtcdServerTls | undefined,
  ) {}

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
  }

  static async create(options: { tls?: EtcdServerTls } = {}): Promise<EtcdServer> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nnt-etcd-'));
    const server = new EtcdServer(dir, await freePort(), await freePort(), options.tls);
    try {
      await server.start();
    } catch (e) {
      await server.destroy();
      throw e;
    }
    return server;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const log = openSync(path.join(this.dir, 'etcd.log'), 'a');
    try {
      this.proc = spawn(
        'etcd',
        [
          '--name',
          'nnt',
          '--data-dir',
          path.join(this.dir, 'data'),
          '--listen-client-urls',
          this.url,
          '--advertise-client-urls',
          this.url,
          '--listen-peer-urls',
          peer,
          '--initial-advertise-peer-urls',
          peer,
          '--initial-cluster',
          `nnt=${peer}`,
          ...(this.tls
            ? [
                '--cert-file',
                this.tls.cert,
                '--key-file',
                this.tls.key,
                '--trusted-ca-file',
                this.tls.trustedCa,
                ...(this.tls.clientCertAuth ? ['--client-cert-auth'] : []),
              ]
            : []),
        ],
        { stdio: ['ignore', log, log] },
      );
    } finally {
      closeSync(log);
    }
    const proc = this.proc;
    // If the test process ends without destroy() (a crash), do not leave etcd running.
    const killOnExit = (): void => void proc.kill('SIGKILL');
    process.once('exit', killOnExit);
    proc.once('exit', () => process.off('exit', killOnExit));
    let exited = false;
    proc.once('exit', () => (exited = true));
    const until = Date.now() + 20_000;
    for (;;) {
      if (exited) throw new Error(`etcd exited at start: ${await this.logTail()}`);
      try {
        if ((await this.health()) === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > until) throw new Error(`etcd did not become healthy in 20 s: ${await this.logTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** etcd's /health answer ("true" when healthy). Over TLS the probe checks liveness, not trust: it accepts any server certificate. */
  private async health(): Promise<string | undefined> {
    if (!this.tls) {
      const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) });
      return res.ok ? ((await res.json()) as { health?: string }).health : undefined;
    }
    const probe = this.tls.probe ? { cert: await readFile(this.tls.probe.cert), key: await readFile(this.tls.probe.key) } : {};
    return new Promise((resolve, reject) => {
      const req = https.get(`${this.url}/health`, { ...probe, rejectUnauthorized: false, timeout: 1000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          try {
            resolve(res.statusCode === 200 ? (JSON.parse(body) as { health?: string }).health : undefined);
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error('health probe timed out')));
      req.on('error', reject);
    });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async logTail(): Promise<string> {
    try {
      return (await readFile(path.join(this.dir, 'etcd.log'), 'utf8')).split('\n').slice(-10).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/**
 * A TCP proxy in front of etcd for one client. cut(): drop its connections and refuse new ones (a
 * partition); restore(): let it through again. blackhole(): accept connections and never answer.
 */
export class TcpProxy {
  private readonly sockets = new Set<net.Socket>();
  private mode: 'pass' | 'cut' | 'blackhole' = 'pass';
  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {};
    const server = net.createServer((client) => {
      const proxy = holder.proxy!;
      proxy.sockets.add(client);
      client.on('close', () => proxy.sockets.delete(client));
      client.on('error', () => undefined);
      if (proxy.mode === 'blackhole') return; // hold it open, say nothing
      if (proxy.mode === 'cut') {
        client.destroy();
        return;
      }
      const upstream = net.connect(targetPort, '127.0.0.1');
      proxy.sockets.add(upstream);
      upstream.on('close', () => {
        proxy.sockets.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => undefined);
      client.on('close', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    holder.proxy = proxy;
    return proxy;
  }

  cut(): void {
    this.mode = 'cut';
    for (const s of this.sockets) s.destroy();
  }

  blackhole(): void {
    this.mode = 'blackhole';
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.mode = 'pass';
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface LogLine {
  readonly at: number;
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly fields: object;
}

/** Keeps log lines for assertions; NNT_LOG=1 also prints them. */
export class MemoryLogger implements Logger {
  readonly lines: LogLine[] = [];
  constructor(private readonly tag: string) {}
  debug(fields: object, msg = ''): void {
    this.add('debug', fields, msg);
  }
  info(fields: object, msg = ''): void {
    this.add('info', fields, msg);
  }
  warn(fields: object, msg = ''): void {
    this.add('warn', fields, msg);
  }
  error(fields: object, msg = ''): void {
    this.add('error', fields, msg);
  }
  find(level: LogLine['level'], part: string, since = 0): LogLine | undefined {
    return this.lines.find((l) => l.level === level && l.at >= since && l.msg.includes(part));
  }
  private add(level: LogLine['level'], fields: object, msg: string): void {
    this.lines.push({ at: Date.now(), level, msg, fields });
    if (process.env['NNT_LOG']) console.log(JSON.stringify({ t: new Date().toISOString(), node: this.tag, level, msg, ...fields }));
  }
}

/** Records every listener call with its time. */
export class PeerRecorder {
  readonly calls: { readonly at: number; readonly peers: readonly NodeRecord[] }[] = [];
  readonly listener = (peers: readonly NodeRecord[]): void => {
    this.calls.push({ at: Date.now(), peers });
  };
  latest(): readonly NodeRecord[] | undefined {
    return this.calls.at(-1)?.peers;
  }
  /** The latest set as `name=underlay@subnet` strings, sorted. */
  summary(): string[] {
    return (this.latest() ?? []).map((p) => `${p.name}=${p.underlayAddress}@${p.subnet}`).sort();
  }
}
