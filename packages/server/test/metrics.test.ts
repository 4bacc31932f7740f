/**
 * The metrics registry's names and labels (Prometheus conventions), its hooks, and the `metrics` config
 * key. The daemon's endpoint, scraped by promtool and a real Prometheus, is metrics.int.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { REPAIR_KINDS, type Membership, type NodeNetwork, type PeerSync, type ReconcileReport } from '@nodenet/core';
import { TOOLS, observeCommands, reportCommand } from '@nodenet/sys';
import { ConfigError, parseConfig } from '../src/config.js';
import { DaemonMetrics, type MetricsSources } from '../src/metrics.js';

interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly values: readonly { readonly labels: Record<string, string | number>; readonly value: number; readonly metricName?: string }[];
}

async function families(m: DaemonMetrics): Promise<Family[]> {
  return (await m.registry.getMetricsAsJSON()) as unknown as Family[];
}

async function value(m: DaemonMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const familyName = name.replace(/_(bucket|sum|count)$/, '');
  const family =
    (await families(m)).find((f) => f.name === name) ?? (await families(m)).find((f) => f.name === familyName && f.type === 'histogram');
  const hit = family?.values.find((v) => (v.metricName ?? name) === name && Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return hit?.value;
}

const EXPECTED: Record<string, { type: string; labels: string[] }> = {
  nodenet_build_info: { type: 'gauge', labels: ['version', 'backend'] },
  nodenet_rpc_requests_total: { type: 'counter', labels: ['method', 'code'] },
  nodenet_rpc_duration_seconds: { type: 'histogram', labels: ['method', 'code'] },
  nodenet_instances: { type: 'gauge', labels: ['kind'] },
  nodenet_published_ports: { type: 'gauge', labels: ['protocol'] },
  nodenet_cni_present: { type: 'gauge', labels: [] },
  nodenet_peers: { type: 'gauge', labels: [] },
  nodenet_peers_programmed: { type: 'gauge', labels: [] },
  nodenet_membership_connected: { type: 'gauge', labels: [] },
  nodenet_membership_lease_renew_failures_total: { type: 'counter', labels: [] },
  nodenet_membership_last_peer_change_timestamp_seconds: { type: 'gauge', labels: [] },
  nodenet_reconcile_runs_total: { type: 'counter', labels: ['result'] },
  nodenet_reconcile_duration_seconds: { type: 'histogram', labels: [] },
  nodenet_reconcile_repairs_total: { type: 'counter', labels: ['kind', 'trigger'] },
  nodenet_reconcile_last_run_timestamp_seconds: { type: 'gauge', labels: [] },
  nodenet_repair_latency_seconds: { type: 'histogram', labels: ['kind'] },
  nodenet_commands_total: { type: 'counter', labels: ['tool'] },
  nodenet_command_failures_total: { type: 'counter', labels: ['tool', 'reason'] },
  nodenet_config_reloads_total: { type: 'counter', labels: ['result'] },
};

function fakeSources(over: { status?: Membership['status']; lastPeerChangeAt?: number | null } = {}): MetricsSources {
  const instances = [
    { kind: 'veth', ports: [{ protocol: 'tcp' }, { protocol: 'udp' }, { protocol: 'tcp' }] },
    { kind: 'tap', ports: [] },
    { kind: 'veth', ports: [{ protocol: 'udp' }] },
  ];
  const peers = [{ name: 'node-2' }, { name: 'node-3' }];
  return {
    network: { listInstances: () => instances, cniRecord: { name: 'nodenet0' } } as unknown as NodeNetwork,
    membership: { type: 'etcd', peers: () => peers, ...(over.status ? { status: over.status } : {}) } as unknown as Membership,
    sync: { current: () => peers.slice(0, 1) } as unknown as PeerSync,
    lastPeerChangeAt: () => over.lastPeerChangeAt ?? null,
  };
}

describe('DaemonMetrics', () => {
  it('registers exactly the documented nodenet_ families, with Prometheus naming conventions', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', version: '9.9.9', defaultMetrics: false });
    const ours = (await families(m)).filter((f) => f.name.startsWith('nodenet_'));
    expect(Object.fromEntries(ours.map((f) => [f.name, f.type]))).toEqual(
      Object.fromEntries(Object.entries(EXPECTED).map(([n, e]) => [n, e.type])),
    );
    for (const f of ours) {
      expect(f.name).toMatch(/^nodenet_[a-z0-9_]+$/);
      // counters and only counters end in _total; durations and timestamps are in seconds; help says something
      expect(f.name.endsWith('_total'), f.name).toBe(f.type === 'counter');
      if (/duration|timestamp/.test(f.name)) expect(f.name).toMatch(/_seconds$/);
      expect(f.help.length).toBeGreaterThan(20);
    }
    expect(await value(m, 'nodenet_build_info', { version: '9.9.9', backend: 'iproute2' })).toBe(1);
  });

  it('keeps the process defaults under their conventional names, without the gauges named _total and without the event-loop timer', async () => {
    const m = new DaemonMetrics({ backend: 'ovs' });
    const names = (await families(m)).map((f) => f.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'process_start_time_seconds',
        'process_open_fds',
        'nodejs_heap_size_used_bytes',
        'nodejs_gc_duration_seconds',
        'nodejs_active_handles',
        'nodejs_version_info',
      ]),
    );
    expect(names.filter((n) => n.startsWith('nodejs_eventloop_lag'))).toEqual([]);
    for (const f of await families(m)) if (f.name.endsWith('_total')) expect(f.type, f.name).toBe('counter');
  });

  it('counts RPCs by method and status code, declared methods at 0 from the start', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    m.rpcDeclared('CreateInterface');
    expect(await value(m, 'nodenet_rpc_requests_total', { method: 'CreateInterface', code: 'OK' })).toBe(0);
    m.rpcDone('CreateInterface', 'OK', 0.004);
    m.rpcDone('CreateInterface', 'OK', 0.006);
    m.rpcDone('CreateInterface', 'ALREADY_EXISTS', 0.001);
    expect(await value(m, 'nodenet_rpc_requests_total', { method: 'CreateInterface', code: 'OK' })).toBe(2);
    expect(await value(m, 'nodenet_rpc_requests_total', { method: 'CreateInterface', code: 'ALREADY_EXISTS' })).toBe(1);
    expect(await value(m, 'nodenet_rpc_duration_seconds_count', { method: 'CreateInterface', code: 'OK' })).toBe(2);
    expect(await value(m, 'nodenet_rpc_duration_seconds_sum', { method: 'CreateInterface', code: 'OK' })).toBeCloseTo(0.01);
    expect(await value(m, 'nodenet_rpc_duration_seconds_bucket', { method: 'CreateInterface', code: 'OK', le: 0.005 } as never)).toBe(1);
  });

  it('reads instances, ports, peers and membership from the daemon at scrape time', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    expect(await value(m, 'nodenet_instances', { kind: 'veth' })).toBe(0); // before attach
    let failures = 2;
    m.attach(fakeSources({ status: () => ({ connected: false, leaseRenewFailures: failures }), lastPeerChangeAt: 1_700_000_000_500 }));
    expect(await value(m, 'nodenet_instances', { kind: 'veth' })).toBe(2);
    expect(await value(m, 'nodenet_instances', { kind: 'tap' })).toBe(1);
    expect(await value(m, 'nodenet_published_ports', { protocol: 'tcp' })).toBe(2);
    expect(await value(m, 'nodenet_published_ports', { protocol: 'udp' })).toBe(2);
    expect(await value(m, 'nodenet_cni_present')).toBe(1);
    expect(await value(m, 'nodenet_peers')).toBe(2);
    expect(await value(m, 'nodenet_peers_programmed')).toBe(1);
    expect(await value(m, 'nodenet_membership_connected')).toBe(0);
    expect(await value(m, 'nodenet_membership_lease_renew_failures_total')).toBe(2);
    failures = 5;
    expect(await value(m, 'nodenet_membership_lease_renew_failures_total')).toBe(5);
    expect(await value(m, 'nodenet_membership_last_peer_change_timestamp_seconds')).toBe(1_700_000_000.5);
    // Static membership has no status: always connected.
    const s = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    s.attach(fakeSources());
    expect(await value(s, 'nodenet_membership_connected')).toBe(1);
  });

  it('counts reconcile passes by result, repairs by kind (every kind at 0 from the start), and overlay repairs', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    for (const kind of REPAIR_KINDS)
      for (const trigger of ['start', 'periodic', 'event'])
        expect(await value(m, 'nodenet_reconcile_repairs_total', { kind, trigger })).toBe(0);
    const report = (r: Partial<ReconcileReport>): ReconcileReport => ({
      trigger: 'periodic',
      startedAt: '',
      durationMs: 40,
      repairs: [],
      repairCounts: {},
      errors: [],
      ...r,
    });
    m.reconciled(report({}));
    m.reconciled(report({ trigger: 'event', repairs: ['a', 'b'], repairCounts: { orphan_link: 3, missing_rules: 1 }, durationMs: 1500 }));
    m.reconciled(report({ errors: ['x'] }));
    m.overlayRepaired(2, 'periodic');
    m.overlayRepaired(0, 'periodic');
    expect(await value(m, 'nodenet_reconcile_runs_total', { result: 'clean' })).toBe(1);
    expect(await value(m, 'nodenet_reconcile_runs_total', { result: 'repaired' })).toBe(1);
    expect(await value(m, 'nodenet_reconcile_runs_total', { result: 'errors' })).toBe(1);
    expect(await value(m, 'nodenet_reconcile_repairs_total', { kind: 'orphan_link', trigger: 'event' })).toBe(3);
    expect(await value(m, 'nodenet_reconcile_repairs_total', { kind: 'missing_rules', trigger: 'event' })).toBe(1);
    expect(await value(m, 'nodenet_reconcile_repairs_total', { kind: 'overlay', trigger: 'periodic' })).toBe(2);
    expect(await value(m, 'nodenet_reconcile_duration_seconds_sum')).toBeCloseTo(1.58);
    expect(await value(m, 'nodenet_reconcile_last_run_timestamp_seconds')).toBeGreaterThan(1_700_000_000);
  });

  it('observes event repairs from the first change seen, per kind repaired', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    m.repairedOnEvent(0.4, ['instance_recreated']);
    m.repairedOnEvent(1.2, ['instance_recreated', 'cni']);
    expect(await value(m, 'nodenet_repair_latency_seconds_count', { kind: 'instance_recreated' })).toBe(2);
    expect(await value(m, 'nodenet_repair_latency_seconds_sum', { kind: 'instance_recreated' })).toBeCloseTo(1.6);
    expect(await value(m, 'nodenet_repair_latency_seconds_count', { kind: 'cni' })).toBe(1);
  });

  it('counts commands by tool (every tool at 0) and failures by tool and reason', async () => {
    const m = new DaemonMetrics({ backend: 'iproute2', defaultMetrics: false });
    for (const tool of TOOLS) expect(await value(m, 'nodenet_commands_total', { tool })).toBe(0);
    m.commandDone({ tool: 'nft', outcome: 'ok' });
    m.commandDone({ tool: 'nft', outcome: 'error_output' });
    m.commandDone({ tool: 'ovs-vsctl', outcome: 'timeout' });
    expect(await value(m, 'nodenet_commands_total', { tool: 'nft' })).toBe(2);
    expect(await value(m, 'nodenet_command_failures_total', { tool: 'nft', reason: 'error_output' })).toBe(1);
    expect(await value(m, 'nodenet_command_failures_total', { tool: 'ovs-vsctl', reason: 'timeout' })).toBe(1);
    // The ovs backend's OVSDB and OpenFlow requests report under tools of their own (backend-ovs's ovs-outcome.ts).
    const unobserve = observeCommands((e) => m.commandDone(e));
    reportCommand('ovsdb', 'session_exited');
    reportCommand('openflow', 'error_output');
    reportCommand('openflow', 'ok');
    unobserve();
    expect(await value(m, 'nodenet_command_failures_total', { tool: 'ovsdb', reason: 'session_exited' })).toBe(1);
    expect(await value(m, 'nodenet_command_failures_total', { tool: 'openflow', reason: 'error_output' })).toBe(1);
    expect(await value(m, 'nodenet_commands_total', { tool: 'openflow' })).toBe(2);
    m.configReloaded('rejected');
    expect(await value(m, 'nodenet_config_reloads_total', { result: 'rejected' })).toBe(1);
    expect(await value(m, 'nodenet_config_reloads_total', { result: 'applied' })).toBe(0);
  });
});

describe('the metrics config key', () => {
  const backends = ['iproute2'];
  const problems = (raw: unknown, flags = {}): string[] => {
    try {
      parseConfig(raw, { backends, flags });
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return [...(e as ConfigError).problems];
    }
    throw new Error('expected a ConfigError');
  };

  it('defaults to 127.0.0.1:9842; "" turns it off; the flag overrides the file and keeps its tls', () => {
    expect(parseConfig({}, { backends }).metrics).toEqual({ listen: { host: '127.0.0.1', port: 9842, uri: '127.0.0.1:9842' } });
    expect(parseConfig({ metrics: { listen: '' } }, { backends }).metrics).toEqual({ listen: null });
    const c = parseConfig(
      { metrics: { listen: '0.0.0.0:1', tls: { cert: 'c.pem', key: 'k.pem' } } },
      { backends, baseDir: '/etc/nodenet', flags: { metricsListen: '198.18.0.1:9100' } },
    );
    expect(c.metrics).toEqual({
      listen: { host: '198.18.0.1', port: 9100, uri: '198.18.0.1:9100' },
      tls: { cert: '/etc/nodenet/c.pem', key: '/etc/nodenet/k.pem' },
    });
  });

  it('refuses a unix address, a bad port, tls without an endpoint and the API port, naming the key or the flag', () => {
    expect(problems({ metrics: { listen: 'unix:///run/m.sock' } })).toEqual([
      expect.stringMatching(/^config: metrics.listen: .*Prometheus scrapes over TCP/),
    ]);
    expect(problems({}, { metricsListen: '127.0.0.1:0' })).toEqual([
      expect.stringMatching(/^--metrics-listen: .*the port must be 1..65535/),
    ]);
    expect(problems({ metrics: { listen: '', tls: { cert: 'c', key: 'k' } } })).toEqual([
      expect.stringMatching(/^config: metrics.tls: .*metrics are off/),
    ]);
    expect(problems({ listen: '0.0.0.0:9842', insecure: true })).toEqual([
      expect.stringMatching(/^config: metrics.listen: .*give metrics another port/),
    ]);
    expect(problems({ metrics: { port: 1 } })).toEqual([
      expect.stringMatching(/^config: metrics: unknown key 'port': valid keys are listen, tls/),
    ]);
  });
});
