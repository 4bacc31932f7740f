/**
 * The daemon itself, as a process inside a node namespace: start-up checks (exit 2, nothing touched),
 * the unix socket, health, reflection, one full API round trip, request-id logging, TCP with (m)TLS,
 * restoring the CNI at start, and the graceful stop. RPC semantics in depth are the conformance suite's.
 */
import { access, chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { createNetworkClient, type CreateInterfaceResponse, type NetworkApiClient } from '@nodenet/api';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Cleanup,
  createNode,
  healthClient,
  linkExists,
  namespaceSnapshot,
  probeFromNamespace,
  reflectionListServices,
  sh,
  spawnDaemon,
  startReadyDaemon,
  tempDir,
  writeConfig,
  SERVER_MAIN,
  type DaemonProcess,
  type LogLine,
} from './support.js';

let cleanup = new Cleanup();
afterEach(async () => {
  const c = cleanup;
  cleanup = new Cleanup();
  await c.run();
});

beforeAll(async () => {
  await access(SERVER_MAIN).catch(() => {
    throw new Error(`${SERVER_MAIN} is missing: build packages/server first (cd packages/server && npx tsc -p tsconfig.json)`);
  });
});

function client(socket: string): NetworkApiClient {
  const c = createNetworkClient(`unix://${socket}`);
  cleanup.add(async () => c.close());
  return c;
}

async function expectStatus(p: Promise<unknown>, code: status, detail: RegExp): Promise<ServiceError> {
  const err = await p.then(
    () => {
      throw new Error(`expected ${status[code]}, the call succeeded`);
    },
    (e: ServiceError) => e,
  );
  expect(status[err.code], err.details).toBe(status[code]);
  expect(err.details).toMatch(detail);
  return err;
}

/** A node, a temp dir, and a config file for a daemon on a unix socket in that dir. */
async function setup(extra: Record<string, unknown> = {}) {
  const topo = await createNode(cleanup);
  const dir = await tempDir(cleanup);
  const socket = join(dir, 'run', 'nodenet.sock');
  const config = { nodeName: 'node-1', listen: `unix://${socket}`, stateDir: join(dir, 'state'), logLevel: 'debug', ...extra };
  const configFile = await writeConfig(dir, config);
  return { ...topo, dir, socket, configFile };
}

describe('start-up checks', () => {
  it('refuses a bad config or flag with exit code 2, naming the key, and changes nothing', async () => {
    const { node, dir, socket } = await setup();
    const before = await namespaceSnapshot(node);
    const stateDir = join(dir, 'state');
    const base = { listen: `unix://${socket}`, stateDir };
    const cases: { name: string; config?: Record<string, unknown>; args?: string[]; expected: string }[] = [
      { name: 'overlay.vni', config: { ...base, overlay: { vni: 0 } }, expected: 'config: overlay.vni: must be an integer 1..16777215' },
      {
        name: 'unknown key',
        config: { ...base, overlay: { vnii: 7 } },
        expected: "config: overlay: unknown key 'vnii': valid keys are mode, vni, port",
      },
      {
        name: 'peer subnet',
        config: { ...base, membership: { peers: [{ name: 'n2', underlayAddress: '198.18.0.2', subnet: '198.19.2.1/24' }] } },
        expected: 'config: membership.peers[0].subnet: ',
      },
      { name: 'bad flag value', config: base, args: ['--underlay-address', '198.18.0.01'], expected: '--underlay-address: ' },
      { name: 'bad log level flag', config: base, args: ['--log-level', 'loud'], expected: '--log-level: must be one of' },
      { name: 'unknown flag', config: base, args: ['--listne', 'x'], expected: "'--listne'" },
      {
        name: 'unknown backend',
        config: { ...base, backend: 'bogus' },
        expected: "config: backend: unknown backend 'bogus': valid backends are iproute2, ovs",
      },
      {
        name: 'unknown backend flag',
        config: base,
        args: ['--backend', 'ovs2'],
        expected: "--backend: unknown backend 'ovs2': valid backends are iproute2, ovs",
      },
      {
        name: 'TCP without TLS',
        config: { ...base, listen: '198.18.0.1:7443' },
        expected: 'config: listen: 198.18.0.1:7443 is TCP without TLS',
      },
      {
        name: 'TLS file missing',
        config: { ...base, listen: '198.18.0.1:7443', tls: { cert: join(dir, 'absent.pem'), key: join(dir, 'absent.key') } },
        expected: `config: tls.cert: cannot read ${join(dir, 'absent.pem')}`,
      },
      {
        name: 'underlay address not on the node',
        config: { ...base, underlayAddress: '198.18.0.7' },
        expected: 'config: underlayAddress: underlay address 198.18.0.7 is not assigned',
      },
    ];
    for (const c of cases) {
      const file = await writeConfig(dir, c.config ?? {}, `case.yaml`);
      const d = spawnDaemon(cleanup, node, ['--config', file, ...(c.args ?? [])]);
      const exit = await d.exited;
      expect(exit.code, `${c.name}: ${d.stderr()}`).toBe(2);
      expect(d.stderr(), c.name).toContain(c.expected);
    }
    const missing = join(dir, 'missing.yaml');
    const d = spawnDaemon(cleanup, node, ['--config', missing]);
    expect((await d.exited).code).toBe(2);
    expect(d.stderr()).toContain(`config: cannot read the config file ${missing}: no such file`);

    expect(await namespaceSnapshot(node)).toBe(before);
    await expect(access(stateDir)).rejects.toThrow();
    await expect(access(join(dir, 'run'))).rejects.toThrow();
  });

  it('--help documents the flags and keys and exits 0', async () => {
    const r = await sh(process.execPath, [SERVER_MAIN, '--help']);
    for (const s of [
      '--config',
      '--listen',
      '--backend',
      '--state-dir',
      '--node-name',
      '--underlay-address',
      '--log-level',
      'reservedPorts:',
      'leaseTtlSeconds:',
      'datapathType:',
    ]) {
      expect(r.stdout).toContain(s);
    }
  });
});

