/**
 * The iproute2 backend: the CNI is a Linux bridge, an instance is a veth pair (host end on the bridge) or a
 * TAP on the bridge. Every change is one `ip -batch -` per namespace; kernel state is read as `ip -j` JSON,
 * and only where a decision needs it (never on the happy path of createInstance).
 */
import {
  CNI_NAME,
  FailedPreconditionError,
  InvalidArgumentError,
  OWNER_ALIAS_PREFIX,
  netnsPath,
  parseNetnsRef,
  silentLogger,
  type CniRecord,
  type CniSpec,
  type Dataplane,
  type IfName,
  type InstancePlacement,
  type InstanceRecord,
  type InstanceSpec,
  type IpAddress,
  type Ipv6Address,
  type LinkState,
  type Logger,
  type NetnsRef,
  type Repairs,
} from '@nodenet/core';
import { GroupCommitter } from '@nodenet/sys';
import {
  HelperUnusableError,
  IpBatchError,
  IpRunner,
  IpSession,
  LINE,
  NetnsConfigurator,
  cniSysctls,
  configureInstanceEnd,
  deleteInstanceScript,
  deleteLinkScript,
  deleteLinksScript,
  deleteTolerant,
  describeSysctlRepair,
  explainLinkFailure,
  explainNamespaceFailure,
  failedAt,
  identifyNamespace,
  parseIpAddrs,
  parseIpLinks,
  pickUnusedGroup,
  readSysctls,
  repairCniScript,
  sysctlDrift,
  writeSysctls,
  type IpLine,
  type IpLink,
  type IpLinkWithAddresses,
} from '@nodenet/linux';
import {
  CNI_OWNER_ALIAS,
  attachPortScript,
  classifyForDeletion,
  createCniScript,
  ownedLinksOf,
  tapScript,
  vethScript,
  type OwnedLink,
} from './scripts.js';
import { CniBridgeSet } from './cni-bridge-set.js';

export interface Iproute2DataplaneOptions {
  /** The node namespace to manage: a name under /run/netns or a path. Default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
  /** The namespace configurator's command line (default: perl and helpers/netns-netlink.pl); for tests. */
  readonly netnsHelper?: readonly [string, ...string[]];
  /** Instance ports per bridge before the next overflow bridge is used (default 1,000; see cni-bridges.ts); small in tests. */
  readonly portsPerBridge?: number;
}

export class Iproute2Dataplane implements Dataplane {
  readonly name = 'iproute2';
  /** Instance ports are Linux bridge ports: the bridge family's hooks see their frames. */
  readonly instancePorts = 'linux-bridge' as const;
  private readonly nodeNetns: NetnsRef | undefined;
  private readonly node: IpRunner;
  /** Node-side link work of creates (see IpSession). */
  private readonly createSession: IpSession;
  /**
   * Deletes get their own session: deleting a link waits ~20 ms in the kernel (an RCU grace period), which
   * would hold up the creates queued behind it in a shared one.
   */
  private readonly deleteSession: IpSession;
  /** Addresses instance ends inside their namespaces without a process per instance (see NetnsConfigurator). */
  private readonly configurator: NetnsConfigurator;
  /** Concurrent deletes share one link-group deletion, i.e. one grace period (see deleteLinksScript). */
  private readonly deletes = new GroupCommitter<DeletedInstance>((items) => this.deleteInstancesNow(items));
  private readonly logger: Logger;
  /** Which of the CNI's bridges each instance port goes on, and the overflow bridges (see cni-bridges.ts). */
  private readonly bridges: CniBridgeSet;

  constructor(options: Iproute2DataplaneOptions = {}) {
    this.nodeNetns = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.node = new IpRunner(this.nodeNetns);
    this.createSession = new IpSession(this.nodeNetns);
    this.deleteSession = new IpSession(this.nodeNetns);
    this.logger = options.logger ?? silentLogger;
    this.configurator = new NetnsConfigurator(this.nodeNetns, this.logger, options.netnsHelper);
    this.bridges = new CniBridgeSet(
      this.node,
      CNI_NAME,
      options.portsPerBridge,
      this.logger,
      () => this.resetSessions(),
      (name, step) => this.deleteQuietly(name, step),
    );
  }

