/**
 * `npm run package` (after `npm run build`): writes release/nodenet_VERSION_ARCH.deb and
 * release/nodenet-VERSION-linux-ARCH.tar.gz, and prints lintian's findings; exit 1 on a lintian error.
 */
import { fileURLToPath } from 'node:url';
import { buildPackages } from './package.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const result = await buildPackages({ repoRoot });
const sizes = result.deb.tree.bundle;
process.stdout.write(`${result.deb.path}\n${result.tarball}\n`);
process.stdout.write(`bundles: ${Object.values(sizes.files).join(', ')}\n`);
if (result.lintian) {
  process.stdout.write(result.lintian.output.trim() === '' ? 'lintian: no findings\n' : `lintian:\n${result.lintian.output}`);
  if (result.lintian.errors.length > 0) process.exit(1);
}
