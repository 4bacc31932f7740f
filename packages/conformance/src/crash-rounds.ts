/**
 * Rounds of kill -9 during bursts of concurrent creates and deletes (durability-crash.int.test.ts runs 30,
 * scripts/crash-stress.mjs as many as asked). One round:
 *
 *   1. issue a burst of CreateInterface (netns extension or runtime-style), DeleteInterface and repeated
 *      (idempotent) CreateInterface calls, all at once;
 *   2. after a random delay crash the daemon (crashDaemon: the daemon alone, or its whole process group);
 *   3. start it again with the same state dir and wait for SERVING;
 *   4. check: every acknowledged create is recorded under its handle and every acknowledged delete is gone;
 *      an unacknowledged one is either wholly there (recorded, linked, published) or wholly gone (no record,
 *      no element, nothing left in its namespace); records, owned links and nft elements explain each other
 *      (consistencyProblems); Inspect agrees with the records; the restore reported no errors; a sample of
 *      instances (all of them every `fullCheckEvery` rounds) answers ping and its published port.
 *
 * Addresses return to the pool once their instance is known gone, so later rounds reuse freed addresses
 * and ports.
 */
import {
  settle,
  startSocatEcho,
  adoptInterface,
  destroyNamespace,
  ping,
  ipJson,
  type RpcOutcome,
  type SocatEchoServer,
} from '@nodenet/testkit';
import type { CreateInterfaceRequest, CreateInterfaceResponse, DeepPartial, Empty } from '@nodenet/api';
import { NODE_GATEWAY, NODE_PREFIX_LENGTH, type NodeFamilies, type NodeFixture } from './fixture.js';
import {
  consistencyProblems,
  crashDaemon,
  sleep,
  tcpEchoOnce,
  type CrashMode,
  type CrashOutcome,
  type RecordedInstance,
} from './durability.js';

export interface CrashRoundsOptions {
  readonly fixture: NodeFixture;
  /**
   * Instance addresses to use (default 151 of the fixture's subnet: 198.19.1.100 .. 198.19.1.250, or
   * fd19:0:0:2::64 .. ::fa on an IPv6-only node). On a dual-stack node each also gets the IPv6 address
   * with the same host part (198.19.1.100 with fd19:0:0:1::64).
   */
  readonly addresses?: readonly string[];
  /** Calls per burst. Default 10. */
  readonly burst?: number;
  /**
   * Calls start at random offsets 0..this many ms, so that some finish before the crash and some do not.
   * Default 200. (Measured here, 2 cores: one create takes ~30 ms, ten at once all finish after 200-450 ms.)
   */
  readonly spreadMs?: number;
  /**
   * The crash comes 0..this many ms after the burst began. Default 800, then adapted round by round so that
   * about half the calls sent are acknowledged before the crash (backends and machines differ: measured
   * here, ten concurrent netns creates take 0.2-0.5 s on iproute2 and several times that on ovs).
   */
  readonly maxKillDelayMs?: number;
  /** Keep maxKillDelayMs fixed instead. */
  readonly fixedKillDelay?: boolean;
  /** Deletes outnumber creates when more instances than this live. Default 16. */
  readonly targetLive?: number;
  /** Check the traffic of every live instance each this many rounds (a sample otherwise). Default 5. */
  readonly fullCheckEvery?: number;
  /** Crash modes, taken in turn round by round. Default ['daemon', 'group']. */
  readonly modes?: readonly CrashMode[];
  readonly seed?: number;
  readonly log?: (line: string) => void;
}

type Via = 'netns' | 'runtime';

interface Tracked {
  readonly address: string;
  readonly port: number;
  readonly ns: string;
  readonly via: Via;
  readonly handle: string;
  adopted: boolean;
  server?: SocatEchoServer;
}

interface CreateOp {
  readonly kind: 'create';
  readonly address: string;
  readonly port: number;
  readonly ns: string;
  readonly via: Via;
  readonly outcome: Promise<Sent<CreateInterfaceResponse>>;
}
interface DeleteOp {
  readonly kind: 'delete';
  readonly target: Tracked;
  readonly outcome: Promise<Sent<Empty>>;
}
interface RepeatOp {
  readonly kind: 'repeat';
  readonly target: Tracked;
  readonly outcome: Promise<Sent<CreateInterfaceResponse>>;
}
/** A call's outcome, or `null` when the crash came before its turn to be sent. */
type Sent<T> = RpcOutcome<T> | null;
type Op = CreateOp | DeleteOp | RepeatOp;

