/**
 * The `metrics` config key: where the Prometheus endpoint listens, and its optional TLS.
 *
 *   metrics: { listen: 127.0.0.1:9842, tls: { cert: FILE, key: FILE, ca: FILE } }
 *
 * The default is loopback: metrics say what runs on the node (instance counts, peers), so exposing them
 * beyond the node is a choice (listen on the node's address, ideally with tls). Port 9842 lies in the range
 * Prometheus exporters use (9100-9999, all allocated since 2023, so no port there is free of a claim) away
 * from the ones common on nodes (node_exporter 9100, the Prometheus server 9090-9093). `listen: ""` turns
 * the endpoint off.
 */
import { z } from 'zod';
import { parseListen } from './config.js';

export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9842';

export interface MetricsConfig {
  /** Null: no metrics endpoint. */
  readonly listen: { readonly host: string; readonly port: number; readonly uri: string } | null;
  /** PEM files (absolute paths once resolved); with ca, scrapers must present a client certificate signed by it. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca?: string };
}

const file = (what: string) =>
  z
    .string({ error: (iss) => (iss.input === undefined ? `is required: give ${what}` : `must be ${what}`) })
    .min(1, { error: `must be ${what}, not empty` })
    .refine((p) => !p.includes('\0'), { error: 'must not contain a NUL byte' });

const listen = z.string({ error: 'must be HOST:PORT, or "" to turn metrics off' }).transform((value, ctx): MetricsConfig['listen'] => {
  if (value === '') return null;
  try {
    const address = parseListen(value);
    if (address.kind !== 'tcp')
      throw new Error(`'${value}': Prometheus scrapes over TCP: use HOST:PORT, e.g. ${DEFAULT_METRICS_LISTEN}, or "" to turn metrics off`);
    return { host: address.host, port: address.port, uri: address.uri };
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

export const metricsSchema = z
  .strictObject({
    listen: listen.prefault(DEFAULT_METRICS_LISTEN),
    tls: z
      .strictObject({
        cert: file('the path of a PEM certificate file'),
        key: file('the path of a PEM private-key file'),
        ca: file('the path of a PEM CA certificate file').optional(),
      })
      .optional(),
  })
  .prefault({});

/** Cross-key rules: TLS needs an endpoint; the endpoint must not take the API's TCP port. */
export function checkMetricsConfig(
  metrics: MetricsConfig,
  api: { readonly kind: string; readonly host?: string; readonly port?: number },
): { key: string; message: string }[] {
  const problems: { key: string; message: string }[] = [];
  if (metrics.tls && !metrics.listen)
    problems.push({ key: 'metrics.tls', message: 'metrics.tls is set but metrics are off (listen: ""): remove tls or set metrics.listen' });
  if (
    metrics.listen &&
    api.kind === 'tcp' &&
    api.port === metrics.listen.port &&
    (api.host === metrics.listen.host || api.host === '0.0.0.0' || metrics.listen.host === '0.0.0.0')
  ) {
    problems.push({ key: 'metrics.listen', message: `${metrics.listen.uri} is the API's listen address too: give metrics another port` });
  }
  return problems;
}

/** Makes the TLS paths absolute (relative to the config file, or to the working directory for flags). */
export function resolveMetricsPaths(metrics: MetricsConfig, abs: (path: string, key: string) => string): MetricsConfig {
  const { tls, ...rest } = metrics;
  if (!tls) return rest;
  return {
    ...rest,
    tls: { cert: abs(tls.cert, 'metrics.tls'), key: abs(tls.key, 'metrics.tls'), ...(tls.ca ? { ca: abs(tls.ca, 'metrics.tls') } : {}) },
  };
}
