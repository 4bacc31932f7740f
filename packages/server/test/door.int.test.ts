/**
 * The API's door on the real daemon in a test namespace: the unix socket's group and mode (and who can
 * connect through them), the mTLS allowlist per service, the message size limit, a flood beyond
 * limits.maxInFlight, a create cut off by its deadline (it rolls back), and the refusal to start with a
 * world-writable state directory or config file.
 */
import { spawn } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CreateInterfaceRequest, InterfaceKind, ListPeersResponse } from '@nodenet/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, RawApiClient, TestPki, TestScope, Topology, links, nftRulesetText, type CertAndKey } from '@nodenet/testkit';

let scope: TestScope;
let topo: Topology;
beforeAll(async () => {
  scope = await TestScope.create();
  topo = await Topology.create(scope, { nodes: 5 });
});
afterAll(() => scope.cleanup());

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
/** HealthCheckResponse { status: SERVING } on the wire. */
const SERVING = Buffer.from([0x08, 0x01]);

const encodeCreate = (r: Partial<CreateInterfaceRequest>) =>
  CreateInterfaceRequest.encode(CreateInterfaceRequest.fromPartial(r)).finish() as Buffer;

/** Runs `node -e script` as another user and group (the test's stand-in for a local client), returning its stdout. */
function runAs(uid: number, gid: number, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { uid, gid, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', () => (err ? reject(new Error(err)) : resolve(out.trim())));
  });
}

const connectScript = (path: string) =>
  `require('net').connect(${JSON.stringify(path)}).on('connect', function () { console.log('connected'); this.destroy(); }).on('error', (e) => console.log(e.code));`;

/** The node's instance links (alias nodenet:nni-...), by handle. */
async function instanceHandles(ns: string): Promise<string[]> {
  return (await links(ns))
    .map((l) => /^nodenet:(nni-[0-9a-f]{8})$/.exec(l.ifalias ?? '')?.[1])
    .filter((h): h is string => h !== undefined)
    .sort();
}

async function recordedHandles(daemon: Daemon): Promise<string[]> {
  return Object.keys(await daemon.readState())
    .map((f) => /^instances\/(nni-[0-9a-f]{8})\.json$/.exec(f)?.[1])
    .filter((h): h is string => h !== undefined)
    .sort();
}

describe('the unix socket', () => {
  it('gets socketGroup and socketMode: a member of the group connects, another user does not', async () => {
    const node = topo.node(1);
    const dir = await scope.createTempDir();
    await chmod(dir, 0o711); // the test's own temp dir: let other users pass through to the daemon's directory
    const socket = join(dir, 'run', 'nodenet', 'nodenet.sock');
    const daemon = await Daemon.start({ scope, node, config: { listen: `unix://${socket}`, socketGroup: 'daemon', socketMode: '0660' } });
    const daemonGid = Number(
      (await readFile('/etc/group', 'utf8'))
        .split('\n')
        .find((l) => l.startsWith('daemon:'))!
        .split(':')[2],
    );
    const st = await stat(socket);
    expect((st.mode & 0o777).toString(8)).toBe('660');
    expect(st.gid).toBe(daemonGid);
    // The daemon made the directories: 0750, owned by the group, so the group can reach the socket.
    for (const made of [join(dir, 'run'), join(dir, 'run', 'nodenet')]) {
      const dirSt = await stat(made);
      expect((dirSt.mode & 0o777).toString(8)).toBe('750');
      expect(dirSt.gid).toBe(daemonGid);
    }
    expect(daemon.logs.find((l) => l.event === 'start')).toMatchObject({ config: { socketMode: '0660', socketGroup: 'daemon' } });

    const nobody = 65534;
    expect(await runAs(nobody, daemonGid, connectScript(socket))).toBe('connected');
    expect(await runAs(nobody, nobody, connectScript(socket))).toBe('EACCES');
    expect((await daemon.stop()).exitCode).toBe(0);
  });

  it('refuses a world-accessible socketMode and an unknown group with exit 2, naming the key', async () => {
    const mode = await Daemon.spawn({ scope, node: topo.node(1), config: { socketMode: '0666' } });
    expect((await mode.exited).exitCode).toBe(2);
    expect(mode.stderr).toContain('config: socketMode: 0666 lets every user on the node reach the socket');
    const group = await Daemon.spawn({ scope, node: topo.node(1), config: { socketGroup: 'nnt-no-such-group' } });
    expect((await group.exited).exitCode).toBe(2);
    expect(group.stderr).toContain("config: socketGroup: there is no group 'nnt-no-such-group' on this node");
  });
});

