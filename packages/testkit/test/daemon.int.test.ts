// The daemon launcher against the real daemon (packages/server/dist/main.js: run `npm run build` first).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { TestScope } from '../src/scope.js';
import { Topology } from '../src/topology.js';
import { Daemon } from '../src/daemon.js';
import { rpcError, status } from '../src/clients.js';

describe('Daemon launcher', () => {
  let scope: TestScope;
  let topo: Topology;
  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 2 });
  });
  afterAll(() => scope.cleanup());

  it('starts the daemon in a node namespace, waits for SERVING, collects JSON logs and stops it with exit 0', async () => {
    const daemon = await Daemon.start({ scope, node: topo.node(1) });
    expect(daemon.target).toMatch(/^unix:\/\/\/tmp\/nnt-\d+-\d+-.+\/nodenet\.sock$/);
    expect(((await stat(daemon.target.slice('unix://'.length))).mode & 0o777).toString(8)).toBe('600');
    const health = daemon.health();
    expect(await health.check('')).toBe('SERVING');
    expect(await health.check('network.Network')).toBe('SERVING');
    health.close();
    expect(daemon.config).toMatchObject({ nodeName: 'node-1', underlayAddress: '198.18.0.1', backend: 'iproute2' });
    expect(daemon.logs.length).toBeGreaterThan(0);
    expect(daemon.nonJsonStdout).toEqual([]);

    // Both clients reach it: before any CNI, CreateInterface is FAILED_PRECONDITION.
    const viaFull = await rpcError(daemon.network().createInterface({ ipAddress: '198.19.1.2' }));
    expect(viaFull.code).toBe(status.FAILED_PRECONDITION);
    const viaSeed = await rpcError(daemon.seed().createInterface({ ip_address: '198.19.1.2', ports: [] }));
    expect(viaSeed).toEqual(viaFull);

    expect(await daemon.stop()).toEqual({ exitCode: 0, signal: undefined });
  });

  it('kills, restarts with the same state dir, and reports a daemon that dies at start', async () => {
    const first = await Daemon.start({ scope, node: topo.node(2) });
    await first.network().createContainerNetworkInterface({ ipAddress: '198.19.2.1', subNetwork: '198.19.2.0/24' });
    expect(Object.keys(await first.readState()).length).toBeGreaterThan(0);
    expect((await first.kill()).signal).toBe('SIGKILL');
    const second = await first.restart();
    expect(second.stateDir).toBe(first.stateDir);
    const again = await second.network().createContainerNetworkInterface({ ipAddress: '198.19.2.1', subNetwork: '198.19.2.0/24' });
    expect(again.interfaceName).toBe('nodenet0');
    expect((await second.stop()).exitCode).toBe(0);

    const broken = await Daemon.spawn({ scope, node: topo.node(2), config: { backend: 'no-such-backend' } });
    await expect(broken.waitForServing(20_000)).rejects.toThrow(/exited before it was SERVING \(exit code 2\)/);
  });

  it('reaches a daemon listening on TCP inside the namespace through a proxy', async () => {
    const daemon = await Daemon.start({ scope, node: topo.node(1), tcpPort: 50051 });
    expect(daemon.config).toMatchObject({ listen: '0.0.0.0:50051', insecure: true });
    const e = await rpcError(daemon.network().deleteInterface({ interfaceName: 'a/b' }));
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect((await daemon.stop()).exitCode).toBe(0);
  });
});
