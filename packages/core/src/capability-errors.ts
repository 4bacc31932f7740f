/**
 * What a refusal by the kernel means for a daemon that runs as root: a capability its process lacks (or a
 * security policy such as AppArmor, SELinux or seccomp forbidding the operation). Decided in one place for
 * every edge: the gRPC API answers FAILED_PRECONDITION and the CNI socket its own code, both with a message
 * naming the capability and what to do, instead of an INTERNAL error quoting "Operation not permitted".
 * Pure logic: it reads the failure's messages and errno along its cause chain.
 */
import { asNodenetError, FailedPreconditionError, isNodenetError, type NodenetError } from './errors.js';

/** The capabilities nodenetd runs with (the packaged systemd unit's set) and what each is needed for. */
export const DAEMON_CAPABILITIES = {
  CAP_NET_ADMIN: 'links, addresses, routes, nftables, conntrack, net sysctls and TAP devices',
  CAP_SYS_ADMIN: "entering instances' network namespaces",
  CAP_SYS_PTRACE: "opening /proc/PID/ns/net of another user's process",
} as const;

export type DaemonCapability = keyof typeof DAEMON_CAPABILITIES;

/** A step the kernel refused because the daemon lacks `capability`: FAILED_PRECONDITION, fixed by the operator. */
export class MissingCapabilityError extends FailedPreconditionError {
  constructor(
    readonly capability: DaemonCapability,
    refused: string,
    options?: { cause?: unknown },
  ) {
    super(
      `nodenetd lacks ${capability}: ${refused}. It needs ${capability} for ${DAEMON_CAPABILITIES[capability]}: run it as root with ${Object.keys(DAEMON_CAPABILITIES).join(', ')} (the packaged systemd unit grants them), or, if it has them, allow the operation in the security policy that refused it (AppArmor, SELinux, seccomp); then retry`,
      options,
    );
  }
}

const EPERM_TEXT = /Operation not permitted|\bEPERM\b/;
/** Entering a namespace: the namespace helper's and nsenter's setns, `ip -n`/`ip netns exec`'s mounts. */
const SETNS_REFUSED =
  /(setting the network namespace [^\n]* failed|reassociate to namespace [^\n]*|setns[^\n]*|mount[^\n]*): Operation not permitted/;
/** /proc/PID/ns/* of another user's process: ptrace access, without which stat/open fail with EACCES. */
const PROC_NS_PATH = /^\/proc\/\d+\/ns\//;
const PROC_NS_DENIED = /(EACCES|EPERM)[^\n]*\/proc\/\d+\/ns\//;
/** Net sysctls: writable only with CAP_NET_ADMIN in the namespace. */
const NET_SYSCTL_PATH = /^\/proc\/sys\/net\//;

interface Errno {
  readonly code: string;
  readonly path?: string;
}

function chainOf(e: unknown): { texts: string[]; errnos: Errno[] } {
  const texts: string[] = [];
  const errnos: Errno[] = [];
  const seen = new Set<unknown>();
  for (let c: unknown = e; c !== undefined && c !== null && !seen.has(c); c = (c as { cause?: unknown }).cause) {
    seen.add(c);
    if (c instanceof Error) texts.push(c.message);
    else if (typeof c === 'string') texts.push(c);
    const { code, path } = c as { code?: unknown; path?: unknown };
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) errnos.push({ code, ...(typeof path === 'string' ? { path } : {}) });
    if (!(c instanceof Error)) break;
  }
  return { texts, errnos };
}

/** The capability a refused operation points to, or undefined when the failure is not such a refusal. */
export function missingCapabilityOf(e: unknown): DaemonCapability | undefined {
  // Errors that already say what to do (a read-only state directory, IPv6 disabled in a namespace) stay as they are.
  if (isNodenetError(e) && e.code !== 'INTERNAL') return undefined;
  const { texts, errnos } = chainOf(e);
  const text = texts.join('\n');
  const denied = (code: string) => code === 'EACCES' || code === 'EPERM';
  if (errnos.some((n) => denied(n.code) && n.path !== undefined && PROC_NS_PATH.test(n.path)) || PROC_NS_DENIED.test(text)) {
    return 'CAP_SYS_PTRACE';
  }
  // A netlink refusal is CAP_NET_ADMIN even when the step names a namespace.
  if (/RTNETLINK answers: Operation not permitted/.test(text)) return 'CAP_NET_ADMIN';
  if (SETNS_REFUSED.test(text)) return 'CAP_SYS_ADMIN';
  if (errnos.some((n) => denied(n.code) && n.path !== undefined && NET_SYSCTL_PATH.test(n.path))) return 'CAP_NET_ADMIN';
  // nftables, conntrack, TUNSETIFF, sysctl(8): every other EPERM of the daemon's work is a network change.
  if (EPERM_TEXT.test(text) || errnos.some((n) => n.code === 'EPERM')) return 'CAP_NET_ADMIN';
  return undefined;
}

/**
 * Anything thrown while doing `step` as the error a client gets: a refusal for want of a capability as
 * MissingCapabilityError (FAILED_PRECONDITION), anything else as asNodenetError makes it. Both edges (the gRPC
 * API and the CNI socket) go through here.
 */
export function clientError(e: unknown, step: string): NodenetError {
  const capability = missingCapabilityOf(e);
  if (capability === undefined) return asNodenetError(e, step);
  const refused = isNodenetError(e) ? e.message : `${step}: ${e instanceof Error ? e.message : String(e)}`;
  return new MissingCapabilityError(capability, refused, { cause: e });
}
