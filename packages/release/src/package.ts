/** `npm run package`: the .deb and the tarball of this checkout's version into release/. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDeb, runLintian, type DebResult, type LintianResult } from './debian.js';
import { buildTarball } from './tarball.js';

export interface PackageOptions {
  readonly repoRoot: string;
  /** Default `<repoRoot>/release`. */
  readonly outDir?: string;
  /** Scratch space (default `<outDir>/.work`). */
  readonly workDir?: string;
  /** Run lintian on the .deb (default true). */
  readonly lintian?: boolean;
}

export interface PackageResult {
  readonly version: string;
  readonly deb: DebResult;
  readonly tarball: string;
  readonly lintian?: LintianResult;
}

/** The version of the release: the root package.json's. */
export function releaseVersion(repoRoot: string): string {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version?: string };
  if (typeof version !== 'string' || !/^\d+\.\d+\.\d+$/.test(version)) {
    throw new Error(`the root package.json needs a version (MAJOR.MINOR.PATCH) for the release; it has ${JSON.stringify(version)}`);
  }
  return version;
}

export async function buildPackages(options: PackageOptions): Promise<PackageResult> {
  const version = releaseVersion(options.repoRoot);
  const outDir = options.outDir ?? join(options.repoRoot, 'release');
  const workDir = options.workDir ?? join(outDir, '.work');
  const deb = await buildDeb({ repoRoot: options.repoRoot, workDir: join(workDir, 'deb'), outDir, version });
  const tarball = await buildTarball({ repoRoot: options.repoRoot, workDir: join(workDir, 'tar'), outDir, version });
  const lintian = options.lintian === false ? undefined : await runLintian(deb.path);
  return { version, deb, tarball: tarball.path, ...(lintian ? { lintian } : {}) };
}
