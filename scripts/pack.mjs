#!/usr/bin/env node
/**
 * Packs every library package (each packages/* whose package.json is not `private`) into an installable
 * tarball: `npm run pack` builds first, then runs this. Tarballs go to release/npm/ (or --out DIR), which
 * is emptied of older tarballs first. Prints one line per tarball and, with --json, the list as JSON.
 *
 *   node scripts/pack.mjs [--out DIR] [--json]
 *
 * Each package's prepack script copies the root LICENSE in; postpack removes it again.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { out: { type: 'string' }, json: { type: 'boolean', default: false } } });
const out = resolve(values.out ?? join(repoRoot, 'release/npm'));

/** The workspace packages meant for library use, by directory, in directory order. */
function libraryPackages() {
  const dir = join(repoRoot, 'packages');
  return readdirSync(dir)
    .filter((name) => existsSync(join(dir, name, 'package.json')))
    .map((name) => ({ dir: join(dir, name), manifest: JSON.parse(readFileSync(join(dir, name, 'package.json'), 'utf8')) }))
    .filter(({ manifest }) => manifest.private !== true);
}

/** The .js files under `dir`, relative to it. */
function builtFiles(dir, prefix = '') {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? builtFiles(dir, join(prefix, e.name)) : e.name.endsWith('.js') ? [join(prefix, e.name)] : [],
  );
}

/** What a library package's manifest lacks for its tarball to be complete and installable on its own. */
function manifestProblems(dir, manifest) {
  const problems = [];
  const files = manifest.files ?? [];
  for (const f of ['dist', 'README.md', 'LICENSE', 'CHANGELOG.md']) if (!files.includes(f)) problems.push(`"files" lacks ${f}`);
  const conditions = JSON.stringify(manifest.exports ?? {});
  if (conditions.includes('"source"') && !files.includes('src'))
    problems.push('"files" lacks src, where the "source" export condition points');
  if (!existsSync(join(dir, 'LICENSE')) && !/\bLICENSE\b/.test(manifest.scripts?.prepack ?? '')) {
    problems.push('no LICENSE: add "prepack": "cp ../../LICENSE LICENSE" and "postpack": "rm -f LICENSE" to "scripts"');
  }
  if (manifest.license !== 'Apache-2.0') problems.push('"license" is not Apache-2.0');
  return problems;
}

const packages = libraryPackages();
const workspace = new Map(
  readdirSync(join(repoRoot, 'packages'))
    .filter((name) => existsSync(join(repoRoot, 'packages', name, 'package.json')))
    .map((name) => JSON.parse(readFileSync(join(repoRoot, 'packages', name, 'package.json'), 'utf8')))
    .map((m) => [m.name, m]),
);
// A tarball must install from the tarballs alone: its siblings are library packages too, at its version.
for (const { manifest } of packages) {
  for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
    const sibling = workspace.get(dep);
    if (!sibling) continue;
    if (sibling.private === true)
      throw new Error(
        `${manifest.name} depends on ${dep}, which is private: make ${dep} a library package (drop private, add README.md and CHANGELOG.md) or drop the dependency`,
      );
    if (range !== manifest.version || sibling.version !== manifest.version)
      throw new Error(
        `${manifest.name}@${manifest.version} depends on ${dep} ${range} (at ${sibling.version}): all packages share one version, pinned exactly`,
      );
  }
}
for (const { dir, manifest } of packages) {
  const problems = manifestProblems(dir, manifest);
  if (problems.length > 0) throw new Error(`${manifest.name}'s package.json: ${problems.join('; ')}`);
  const missing = ['dist', 'README.md', 'CHANGELOG.md'].filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) throw new Error(`${manifest.name}: ${missing.join(', ')} missing in ${dir} (run npm run build first)`);
  // tsc never deletes: output of a source file since removed or moved would ship with the package.
  const stale = builtFiles(join(dir, 'dist')).filter((f) => !existsSync(join(dir, 'src', f.replace(/\.js$/, '.ts'))));
  if (stale.length > 0)
    throw new Error(`${manifest.name}: dist/${stale.join(', dist/')} has no source in src/ any more: rm -rf ${dir}/dist and build again`);
}
mkdirSync(out, { recursive: true });
for (const old of readdirSync(out).filter((f) => f.endsWith('.tgz'))) rmSync(join(out, old));

const args = ['pack', '--json', '--pack-destination', out, ...packages.flatMap(({ manifest }) => ['--workspace', manifest.name])];
const report = JSON.parse(execFileSync('npm', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
const tarballs = report.map((r) => ({
  name: r.name,
  version: r.version,
  file: join(out, r.filename),
  size: r.size,
  unpackedSize: r.unpackedSize,
  files: r.entryCount,
}));
for (const t of tarballs)
  console.error(`${t.file}  ${(t.size / 1024).toFixed(1)} kB packed, ${(t.unpackedSize / 1024).toFixed(1)} kB unpacked, ${t.files} files`);
if (values.json) console.log(JSON.stringify(tarballs));
