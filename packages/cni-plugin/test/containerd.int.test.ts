// containerd's `ctr run --cni` attaching a container through nodenet's plugin: the container sees the address
// nodenet gave it, and the DEL when it exits (which containerd sends with an empty CNI_NETNS) detaches it.
import { chmod, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, TestScope, Topology } from '@nodenet/testkit';
import { nodenetConflist, PLUGIN, writeConflist } from './support.js';
import { busyboxTarball, Containerd, Podman } from './runtimes.js';

describe('ctr run --cni', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let containerd: Containerd;
  let conflistDir: string;
  let optDir: string;

  beforeAll(async () => {
    scope = await TestScope.create();
    topo = await Topology.create(scope, { nodes: 1 });
    daemon = await Daemon.start({ scope, node: topo.node(1) });
    // The image: busybox imported into a scratch podman, saved as a docker archive, imported by ctr.
    const work = await scope.createTempDir();
    const podman = await Podman.create(scope, topo.node(1).ns);
    await podman.importBusybox(await busyboxTarball(work));
    const archive = join(work, 'busybox-image.tar');
    await podman.run(['save', '--format', 'docker-archive', '-o', archive, 'localhost/busybox']);
    containerd = await Containerd.start(scope, topo.node(1).ns);
    await containerd.ctr(['images', 'import', archive]);
    // What ctr reads: the first conflist of /etc/cni/net.d, plugins from /opt/cni/bin.
    conflistDir = join(work, 'net.d');
    await mkdir(conflistDir);
    await writeConflist(
      conflistDir,
      '10-nodenet.conflist',
      nodenetConflist({ name: 'nodenet', socket: daemon.cniSocket, extra: { subnet: '198.19.1.0/24', gateway: '198.19.1.1' } }),
    );
    optDir = join(work, 'opt');
    await mkdir(join(optDir, 'cni/bin'), { recursive: true });
    await copyFile(PLUGIN, join(optDir, 'cni/bin/nodenet'));
    await chmod(join(optDir, 'cni/bin/nodenet'), 0o755);
  });
  afterAll(() => scope?.cleanup());

  it('the container gets its nodenet address; its exit detaches it', async () => {
    const id = `nnt-ctr-${process.pid}`;
    const r = await containerd.runWithCni(conflistDir, optDir, [
      '--rm',
      'localhost/busybox:latest',
      id,
      '/bin/ip',
      '-4',
      '-o',
      'addr',
      'show',
      'dev',
      'eth0',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/inet 198\.19\.1\.\d+\/24/);
    // ctr names the attachment after its namespace and the container: default-<id>.
    const attached = daemon.logs.find((l) => l.event === 'cni-add' && l.containerId === `default-${id}`);
    expect(attached).toMatchObject({ ifname: 'eth0', address: expect.stringMatching(/^198\.19\.1\./) as unknown });
    // ctr's DEL (empty CNI_NETNS) removed the attachment, its instance and its record.
    await daemon.waitForLog((l) => l.event === 'cni-del' && l.containerId === `default-${id}`);
    const state = await daemon.readState();
    expect(Object.keys(state).filter((k) => k.startsWith('cni-attachments/') || k.startsWith('instances/'))).toEqual([]);
  });
});