export interface RoundReport {
  readonly round: number;
  readonly mode: CrashMode;
  readonly killDelayMs: number;
  /** The range the kill delay was drawn from (0..this). */
  readonly maxKillDelayMs: number;
  readonly crash: CrashOutcome;
  /** Spawn to SERVING of the restarted daemon. */
  readonly servingMs: number;
  /** The restore's own duration, from its `restored` log line. */
  readonly restoreMs: number | undefined;
  /** Calls sent (those whose turn came after the crash were not). */
  readonly ops: { creates: number; deletes: number; repeats: number };
  readonly acknowledged: { creates: number; deletes: number; repeats: number };
  /** Calls cut short by the crash, and what the restart made of them. */
  readonly unacknowledged: { createsThere: number; createsGone: number; deletesThere: number; deletesGone: number; repeats: number };
  /** Status codes of calls cut short (e.g. UNAVAILABLE), with counts. */
  readonly cutShortCodes: Record<string, number>;
  readonly restoreRepairs: readonly string[];
  /** Repairs the crashed daemon's periodic passes logged during the burst. */
  readonly passRepairs: readonly string[];
  /** Where the round's time went. */
  readonly phaseMs: { burstAndRestart: number; verify: number; traffic: number };
  readonly live: number;
  readonly trafficChecked: number;
  readonly problems: readonly string[];
}

/** Status codes a call cut short by the daemon's death can end with (the connection went away). */
const TRANSPORT_CODES = new Set(['UNAVAILABLE', 'CANCELLED', 'DEADLINE_EXCEEDED']);

function isCutShort(o: RpcOutcome<unknown>): boolean {
  if (o.ok) return false;
  if (TRANSPORT_CODES.has(o.codeName)) return true;
  // grpc-js reports a stream reset by a dying peer as INTERNAL "Received RST_STREAM ..."; the daemon's own
  // INTERNAL errors name a step instead.
  return (
    (o.codeName === 'INTERNAL' || o.codeName === 'UNKNOWN') && /RST_STREAM|Connection dropped|Stream removed|connection/i.test(o.details)
  );
}

