/**
 * PacketFilter on nftables: published ports (DNAT through one map), masquerade, anti-spoofing on the CNI's
 * ports (bridge family) and connection-tracking cleanup. Each change is one `nft -f -` process, committed
 * by the kernel as one transaction; the ruleset has a fixed number of rules, instances only add elements.
 */
import {
  UnavailableError,
  parseIpv4Address,
  parseNetnsRef,
  silentLogger,
  type FilterBase,
  type InstanceRules,
  type Ipv4Address,
  type Logger,
  type NetnsRef,
  type PacketFilter,
} from '@nodenet/core';
import { CommandError, run, type RunOptions, type RunResult } from '@nodenet/sys';
import { CONNTRACK_ATTEMPTS, CONNTRACK_FILTERS, conntrackOutcome } from './conntrack.js';
import { parseAllowedSources, parsePublishedPorts } from './listing.js';
import {
  TABLE,
  addInstanceScript,
  checkedRules,
  conflictingKeys,
  ensureBaseScript,
  removeBaseScript,
  removeInstanceScript,
  removeListedScript,
  type ListedElements,
} from './script.js';

export interface NftPacketFilterOptions {
  /** The node namespace to manage (a name under /run/netns or a path); default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
  /** The commands to run; default `nft` and `conntrack` (tests point these at missing binaries). */
  readonly commands?: { readonly nft?: string; readonly conntrack?: string };
}

const PACKAGE_OF: Record<string, string> = { nft: 'nftables', conntrack: 'conntrack' };

export class NftPacketFilter implements PacketFilter {
  private readonly netns: NetnsRef | undefined;
  private readonly logger: Logger;
  private readonly nftCommand: string;
  private readonly conntrackCommand: string;

  constructor(options: NftPacketFilterOptions = {}) {
    this.netns = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.logger = options.logger ?? silentLogger;
    this.nftCommand = options.commands?.nft ?? 'nft';
    this.conntrackCommand = options.commands?.conntrack ?? 'conntrack';
  }

  async ensureBase(base: FilterBase): Promise<void> {
    await this.apply(ensureBaseScript(base), "install nodenet's nftables tables");
  }

  async removeBase(): Promise<void> {
    await this.apply(removeBaseScript(), "remove nodenet's nftables tables");
  }

  async addInstance(rules: InstanceRules): Promise<void> {
    const step = `publish the ports of ${rules.address} and admit it on ${rules.hostIfname}`;
    try {
      await this.apply(addInstanceScript(rules), step);
      return;
    } catch (e) {
      if (!isNftError(e, /File exists/)) throw e;
      // A host port of this instance is mapped to another address: a leftover, since core grants each host
      // port to one live instance. Replace it, in one transaction, after reading what holds it.
      const listed = await this.listElements(step);
      const stale = conflictingKeys(checkedRules(rules, step), listed.publishedPorts ?? []);
      if (stale.length === 0) throw e;
      this.logger.warn({ address: rules.address, stale }, 'replacing published ports left mapped to another address');
      await this.apply(addInstanceScript(rules, stale), step);
    }
  }

  async removeInstance(rules: InstanceRules): Promise<void> {
    const step = `remove the published ports of ${rules.address} and its admission on ${rules.hostIfname}`;
    try {
      await this.apply(removeInstanceScript(rules), step);
      return;
    } catch (e) {
      // "File exists": a host port of ours is now mapped to another address (leave that one alone).
      // "No such file or directory": a table or its map/set is gone (removeBase ran): nothing to remove.
      if (!isNftError(e, /File exists|No such file or directory/)) throw e;
    }
    const listed = await this.listElements(step);
    const script = removeListedScript(rules, listed);
    if (script !== '') await this.apply(script, step);
  }

  async flushConntrack(address: Ipv4Address): Promise<void> {
    const checked = parseIpv4Address(address, 'address');
    const step = `flush connection tracking of ${checked}`;
    // In parallel; allSettled so that no conntrack process is still running when this rejects.
    const results = await Promise.allSettled(CONNTRACK_FILTERS.map((filter) => this.conntrackDelete(filter, checked, step)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  private async conntrackDelete(filter: string, address: Ipv4Address, step: string): Promise<void> {
    const args = ['-D', filter, address];
    for (let attempt = 1; ; attempt++) {
      const r = await this.exec(this.conntrackCommand, args, { step, okExitCodes: [1] });
      const outcome = conntrackOutcome(r.exitCode, r.stderr);
      if (outcome === 'done') return;
      if (outcome === 'retry' && attempt < CONNTRACK_ATTEMPTS) continue;
      throw new CommandError(step, [this.conntrackCommand, ...args].join(' '), r.exitCode, r.stderr || r.stdout);
    }
  }

  /** Applies a script as one transaction. */
  private async apply(script: string, step: string): Promise<void> {
    const started = performance.now();
    await this.exec(this.nftCommand, ['-f', '-'], { step, input: script });
    this.logger.debug({ step, lines: script.split('\n').length - 1, ms: Math.round((performance.now() - started) * 10) / 10 }, 'nft transaction');
  }

  /** Reads nodenet's map and set (both tables in parallel); an absent table reads as null. */
  private async listElements(step: string): Promise<ListedElements> {
    const list = async (family: 'ip' | 'bridge'): Promise<string | null> => {
      const r = await this.exec(this.nftCommand, ['-j', 'list', 'table', family, TABLE], { step: `${step}: list table ${family} ${TABLE}`, okExitCodes: [1] });
      if (r.exitCode === 0) return r.stdout;
      if (/No such file or directory/.test(r.stderr)) return null;
      throw new CommandError(step, `${this.nftCommand} -j list table ${family} ${TABLE}`, r.exitCode, r.stderr);
    };
    const [ip, bridge] = await Promise.all([list('ip'), list('bridge')]);
    return {
      publishedPorts: ip === null ? null : parsePublishedPorts(ip),
      allowedSources: bridge === null ? null : parseAllowedSources(bridge),
    };
  }

  /** Runs a command in the node namespace; a command missing there is UNAVAILABLE, as run() makes it outside. */
  private async exec(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
    if (this.netns === undefined) return run(file, args, options);
    // nsenter only enters the network namespace: half the cost of `ip netns exec`, which also sets up a
    // mount namespace for /etc/netns and /sys that nft and conntrack do not need.
    const path = this.netns.startsWith('/') ? this.netns : `/run/netns/${this.netns}`;
    let result: RunResult;
    try {
      result = await run('nsenter', [`--net=${path}`, '--', file, ...args], options);
    } catch (e) {
      if (e instanceof CommandError && missingCommand(e.stderr)) throw unavailable(file, e);
      throw e;
    }
    if (result.exitCode !== 0 && missingCommand(result.stderr)) throw unavailable(file);
    return result;
  }
}

function isNftError(e: unknown, pattern: RegExp): e is CommandError {
  return e instanceof CommandError && pattern.test(e.stderr);
}

/** How nsenter reports a command it cannot execute. */
function missingCommand(stderr: string): boolean {
  return /nsenter: failed to execute .*: No such file or directory/.test(stderr);
}

function unavailable(file: string, cause?: unknown): UnavailableError {
  return new UnavailableError(`${file} is not installed on this node: install ${PACKAGE_OF[file] ?? file}`, cause === undefined ? undefined : { cause });
}
