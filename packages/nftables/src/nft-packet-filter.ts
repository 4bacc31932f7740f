/**
 * PacketFilter on nftables: published ports (DNAT through one map), masquerade, anti-spoofing on the CNI's
 * ports (bridge family) and connection-tracking cleanup. Each change is one transaction; the ruleset has a
 * fixed number of rules, instances only add elements. The frequent changes, an instance's elements, go as
 * one line each to a long-lived `nft -i` (session.ts: no process start per change); the rare ones (the base,
 * repairs, fallbacks) and every listing are one-shot `nft` processes.
 * ensureBase reads before it writes: it compares nodenet's tables with a reference (drift.ts) and rewrites
 * only what differs, so the reconcile loop can call it as often as it likes.
 */
import {
  FailedPreconditionError,
  parseIpAddress,
  netnsPath,
  parseNetnsRef,
  silentLogger,
  type FilterBase,
  type FilterElements,
  type InstanceRules,
  type IpAddress,
  type IpSubnet,
  type Logger,
  type NetnsRef,
  type PacketFilter,
  type Repairs,
} from '@nodenet/core';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CommandError,
  CommandSession,
  GroupCommitter,
  SessionExitedError,
  notInstalled,
  run,
  runLean,
  type RunOptions,
  type RunResult,
} from '@nodenet/sys';
import { CONNTRACK_HELPER_PATH, ConntrackFlusher } from './conntrack-flusher.js';
import { diffBase, type SubnetsByFamily } from './drift.js';
import {
  filterElements,
  parseAllowedSources,
  parseAllowedSources6,
  parseEchoShapes,
  parsePublishedHostPorts,
  parsePublishedPorts,
  parseSubnetElements,
  parseTableShape,
  restrictShape,
  type BaseShape,
  type TableShape,
} from './listing.js';
import {
  ALLOWED_SOURCES,
  ALLOWED_SOURCES6,
  CLUSTER_SUBNETS,
  PUBLISHED_HOST_PORTS,
  ND_TARGETS,
  PUBLISHED_PORTS,
  TABLE,
  addInstanceScript,
  baseLayout,
  checkedBase,
  checkedElements,
  checkedRules,
  clusterSubnetElements,
  conflictingKeys,
  ensureBaseScript,
  removeBaseScript,
  removeElementsScript,
  removeInstanceScript,
  removeListedElementsScript,
  removeListedScript,
  repairScripts,
  setClusterSubnetsScript,
  type Family,
  type ListedElements,
  type ListedPort,
  type LoopbackGuard,
  type NftBase,
} from './script.js';
import { answerFailed, nftSessionFraming, sessionLine } from './session.js';

export interface NftPacketFilterOptions {
  /** The node namespace to manage (a name under /run/netns or a path); default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
  /**
   * The commands to run; default `nft`, `conntrack` and the conntrack cleaner (`perl` and
   * helpers/conntrack-netlink.pl; `conntrack` only runs where it cannot). Tests point these at missing binaries.
   */
  readonly commands?: { readonly nft?: string; readonly conntrack?: string; readonly conntrackHelper?: readonly [string, ...string[]] };
  /** Where the loopback guard goes (see LoopbackGuard): `bridge-ports` when the CNI is a Linux bridge; default `ip-prerouting`. */
  readonly loopbackGuard?: LoopbackGuard;
  /**
   * Masquerade instances' IPv6 traffic leaving the cluster (default true, as netavark does for ULA subnets);
   * false for routed global prefixes, whose addresses the world reaches directly.
   */
  readonly ipv6Masquerade?: boolean;
}

/**
 * `nft -i` reads $HOME/.nft.history when it starts and writes every line it ran there when it exits; with
 * HOME=/dev/null both fail harmlessly (unset, HOME would make it `/.nft.history`).
 */
const SESSION_ENV = { HOME: '/dev/null' };

/**
 * The session's process is replaced after this many requests: nft adds every line it reads (requests and
 * markers) to an in-memory history that it looks up on each line, so a request slows down as the history
 * grows (measured, nft 1.0.6: 0.13 ms per request over the first 1,000, 0.3-0.6 ms after 7,000, and ~0.3 KB
 * of memory each). A restart costs one process start per 1,000 requests.
 */
