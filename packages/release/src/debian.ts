/**
 * The Debian package: the installed tree (layout.ts) under /usr, the unit in /lib/systemd/system (Debian
 * 12's place for packaged units), the example config as a conffile, DEBIAN/ control files and the
 * maintainer scripts, built with `dpkg-deb --root-owner-group --build`; and lintian over the result.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { FILES_DIR, writeTree, type Tree } from './layout.js';

const execFileAsync = promisify(execFile);

export const DEB_NAME = 'nodenet';
export const MAINTAINER = 'nodenet maintainers <maintainers@users.noreply.r-seed-00bb63c4.example>';
/**
 * What the daemon runs (README: Requirements); the .deb's Depends. util-linux and perl-base are Essential,
 * so Debian wants them versioned: the versions of Debian 12, where nodenet is tested.
 */
export const DEPENDS = 'nodejs (>= 20.19), iproute2, nftables, conntrack, util-linux (>= 2.38), perl-base (>= 5.36)';
/** The ovs backend's switch; systemd for the unit's systemd-notify (present wherever the unit runs). */
export const SUGGESTS = 'openvswitch-switch';
export const MAINTAINER_SCRIPTS = ['postinst', 'prerm', 'postrm'] as const;

/**
 * lintian exempts Go binaries only in packages built from Go source packages (Build-Depends: golang-go), which
 * this one is not; the CNI plugin is static on purpose, as CNI plugins are (runtimes exec them in many
 * contexts and libc must not matter).
 */
const LINTIAN_OVERRIDES_WITH_CNI_PLUGIN = [
  '# The CNI plugin is a static Go binary by design (CGO_ENABLED=0), like the CNI reference plugins;',
  '# lintian exempts Go binaries only when the source package build-depends on golang-go.',
  'nodenet: statically-linked-binary [usr/lib/cni/nodenet]',
  '',
].join('\n');

export interface DebOptions {
  readonly repoRoot: string;
  /** A scratch directory (emptied) where the package's root is assembled. */
  readonly workDir: string;
  readonly outDir: string;
  readonly version: string;
  /** The date of the changelog entry (RFC 5322); default now. */
  readonly date?: Date;
}

export interface DebResult {
  readonly path: string;
  readonly architecture: string;
  readonly tree: Tree;
}

export async function dpkgArchitecture(): Promise<string> {
  return (await execFileAsync('dpkg', ['--print-architecture'])).stdout.trim();
}

export async function buildDeb(options: DebOptions): Promise<DebResult> {
  const { workDir, version } = options;
  const root = join(workDir, 'root');
  await rm(workDir, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  const tree = await writeTree({
    repoRoot: options.repoRoot,
    root,
    prefix: 'usr',
    unitDir: 'lib/systemd/system',
    configDir: 'etc/nodenet',
    installedDaemon: '/usr/bin/nodenetd',
    cniDir: 'usr/lib/cni',
    version,
  });
  // Bundles, helpers and protos are architecture-independent; the CNI plugin (Go) is not.
  const architecture = tree.cniPlugin ? await dpkgArchitecture() : 'all';
  if (tree.cniPlugin) {
    const overrides = join(root, 'usr/share/lintian/overrides');
    await mkdir(overrides, { recursive: true });
    await writeFile(join(overrides, DEB_NAME), LINTIAN_OVERRIDES_WITH_CNI_PLUGIN, { mode: 0o644 });
  }
  const docDir = join(root, 'usr/share/doc', DEB_NAME);
  // A native package (the version has no Debian revision): its changelog is changelog.gz (Policy 12.7).
  await writeFile(join(docDir, 'changelog.gz'), gzipSync(changelog(version, options.date ?? new Date()), { level: 9 }), { mode: 0o644 });

  const debian = join(root, 'DEBIAN');
  await mkdir(debian, { recursive: true });
  for (const script of MAINTAINER_SCRIPTS) {
    await copyFile(new URL(script, FILES_DIR), join(debian, script));
    await chmod(join(debian, script), 0o755);
  }
  await writeFile(join(debian, 'conffiles'), tree.conffiles.map((f) => `${f}\n`).join(''), { mode: 0o644 });
  await writeFile(join(debian, 'md5sums'), md5sums(root), { mode: 0o644 });
  await writeFile(join(debian, 'control'), control(version, architecture, installedSizeKiB(root)), { mode: 0o644 });
  normalizeModes(root);

  await mkdir(options.outDir, { recursive: true });
  const path = join(options.outDir, `${DEB_NAME}_${version}_${architecture}.deb`);
  await execFileAsync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, path]);
  return { path, architecture, tree };
}

