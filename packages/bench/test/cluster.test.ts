// The pure parts of the cluster and backends suites: simulated peers, what "routed" means per backend,
// the monitor lines, the tracker's waits, etcd transactions, the port-cost steps, targets and the table.
import { describe, expect, it } from 'vitest';
import { KeyLayout, decodeNodeRecord } from '@nodenet/membership-etcd/records';
import { FactTracker, ovsPeerCookie, parseIpMonitorLine, peerFacts, simulatedPeer } from '../src/cluster/peer-facts.js';
import { MAX_TXN_OPS, chunkOps, recordPuts } from '../src/cluster/etcd-records.js';
import { portCostFromScale, type BackendsResult } from '../src/suites/backends.js';
import type { ClusterBackendResult, ClusterResult } from '../src/suites/cluster.js';
import type { ScaleResult } from '../src/suites/scale.js';
import { judgeTargets } from '../src/results.js';
import { clusterMarkdown } from '../src/report/cluster-markdown.js';
import { summarize } from '../src/stats.js';

describe('simulated peers', () => {
  it('have distinct underlays and subnets clear of the nodes own 198.19.1-15.0/24', () => {
    const peers = Array.from({ length: 1100 }, (_, i) => simulatedPeer(i));
    expect(peers[0]).toMatchObject({ name: 'sim-0', underlayAddress: '198.18.1.1' });
    expect(peers[0]!.subnet!.toString()).toBe('198.19.16.0/28');
    expect(peers[249]!.underlayAddress).toBe('198.18.1.250');
    expect(peers[250]!.underlayAddress).toBe('198.18.2.1');
    expect(peers[1099]!.subnet!.toString()).toBe('198.19.84.176/28');
    expect(new Set(peers.map((p) => p.underlayAddress)).size).toBe(1100);
    expect(new Set(peers.map((p) => p.subnet!.toString())).size).toBe(1100);
    expect(() => simulatedPeer(-1)).toThrow(/not in 0\.\.4095/);
  });

  it('are routed by route + neighbour + FDB (iproute2) or route + neighbour + flows (ovs)', () => {
    const p = simulatedPeer(1);
    expect(peerFacts(p, 'iproute2')).toEqual([
      'route 198.19.16.16/28 dev nodenet-vx',
      'addr 198.19.16.16 dev nodenet-vx',
      'addr 198.18.1.2 dev nodenet-vx',
    ]);
    expect(peerFacts(p, 'ovs')).toEqual([
      'route 198.19.16.16/28 dev nodenet0',
      'addr 198.19.16.16 dev nodenet0',
      'flow 0x6e6e0300c6120102',
    ]);
    expect(ovsPeerCookie('198.18.0.1')).toBe('0x6e6e0300c6120001');
  });
});

describe('ip monitor lines', () => {
  it('routes, neighbour and FDB entries, and their removals', () => {
    expect(parseIpMonitorLine('198.19.16.0/28 via 198.19.16.0 dev nodenet-vx proto 78 onlink ')).toEqual({
      fact: 'route 198.19.16.0/28 dev nodenet-vx',
      delta: 1,
    });
    expect(parseIpMonitorLine('Deleted 198.19.16.0/28 via 198.19.16.0 dev nodenet0 proto 78 onlink')).toEqual({
      fact: 'route 198.19.16.0/28 dev nodenet0',
      delta: -1,
    });
    expect(parseIpMonitorLine('198.19.16.0 dev nodenet-vx lladdr 02:6f:c6:12:01:01 PERMANENT')).toEqual({
      fact: 'addr 198.19.16.0 dev nodenet-vx',
      delta: 1,
    });
    // An FDB entry of the VXLAN device: its dst first.
    expect(parseIpMonitorLine('198.18.1.1 dev nodenet-vx lladdr 02:6f:c6:12:01:01 NOARP PERMANENT')).toEqual({
      fact: 'addr 198.18.1.1 dev nodenet-vx',
      delta: 1,
    });
    // A neighbour entry on its way out (flushed) is not there any more.
    expect(parseIpMonitorLine('198.19.16.0 dev nodenet0 FAILED')).toEqual({ fact: 'addr 198.19.16.0 dev nodenet0', delta: -1 });
    expect(parseIpMonitorLine('Deleted 198.19.16.0 dev nodenet0 lladdr 02:6f:c6:12:01:01 PERMANENT')?.delta).toBe(-1);
    expect(parseIpMonitorLine('local 198.19.1.1 dev nodenet0 table local proto kernel scope host src 198.19.1.1')).toBeNull();
    expect(parseIpMonitorLine('fe80::/64 dev nodenet0 proto kernel metric 256 pref medium')).toBeNull();
  });
});