  /** Ends the long-lived `ip` processes (they also end with the daemon). */
  async close(): Promise<void> {
    this.createSession.close();
    this.deleteSession.close();
    this.configurator.close();
  }

  /** The sessions may hold the index of a CNI bridge that is no more (see IpSession). */
  private resetSessions(): void {
    this.createSession.reset();
    this.deleteSession.reset();
  }

  // ---------------------------------------------------------------------------------------------------
  // CNI

  /**
   * Happy path (nothing drifted): one `ip -j -d addr show dev NAME` (kind, alias, MAC, MTU, flags and
   * addresses in one read) and, side by side, the sysctls (/proc/sys files in the own namespace, one
   * `sysctl` in another); nothing is written.
   */
  async ensureCni(spec: CniSpec): Promise<Repairs> {
    const sysctls = cniSysctls(spec.name, spec.ipv6 !== undefined);
    const [current, sysctlValues] = await Promise.all([
      this.readLinkWithAddresses(spec.name, `read ${spec.name}`),
      readSysctls(this.nodeNetns, sysctls, `read forwarding and ${spec.name} settings`),
    ]);
    const repairs: string[] = [];
    let drift = sysctlDrift(sysctls, sysctlValues);
    if (current === null) {
      const lines = createCniScript(spec);
      try {
        await this.node.batch(lines, { step: `create the CNI bridge ${spec.name}` });
      } catch (e) {
        // The bridge did not exist a moment ago: whatever the batch made of it is ours to remove.
        if (!failedAt(e, LINE.createBridge)) await this.deleteQuietly(spec.name, 'remove the half-made CNI bridge');
        throw e;
      }
      this.resetSessions();
      repairs.push(`${spec.name} was missing: created`);
      // Its own settings were absent a moment ago: they are part of creating it, written without a report line.
      repairs.push(...drift.filter((d) => d.found !== undefined).map(describeSysctlRepair));
    } else {
      assertOwnCni(current, spec.name);
      const fixes = repairCniScript(spec, current);
      if (fixes.length > 0) {
        await this.node.batch(
          fixes.map((f) => f.line),
          { step: `repair the CNI bridge ${spec.name}` },
        );
        this.resetSessions();
        repairs.push(...fixes.map((f) => f.found));
      }
      // An optional key that does not exist (IPv6 off in this kernel) is fine as it is.
      drift = drift.filter((d) => !(d.setting.optional && d.found === undefined));
      repairs.push(...drift.map(describeSysctlRepair));
    }
    await writeSysctls(
      this.nodeNetns,
      drift.map((d) => d.setting),
      `set forwarding and ${spec.name} settings`,
    );
    // Overflow bridges exist only past 1,000 instances; checked once any is known, or when the CNI bridge was
    // just made again (which took the pairs' ends off it).
    repairs.push(...(await this.bridges.converge(spec, current === null)));
    if (current === null)
      this.logger.info(
        { cni: spec.name, gateway: spec.ipv4?.gateway, ipv6Gateway: spec.ipv6?.gateway, mtu: spec.mtu, repairs },
        'CNI bridge created',
      );
    else if (repairs.length > 0) this.logger.warn({ cni: spec.name, repairs }, 'CNI bridge or its settings had drifted and were repaired');
    return repairs;
  }

  async deleteCni(name: IfName): Promise<void> {
    const links = parseIpLinks((await this.node.json(['link', 'show'], `list the links of ${name}`)) ?? []);
    const link = links.find((l) => l.ifname === name);
    if (link === undefined) return;
    if (link.alias !== CNI_OWNER_ALIAS) {
      this.logger.warn({ cni: name, alias: link.alias ?? null }, "not deleting a link that is not nodenet's CNI");
      return;
    }
    await this.deleteTolerant([...this.bridges.deleteAll(links), ...deleteLinkScript(name)], `delete the CNI bridge ${name}`);
    this.resetSessions();
  }

