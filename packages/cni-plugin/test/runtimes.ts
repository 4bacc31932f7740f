/**
 * Real container runtimes for the plugin's tests, everything in a test's temp dirs: Podman (CNI network
 * backend, runc, storage and config passed through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF) and a
 * containerd of its own; a busybox image without a registry. The quirks of this machine they allow for are
 * in TOOLCHAIN.md ("Container runtimes here").
 */
import { mkdir, symlink, copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exec, type ExecResult, type TestScope } from '@nodenet/testkit';
import { PLUGIN_DIST, STOCK_PLUGINS } from './support.js';

/** A busybox root filesystem as a tarball (busybox-static and a link per applet). */
export async function busyboxTarball(dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'www']) await mkdir(join(rootfs, d), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
  const applets = (await exec('/bin/busybox', ['--list'])).stdout.split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
  await Promise.all(applets.map((a) => symlink('busybox', join(rootfs, 'bin', a)).catch(() => undefined)));
  await writeFile(join(rootfs, 'www/index.html'), 'nodenet\n');
  const tar = join(dir, 'busybox.tar');
  await exec('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

/** Podman with its config, storage and CNI network dir in a temp dir, run inside a node's namespace. */
export class Podman {
  private constructor(
    readonly nodeNs: string,
    readonly dir: string,
    readonly networkDir: string,
    private readonly env: Record<string, string>,
  ) {}

  static async create(scope: TestScope, nodeNs: string): Promise<Podman> {
    const dir = await scope.createTempDir();
    const networkDir = join(dir, 'net.d');
    await mkdir(networkDir);
    const containersConf = join(dir, 'containers.conf');
    await writeFile(
      containersConf,
      [
        '[containers]',
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
        'cgroupns = "host"',
        '[engine]',
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(dir, 'events.log')}"`,
        `tmp_dir = "${join(dir, 'tmp')}"`,
        `volume_path = "${join(dir, 'volumes')}"`,
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${PLUGIN_DIST}", "${STOCK_PLUGINS}"]`,
        `network_config_dir = "${networkDir}"`,
        '',
      ].join('\n'),
    );
    const storageConf = join(dir, 'storage.conf');
    await writeFile(storageConf, ['[storage]', 'driver = "overlay"', `graphroot = "${join(dir, 'graph')}"`, `runroot = "${join(dir, 'run')}"`, ''].join('\n'));
    const podman = new Podman(nodeNs, dir, networkDir, { CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf, XDG_RUNTIME_DIR: join(dir, 'xdg') });
    await mkdir(join(dir, 'xdg'), { mode: 0o700 });
    // Whatever a test left running goes with the scope (before the namespaces and temp dirs are removed).
    scope.defer('podman containers', async () => {
      await podman.run(['rm', '--force', '--all', '--time', '0'], { allowFailure: true });
      await podman.run(['system', 'reset', '--force'], { allowFailure: true });
    });
    return podman;
  }

  /** `podman ARGS` in the node's namespace (nsenter, not `ip netns exec`, which hides the cgroup mounts). */
  run(args: readonly string[], options: { allowFailure?: boolean; timeoutMs?: number } = {}): Promise<ExecResult> {
    return exec('nsenter', [`--net=/run/netns/${this.nodeNs}`, '--', 'env', ...Object.entries(this.env).map(([k, v]) => `${k}=${v}`), 'podman', ...args], {
      allowFailure: options.allowFailure ?? false,
      timeoutMs: options.timeoutMs ?? 120_000,
    });
  }

  /** Imports the busybox rootfs as `localhost/busybox`. */
  async importBusybox(tarball: string): Promise<void> {
    await this.run(['import', '--change', 'CMD ["/bin/sh"]', tarball, 'localhost/busybox']);
  }
}
