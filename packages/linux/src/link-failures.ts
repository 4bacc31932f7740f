/**
 * What failed kernel commands mean to a client, beyond the namespace (namespace-failures.ts), written once
 * for both backends: a link create refused (the CNI missing, the namespace missing or not a network
 * namespace, a name taken), and tolerant deletes (absence is success; every other failure is reported, all
 * of them).
 */
import { AlreadyExistsError, FailedPreconditionError, InternalError, netnsPath, type InstanceSpec } from '@nodenet/core';
import { ABSENT_RE, IpBatchError, deviceMissingRe, type IpBatchFailure, type IpLine } from './ip-batch.js';
import { LINE } from './link-scripts.js';
import { namespaceMissing } from './namespace-failures.js';
import { isNamespaceFile, readNetnsId } from './netns-identity.js';

/**
 * A failed node-side create of an instance's link (the lines with ids LINE.createLink / LINE.attachLink) as
 * the client's error; anything it does not recognise is returned unchanged (backends add their own cases,
 * e.g. a full Linux bridge).
 */
export async function explainLinkFailure(spec: InstanceSpec, e: unknown): Promise<unknown> {
  if (!(e instanceof IpBatchError)) return e;
  const cni = spec.cni.name;
  if (deviceMissingRe(cni).test(e.detail)) {
    return new FailedPreconditionError(
      `the CNI bridge ${cni} does not exist in the node namespace: call CreateContainerNetworkInterface (a restarted daemon restores it)`,
      { cause: e },
    );
  }
  // iproute2 rejects a path it cannot open; the kernel rejects (EINVAL) a file that is no network namespace.
  const netnsRefused =
    e.detail.includes('Invalid "netns" value') || (e.failedLine?.id === LINE.createLink && e.detail.includes('Invalid argument'));
  if (spec.netns !== undefined && netnsRefused) {
    const target = netnsPath(spec.netns);
    if ((await readNetnsId(target)) === null) return namespaceMissing(spec.netns, target, e);
    const what = (await isNamespaceFile(target))
      ? 'a namespace file, but the kernel refused it as a network namespace'
      : 'not a namespace file';
    return new FailedPreconditionError(
      `${target} is not a network namespace (it is ${what}): pass a name under /run/netns or a path such as /proc/PID/ns/net`,
      { cause: e },
    );
  }
  if (e.failedLine?.id === LINE.createLink && /File exists|Device or resource busy/.test(e.detail)) {
    const names = spec.kind === 'tap' ? spec.handle : `${spec.hostIfname} or ${spec.handle}`;
    return new AlreadyExistsError(`a link named ${names} already exists: remove it (it is not tracked by this daemon) and retry`, {
      cause: e,
    });
  }
  return e;
}

/** What runs `ip -batch` lines: a one-shot IpRunner or a long-lived IpSession. */
export interface IpBatchRunner {
  batch(lines: readonly IpLine[], options: { step: string; force?: boolean }): Promise<IpBatchFailure[]>;
}

/**
 * Runs delete lines with -force: a line finding nothing to delete is success (ABSENT_RE); any other failure
 * throws, naming the first failed line's step and listing the others ("and N more: ...").
 */
export async function deleteTolerant(via: IpBatchRunner, lines: readonly IpLine[], step: string): Promise<void> {
  const failures = await via.batch(lines, { step, force: true });
  const real = failures.filter((f) => !ABSENT_RE.test(f.message));
  const first = real[0];
  if (first) {
    const line = first.line === undefined ? undefined : lines[first.line - 1];
    const more =
      real.length > 1
        ? ` (and ${real.length - 1} more: ${real
            .slice(1)
            .map((f) => f.message)
            .join('; ')})`
        : '';
    throw new InternalError(line?.step ?? step, `${first.message || 'ip failed without a message'}${more}`);
  }
}

/**
 * The first failure of a `-force` batch that is not a delete finding nothing (a line whose id is in
 * `deleteIds` failing with ABSENT_RE), with its line; undefined when every failure was such a delete.
 */
export function unexpectedFailure(
  failures: readonly IpBatchFailure[],
  lines: readonly IpLine[],
  deleteIds: ReadonlySet<string>,
): { failure: IpBatchFailure; line: IpLine | undefined } | undefined {
  for (const failure of failures) {
    const line = failure.line === undefined ? undefined : lines[failure.line - 1];
    if (line && deleteIds.has(line.id) && ABSENT_RE.test(failure.message)) continue;
    return { failure, line };
  }
  return undefined;
}