  // ---------------------------------------------------------------------------------------------------
  // Instances

  async createInstance(spec: InstanceSpec): Promise<InstancePlacement> {
    const started = performance.now();
    if (spec.kind === 'tap') {
      if (spec.netns !== undefined) {
        throw new InvalidArgumentError('netns', 'a TAP stays on the node as the bridge port of its VM: leave netns out for kind TAP');
      }
    } else if (spec.kind !== 'veth') {
      throw new InvalidArgumentError('kind', `'${String(spec.kind)}' is not an interface kind this backend makes: use veth or tap`);
    }
    let placement: InstancePlacement = {};
    let port = await this.bridges.place(spec.hostIfname, spec.cni);
    for (let attempt = 1; ; attempt++) {
      try {
        if (spec.kind === 'tap') await this.createOnNode(spec, tapScript(spec, port.bridge), port.bridge);
        else if (spec.netns !== undefined) placement = await this.createVethInNamespace(spec, spec.netns, port.bridge);
        else await this.createOnNode(spec, vethScript(spec, undefined, port.bridge), port.bridge);
        break;
      } catch (e) {
        this.bridges.release(spec.hostIfname);
        // Placed once more when the bridge was the problem (full of other software's ports, or deleted).
        if (attempt > 1 || !this.bridges.refusedBecauseOfBridge(port, e)) throw e;
        this.resetSessions();
        port = await this.bridges.place(spec.hostIfname, spec.cni);
      }
    }
    this.logger.debug(
      {
        handle: spec.handle,
        kind: spec.kind,
        netns: spec.netns ?? null,
        bridge: port.bridge,
        ms: Math.round((performance.now() - started) * 10) / 10,
      },
      'instance interface created',
    );
    return placement;
  }

  /** Runs the node-side script; on failure removes what it made (unless nothing was made) and throws a precise error. */
  private async createOnNode(spec: InstanceSpec, lines: IpLine[], bridge: string): Promise<void> {
    const step = `create ${spec.kind} ${spec.handle}`;
    try {
      try {
        await this.createSession.batch(lines, { step });
      } catch (e) {
        // Nothing was made; the session may have named the CNI by an index that is gone (a bridge recreated
        // behind its back): ask a fresh `ip` before reporting.
        if (!failedAt(e, LINE.createLink)) throw e;
        this.resetSessions();
        await this.node.batch(lines, { step });
      }
    } catch (e) {
      if (!failedAt(e, LINE.createLink)) await this.deleteQuietly(spec.hostIfname, `roll back ${spec.hostIfname}`);
      throw await this.explainNodeFailure(spec, e, bridge);
    }
  }

  /**
   * One request to the namespace configurator makes the pair (the instance end created in the target
   * namespace), tags and attaches the node end, and names, addresses and routes the instance end. Where
   * the helper cannot run, two processes do it: the node-side `ip` batch, then `nsenter --net ... ip -batch`
   * in the namespace. The namespace's identity is read (a stat, no process) before the move, so it names the
   * namespace the link went into.
   */
  private async createVethInNamespace(spec: InstanceSpec, netns: NetnsRef, bridge: string): Promise<InstancePlacement> {
    const target = netnsPath(netns);
    // Read again here (core read it before the create): a namespace replaced since then shows another id.
    const netnsId = await identifyNamespace(netns);
    if (this.configurator.usable) {
      try {
        await this.configurator.createVeth(spec, target, bridge, vethScript(spec, target, bridge));
        return { netnsId };
      } catch (e) {
        if (!(e instanceof HelperUnusableError)) {
          const nodeSide = failedAt(e, LINE.createLink) || failedAt(e, LINE.attachLink);
          // Nothing was made when the pair itself was refused (a name taken must not lose its owner's link).
          if (!failedAt(e, LINE.createLink)) await this.deleteQuietly(spec.hostIfname, `roll back ${spec.hostIfname}`);
          throw nodeSide ? await this.explainNodeFailure(spec, e, bridge) : explainNamespaceFailure(spec, netns, e);
        }
        // The helper cannot run here (it changed nothing): the two-process way below.
      }
    }
    await this.createOnNode(spec, vethScript(spec, target, bridge), bridge);
    try {
      await configureInstanceEnd(this.configurator, spec, target);
    } catch (e) {
      await this.deleteQuietly(spec.hostIfname, `roll back ${spec.hostIfname}`);
      throw e;
    }
    return { netnsId };
  }

