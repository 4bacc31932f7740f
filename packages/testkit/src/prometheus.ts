/**
 * A real Prometheus server (Debian's `prometheus`) inside a test namespace: its own config and TSDB in a
 * temp dir, scraping the given targets every second, its HTTP API reached from the test process through
 * a unix-socket proxy. The scope's cleanup stops it (SIGTERM, then SIGKILL) whatever the test's outcome.
 */
import { request } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { assertNamespaceName } from './exec.js';
import { proxyToNamespaceTcp } from './proxy.js';
import type { TestScope } from './scope.js';

export interface PrometheusOptions {
  readonly scope: TestScope;
  readonly ns: string;
  /** `HOST:PORT` of each target to scrape (job `nodenet`, path /metrics). */
  readonly targets: readonly string[];
  /** Where its web API listens inside `ns`. Default 127.0.0.1:9090. */
  readonly listen?: { readonly host: string; readonly port: number };
  readonly scrapeIntervalSeconds?: number;
  /** Extra YAML lines under the scrape job (e.g. `scheme: https` and a tls_config), indented by the caller. */
  readonly jobExtra?: string;
  /** How long to wait for /-/ready. Default 30 s. */
  readonly readyTimeoutMs?: number;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

export class PrometheusServer {
  private constructor(
    private readonly socketPath: string,
    private readonly output: { text: string },
    readonly exited: Promise<unknown>,
  ) {}

  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    const { scope, ns } = options;
    assertNamespaceName(ns);
    const listen = options.listen ?? { host: '127.0.0.1', port: 9090 };
    const dir = await scope.createTempDir();
    const interval = `${options.scrapeIntervalSeconds ?? 1}s`;
    const config = [
      'global:',
      `  scrape_interval: ${interval}`,
      `  evaluation_interval: ${interval}`,
      'scrape_configs:',
      '  - job_name: nodenet',
      `    scrape_timeout: ${interval}`,
      `    static_configs: [{ targets: [${options.targets.map((t) => JSON.stringify(t)).join(', ')}] }]`,
      ...(options.jobExtra ? [options.jobExtra] : []),
      '',
    ].join('\n');
    const configFile = join(dir, 'prometheus.yml');
    await writeFile(configFile, config);
    const child = execa(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'prometheus',
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=${listen.host}:${listen.port}`,
        '--log.level=warn',
      ],
      { reject: false, buffer: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', cleanup: true },
    );
    scope.trackPid(child.pid);
    const output = { text: '' };
    const keep = (chunk: Buffer) => (output.text = (output.text + chunk.toString('utf8')).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = child.then(() => scope.untrackPid(child.pid));
    scope.defer(`prometheus in ${ns}`, async () => {
      child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const proxy = await proxyToNamespaceTcp(scope, ns, listen.host, listen.port);
    const server = new PrometheusServer(proxy.socketPath, output, exited);
    let gone = false;
    void exited.then(() => (gone = true));
    // It replays its (empty) write-ahead log and opens the TSDB before it is ready: poll /-/ready.
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (gone) throw new Error(`prometheus exited before it was ready: ${output.text}`);
      const ready = await server.get('/-/ready').catch(() => null);
      if (ready?.status === 200) return server;
      if (Date.now() > deadline) throw new Error(`prometheus was not ready within ${options.readyTimeoutMs ?? 30_000} ms: ${output.text}`);
      await sleep(200);
    }
  }

  /** The server's own log (last 4 kB), for failure messages. */
  get log(): string {
    return this.output.text;
  }

  /** An instant query through the HTTP API (`/api/v1/query`); throws unless it succeeds. */
  async query(promql: string): Promise<PromSample[]> {
    const r = await this.get(`/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = JSON.parse(r.body) as {
      status: string;
      error?: string;
      data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (r.status !== 200 || body.status !== 'success') throw new Error(`query ${promql}: HTTP ${r.status} ${body.error ?? r.body}`);
    return body.data!.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  }

  /** The single value of a query, or undefined when it returns no series. */
  async value(promql: string): Promise<number | undefined> {
    const samples = await this.query(promql);
    if (samples.length > 1) throw new Error(`query ${promql} returned ${samples.length} series, expected at most one`);
    return samples[0]?.value;
  }

  /** Polls `promql` until `accept` says yes; returns the accepted value. */
  async waitFor(promql: string, accept: (value: number | undefined) => boolean, timeoutMs = 30_000): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    let last: number | undefined;
    for (;;) {
      last = await this.value(promql);
      if (accept(last)) return last;
      if (Date.now() > deadline)
        throw new Error(`query ${promql}: still ${String(last)} after ${timeoutMs} ms; prometheus log: ${this.log || '(empty)'}`);
      await sleep(250);
    }
  }

  private get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, path, method: 'GET', headers: { host: 'prometheus' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error(`GET ${path}: no answer within 5 s`)));
      req.end();
    });
  }
}

/** GET `path` from `host:port` inside `ns` (through a proxy of the scope): status, headers and body. */
export async function httpGetInNamespace(
  scope: TestScope,
  ns: string,
  host: string,
  port: number,
  path: string,
): Promise<{ status: number; contentType: string; body: string }> {
  const proxy = await proxyToNamespaceTcp(scope, ns, host, port);
  try {
    return await new Promise((resolve, reject) => {
      const req = request({ socketPath: proxy.socketPath, path, method: 'GET', headers: { host: `${host}:${port}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path}: no answer within 10 s`)));
      req.end();
    });
  } finally {
    await proxy.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