describe('FactTracker', () => {
  const a = ['route 198.19.16.0/28 dev x', 'flow 0x1'];
  const b = ['route 198.19.16.16/28 dev x', 'flow 0x2'];

  it('resolves with the time of the event that completed the set, and not before', async () => {
    const t = new FactTracker();
    let resolved: number | undefined;
    const wait = t.when([a, b], 'present', () => -1);
    void wait.done.then((at) => (resolved = at));
    t.apply({ fact: a[0]!, delta: 1 }, 10);
    t.set('flow 0x1', 3, 11);
    t.apply({ fact: b[0]!, delta: 1 }, 12);
    await Promise.resolve();
    expect(resolved).toBeUndefined();
    expect(wait.missing()).toEqual(['flow 0x2']);
    t.replace(
      'flow ',
      new Map([
        ['flow 0x1', 3],
        ['flow 0x2', 3],
      ]),
      20,
    );
    expect(await wait.done).toBe(20);
    expect(t.count([a, b], 'present')).toBe(2);
  });

  it('a fact that comes back makes its peer wait again; absent waits see removals; a met wait resolves at once', async () => {
    const t = new FactTracker();
    for (const f of [...a, ...b]) t.apply({ fact: f, delta: 1 }, 1);
    expect(await t.when([a], 'present', () => 5).done).toBe(5);
    const gone = t.when([a, b], 'absent', () => -1);
    t.replace('flow ', new Map(), 30); // both peers' flows gone
    t.apply({ fact: a[0]!, delta: -1 }, 31);
    t.apply({ fact: a[0]!, delta: 1 }, 32); // back again
    t.apply({ fact: b[0]!, delta: -1 }, 33);
    expect(gone.missing()).toEqual([a[0]]);
    t.apply({ fact: a[0]!, delta: -1 }, 34);
    expect(await gone.done).toBe(34);
    expect(t.waiting).toBe(false);
  });

  it('a cancelled wait is dropped', () => {
    const t = new FactTracker();
    const wait = t.when([a], 'present', () => 0);
    expect(t.waiting).toBe(true);
    wait.cancel();
    expect(t.waiting).toBe(false);
  });
});

describe('etcd records', () => {
  it('are written as nodenet writes them: the node record and its claim', () => {
    const keys = new KeyLayout('/bench');
    const peer = simulatedPeer(7);
    const ops = recordPuts(keys, peer);
    const text = (s: string) => Buffer.from(s, 'base64').toString('utf8');
    const [record, claim] = ops.map((o) => ('request_put' in o ? o.request_put : undefined));
    expect(text(record!.key)).toBe('/bench/nodes/sim-7');
    expect(decodeNodeRecord('/bench/nodes/sim-7', 'sim-7', text(record!.value))).toEqual(peer);
    expect(text(claim!.key)).toBe('/bench/subnets/198.19.16.112_28');
    expect(text(claim!.value)).toBe('sim-7');
  });

  it('go in transactions of at most MAX_TXN_OPS, a node never split', () => {
    const ops = Array.from({ length: 2 * 100 }, (_, i) => i);
    const chunks = chunkOps(ops, 2);
    expect(chunks.map((c) => c.length)).toEqual([MAX_TXN_OPS, 200 - MAX_TXN_OPS]);
    expect(
      chunkOps(
        Array.from({ length: 9 }, (_, i) => i),
        3,
      ).every((c) => c.length % 3 === 0 && c.length <= MAX_TXN_OPS),
    ).toBe(true);
  });
});

function scaleWith(steps: Array<[number, number, number]>): ScaleResult {
  return {
    samplesPerStep: 2,
    steps: steps.map(([existing, create, del]) => ({
      existing,
      create: summarize([create]),
      delete: summarize([del]),
      createSamples: [create],
      rssMB: 90,
      fillPerSecond: 100,
    })),
    p50Ratio: 1,
    instances: steps[steps.length - 1]![0],
    finalRssMB: 90,
    requested: steps[steps.length - 1]![0],
    errors: 0,
    firstErrors: [],
  };
}

