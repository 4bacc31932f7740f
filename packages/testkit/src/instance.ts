/**
 * Doing what a container runtime does with the interface CreateInterface left in the node namespace:
 * move it into the instance's namespace, optionally rename it, address it, bring it up, route via the
 * gateway.
 */
import { stat } from 'node:fs/promises';
import { execa } from 'execa';
import { exec, ipBatch, assertNamespaceName } from './exec.js';
import type { TestScope } from './scope.js';

export interface AdoptOptions {
  /** The node namespace the interface is in now. */
  readonly nodeNs: string;
  /** The interface's current name (the handle CreateInterface returned). */
  readonly handle: string;
  /** The instance namespace to move it into. */
  readonly instanceNs: string;
  /** The instance's address. */
  readonly address: string;
  readonly prefixLength: number;
  /** Default route via this address (the CNI's gateway). */
  readonly gateway: string;
  /** Rename it inside the instance (e.g. `eth0`); default: keep the handle. */
  readonly rename?: string;
  readonly mtu?: number;
}

/** Moves the instance end into `instanceNs` and configures it there; returns its name inside. */
export async function adoptInterface(options: AdoptOptions): Promise<string> {
  const { nodeNs, handle, instanceNs } = options;
  assertNamespaceName(nodeNs);
  assertNamespaceName(instanceNs);
  await exec('ip', ['-n', nodeNs, 'link', 'set', handle, 'netns', instanceNs]);
  const name = options.rename ?? handle;
  await ipBatch(instanceNs, [
    ...(options.rename ? [`link set ${handle} name ${options.rename}`] : []),
    ...(options.mtu ? [`link set ${name} mtu ${options.mtu}`] : []),
    `addr add ${options.address}/${options.prefixLength} dev ${name}`,
    `link set ${name} up`,
    'link set lo up',
    `route add default via ${options.gateway} dev ${name}`,
  ]);
  return name;
}

export interface NamespaceHolder {
  readonly pid: number;
  /** `/proc/<pid>/ns/net`: a namespace reference by path, as a runtime holding a container's process gives. */
  readonly path: string;
}

/**
 * Starts a process that sits in `ns` (as a container's init would) and returns once the kernel shows it
 * inside (before that, its /proc/PID/ns/net would still be the root namespace's). Killed at cleanup.
 */
export async function startNamespaceHolder(scope: TestScope, ns: string): Promise<NamespaceHolder> {
  assertNamespaceName(ns);
  const child = execa('ip', ['netns', 'exec', ns, 'sleep', '3600'], { reject: false, stdin: 'ignore' });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start a process in ${ns}`);
  scope.trackPid(pid);
  scope.defer(`namespace holder ${pid} in ${ns}`, async () => {
    child.kill('SIGKILL');
    await child;
  });
  const path = `/proc/${pid}/ns/net`;
  const want = (await stat(`/run/netns/${ns}`)).ino;
  const deadline = Date.now() + 5000;
  while ((await stat(path)).ino !== want) {
    if (Date.now() > deadline) throw new Error(`process ${pid} did not enter ${ns} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { pid, path };
}
