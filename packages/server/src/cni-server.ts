/**
 * Where the CNI plugin (packages/cni-plugin, a small Go binary exec'd by runtimes) meets nodenetd: a unix
 * socket on `cni.listen` (mode 0600). The protocol is one JSON line each way per connection: the plugin
 * writes {command, containerId, netns, ifname, args, path, config} and a newline; the daemon answers
 * {"result": ...} or {"error": {code, msg, details}} (a CNI error object) and a newline, then closes. One
 * line of JSON keeps the plugin to Go's standard library and its own cost to a connect, a write and a read.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { asCniError, AttachmentStore, CniAttachments, CniError, IpNetnsProbe } from '@nodenet/cni';
import type { NodeNetwork, PacketFilter } from '@nodenet/core';
import type { DaemonConfig } from './config.js';
import type { DaemonLogger } from './logger.js';

/** A request larger than this is refused (a network config is a few kB; a prevResult adds little). */
const MAX_REQUEST_BYTES = 1 << 20;

export interface CniServer {
  /** Stops accepting, waits for calls in flight, removes the socket. */
  close(): Promise<void>;
}

/** Listens on `path` (a stale socket there is replaced; the caller has checked nobody answers on it). */
export async function startCniServer(path: string, attachments: CniAttachments, logger: DaemonLogger): Promise<CniServer> {
  const inFlight = new Set<Promise<void>>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const call = serveConnection(socket, attachments, logger);
    inFlight.add(call);
    void call.finally(() => inFlight.delete(call));
  });
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const previous = process.umask(0o177); // the socket is born 0600
  try {
    await listen(server, path);
  } finally {
    process.umask(previous);
  }
  await chmod(path, 0o600);
  logger.info({ event: 'cni-listen', path }, `serving the CNI plugin on ${path}`);
  return {
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...inFlight]);
      await closed;
      await rm(path, { force: true });
    },
  };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function serveConnection(socket: Socket, attachments: CniAttachments, logger: DaemonLogger): Promise<void> {
  const started = performance.now();
  let reply: string;
  let request: Record<string, unknown> | undefined;
  try {
    request = await readRequest(socket);
    const result = await attachments.handle(request);
    reply = JSON.stringify({ result: result ?? null });
  } catch (e) {
    const command = typeof request?.command === 'string' ? request.command : 'request';
    const error = e instanceof CniError ? e : asCniError(e, `serve CNI ${command}`);
    reply = JSON.stringify({ error: error.toJSON() });
    logger.warn(
      {
        event: 'cni-call',
        command: request?.command,
        containerId: request?.containerId,
        ifname: request?.ifname,
        code: error.code,
        err: error.msg,
      },
      `CNI ${command} failed: ${error.msg}`,
    );
  }
  logger.info(
    {
      event: 'cni-call',
      command: request?.command,
      containerId: request?.containerId,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
    },
    'CNI call served',
  );
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve()); // the plugin went away (killed by its runtime): nothing to tell it
    socket.end(`${reply}\n`, () => resolve());
  });
}

/** Reads one newline-terminated JSON object. */
function readRequest(socket: Socket): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (text: string) => {
      socket.removeAllListeners('data');
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
        resolve(parsed as Record<string, unknown>);
      } catch (e) {
        reject(new CniError(6, `the request from the plugin is not one JSON object: ${(e as Error).message}`));
      }
    };
    socket.on('data', (chunk: Buffer) => {
      const nl = chunk.indexOf(10);
      if (nl >= 0) {
        chunks.push(chunk.subarray(0, nl));
        finish(Buffer.concat(chunks).toString('utf8'));
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        socket.removeAllListeners('data');
        reject(new CniError(6, `the request from the plugin exceeds ${MAX_REQUEST_BYTES} bytes`));
      }
    });
    socket.on('end', () => {
      if (size > 0 && size <= MAX_REQUEST_BYTES) finish(Buffer.concat(chunks).toString('utf8'));
      else reject(new CniError(6, 'the plugin closed the connection before sending a request'));
    });
    socket.on('error', reject);
  });
}

/**
 * The attachments of the CNI plugin for `config.cni.listen` (undefined when it is off), loaded right after the
 * node's records and before the node is touched: a record that does not parse stops the start naming its file,
 * and ADDs a crash cut short are completed or dropped against the recorded instances.
 */
export async function loadCniAttachments(
  config: DaemonConfig,
  network: NodeNetwork,
  packetFilter: PacketFilter,
  logger: DaemonLogger,
): Promise<CniAttachments | undefined> {
  if (!config.cni.listen) return undefined;
  const attachments = new CniAttachments({
    network,
    store: new AttachmentStore(config.stateDir),
    probe: new IpNetnsProbe(),
    publishedPorts: async () => (await packetFilter.listElements()).ports,
    logger: logger.child({ component: 'cni' }),
  });
  await attachments.load();
  return attachments;
}