describe('world-writable paths', () => {
  it('refuses to start with a world-writable state directory or config file (exit 2, the path and the fix named), changing nothing', async () => {
    const dir = await scope.createTempDir();
    const stateDir = join(dir, 'state');
    await writeFile(join(dir, 'marker'), '');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(stateDir);
    await chmod(stateDir, 0o777);
    const before = await nftRulesetText(topo.node(2).ns);
    const d = await Daemon.spawn({ scope, node: topo.node(2), config: { stateDir } });
    expect((await d.exited).exitCode).toBe(2);
    expect(d.stderr).toContain(`config: stateDir: the state directory ${stateDir} is world-writable (mode 0777)`);
    expect(d.stderr).toContain(`chmod o-w ${stateDir}`);
    expect(await nftRulesetText(topo.node(2).ns)).toBe(before);

    await chmod(stateDir, 0o700);
    const good = await Daemon.start({ scope, node: topo.node(2), config: { stateDir } });
    await good.stop();
    await chmod(good.launch.configPath, 0o666);
    const again = await Daemon.spawn({ scope, node: topo.node(2) }, good.launch);
    expect((await again.exited).exitCode).toBe(2);
    expect(again.stderr).toContain(`config: the config file ${good.launch.configPath} is world-writable (mode 0666)`);
  });
});

describe('mTLS allowlist', () => {
  let pki: TestPki;
  let clients: Record<'orchestrator' | 'admin' | 'stranger', CertAndKey>;
  beforeAll(async () => {
    pki = await TestPki.create();
    clients = {
      orchestrator: await pki.issueClient('orchestrator', { cn: 'orchestrator' }),
      admin: await pki.issueClient('admin', { cn: 'ops', dns: ['admin.example.org'] }),
      stranger: await pki.issueClient('stranger', { cn: 'stranger', uri: ['spiffe://cluster/stranger'] }),
    };
  });
  afterAll(() => pki.destroy());

  it('admits the listed identity per service and refuses others with PERMISSION_DENIED naming them; health stays open', async () => {
    const port = 7443;
    const daemon = await Daemon.spawn({
      scope,
      node: topo.node(3),
      tcpPort: port,
      config: {
        insecure: false,
        tls: {
          cert: pki.server.cert,
          key: pki.server.key,
          ca: pki.ca.cert,
          allow: { Network: ['CN=orchestrator'], NetworkAdmin: ['DNS:admin.example.org'] },
        },
      },
    });
    await daemon.waitForLog((l) => l.event === 'ready', 30_000);
    const ca = await readFile(pki.ca.cert);
    const connect = async (who: CertAndKey) =>
      new RawApiClient(daemon.target, grpc.credentials.createSsl(ca, await readFile(who.key), await readFile(who.cert)), {
        'grpc.ssl_target_name_override': '127.0.0.1',
      });
    const orchestrator = await connect(clients.orchestrator);
    const admin = await connect(clients.admin);
    const stranger = await connect(clients.stranger);
    try {
      for (const c of [orchestrator, admin, stranger]) {
        const health = await c.call(HEALTH_CHECK, Buffer.alloc(0));
        expect(health.codeName, health.details).toBe('OK');
        expect(health.response).toEqual(SERVING);
      }
      const noCni = encodeCreate({ ipAddress: '198.19.3.2' });
      // Admitted to Network: the call reaches core (no CNI yet).
      expect((await orchestrator.call('Network/CreateInterface', noCni)).codeName).toBe('FAILED_PRECONDITION');
      const adminOnNetwork = await admin.call('Network/CreateInterface', noCni);
      expect(adminOnNetwork.codeName).toBe('PERMISSION_DENIED');
      expect(adminOnNetwork.details).toBe(
        "client CN=ops, DNS:admin.example.org may not call network.Network: it is not in tls.allow.Network; add one of its identities to tls.allow.Network in the daemon's config",
      );

      const peers = await admin.call('NetworkAdmin/ListPeers', Buffer.alloc(0));
      expect(peers.codeName).toBe('OK');
      expect(ListPeersResponse.decode(peers.response!).membership).toBe('static');
      const orchestratorOnAdmin = await orchestrator.call('NetworkAdmin/ListPeers', Buffer.alloc(0));
      expect(orchestratorOnAdmin.codeName).toBe('PERMISSION_DENIED');
      expect(orchestratorOnAdmin.details).toContain('client CN=orchestrator may not call network.NetworkAdmin');

      for (const method of ['Network/CreateInterface', 'NetworkAdmin/Inspect']) {
        const refused = await stranger.call(method, method.startsWith('Network/') ? noCni : Buffer.alloc(0));
        expect(refused.codeName).toBe('PERMISSION_DENIED');
        expect(refused.details).toContain('client CN=stranger, URI:spiffe://cluster/stranger may not call');
      }
      expect(
        daemon.logs.some((l) => l.event === 'refused' && l.code === 'PERMISSION_DENIED' && String(l.err).includes('CN=stranger')),
      ).toBe(true);
    } finally {
      for (const c of [orchestrator, admin, stranger]) c.close();
    }
    expect((await daemon.stop()).exitCode).toBe(0);
  });
});