const SESSION_RECYCLE = 1000;

/** What ensureBase compares the tables with, for one base (see reference()). */
interface Reference {
  /** The install script of the base without cluster subnets: the reference depends on nothing else. */
  readonly key: string;
  readonly shape: BaseShape;
}

/** nodenet's tables as listed: their shapes (without elements) and cluster_subnets' contents. */
interface ListedBase {
  readonly shape: BaseShape;
  readonly subnets: SubnetsByFamily;
}

export class NftPacketFilter implements PacketFilter {
  private readonly netns: NetnsRef | undefined;
  private readonly logger: Logger;
  private readonly nftCommand: string;
  private readonly loopbackGuard: LoopbackGuard;
  private readonly ipv6Masquerade: boolean;
  /** The tables of the last base ensureBase installed (undefined before: listings then read every family). */
  private families: readonly Family[] | undefined;
  /**
   * The CNI's own subnets of that base (one per family). setClusterSubnets keeps them: its caller (the peer
   * sync) knows the node's IPv4 subnet only, and a dual-stack node's ip6 set would lose its own subnet.
   */
  private ownSubnets: readonly IpSubnet[] = [];
  /**
   * Concurrent adds (and removes) share one transaction (group commit): idle, a request runs at once; under
   * load, requests queued behind a running transaction go together in the next. A failed group is retried
   * request by request, so each gets its own answer.
   */
  private readonly adds = new GroupCommitter<InstanceRules>((items) =>
    this.applyElements(
      items.map((r) => addInstanceScript(r)).join(''),
      items.length === 1 ? addStep(items[0]!) : `publish the ports of ${items.length} instances`,
    ),
  );
  private readonly removes = new GroupCommitter<InstanceRules>((items) =>
    this.applyElements(
      items.map((r) => removeInstanceScript(r)).join(''),
      items.length === 1 ? removeStep(items[0]!) : `remove the published ports of ${items.length} instances`,
    ),
  );
  private readonly conntrack: ConntrackFlusher;
  /** The `nft -i` that applies the element changes of adds and removes; started on first use. */
  private session: CommandSession | undefined;

  constructor(options: NftPacketFilterOptions = {}) {
    this.netns = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.logger = options.logger ?? silentLogger;
    this.nftCommand = options.commands?.nft ?? 'nft';
    this.conntrack = new ConntrackFlusher({
      logger: this.logger,
      helper: this.inNamespace(options.commands?.conntrackHelper ?? ['perl', CONNTRACK_HELPER_PATH]) as [string, ...string[]],
      conntrack: options.commands?.conntrack ?? 'conntrack',
      exec: (file, args, runOptions) => this.exec(file, args, runOptions),
    });
    this.loopbackGuard = options.loopbackGuard ?? 'ip-prerouting';
    this.ipv6Masquerade = options.ipv6Masquerade ?? true;
  }

