/**
 * The HTTP(S) endpoint Prometheus scrapes: GET /metrics answers the registry's text exposition; anything
 * else is 404 (405 for another method on /metrics). With TLS, the certificate is the one of
 * `metrics.tls`; with its `ca`, a scraper without a client certificate signed by it is refused in the
 * handshake.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Registry } from 'prom-client';
import { observeCommands } from '@nodenet/sys';
import type { DaemonLogger } from './logger.js';
import type { MetricsConfig } from './metrics-config.js';
import { DaemonMetrics } from './metrics.js';

export const METRICS_PATH = '/metrics';

export interface MetricsTlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

export interface MetricsEndpoint {
  /** `http://HOST:PORT/metrics` or `https://...`. */
  readonly url: string;
  close(): Promise<void>;
}

/** Listens on `listen`; rejects (with the socket's error, e.g. EADDRINUSE) when it cannot. */
export async function startMetricsEndpoint(options: {
  readonly listen: NonNullable<MetricsConfig['listen']>;
  readonly tls?: MetricsTlsMaterial;
  readonly registry: Registry;
  readonly logger: DaemonLogger;
}): Promise<MetricsEndpoint> {
  const { listen, tls, registry, logger } = options;
  const handler = (req: IncomingMessage, res: ServerResponse) => void answer(req, res, registry, logger);
  const server: Server = tls
    ? createHttpsServer(
        { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}) },
        handler,
      )
    : createHttpServer(handler);
  // A scrape is one short request; idle keep-alive connections must not hold the daemon's stop.
  server.keepAliveTimeout = 5_000;
  const host = listen.host.startsWith('[') ? listen.host.slice(1, -1) : listen.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: listen.port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => logger.error({ event: 'metrics-error', err: e.message }, 'metrics endpoint error'));
  server.on('tlsClientError', (e: Error) =>
    logger.debug({ event: 'metrics-tls-refused', err: e.message }, 'a metrics client failed the TLS handshake'),
  );
  return {
    url: `${tls ? 'https' : 'http'}://${listen.uri}${METRICS_PATH}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(req: IncomingMessage, res: ServerResponse, registry: Registry, logger: DaemonLogger): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== METRICS_PATH) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: metrics are at ${METRICS_PATH}\n`);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('use GET\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (e) {
    logger.error({ event: 'metrics-error', err: (e as Error).message }, 'collecting metrics failed');
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${(e as Error).message}\n`);
  }
}

/**
 * The daemon's metrics from creation to stop: the registry and its command observer exist from the start
 * (restore's commands and reconcile count), the endpoint listens once the daemon serves.
 */
export class MetricsService {
  readonly metrics: DaemonMetrics;
  private readonly unobserve: () => void;
  private endpoint: MetricsEndpoint | null = null;

  constructor(
    private readonly options: {
      readonly listen: NonNullable<MetricsConfig['listen']>;
      readonly tls?: MetricsTlsMaterial;
      readonly backend: string;
      readonly logger: DaemonLogger;
    },
  ) {
    this.metrics = new DaemonMetrics({ backend: options.backend });
    this.unobserve = observeCommands((event) => this.metrics.commandDone(event));
  }

  /**
   * Listens (rejects when the address cannot be bound). Until `metrics.attach()` the state gauges read 0:
   * the endpoint is up before the daemon restores the node, so a port clash stops it before any change.
   */
  async listen(): Promise<string> {
    const { listen, tls, logger } = this.options;
    this.endpoint = await startMetricsEndpoint({ listen, ...(tls ? { tls } : {}), registry: this.metrics.registry, logger });
    logger.info({ event: 'metrics-listening', url: this.endpoint.url }, `metrics at ${this.endpoint.url}`);
    return this.endpoint.url;
  }

  async close(): Promise<void> {
    this.unobserve();
    await this.endpoint?.close();
    this.endpoint = null;
  }
}
