/**
 * Running Open vSwitch's own tools: ovs-vsctl against the configured database (`--db=`, with a timeout so
 * a missing ovs-vswitchd cannot hang a request) and ovs-ofctl against a bridge's management socket in the
 * configured run directory. Both reach OVS through unix sockets, so they run in the daemon's own namespace
 * whatever namespace OVS serves. Failures to reach OVS become UNAVAILABLE naming the socket that was tried.
 * The create and delete hot path (a port's transaction, its flows) goes through long-lived connections
 * instead (OvsSession: one OVSDB session, one OpenFlow connection per bridge, shared by every runner of the
 * process for the same switch; the overlay's peer flows, packet-outs and flow reads use them too); with `clients: false` it runs
 * ovs-vsctl and ovs-ofctl through runLean (no execa: ~2 ms less of the daemon's CPU per process). The rest
 * (rare: bridges, reads, repairs) runs the tools; diff-flows through run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnavailableError } from '@nodenet/core';
import { CommandError, GroupCommitter, run, runLean } from '@nodenet/sys';
import { mgmtSocket } from './names.js';
import {
  deletePortOps,
  detachPortOps,
  ofportOfColumn,
  ovsStateOfRows,
  parseOvsState,
  READ_COMMANDS,
  READ_OPERATIONS,
  type OvsState,
} from './ovsdb.js';
import { OvsSession, vswitchdTimeout } from './ovs-session.js';
import type { FlowStats, FlowStatsRequest, Operation } from '@nodenet/openvswitch';

export interface OvsRunnerOptions {
  /** The OVSDB remote, e.g. `unix:/var/run/openvswitch/db.sock`. */
  readonly db: string;
  /** Where ovs-vswitchd puts its sockets (`BRIDGE.mgmt`). */
  readonly runDir: string;
  /** How long ovs-vsctl waits for ovs-vswitchd to apply a change. Default 10 s. */
  readonly timeoutSeconds?: number;
  /** The hot path over long-lived OVSDB and OpenFlow connections (default) or through the tools (false). */
  readonly clients?: boolean;
}

/** The OpenFlow version every call uses, so flows read back in the form they were written. */
export const OPENFLOW = 'OpenFlow15';

const DB_UNREACHABLE_RE = /database connection failed|Connection refused/;
const MGMT_UNREACHABLE_RE = /(?:connecting to|failed to connect to) (\S+)|is not a bridge or a socket/;

export class OvsRunner {
  readonly db: string;
  readonly runDir: string;
  readonly timeoutSeconds: number;
  /**
   * Concurrent transactions that wait for ovs-vswitchd share one ovs-vsctl process (group commit): each
   * transaction costs ovs-vswitchd a reconfiguration of the whole switch, so 25 creates at once cost one
   * instead of 25 (measured: 500 creates, 25 at a time, 62.7 s one transaction each).
   */
  private readonly waitedTransactions = new GroupCommitter<{ commands: readonly string[]; step: string }>((items) =>
    this.vsctlNow(
      items.flatMap((i) => i.commands),
      items.length === 1 ? items[0]!.step : `${items[0]!.step} (and ${items.length - 1} more in one transaction)`,
      true,
    ).then(() => undefined),
  );
  private readonly quickTransactions = new GroupCommitter<{ commands: readonly string[]; step: string }>((items) =>
    this.vsctlNow(
      items.flatMap((i) => i.commands),
      items.length === 1 ? items[0]!.step : `${items[0]!.step} (and ${items.length - 1} more in one transaction)`,
      false,
    ).then(() => undefined),
  );
  /** Flow-mod scripts per bridge, likewise merged into one `--bundle` (one atomic change). */
  private readonly flowBundles = new Map<string, GroupCommitter<{ script: string; step: string }>>();
  /** The long-lived connections (undefined: the tools do everything). */
  private readonly session: OvsSession | undefined;
  /** OVSDB operations, merged as the ovs-vsctl transactions are (waiting for ovs-vswitchd or not). */
  private readonly waitedOps = new GroupCommitter<{ ops: readonly Operation[]; step: string }>((items) => this.transactOpsNow(items, true));
  private readonly quickOps = new GroupCommitter<{ ops: readonly Operation[]; step: string }>((items) => this.transactOpsNow(items, false));