  /**
   * Lists nodenet's tables (without elements) and compares them with the reference for `base`; writes only
   * when something differs, and then only what differs (one transaction; two when a table must be woken
   * first), and checks the result. Returns one line per difference found, [] when it wrote nothing.
   */
  async ensureBase(input: FilterBase): Promise<Repairs> {
    const base = checkedBase({ ...input, loopbackGuard: this.loopbackGuard, ipv6Masquerade: this.ipv6Masquerade });
    const step = "converge nodenet's nftables tables";
    const families = baseLayout(base).map((t) => t.family);
    this.families = families;
    this.ownSubnets = [base.ipv4?.subnet, base.ipv6?.subnet].filter((s): s is NonNullable<typeof s> => s !== undefined);
    const [reference, listed] = await Promise.all([this.reference(base, step), this.readBase(step, families)]);
    const expectedSubnets: SubnetsByFamily = Object.fromEntries(
      (['ip', 'ip6'] as const).filter((f) => families.includes(f)).map((f) => [f, clusterSubnetElements(base, f)]),
    );
    if (reference === null) {
      // No reference (no scratch namespace here): rewrite all, then take what the kernel lists as the reference.
      await this.apply(ensureBaseScript(base), step);
      this.adoptReference(base, (await this.readBase(step, families)).shape);
      return [`nodenet's nftables tables could not be compared (${this.referenceFailure}): rewrote their chains`];
    }
    const drift = diffBase(reference, listed.shape, expectedSubnets, listed.subnets);
    if (drift.repair === null) return [];
    for (const script of repairScripts(base, drift.repair)) await this.apply(script, step);
    const after = await this.readBase(step, families);
    const left = diffBase(reference, after.shape, expectedSubnets, after.subnets);
    if (left.repair !== null) {
      // Rewritten by nodenet a moment ago, yet still "different": nft lists something otherwise than it
      // echoed it. Take the listing as the reference from now on rather than rewrite on every call.
      this.logger.warn(
        { step, left: left.repairs },
        "nodenet's nftables tables still differ from the reference after the repair; adopting the listing as the reference",
      );
      this.adoptReference(base, after.shape);
    }
    return drift.repairs;
  }

  async setClusterSubnets(subnets: readonly IpSubnet[]): Promise<void> {
    const step = 'replace the cluster subnets';
    const families = (this.families ?? ['ip']).filter((f): f is 'ip' | 'ip6' => f !== 'bridge');
    try {
      await this.apply(setClusterSubnetsScript([...this.ownSubnets, ...subnets], families), step);
    } catch (e) {
      if (isNftError(e, /No such file or directory/)) {
        throw new FailedPreconditionError(
          `${step}: set ip ${TABLE} ${CLUSTER_SUBNETS} does not exist: install the base (ensureBase) first`,
          { cause: e },
        );
      }
      throw e;
    }
  }

  async listElements(): Promise<FilterElements> {
    return filterElements(await this.readElements("list the packet filter's elements"));
  }

  async removeElements(input: FilterElements): Promise<void> {
    const step = `remove ${input.ports.length} published ports and ${input.sources.length} admitted sources`;
    const elements = checkedElements(input, step);
    if (elements.ports.length + elements.sources.length === 0) return;
    try {
      await this.apply(removeElementsScript(elements), step);
      return;
    } catch (e) {
      // As in removeInstance: a key now mapped to another address, or a table gone.
      if (!isNftError(e, /File exists|No such file or directory/)) throw e;
    }
    const script = removeListedElementsScript(elements, await this.readElements(step));
    if (script !== '') await this.apply(script, step);
  }

  async removeBase(): Promise<void> {
    await this.apply(removeBaseScript(), "remove nodenet's nftables tables");
  }

  async addInstance(rules: InstanceRules): Promise<void> {
    const step = addStep(rules);
    try {
      await this.adds.submit(rules);
      return;
    } catch (e) {
      if (!isNftError(e, /File exists/)) throw e;
      // A host port of this instance is mapped to another address: a leftover, since core grants each host
      // port to one live instance. Replace it, in one transaction, after reading what holds it.
      const listed = await this.readElements(step);
      const stale = conflictingKeys(checkedRules(rules, step), listed.publishedPorts ?? []);
      if (stale.length === 0) throw e;
      this.logger.warn({ ipv4: rules.ipv4, ipv6: rules.ipv6, stale }, 'replacing published ports left mapped to another address');
      await this.apply(addInstanceScript(rules, stale), step);
    }
  }

  async removeInstance(rules: InstanceRules): Promise<void> {
    const step = removeStep(rules);
    try {
      await this.removes.submit(rules);
      return;
    } catch (e) {
      // "File exists": a host port of ours is now mapped to another address (leave that one alone).
      // "No such file or directory": a table or its map/set is gone (removeBase ran): nothing to remove.
      if (!isNftError(e, /File exists|No such file or directory/)) throw e;
    }
    const listed = await this.readElements(step);
    const script = removeListedScript(rules, listed);
    if (script !== '') await this.apply(script, step);
  }

