/**
 * The Open vSwitch backend: the CNI is an OVS bridge whose internal port (named like the bridge) holds the
 * gateway address; an instance is a veth pair whose host end is a port of that bridge, or a TAP that is one.
 * Forwarding is OpenFlow (see flows.ts): L2 switching among the instances and the gateway, anti-spoofing per
 * port, routed delivery of traffic from other nodes. Everything nodenet creates in OVS carries its owner tag
 * in `external_ids`; the kernel devices carry the same tag as their alias.
 *
 * Instance ports (added, removed, put back by repairs) are OVSDB transactions on one long-lived session,
 * their flows bundles on one OpenFlow connection per bridge (OvsRunner, OvsSession); bridges run ovs-vsctl
 * and the flow comparison ovs-ofctl. The kernel goes through `ip`: a create's and a delete's node-side
 * lines through long-lived `ip` sessions (@nodenet/linux's IpSession), the rest with `ip -batch`. A create
 * runs the kernel lines, then the port transaction beside the instance's namespace setup, while its flows
 * are written from the start (the port's number is requested, so they need not wait for it).
 */
import {
  CNI_NAME,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  HANDLE_PREFIX,
  OWNER_ALIAS_PREFIX,
  instanceAddressesOfRecord,
  instanceRecordFields,
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
import {
  IpRunner,
  IpSession,
  LINE,
  NetnsConfigurator,
  cniSysctls,
  commandInNamespace,
  configureInstanceEnd,
  deleteInstanceScript,
  deleteLinkScript,
  deleteLinksScript,
  deleteTolerant,
  describeSysctlRepair,
  explainLinkFailure,
  failedAt,
  identifyNamespace,
  namespaceMissing,
  ownerAliasOf,
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
  tapLines,
} from '@nodenet/linux';
import { GroupCommitter, run } from '@nodenet/sys';
import {
  COOKIE_CLASS,
  addFlowsScript,
  baseFlows,
  deleteCookiesScript,
  formatFlow,
  instanceCookie,
  instanceFlows,
  parseFlowDiff,
  repairFlowsScript,
  type Flow,
} from './flows.js';
import {
  CNI_OWNER_TAG,
  DATAPATH_TYPES,
  EXT,
  TUNNEL_PORT,
  UPLINK_BRIDGE,
  instanceOwnerTag,
  ofportForInstance,
  type DatapathType,
} from './names.js';
import {
  addInstancePortCommands,
  addInstancePortOps,
  cniBridgeCommands,
  deleteBridgeCommands,
  deletePortCommands,
  instanceInterfacesOf,
  isPortExistsError,
  PORT_REGISTRY_PREFIX,
  quoted,
  registeredPortsOf,
  unregisterPortOps,
  readdPortCommands,
  type OvsBridge,
  type OvsPortIdentity,
  type OvsState,
} from './ovsdb.js';
import { OvsRunner } from './ovs-runner.js';
import type { Operation } from '@nodenet/openvswitch';
import { PORT_GUARD_TABLE, portGuardIsRight, portGuardScript } from './port-guard.js';
import { SharedLock } from './shared-lock.js';
import { ChecksumNamespaceError, TxChecksumSession } from './tx-checksum.js';

/** Where and how to reach Open vSwitch, and the node namespace: what every ovs backend object takes. */
export interface OvsOptions {
  /** The OVSDB remote (`unix:/var/run/openvswitch/db.sock`). */
  readonly db: string;
  /** ovs-vswitchd's run directory (where `BRIDGE.mgmt` sockets live). */
  readonly runDir: string;
  /** `system` (kernel datapath) or `netdev` (userspace datapath). */
  readonly datapathType: DatapathType;
  /** The node namespace to manage (a name under /run/netns or a path). Default: the process's own. */
  readonly netns?: string;
  readonly logger?: Logger;
  /** How long to wait for ovs-vswitchd to apply a change before UNAVAILABLE. Default 10 s. */
  readonly timeoutSeconds?: number;
}

export type OvsDataplaneOptions = OvsOptions;

/** Kernel kinds the CNI's internal port shows: `openvswitch` (kernel datapath) or `tun` (userspace datapath). */
const INTERNAL_PORT_KINDS = new Set(['openvswitch', 'tun']);

export class OvsDataplane implements Dataplane {
  readonly name = 'ovs';
  /** Instance ports are OVS switch ports, not Linux bridge ports: netfilter's bridge hooks never see their frames. */
  readonly instancePorts = 'switch' as const;
  readonly datapathType: DatapathType;
  private readonly nodeNetns: NetnsRef | undefined;
  private readonly node: IpRunner;
  /** Node-side link lines of creates (see IpSession). */
  private readonly createSession: IpSession;
  /**
   * Deletes get their own session: deleting a link waits ~20 ms in the kernel (an RCU grace period), which
   * would hold up the creates queued behind it in a shared one.
   */
  private readonly deleteSession: IpSession;
  /**
   * Concurrent deletes share one link-group deletion, i.e. one grace period (see deleteLinksScript): in
   * one session, deletes one by one would each wait for their own.
   */
  private readonly linkDeletes = new GroupCommitter<DeletedLink>((items) => this.deleteLinksNow(items));
  /**
   * The interface index of the CNI's gateway port when last seen. The delete session names that port
   * (neighbour flushes) and ip keeps the index it resolved: when the device is recreated (the bridge
   * recreated here or behind nodenet's back), a stale index would flush nothing, silently (measured); so
   * ensureCni resets the sessions when it sees a new index. (An ovs-vswitchd restart, by `exit` or kill,
   * keeps the device and its index: measured on the userspace datapath.)
   */
  private cniIfindex: number | undefined;
  private readonly ovs: OvsRunner;
  /** Names, addresses and routes instance ends in their namespaces without a process per create (@nodenet/linux). */
  private readonly configurator: NetnsConfigurator;
  private readonly flowLock = new SharedLock();
  private readonly logger: Logger;
  /**
   * netdev: instance ends left in the node namespace get their checksum offload turned off together, one
   * perl for all creates in flight (idempotent, so a failed group retried one by one is safe).
   */
  private readonly nodeTxChecksum = new GroupCommitter<IfName>((names) =>
    this.txChecksum.off(
      undefined,
      names,
      names.length === 1 ? `turn off checksum offload on ${names[0]}` : `turn off checksum offload on ${names.length} instance ends`,
    ),
  );
  /** netdev: the long-lived helper that turns checksum offload off (see tx-checksum.ts). */
  private readonly txChecksum: TxChecksumSession;

  constructor(options: OvsDataplaneOptions) {
    if (!DATAPATH_TYPES.includes(options.datapathType)) {
      throw new InvalidArgumentError(
        'ovs.datapathType',
        `'${String(options.datapathType)}' is not a datapath type: use system (kernel) or netdev (userspace)`,
      );
    }
    checkOvsOptions(options);
    this.datapathType = options.datapathType;
    this.nodeNetns = options.netns === undefined ? undefined : parseNetnsRef(options.netns, 'netns');
    this.node = new IpRunner(this.nodeNetns);
    this.createSession = new IpSession(this.nodeNetns);
    this.deleteSession = new IpSession(this.nodeNetns);
    this.ovs = new OvsRunner({
      db: options.db,
      runDir: options.runDir,
      ...(options.timeoutSeconds ? { timeoutSeconds: options.timeoutSeconds } : {}),
    });
    this.logger = options.logger ?? silentLogger;
    this.configurator = new NetnsConfigurator(this.nodeNetns, this.logger);
    this.txChecksum = new TxChecksumSession(this.nodeNetns);
  }

  /** Ends the long-lived `ip` processes (they also end with the daemon). */
  async close(): Promise<void> {
    this.createSession.close();
    this.deleteSession.close();
    this.configurator.close();
    this.txChecksum.close();
    this.ovs.close();
  }

  /** The sessions may hold the index of a gateway port that is no more (see cniIfindex). */
  private resetSessions(): void {
    this.createSession.reset();
    this.deleteSession.reset();
  }

  // ---------------------------------------------------------------------------------------------------
  // CNI

  /**
   * Converges the bridge (OVSDB columns and tags, its registered ports), the gateway port in the kernel
   * (address, MAC, MTU, up, tag), the sysctls, the switch-port guard (netdev) and the dataplane's flows.
   * Runs alone (the flow lock, exclusive: see SharedLock), so the one OVSDB read serves the flow comparison
   * too when nothing in OVSDB was changed. Happy path (nothing drifted): one OVSDB read, one
   * `ip -j -d addr show dev NAME`, one sysctl read, one `nft list table` (netdev) and one
   * `ovs-ofctl diff-flows` (the flow table against what OVSDB's ports call for); nothing is written.
   */
  ensureCni(spec: CniSpec): Promise<Repairs> {
    return this.flowLock.exclusive(() => this.convergeCni(spec));
  }

  private async convergeCni(spec: CniSpec): Promise<Repairs> {
    const sysctls = cniSysctls(spec.name, spec.ipv6 !== undefined);
    const [state, link, sysctlValues, guard] = await Promise.all([
      this.ovs.readState(`read OVSDB for ${spec.name}`),
      this.readLinkWithAddresses(spec.name),
      readSysctls(this.nodeNetns, sysctls, `read forwarding and ${spec.name} settings`),
      this.datapathType === 'netdev' ? this.readPortGuard() : Promise.resolve(null),
    ]);
    const repairs: string[] = [];
    const bridge = state.bridges.get(spec.name);
    let created = false;
    // The state the flows are computed from: the read above while nothing was written to OVSDB since.
    let flowState: OvsState | undefined = state;
    let current: IpLinkWithAddresses | null = link;
    if (bridge === undefined) {
      if (link !== null) assertOwnKernelLink(link, spec.name);
      await this.ovs.vsctl(cniBridgeCommands(spec, this.datapathType), `create the CNI bridge ${spec.name}`);
      created = true;
      flowState = undefined;
      repairs.push(`${spec.name} was missing: created`);
    } else {
      assertOwnBridge(bridge, spec.name);
      if (link === null) {
        await this.recreateBridge(spec, bridge, state);
        flowState = undefined;
        repairs.push(
          `the gateway port ${spec.name} was missing in the kernel: bridge ${spec.name} recreated with its ${bridge.interfaces.length - 1} port(s)`,
        );
        created = true;
      } else {
        const drift = bridgeDrift(spec, bridge, state, this.datapathType);
        if (drift.length > 0) {
          await this.ovs.vsctl(cniBridgeCommands(spec, this.datapathType), `repair the CNI bridge ${spec.name}`);
          repairs.push(...drift);
          flowState = undefined;
        }
        const ports = await this.restoreRegisteredPorts(spec, bridge, state);
        if (ports.wrote) flowState = undefined;
        repairs.push(...ports.repairs);
      }
    }
    if (created) current = await this.readLinkWithAddresses(spec.name);
    if (current === null) {
      throw new InternalError(
        `create the CNI bridge ${spec.name}`,
        `ovs-vswitchd reported the bridge ready but the kernel shows no ${spec.name}: check ovs-vswitchd's log`,
      );
    }
    if (current.ifindex !== this.cniIfindex) {
      this.resetSessions();
      this.cniIfindex = current.ifindex;
    }
    // The sysctls first: the kernel takes no IPv6 address on a port whose IPv6 is disabled (disable_ipv6=1, as
    // the port of an IPv4-only CNI has it).
    let drift = sysctlDrift(sysctls, sysctlValues);
    if (!created) drift = drift.filter((d) => !(d.setting.optional && d.found === undefined));
    if (!created) repairs.push(...drift.map(describeSysctlRepair));
    await writeSysctls(
      this.nodeNetns,
      drift.map((d) => d.setting),
      `set forwarding and ${spec.name} settings`,
    );
    const fixes = kernelFixes(spec, current);
    if (fixes.length > 0) {
      await this.node.batch(
        fixes.map((f) => f.line),
        { step: `configure the gateway port ${spec.name}` },
      );
      if (!created) repairs.push(...fixes.map((f) => f.found));
    }
    if (guard !== null && !portGuardIsRight(guard)) {
      await this.runNft(portGuardScript(guard !== ''), 'keep the kernel from routing what arrives on switch ports');
      if (!created) repairs.push(`table ${PORT_GUARD_TABLE} was ${guard === '' ? 'missing' : 'different'}: restored`);
    }
    repairs.push(...(await this.ensureFlows(spec, created, flowState)));

    if (created && bridge === undefined)
      this.logger.info(
        { cni: spec.name, gateway: spec.ipv4?.gateway, ipv6Gateway: spec.ipv6?.gateway, mtu: spec.mtu, datapath: this.datapathType },
        'CNI bridge created',
      );
    else if (repairs.length > 0) this.logger.warn({ cni: spec.name, repairs }, 'CNI bridge or its settings had drifted and were repaired');
    return repairs;
  }

  /**
   * Ports the bridge's registry names but OVSDB no longer has (removed on their own): put back, tagged, when
   * their kernel link is still there and carries the same handle; entries whose link is gone too are
   * dropped (the instance is missing: core repairs or releases it). Reads the kernel only when needed.
   */
  private async restoreRegisteredPorts(spec: CniSpec, bridge: OvsBridge, state: OvsState): Promise<{ repairs: string[]; wrote: boolean }> {
    const missing = registeredPortsOf(bridge).filter((r) => state.interfaces.get(r.name)?.bridge !== spec.name);
    if (missing.length === 0) return { repairs: [], wrote: false };
    const kernel = new Map((await this.readLinks('read the links of missing ports')).map((l) => [l.ifname, l]));
    const gone: string[] = [];
    const restored: { port: IfName; ops: Operation[] }[] = [];
    const repairs: string[] = [];
    for (const r of missing) {
      const link = kernel.get(r.name);
      if (link === undefined) {
        gone.push(r.name);
        continue;
      }
      if (link.alias !== instanceOwnerTag(r.handle) || (r.kind !== 'veth' && r.kind !== 'tap')) continue;
      const identity = portIdentityOfRecord({ ...r, kind: r.kind });
      const port = r.name as IfName;
      restored.push({ port, ops: addInstancePortOps(spec.name, port, identity, ofportForInstance(spec, identity.address)) });
      repairs.push(`port ${port} of ${r.handle} (${addressesText(identity)}) was missing from ${spec.name}: put back`);
    }
    const step = `restore the ports of ${spec.name}`;
    if (gone.length > 0) await this.ovs.transactOps(unregisterPortOps(spec.name, gone), step, { wait: false });
    if (restored.length > 0) {
      // A row of the same name on another bridge goes first, in a transaction of its own (see addPort);
      // the adds then share one transaction (group commit).
      await this.ovs.detachPorts(
        restored.map((r) => r.port),
        step,
      );
      await Promise.all(restored.map((r) => this.ovs.transactOps(r.ops, step)));
    }
    return { repairs, wrote: gone.length + restored.length > 0 };
  }

  /**
   * The kernel device of the bridge's internal port is gone (deleted behind OVS's back). OVS cannot reopen
   * it in place: the bridge is deleted and created again (two transactions), with its ports as they were.
   */
  private async recreateBridge(spec: CniSpec, bridge: OvsBridge, state: OvsState): Promise<void> {
    const ports = bridge.interfaces.filter((n) => n !== spec.name).flatMap((n) => state.interfaces.get(n) ?? []);
    await this.ovs.vsctl(deleteBridgeCommands(spec.name), `delete the CNI bridge ${spec.name} to recreate it`);
    const registry = Object.entries(bridge.externalIds)
      .filter(([k]) => k.startsWith(PORT_REGISTRY_PREFIX))
      .map(([k, v]) => `external_ids:${k}=${quoted(v)}`);
    await this.ovs.vsctl(
      [
        ...cniBridgeCommands(spec, this.datapathType),
        ...(registry.length > 0 ? ['--', 'set', 'Bridge', spec.name, ...registry] : []),
        ...readdPortCommands(spec.name, ports),
      ],
      `recreate the CNI bridge ${spec.name}`,
    );
    this.logger.warn(
      { cni: spec.name, ports: ports.map((p) => p.name) },
      'the gateway port had vanished from the kernel: CNI bridge recreated',
    );
  }

  /**
   * The dataplane's flows (base and instances, computed from OVSDB's tagged ports: `known`, or a fresh read)
   * against the bridge's table, compared by ovs-ofctl itself (diff-flows parses both sides, so formatting
   * never matters); differences in nodenet's dataplane classes are repaired in one bundle. Called under the
   * flow lock (exclusive). Comparing in this process instead (the flows' fingerprints over the bridge's
   * OpenFlow connection against the wanted flows encoded) measured 60-150 ms of the daemon's CPU for 6,000
   * flows against ovs-ofctl's 30 ms: the switch's dump costs both the same.
   */
  private async ensureFlows(spec: CniSpec, fresh: boolean, known: OvsState | undefined): Promise<string[]> {
    const state = known ?? (await this.ovs.readState(`read OVSDB for the flows of ${spec.name}`));
    const wanted = this.wantedFlows(spec, state);
    if (fresh) {
      // Nothing of the dataplane's is there yet: write, skip the comparison. Other owners' flows stay.
      await this.ovs.ofctl('add-flows', spec.name, ['--bundle', '-'], `install the flows of ${spec.name}`, addFlowsScript(wanted));
      return [];
    }
    const diff = parseFlowDiff(
      await this.ovs.diffFlows(spec.name, wanted.map(formatFlow).join('\n') + '\n', `compare the flows of ${spec.name}`),
    );
    const { script, removed, added } = repairFlowsScript(diff, [COOKIE_CLASS.base, COOKIE_CLASS.instance]);
    if (script === '') return [];
    await this.ovs.ofctl('add-flows', spec.name, ['--bundle', '-'], `repair the flows of ${spec.name}`, script);
    return [`flows of ${spec.name} differed from its ports: ${removed} removed, ${added} added`];
  }

  private wantedFlows(spec: CniSpec, state: OvsState): Flow[] {
    const flows = baseFlows({
      ...(spec.ipv4 ? { gateway: spec.ipv4.gateway } : {}),
      ...(spec.ipv6 ? { ipv6Gateway: spec.ipv6.gateway } : {}),
      gatewayMac: spec.mac,
    });
    for (const iface of instanceInterfacesOf(state, spec.name)) {
      const address = iface.externalIds[EXT.address];
      const ipv6Address = iface.externalIds[EXT.ipv6Address];
      const mac = iface.externalIds[EXT.mac];
      const handle = iface.externalIds[EXT.handle];
      // A port ovs-vswitchd could not open has no number (yet): its flows come once it has one.
      if (!address || !mac || !handle || iface.ofport === null || iface.ofport < 1) continue;
      flows.push(
        ...instanceFlows(
          { handle, ofport: iface.ofport, mac, ...instanceAddressesOfRecord({ address, ...(ipv6Address ? { ipv6Address } : {}) }) },
          spec.mac,
        ),
      );
    }
    return flows;
  }

  async deleteCni(name: IfName): Promise<void> {
    const state = await this.ovs.readState(`read OVSDB for ${name}`);
    const bridge = state.bridges.get(name);
    if (bridge === undefined) return;
    if (bridge.externalIds[EXT.owner] !== CNI_OWNER_TAG) {
      this.logger.warn({ cni: name }, "not deleting an Open vSwitch bridge that is not nodenet's CNI");
      return;
    }
    await this.ovs.vsctl(deleteBridgeCommands(name), `delete the CNI bridge ${name}`);
    this.resetSessions();
    this.cniIfindex = undefined;
  }

  // ---------------------------------------------------------------------------------------------------
  // Instances

  createInstance(spec: InstanceSpec): Promise<InstancePlacement> {
    if (spec.kind !== 'veth' && spec.kind !== 'tap') {
      return Promise.reject(
        new InvalidArgumentError('kind', `'${String(spec.kind)}' is not an interface kind this backend makes: use veth or tap`),
      );
    }
    if (spec.kind === 'tap' && spec.netns !== undefined) {
      return Promise.reject(
        new InvalidArgumentError('netns', 'a TAP stays on the node as the bridge port of its VM: leave netns out for kind TAP'),
      );
    }
    return this.flowLock.shared(() => this.create(spec));
  }

  private async create(spec: InstanceSpec): Promise<InstancePlacement> {
    const started = performance.now();
    const identity = portIdentityOf(spec);
    const ofport = ofportForInstance(spec.cni, identity.address);
    let target: NetnsRef | undefined;
    let netnsId: string | undefined;
    if (spec.netns !== undefined) {
      target = netnsPath(spec.netns);
      netnsId = await identifyNamespace(spec.netns);
    }
    // Milliseconds from the start at which each part was done (the debug log shows where a create's time goes).
    const at: Record<string, number> = {};
    const mark = (what: string) => void (at[what] = Math.round((performance.now() - started) * 10) / 10);
    let kernelMade = false;
    let portAdded = false;
    // Written first (no process to start): the port transaction waits for the link.
    const kernel = this.createSession.batch(spec.kind === 'tap' ? tapScript(spec) : vethScript(spec, target), {
      step: `create ${spec.kind} ${spec.handle}`,
    });
    // The flows can go in before the port exists: they name its requested number.
    const flowsWritten = ofport === undefined ? null : settle(this.writeInstanceFlows(spec, identity, ofport).then(() => mark('flows')));
    let instanceJob: Promise<unknown> = Promise.resolve();
    try {
      try {
        await kernel;
        kernelMade = true;
        mark('kernel');
      } catch (e) {
        kernelMade = !failedAt(e, LINE.createLink);
        throw await explainLinkFailure(spec, e);
      }
      // The port first: its transaction (waiting for ovs-vswitchd) is the longer part, and starting a
      // process holds up the event loop (~1-3 ms each), so the namespace's processes start after it.
      const portJob = this.addPort(spec, identity, ofport).then(() => {
        portAdded = true;
        mark('port');
      });
      instanceJob = this.prepareInstanceEnd(spec, target).then(() => mark('instance'));
      const [port, instance] = await Promise.allSettled([portJob, instanceJob]);
      if (port.status === 'rejected') throw await this.explainPortFailure(spec, port.reason);
      if (instance.status === 'rejected') throw instance.reason;
      if (flowsWritten) {
        const written = await flowsWritten;
        if (!written.ok) throw written.error;
      } else {
        await this.writeInstanceFlows(spec, identity, await this.readOfport(spec.hostIfname));
      }
    } catch (e) {
      // Nothing may still be running when the roll-back starts (a perl or ip in the namespace).
      await Promise.all([flowsWritten, settle(instanceJob)]);
      await this.rollBackCreate(spec, kernelMade, portAdded);
      throw e;
    }
    this.logger.debug(
      {
        handle: spec.handle,
        kind: spec.kind,
        netns: spec.netns ?? null,
        ofport: ofport ?? null,
        ms: Math.round((performance.now() - started) * 10) / 10,
        doneAtMs: at,
      },
      'instance interface created',
    );
    return netnsId === undefined ? {} : { netnsId };
  }

  /**
   * Adds the port. A row of that name left in OVSDB (its kernel link vanished: deleted behind nodenet's
   * back, or a reboot kept the database and not the link) is stale, since the link was just created under a
   * name only nodenet gives: it is removed first, in a transaction of its own, so that ovs-vswitchd opens the
   * new link instead of keeping the vanished one's (one transaction deleting and adding the same name is
   * applied as no change, measured). ovs-vswitchd, closing the stale row's device, writes back the flags it
   * last saw on the vanished link (down) to the new link of that name: the host end is brought up again.
   */
  private async addPort(spec: InstanceSpec, identity: OvsPortIdentity, ofport: number | undefined): Promise<void> {
    const bridge = spec.cni.name;
    const step = `add ${spec.hostIfname} to ${bridge}`;
    const add = () =>
      this.ovs.usesClients
        ? this.ovs.transactOps(addInstancePortOps(bridge, spec.hostIfname, identity, ofport), step)
        : this.ovs.transact(addInstancePortCommands(bridge, spec.hostIfname, identity, ofport), step);
    try {
      await add();
    } catch (e) {
      if (!isPortExistsError(e)) throw e;
      this.logger.info({ port: spec.hostIfname }, 'a stale OVSDB row of the port was replaced');
      await this.ovs.detachPorts([spec.hostIfname], `remove the stale port ${spec.hostIfname}`);
      await add();
      const up = `bring ${spec.hostIfname} up again`;
      await this.createSession.batch([{ id: 'host-up', args: ['link', 'set', 'dev', spec.hostIfname, 'up'], step: up }], { step: up });
    }
  }

  /**
   * netdev: checksum offload off on the instance end (see tx-checksum.ts); netns: name, address and route it
   * there, once the checksum is off (perl names the end by its handle, the configuration renames it),
   * through @nodenet/linux's namespace configurator: a request to a long-lived helper, no process per
   * create (`nsenter --net ip -batch` where the helper cannot run).
   */
  private async prepareInstanceEnd(spec: InstanceSpec, target: NetnsRef | undefined): Promise<void> {
    if (spec.kind !== 'veth') return;
    if (spec.netns === undefined || target === undefined) {
      if (this.datapathType === 'netdev') await this.nodeTxChecksum.submit(spec.handle);
      return;
    }
    if (this.datapathType === 'netdev') {
      try {
        await this.txChecksum.off(target, [spec.handle], `turn off checksum offload on ${spec.handle}`);
      } catch (e) {
        if (e instanceof ChecksumNamespaceError) throw namespaceMissing(spec.netns, target, e);
        throw e;
      }
    }
    await configureInstanceEnd(this.configurator, spec, target);
  }

  private writeInstanceFlows(spec: InstanceSpec, identity: OvsPortIdentity, ofport: number): Promise<void> {
    const flows = instanceFlows(flowSpecOf(identity, ofport), spec.cni.mac);
    return this.ovs.modifyFlows(spec.cni.name, addFlowsScript(flows), `install the flows of ${spec.handle}`);
  }

  /** The number ovs-vswitchd gave a port (only when none could be requested). */
  private async readOfport(name: IfName): Promise<number> {
    const n = await this.ovs.ofport(name, `read the port number of ${name}`);
    if (n === null || n < 1)
      throw new InternalError(
        `add ${name} to the CNI bridge`,
        `ovs-vswitchd gave ${name} no usable port number (${n ?? 'none'}): check its log`,
      );
    return n;
  }

  private async rollBackCreate(spec: InstanceSpec, kernelMade: boolean, portAdded: boolean): Promise<void> {
    const undo: Promise<unknown>[] = [
      this.deleteFlows(spec.cni.name, [instanceCookie(spec.handle)], `roll back the flows of ${spec.handle}`),
      // The port transaction may have committed even if waiting for ovs-vswitchd failed.
      this.deletePorts(spec.cni.name, [spec.hostIfname], `roll back port ${spec.hostIfname}`),
    ];
    if (kernelMade) undo.push(this.deleteTolerant(deleteLinkScript(spec.hostIfname), `roll back ${spec.hostIfname}`));
    const results = await Promise.allSettled(undo);
    for (const r of results) {
      if (r.status === 'rejected') {
        this.logger.error(
          { handle: spec.handle, portAdded, err: (r.reason as Error).message },
          'roll-back step failed: parts of the interface may be left behind (the reconcile loop removes orphans)',
        );
      }
    }
  }

  /**
   * The kernel link and the flows go first (side by side), the OVSDB row and its registry entry last: a
   * delete cut short (the daemon killed) then leaves either the whole instance, whose flows the reconcile
   * loop puts back from OVSDB, or a row without its link, which reads as a missing instance (recreated in
   * its namespace, or released); never a link that is no port, which nothing could tell from a working one.
   */
  async deleteInstance(record: InstanceRecord, cni: CniRecord): Promise<void> {
    await this.flowLock.shared(async () => {
      const results = await Promise.allSettled([
        this.linkDeletes.submit({
          handle: record.handle,
          hostIfname: record.hostIfname,
          address: record.address,
          ...(record.ipv6Address ? { ipv6Address: record.ipv6Address } : {}),
          cniName: cni.name,
        }),
        this.deleteFlows(cni.name, [instanceCookie(record.handle)], `remove the flows of ${record.handle}`),
      ]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      await this.deletePorts(cni.name, [record.hostIfname], `remove port ${record.hostIfname} from ${cni.name}`);
    });
  }

  /**
   * The kernel side of deletes: one instance's link and neighbour entry directly; several at once in one
   * link-group deletion, after one listing of the links to find a group no link is in.
   */
  private async deleteLinksNow(items: readonly DeletedLink[]): Promise<void> {
    if (items.length === 1) {
      const item = items[0]!;
      await this.deleteTolerant(deleteInstanceScript(item, item.cniName), `delete interface ${item.handle}`, this.deleteSession);
      return;
    }
    const links = await this.readLinks('list links to delete instances together');
    const lines = [
      ...deleteLinksScript(
        items.map((i) => i.hostIfname),
        pickUnusedGroup(links),
      ),
      ...items.flatMap((i) => deleteInstanceScript(i, i.cniName).filter((l) => l.id !== LINE.deleteLink)),
    ];
    await this.deleteTolerant(lines, `delete ${items.length} interfaces`, this.deleteSession);
  }

  /** Removes ports and their registry entries; without the bridge (gone already) just the ports. */
  private async deletePorts(bridge: string, ports: readonly string[], step: string): Promise<void> {
    if (this.ovs.usesClients) return this.ovs.removePorts(bridge, ports, step);
    try {
      await this.ovs.transact(deletePortCommands(bridge, ports), step, { wait: false });
    } catch (e) {
      if (!/no row "[^"]*" in table Bridge/.test((e as Error).message ?? '')) throw e;
      await this.ovs.transact(
        ports.flatMap((p) => ['--', '--if-exists', 'del-port', p]),
        step,
        { wait: false },
      );
    }
  }

  /** Deletes flows by cookie; a bridge that does not exist (any more) has none, which is fine. */
  private async deleteFlows(bridge: string, cookies: readonly bigint[], step: string): Promise<void> {
    if (cookies.length === 0) return;
    try {
      await this.ovs.modifyFlows(bridge, deleteCookiesScript(cookies), step);
    } catch (e) {
      if (OvsRunner.isUnreachable(e) && !(await this.bridgeExists(bridge))) return;
      throw e;
    }
  }

  private async bridgeExists(bridge: string): Promise<boolean> {
    return (await this.ovs.readState(`check whether bridge ${bridge} exists`)).bridges.has(bridge);
  }

  // ---------------------------------------------------------------------------------------------------
  // Ownership

  async inspectLink(name: IfName): Promise<LinkState | null> {
    const [json, state] = await Promise.all([
      this.node.json(['link', 'show', 'dev', name], `inspect ${name}`),
      this.ovs.readState(`inspect ${name}`),
    ]);
    const link = json === null ? undefined : parseIpLinks(json)[0];
    const iface = state.interfaces.get(name);
    if (link === undefined && iface === undefined) return null;
    const tag = iface?.externalIds[EXT.owner] ?? link?.alias;
    return { name, ...(tag?.startsWith(OWNER_ALIAS_PREFIX) ? { ownerTag: tag } : {}) };
  }

  /**
   * What nodenet owns, read from OVSDB (ports tagged `nodenet-owner`) and the kernel (links whose alias is
   * nodenet's, or left untagged by a create cut short: see ownerTagOfLink). A tagged port whose kernel
   * device is gone is not listed (its instance is missing); a kernel link that is no port is listed with
   * master '' (a create cut short: an orphan; or a port taken off the switch: attachToCni puts it back).
   * `master` is the OVS bridge a port belongs to (the kernel shows none for userspace-datapath ports).
   */
  async listOwnedLinks(): Promise<LinkState[]> {
    const [state, links] = await Promise.all([this.ovs.readState("list nodenet's ports"), this.readLinks("list nodenet's links")]);
    const kernel = new Map(links.map((l) => [l.ifname, l]));
    const owned = new Map<string, LinkState & { kind?: string }>();
    for (const iface of state.interfaces.values()) {
      const tag = iface.externalIds[EXT.owner];
      if (!tag?.startsWith(OWNER_ALIAS_PREFIX)) continue;
      const link = kernel.get(iface.name);
      // Internal ports and tunnels may have no kernel device of that name (netdev tunnels never do).
      if (link === undefined && iface.externalIds[EXT.handle] !== undefined) continue;
      owned.set(iface.name, {
        name: iface.name,
        ownerTag: tag,
        master: iface.bridge ?? '',
        ...(link?.linkinfo?.kind ? { kind: link.linkinfo.kind } : {}),
      });
    }
    for (const link of links) {
      const tag = ownerTagOfLink(link);
      if (owned.has(link.ifname) || tag === undefined) continue;
      owned.set(link.ifname, {
        name: link.ifname,
        ownerTag: tag,
        master: state.interfaces.get(link.ifname)?.bridge ?? '',
        ...(link.linkinfo?.kind ? { kind: link.linkinfo.kind } : {}),
      });
    }
    return [...owned.values()];
  }

  /**
   * Puts an instance's port back on the CNI bridge (core calls it for a port listed with another master),
   * tagged and registered again, with its flows. What the port was comes from the daemon's record of the
   * instance (`instance`): the bridge's registry goes with the bridge (del-br, a fresh OVSDB), the records do
   * not. Without a record, the registry is the only source.
   */
  async attachToCni(
    hostIfname: IfName,
    cni: CniSpec,
    instance?: Pick<InstanceRecord, 'handle' | 'address' | 'ipv6Address' | 'mac' | 'kind'>,
  ): Promise<void> {
    await this.flowLock.shared(async () => {
      const state = await this.ovs.readState(`read OVSDB to attach ${hostIfname}`);
      const bridge = state.bridges.get(cni.name);
      const entry = instance ?? (bridge ? registeredPortsOf(bridge).find((r) => r.name === hostIfname) : undefined);
      if (!entry || (entry.kind !== 'veth' && entry.kind !== 'tap')) {
        throw new FailedPreconditionError(
          `${hostIfname} is no port of ${cni.name} and the bridge's registry (external_ids ${PORT_REGISTRY_PREFIX}${hostIfname}) does not say what it was: delete the interface and create it again`,
        );
      }
      const spec = portIdentityOfRecord({ ...entry, kind: entry.kind });
      const requested = ofportForInstance(cni, spec.address);
      // Off the bridge it is on first, in a transaction of its own (see addPort), then added as a create adds it.
      await this.ovs.detachPorts([hostIfname], `detach ${hostIfname} to attach it to ${cni.name}`);
      await this.ovs.transactOps(addInstancePortOps(cni.name, hostIfname, spec, requested), `attach ${hostIfname} to ${cni.name}`);
      const ofport = requested ?? (await this.readOfport(hostIfname));
      await this.ovs.modifyFlows(
        cni.name,
        addFlowsScript(instanceFlows(flowSpecOf(spec, ofport), cni.mac)),
        `install the flows of ${spec.handle}`,
      );
    });
  }

  /**
   * Deletes orphans: their kernel links, ports and flows. Re-reads both sides first and deletes only what
   * still carries nodenet's tag (a name may have changed hands since it was listed).
   */
  async deleteOwnedLinks(names: readonly IfName[]): Promise<void> {
    if (names.length === 0) return;
    await this.flowLock.shared(async () => {
      const [state, links] = await Promise.all([
        this.ovs.readState('list ports before deleting'),
        this.readLinks('list links before deleting'),
      ]);
      const kernel = new Map(links.map((l) => [l.ifname, l]));
      const kernelNames: string[] = [];
      const portsByBridge = new Map<string, string[]>();
      const cookiesByBridge = new Map<string, bigint[]>();
      for (const name of new Set(names)) {
        if (name === CNI_NAME || name === TUNNEL_PORT || name === UPLINK_BRIDGE) continue;
        const iface = state.interfaces.get(name);
        const link = kernel.get(name);
        const tag = iface?.externalIds[EXT.owner] ?? (link ? ownerTagOfLink(link) : undefined);
        if (iface === undefined && link === undefined) continue;
        if (!tag?.startsWith(OWNER_ALIAS_PREFIX)) {
          this.logger.warn({ link: name, tag: tag ?? null }, "not deleting a link that does not carry nodenet's owner tag");
          continue;
        }
        if (link) kernelNames.push(name);
        const handle = tag.slice(OWNER_ALIAS_PREFIX.length);
        if (iface?.bridge) {
          portsByBridge.set(iface.bridge, [...(portsByBridge.get(iface.bridge) ?? []), name]);
          if (/^nni-[0-9a-f]{8}$/.test(handle))
            cookiesByBridge.set(iface.bridge, [...(cookiesByBridge.get(iface.bridge) ?? []), instanceCookie(handle)]);
        }
      }
      // Rows and flows first, links last: cut short, what is left is a tagged link, found again as an orphan.
      const jobs: Promise<unknown>[] = [];
      for (const [bridge, ports] of portsByBridge) jobs.push(this.deletePorts(bridge, ports, `remove orphaned ports from ${bridge}`));
      for (const [bridge, cookies] of cookiesByBridge)
        jobs.push(this.deleteFlows(bridge, cookies, `remove the flows of orphaned ports on ${bridge}`));
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (kernelNames.length > 0)
        await this.deleteTolerant(deleteLinksScript(kernelNames, pickUnusedGroup(links)), `delete ${kernelNames.length} orphaned link(s)`);
      this.logger.info({ links: kernelNames, ports: [...portsByBridge.values()].flat() }, 'orphaned links and ports deleted');
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Kernel helpers

  /** `nft list table inet nodenet` as text ('' when there is no such table). */
  private async readPortGuard(): Promise<string> {
    const { file, args } = commandInNamespace(this.nodeNetns, 'nft', ['list', 'table', ...PORT_GUARD_TABLE.split(' ')]);
    const r = await run(file, args, { step: 'read the switch-port guard', okExitCodes: [1] });
    return r.exitCode === 0 ? r.stdout : '';
  }

  private async runNft(script: string, step: string): Promise<void> {
    const { file, args } = commandInNamespace(this.nodeNetns, 'nft', ['-f', '-']);
    await run(file, args, { step, input: script });
  }

  private async readLinks(step: string): Promise<IpLink[]> {
    return parseIpLinks((await this.node.json(['-d', 'link', 'show'], step)) ?? []);
  }

  private async readLinkWithAddresses(name: string): Promise<IpLinkWithAddresses | null> {
    const json = await this.node.json(['-d', 'addr', 'show', 'dev', name], `read ${name}`);
    return json === null ? null : (parseIpAddrs(json)[0] ?? null);
  }

  /** Runs delete lines with -force (see @nodenet/linux deleteTolerant): absence is success, every other failure is reported. */
  private deleteTolerant(lines: IpLine[], step: string, via: IpRunner | IpSession = this.node): Promise<void> {
    return deleteTolerant(via, lines, step);
  }

  private async explainPortFailure(spec: InstanceSpec, e: unknown): Promise<unknown> {
    const message = (e as Error)?.message ?? '';
    if (/no bridge named/.test(message)) {
      return new FailedPreconditionError(
        `the CNI bridge ${spec.cni.name} does not exist in Open vSwitch: call CreateContainerNetworkInterface (a restarted daemon restores it)`,
        { cause: e },
      );
    }
    return e;
  }
}

// -------------------------------------------------------------------------------------------------------
// Pure helpers

/** What deleting an instance's kernel side needs. */
interface DeletedLink {
  readonly handle: IfName;
  readonly hostIfname: IfName;
  readonly address: IpAddress;
  readonly ipv6Address?: Ipv6Address;
  readonly cniName: IfName;
}

/** The node-side lines of a veth pair: created (instance end in `targetNetnsPath` if given), tagged, up. */
export function vethScript(spec: InstanceSpec, targetNetnsPath?: string): IpLine[] {
  const mtu = String(spec.mtu);
  return [
    {
      id: LINE.createLink,
      args: [
        'link',
        'add',
        'name',
        spec.hostIfname,
        'mtu',
        mtu,
        'type',
        'veth',
        'peer',
        'name',
        spec.handle,
        'address',
        spec.mac,
        'mtu',
        mtu,
        ...(targetNetnsPath ? ['netns', targetNetnsPath] : []),
      ],
      step: `create veth pair ${spec.hostIfname}/${spec.handle}${targetNetnsPath ? ` with ${spec.handle} in ${targetNetnsPath}` : ''}`,
    },
    {
      id: LINE.attachLink,
      // A switch port is no interface of the node's own: no IPv6 address (it would send DAD, router
      // solicitations and MLD into the bridge) and no ARP (see port-guard.ts).
      args: ['link', 'set', 'dev', spec.hostIfname, 'alias', ownerAliasOf(spec.handle), 'addrgenmode', 'none', 'arp', 'off', 'up'],
      step: `tag ${spec.hostIfname} and bring it up`,
    },
  ];
}

/** A TAP named with the handle (the switch port itself); it keeps the kernel's MAC (spec.mac is the guest's). */
export function tapScript(spec: InstanceSpec): IpLine[] {
  return tapLines(spec, ['arp', 'off'], `tag ${spec.handle} and bring it up`);
}

/**
 * nodenet's owner tag of a kernel link that is no OVS port: its alias, or, for a link named in nodenet's
 * scheme (`nnh-`/`nni-` + 8 hex digits, a veth or a TAP) left without one, the tag of that handle. The
 * kernel takes no alias on `link add`, so a create cut short between the link and its `alias` line leaves
 * such a link (iproute2 claims those on its bridge the same way); nobody else names links so.
 */
export function ownerTagOfLink(link: IpLink): string | undefined {
  if (link.alias?.startsWith(OWNER_ALIAS_PREFIX)) return link.alias;
  const m = /^nn[hi]-([0-9a-f]{8})$/.exec(link.ifname);
  const kind = link.linkinfo?.kind;
  if (m && (kind === 'veth' || kind === 'tun')) return `${OWNER_ALIAS_PREFIX}${HANDLE_PREFIX}${m[1]}`;
  return undefined;
}

/** What the kernel side of the gateway port lacks: owner alias and no IPv6 address generation, then iproute2's CNI repairs. */
export function kernelFixes(spec: CniSpec, current: IpLinkWithAddresses): { found: string; line: IpLine }[] {
  const fixes: { found: string; line: IpLine }[] = [];
  if (current.alias !== CNI_OWNER_TAG) {
    fixes.push({
      found: `owner alias of ${spec.name} was ${current.alias ? `'${current.alias}'` : 'unset'}: set to ${CNI_OWNER_TAG}`,
      line: {
        id: LINE.configureBridge,
        args: ['link', 'set', 'dev', spec.name, 'alias', CNI_OWNER_TAG, 'addrgenmode', 'none'],
        step: `tag ${spec.name}`,
      },
    });
  }
  return [...fixes, ...repairCniScript(spec, current)];
}

/** How an existing nodenet bridge differs from what the spec and config want, one line each. */
export function bridgeDrift(spec: CniSpec, bridge: OvsBridge, state: OvsState, datapathType: DatapathType): string[] {
  const drift: string[] = [];
  if (bridge.datapathType !== datapathType)
    drift.push(`datapath_type of ${spec.name} was '${bridge.datapathType}': set to ${datapathType}`);
  if (bridge.failMode !== 'secure') drift.push(`fail_mode of ${spec.name} was ${bridge.failMode ?? 'unset'}: set to secure`);
  if (bridge.otherConfig['hwaddr']?.toLowerCase() !== spec.mac.toLowerCase())
    drift.push(`other_config:hwaddr of ${spec.name} was ${bridge.otherConfig['hwaddr'] ?? 'unset'}: set to ${spec.mac}`);
  if (bridge.otherConfig['disable-in-band'] !== 'true') drift.push(`in-band control of ${spec.name} was on: turned off`);
  const internal = state.interfaces.get(spec.name);
  if (internal?.mtuRequest !== spec.mtu)
    drift.push(`mtu_request of ${spec.name} was ${internal?.mtuRequest ?? 'unset'}: set to ${spec.mtu}`);
  if (internal?.externalIds[EXT.owner] !== CNI_OWNER_TAG) drift.push(`owner tag of port ${spec.name} was missing: set`);
  return drift;
}

function assertOwnBridge(bridge: OvsBridge, name: string): void {
  if (bridge.externalIds[EXT.owner] !== CNI_OWNER_TAG) {
    throw new FailedPreconditionError(
      `an Open vSwitch bridge named ${name} already exists but was not made by nodenet (its external_ids:${EXT.owner} is ${bridge.externalIds[EXT.owner] ? `'${bridge.externalIds[EXT.owner]}'` : 'unset'}): remove or rename it; if it is nodenet's, run ovs-vsctl br-set-external-id ${name} ${EXT.owner} ${CNI_OWNER_TAG}`,
    );
  }
}

/** A kernel link named like the CNI with no OVS bridge behind it: only a leftover of nodenet's own OVS bridge is acceptable. */
function assertOwnKernelLink(link: IpLinkWithAddresses, name: string): void {
  const kind = link.linkinfo?.kind;
  if (link.alias === CNI_OWNER_TAG && kind !== undefined && INTERNAL_PORT_KINDS.has(kind)) return;
  if (kind === 'bridge' && link.alias === CNI_OWNER_TAG) {
    throw new FailedPreconditionError(
      `${name} is a Linux bridge made by nodenet's iproute2 backend: this node was switched to the ovs backend; delete it (ip link del ${name}) and restart the daemon, or keep backend: iproute2`,
    );
  }
  throw new FailedPreconditionError(
    `a link named ${name} already exists on this node (${kind ? `a ${kind} link` : 'of unknown kind'}, alias ${link.alias ? `'${link.alias}'` : 'unset'}) and is no Open vSwitch bridge of nodenet's: nodenet needs that name for its CNI bridge; remove or rename that link`,
  );
}

/** A promise that never rejects (so starting work early cannot leave a rejection unhandled). */
function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** An OVSDB remote nodenet accepts: unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT (the daemon's config parser uses it too). */
export const OVSDB_REMOTE_RE = /^(unix:\/\S+|(tcp|ssl):\S+:\d+)$/;

/** The OVS options every ovs backend object checks (the daemon's config parser checks them too). */
export function checkOvsOptions(options: { db: string; runDir: string }): void {
  if (!OVSDB_REMOTE_RE.test(options.db)) {
    throw new InvalidArgumentError('ovs.db', `'${options.db}' is not an OVSDB remote: use unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT`);
  }
  if (!options.runDir.startsWith('/') || /\s|\0/.test(options.runDir)) {
    throw new InvalidArgumentError('ovs.runDir', `'${options.runDir}' must be an absolute directory path without spaces`);
  }
}

/** What OVSDB records of an instance (its addresses in the record's form: see OvsPortIdentity). */
function portIdentityOf(spec: InstanceSpec): OvsPortIdentity {
  return { handle: spec.handle, mac: spec.mac, kind: spec.kind, ...instanceRecordFields(spec) };
}

/** The identity of a port from a record or a registry entry (values nodenet wrote, so already valid). */
function portIdentityOfRecord(r: {
  readonly handle: string;
  readonly address: string;
  readonly ipv6Address?: string;
  readonly mac: string;
  readonly kind: 'veth' | 'tap';
}): OvsPortIdentity {
  return {
    handle: r.handle as IfName,
    address: r.address as IpAddress,
    ...(r.ipv6Address ? { ipv6Address: r.ipv6Address as Ipv6Address } : {}),
    mac: r.mac,
    kind: r.kind,
  };
}

function flowSpecOf(identity: OvsPortIdentity, ofport: number) {
  return { handle: identity.handle, ofport, mac: identity.mac, ...instanceAddressesOfRecord(identity) };
}

function addressesText(identity: OvsPortIdentity): string {
  return identity.ipv6Address ? `${identity.address}, ${identity.ipv6Address}` : identity.address;
}