  constructor(options: OvsRunnerOptions) {
    this.db = options.db;
    this.runDir = options.runDir;
    this.timeoutSeconds = options.timeoutSeconds ?? 10;
    this.session =
      options.clients === false ? undefined : OvsSession.shared({ db: this.db, runDir: this.runDir, timeoutSeconds: this.timeoutSeconds });
  }

  /** Whether the hot path uses the long-lived connections (transactOps and removePorts need them). */
  get usesClients(): boolean {
    return this.session !== undefined;
  }

  /** Done with the long-lived connections (closed when no other runner of this process shares them). */
  close(): void {
    this.session?.release();
  }

  /**
   * OVSDB operations (ovsdb.ts's *Ops builders) in one transaction with concurrent ones, as transact() does
   * for ovs-vsctl commands: with `wait` (the default) it returns once ovs-vswitchd has applied it.
   */
  transactOps(ops: readonly Operation[], step: string, options: { wait?: boolean } = {}): Promise<void> {
    return (options.wait === false ? this.quickOps : this.waitedOps).submit({ ops, step });
  }

  /** Removes ports (absent ones are fine) and their registry entries on `bridge`, without waiting. */
  async removePorts(bridge: string, ports: readonly string[], step: string): Promise<void> {
    const uuids = await this.requireSession().portUuids(ports, step);
    await this.transactOps(deletePortOps(bridge, ports, uuids), step, { wait: false });
  }

  /**
   * Takes ports (absent ones are fine) off whatever bridge holds them, their registry entries kept, and
   * returns once ovs-vswitchd has let go of them: what a port's rows left behind by a vanished link need
   * before the name is added again (in one transaction with the add, ovs-vswitchd would see no change and
   * keep the vanished link open). Returns how many were there.
   */
  async detachPorts(ports: readonly string[], step: string): Promise<number> {
    const uuids = await this.requireSession().portUuids(ports, step);
    if (uuids.length > 0) await this.transactOps(detachPortOps(uuids), step);
    return uuids.length;
  }

  /** The number ovs-vswitchd gave the interface `name` (null: none yet, or no such interface), over the OVSDB session. */
  async ofport(name: string, step: string): Promise<number | null> {
    return ofportOfColumn(await this.interfaceColumn(name, 'ofport', step));
  }

  /** A column of the Interface row named `name`, read over the OVSDB session (undefined: no such row). */
  interfaceColumn(name: string, column: string, step: string): Promise<unknown> {
    return this.requireSession().interfaceColumn(name, column, step);
  }

  private async transactOpsNow(items: readonly { ops: readonly Operation[]; step: string }[], wait: boolean): Promise<void> {
    const step = items.length === 1 ? items[0]!.step : `${items[0]!.step} (and ${items.length - 1} more in one transaction)`;
    // Each item names its rows (uuid-name) on its own: suffixed, so the names stay apart in one transaction.
    const ops = items.length === 1 ? items[0]!.ops : items.flatMap((item, i) => item.ops.map((op) => withUuidNameSuffix(op, `_${i}`)));
    await this.requireSession().transact(ops, step, wait);
  }

  private requireSession(): OvsSession {
    if (!this.session)
      throw new Error('OvsRunner: transactOps, removePorts, dumpFlows and packetOuts need the long-lived connections (clients: false)');
    return this.session;
  }

  /**
   * A transaction that changes OVSDB and prints nothing, committed together with concurrent ones (all or
   * nothing as a group; a failed group is retried one transaction at a time, so each caller gets its own
   * error). Transactions in one group must not conflict (e.g. add and delete the same port).
   */
  transact(commands: readonly string[], step: string, options: { wait?: boolean } = {}): Promise<void> {
    return (options.wait === false ? this.quickTransactions : this.waitedTransactions).submit({ commands, step });
  }