  /**
   * Ends the `nft -i` process of the element changes after what was already written to it (call at
   * shutdown). A later change starts another.
   */
  close(): void {
    this.session?.close();
    this.session = undefined;
    this.conntrack.close();
  }

  async flushConntrack(addresses: readonly IpAddress[]): Promise<void> {
    await this.conntrack.flush(addresses.map((a, i) => parseIpAddress(a, `addresses[${i}]`)));
  }

  /** Applies a script as one transaction, in a one-shot `nft -f -`. */
  private async apply(script: string, step: string): Promise<void> {
    const started = performance.now();
    await this.exec(this.nftCommand, ['-f', '-'], { step, input: script });
    this.logger.debug(
      { step, lines: script.split('\n').length - 1, ms: Math.round((performance.now() - started) * 10) / 10 },
      'nft transaction',
    );
  }

  /**
   * Applies a script of element commands as one transaction through the `nft -i` session. A failed
   * transaction is a CommandError carrying nft's messages, like a failed `nft -f`; a session that exits
   * before answering is a SessionExitedError (the next change starts a new one).
   */
  private async applyElements(script: string, step: string): Promise<void> {
    const line = sessionLine(script, step);
    if (line === null) return;
    const started = performance.now();
    const session = this.elementSession();
    let output: string;
    try {
      output = await session.request(`${line}\n`, step);
    } catch (e) {
      if (e instanceof SessionExitedError && missingCommand(e.output)) throw notInstalled(this.nftCommand, e);
      throw e;
    }
    if (answerFailed(output)) throw new CommandError(step, this.sessionCommand().join(' '), undefined, output);
    if (output !== '') this.logger.warn({ step, output }, 'nft printed something for a transaction it applied');
    this.logger.debug(
      { step, commands: line.split('; ').length, ms: Math.round((performance.now() - started) * 100) / 100 },
      'nft session transaction',
    );
  }

  private elementSession(): CommandSession {
    if (this.session) return this.session;
    const [file, ...args] = this.sessionCommand();
    this.session = new CommandSession({
      name: `nft -i session${this.netns === undefined ? '' : ` in ${this.netns}`}`,
      file: file!,
      args,
      framing: nftSessionFraming,
      recycleAfter: SESSION_RECYCLE,
      env: SESSION_ENV,
    });
    return this.session;
  }

  /** `nft -i`, in the node namespace. */
  private sessionCommand(): string[] {
    return this.inNamespace([this.nftCommand, '-i']);
  }

  /**
   * Reads nodenet's maps and sets (in parallel), of the families the base has (all before the first
   * ensureBase); an absent table, map or set reads as null (published_host_ports alone absent, as in tables a
   * previous version made and ensureBase has not converged yet: no elements).
   */
  private async readElements(step: string): Promise<ListedElements> {
    const families = this.families ?? ['ip', 'ip6', 'bridge'];
    const v4 = families.includes('ip');
    const v6 = families.includes('ip6');
    // -p: protocols as numbers (6, 17); by name, nft reads /etc/protocols once per element (8,000 opens at 2,000 instances).
    const [ports, hostPorts, sources, ports6, hostPorts6, sources6, targets] = await Promise.all([
      v4 ? this.list(['map', 'ip', TABLE, PUBLISHED_PORTS], step, ['-p']) : null,
      v4 ? this.list(['map', 'ip', TABLE, PUBLISHED_HOST_PORTS], step, ['-p']) : null,
      this.list(['set', 'bridge', TABLE, ALLOWED_SOURCES], step),
      v6 ? this.list(['map', 'ip6', TABLE, PUBLISHED_PORTS], step, ['-p']) : null,
      v6 ? this.list(['map', 'ip6', TABLE, PUBLISHED_HOST_PORTS], step, ['-p']) : null,
      v6 ? this.list(['set', 'bridge', TABLE, ALLOWED_SOURCES6], step) : null,
      v6 ? this.list(['set', 'bridge', TABLE, ND_TARGETS], step) : null,
    ]);
    const join = <T>(a: readonly T[] | null, b: readonly T[] | null): T[] | null =>
      a === null && b === null ? null : [...(a ?? []), ...(b ?? [])];
    // A family's ports: its published_ports, and its published_host_ports when present.
    const familyPorts = (every: string | null, onOne: string | null): ListedPort[] | null => {
      const everyAddress = every === null ? null : parsePublishedPorts(every);
      return everyAddress === null ? null : [...everyAddress, ...((onOne === null ? null : parsePublishedHostPorts(onOne)) ?? [])];
    };
    return {
      publishedPorts: join(familyPorts(ports, hostPorts), familyPorts(ports6, hostPorts6)),
      allowedSources: join(
        sources === null ? null : parseAllowedSources(sources),
        sources6 === null ? null : parseAllowedSources6(sources6, targets),
      ),
    };
  }

