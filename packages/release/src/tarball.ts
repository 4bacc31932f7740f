/**
 * The tarball for hosts without dpkg: `nodenet-VERSION/` holding the same tree under a /usr/local-style
 * prefix (bin/, lib/nodenet/, lib/systemd/system/ with ExecStart=/usr/local/bin/nodenetd, share/man,
 * share/doc/nodenet with the example config). Install: tar -C /usr/local --strip-components=1 -xzf FILE.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeTree, type Tree } from './layout.js';

const execFileAsync = promisify(execFile);

export interface TarballOptions {
  readonly repoRoot: string;
  readonly workDir: string;
  readonly outDir: string;
  readonly version: string;
}

export async function buildTarball(options: TarballOptions): Promise<{ path: string; tree: Tree }> {
  const top = `nodenet-${options.version}`;
  await rm(options.workDir, { recursive: true, force: true });
  const root = join(options.workDir, top);
  await mkdir(root, { recursive: true });
  const tree = await writeTree({
    repoRoot: options.repoRoot,
    root,
    prefix: '',
    unitDir: 'lib/systemd/system',
    configDir: 'share/doc/nodenet/examples',
    installedDaemon: '/usr/local/bin/nodenetd',
    cniDir: 'lib/cni',
    version: options.version,
  });
  await mkdir(options.outDir, { recursive: true });
  const path = join(options.outDir, `nodenet-${options.version}-linux-${process.arch}.tar.gz`);
  await execFileAsync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', options.workDir, '-czf', path, top]);
  return { path, tree };
}
