/**
 * What a failure to configure an instance's end inside its namespace means to a client, for both backends
 * (both configure their instance ends through configureInstanceEnd).
 */
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, netnsPath, type InstanceSpec, type NetnsRef } from '@nodenet/core';
import { IpBatchError } from './ip-batch.js';
import { DEFAULT_INSTANCE_IFNAME, LINE } from './link-scripts.js';

export function namespaceMissing(netns: NetnsRef, path: string, cause?: unknown): NotFoundError {
  const where = netns.startsWith('/') ? `${path} does not exist` : `no ${path}`;
  return new NotFoundError(
    `network namespace ${netns} does not exist (${where}): create it first, or pass the path of an existing one such as /proc/PID/ns/net`,
    cause === undefined ? undefined : { cause },
  );
}

/** A failed line of instanceNamespaceScript (from `ip` or the namespace configurator) as the client's error; others unchanged. */
export function explainNamespaceFailure(spec: InstanceSpec, netns: NetnsRef, e: unknown): unknown {
  if (!(e instanceof IpBatchError)) return e;
  const ifname = spec.ifname ?? DEFAULT_INSTANCE_IFNAME;
  if (/Cannot open network namespace|nsenter: cannot open/.test(e.detail)) return namespaceMissing(netns, netnsPath(netns), e);
  if (e.failedLine?.id === LINE.rename && /File exists/.test(e.detail)) {
    return new AlreadyExistsError(
      `an interface named ${ifname} already exists in network namespace ${netns}: choose another ifname or remove that interface`,
      { cause: e },
    );
  }
  if (e.failedLine?.id === LINE.defaultRoute && /File exists/.test(e.detail)) {
    return new FailedPreconditionError(
      `network namespace ${netns} already has a default route: remove it, or create the interface without netns and configure it yourself`,
      { cause: e },
    );
  }
  if (e.failedLine?.id === LINE.defaultIpv6Route && /File exists/.test(e.detail)) {
    return new FailedPreconditionError(
      `network namespace ${netns} already has a default IPv6 route: remove it, or create the interface without netns and configure it yourself`,
      { cause: e },
    );
  }
  if (e.failedLine?.id === LINE.instanceIpv6Address && /Permission denied/.test(e.detail)) {
    return new FailedPreconditionError(
      `network namespace ${netns} has IPv6 disabled (net.ipv6.conf.${ifname}.disable_ipv6 or all.disable_ipv6 is 1): enable it there, or create the interface without ipv6_address`,
      { cause: e },
    );
  }
  return e;
}
