/**
 * Real container runtimes for the plugin's tests, everything in a test's temp dirs: Podman (CNI network
 * backend, runc, storage and config passed through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF) and a
 * containerd of its own; a busybox image without a registry. The quirks of this machine they allow for are
 * in TOOLCHAIN.md ("Container runtimes here").
 */
import { spawn } from 'node:child_process';
import { mkdir, symlink, copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
    await writeFile(
      storageConf,
      ['[storage]', 'driver = "overlay"', `graphroot = "${join(dir, 'graph')}"`, `runroot = "${join(dir, 'run')}"`, ''].join('\n'),
    );
    const podman = new Podman(nodeNs, dir, networkDir, {
      CONTAINERS_CONF: containersConf,
      CONTAINERS_STORAGE_CONF: storageConf,
      XDG_RUNTIME_DIR: join(dir, 'xdg'),
    });
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
    return exec(
      'nsenter',
      [`--net=/run/netns/${this.nodeNs}`, '--', 'env', ...Object.entries(this.env).map(([k, v]) => `${k}=${v}`), 'podman', ...args],
      {
        allowFailure: options.allowFailure ?? false,
        timeoutMs: options.timeoutMs ?? 120_000,
      },
    );
  }

  /** Imports the busybox rootfs as `localhost/busybox`. */
  async importBusybox(tarball: string): Promise<void> {
    await this.run(['import', '--change', 'CMD ["/bin/sh"]', tarball, 'localhost/busybox']);
  }
}

/** A containerd of its own (root, state and socket in a temp dir, CRI off) in a node's namespace. */
export class Containerd {
  private constructor(
    readonly nodeNs: string,
    readonly dir: string,
    readonly socket: string,
  ) {}

  static async start(scope: TestScope, nodeNs: string): Promise<Containerd> {
    const dir = await scope.createTempDir();
    const socket = join(dir, 'containerd.sock');
    const config = join(dir, 'config.toml');
    await writeFile(
      config,
      [
        'version = 2',
        `root = "${join(dir, 'root')}"`,
        `state = "${join(dir, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${socket}"`,
        '[ttrpc]',
        `  address = "${socket}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(dir, 'opt')}"`,
        '',
      ].join('\n'),
    );
    const child = spawn('nsenter', [`--net=/run/netns/${nodeNs}`, '--', 'containerd', '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    scope.trackPid(child.pid);
    scope.defer('containerd', async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      scope.untrackPid(child.pid);
    });
    const c = new Containerd(nodeNs, dir, socket);
    for (let i = 0; ; i++) {
      const r = await exec('ctr', ['-a', socket, 'version'], { allowFailure: true });
      if (r.exitCode === 0) break;
      if (child.exitCode !== null || i > 100) throw new Error(`containerd did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return c;
  }

  ctr(args: readonly string[], options: { allowFailure?: boolean } = {}): Promise<ExecResult> {
    return exec('ctr', ['-a', this.socket, ...args], { allowFailure: options.allowFailure ?? false, timeoutMs: 120_000 });
  }

  /**
   * `ctr run --cni` with `conflistDir` as /etc/cni/net.d and `pluginDir` as /opt/cni/bin (ctr reads only
   * those), bind-mounted in a mount namespace of its own so that the host's directories are never touched.
   */
  runWithCni(conflistDir: string, pluginDir: string, args: readonly string[]): Promise<ExecResult> {
    const spec = JSON.stringify({
      binds: [
        [conflistDir, '/etc/cni/net.d'],
        [pluginDir, '/opt'],
      ],
      command: ['nsenter', `--net=/run/netns/${this.nodeNs}`, '--', 'ctr', '-a', this.socket, 'run', '--cni', ...args],
    });
    return exec('unshare', ['-m', '--propagation', 'unchanged', '--', process.execPath, BIND_AND_RUN, spec], {
      allowFailure: true,
      timeoutMs: 120_000,
    });
  }
}

const BIND_AND_RUN = fileURLToPath(new URL('./bind-and-run.mjs', import.meta.url));
