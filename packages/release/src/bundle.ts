/**
 * Self-contained bundles of nodenetd and nodenetctl (esbuild, one ES module each, no node_modules at run
 * time), and the files they read at run time, laid out as they are installed:
 *
 *   DIR/nodenetd.mjs, DIR/nodenetctl.mjs
 *   DIR/proto/            nodenet's packages' proto/ files (network.proto, seed.proto)
 *   DIR/helpers/          nodenet's packages' helpers/ files (netns-netlink.pl, conntrack-netlink.pl, ...)
 *   DIR/proto/npm/P/...   the .proto files bundled third-party package P reads through its __dirname
 *
 * How the bundled code finds them: nodenet's packages locate their files one level above their code
 * (`new URL('../proto/network.proto', import.meta.url)` from src/ or dist/). In the bundle import.meta.url is
 * replaced by the URL of DIR/lib/<bundle> (a directory that need not exist), so `../proto` and `../helpers`
 * land in DIR, wherever a package keeps them in the repository (a helper moving to another package needs no
 * change here: every package's helpers/ and proto/ the bundle includes are collected). Third-party CommonJS
 * code that reads files beside itself gets a __dirname mirroring its place in its package under
 * DIR/proto/npm, where THIRD_PARTY_ASSETS copies the files it reads. A bundled package that mentions
 * __dirname and is in neither table fails the build, so a new dependency cannot silently miss its files.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { cp, mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import * as esbuild from 'esbuild';

/** The programs bundled: the name of the bundle (DIR/NAME.mjs) and the compiled entry point. */
export const PROGRAMS = {
  nodenetd: 'packages/server/dist/main.js',
  nodenetctl: 'packages/cli/dist/main.js',
} as const;
export type ProgramName = keyof typeof PROGRAMS;

/** Directories of a nodenet package, beside its code, that the code reads at run time. */
const PACKAGE_ASSET_DIRS = ['proto', 'helpers'] as const;

/** Files bundled third-party packages read through __dirname, by package: directories inside the package. */
const THIRD_PARTY_ASSETS: Readonly<Record<string, readonly string[]>> = {
  // health/v1/health.proto, loaded when the module is imported (daemon and `nodenetctl health`).
  'grpc-health-check': ['proto'],
  // grpc/reflection/v1{,alpha}/reflection.proto, loaded when the daemon adds the reflection service.
  '@grpc/reflection': ['build/proto/grpc'],
  // rpc.proto and what it imports, loaded when the etcd membership adapter is (membership.type: etcd).
  etcd3: ['proto'],
};

/** Bundled packages that mention __dirname without reading anything nodenet uses, and why. */
const THIRD_PARTY_WITHOUT_ASSETS: Readonly<Record<string, string>> = {
  // channelz.proto (the channelz admin service) and xds' orca.proto (xDS load reports): nodenet uses neither.
  '@grpc/grpc-js': 'channelz and xDS ORCA protos, loaded only by services nodenet does not use',
  commander: 'mentioned in comments only',
  // Transports run in worker threads loaded from files; nodenetd logs to stdout synchronously, without one.
  pino: 'worker files of log transports, which nodenetd does not use',
  'thread-stream': "the worker file of pino's transports, which nodenetd does not use",
};

/** The identifier standing in for import.meta.url in nodenet's code (defined in each bundle's banner). */
const CODE_URL = '__nodenetCodeUrl';
/** The install directory, defined in each bundle's banner. */
const INSTALL_DIR = '__nodenetInstallDir';

export interface BundleResult {
  /** DIR/NAME.mjs of each program. */
  readonly files: Readonly<Record<ProgramName, string>>;
  /** Every file written under DIR, relative to it. */
  readonly written: readonly string[];
  /** The third-party packages inside the bundles (for the copyright file). */
  readonly packages: readonly BundledPackage[];
}

export interface BundledPackage {
  readonly name: string;
  readonly version: string;
  readonly license: string;
}

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

/**
 * Bundles the programs from the compiled workspace at `repoRoot` (run `npm run build` first) into `outDir`
 * (emptied first), with the files they read at run time.
 */