  /**
   * Reads what ensureBase compares: both tables with `-t` (terse: declarations and rules, no elements, so
   * the output does not grow with instances) and cluster_subnets' elements, in three parallel processes
   * (nft 1.0.6 misreads several `list` commands in one `-f` script).
   */
  private async readBase(step: string, families: readonly Family[]): Promise<ListedBase> {
    const tables = await Promise.all(families.map((f) => this.list(['table', f, TABLE], step, ['-t'])));
    const subnetFamilies = families.filter((f): f is 'ip' | 'ip6' => f !== 'bridge');
    const subnets = await Promise.all(subnetFamilies.map((f) => this.list(['set', f, TABLE, CLUSTER_SUBNETS], step)));
    const shape: Partial<Record<Family, TableShape | null>> = {};
    families.forEach((f, i) => (shape[f] = tables[i] === null ? null : parseTableShape(tables[i]!, f)));
    return {
      shape: { bridge: null, ...shape },
      subnets: Object.fromEntries(subnetFamilies.map((f, i) => [f, subnets[i] === null ? null : parseSubnetElements(subnets[i]!)])),
    };
  }

  /** `nft -j [flags] list WHAT...`; null when the table or object is absent. */
  private async list(what: readonly string[], step: string, flags: readonly string[] = []): Promise<string | null> {
    const args = ['-j', ...flags, 'list', ...what];
    const r = await this.exec(this.nftCommand, args, { step: `${step}: list ${what.join(' ')}`, okExitCodes: [1] });
    if (r.exitCode === 0) return r.stdout;
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new CommandError(step, [this.nftCommand, ...args].join(' '), r.exitCode, r.stderr);
  }

  private referenceCache: Reference | null = null;
  /** Why the last attempt to build a reference failed (for the repair report). */
  private referenceFailure = '';

  /**
   * The reference ensureBase compares with: the tables exactly as this kernel and this nft hold them after
   * the install script ran into empty tables. Built once per base (per daemon lifetime) by running the
   * script in a throw-away network namespace (`unshare --net`) with `--echo`, which prints every object
   * the transaction added as the kernel reports it back, i.e. in the form a listing has. Null when no
   * scratch namespace can be made here (no unshare, no CAP_SYS_ADMIN).
   */
  private async reference(base: NftBase, step: string): Promise<BaseShape | null> {
    const key = referenceKey(base);
    if (this.referenceCache?.key === key) return this.referenceCache.shape;
    // The script goes through a file: with -j, `nft -f -` reads stdin as JSON and, that failing, parses an
    // empty rest as text; and under `unshare --net` stdin cannot be reopened when it is a socket (Node's pipes).
    let dir: string | undefined;
    let args: string[];
    let r: RunResult;
    try {
      dir = await mkdtemp(join(tmpdir(), 'nodenet-nft-'));
      const file = join(dir, 'base.nft');
      args = ['--net', '--', this.nftCommand, '-j', '--echo', '-f', file];
      await writeFile(file, key, { mode: 0o600 });
      r = await run('unshare', args, { step: `${step}: build the reference in a scratch namespace`, okExitCodes: [1, 127] });
    } catch (e) {
      this.referenceFailure = e instanceof Error ? e.message : String(e);
      this.logger.warn(
        { step, err: this.referenceFailure },
        'cannot build the nftables reference in a scratch namespace; ensureBase will rewrite the chains once',
      );
      return null;
    } finally {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    }
    if (r.exitCode !== 0) {
      if (/failed to execute .*: No such file or directory/.test(r.stderr)) throw notInstalled(this.nftCommand);
      this.referenceFailure = `unshare ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim()}`;
      this.logger.warn(
        { step, err: this.referenceFailure },
        'cannot build the nftables reference in a scratch namespace; ensureBase will rewrite the chains once',
      );
      return null;
    }
    const echoed = parseEchoShapes(r.stdout);
    const families = baseLayout(base).map((t) => t.family);
    const shape: BaseShape = { bridge: echoed.bridge, ...Object.fromEntries(families.map((f) => [f, echoed[f] ?? null])) };
    if (families.some((f) => !shape[f]))
      throw new CommandError(
        step,
        `unshare ${args.join(' ')}`,
        0,
        `the echo of the install script lacks a table: ${r.stdout.slice(0, 300)}`,
      );
    this.referenceCache = { key, shape };
    return shape;
  }

