/**
 * `npm run package` (after `npm run build`): writes release/nodenet_VERSION_ARCH.deb and
 * release/nodenet-VERSION-linux-ARCH.tar.gz, and prints lintian's findings; exit 1 on a lintian error.
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPackages } from './package.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const result = await buildPackages({ repoRoot });
const kib = (path: string) => `${Math.round(statSync(path).size / 1024)} KiB`;
process.stdout.write(`${result.deb.path} (${kib(result.deb.path)})\n${result.tarball} (${kib(result.tarball)})\n`);
const bundles = Object.values(result.deb.tree.bundle.files).map((f) => `${basename(f)} ${kib(f)}`);
process.stdout.write(`bundles: ${bundles.join(', ')}\n`);
if (result.lintian) {
  process.stdout.write(result.lintian.output.trim() === '' ? 'lintian: no findings\n' : `lintian:\n${result.lintian.output}`);
  if (result.lintian.errors.length > 0) process.exit(1);
}