  /** A flow-mod script (`add ...`, `delete ...` lines) applied with concurrent ones in one bundle. */
  modifyFlows(bridge: string, script: string, step: string): Promise<void> {
    let committer = this.flowBundles.get(bridge);
    if (!committer) {
      committer = new GroupCommitter((items) => {
        const step = items.length === 1 ? items[0]!.step : `${items[0]!.step} (and ${items.length - 1} more in one bundle)`;
        const script = items.map((i) => i.script).join('');
        if (this.session) return this.session.bundle(bridge, script, step);
        return this.ofctl('add-flows', bridge, ['--bundle', '-'], step, script).then(() => undefined);
      });
      this.flowBundles.set(bridge, committer);
    }
    return committer.submit({ script, step });
  }

  /**
   * One ovs-vsctl transaction. With `wait` (the default) it returns once ovs-vswitchd has applied it (a port
   * is usable, a bridge has its management socket); without, once OVSDB has committed it.
   */
  vsctl(commands: readonly string[], step: string, options: { wait?: boolean } = {}): Promise<string> {
    return this.vsctlNow(commands, step, options.wait !== false);
  }

  private async vsctlNow(commands: readonly string[], step: string, wait: boolean): Promise<string> {
    const args = [`--db=${this.db}`, `--timeout=${this.timeoutSeconds}`, ...(wait ? [] : ['--no-wait']), ...commands];
    try {
      return (await runLean('ovs-vsctl', args, { step, timeoutMs: (this.timeoutSeconds + 5) * 1000 })).stdout;
    } catch (e) {
      throw this.explainVsctl(e, step);
    }
  }

  /**
   * Bridges, ports and interfaces in one read: one transaction on the OVSDB session (no process: a
   * reconcile pass reads the state several times), or ovs-vsctl without the session.
   */
  async readState(step = 'read OVSDB'): Promise<OvsState> {
    if (this.session) {
      const [bridges, ports, interfaces] = await this.session.transact(READ_OPERATIONS, step, false);
      return ovsStateOfRows(bridges?.rows ?? [], ports?.rows ?? [], interfaces?.rows ?? []);
    }
    return parseOvsState(await this.vsctl(READ_COMMANDS, step, { wait: false }));
  }

  /** `ovs-ofctl -O OpenFlow15 COMMAND unix:RUNDIR/BRIDGE.mgmt ARGS...` (stdin: `input`). */
  async ofctl(command: string, bridge: string, args: readonly string[], step: string, input?: string): Promise<string> {
    const target = mgmtSocket(this.runDir, bridge);
    const full = ['-O', OPENFLOW, `--timeout=${this.timeoutSeconds}`, command, target, ...args];
    try {
      return (
        await runLean('ovs-ofctl', full, { step, timeoutMs: (this.timeoutSeconds + 5) * 1000, ...(input === undefined ? {} : { input }) })
      ).stdout;
    } catch (e) {
      throw this.explainOfctl(e, step, bridge);
    }
  }