  /**
   * The Linux layer's explanations (@nodenet/linux explainLinkFailure: the CNI or the namespace missing, a
   * name taken), plus what only a Linux bridge refuses: a port past its 1,023 (the ovs backend's switch has
   * no such limit, so this case stays here, on purpose).
   */
  private async explainNodeFailure(spec: InstanceSpec, e: unknown, bridge: string): Promise<unknown> {
    const explained = await explainLinkFailure(spec, e);
    if (explained !== e || !(e instanceof IpBatchError)) return explained;
    // The kernel caps a bridge at 1,023 ports (BR_MAX_PORTS); the next port is refused with EXFULL.
    if (/Exchange full/.test(e.detail)) {
      const cni = spec.cni.name;
      const which = bridge === cni ? `the CNI bridge ${cni}` : `${bridge}, an overflow bridge of ${cni},`;
      return new FailedPreconditionError(
        `${which} already has the most ports a Linux bridge can hold (1,023): delete an interface first, or run more instances on other nodes`,
        { cause: e },
      );
    }
    return e;
  }

  async deleteInstance(record: InstanceRecord, cni: CniRecord): Promise<void> {
    await this.deletes.submit({
      handle: record.handle,
      hostIfname: record.hostIfname,
      address: record.address,
      ...(record.ipv6Address ? { ipv6Address: record.ipv6Address } : {}),
      cniName: cni.name,
    });
    this.bridges.release(record.hostIfname);
  }

  /**
   * One instance: its link and neighbour entry, directly. Several at once: one link-group deletion, after
   * one listing of the links to find a group no link is in.
   */
  private async deleteInstancesNow(items: readonly DeletedInstance[]): Promise<void> {
    if (items.length === 1) {
      const item = items[0]!;
      await this.deleteTolerant(deleteInstanceScript(item, item.cniName), `delete interface ${item.handle}`, this.deleteSession);
      return;
    }
    const links = parseIpLinks((await this.node.json(['link', 'show'], 'list links to delete instances together')) ?? []);
    const lines = [
      ...deleteLinksScript(
        items.map((i) => i.hostIfname),
        pickUnusedGroup(links),
      ),
      ...items.flatMap((i) => deleteInstanceScript(i, i.cniName).filter((l) => l.id !== LINE.deleteLink)),
    ];
    await this.deleteTolerant(lines, `delete ${items.length} interfaces`, this.deleteSession);
  }

  async inspectLink(name: IfName): Promise<LinkState | null> {
    const link = await this.readLink(name, `inspect ${name}`, false);
    if (link === null) return null;
    return { name: link.ifname, ...(link.alias?.startsWith(OWNER_ALIAS_PREFIX) ? { ownerTag: link.alias } : {}) };
  }

  /**
   * One `ip -j -d link show` (-d for the kind); each link also says its kind, master and operstate. The
   * overflow bridges stay out of it and their ports show the CNI as master (see ownedLinksOf). The first
   * listing also tells where the instance ports are (see BridgePlacement), sparing the first create a read.
   */
  async listOwnedLinks(): Promise<OwnedLink[]> {
    const listing = this.bridges.listingStarts();
    const json = await this.node.json(['-d', 'link', 'show'], "list nodenet's links");
    const links = parseIpLinks(json ?? []);
    this.bridges.noteListing(links, listing);
    return ownedLinksOf(links, CNI_NAME);
  }

