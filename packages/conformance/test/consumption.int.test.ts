// The library packages as someone outside this repository gets them (CONTRACT.md, "Libraries"): packed
// into tarballs (scripts/pack.mjs, as `npm run pack` does), installed into a new project in a temp dir with
// npm (third-party dependencies from npm's cache or the registry, no workspace links), the consumers in
// ./consumer and the packages' README examples type-checked against the installed declarations with the
// project's own tsconfig, then the consumers run: the typed gRPC client against a real daemon, and the iproute2 backend as a library without the daemon.
import { lstat, mkdir, readFile, readdir, realpath, writeFile, copyFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, TestScope, Topology, exec, link, ping, repoRoot, type ExecResult, type NodeHost } from '@nodenet/testkit';

interface Tarball {
  readonly name: string;
  readonly version: string;
  readonly file: string;
}

const consumerDir = fileURLToPath(new URL('./consumer/', import.meta.url));
const tsc = join(repoRoot, 'node_modules/typescript/bin/tsc');

let scope: TestScope;
let project = '';
let tarballs: Tarball[] = [];

/** Runs a consumer program of the project (its compiled dist/NAME.js) with `node`. */
function consumer(name: string, args: readonly string[], allowFailure = false): Promise<ExecResult> {
  return exec(process.execPath, [join(project, 'dist', `${name}.js`), ...args], { allowFailure, timeoutMs: 60_000 });
}

