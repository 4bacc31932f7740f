/**
 * Configures an instance's end inside its network namespace (name, IPv4 and IPv6 addresses, up, lo up, default routes)
 * without a process per instance: a long-lived helper (helpers/netns-netlink.pl, perl-base only) enters
 * the namespace with setns(2) just long enough to open a netlink socket there and sends the requests `ip`
 * would. Node cannot open netlink sockets itself; the per-create `nsenter --net ip -batch` it replaces cost
 * ~4 ms of CPU (fork of the daemon + two execs; profiled) and ~3 ms of latency.
 *
 * It also makes the veth pair itself (createVeth: the node side in one request with the namespace side), so a
 * create hands off to one process instead of an `ip` session and then this helper.
 *
 * A failure names the same line ids as vethScript and instanceNamespaceScript, so callers explain it the same
 * way. Where the helper cannot run (no perl, an architecture it has no setns number for) the caller falls back
 * to `ip`.
 */
import { fileURLToPath } from 'node:url';
import { InternalError, silentLogger, type InstanceSpec, type Logger, type NetnsRef } from '@nodenet/core';
import { CommandSession, SessionExitedError, helperLineFraming } from '@nodenet/sys';
import { IpBatchError, IpRunner, commandInNamespace, type IpLine } from './ip-batch.js';
import { explainNamespaceFailure } from './namespace-failures.js';
import { DEFAULT_INSTANCE_IFNAME, instanceNamespaceScript, ownerAliasOf } from './link-scripts.js';

/**
 * The helper program, found relative to this module: helpers/ sits beside src/ and dist/ in the package
 * (listed in its `files`), so it is found the same from the source tree, the build and an installed tarball.
 */
export const NETNS_HELPER_PATH = fileURLToPath(new URL('../helpers/netns-netlink.pl', import.meta.url));

/** What the helper's start-up failure says when it cannot run on this host (as opposed to a request failing). */
const HELPER_CANNOT_RUN =
  /unsupported architecture|Can't locate|exec of "[^"]*" failed|nsenter: failed to execute|cannot open \/proc\/self\/ns\/net/;

/** A field of a request line: validated names, paths and addresses never hold these. */
const UNSAFE_FIELD = /[\t\n\r\0]/;

/**
 * Helper processes per configurator. One helper answers its requests one after another, and a create's
 * request costs it 1.2-2.3 ms of CPU (measured, mostly in the kernel: setns, the netlink round trips, a veth
 * moved between namespaces) plus what it sleeps there, so with 32 clients creating at once that one process
 * was the queue every create waited in. Two, on the 2 cores here, let one helper's work overlap the other's
 * sleeps; more than the cores only adds processes.
 */
export const NETNS_HELPERS = 2;

export class NetnsConfigurator {
  /** The helpers, each with the requests written to it and not answered yet; a request goes to the least busy. */
  private readonly sessions: Array<{ readonly session: CommandSession; inFlight: number }>;
  private next = 0;
  private readonly command: string;
  /** Why the helper cannot be used here (then callers use `ip`), once known. */
  private unusable: string | undefined;

  constructor(
    nodeNetns: NetnsRef | undefined,
    private readonly logger: Logger = silentLogger,
    /** The helper's command line (tests point it at a program that does not exist). */
    helper: readonly [string, ...string[]] = ['perl', NETNS_HELPER_PATH],
    /** How many helper processes (tests ask for one). */
    helpers = NETNS_HELPERS,
  ) {
    const { file, args } = commandInNamespace(nodeNetns, helper[0], helper.slice(1));
    this.command = [file, ...args].join(' ');
    // Each helper starts on its first request: an idle daemon runs no more processes than it used.
    this.sessions = Array.from({ length: Math.max(1, helpers) }, () => ({
      session: new CommandSession({ name: `the namespace configurator (${this.command})`, file, args, framing: helperLineFraming }),
      inFlight: 0,
    }));
  }

  /** The helper with the fewest requests waiting (ties: in turn, so each gets used and stays warm). */
  private pick(): { readonly session: CommandSession; inFlight: number } {
    let best = this.sessions[this.next % this.sessions.length]!;
    for (const s of this.sessions) if (s.inFlight < best.inFlight) best = s;
    this.next++;
    return best;
  }

  /**
   * Configures `spec`'s instance end (created as `spec.handle` in the namespace at `targetPath`). Throws
   * IpBatchError naming the failed line of instanceNamespaceScript (as `ip -batch` would), or
   * HelperUnusableError when the helper cannot run on this host (nothing was changed then).
   */
  async configure(spec: InstanceSpec, targetPath: string): Promise<void> {
    const step = `configure ${spec.handle} in namespace ${spec.netns ?? targetPath}`;
    const ifname = spec.ifname ?? DEFAULT_INSTANCE_IFNAME;
    const fields = ['configure', targetPath, spec.handle, ifname, ...helperAddressFields(spec, step)];
    await this.send(step, fields, instanceNamespaceScript(spec));
  }