describe('serving on a unix socket', () => {
  it('socket 0600, health, reflection, a full round trip, JSON logs with request ids', async () => {
    const { node, socket, configFile } = await setup({ reservedPorts: [2222] });
    const d = await startReadyDaemon(cleanup, node, ['--config', configFile]);

    const st = await stat(socket);
    expect(st.isSocket()).toBe(true);
    expect((st.mode & 0o777).toString(8)).toBe('600');

    const health = healthClient(`unix://${socket}`);
    cleanup.add(async () => health.close());
    expect(await health.check('')).toBe('SERVING');
    expect(await health.check('network.Network')).toBe('SERVING');
    const services = await reflectionListServices(`unix://${socket}`);
    expect(services).toContain('network.Network');
    expect(services).toContain('grpc.health.v1.Health');

    const api = client(socket);
    expect(await api.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' })).toEqual({
      interfaceName: 'nodenet0',
    });
    expect(await linkExists(node, 'nodenet0')).toBe(true);

    // With the client's request id, through the raw client to see the response metadata.
    const md = new Metadata();
    md.set('x-request-id', 'it-req-42');
    let echoed: unknown;
    const created = await new Promise<CreateInterfaceResponse>((resolve, reject) => {
      const call = api.raw.createInterface({ ipAddress: '198.19.1.2', ports: [8080], portMappings: [] }, md, (err, res) =>
        err ? reject(err) : resolve(res),
      );
      call.on('metadata', (m: Metadata) => (echoed = m.get('x-request-id')[0]));
    });
    expect(echoed).toBe('it-req-42');
    expect(created.interfaceName).toMatch(/^nni-[0-9a-f]{8}$/);
    expect(created.hostInterfaceName).toBe(created.interfaceName.replace('nni-', 'nnh-'));
    expect(created).toMatchObject({ macAddress: '02:6e:c6:13:01:02', gateway: '198.19.1.1', prefixLength: 24, mtu: 1450 });
    expect(await linkExists(node, created.interfaceName)).toBe(true);
    expect(await linkExists(node, created.hostInterfaceName!)).toBe(true);

    // Reserved ports, each with its reason; errors are mapped, not UNKNOWN.
    await expectStatus(
      api.createInterface({ ipAddress: '198.19.1.3', ports: [4789] }),
      status.FAILED_PRECONDITION,
      /the overlay's UDP port/,
    );
    await expectStatus(
      api.createInterface({ ipAddress: '198.19.1.3', ports: [2222] }),
      status.FAILED_PRECONDITION,
      /listed in reservedPorts/,
    );
    await expectStatus(api.createInterface({ ipAddress: '198.19.1.03' }), status.INVALID_ARGUMENT, /^ip_address: /);
    await expectStatus(api.deleteInterface({ interfaceName: 'ul0' }), status.PERMISSION_DENIED, /not created by nodenet/);

    await api.deleteInterface({ interfaceName: created.interfaceName });
    expect(await linkExists(node, created.interfaceName)).toBe(false);
    expect(await linkExists(node, created.hostInterfaceName!)).toBe(false);
    await api.deleteInterface({ interfaceName: created.interfaceName }); // idempotent

    // Timing of a few creates and deletes (reported, not asserted).
    const createMs: number[] = [];
    const deleteMs: number[] = [];
    for (let i = 10; i < 20; i++) {
      let t = performance.now();
      const r = await api.createInterface({ ipAddress: `198.19.1.${i}`, ports: [9000 + i] });
      createMs.push(performance.now() - t);
      t = performance.now();
      await api.deleteInterface({ interfaceName: r.interfaceName });
      deleteMs.push(performance.now() - t);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(1);
    console.log(`[measure] process spawn to SERVING: ${d.readyMs.toFixed(0)} ms`);
    console.log(
      `[measure] over a unix socket, one port each: CreateInterface median ${median(createMs)} ms, DeleteInterface median ${median(deleteMs)} ms (n=10)`,
    );

    // Logs: every stdout line is a JSON object; each RPC has a request id, method, code and duration.
    expect(d.nonJson).toEqual([]);
    const start = d.logs.find((l) => l.event === 'start')!;
    expect(start).toMatchObject({ backend: 'iproute2', config: { nodeName: 'node-1', listen: `unix://${socket}`, backend: 'iproute2' } });
    expect(d.logs.some((l) => l.event === 'ready')).toBe(true);
    const rpcs = d.logs.filter((l) => l.msg === 'rpc');
    expect(rpcs.length).toBe(1 + 1 + 4 + 2 + 20);
    for (const l of rpcs) {
      expect(typeof l.reqId).toBe('string');
      expect(typeof l.method).toBe('string');
      expect(typeof l.code).toBe('string');
      expect(typeof l.durationMs).toBe('number');
    }
    expect(new Set(rpcs.map((l) => l.reqId)).size).toBe(rpcs.length);
    const mine = rpcs.filter((l) => l.reqId === 'it-req-42');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ method: 'CreateInterface', code: 'OK' });
    // core's own lines for that request carry its id too
    expect(d.logs.some((l) => l.reqId === 'it-req-42' && l.component === 'core' && l.msg === 'interface created')).toBe(true);
    expect(rpcs.find((l) => l.code === 'PERMISSION_DENIED')).toMatchObject({ method: 'DeleteInterface' });
  });

  it('refuses a second daemon on a live socket, and replaces a stale one', async () => {
    const { node, dir, socket, configFile } = await setup();
    const first = await startReadyDaemon(cleanup, node, ['--config', configFile]);
    const second = spawnDaemon(cleanup, node, ['--config', configFile, '--state-dir', join(dir, 'state2')]);
    expect((await second.exited).code).toBe(1);
    expect(second.stderr()).toContain(`another process (another nodenetd?) is serving on ${socket}`);
    const health = healthClient(`unix://${socket}`);
    cleanup.add(async () => health.close());
    expect(await health.check('')).toBe('SERVING');

    // A crashed daemon leaves its socket file behind; the next start takes the path over.
    first.child.kill('SIGKILL');
    await first.exited;
    expect((await stat(socket)).isSocket()).toBe(true);
    await startReadyDaemon(cleanup, node, ['--config', configFile]);
    const again = healthClient(`unix://${socket}`);
    cleanup.add(async () => again.close());
    expect(await again.check('network.Network')).toBe('SERVING');
  });

  it('refuses a path that is not a socket', async () => {
    const { node, dir, socket, configFile } = await setup();
    await mkdir(join(dir, 'run'), { recursive: true });
    await writeFile(socket, 'not a socket');
    const d = spawnDaemon(cleanup, node, ['--config', configFile]);
    expect((await d.exited).code).toBe(1);
    expect(d.stderr()).toContain(`${socket} exists and is not a socket`);
  });
});