export function control(version: string, architecture: string, installedSize: number): string {
  return [
    `Package: ${DEB_NAME}`,
    `Version: ${version}`,
    `Architecture: ${architecture}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedSize}`,
    `Depends: ${DEPENDS}`,
    `Suggests: ${SUGGESTS}`,
    'Section: net',
    'Priority: optional',
    'Description: per-node network daemon of a cluster orchestrator',
    " nodenetd builds a node's network through a gRPC API: the node bridge, the",
    ' interfaces of instances (veth pairs for containers, TAPs for VMs), ports',
    ' published with nftables, anti-spoofing, and an overlay between nodes (VXLAN',
    ' or host-gw), on a Linux bridge or Open vSwitch. nodenetctl is its command-line',
    ' client. The daemon runs as the systemd service nodenetd.',
    '',
  ].join('\n');
}

/** A changelog entry for this version (Debian changelog format). */
export function changelog(version: string, date: Date): string {
  return [
    `${DEB_NAME} (${version}) unstable; urgency=medium`,
    '',
    `  * Release ${version}: nodenetd and nodenetctl as self-contained bundles;`,
    '    the nodenetd systemd unit.',
    '',
    ` -- ${MAINTAINER}  ${rfc5322(date)}`,
    '',
  ].join('\n');
}

function rfc5322(d: Date): string {
  // e.g. "Sun, 06 Dec 2026 19:50:44 +0000"
  return d.toUTCString().replace('GMT', '+0000');
}

function walk(root: string, skip: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const visit = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const rel = relative(root, path);
      if (skip(rel)) continue;
      if (statSync(path).isDirectory()) visit(path);
      else out.push(rel);
    }
  };
  visit(root);
  return out;
}

function md5sums(root: string): string {
  return walk(root, (rel) => rel === 'DEBIAN' || rel.startsWith('etc/'))
    .map(
      (rel) =>
        `${createHash('md5')
          .update(readFileSync(join(root, rel)))
          .digest('hex')}  ${rel}\n`,
    )
    .join('');
}

function installedSizeKiB(root: string): number {
  let bytes = 0;
  for (const rel of walk(root, (r) => r === 'DEBIAN')) bytes += statSync(join(root, rel)).size;
  return Math.ceil(bytes / 1024);
}

/** Directories 0755, files 0644 unless executable (then 0755): independent of the builder's umask. */
function normalizeModes(root: string): void {
  const visit = (dir: string) => {
    chmodSync(dir, 0o755);
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const st = statSync(path);
      if (st.isDirectory()) visit(path);
      else chmodSync(path, st.mode & 0o111 ? 0o755 : 0o644);
    }
  };
  visit(root);
}

export interface LintianResult {
  readonly exitCode: number;
  /** One tag per line: `E: nodenet: tag info`. */
  readonly output: string;
  readonly errors: readonly string[];
}

/** lintian over the .deb, findings of level warning and above (no overrides: none are needed). */
export async function runLintian(debPath: string): Promise<LintianResult> {
  const r = await execFileAsync('lintian', ['--tag-display-limit', '0', '--display-level', '>=warning', debPath], {
    maxBuffer: 16 << 20,
  }).then(
    (x) => ({ exitCode: 0, output: `${x.stdout}${x.stderr}` }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      exitCode: typeof e.code === 'number' ? e.code : -1,
      output: `${e.stdout ?? ''}${e.stderr ?? ''}`,
    }),
  );
  // Its remark about running as root is not a finding about the package.
  const output = r.output
    .split('\n')
    .filter((l) => l !== '' && !/running with root privileges/.test(l))
    .join('\n');
  return { exitCode: r.exitCode, output, errors: output.split('\n').filter((l) => l.startsWith('E: ')) };
}
