/**
 * Reaching a TCP port inside a namespace from the test process (which stays in the root namespace): a
 * unix socket in a temp dir whose every connection is piped through `ip netns exec NS socat STDIO TCP:..`.
 * Used to talk gRPC to a daemon that listens on TCP inside its node namespace.
 */
import net from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { assertNamespaceName } from './exec.js';
import type { TestScope } from './scope.js';

export interface NamespaceTcpProxy {
  /** The unix socket path; a gRPC target is `unix://<path>`. */
  readonly socketPath: string;
  close(): Promise<void>;
}

/** Forwards connections on a new unix socket to `host:port` inside `ns`. Closed by the scope's cleanup. */
export async function proxyToNamespaceTcp(scope: TestScope, ns: string, host: string, port: number): Promise<NamespaceTcpProxy> {
  assertNamespaceName(ns);
  if (!/^[0-9.]+$/.test(host) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`proxyToNamespaceTcp: ${host}:${port} is not an IPv4 address and port`);
  }
  const dir = await scope.createTempDir();
  const socketPath = join(dir, 'proxy.sock');
  const children = new Set<ReturnType<typeof execa>>();
  const server = net.createServer((conn) => {
    const child = execa('ip', ['netns', 'exec', ns, 'socat', 'STDIO', `TCP:${host}:${port}`], {
      reject: false,
      buffer: false,
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'ignore',
    });
    children.add(child);
    scope.trackPid(child.pid);
    conn.pipe(child.stdin);
    child.stdout.pipe(conn);
    const end = () => {
      conn.destroy();
      child.kill('SIGTERM');
    };
    conn.on('error', end);
    conn.on('close', () => child.kill('SIGTERM'));
    child.stdin.on('error', end);
    void child.then(() => {
      children.delete(child);
      scope.untrackPid(child.pid);
      conn.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled([...children]);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  scope.defer(`proxy to ${ns} ${host}:${port}`, close);
  return { socketPath, close };
}
