/**
 * Telling one network namespace from another without running anything: a namespace file (a /run/netns
 * bind mount or /proc/PID/ns/net) is an nsfs inode, and `DEV:INODE` of it identifies the namespace for as
 * long as it lives. A namespace deleted and recreated under the same name, or a PID reused by a process in
 * another namespace, shows another inode at the same path.
 */
import { statSync } from 'node:fs';
import { readlink, statfs } from 'node:fs/promises';
import { InternalError, netnsPath, type NamespaceIdentity, type NetnsRef } from '@nodenet/core';
import { namespaceMissing } from './namespace-failures.js';

/** The magic number of nsfs, the file system of namespace files (/proc/PID/ns/net and their bind mounts). */
export const NSFS_MAGIC = 0x6e736673;

/** Errors of stat/statfs that mean "nothing there" (ESRCH: a /proc/PID entry of a process that is exiting). */
const GONE_CODES = new Set(['ENOENT', 'ENOTDIR', 'ESRCH']);

/** `DEV:INODE` as decimal numbers (bigint: exact whatever the size). */
export function formatNetnsId(dev: bigint, ino: bigint): string {
  return `${dev}:${ino}`;
}

/**
 * The identity of the file at `path` (it follows /proc/PID/ns/* links), or null when there is none.
 * Synchronous: a stat of an nsfs file takes microseconds, less than the thread-pool round trip it would
 * otherwise add to every create.
 */
export async function readNetnsId(path: string): Promise<string | null> {
  try {
    const st = statSync(path, { bigint: true });
    return formatNetnsId(st.dev, st.ino);
  } catch (e) {
    if (GONE_CODES.has((e as NodeJS.ErrnoException).code ?? '')) return null;
    throw new InternalError(`read the identity of namespace ${path}`, `stat ${path} failed: ${(e as Error).message}`, { cause: e });
  }
}

/** Whether `path` is on nsfs (any namespace type; false when it does not exist). */
export async function isNamespaceFile(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch (e) {
    if (GONE_CODES.has((e as NodeJS.ErrnoException).code ?? '')) return false;
    throw new InternalError(`check namespace ${path}`, `statfs ${path} failed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Whether `path` is a live network namespace, and the one identified by `netnsId` when given. Without an
 * identity a /proc/PID/ns/* link still tells its type (`net:[INODE]`); a bind mount does not, and any
 * namespace file there counts (nodenet only ever records network namespaces). Unexpected errors throw: a
 * wrong "not alive" would make the caller drop an instance that still exists.
 */
export async function namespaceAliveAt(path: string, netnsId: string | undefined): Promise<boolean> {
  const id = await readNetnsId(path);
  if (id === null || !(await isNamespaceFile(path))) return false;
  if (netnsId !== undefined) return id === netnsId;
  let target: string;
  try {
    target = await readlink(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    // EINVAL: not a symlink (a bind mount such as /run/netns/NAME).
    if (code === 'EINVAL') return true;
    if (GONE_CODES.has(code)) return false;
    throw new InternalError(`check namespace ${path}`, `readlink ${path} failed: ${(e as Error).message}`, { cause: e });
  }
  return target.startsWith('net:[');
}

/** The identity of `netns` now (a stat, no process); NOT_FOUND when it does not exist. */
export async function identifyNamespace(netns: NetnsRef): Promise<string> {
  const target = netnsPath(netns);
  const netnsId = await readNetnsId(target);
  if (netnsId === null) throw namespaceMissing(netns, target);
  return netnsId;
}

/** NamespaceIdentity for the node's instances: stats of nsfs files, no process (the same for every backend). */
export class LinuxNamespaceIdentity implements NamespaceIdentity {
  identifyNamespace(netns: NetnsRef): Promise<string> {
    return identifyNamespace(netns);
  }

  /** A stat and a statfs of the namespace file; see namespaceAliveAt. */
  namespaceAlive(netns: NetnsRef, netnsId: string | undefined): Promise<boolean> {
    return namespaceAliveAt(netnsPath(netns), netnsId);
  }
}