export async function bundlePrograms(repoRoot: string, outDir: string): Promise<BundleResult> {
  for (const [name, entry] of Object.entries(PROGRAMS)) {
    if (!existsSync(join(repoRoot, entry))) throw new BundleError(`${entry} (${name}) is not built: run npm run build first`);
  }
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });

  const dirnameUsers = new Map<string, string>(); // package -> a file that mentions __dirname
  const result = await esbuild.build({
    absWorkingDir: repoRoot,
    entryPoints: Object.fromEntries(Object.entries(PROGRAMS)),
    outdir: outDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20.19',
    // Readable stack traces matter more on a node than the ~1.5 MB minification would save.
    minify: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
    define: { 'import.meta.url': CODE_URL },
    banner: { js: banner() },
    plugins: [thirdPartyDirname(dirnameUsers)],
  });
  for (const w of result.warnings)
    process.stderr.write(`esbuild: ${w.text}${w.location ? ` (${w.location.file}:${w.location.line})` : ''}\n`);

  const unknown = [...dirnameUsers].filter(([pkg]) => !(pkg in THIRD_PARTY_ASSETS) && !(pkg in THIRD_PARTY_WITHOUT_ASSETS));
  if (unknown.length > 0) {
    throw new BundleError(
      `bundled packages read files beside themselves (__dirname) and are not in THIRD_PARTY_ASSETS: ${unknown.map(([p, f]) => `${p} (${f})`).join(', ')}`,
    );
  }

  const written: string[] = Object.keys(PROGRAMS).map((n) => `${n}.mjs`);
  // nodenet's own packages in the bundle: their proto/ and helpers/ directories go to DIR/proto, DIR/helpers.
  const packageRoots = new Set<string>();
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = /^packages\/([^/]+)\//.exec(input);
    if (m) packageRoots.add(join(repoRoot, 'packages', m[1]!));
  }
  const claimed = new Map<string, string>();
  for (const root of [...packageRoots].sort()) {
    for (const dir of PACKAGE_ASSET_DIRS) {
      const from = join(root, dir);
      if (!existsSync(from)) continue;
      for (const file of listFiles(from)) {
        const target = join(dir, file);
        const other = claimed.get(target);
        if (other !== undefined) throw new BundleError(`${target} is shipped by both ${other} and ${relative(repoRoot, root)}: rename one`);
        claimed.set(target, relative(repoRoot, root));
        await mkdir(dirname(join(outDir, target)), { recursive: true });
        await cp(join(from, file), join(outDir, target), { preserveTimestamps: false });
        written.push(target);
      }
    }
  }
  for (const [pkg, dirs] of Object.entries(THIRD_PARTY_ASSETS)) {
    if (!dirnameUsers.has(pkg))
      throw new BundleError(`THIRD_PARTY_ASSETS lists ${pkg}, which the bundles no longer read files of: remove it`);
    const pkgRoot = packageRootOf(repoRoot, pkg);
    for (const dir of dirs) {
      for (const file of listFiles(join(pkgRoot, dir))) {
        const target = join('proto', 'npm', pkg, dir, file);
        await mkdir(dirname(join(outDir, target)), { recursive: true });
        await cp(join(pkgRoot, dir, file), join(outDir, target));
        written.push(target);
      }
    }
  }
  await checkReferencedFiles(outDir);
  return {
    packages: bundledPackages(repoRoot, Object.keys(result.metafile.inputs)),
    files: Object.fromEntries(Object.keys(PROGRAMS).map((n) => [n, join(outDir, `${n}.mjs`)])) as Record<ProgramName, string>,
    written: written.sort(),
  };
}

/**
 * The lines every bundle starts with: `require` for bundled CommonJS code (esbuild's ESM output has none),
 * the install directory, and the stand-in for import.meta.url (see the module comment).
 */
function banner(): string {
  return [
    "import { createRequire as __nodenetCreateRequire } from 'node:module';",
    "import { fileURLToPath as __nodenetFileURLToPath } from 'node:url';",
    'const require = __nodenetCreateRequire(import.meta.url);',
    `const ${INSTALL_DIR} = __nodenetFileURLToPath(new URL('.', import.meta.url)).replace(/\\/$/, '');`,
    `const ${CODE_URL} = new URL('./lib/bundle.mjs', import.meta.url).href;`,
  ].join('\n');
}