  /**
   * diff-flows between the bridge and `flows` (one per line); exit 2 means "differences found". ovs-ofctl
   * reads the flows from a file (it cannot read a socket as stdin), written to a private temp directory.
   */
  async diffFlows(bridge: string, flows: string, step: string): Promise<string> {
    const target = mgmtSocket(this.runDir, bridge);
    const dir = await mkdtemp(join(tmpdir(), 'nodenet-flows-'));
    try {
      const file = join(dir, 'flows');
      await writeFile(file, flows, { mode: 0o600 });
      const r = await run('ovs-ofctl', ['-O', OPENFLOW, `--timeout=${this.timeoutSeconds}`, 'diff-flows', target, file], {
        step,
        okExitCodes: [2],
        timeoutMs: (this.timeoutSeconds + 5) * 1000,
      });
      return r.stdout;
    } catch (e) {
      throw this.explainOfctl(e, step, bridge);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The flows the request selects, read over the bridge's long-lived OpenFlow connection. */
  dumpFlows(bridge: string, request: FlowStatsRequest, step: string): Promise<FlowStats[]> {
    return this.requireSession()
      .dumpFlows(bridge, request, step)
      .catch((e: unknown) => {
        throw this.explainFlowConnection(e, step);
      });
  }

  /** Packet-outs (ovs-ofctl's packet-out text) over the bridge's long-lived OpenFlow connection, with one barrier. */
  packetOuts(bridge: string, packets: readonly string[], step: string): Promise<void> {
    return this.requireSession()
      .packetOuts(bridge, packets, step)
      .catch((e: unknown) => {
        throw this.explainFlowConnection(e, step);
      });
  }

  /** The connection's own UNAVAILABLE, said as ovs-ofctl's is (naming the bridge and the socket tried). */
  private explainFlowConnection(e: unknown, step: string): unknown {
    if (!(e instanceof UnavailableError) || e.message.startsWith(`${step}:`)) return e;
    return new UnavailableError(`${step}: ${e.message}`, { cause: e });
  }

  /** Whether ovs-ofctl failed because it could not reach the bridge's management socket. */
  static isUnreachable(e: unknown): boolean {
    return e instanceof UnavailableError;
  }

  private explainVsctl(e: unknown, step: string): unknown {
    return explainVsctlFailure(e, step, this);
  }

  private explainOfctl(e: unknown, step: string, bridge: string): unknown {
    return explainOfctlFailure(e, step, bridge, this.runDir);
  }
}

/** What a failed ovs-vsctl means: OVS not reachable (UNAVAILABLE, naming the socket) or the failure itself. */
export function explainVsctlFailure(e: unknown, step: string, ovs: { db: string; runDir: string; timeoutSeconds: number }): unknown {
  if (!(e instanceof CommandError)) return e;
  const signal = (e.cause as { signal?: string } | undefined)?.signal;
  // execa names the signal in its error; runLean says `killed by SIGALRM` when the process printed nothing.
  if (signal === 'SIGALRM' || /Alarm clock|signal 14|killed by SIGALRM/.test(e.stderr)) {
    return vswitchdTimeout(step, ovs, e);
  }
  if (DB_UNREACHABLE_RE.test(e.stderr)) {
    return new UnavailableError(
      `${step}: cannot reach the Open vSwitch database at ${ovs.db} (${firstLine(e.stderr)}): start Open vSwitch (ovsdb-server and ovs-vswitchd) or set ovs.db in the config`,
      { cause: e },
    );
  }
  return e;
}

/** What a failed ovs-ofctl means: the bridge's management socket not reachable (UNAVAILABLE, naming it) or the failure itself. */
export function explainOfctlFailure(e: unknown, step: string, bridge: string, runDir: string): unknown {
  if (!(e instanceof CommandError)) return e;
  if (MGMT_UNREACHABLE_RE.test(e.stderr)) {
    return new UnavailableError(
      `${step}: cannot reach ovs-vswitchd for bridge ${bridge} at ${mgmtSocket(runDir, bridge)} (${firstLine(e.stderr)}): is ovs-vswitchd running, does the bridge exist, and is ovs.runDir right?`,
      { cause: e },
    );
  }
  return e;
}

/** An operation with its uuid-name and every named-uuid reference suffixed. */
function withUuidNameSuffix(op: Operation, suffix: string): Operation {
  const rename = (v: unknown): unknown => {
    if (Array.isArray(v))
      return v.length === 2 && v[0] === 'named-uuid' && typeof v[1] === 'string' ? ['named-uuid', `${v[1]}${suffix}`] : v.map(rename);
    if (v !== null && typeof v === 'object')
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [k, k === 'uuid-name' && typeof x === 'string' ? `${x}${suffix}` : rename(x)]),
      );
    return v;
  };
  return rename(op) as Operation;
}

function firstLine(s: string): string {
  return (
    s
      .trim()
      .split('\n')[0]
      ?.replace(/^ovs-(?:vsctl|ofctl): /, '') ?? ''
  );
}
