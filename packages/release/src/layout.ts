/**
 * The installed tree, shared by the .deb and the tarball: under a prefix (the .deb: /usr; the tarball: its
 * own directory, extracted to /usr/local), bin/ launchers, lib/nodenet/ (bundles, helpers, proto), the unit,
 * the example config, man pages (help2man from --help), the copyright file, and the CNI plugin when built.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { daemonNodeFlags } from '@nodenet/testkit';
import { bundlePrograms, type BundleResult } from './bundle.js';
import { copyrightFile } from './copyright.js';

const execFileAsync = promisify(execFile);

/** This package's static files (unit, example config, maintainer scripts). */
export const FILES_DIR = new URL('../files/', import.meta.url);

/** The CNI plugin binary another package builds (optional: installed when it exists). */
export const CNI_PLUGIN_BINARY = 'packages/cni-plugin/dist/nodenet';

export interface TreeOptions {
  readonly repoRoot: string;
  /** Where the tree is written (the .deb's root, or the tarball's top directory). */
  readonly root: string;
  /** The prefix of programs and libraries inside root: `usr` (.deb) or `` (tarball). */
  readonly prefix: string;
  /** Where systemd units go inside root: `lib/systemd/system` (.deb) or `lib/systemd/system` under prefix. */
  readonly unitDir: string;
  /** Where the example config goes inside root: `etc/nodenet` (.deb: the conffile) or a doc directory. */
  readonly configDir: string;
  /** The installed path of the nodenetd launcher, for the unit's ExecStart. */
  readonly installedDaemon: string;
  readonly version: string;
  /** The installed CNI plugin's directory inside root (the .deb: usr/lib/cni). */
  readonly cniDir: string;
}

export interface Tree {
  readonly bundle: BundleResult;
  /** Whether the CNI plugin binary was installed (then the package is architecture-specific). */
  readonly cniPlugin: boolean;
  /** Files inside root that are configuration (the .deb's conffiles), absolute as installed. */
  readonly conffiles: readonly string[];
}

/** A launcher: runs a bundle found relative to the launcher itself, so an extracted tree works anywhere. */
export function launcher(program: string, nodeFlags: readonly string[]): string {
  return [
    '#!/bin/sh',
    `# ${program}: runs the bundled program with Node.js (package nodejs). Its bundle is ../lib/nodenet/${program}.mjs`,
    '# relative to this file, so the tree works wherever it is installed or extracted.',
    'here=$(dirname "$(readlink -f "$0")")',
    `exec node ${[...nodeFlags, `"$here/../lib/nodenet/${program}.mjs"`].join(' ')} "$@"`,
    '',
  ].join('\n');
}

export async function writeTree(options: TreeOptions): Promise<Tree> {
  const { repoRoot, root, prefix, version } = options;
  const p = (...parts: string[]) => join(root, prefix, ...parts);
  const libDir = p('lib', 'nodenet');
  const bundle = await bundlePrograms(repoRoot, libDir);

  await mkdir(p('bin'), { recursive: true });
  // The heap flags nodenetd's own command runs with (its shebang), read where the tests read them.
  const flags = { nodenetd: daemonNodeFlags, nodenetctl: [] };
  for (const program of ['nodenetd', 'nodenetctl'] as const) {
    await writeFile(p('bin', program), launcher(program, flags[program]), { mode: 0o755 });
    await chmod(p('bin', program), 0o755);
  }

  const unit = (await readFile(new URL('nodenetd.service', FILES_DIR), 'utf8')).replace(
    /^ExecStart=\/usr\/bin\/nodenetd /m,
    `ExecStart=${options.installedDaemon} `,
  );
  await mkdir(join(root, options.unitDir), { recursive: true });
  await writeFile(join(root, options.unitDir, 'nodenetd.service'), unit, { mode: 0o644 });

  await mkdir(join(root, options.configDir), { recursive: true });
  await copyFile(new URL('nodenetd.yaml', FILES_DIR), join(root, options.configDir, 'nodenetd.yaml'));

  await writeManPages(p('bin'), p('share', 'man'), version);

  const docDir = p('share', 'doc', 'nodenet');
  await mkdir(join(docDir, 'examples'), { recursive: true });
  // The drop-in that makes the unit pull in Open vSwitch, for nodes with backend: ovs.
  await copyFile(new URL('nodenetd-ovs.conf', FILES_DIR), join(docDir, 'examples', 'nodenetd-ovs.conf'));
  await writeFile(join(docDir, 'copyright'), copyrightFile(bundle.packages), { mode: 0o644 });

  let cniPlugin = false;
  if (existsSync(join(repoRoot, CNI_PLUGIN_BINARY))) {
    await mkdir(join(root, options.cniDir), { recursive: true });
    await copyFile(join(repoRoot, CNI_PLUGIN_BINARY), join(root, options.cniDir, 'nodenet'));
    await chmod(join(root, options.cniDir, 'nodenet'), 0o755);
    // Example networks for runtimes (/etc/cni/net.d), with the daemon's default CNI socket: IPv4 and dual-stack.
    for (const conflist of ['nodenet.conflist', 'nodenet-dual-stack.conflist']) {
      await copyFile(new URL(conflist, FILES_DIR), join(docDir, 'examples', conflist));
    }
    cniPlugin = true;
  }
  const conffiles = options.configDir.startsWith('etc/') ? [`/${options.configDir}/nodenetd.yaml`] : [];
  return { bundle, cniPlugin, conffiles };
}

const MAN_PAGES = [
  { program: 'nodenetd', section: 8, name: 'the nodenet per-node network daemon' },
  { program: 'nodenetctl', section: 1, name: 'command-line client of the nodenet daemon' },
] as const;

/** Man pages from each program's --help (help2man), gzip -9n. */
async function writeManPages(binDir: string, manDir: string, version: string): Promise<void> {
  for (const page of MAN_PAGES) {
    const { stdout } = await execFileAsync(
      'help2man',
      [
        '--no-info',
        `--section=${page.section}`,
        `--name=${page.name}`,
        `--version-string=${version}`,
        '--help-option=--help',
        join(binDir, page.program),
      ],
      { env: { ...process.env, NODENET_TARGET: '' }, maxBuffer: 8 << 20 },
    );
    const dir = join(manDir, `man${page.section}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${page.program}.${page.section}.gz`), gzipSync(stdout, { level: 9 }), { mode: 0o644 });
  }
}
