/**
 * Where an OVS daemon listens, in OVS's own remote syntax (`unix:PATH`, `tcp:HOST:PORT`), as options for
 * node:net, and the backoff both clients use between reconnection attempts.
 */
import type { NetConnectOpts } from 'node:net';
import { InvalidArgumentError } from '@nodenet/core';

export function connectOptionsOf(remote: string, field = 'remote'): NetConnectOpts {
  if (remote.startsWith('unix:')) {
    const path = remote.slice('unix:'.length);
    if (path === '' || path.includes('\0'))
      throw new InvalidArgumentError(field, `'${remote}' names no socket path (expected unix:/path/to/socket)`);
    return { path };
  }
  const tcp = /^tcp:(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(remote);
  if (tcp) {
    const port = Number(tcp[2]);
    if (port < 1 || port > 65535) throw new InvalidArgumentError(field, `'${remote}': port ${port} is out of range 1-65535`);
    return { host: tcp[1]!.replace(/^\[|\]$/g, ''), port };
  }
  throw new InvalidArgumentError(field, `'${remote}' is not an OVS remote (expected unix:/path/to/socket or tcp:HOST:PORT)`);
}

/** Reconnection delays: doubling from `initialMs` up to `maxMs`. */
export interface Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 50, maxMs: 5_000 };

export function backoffDelay(b: Backoff, attempt: number): number {
  return Math.min(b.maxMs, b.initialMs * 2 ** Math.min(attempt, 20));
}
