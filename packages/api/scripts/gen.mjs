#!/usr/bin/env node
// Generates src/gen/ from proto/network.proto with buf + ts-proto, offline.
//   node scripts/gen.mjs          regenerate src/gen/
//   node scripts/gen.mjs --check  regenerate into a temp dir and fail if src/gen/ differs (used by `build`)
// Only network.proto is an input: seed.proto declares the same package and messages, so compiling both
// together would clash; it is for tests and seed-only clients.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const genDir = join(packageDir, 'src', 'gen');
const require = createRequire(join(packageDir, 'package.json'));

// @bufbuild/buf's bin/buf is a small node launcher for the platform package's binary
// (@bufbuild/buf-linux-x64 etc.); it works without the package's (denied) install script.
const bufLauncher = require.resolve('@bufbuild/buf/bin/buf');
// The template names the plugin `protoc-gen-ts_proto`: the .bin directory next to ts-proto has it.
const tsProtoBinDir = join(dirname(require.resolve('ts-proto/package.json')), '..', '.bin');
if (!existsSync(join(tsProtoBinDir, 'protoc-gen-ts_proto'))) {
  fail(`protoc-gen-ts_proto not found in ${tsProtoBinDir}: is ts-proto installed (npm ci)?`);
}

function fail(message) {
  process.stderr.write(`api:gen: ${message}\n`);
  process.exit(1);
}

function generateInto(outDir) {
  const result = spawnSync(
    process.execPath,
    [bufLauncher, 'generate', '--template', 'buf.gen.yaml', '--output', outDir, 'proto/network.proto'],
    {
      cwd: packageDir,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, PATH: `${tsProtoBinDir}${delimiter}${process.env.PATH ?? ''}` },
    },
  );
  if (result.error) fail(`cannot run buf (${bufLauncher}): ${result.error.message}`);
  if (result.status !== 0) fail(`buf generate failed (exit ${result.status ?? result.signal})`);
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

function differences(expectedDir, actualDir) {
  const expected = listFiles(expectedDir);
  const actual = listFiles(actualDir);
  const problems = [];
  for (const file of expected) {
    if (!actual.includes(file)) problems.push(`missing: src/gen/${file}`);
    else if (!readFileSync(join(expectedDir, file)).equals(readFileSync(join(actualDir, file)))) {
      problems.push(`differs: src/gen/${file}`);
    }
  }
  for (const file of actual) if (!expected.includes(file)) problems.push(`not generated: src/gen/${file}`);
  return problems;
}

const check = process.argv.includes('--check');
const scratch = mkdtempSync(join(tmpdir(), 'nodenet-api-gen-'));
try {
  generateInto(scratch);
  const freshGenDir = join(scratch, 'src', 'gen');
  if (check) {
    const problems = differences(freshGenDir, genDir);
    if (problems.length > 0) {
      fail(`generated code is stale: run npm run gen -w @nodenet/api\n  ${problems.join('\n  ')}`);
    }
  } else {
    rmSync(genDir, { recursive: true, force: true });
    cpSync(freshGenDir, genDir, { recursive: true });
    process.stdout.write(
      `api:gen: wrote ${listFiles(genDir)
        .map((f) => `src/gen/${f}`)
        .join(', ')}\n`,
    );
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
