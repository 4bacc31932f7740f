// Podman (CNI network backend) on a dual-stack node (IPv4 198.19.1.0/24 and IPv6 fd19:0:0:1::/64 beside the
// 2001:db8:18::/64 underlay) made by the conflist alone (its subnet, gateway, ipv6Subnet and ipv6Gateway): `podman
// run -p 8080:80` gives the container an address of each family, as podman reports them from the plugin's result,
// and the published port answers over IPv6 from the world; `-p [ADDRESS]:8081:80` publishes on that IPv6 node
// address only (portmap's hostIP).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, ipBatch, type Daemon, type TestScope, type Topology } from '@nodenet/testkit';
import { NODE6, startCniNode } from './fixture.js';
import { busyboxTarball, Podman } from './runtimes.js';

/** A second IPv6 address of the node on its underlay link. */
const SECOND6 = '2001:db8:18::201';

describe('podman run on a dual-stack node', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let podman: Podman;
  const network = `nodenet6-${process.pid}`;

  beforeAll(async () => {
    ({ scope, topo, daemon } = await startCniNode({
      ipv6Underlay: true,
      name: network,
      cniVersion: '0.4.0',
      file: `${network}.conflist`,
      plugin: { subnet: '198.19.1.0/24', gateway: '198.19.1.1', ipv6Subnet: 'fd19:0:0:1::/64', ipv6Gateway: 'fd19:0:0:1::1' },
      conflistDir: async (node) => (podman = await Podman.create(node.scope, node.topo.node(1).ns)).networkDir,
    }));
    await ipBatch(topo.node(1).ns, [`addr add ${SECOND6}/64 dev ${topo.node(1).underlayIfname} nodad`]);
    await podman.importBusybox(await busyboxTarball(await scope.createTempDir()));
  });
  afterAll(() => scope?.cleanup());

  it('the container gets both families; its published port answers over IPv6 and IPv4; another container reaches it over IPv6; rm frees it', async () => {
    await podman.run([
      'run',
      '-d',
      '--name',
      'web6',
      '--network',
      network,
      '-p',
      '8080:80',
      'localhost/busybox',
      'nc',
      '-ll',
      '-p',
      '80',
      '-e',
      'cat',
    ]);
    const field = (f: string) =>
      podman.run(['inspect', '--format', `{{(index .NetworkSettings.Networks "${network}").${f}}}`, 'web6']).then((r) => r.stdout.trim());
    expect(await field('IPAddress')).toMatch(/^198\.19\.1\.\d+$/);
    const v6 = await field('GlobalIPv6Address');
    expect(v6).toMatch(/^fd19:0:0:1::[0-9a-f]+$/);
    expect(await field('IPv6Gateway')).toBe('fd19:0:0:1::1');
    const inside = (await podman.run(['exec', 'web6', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])).stdout;
    expect(inside).toContain(`${v6}/64`);
    const over6 = await echo(topo.world.ns, { protocol: 'tcp', host: NODE6, port: 8080 });
    expect(over6.ok, over6.error).toBe(true);
    const over4 = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080 });
    expect(over4.ok, over4.error).toBe(true);
    // Another container reaches it and the gateway over IPv6 (busybox ping: NET_RAW, not in podman's default set).
    for (const target of [v6, 'fd19:0:0:1::1']) {
      const r = await podman.run(
        ['run', '--rm', '--network', network, '--cap-add', 'NET_RAW', 'localhost/busybox', 'ping', '-c', '1', '-W', '5', target],
        { allowFailure: true },
      );
      expect(r.exitCode, `ping ${target}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    await podman.run(['rm', '-f', '--time', '1', 'web6']);
    const state = await daemon.readState();
    expect(Object.keys(state).filter((k) => k.startsWith('instances/'))).toEqual([]);
  });

  it('-p [IPV6_ADDRESS]:HOST:CONTAINER publishes on that IPv6 node address only, to the IPv6 address of the container', async () => {
    await podman.run([
      'run',
      '-d',
      '--name',
      'bound6',
      '--network',
      network,
      '-p',
      `[${SECOND6}]:8081:80`,
      'localhost/busybox',
      'nc',
      '-ll',
      '-p',
      '80',
      '-e',
      'cat',
    ]);
    const reply = await echo(topo.world.ns, { protocol: 'tcp', host: SECOND6, port: 8081 });
    expect(reply.ok, reply.error).toBe(true);
    for (const host of [NODE6, topo.node(1).address])
      expect((await echo(topo.world.ns, { protocol: 'tcp', host, port: 8081, timeoutMs: 1000 })).ok, `${host}:8081 was answered`).toBe(
        false,
      );
    await podman.run(['rm', '-f', '--time', '1', 'bound6']);
    expect((await echo(topo.world.ns, { protocol: 'tcp', host: SECOND6, port: 8081, timeoutMs: 1000 })).ok).toBe(false);
  });
});