  /** Takes nodenet's own objects in `listed` (just written by nodenet) as the reference for `base`. */
  private adoptReference(base: NftBase, listed: BaseShape): void {
    const layout = baseLayout(base);
    const restrict = (family: Family) => {
      const table = listed[family];
      const want = layout.find((t) => t.family === family)!;
      return table === null || table === undefined
        ? null
        : restrictShape(
            table,
            want.chains.map((c) => c.name),
            want.sets.map((s) => s.name),
          );
    };
    const families = layout.map((t) => t.family);
    const shape: BaseShape = { bridge: restrict('bridge'), ...Object.fromEntries(families.map((f) => [f, restrict(f)])) };
    if (families.every((f) => shape[f])) this.referenceCache = { key: referenceKey(base), shape };
  }

  /**
   * `command` as run in the node namespace. nsenter only enters the network namespace (and execs the
   * command: same process): half the cost of `ip netns exec`, which also sets up a mount namespace for
   * /etc/netns and /sys that nft and conntrack do not need.
   */
  private inNamespace(command: readonly string[]): string[] {
    if (this.netns === undefined) return [...command];
    return ['nsenter', `--net=${netnsPath(this.netns)}`, '--', ...command];
  }

  /**
   * Runs a one-shot nft or conntrack in the node namespace (through runLean: conntrack runs on each delete);
   * a command missing there is UNAVAILABLE, as it is outside.
   */
  private async exec(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    if (this.netns === undefined) return runLean(file, args, options);
    const [inFile, ...inArgs] = this.inNamespace([file, ...args]);
    let result: RunResult;
    try {
      result = await runLean(inFile!, inArgs, options);
    } catch (e) {
      if (e instanceof CommandError && missingCommand(e.stderr)) throw notInstalled(file, e);
      throw e;
    }
    if (result.exitCode !== 0 && missingCommand(result.stderr)) throw notInstalled(file);
    return result;
  }
}

/** The reference depends on the base's CNI name and subnet only (rules), not on the cluster's subnets. */
function referenceKey(base: NftBase): string {
  return ensureBaseScript({ ...base, clusterSubnets: [] });
}

function isNftError(e: unknown, pattern: RegExp): e is CommandError {
  return e instanceof CommandError && pattern.test(e.stderr);
}

/** How nsenter and env report a command they cannot execute. */
function missingCommand(stderr: string): boolean {
  return /nsenter: failed to execute .*: No such file or directory/.test(stderr);
}

function addressesOf(rules: InstanceRules): string {
  return [rules.ipv4, rules.ipv6].filter((a) => a !== undefined).join(' and ');
}

function addStep(rules: InstanceRules): string {
  return `publish the ports of ${addressesOf(rules)} and admit it on ${rules.hostIfname}`;
}

function removeStep(rules: InstanceRules): string {
  return `remove the published ports of ${addressesOf(rules)} and its admission on ${rules.hostIfname}`;
}