describe('restoring the CNI', () => {
  it('brings a recorded CNI back before SERVING, after a restart and after a "reboot"', async () => {
    const { node, socket, configFile } = await setup();
    const first = await startReadyDaemon(cleanup, node, ['--config', configFile]);
    const api = client(socket);
    await api.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    const stopStarted = performance.now();
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    console.log(`[measure] SIGTERM to exit, nothing in flight: ${(performance.now() - stopStarted).toFixed(0)} ms`);
    expect(await linkExists(node, 'nodenet0')).toBe(true); // the network stays in place

    // Restart: adopts what is there.
    const second = await startReadyDaemon(cleanup, node, ['--config', configFile]);
    expect(second.logs.find((l) => l.event === 'restored')).toMatchObject({ cni: 'nodenet0', subnet: '198.19.1.0/24' });
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);

    // "Reboot": the kernel state is gone, the state directory is not.
    await sh('/usr/sbin/ip', ['-n', node, 'link', 'del', 'nodenet0']);
    await sh('/usr/sbin/ip', ['netns', 'exec', node, 'nft', 'flush', 'ruleset']);
    await sh('/usr/sbin/ip', ['netns', 'exec', node, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    const third = await startReadyDaemon(cleanup, node, ['--config', configFile]);
    console.log(
      `[measure] start after a "reboot" (restoring the CNI) to SERVING: ${third.readyMs.toFixed(0)} ms; restore step ${String(third.logs.find((l) => l.event === 'restored')!.durationMs)} ms`,
    );
    const order = third.logs.map((l) => l.event).filter((e) => e === 'restored' || e === 'ready');
    expect(order).toEqual(['restored', 'ready']);
    const addr = await sh('/usr/sbin/ip', ['-n', node, '-4', '-o', 'addr', 'show', 'dev', 'nodenet0']);
    expect(addr.stdout).toContain('198.19.1.1/24');
    const forwarding = await sh('/usr/sbin/ip', ['netns', 'exec', node, 'sysctl', '-n', 'net.ipv4.ip_forward']);
    expect(forwarding.stdout.trim()).toBe('1');
    const tables = await sh('/usr/sbin/ip', ['netns', 'exec', node, 'nft', 'list', 'tables']);
    expect(tables.stdout).toMatch(/table ip nodenet/);
    // And it serves: an instance joins the restored bridge.
    const r = await api.createInterface({ ipAddress: '198.19.1.2' });
    const master = await sh('/usr/sbin/ip', ['-n', node, '-o', 'link', 'show', 'dev', r.hostInterfaceName!]);
    expect(master.stdout).toContain('master nodenet0');
  });
});

describe('TCP', () => {
  async function makeCerts(dir: string) {
    const which = await sh('/bin/sh', ['-c', 'command -v openssl'], { allowFailure: true });
    if (which.exitCode !== 0) throw new Error('openssl is needed to make test certificates: apt-get install openssl');
    const o = (...args: string[]) => sh('openssl', args);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    const p = (n: string) => join(dir, n);
    const ca = async (name: string) =>
      o('req', '-x509', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '1', '-subj', `/CN=${name}`);
    const leaf = async (name: string, caName: string, ext: string) => {
      await writeFile(p(`${name}.ext`), ext);
      await o('req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${name}`);
      await o(
        'x509',
        '-req',
        '-in',
        p(`${name}.csr`),
        '-CA',
        p(`${caName}.pem`),
        '-CAkey',
        p(`${caName}.key`),
        '-CAcreateserial',
        '-out',
        p(`${name}.pem`),
        '-days',
        '1',
        '-extfile',
        p(`${name}.ext`),
      );
    };
    await ca('test-ca');
    await ca('rogue-ca');
    await leaf('server', 'test-ca', 'subjectAltName=IP:198.18.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    await leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
    await leaf('rogue-client', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
    for (const k of ['server.key', 'client.key', 'rogue-client.key', 'test-ca.key', 'rogue-ca.key']) await chmod(p(k), 0o600);
    return p;
  }

  it("mTLS: a client with a certificate signed by tls.ca gets through; without one, or with another CA's, it is refused", async () => {
    const topo = await createNode(cleanup);
    const dir = await tempDir(cleanup);
    const p = await makeCerts(dir);
    const configFile = await writeConfig(dir, {
      listen: '198.18.0.1:7443',
      tls: { cert: 'server.pem', key: 'server.key', ca: 'test-ca.pem' }, // relative to the config file
      stateDir: join(dir, 'state'),
    });
    const d = await startReadyDaemon(cleanup, topo.node, ['--config', configFile]);
    expect(d.logs.find((l) => l.event === 'start')).toMatchObject({ config: { transport: 'mtls', listen: '198.18.0.1:7443' } });
    const target = '198.18.0.1:7443';

    const ok = await probeFromNamespace(topo.world, {
      target,
      tls: { ca: p('test-ca.pem'), cert: p('client.pem'), key: p('client.key') },
      calls: [
        { method: 'createContainerNetworkInterface', request: { ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' } },
        { method: 'createInterface', request: { ipAddress: '198.19.1.2', ports: [7443] } },
      ],
    });
    expect(ok.health).toBe('SERVING');
    expect(ok.calls![0]).toMatchObject({ ok: true, response: { interfaceName: 'nodenet0' } });
    // The daemon's own TCP port is reserved.
    expect(ok.calls![1]).toMatchObject({ code: status.FAILED_PRECONDITION });
    expect((ok.calls![1] as { details: string }).details).toContain("the daemon's gRPC port");

    const noCert = await probeFromNamespace(topo.world, { target, tls: { ca: p('test-ca.pem') } });
    expect(noCert.health).toBeUndefined();
    expect(noCert.error!.code).toBe(status.UNAVAILABLE);
    const rogue = await probeFromNamespace(topo.world, {
      target,
      tls: { ca: p('test-ca.pem'), cert: p('rogue-client.pem'), key: p('rogue-client.key') },
    });
    expect(rogue.health).toBeUndefined();
    expect(rogue.error!.code).toBe(status.UNAVAILABLE);
    const plain = await probeFromNamespace(topo.world, { target });
    expect(plain.health).toBeUndefined();
  });

  it('TLS without tls.ca accepts clients without certificates; insecure: true serves plaintext', async () => {
    const topo = await createNode(cleanup);
    const dir = await tempDir(cleanup);
    const p = await makeCerts(dir);
    const target = '198.18.0.1:7443';
    const tlsConfig = await writeConfig(
      dir,
      { listen: target, tls: { cert: p('server.pem'), key: p('server.key') }, stateDir: join(dir, 'state') },
      'tls.yaml',
    );
    const tlsDaemon = await startReadyDaemon(cleanup, topo.node, ['--config', tlsConfig]);
    expect((await probeFromNamespace(topo.world, { target, tls: { ca: p('test-ca.pem') } })).health).toBe('SERVING');
    tlsDaemon.child.kill('SIGTERM');
    expect((await tlsDaemon.exited).code).toBe(0);

    const plainConfig = await writeConfig(dir, { listen: target, insecure: true, stateDir: join(dir, 'state') }, 'plain.yaml');
    const plain = await startReadyDaemon(cleanup, topo.node, ['--config', plainConfig]);
    expect(plain.logs.find((l) => l.event === 'start')).toMatchObject({ config: { transport: 'insecure' } });
    expect((await probeFromNamespace(topo.world, { target })).health).toBe('SERVING');
  });
});

describe('graceful stop', () => {
  /**
   * A deterministic request in flight: the daemon runs with an `ip` wrapper first in PATH that, while a
   * gate file exists, announces itself and waits before running the real ip. SIGTERM arrives while
   * CreateInterface is held there.
   */
  async function gatedIp(dir: string) {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    const gate = join(dir, 'gate');
    const wrapper = `#!/bin/sh
if [ -e '${gate}' ]; then
  : > '${gate}.held'
  while [ -e '${gate}' ]; do sleep 0.02; done
fi
exec /usr/sbin/ip "$@"
`;
    await writeFile(join(bin, 'ip'), wrapper, { mode: 0o755 });
    return { env: { PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` }, gate };
  }

  async function waitForFile(file: string, d: DaemonProcess, timeoutMs = 20_000) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        await access(file);
        return;
      } catch {
        if (Date.now() > until) throw new Error(`timed out waiting for ${file}; stderr: ${d.stderr()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  it('SIGTERM: new calls are refused, the call in flight finishes, exit 0, the network stays', async () => {
    const { node, dir, socket, configFile } = await setup();
    const gated = await gatedIp(dir);
    const d = await startReadyDaemon(cleanup, node, ['--config', configFile], { env: gated.env });
    const api = client(socket);
    await api.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });

    await writeFile(gated.gate, '');
    const inFlight = api.createInterface({ ipAddress: '198.19.1.2' }, { metadata: { 'x-request-id': 'in-flight-1' } });
    await waitForFile(`${gated.gate}.held`, d);

    d.child.kill('SIGTERM');
    const shutdown = await d.waitForLog((l: LogLine) => l.event === 'shutdown');
    expect(shutdown.inFlight).toBe(1);
    // A new call is not accepted any more.
    const late = createNetworkClient(`unix://${socket}`);
    cleanup.add(async () => late.close());
    await expect(late.createInterface({ ipAddress: '198.19.1.3' }, { timeoutMs: 3000 })).rejects.toMatchObject({
      code: status.UNAVAILABLE,
    });

    await rm(gated.gate);
    const created = await inFlight;
    expect(created.interfaceName).toMatch(/^nni-/);
    const exit = await d.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(d.logs.find((l) => l.event === 'stopped')).toMatchObject({ forced: false });
    expect(d.logs.find((l) => l.msg === 'rpc' && l.reqId === 'in-flight-1')).toMatchObject({ method: 'CreateInterface', code: 'OK' });
    const order = d.logs
      .map((l) => (l.msg === 'rpc' && l.reqId === 'in-flight-1' ? 'rpc' : l.event))
      .filter((e) => e === 'shutdown' || e === 'rpc' || e === 'stopped');
    expect(order).toEqual(['shutdown', 'rpc', 'stopped']);

    // The network stays in place.
    expect(await linkExists(node, 'nodenet0')).toBe(true);
    expect(await linkExists(node, created.interfaceName)).toBe(true);
    await expect(access(socket)).rejects.toThrow(); // the socket file is removed
  });

  it('a health watcher sees NOT_SERVING, then its stream ends: it does not hold the stop', async () => {
    const { node, socket, configFile } = await setup();
    const d = await startReadyDaemon(cleanup, node, ['--config', configFile]);
    const health = healthClient(`unix://${socket}`);
    cleanup.add(async () => health.close());
    const watch = health.watch('network.Network');
    cleanup.add(async () => watch.cancel());
    while (watch.events.length === 0) await new Promise((r) => setTimeout(r, 10));
    expect(watch.events).toEqual(['SERVING']);
    const t = performance.now();
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    console.log(`[measure] SIGTERM to exit with a health watcher open: ${(performance.now() - t).toFixed(0)} ms`);
    expect(d.logs.find((l) => l.event === 'stopped')).toMatchObject({ forced: false });
    expect(watch.events).toEqual(['SERVING', 'NOT_SERVING', 'end']);
  });

  it('a second signal cuts the call in flight off: exit 1, the bridge stays', async () => {
    const { node, dir, socket, configFile } = await setup();
    const gated = await gatedIp(dir);
    const d = await startReadyDaemon(cleanup, node, ['--config', configFile], { env: gated.env });
    const api = client(socket);
    await api.createContainerNetworkInterface({ ipAddress: '198.19.1.1', subNetwork: '198.19.1.0/24' });
    await writeFile(gated.gate, '');
    cleanup.add(() => rm(gated.gate, { force: true })); // lets the held wrapper go
    const inFlight = api.createInterface({ ipAddress: '198.19.1.2' }).then(
      () => 'succeeded',
      (e: ServiceError) => e,
    );
    await waitForFile(`${gated.gate}.held`, d);

    d.child.kill('SIGINT');
    await d.waitForLog((l) => l.event === 'shutdown');
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 1, signal: null });
    expect(await inFlight).not.toBe('succeeded');
    expect(d.logs.find((l) => l.event === 'stopped')).toMatchObject({ forced: true });
    expect(await linkExists(node, 'nodenet0')).toBe(true);
  });
});