/** A small seeded PRNG (mulberry32), so a failing run can be described by its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function inBatches<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += limit) out.push(...(await Promise.all(items.slice(i, i + limit).map(fn))));
  return out;
}

export class CrashRounds {
  readonly seed: number;
  private readonly f: NodeFixture;
  private readonly families: NodeFamilies;
  private readonly random: () => number;
  private readonly free: string[];
  private readonly live = new Map<string, Tracked>();
  private readonly burst: number;
  private readonly spreadMs: number;
  private maxKillDelayMs: number;
  private readonly adaptKillDelay: boolean;
  private readonly targetLive: number;
  private readonly fullCheckEvery: number;
  private readonly modes: readonly CrashMode[];
  private readonly log: (line: string) => void;

  constructor(options: CrashRoundsOptions) {
    this.f = options.fixture;
    this.families = options.fixture.families;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.random = seededRandom(this.seed);
    const hostPart = (i: number) => (this.families === 'ipv6' ? `fd19:0:0:2::${(100 + i).toString(16)}` : `198.19.1.${100 + i}`);
    this.free = [...(options.addresses ?? Array.from({ length: 151 }, (_, i) => hostPart(i)))];
    this.burst = options.burst ?? 10;
    this.spreadMs = options.spreadMs ?? 200;
    this.maxKillDelayMs = options.maxKillDelayMs ?? 800;
    this.adaptKillDelay = !options.fixedKillDelay;
    this.targetLive = options.targetLive ?? 16;
    this.fullCheckEvery = options.fullCheckEvery ?? 5;
    this.modes = options.modes ?? ['daemon', 'group'];
    this.log = options.log ?? (() => undefined);
  }

  private pick<T>(items: T[]): T {
    const i = Math.floor(this.random() * items.length);
    return items.splice(i, 1)[0]!;
  }

  /** 30000 + the address's last part (198.19.1.100 -> 30100, fd19:0:0:2::64 -> 30100). */
  private portOf(address: string): number {
    return 30000 + (address.includes(':') ? parseInt(address.split(':').pop()!, 16) : Number(address.split('.')[3]));
  }

  private createRequest(address: string, ns: string, via: Via): DeepPartial<CreateInterfaceRequest> {
    const ipv6Address = this.f.ipv6Of(address);
    return {
      ipAddress: address,
      ...(ipv6Address ? { ipv6Address } : {}),
      ports: [this.portOf(address)],
      ...(via === 'netns' ? { netns: ns } : {}),
    };
  }

  /** One round; `fullCheck` forces the traffic check of every live instance. */
  async round(index: number, options: { fullCheck?: boolean } = {}): Promise<RoundReport> {
    const f = this.f;
    const mode = this.modes[index % this.modes.length]!;
    const problems: string[] = [];

    // Plan the burst: more deletes the more instances live.
    const liveList = [...this.live.values()];
    const nDeletes = Math.min(
      liveList.length,
      Math.max(0, Math.min(this.burst - 2, Math.round((this.burst * liveList.length) / (2 * this.targetLive)))),
    );
    const deleteTargets = Array.from({ length: nDeletes }, () => this.pick(liveList));
    const repeatTargets = liveList.length > 0 ? [this.pick(liveList)] : [];
    const nCreates = Math.min(this.free.length, this.burst - nDeletes - repeatTargets.length);
    const createPlans = Array.from({ length: nCreates }, () => {
      const address = this.pick(this.free);
      // The runtime style (the test configures the moved veth) is IPv4 only here: IPv6 instances use netns.
      const via: Via = this.random() < 0.3 && this.families === 'ipv4' ? 'runtime' : 'netns';
      return { address, via };
    });
    const t0 = performance.now();
    const namespaces = await inBatches(createPlans, 5, () => f.topology.createInstanceNamespace());

    // The burst: every call at its own random moment of the spread.
    const crashedDaemon = f.daemon;
    const logMark = crashedDaemon.logs.length;
    const api = f.api;
    await api.waitForReady(Date.now() + 10_000);
    let crashed = false;
    const sendAt = <T>(call: () => Promise<T>): Promise<Sent<T>> => {
      const offset = Math.round(this.random() * this.spreadMs);
      return sleep(offset).then(() => (crashed ? null : settle(call())));
    };
    const ops: Op[] = [
      ...createPlans.map((p, i): CreateOp => {
        const ns = namespaces[i]!;
        const request = this.createRequest(p.address, ns, p.via);
        return {
          kind: 'create',
          address: p.address,
          port: this.portOf(p.address),
          ns,
          via: p.via,
          outcome: sendAt(() => api.createInterface(request)),
        };
      }),
      ...deleteTargets.map((t): DeleteOp => ({
        kind: 'delete',
        target: t,
        outcome: sendAt(() => api.deleteInterface({ interfaceName: t.handle })),
      })),
      ...repeatTargets.map((t): RepeatOp => {
        const request = this.createRequest(t.address, t.ns, t.via);
        return { kind: 'repeat', target: t, outcome: sendAt(() => api.createInterface(request)) };
      }),
    ];
    const killDelayMs = Math.round(this.random() * this.maxKillDelayMs);
    await sleep(killDelayMs);

    let crash: CrashOutcome | undefined;
    const { daemon, servingMs } = await f.restartDaemonWith(
      async (d) => {
        crashed = true;
        crash = await crashDaemon(d, mode);
      },
      async () => {
        await Promise.all(ops.map((o) => o.outcome));
      },
    );
    const t1 = performance.now();
    // What the crashed daemon's own reconcile passes did during the burst (for diagnosis).
    const passRepairs = crashedDaemon.logs
      .slice(logMark)
      .filter((l) => l.event === 'repair')
      .map((l) => String(l.repair));
    const restored = await daemon.waitForLog((l) => l.event === 'restored', 5000).catch(() => undefined);
    if (!restored) problems.push('the restarted daemon logged no restored event');
    const restoreRepairs = (restored?.repairs as string[] | undefined) ?? [];
    const restoreErrors = (restored?.errors as string[] | undefined) ?? [];
    for (const e of restoreErrors) problems.push(`the restore reported an error: ${e}`);

    const state = await f.ownedState();
    const byAddress = new Map<string, RecordedInstance>(state.records.map((r) => [r.address, r]));
    const byHandle = new Map<string, RecordedInstance>(state.records.map((r) => [r.handle, r]));

    const acknowledged = { creates: 0, deletes: 0, repeats: 0 };
    const unacknowledged = { createsThere: 0, createsGone: 0, deletesThere: 0, deletesGone: 0, repeats: 0 };
    const cutShortCodes: Record<string, number> = {};
    const fresh: Tracked[] = [];
    const gone: { ns: string; address: string; handle?: string; checkNamespace: boolean }[] = [];

    const sent = { creates: 0, deletes: 0, repeats: 0 };
    const noteFailure = (o: RpcOutcome<unknown>, what: string) => {
      if (o.ok) return;
      if (isCutShort(o)) cutShortCodes[o.codeName] = (cutShortCodes[o.codeName] ?? 0) + 1;
      else problems.push(`${what} failed with ${o.codeName}: ${o.details}`);
    };
    for (const op of ops) {
      if (op.kind === 'create') {
        const o = await op.outcome;
        if (o === null) {
          // Never sent: nothing may exist for it (checked below like any gone create).
          if (byAddress.has(op.address)) problems.push(`${op.address} was never requested, yet it has a record`);
          gone.push({ ns: op.ns, address: op.address, checkNamespace: true });
          continue;
        }
        sent.creates++;
        noteFailure(o, `create of ${op.address}`);
        const record = byAddress.get(op.address);
        if (o.ok) {
          acknowledged.creates++;
          if (!record || record.handle !== o.value.interfaceName) {
            problems.push(
              `acknowledged create of ${op.address} (${o.value.interfaceName}) is not recorded after the restart${record ? ` (${record.handle} is)` : ''}`,
            );
            continue;
          }
        } else if (record) unacknowledged.createsThere++;
        else unacknowledged.createsGone++;
        if (record) {
          if (record.ipv6Address !== this.f.ipv6Of(op.address)) {
            problems.push(
              `record ${record.handle} of ${op.address} has IPv6 address ${record.ipv6Address}, not ${this.f.ipv6Of(op.address)}`,
            );
          }
          if (record.ports.length !== 2 || record.ports.some((p) => p.hostPort !== op.port)) {
            problems.push(`record ${record.handle} of ${op.address} has ports ${JSON.stringify(record.ports)}, not tcp+udp ${op.port}`);
          }
          const t: Tracked = { address: op.address, port: op.port, ns: op.ns, via: op.via, handle: record.handle, adopted: false };
          this.live.set(op.address, t);
          fresh.push(t);
        } else {
          gone.push({ ns: op.ns, address: op.address, checkNamespace: true });
        }
      } else if (op.kind === 'delete') {
        const o = await op.outcome;
        const t = op.target;
        if (o === null) {
          if (!byHandle.has(t.handle)) problems.push(`${t.handle} (${t.address}) lost its record though its delete was never sent`);
          continue;
        }
        sent.deletes++;
        noteFailure(o, `delete of ${t.handle}`);
        const record = byHandle.get(t.handle);
        if (o.ok) {
          acknowledged.deletes++;
          if (record) problems.push(`acknowledged delete of ${t.handle} (${t.address}) is undone: its record is back after the restart`);
        } else if (record) unacknowledged.deletesThere++;
        else unacknowledged.deletesGone++;
        if (record) {
          if (!o.ok) fresh.push(t); // still there: check it works
          continue;
        }
        this.live.delete(t.address);
        gone.push({ ns: t.ns, address: t.address, handle: t.handle, checkNamespace: t.via === 'netns' || t.adopted });
      } else {
        const o = await op.outcome;
        if (o === null) continue;
        sent.repeats++;
        noteFailure(o, `repeated create of ${op.target.address}`);
        if (o.ok) {
          acknowledged.repeats++;
          if (o.value.interfaceName !== op.target.handle) {
            problems.push(`repeated create of ${op.target.address} returned ${o.value.interfaceName}, not ${op.target.handle}`);
          }
        } else unacknowledged.repeats++;
      }
    }

    // Every record is one the model expects; none is an instance nobody asked for.
    for (const r of state.records) {
      const t = this.live.get(r.address);
      if (!t || t.handle !== r.handle) problems.push(`record ${r.handle} (${r.address}) is not one any request explains`);
    }
    for (const t of this.live.values()) {
      if (!byHandle.has(t.handle)) problems.push(`instance ${t.handle} (${t.address}) lost its record`);
    }
    problems.push(...consistencyProblems(state));

    // The daemon's own view agrees.
    const inspected = await f.inspect();
    const inspectedHandles = inspected.interfaces.map((i) => i.interfaceName).sort();
    const recordedHandles = state.records.map((r) => r.handle).sort();
    if (JSON.stringify(inspectedHandles) !== JSON.stringify(recordedHandles)) {
      problems.push(`Inspect lists ${inspectedHandles.length} interfaces, the state dir ${recordedHandles.length}`);
    }
    for (const i of inspected.interfaces) if (i.state !== 'present') problems.push(`Inspect shows ${i.interfaceName} as ${i.state}`);

    // Gone means gone: nothing left inside its namespace, a repeated delete is OK, the address is free again.
    await inBatches(gone, 5, async (g) => {
      if (g.checkNamespace) {
        const left = (await ipJson<Array<{ ifname: string }>>(g.ns, ['link', 'show'])).map((l) => l.ifname).filter((n) => n !== 'lo');
        if (left.length > 0)
          problems.push(
            `${g.address}${g.handle ? ` (${g.handle})` : ''} is gone, but its namespace ${g.ns} still holds ${left.join(', ')}`,
          );
      }
      if (g.handle) {
        const again = await settle(f.api.deleteInterface({ interfaceName: g.handle }));
        if (!again.ok) problems.push(`DeleteInterface(${g.handle}) again after it was gone: ${again.codeName} ${again.details}`);
      }
      await destroyNamespace(g.ns);
      this.free.push(g.address);
    });

    // Runtime-style instances are moved into their namespace once they exist, as a runtime would.
    for (const t of this.live.values()) {
      if (t.via !== 'runtime' || t.adopted) continue;
      try {
        await adoptInterface({
          nodeNs: f.ns,
          handle: t.handle,
          instanceNs: t.ns,
          address: t.address,
          prefixLength: NODE_PREFIX_LENGTH,
          gateway: NODE_GATEWAY,
          rename: 'eth0',
        });
        t.adopted = true;
      } catch (e) {
        problems.push(`could not move ${t.handle} (${t.address}) into ${t.ns} as a runtime would: ${(e as Error).message}`);
      }
    }

    const t2 = performance.now();
    // Traffic: the instances this round touched plus a few others, or all of them.
    const full = options.fullCheck || (index + 1) % this.fullCheckEvery === 0;
    let toCheck: Tracked[];
    if (full) toCheck = [...this.live.values()];
    else {
      const others = [...this.live.values()].filter((t) => !fresh.includes(t));
      toCheck = [
        ...fresh.filter((t) => this.live.get(t.address) === t),
        ...Array.from({ length: Math.min(2, others.length) }, () => this.pick(others)),
      ];
    }
    await inBatches(
      toCheck.filter((t) => t.via === 'netns' || t.adopted),
      6,
      async (t) => {
        t.server ??= await startSocatEcho(f.scope, t.ns, 'tcp', t.port, { ipv6: this.families !== 'ipv4' });
        // Every family: the gateway answers (the address is on the instance), the published port answers the
        // world at the node's address of that family (DNAT there, the reply routed back by the default route).
        for (const { gateway, node } of this.f.familyTargets()) {
          const [p, e] = await Promise.all([ping(t.ns, gateway), tcpEchoOnce(f.world.ns, node, t.port)]);
          if (!p.ok) problems.push(`${t.handle} (${t.address}) does not reach its gateway ${gateway}: ${p.output}`);
          if (!e.ok)
            problems.push(
              `${t.handle} (${t.address}): its published port ${t.port} does not answer from the world at ${node}: ${e.detail}`,
            );
        }
      },
    );

    const t3 = performance.now();
    const sentCount = sent.creates + sent.deletes + sent.repeats;
    const ackedCount = acknowledged.creates + acknowledged.deletes + acknowledged.repeats;
    const maxKillDelayMs = this.maxKillDelayMs;
    if (this.adaptKillDelay && sentCount > 0) {
      const fraction = ackedCount / sentCount;
      if (fraction < 0.3) this.maxKillDelayMs = Math.min(10_000, Math.round(this.maxKillDelayMs * 1.3));
      else if (fraction > 0.7) this.maxKillDelayMs = Math.max(200, Math.round(this.maxKillDelayMs / 1.3));
    }
    const report: RoundReport = {
      round: index,
      mode,
      killDelayMs,
      maxKillDelayMs,
      crash: crash!,
      servingMs: Math.round(servingMs),
      restoreMs: typeof restored?.durationMs === 'number' ? restored.durationMs : undefined,
      ops: sent,
      acknowledged,
      unacknowledged,
      cutShortCodes,
      restoreRepairs,
      passRepairs,
      phaseMs: { burstAndRestart: Math.round(t1 - t0), verify: Math.round(t2 - t1), traffic: Math.round(t3 - t2) },
      live: this.live.size,
      trafficChecked: toCheck.length,
      problems,
    };
    this.log(
      `round ${index} (${mode}, kill after ${killDelayMs} of 0..${maxKillDelayMs} ms, ${crash?.descendants ?? 0} commands in flight): ` +
        `acked ${acknowledged.creates} creates / ${acknowledged.deletes} deletes; cut short: ${unacknowledged.createsThere} creates there, ` +
        `${unacknowledged.createsGone} gone, ${unacknowledged.deletesThere} deletes undone, ${unacknowledged.deletesGone} done; ` +
        `restore repairs ${restoreRepairs.length}; SERVING after ${report.servingMs} ms; live ${this.live.size}; ` +
        `traffic checked ${toCheck.length}${full ? ' (all)' : ''}; problems ${problems.length}; ` +
        `${report.phaseMs.burstAndRestart}+${report.phaseMs.verify}+${report.phaseMs.traffic} ms`,
    );
    return report;
  }
}