describe('port cost', () => {
  it('takes the wanted steps of a scale run, or none when one is missing', () => {
    const scale = scaleWith([
      [100, 10, 8],
      [500, 11, 8],
      [1000, 12, 9.6],
    ]);
    const cost = portCostFromScale(scale, [100, 1000], true)!;
    expect(cost.steps.map((s) => [s.existing, s.portCostMs])).toEqual([
      [100, 18],
      [1000, 21.6],
    ]);
    expect(cost.ratio).toBe(1.2);
    expect(cost.fromScaleSuite).toBe(true);
    expect(portCostFromScale(scale, [100, 2000], true)).toBeUndefined();
    expect(portCostFromScale(undefined, [100], false)).toBeUndefined();
  });
});

function clusterBackend(joins: Array<[number, number]>, addP99: number, leaveMs: number): ClusterBackendResult {
  const adds = [addP99 / 2, addP99];
  return {
    joins: joins.map(([peers, joinMs]) => ({ peers, joinMs, cniMs: joinMs, cpuMs: 100, rssMB: 95 })),
    growth: joins[joins.length - 1]![1] / joins[0]![1],
    addRouted: summarize(adds),
    removeCleaned: summarize([50]),
    addSamples: adds,
    removeSamples: [50],
    leave: { peers: 1000, leaving: 100, ms: leaveMs },
    idleCpuPercent: 1.5,
    errors: 0,
    firstErrors: [],
  };
}

describe('cluster targets and table', () => {
  const cluster: ClusterResult = {
    sizes: [100, 500, 1000],
    repetitions: 2,
    idleSeconds: 10,
    backends: {
      iproute2: clusterBackend(
        [
          [100, 100],
          [500, 400],
          [1000, 900],
        ],
        400,
        300,
      ),
      ovs: clusterBackend(
        [
          [100, 100],
          [500, 1000],
          [1000, 2500],
        ],
        600,
        1200,
      ),
    },
  };
  const backends: BackendsResult = {
    cycles: 2,
    warmup: 0,
    latency: {},
    createRatio: 1.5,
    deleteRatio: 1.6,
    portCost: {
      iproute2: portCostFromScale(
        scaleWith([
          [100, 10, 8],
          [1000, 10, 9],
        ]),
        [100, 1000],
        true,
      )!,
      ovs: portCostFromScale(
        scaleWith([
          [100, 20, 10],
          [1000, 30, 10],
        ]),
        [100, 1000],
        false,
      )!,
    },
  };

  it('judges each backend against its own limits', () => {
    const byId = Object.fromEntries(judgeTargets({ cluster, backends }).map((t) => [t.id, t]));
    expect(byId['cluster-join-iproute2']).toMatchObject({ measured: 900, limit: 1000, pass: true });
    expect(byId['cluster-join-ovs']).toMatchObject({ measured: 2500, limit: 2000, pass: false });
    expect(byId['cluster-growth-iproute2']).toMatchObject({ measured: 9, pass: true });
    expect(byId['cluster-growth-ovs']).toMatchObject({ measured: 25, pass: false });
    expect(byId['peer-add-iproute2']).toMatchObject({ pass: true });
    expect(byId['peer-add-ovs']).toMatchObject({ pass: false });
    expect(byId['peer-leave-iproute2']).toMatchObject({ measured: 300, pass: true });
    expect(byId['peer-leave-ovs']).toMatchObject({ measured: 1200, pass: false });
    expect(byId['ovs-create-vs-iproute2']).toMatchObject({ measured: 1.5, pass: true });
    expect(byId['ovs-delete-vs-iproute2']).toMatchObject({ measured: 1.6, pass: false });
    expect(byId['port-cost-flat-iproute2']).toMatchObject({ measured: 1.056, pass: true });
    expect(byId['port-cost-flat-ovs']).toMatchObject({ measured: 1.333, pass: false });
    const unmeasured = judgeTargets({}).filter((t) => t.id.startsWith('cluster-') || t.id.startsWith('port-cost'));
    expect(unmeasured.every((t) => t.pass === null)).toBe(true);
  });

  it('puts both suites in the Markdown', () => {
    const md = clusterMarkdown({ cluster, backends }).join('\n');
    expect(md).toContain('| 1000 peers: CNI call → all routed | 900 | 2500 |');
    expect(md).toContain('| growth 1000 / 100 | 9.00 | 25.00 |');
    expect(md).toContain('| the CNI call itself, at 1000 peers | 900 | 2500 |');
    expect(md).toContain('| 10% leave in one txn → cleaned up | 300 (100) | 1200 (100) |');
    expect(md).toContain('| one more port at 1000 instances (create + delete p50) | 19.0 | 40.0 |  |');
    expect(md).toContain('| ratio 1000 / 100 | 1.06 (scale suite) | 1.33 |  |');
    expect(md).not.toMatch(/NaN|undefined/);
  });
});