  /**
   * Re-reads the links first (one `ip -j link show`) and deletes only those that still carry nodenet's tag,
   * in one `ip -force -batch`. Deleting is destructive in a namespace other software shares, and this runs
   * only when orphans were found, so the read is cheap insurance against a caller's mistake or a name that
   * changed hands since it was listed. Names not there are fine; untagged ones are skipped with a warning.
   */
  async deleteOwnedLinks(names: readonly IfName[]): Promise<void> {
    if (names.length === 0) return;
    // -d: the kind tells a TAP cut short before its tag (see ownerTagOf).
    const links = parseIpLinks((await this.node.json(['-d', 'link', 'show'], "list nodenet's links before deleting")) ?? []);
    const { owned, foreign, absent } = classifyForDeletion(names, links);
    for (const f of foreign) {
      this.logger.warn({ link: f.name, alias: f.alias ?? null }, "not deleting a link that does not carry nodenet's owner tag");
    }
    if (absent.length > 0) this.logger.debug({ links: absent }, 'links to delete were already gone');
    if (owned.length === 0) return;
    await this.deleteTolerant(deleteLinksScript(owned, pickUnusedGroup(links)), `delete ${owned.length} orphaned link(s)`);
    for (const name of owned) this.bridges.release(name);
    this.logger.info({ links: owned }, 'orphaned links deleted');
  }

  async attachToCni(hostIfname: IfName, cni: CniSpec): Promise<void> {
    const { bridge } = await this.bridges.place(hostIfname, cni);
    try {
      await this.node.batch(attachPortScript(hostIfname, cni, bridge), { step: `attach ${hostIfname} to ${bridge}` });
    } catch (e) {
      this.bridges.release(hostIfname);
      throw e;
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // Helpers

  private async readLink(name: string, step: string, details: boolean): Promise<IpLink | null> {
    const json = await this.node.json([...(details ? ['-d'] : []), 'link', 'show', 'dev', name], step);
    return json === null ? null : (parseIpLinks(json)[0] ?? null);
  }

  private async readLinkWithAddresses(name: string, step: string): Promise<IpLinkWithAddresses | null> {
    const json = await this.node.json(['-d', 'addr', 'show', 'dev', name], step);
    return json === null ? null : (parseIpAddrs(json)[0] ?? null);
  }

  /** Runs delete lines with -force (see @nodenet/linux deleteTolerant): absence is success, every other failure is reported. */
  private deleteTolerant(lines: IpLine[], step: string, via: IpRunner | IpSession = this.node): Promise<void> {
    return deleteTolerant(via, lines, step);
  }

  /** Roll-back helper: never throws (the original error is what the caller reports), logs what it could not undo. */
  private async deleteQuietly(name: string, step: string): Promise<void> {
    try {
      await this.deleteTolerant(deleteLinkScript(name), step);
    } catch (e) {
      this.logger.error({ link: name, step, err: (e as Error).message }, 'roll-back failed: the link may be left behind');
    }
  }
}

/** What deleting an instance's node side needs. */
interface DeletedInstance {
  readonly handle: IfName;
  readonly hostIfname: IfName;
  readonly address: IpAddress;
  readonly ipv6Address?: Ipv6Address;
  readonly cniName: IfName;
}

function assertOwnCni(link: IpLinkWithAddresses, name: string): void {
  const kind = link.linkinfo?.kind;
  if (kind !== 'bridge') {
    throw new FailedPreconditionError(
      `a link named ${name} already exists on this node and is not a bridge (it is ${kind ? `a ${kind} link` : 'of unknown kind'}): nodenet needs that name for its CNI bridge; remove or rename that link`,
    );
  }
  if (link.alias !== CNI_OWNER_ALIAS) {
    throw new FailedPreconditionError(
      `a bridge named ${name} already exists on this node but was not made by nodenet (its alias is ${link.alias ? `'${link.alias}'` : 'unset'}, not '${CNI_OWNER_ALIAS}'): remove or rename it; if it is nodenet's from before ownership tags, run ip link set dev ${name} alias ${CNI_OWNER_ALIAS}`,
    );
  }
}
