/**
 * Watches a node's overlay programming as it happens: `ip -n NS monitor route neigh` (routes, neighbour
 * and FDB entries), each line timed as it arrives and fed to a FactTracker; for ovs also the flows of
 * nodenet0, dumped back to back while anyone waits (`ovs-ofctl monitor watch:` reports no flow the daemon's
 * own OpenFlow connection adds here, so the flows are polled: their times are the end of the first dump
 * that showed them, one dump late at most). `verify` dumps every fact, to check what the watch said.
 */
import { join } from 'node:path';
import { LineMonitor } from '@nodenet/sys';
import { exec, ipJson, nsExec } from '@nodenet/testkit';
import { FactTracker, PEER_DEVICE, parseIpMonitorLine, type BackendName, type FactEvent } from './peer-facts.js';

/** How long `ip monitor` gets to subscribe before anything is measured (it says nothing when it is ready). */
const MONITOR_SETTLE_MS = 300;

export class KernelWatch {
  readonly tracker = new FactTracker();
  private readonly monitors: LineMonitor[] = [];
  private stopped = false;
  /** Monitor exits (each one may have missed changes): recorded with the results. */
  readonly problems: string[] = [];

  private constructor(
    readonly ns: string,
    readonly backend: BackendName,
    /** The private OVS's run directory (ovs). */
    private readonly ovsDir: string | undefined,
  ) {}

  static async start(ns: string, backend: BackendName, ovsDir?: string): Promise<KernelWatch> {
    if (backend === 'ovs' && ovsDir === undefined) throw new Error('the ovs backend needs the private OVS run directory');
    const watch = new KernelWatch(ns, backend, ovsDir);
    watch.monitor('ip monitor', 'ip', ['-n', ns, 'monitor', 'route', 'neigh'], parseIpMonitorLine);
    if (backend === 'ovs') void watch.pollFlows();
    await new Promise((resolve) => setTimeout(resolve, MONITOR_SETTLE_MS));
    return watch;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.monitors.map((m) => m.stop()));
  }

  /**
   * The facts present now, read by dumping them (routes with nodenet's protocol, permanent neighbour
   * entries, the VXLAN device's FDB, the CNI bridge's flows).
   */
  async dump(): Promise<Set<string>> {
    const dev = PEER_DEVICE[this.backend];
    const facts = new Set<string>();
    const [routes, neighbours] = await Promise.all([
      ipJson<Array<{ dst: string; dev?: string }>>(this.ns, ['route', 'show', 'proto', '78']),
      ipJson<Array<{ dst: string; dev?: string; lladdr?: string }>>(this.ns, ['neigh', 'show', 'nud', 'permanent']),
    ]);
    for (const r of routes) facts.add(`route ${r.dst.includes('/') ? r.dst : `${r.dst}/32`} dev ${r.dev}`);
    for (const n of neighbours) if (n.lladdr) facts.add(`addr ${n.dst} dev ${n.dev}`);
    if (this.backend === 'iproute2') {
      const r = await nsExec(this.ns, 'bridge', ['-j', 'fdb', 'show', 'dev', dev], { allowFailure: true });
      for (const f of JSON.parse(r.stdout.trim() || '[]') as Array<{ dst?: string }>) if (f.dst) facts.add(`addr ${f.dst} dev ${dev}`);
    } else {
      for (const f of (await this.dumpFlows())?.keys() ?? []) facts.add(f);
    }
    return facts;
  }

  /** Where the dump and the events disagree about `peers`' facts (empty: they agree). */
  async verify(peers: readonly (readonly string[])[]): Promise<string[]> {
    const dumped = await this.dump();
    const problems: string[] = [];
    for (const f of peers.flat()) {
      if (dumped.has(f) !== this.tracker.has(f))
        problems.push(
          `${f}: ${dumped.has(f) ? 'in the kernel' : 'not in the kernel'} but ${this.tracker.has(f) ? 'present' : 'absent'} by the monitor`,
        );
    }
    return problems;
  }

  private mgmtSocket(): string {
    return `unix:${join(this.ovsDir!, 'nodenet0.mgmt')}`;
  }

  /** The flows of nodenet0 by cookie; null while the bridge is not there. */
  private async dumpFlows(): Promise<Map<string, number> | null> {
    const r = await exec('ovs-ofctl', ['-O', 'OpenFlow15', 'dump-flows', this.mgmtSocket(), '--no-stats'], { allowFailure: true });
    if (r.exitCode !== 0) return null;
    const counts = new Map<string, number>();
    for (const line of r.stdout.split('\n')) {
      const m = /\bcookie=(0x[0-9a-f]+)/.exec(line);
      if (m) counts.set(`flow ${m[1]!}`, (counts.get(`flow ${m[1]!}`) ?? 0) + 1);
    }
    return counts;
  }

  private async pollFlows(): Promise<void> {
    while (!this.stopped) {
      const counts = this.tracker.waiting ? await this.dumpFlows().catch(() => null) : null;
      if (counts) this.tracker.replace('flow ', counts, performance.now());
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private monitor(name: string, file: string, args: readonly string[], parse: (line: string) => FactEvent | null): void {
    const m = new LineMonitor({
      name,
      file,
      args,
      maxBackoffMs: 100,
      onLine: (line) => {
        const event = parse(line);
        if (event) this.tracker.apply(event, performance.now());
      },
      onExit: (info) => {
        if (!this.stopped) this.problems.push(`${name} in ${this.ns} exited (${info.code ?? info.signal}): ${info.stderr.slice(0, 300)}`);
      },
    });
    this.monitors.push(m);
    m.start();
  }
}
