/**
 * The release as an operator gets it: the packaging function builds the .deb and the tarball (once for the
 * file), the .deb is extracted with dpkg-deb -x, and ITS nodenetd (the launcher and bundle, no node_modules)
 * runs in test namespaces: the whole API under exactly the unit's capabilities, the notify protocol, the
 * need for each capability, and an upgrade from the repository's daemon. Plus dpkg-deb -I/-c, lintian and
 * systemd-analyze verify. Needs root and `npm run build`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { credentials, loadPackageDefinition, type ChannelCredentials, type Client } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Protocol } from '@nodenet/api';
import { Daemon, EtcdServer, TestScope, Topology, echo, link, ping, startEchoServers, withCapabilities } from '@nodenet/testkit';
import { buildPackages, DEPENDS, MAINTAINER_SCRIPTS, releaseVersion, type PackageResult } from '../src/index.js';
import { GATEWAY, SUBNET, WalkStepFailed, walkTheApi } from './api-walk.js';

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const NOTIFY_LISTENER = fileURLToPath(new URL('./fixtures/notify-listener.py', import.meta.url));
const REFLECTION_PROTO = join(repoRoot, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');

interface Notification {
  readonly pid: number | null;
  readonly vars: Record<string, string>;
}

/** The capabilities a unit file grants (CapabilityBoundingSet=), as setpriv names them (net_admin, ...). */
function unitCapabilities(unit: string): string[] {
  const line = /^CapabilityBoundingSet=(.*)$/m.exec(unit);
  if (!line) throw new Error('the unit has no CapabilityBoundingSet=');
  return line[1]!
    .trim()
    .split(/\s+/)
    .map((c) => c.replace(/^CAP_/, '').toLowerCase());
}