beforeAll(async () => {
  scope = await TestScope.create();
  const dir = await scope.createTempDir();
  expect(relative(repoRoot, dir).startsWith('..'), `${dir} is outside the repository`).toBe(true);
  const packed = await exec(process.execPath, [join(repoRoot, 'scripts/pack.mjs'), '--out', join(dir, 'tarballs'), '--json'], {
    timeoutMs: 120_000,
  });
  tarballs = JSON.parse(packed.stdout) as Tarball[];

  // Every library package is a direct dependency from its tarball, so the siblings they pin (exactly
  // 0.2.0) are satisfied by the tarballs too and never looked up in the registry.
  project = join(dir, 'project');
  await mkdir(join(project, 'src'), { recursive: true });
  const rootManifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  const manifest = {
    name: 'nodenet-consumer',
    private: true,
    type: 'module',
    dependencies: Object.fromEntries(tarballs.map((t) => [t.name, `file:${t.file}`])),
    devDependencies: { '@types/node': rootManifest.devDependencies['@types/node'] },
  };
  await writeFile(join(project, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  await copyFile(join(consumerDir, 'tsconfig.json'), join(project, 'tsconfig.json'));
  for (const file of (await readdir(consumerDir)).filter((f) => f.endsWith('.ts')))
    await copyFile(join(consumerDir, file), join(project, 'src', file));

  await exec('npm', ['install', '--prefix', project, '--no-audit', '--no-fund', '--prefer-offline'], { timeoutMs: 300_000 });
  // Each package README's TypeScript examples are type-checked too (not run: they need etcd, OVS, a daemon).
  for (const t of tarballs) {
    const readme = await readFile(join(project, 'node_modules', t.name, 'README.md'), 'utf8');
    const examples = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
    expect(examples.length, `${t.name}'s README has a TypeScript example`).toBeGreaterThan(0);
    for (const [i, code] of examples.entries()) await writeFile(join(project, 'src', `readme-${t.name.split('/')[1]}-${i + 1}.ts`), code);
  }
  // Type-checks against the installed packages' declarations (skipLibCheck off: theirs are checked too) and emits dist/.
  await exec(process.execPath, [tsc, '-p', join(project, 'tsconfig.json')], { timeoutMs: 120_000 });
}, 600_000);

afterAll(async () => {
  await scope?.cleanup();
});

describe('the installed packages', () => {
  it('are every library package at 0.2.0, copied into the project (no link into the repository), with the license', async () => {
    const libraries = [
      'api',
      'backend-iproute2',
      'backend-ovs',
      'core',
      'linux',
      'membership-etcd',
      'nftables',
      'openvswitch',
      'state',
      'sys',
    ];
    expect(tarballs.map((t) => t.name)).toEqual(expect.arrayContaining(libraries.map((p) => `@nodenet/${p}`)));
    for (const t of tarballs) {
      const installed = join(project, 'node_modules', t.name);
      expect((await lstat(installed)).isSymbolicLink(), `${installed} is a link`).toBe(false);
      expect(relative(repoRoot, await realpath(installed)).startsWith('..'), `${installed} is outside the repository`).toBe(true);
      const m = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as {
        version: string;
        license: string;
        private?: boolean;
      };
      expect(m, t.name).toMatchObject({ version: '0.2.0', license: 'Apache-2.0' });
      expect(m.private, t.name).toBeUndefined();
      expect(await readFile(join(installed, 'LICENSE'), 'utf8'), t.name).toContain('Apache License');
      const files = await readdir(installed);
      expect(files, t.name).toEqual(expect.arrayContaining(['README.md', 'CHANGELOG.md', 'dist']));
      expect(files, `${t.name} ships no tests`).not.toContain('test');
    }
  });
});

describe('the typed client (@nodenet/api) against a daemon', () => {
  let node: NodeHost;
  let daemon: Daemon;
  beforeAll(async () => {
    const topology = await Topology.create(scope, { nodes: 1 });
    node = topology.node(1);
    daemon = await Daemon.start({ scope, node });
  });

  it('creates the CNI, creates an interface, deletes it', async () => {
    const cni = JSON.parse((await consumer('client', [daemon.target, 'cni', '198.19.1.1', '198.19.1.0/24'])).stdout) as {
      interfaceName: string;
    };
    expect(cni.interfaceName).toBe('nodenet0');
    expect((await link(node.ns, 'nodenet0'))?.linkinfo?.info_kind).toBe('bridge');

    const created = JSON.parse((await consumer('client', [daemon.target, 'create', '198.19.1.10'])).stdout) as {
      interfaceName: string;
      hostInterfaceName: string;
    };
    expect(created.interfaceName).toMatch(/^nni-[0-9a-f]{8}$/);
    expect((await link(node.ns, created.interfaceName))?.linkinfo?.info_kind).toBe('veth');
    expect((await link(node.ns, created.hostInterfaceName))?.master).toBe('nodenet0');

    expect(JSON.parse((await consumer('client', [daemon.target, 'delete', created.interfaceName])).stdout)).toEqual({});
    expect(await link(node.ns, created.interfaceName)).toBeUndefined();
    expect(await link(node.ns, created.hostInterfaceName)).toBeUndefined();
  });

  it('reports a gRPC error through isServiceError: INVALID_ARGUMENT for an address outside the subnet', async () => {
    const r = await consumer('client', [daemon.target, 'create', '198.19.2.10'], true);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(JSON.parse(r.stderr)).toMatchObject({ code: 3, details: expect.stringContaining('198.19.2.10') as unknown });
  });
});

describe('the iproute2 backend (@nodenet/backend-iproute2 + @nodenet/core) as a library, without the daemon', () => {
  it('builds a bridge and two instances in their namespaces that ping each other', async () => {
    const [node, a, b] = [await scope.createNamespace(), await scope.createNamespace(), await scope.createNamespace()];
    const out = await consumer('iproute2-library', [node, a, b]);
    const instances = JSON.parse(out.stdout) as { ns: string; address: string; hostIfname: string }[];
    expect(instances.map((i) => i.address)).toEqual(['198.19.7.11', '198.19.7.12']);
    for (const i of instances) expect((await link(node, i.hostIfname))?.master).toBe('nodenet0');
    for (const [from, to] of [
      [a, '198.19.7.12'],
      [b, '198.19.7.11'],
      [a, '198.19.7.1'],
    ] as const) {
      const p = await ping(from, to);
      expect(p.ok, `${from} -> ${to}: ${p.output}`).toBe(true);
    }
  });
});
