/**
 * SIGHUP reloads the config of a running daemon (testkit launcher, a test namespace): the log level and the
 * static peers apply live (the peer's route appears, then goes), a changed key that needs a restart
 * (`listen`) is named in a log line and left as it was, and an invalid config is logged and ignored while
 * the daemon keeps serving with the old one.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetworkAdminClient } from '@nodenet/api';
import { Daemon, TestScope, Topology, exec, httpGetInNamespace, type LogLine } from '@nodenet/testkit';

describe('SIGHUP', () => {
  let scope: TestScope;
  let topo: Topology;
  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 1 });
  });
  afterAll(() => scope.cleanup());

  it('applies logLevel and static peers live, names keys that need a restart, ignores an invalid config', async () => {
    const node = topo.node(1);
    const daemon = await Daemon.start({ scope, node });
    await daemon.network().createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    const api = createNetworkAdminClient(daemon.target);
    scope.defer('admin client', () => api.close());
    const original = JSON.parse(await readFile(daemon.launch.configPath, 'utf8')) as Record<string, unknown>;
    const peer = { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' };
    const routeToPeer = async () => (await exec('ip', ['-n', node.ns, '-4', 'route', 'show', '198.19.2.0/24'])).stdout.trim();
    // The log lines of one ListPeers call: up to its 'rpc' line (written after any debug line of the call).
    const callLogs = async (): Promise<LogLine[]> => {
      const from = daemon.logs.length;
      await api.listPeers();
      const done = await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= from && l.msg === 'rpc' && l.method === 'ListPeers');
      return daemon.logs.slice(from, daemon.logs.indexOf(done) + 1);
    };
    const debugIn = (lines: LogLine[]) => lines.filter((l) => l.level === 'debug').length;
    let reloads = 0;
    const reload = async (config: Record<string, unknown>): Promise<LogLine> => {
      await writeFile(daemon.launch.configPath, `${JSON.stringify(config, null, 2)}\n`);
      const seen = daemon.logs.filter(isReloadResult).length;
      process.kill(daemon.pid!, 'SIGHUP');
      reloads++;
      return daemon.waitForLog((l) => isReloadResult(l) && daemon.logs.filter(isReloadResult).indexOf(l) === seen);
    };

    // Before: info level (no debug lines), no peers, no route.
    expect(debugIn(await callLogs())).toBe(0);
    expect(await routeToPeer()).toBe('');

    // 1. logLevel debug, a peer added, listen changed (needs a restart).
    const newListen = `unix://${daemon.dir}/elsewhere.sock`;
    const applied = await reload({ ...original, logLevel: 'debug', membership: { type: 'static', peers: [peer] }, listen: newListen });
    expect(applied).toMatchObject({ result: 'applied', applied: ['logLevel', 'membership.peers'], restartNeeded: ['listen'] });
    const restartLine = daemon.logs.find((l) => l.event === 'config-reload' && l.level === 'warn');
    expect(restartLine?.msg).toMatch(/^config reload: listen changed but cannot change while the daemon runs: restart nodenetd to apply/);
    // The peer is live: listed and routed through the overlay.
    expect((await api.listPeers()).peers.map((p) => p.peer?.name)).toEqual(['node-2']);
    await waitUntil(async () => (await routeToPeer()) !== '');
    expect(await routeToPeer()).toMatch(/^198\.19\.2\.0\/24 via \S+ dev nodenet-vx/);
    // Debug lines now appear (each RPC logs 'request received' at debug).
    expect(debugIn(await callLogs())).toBeGreaterThan(0);
    // listen stayed: the daemon still serves on its old socket, nothing on the new one.
    expect((await api.listPeers()).membership).toBe('static');
    await expect(readFile(newListen.slice('unix://'.length))).rejects.toMatchObject({ code: 'ENOENT' });

    // 2. An invalid config is logged and ignored: the peer, the level and the daemon stay.
    const rejected = await reload({ ...original, logLevel: 'debug', membership: { type: 'static', peers: [peer] }, overlay: { vni: 0 } });
    expect(rejected).toMatchObject({ result: 'rejected', problems: ['config: overlay.vni: must be an integer 1..16777215 (got 0)'] });
    expect(rejected.level).toBe('error');
    expect((await api.listPeers()).peers.map((p) => p.peer?.name)).toEqual(['node-2']);
    expect(daemon.exit).toBeUndefined();

    // 3. Back to the original file: the peer and its route go, the level is info again.
    const back = await reload(original);
    expect(back).toMatchObject({ result: 'applied', applied: ['logLevel', 'membership.peers'], restartNeeded: [] });
    expect((await api.listPeers()).peers).toEqual([]);
    await waitUntil(async () => (await routeToPeer()) === '');
    expect(debugIn(await callLogs())).toBe(0);

    // Reloads are counted by result.
    const metrics = (await httpGetInNamespace(scope, node.ns, '127.0.0.1', 9842, '/metrics')).body;
    expect(metrics).toMatch(/^nodenet_config_reloads_total\{result="applied"\} 2$/m);
    expect(metrics).toMatch(/^nodenet_config_reloads_total\{result="rejected"\} 1$/m);
    expect(reloads).toBe(3);
    expect((await daemon.stop()).exitCode).toBe(0);
  });
});

function isReloadResult(l: LogLine): boolean {
  return l.event === 'config-reload' && (l.result === 'applied' || l.result === 'rejected');
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