describe('the release packages', () => {
  let scope: TestScope;
  let topology: Topology;
  let result: PackageResult;
  /** The .deb extracted with dpkg-deb -x. */
  let root: string;
  let unit: string;
  let packagedDaemon: string;

  beforeAll(async () => {
    for (const built of ['packages/server/dist/main.js', 'packages/cli/dist/main.js']) {
      if (!existsSync(join(repoRoot, built))) throw new Error(`${built} is missing: run \`npm run build\` first`);
    }
    scope = await TestScope.create();
    const out = await scope.createTempDir();
    result = await buildPackages({ repoRoot, outDir: out });
    root = join(out, 'extracted');
    await execFileAsync('dpkg-deb', ['-x', result.deb.path, root]);
    unit = await readFile(join(root, 'lib/systemd/system/nodenetd.service'), 'utf8');
    packagedDaemon = join(root, 'usr/bin/nodenetd');
    topology = await Topology.create(scope, { nodes: 0 });
  });

  afterAll(async () => {
    await scope?.cleanup();
  });

  it('dpkg-deb -I: the control fields; the conffile; maintainer scripts that parse', async () => {
    const version = releaseVersion(repoRoot);
    expect(result.deb.path.endsWith(`/nodenet_${version}_${result.deb.architecture}.deb`)).toBe(true);
    const field = async (name: string) => (await execFileAsync('dpkg-deb', ['-f', result.deb.path, name])).stdout.trim();
    expect(await field('Package')).toBe('nodenet');
    expect(await field('Version')).toBe(version);
    expect(await field('Depends')).toBe(DEPENDS);
    expect(await field('Depends')).toMatch(/^nodejs \(>= 20\.19\), iproute2, nftables, conntrack, util-linux/);
    expect(await field('Suggests')).toBe('openvswitch-switch');
    const info = (await execFileAsync('dpkg-deb', ['-I', result.deb.path])).stdout;
    for (const script of MAINTAINER_SCRIPTS) expect(info).toMatch(new RegExp(`\\d+ bytes,\\s+\\d+ lines\\s+\\*\\s+${script}\\s`));
    const control = join(await scope.createTempDir(), 'DEBIAN');
    await execFileAsync('dpkg-deb', ['-e', result.deb.path, control]);
    expect(await readFile(join(control, 'conffiles'), 'utf8')).toBe('/etc/nodenet/nodenetd.yaml\n');
    for (const script of MAINTAINER_SCRIPTS) await execFileAsync('sh', ['-n', join(control, script)]);
  });

  it('dpkg-deb -c: bundles, helpers, protos, launchers, unit, conffile, man pages, copyright; no node_modules', async () => {
    const listing = (await execFileAsync('dpkg-deb', ['-c', result.deb.path], { maxBuffer: 8 << 20 })).stdout;
    const files = new Map(
      listing
        .trim()
        .split('\n')
        .map((l) => {
          const cols = l.split(/\s+/);
          return [cols.slice(5).join(' ').replace(/^\.\//, ''), cols[0]!] as const;
        }),
    );
    for (const f of [
      'usr/lib/nodenet/nodenetd.mjs',
      'usr/lib/nodenet/nodenetctl.mjs',
      'usr/lib/nodenet/helpers/netns-netlink.pl',
      'usr/lib/nodenet/proto/network.proto',
      'usr/lib/nodenet/proto/npm/grpc-health-check/proto/health/v1/health.proto',
      'lib/systemd/system/nodenetd.service',
      'etc/nodenet/nodenetd.yaml',
      'usr/share/man/man8/nodenetd.8.gz',
      'usr/share/man/man1/nodenetctl.1.gz',
      'usr/share/doc/nodenet/copyright',
      'usr/share/doc/nodenet/changelog.gz',
      'usr/share/doc/nodenet/examples/nodenetd-ovs.conf',
    ]) {
      expect(files.get(f), f).toBe('-rw-r--r--');
    }
    expect(files.get('usr/bin/nodenetd')).toBe('-rwxr-xr-x');
    expect(files.get('usr/bin/nodenetctl')).toBe('-rwxr-xr-x');
    expect([...files.keys()].filter((f) => f.includes('node_modules'))).toEqual([]);
    expect(listing).toMatch(/root\/root/);
    expect(listing).not.toMatch(/ (?!root\/root)\S+\/\S+ +\d+ \d{4}-/);
    // The CNI plugin goes in only when it was built.
    const cniPlugin = existsSync(join(repoRoot, 'packages/cni-plugin/dist/nodenet'));
    expect(files.has('usr/lib/cni/nodenet')).toBe(cniPlugin);
    expect(files.has('usr/share/doc/nodenet/examples/nodenet.conflist')).toBe(cniPlugin);
    expect(files.has('usr/share/doc/nodenet/examples/nodenet-dual-stack.conflist')).toBe(cniPlugin);
    expect(result.deb.architecture === 'all').toBe(!cniPlugin);
    // The tarball holds the same tree.
    const tarList = (await execFileAsync('tar', ['-tzf', result.tarball], { maxBuffer: 8 << 20 })).stdout.split('\n');
    const top = `nodenet-${releaseVersion(repoRoot)}/`;
    for (const f of [
      'bin/nodenetd',
      'lib/nodenet/nodenetd.mjs',
      'lib/nodenet/helpers/netns-netlink.pl',
      'lib/systemd/system/nodenetd.service',
      'share/doc/nodenet/examples/nodenetd.yaml',
    ]) {
      expect(tarList, f).toContain(top + f);
    }
  });

  it('lintian: no errors', () => {
    console.log(`lintian (warnings and above): ${result.lintian?.output || 'no findings'}`);
    expect(result.lintian?.errors).toEqual([]);
  });

  it('systemd-analyze verify: the unit, its ExecStart and man pages exist, no warnings', async () => {
    // Verified with the extracted launcher as ExecStart and the extracted man pages: systemd need not run.
    const dir = await scope.createTempDir();
    await writeFile(join(dir, 'nodenetd.service'), unit.replace(/^ExecStart=\/usr\/bin\/nodenetd /m, `ExecStart=${packagedDaemon} `));
    const r = await execa('systemd-analyze', ['verify', join(dir, 'nodenetd.service')], {
      reject: false,
      env: { MANPATH: join(root, 'usr/share/man'), SYSTEMD_LOG_LEVEL: 'info' },
    });
    expect({ exitCode: r.exitCode, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ exitCode: 0, output: '' });
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/nodenetd --config \/etc\/nodenet\/nodenetd\.yaml$/m);
  });

  it("the package's daemon under exactly the unit's capabilities: the whole API; READY=1 once SERVING, STOPPING=1", async () => {
    const caps = unitCapabilities(unit);
    const node = await topology.addNode();
    const notifySocket = join(await scope.createTempDir(), 'notify.sock');
    const notifications = await listenForNotifications(scope, notifySocket);
    const daemon = await Daemon.spawn({
      scope,
      node,
      command: withCapabilities(caps, [packagedDaemon]),
      env: { NOTIFY_SOCKET: notifySocket },
    });

    const ready = await notifications.next((n) => n.vars.READY === '1', 30_000);
    // Sent only once health is SERVING (and so after the restore).
    const health = daemon.health();
    try {
      expect(await health.check('network.Network', 2000)).toBe('SERVING');
    } finally {
      health.close();
    }
    expect(daemon.logs.some((l) => l.event === 'restored')).toBe(true);
    expect(ready.pid).toBe(daemon.pid);
    expect(ready.vars.MAINPID).toBe(String(daemon.pid));
    expect(ready.vars.STATUS).toMatch(/^serving on unix:\/\/.*: 0 instances$/);

    await walkTheApi(scope, topology, daemon);
    // The namespace helper ran from the package (the daemon falls back to `ip` where it cannot).
    expect(daemon.logs.filter((l) => /namespace configurator/.test(String(l.msg)) && l.level === 'warn')).toEqual([]);
    const { stdout: ps } = await execFileAsync('ps', ['-o', 'args=', '--ppid', String(daemon.pid)]);
    expect(ps).toContain(`perl ${join(root, 'usr/lib/nodenet/helpers/netns-netlink.pl')}`);
    // nodenetctl from the package.
    const ctl = await execa(join(root, 'usr/bin/nodenetctl'), ['--target', daemon.target, 'health'], { reject: false });
    expect(ctl).toMatchObject({ exitCode: 0, stdout: '""               SERVING\nnetwork.Network  SERVING' });

    const exit = await daemon.stop();
    expect(exit.exitCode).toBe(0);
    const stopping = await notifications.next((n) => n.vars.STOPPING === '1', 10_000);
    expect(stopping.pid).toBe(daemon.pid);
    expect(notifications.all.filter((n) => n.vars.READY === '1')).toHaveLength(1);
  });

  it("each of the unit's capabilities is needed: without it a step of the API fails", async () => {
    const caps = unitCapabilities(unit);
    const failures: Record<string, string> = {};
    for (const dropped of caps) {
      const node = await topology.addNode();
      const daemon = await Daemon.spawn({
        scope,
        node,
        command: withCapabilities(
          caps.filter((c) => c !== dropped),
          [packagedDaemon],
        ),
      });
      try {
        await daemon.waitForServing(30_000);
        await walkTheApi(scope, topology, daemon);
        failures[dropped] = 'nothing failed';
      } catch (e) {
        failures[dropped] =
          e instanceof WalkStepFailed
            ? `${e.step}: ${e.message.slice(e.step.length + 2, e.step.length + 240)}`
            : `start: ${(e as Error).message.slice(0, 240)}`;
      } finally {
        await daemon.kill();
      }
    }
    console.log(
      `without each capability:\n${Object.entries(failures)
        .map(([c, f]) => `  ${c}: ${f}`)
        .join('\n')}`,
    );
    // Each fails where the README's table says, not merely somewhere (a start failure would prove less).
    const failsAt: Record<string, string> = {
      net_admin: 'CreateContainerNetworkInterface: ',
      sys_admin: 'CreateInterface (veth into a namespace, a published port): ',
      sys_ptrace: "CreateInterface (veth into /proc/PID/ns/net of another user's process): ",
    };
    expect(Object.keys(failures).sort()).toEqual(Object.keys(failsAt).sort());
    for (const [cap, failure] of Object.entries(failures)) expect(failure.startsWith(failsAt[cap]!), `${cap}: ${failure}`).toBe(true);
  });

  it('from the bundle: server reflection (its protos) and etcd membership (the lazily loaded adapter, etcd3 and its protos)', async () => {
    const etcd = await EtcdServer.startOnFabric(scope, topology);
    const node = await topology.addNode();
    const prefix = '/nodenet-package-test';
    const daemon = await Daemon.start({
      scope,
      node,
      command: [packagedDaemon],
      config: { membership: { type: 'etcd', etcd: { endpoints: [etcd.url], prefix, leaseTtlSeconds: 15 } } },
    });
    expect(await reflectionListServices(daemon.target)).toEqual(expect.arrayContaining(['network.Network', 'grpc.health.v1.Health']));
    await daemon.network().createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    const deadline = Date.now() + 10_000;
    let keys: string[] = [];
    while (Date.now() < deadline && !keys.includes(`${prefix}/nodes/${node.name}`)) {
      keys = (await etcd.list(prefix)).map((kv) => kv.key);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(keys).toContain(`${prefix}/nodes/${node.name}`);
    await daemon.stop();
  });

  it("upgrade: the package's daemon adopts what the repository's daemon built; traffic never stops; delete works", async () => {
    const node = await topology.addNode();
    const old = await Daemon.start({ scope, node, config: { reconcileIntervalSeconds: 86_400 } });
    const api = old.network();
    await api.createContainerNetworkInterface({ ipAddress: GATEWAY, subNetwork: SUBNET });
    const instanceNs = await scope.createNamespace();
    await startEchoServers(scope, instanceNs, 80);
    const { interfaceName: handle } = await api.createInterface({
      ipAddress: '198.19.1.20',
      ports: [],
      netns: instanceNs,
      portMappings: [{ hostPort: 8090, instancePort: 80, protocol: Protocol.TCP }],
    });
    const reachable = async (what: string) => {
      expect((await ping(instanceNs, GATEWAY, { count: 1, timeoutSec: 3 })).ok, `${what}: ping`).toBe(true);
      expect((await echo(topology.world.ns, { protocol: 'tcp', host: node.address, port: 8090 })).ok, `${what}: published port`).toBe(true);
    };
    await reachable('old daemon');
    await old.stop();
    await reachable('no daemon');

    const next = await Daemon.spawn({ ...old.options, command: [packagedDaemon] }, old.launch);
    await next.waitForServing(30_000);
    const restored = next.logs.find((l) => l.event === 'restored');
    expect(restored).toMatchObject({ instances: 1, repairs: [] });
    await reachable('package daemon');
    await next.network().deleteInterface({ interfaceName: handle });
    expect(await link(node.ns, handle)).toBeUndefined();
    expect((await echo(topology.world.ns, { protocol: 'tcp', host: node.address, port: 8090, timeoutMs: 1000 })).ok).toBe(false);
    await next.stop();
  });
});

interface NotificationListener {
  readonly all: Notification[];
  /** The first notification (already received or to come) matching `predicate`. */
  next(predicate: (n: Notification) => boolean, timeoutMs: number): Promise<Notification>;
}

/** A unix datagram socket at `path` that records what is sent to it (test/fixtures/notify-listener.py). */
async function listenForNotifications(scope: TestScope, path: string): Promise<NotificationListener> {
  const child = execa('python3', [NOTIFY_LISTENER, path], { reject: false, stdin: 'ignore', buffer: false });
  scope.trackPid(child.pid);
  scope.defer('the notification listener', async () => {
    child.kill('SIGKILL');
    await child;
  });
  const all: Notification[] = [];
  const waiters: Array<() => void> = [];
  let listening: () => void;
  const started = new Promise<void>((resolve) => (listening = resolve));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const parsed = JSON.parse(line) as Notification & { listening?: string };
    if (parsed.listening) listening();
    else all.push(parsed);
    for (const wake of waiters.splice(0)) wake();
  });
  await started;
  return {
    all,
    async next(predicate, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = all.find(predicate);
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching notification within ${timeoutMs} ms; received: ${JSON.stringify(all)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
}

/** Lists services through grpc.reflection.v1 (what grpcurl list does). */
async function reflectionListServices(target: string): Promise<string[]> {
  type Stream = NodeJS.ReadWriteStream & { end(): void; write(m: unknown): boolean };
  const pkg = loadPackageDefinition(loadSync(REFLECTION_PROTO, { keepCase: true })) as unknown as {
    grpc: {
      reflection: { v1: { ServerReflection: new (t: string, c: ChannelCredentials) => Client & { ServerReflectionInfo: () => Stream } } };
    };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(target, credentials.createInsecure());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on('data', (res: { list_services_response?: { service: { name: string }[] } }) => {
        resolve((res.list_services_response?.service ?? []).map((s) => s.name));
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ list_services: '' });
    });
  } finally {
    client.close();
  }
}
