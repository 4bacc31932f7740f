// Podman (CNI network backend) attaching containers through nodenet's plugin, on a node namespace with its
// own nodenetd: `podman run --network nodenet -p 8080:80` gives the container its address and published port,
// reached from the world; stop/rm frees both; a running container survives a daemon restart and is
// detached cleanly afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, ipBatch, type Daemon, type TestScope, type Topology } from '@nodenet/testkit';
import { startCniNode } from './fixture.js';
import { busyboxTarball, Podman } from './runtimes.js';

describe('podman run --network <nodenet conflist>', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let podman: Podman;
  const network = `nodenet-${process.pid}`;

  beforeAll(async () => {
    // Podman writes cniVersion 0.4.0 conflists itself; this one is what an operator would install.
    ({ scope, topo, daemon } = await startCniNode({
      name: network,
      cniVersion: '0.4.0',
      file: `${network}.conflist`,
      plugin: { subnet: '198.19.1.0/24', gateway: '198.19.1.1' },
      conflistDir: async (node) => (podman = await Podman.create(node.scope, node.topo.node(1).ns)).networkDir,
    }));
    await podman.importBusybox(await busyboxTarball(await scope.createTempDir()));
  });
  afterAll(() => scope?.cleanup());

  /** Runs container `name` on the network, echoing TCP on port 80, with podman's `-p` values `publish`. */
  const runEchoContainer = (name: string, publish: readonly string[]) =>
    podman.run([
      'run',
      '-d',
      '--name',
      name,
      '--network',
      network,
      ...publish.flatMap((p) => ['-p', p]),
      'localhost/busybox',
      'nc',
      '-ll',
      '-p',
      '80',
      '-e',
      'cat',
    ]);

  /** The container's address as podman reports it (from the plugin's result). */
  const addressOf = async (name: string) =>
    (await podman.run(['inspect', '--format', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, name])).stdout.trim();

  it('runs a container with a published port reached from the world; stop and rm free the address and port', async () => {
    await runEchoContainer('web', ['8080:80']);
    const address = await addressOf('web');
    expect(address).toMatch(/^198\.19\.1\.\d+$/);
    const reply = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080 });
    expect(reply.ok, reply.error).toBe(true);
    const inside = (await podman.run(['exec', 'web', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout;
    expect(inside).toContain(`${address}/24`);

    await podman.run(['stop', '--time', '1', 'web']);
    const afterStop = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080, timeoutMs: 1000 });
    expect(afterStop.ok).toBe(false);
    const state = await daemon.readState();
    expect(Object.keys(state).filter((k) => k.startsWith('cni-attachments/'))).toEqual([]);
    expect(Object.keys(state).filter((k) => k.startsWith('instances/'))).toEqual([]);
    await podman.run(['rm', 'web']);

    // Port and address are free again: a new container publishes the same port.
    await runEchoContainer('web2', ['8080:80']);
    expect(await addressOf('web2')).toMatch(/^198\.19\.1\.\d+$/);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080 })).ok).toBe(true);
    await podman.run(['rm', '--force', '--time', '0', 'web2']);
  });

  it('honours a static address (podman run --ip, the ips capability)', async () => {
    await podman.run(['run', '-d', '--name', 'fixed', '--network', network, '--ip', '198.19.1.77', 'localhost/busybox', 'sleep', '600']);
    expect(await addressOf('fixed')).toBe('198.19.1.77');
    expect((await podman.run(['exec', 'fixed', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain('198.19.1.77/24');
    await podman.run(['rm', '--force', '--time', '0', 'fixed']);
  });

  it('-p ADDRESS:HOST:CONTAINER publishes on that node address only (hostIP), 127.0.0.1 to the node only', async () => {
    const second = '198.18.0.201';
    await ipBatch(topo.node(1).ns, [`addr add ${second}/24 dev ${topo.node(1).underlayIfname}`]);
    await runEchoContainer('bound', [`${second}:8082:80`, '127.0.0.1:8083:80']);
    const node = topo.node(1);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: second, port: 8082 })).ok).toBe(true);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: node.address, port: 8082, timeoutMs: 1000 })).ok).toBe(false);
    expect((await echo(node.ns, { protocol: 'tcp', host: '127.0.0.1', port: 8083 })).ok).toBe(true);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: node.address, port: 8083, timeoutMs: 1000 })).ok).toBe(false);
    await podman.run(['rm', '--force', '--time', '0', 'bound']);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: second, port: 8082, timeoutMs: 1000 })).ok).toBe(false);
  });

  it('a running container survives a daemon restart, keeps its port, and is detached after it', async () => {
    await runEchoContainer('keep', ['8081:80']);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8081 })).ok).toBe(true);
    daemon = await daemon.restart();
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8081 })).ok).toBe(true);
    await podman.run(['rm', '--force', '--time', '0', 'keep']);
    const state = await daemon.readState();
    expect(Object.keys(state).filter((k) => k.startsWith('cni-attachments/') || k.startsWith('instances/'))).toEqual([]);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8081, timeoutMs: 1000 })).ok).toBe(false);
  });
});