/** Gives third-party CommonJS files that use __dirname one mirroring their place under DIR/proto/npm. */
function thirdPartyDirname(users: Map<string, string>): esbuild.Plugin {
  return {
    name: 'nodenet-third-party-dirname',
    setup(build) {
      build.onLoad({ filter: /[\\/]node_modules[\\/].*\.(c?js)$/ }, (args) => {
        const contents = readFileSync(args.path, 'utf8');
        if (!/\b__dirname\b/.test(contents)) return undefined;
        const { pkg, inPackage } = splitNodeModulesPath(args.path);
        if (!users.has(pkg)) users.set(pkg, inPackage);
        const dir = dirname(inPackage).split(sep).join('/');
        const mirrored = `${INSTALL_DIR} + ${JSON.stringify(`/proto/npm/${pkg}/${dir}`)}`;
        // After a leading "use strict" directive, which must stay first to keep the file strict.
        const strict = /^\s*(['"])use strict\1;?/.exec(contents)?.[0] ?? '';
        return { contents: `${strict}\nvar __dirname = ${mirrored};${contents.slice(strict.length)}`, loader: 'js' };
      });
    },
  };
}

/** `.../node_modules/@scope/name/a/b.js` -> package `@scope/name`, path `a/b.js` (the innermost node_modules). */
function splitNodeModulesPath(path: string): { pkg: string; inPackage: string } {
  const parts = path.split(sep);
  const at = parts.lastIndexOf('node_modules');
  const scoped = parts[at + 1]!.startsWith('@');
  const pkgParts = parts.slice(at + 1, at + (scoped ? 3 : 2));
  return { pkg: pkgParts.join('/'), inPackage: parts.slice(at + 1 + pkgParts.length).join(sep) };
}

/** The npm packages whose files are among the bundle's inputs, with their versions and licenses. */
function bundledPackages(repoRoot: string, inputs: readonly string[]): BundledPackage[] {
  const roots = new Map<string, string>();
  for (const input of inputs) {
    const at = input.lastIndexOf('node_modules/');
    if (at < 0) continue;
    const { pkg } = splitNodeModulesPath(join(repoRoot, input));
    roots.set(`${input.slice(0, at)}node_modules/${pkg}`, pkg);
  }
  const byName = new Map<string, BundledPackage>();
  for (const [root, name] of roots) {
    const json = JSON.parse(readFileSync(join(repoRoot, root, 'package.json'), 'utf8')) as { version?: string; license?: string };
    if (typeof json.license !== 'string') throw new BundleError(`${root}/package.json names no license (SPDX): check the package's terms`);
    const entry = { name, version: json.version ?? '?', license: json.license };
    byName.set(`${name}@${entry.version}`, entry);
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

function packageRootOf(repoRoot: string, pkg: string): string {
  for (const base of [
    join(repoRoot, 'node_modules'),
    ...readdirSync(join(repoRoot, 'packages')).map((p) => join(repoRoot, 'packages', p, 'node_modules')),
  ]) {
    if (existsSync(join(base, pkg, 'package.json'))) return join(base, pkg);
  }
  throw new BundleError(`cannot find the package ${pkg} under node_modules: run npm ci`);
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel === '' ? name : join(rel, name);
      if (statSync(join(dir, r)).isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk('');
  return out;
}

/** Every `../proto/X` or `../helpers/X` the bundled code names must have been shipped. */
async function checkReferencedFiles(outDir: string): Promise<void> {
  const missing: string[] = [];
  for (const name of Object.keys(PROGRAMS)) {
    const code = readFileSync(join(outDir, `${name}.mjs`), 'utf8');
    for (const m of code.matchAll(/new URL\("\.\.\/((?:proto|helpers)\/[^"]+)", __nodenetCodeUrl\)/g)) {
      const file = m[1]!;
      const s = await stat(join(outDir, file)).catch(() => undefined);
      if (!s?.isFile()) missing.push(`${name}.mjs needs ${file}`);
    }
  }
  if (missing.length > 0) throw new BundleError(`files the bundles read were not shipped: ${missing.join('; ')}`);
}
