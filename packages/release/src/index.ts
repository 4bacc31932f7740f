export { bundlePrograms, BundleError, PROGRAMS, type BundleResult, type BundledPackage, type ProgramName } from './bundle.js';
export { copyrightFile, licenseIds } from './copyright.js';
export {
  buildDeb,
  changelog,
  control,
  dpkgArchitecture,
  runLintian,
  DEB_NAME,
  DEPENDS,
  MAINTAINER_SCRIPTS,
  type DebResult,
  type LintianResult,
} from './debian.js';
export { CNI_PLUGIN_BINARY, launcher, writeTree, type Tree } from './layout.js';
export { buildPackages, releaseVersion, type PackageOptions, type PackageResult } from './package.js';
export { buildTarball } from './tarball.js';