export interface CrashRoundsSummary {
  readonly rounds: number;
  readonly roundsWithProblems: number;
  readonly acknowledgedCreates: number;
  readonly acknowledgedDeletes: number;
  readonly cutShort: { createsThere: number; createsGone: number; deletesThere: number; deletesGone: number };
  readonly commandsInFlightAtCrash: number;
  readonly restoreRepairs: number;
  /** Restore repairs by kind (the repair text with handles, addresses and numbers taken out). */
  readonly repairKinds: Record<string, number>;
  readonly servingMs: { min: number; median: number; max: number };
  readonly trafficChecks: number;
}

export function summarize(reports: readonly RoundReport[]): CrashRoundsSummary {
  const serving = reports.map((r) => r.servingMs).sort((a, b) => a - b);
  const sum = (fn: (r: RoundReport) => number) => reports.reduce((n, r) => n + fn(r), 0);
  const repairKinds: Record<string, number> = {};
  for (const r of reports) {
    for (const text of r.restoreRepairs) {
      const kind = text
        .replace(/nn[ih]-[0-9a-f]{8}/g, 'X')
        .replace(/\d+\.\d+\.\d+\.\d+(:\d+)?/g, 'A')
        // IPv6, with the port an `address:port` appends (fd19:0:0:2::d5:30213).
        .replace(/\b[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}\b\d*/g, 'A')
        .replace(/\b\d+\b/g, 'N')
        .replace(/(X, )+X/g, 'X...')
        .slice(0, 80);
      repairKinds[kind] = (repairKinds[kind] ?? 0) + 1;
    }
  }
  return {
    rounds: reports.length,
    roundsWithProblems: reports.filter((r) => r.problems.length > 0).length,
    acknowledgedCreates: sum((r) => r.acknowledged.creates),
    acknowledgedDeletes: sum((r) => r.acknowledged.deletes),
    cutShort: {
      createsThere: sum((r) => r.unacknowledged.createsThere),
      createsGone: sum((r) => r.unacknowledged.createsGone),
      deletesThere: sum((r) => r.unacknowledged.deletesThere),
      deletesGone: sum((r) => r.unacknowledged.deletesGone),
    },
    commandsInFlightAtCrash: sum((r) => r.crash.descendants),
    restoreRepairs: sum((r) => r.restoreRepairs.length),
    repairKinds,
    servingMs: { min: serving[0] ?? 0, median: serving[Math.floor(serving.length / 2)] ?? 0, max: serving[serving.length - 1] ?? 0 },
    trafficChecks: sum((r) => r.trafficChecked),
  };
}

/**
 * Runs `count` rounds on `fixture` (modes taken in turn), logging each as `[crash] ...`; throws at the first
 * round that went wrong (later rounds would only pile up on top of it), naming the seed and the crash.
 */
export async function runCrashRounds(
  fixture: NodeFixture,
  count: number,
  modes: readonly CrashMode[],
): Promise<{ seed: number; summary: CrashRoundsSummary }> {
  const rounds = new CrashRounds({ fixture, modes, log: (line) => console.log(`[crash] ${line}`) });
  console.log(`[crash] ${modes.join('/')}: seed ${rounds.seed}`);
  const reports: RoundReport[] = [];
  for (let i = 0; i < count; i++) {
    const report = await rounds.round(i, { fullCheck: i === count - 1 });
    reports.push(report);
    if (report.problems.length > 0) {
      throw new Error(
        `round ${i} (seed ${rounds.seed}, ${report.mode} crash after ${report.killDelayMs} ms; restore repairs ${JSON.stringify(report.restoreRepairs)}; ` +
          `periodic-pass repairs before the crash ${JSON.stringify(report.passRepairs)}): ${report.problems.length} problems:\n` +
          report.problems.join('\n'),
      );
    }
  }
  return { seed: rounds.seed, summary: summarize(reports) };
}