  /**
   * Makes `spec`'s veth pair on the node (the host end a port of Linux bridge `master`, the instance end
   * created in the namespace at `targetPath`) and configures the instance end there, in one request: one
   * process hand-off per create instead of two. `nodeLines` are the `ip` lines that do the node side the same
   * way (LINE.createLink, LINE.attachLink): a failure names one of them, or a line of
   * instanceNamespaceScript, as `ip -batch` would. On a failure after create-link the pair exists and the
   * caller removes it. HelperUnusableError: nothing was changed.
   */
  async createVeth(spec: InstanceSpec, targetPath: string, master: string, nodeLines: readonly IpLine[]): Promise<void> {
    const step = `create veth pair ${spec.hostIfname}/${spec.handle} in namespace ${spec.netns ?? targetPath}`;
    const ifname = spec.ifname ?? DEFAULT_INSTANCE_IFNAME;
    const fields = [
      'create-veth',
      spec.hostIfname,
      String(spec.mtu),
      master,
      ownerAliasOf(spec.handle),
      spec.handle,
      spec.mac,
      targetPath,
      ifname,
      ...helperAddressFields(spec, step),
    ];
    await this.send(step, fields, [...nodeLines, ...instanceNamespaceScript(spec)]);
  }

  /** Whether requests go to the helper (false once it proved unable to run here). */
  get usable(): boolean {
    return this.unusable === undefined;
  }

  private async send(step: string, fields: readonly string[], lines: readonly IpLine[]): Promise<void> {
    if (this.unusable !== undefined) throw new HelperUnusableError(step, this.unusable);
    for (const f of fields)
      if (UNSAFE_FIELD.test(f)) throw new InternalError(step, `refusing to send ${JSON.stringify(f)} to the namespace configurator`);
    let answer: string;
    const helper = this.pick();
    helper.inFlight++;
    try {
      answer = await helper.session.request(`${fields.join('\t')}\n`, step);
    } catch (e) {
      // The helper died on start: no perl (ENOENT is UNAVAILABLE; in another namespace `ip netns exec` or
      // nsenter says it could not execute it), a perl without a module it needs, an unknown architecture.
      if ((e as { code?: string }).code === 'UNAVAILABLE' || (e instanceof SessionExitedError && HELPER_CANNOT_RUN.test(e.output))) {
        this.unusable = e instanceof SessionExitedError ? e.output : (e as Error).message;
        this.logger.warn(
          { reason: this.unusable },
          'the namespace configurator cannot run here: instance links are made with ip and nsenter + ip',
        );
        throw new HelperUnusableError(step, this.unusable);
      }
      throw e;
    } finally {
      helper.inFlight--;
    }
    if (answer === '') return;
    const m = /^fail (\S+) (.*)$/s.exec(answer);
    if (!m) throw new InternalError(step, `the namespace configurator answered ${JSON.stringify(answer)}`);
    const [, id, message] = m as unknown as [string, string, string];
    const failedLine: IpLine | undefined = lines.find((l) => l.id === id);
    const index = failedLine === undefined ? undefined : lines.indexOf(failedLine) + 1;
    throw new IpBatchError(step, this.command, failedLine, message, [{ line: index, message }]);
  }

  close(): void {
    for (const s of this.sessions) s.session.close();
  }
}

/** The helper cannot run on this host, or cannot do this request; nothing was changed. */
export class HelperUnusableError extends InternalError {}

/** What the helper writes for a family the instance has no address of. */
const NONE = '-';

/**
 * The helper's address fields, one group per family, `-` for a family the instance has none of (the same
 * families instanceNamespaceScript configures): IPv4 address, prefix length, broadcast, gateway; IPv6 address,
 * prefix length, gateway.
 */
export function helperAddressFields(spec: InstanceSpec, step: string): string[] {
  const v4 = spec.ipv4 && spec.cni.ipv4 ? { address: spec.ipv4, net: spec.cni.ipv4 } : undefined;
  const v6 = spec.ipv6 && spec.cni.ipv6 ? { address: spec.ipv6, net: spec.cni.ipv6 } : undefined;
  if (!v4 && !v6) throw new InternalError(step, `instance ${spec.handle} has no address of a family its CNI holds`);
  return [
    ...(v4 ? [v4.address, String(v4.net.subnet.prefixLength), v4.net.subnet.broadcast, v4.net.gateway] : [NONE, NONE, NONE, NONE]),
    ...(v6 ? [v6.address, String(v6.net.subnet.prefixLength), v6.net.gateway] : [NONE, NONE, NONE]),
  ];
}

/**
 * Names, addresses and routes an instance end that is already in the namespace at `target` (made there as
 * `spec.handle`): one request to the namespace configurator, or where it cannot run, `ip` in the namespace,
 * by path, i.e. through `nsenter --net` even for a name (`ip -n NAME` copies the mount table, which holds one
 * mount per named namespace: measured 2 -> 13 ms per call at 2,100 mounts). For both backends. A failure is
 * explained for the client (explainNamespaceFailure: the namespace gone, the ifname taken, a default route
 * already there).
 */
export async function configureInstanceEnd(configurator: NetnsConfigurator, spec: InstanceSpec, target: NetnsRef): Promise<void> {
  const netns = spec.netns ?? target;
  try {
    if (configurator.usable) {
      try {
        await configurator.configure(spec, target);
        return;
      } catch (e) {
        if (!(e instanceof HelperUnusableError)) throw e;
        // The helper cannot run here (it changed nothing): `ip` below.
      }
    }
    await new IpRunner(target).batch(instanceNamespaceScript(spec), { step: `configure ${spec.handle} in namespace ${netns}` });
  } catch (e) {
    throw explainNamespaceFailure(spec, netns, e);
  }
}