describe('limits and deadlines', () => {
  it('refuses a request larger than limits.maxMessageBytes with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const daemon = await Daemon.start({ scope, node: topo.node(4), config: { limits: { maxMessageBytes: 4096 } } });
    const raw = new RawApiClient(daemon.target);
    try {
      const big = await raw.call('Network/CreateInterface', encodeCreate({ ipAddress: '198.19.4.2', ifname: 'x'.repeat(5000) }));
      expect(big.codeName).toBe('RESOURCE_EXHAUSTED');
      const small = await raw.call('Network/CreateInterface', encodeCreate({ ipAddress: '198.19.4.2' }));
      expect(small.codeName).toBe('FAILED_PRECONDITION'); // no CNI: it was read and answered
      expect((await raw.call(HEALTH_CHECK, Buffer.alloc(0))).response).toEqual(SERVING);
    } finally {
      raw.close();
    }
    expect((await daemon.stop()).exitCode).toBe(0);
  });

  it('a flood of 500 concurrent creates with maxInFlight 16: some RESOURCE_EXHAUSTED, the rest OK, SERVING throughout, the node consistent after', async () => {
    const daemon = await Daemon.start({
      scope,
      node: topo.node(5),
      config: { limits: { maxInFlight: 16 }, reconcileIntervalSeconds: 3600 },
    });
    await daemon.network().createContainerNetworkInterface({ ipAddress: '198.19.4.1', subNetwork: '198.19.4.0/22' });
    const raw = new RawApiClient(daemon.target);
    const health = new RawApiClient(daemon.target);
    let flooding = true;
    const healthAnswers: string[] = [];
    const watch = (async () => {
      while (flooding) {
        const h = await health.call(HEALTH_CHECK, Buffer.alloc(0), { timeoutMs: 5000 });
        healthAnswers.push(h.codeName === 'OK' && h.response?.equals(SERVING) ? 'SERVING' : `${h.codeName} ${h.details}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      const addresses = Array.from({ length: 500 }, (_, i) => `198.19.${4 + Math.floor((i + 2) / 256)}.${(i + 2) % 256}`);
      // Health checks go out in the middle of the flood too (every 25th call), on their own channel.
      const checks: Promise<void>[] = [];
      const outcomes = await Promise.all(
        addresses.map((ipAddress, i) => {
          if (i % 25 === 0) {
            checks.push(
              health
                .call(HEALTH_CHECK, Buffer.alloc(0), { timeoutMs: 5000 })
                .then((h) => void healthAnswers.push(h.response?.equals(SERVING) ? 'SERVING' : `${h.codeName} ${h.details}`)),
            );
          }
          return raw.call('Network/CreateInterface', encodeCreate({ ipAddress, kind: InterfaceKind.TAP }));
        }),
      );
      await Promise.all(checks);
      flooding = false;
      await watch;
      const byCode = new Map<string, number>();
      for (const o of outcomes) byCode.set(o.codeName, (byCode.get(o.codeName) ?? 0) + 1);
      console.log(
        `flood of 500 creates, maxInFlight 16: ${JSON.stringify(Object.fromEntries(byCode))}, ${healthAnswers.length} health checks during it`,
      );
      expect([...byCode.keys()].sort(), JSON.stringify(Object.fromEntries(byCode))).toEqual(['OK', 'RESOURCE_EXHAUSTED']);
      expect(byCode.get('OK')!).toBeGreaterThanOrEqual(16);
      expect(outcomes.find((o) => o.codeName === 'RESOURCE_EXHAUSTED')!.details).toContain('limits.maxInFlight');
      expect(healthAnswers.length).toBeGreaterThanOrEqual(20);
      expect(healthAnswers.filter((a) => a !== 'SERVING')).toEqual([]);

      // Every OK create exists (link and record), nothing else does.
      const { CreateInterfaceResponse } = await import('@nodenet/api');
      const created = outcomes
        .filter((o) => o.codeName === 'OK')
        .map((o) => CreateInterfaceResponse.decode(o.response!).interfaceName)
        .sort();
      expect(await instanceHandles(daemon.node.ns)).toEqual(created);
      expect(await recordedHandles(daemon)).toEqual(created);
    } finally {
      flooding = false;
      raw.close();
      health.close();
    }
  });

  it('a create whose deadline passes while its work is held up rolls back: nothing of it stays in the kernel or the state dir', async () => {
    const daemon = await Daemon.start({ scope, node: topo.node(4), config: { reconcileIntervalSeconds: 3600 } });
    const api = daemon.network();
    await api.createContainerNetworkInterface({ ipAddress: '198.19.8.1', subNetwork: '198.19.8.0/24' });
    // A create and delete first, so the daemon's long-lived nft process is running.
    const warm = await api.createInterface({ ipAddress: '198.19.8.3', ports: [8080] });
    await api.deleteInterface({ interfaceName: warm.interfaceName });
    const nft = await childrenNamed(daemon.pid!, 'nft');
    expect(nft.length, 'the daemon runs a long-lived nft').toBeGreaterThan(0);
    const handlesBefore = await instanceHandles(daemon.node.ns);
    const stateBefore = await daemon.readState();
    const rulesBefore = await nftRulesetText(daemon.node.ns);

    // Hold the packet filter: the create's rules step cannot finish before its deadline. The filter runs
    // again only once the daemon has seen the deadline pass (its log says so).
    for (const pid of nft) process.kill(pid, 'SIGSTOP');
    let outcome;
    try {
      outcome = await new RawApiClient(daemon.target).call(
        'Network/CreateInterface',
        encodeCreate({ ipAddress: '198.19.8.2', ports: [9090] }),
        { timeoutMs: 1000 },
      );
      await daemon.waitForLog((l) => l.event === 'cancelled' && l.method === 'CreateInterface');
    } finally {
      for (const pid of nft) process.kill(pid, 'SIGCONT');
    }
    expect(outcome.codeName).toBe('DEADLINE_EXCEEDED');
    const rolledBack = await daemon.waitForLog((l) => l.msg === 'create failed and was rolled back' && l.address === '198.19.8.2');
    expect(String(rolledBack.err)).toContain('CreateInterface was cancelled by its client (or its deadline passed)');

    expect(await instanceHandles(daemon.node.ns)).toEqual(handlesBefore);
    expect(await daemon.readState()).toEqual(stateBefore);
    expect(await nftRulesetText(daemon.node.ns)).toBe(rulesBefore);
    // Its address and port were freed: the same create now succeeds.
    const again = await api.createInterface({ ipAddress: '198.19.8.2', ports: [9090] });
    expect(await instanceHandles(daemon.node.ns)).toEqual([...handlesBefore, again.interfaceName].sort());
  });
});

/** The pids of `parent`'s children whose command is `name` (from /proc). */
async function childrenNamed(parent: number, name: string): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(st);
    if (m && m[1] === name && Number(m[2]) === parent) pids.push(Number(entry));
  }
  return pids;
}
