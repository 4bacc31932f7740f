// The CNI plugin driven by libcni (the library Podman and containerd use), on one node: ADD/CHECK/DEL with
// published ports reached from the world, drift reported by CHECK, address allocation without immediate
// reuse, chaining with the stock `tuning` plugin, results per cniVersion, GC and STATUS, CNI errors for bad
// conflists and a stopped daemon, and attachments surviving a daemon restart.
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, exec, nsExec, startEchoServer, type Daemon, type TestScope, type Topology } from '@nodenet/testkit';
import { startCniNode } from './fixture.js';
import { add, driver, execPlugin, nodenetConflist, pluginConfig, writeConflist, type CniResult } from './support.js';

const SUBNET = '198.19.1.0/24';
const GATEWAY = '198.19.1.1';

describe('nodenet CNI plugin through libcni', () => {
  let scope: TestScope;
  let topo: Topology;
  let daemon: Daemon;
  let dir: string;
  let cache: string;
  let conflist: string;
  let counter = 0;
  const nodeNs = () => topo.node(1).ns;
  const containerId = () => `ctr-${process.pid}-${++counter}`;
  const netnsPath = (ns: string) => `/run/netns/${ns}`;

  beforeAll(async () => {
    // The node has no CNI yet: the conflist's subnet and gateway create it on the first ADD.
    ({ scope, topo, daemon, dir, cache, conflist } = await startCniNode({
      plugin: { subnet: SUBNET, gateway: GATEWAY, dns: { nameservers: ['198.19.1.1'] } },
    }));
  });
  afterAll(() => scope?.cleanup());

  const addressOf = (r: CniResult) => r.ips[0]!.address.split('/')[0]!;

  it('ADD creates the node CNI from the conflist, attaches the container and publishes its port; CHECK passes; DEL removes it and is idempotent', async () => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const result = await add(nodeNs(), {
      conflist,
      id,
      netns: netnsPath(ns),
      cache,
      ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    });
    expect(result.cniVersion).toBe('1.0.0');
    expect(result.interfaces).toEqual([
      { name: 'eth0', mac: expect.stringMatching(/^02:6e:c6:13:01:[0-9a-f]{2}$/) as unknown, sandbox: netnsPath(ns) },
    ]);
    expect(result.ips).toEqual([{ address: expect.stringMatching(/^198\.19\.1\.\d+\/24$/) as unknown, gateway: GATEWAY, interface: 0 }]);
    expect(result.routes).toEqual([{ dst: '0.0.0.0/0', gw: GATEWAY }]);
    expect(result.dns).toEqual({ nameservers: ['198.19.1.1'] });
    const address = addressOf(result);
    expect(daemon.network()).toBeDefined();
    const inside = (await nsExec(ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout;
    expect(inside).toContain(`${address}/24`);

    // The published port: from the world to the node's address.
    const server = await startEchoServer(scope, ns, { protocol: 'tcp', port: 80 });
    const reply = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080 });
    expect(reply.ok, reply.error).toBe(true);
    expect(server.received.length).toBeGreaterThan(0);

    expect(
      await driver(nodeNs(), {
        op: 'check',
        conflist,
        id,
        netns: netnsPath(ns),
        cache,
        ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
      }),
    ).toEqual({ ok: true });

    // Drift: the address removed inside the container.
    await nsExec(ns, 'ip', ['addr', 'del', `${address}/24`, 'dev', 'eth0']);
    const drifted = await driver(nodeNs(), { op: 'check', conflist, id, netns: netnsPath(ns), cache });
    expect(drifted.ok).toBe(false);
    expect(drifted.error!.code).toBe(102);
    expect(drifted.error!.msg).toContain(`not ${address}/24`);

    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    expect((await nsExec(ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], { allowFailure: true })).exitCode).not.toBe(0);
    const again = await echo(topo.world.ns, { protocol: 'tcp', host: topo.node(1).address, port: 8080, timeoutMs: 1000 });
    expect(again.ok).toBe(false);
    // Idempotent and tolerant: DEL again, DEL of a container never attached, DEL without a netns (containerd's).
    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    expect(await driver(nodeNs(), { op: 'del', conflist, id: containerId(), netns: '', cache })).toEqual({ ok: true });
  });

  it('allocates distinct addresses and does not hand a released one out again at once', async () => {
    const attach = async () => {
      const ns = await topo.createInstanceNamespace();
      const id = containerId();
      const r = await add(nodeNs(), { conflist, id, netns: netnsPath(ns), cache });
      return { ns, id, address: addressOf(r) };
    };
    const a = await attach();
    const b = await attach();
    const c = await attach();
    expect(new Set([a.address, b.address, c.address]).size).toBe(3);
    expect(await driver(nodeNs(), { op: 'del', conflist, id: b.id, netns: netnsPath(b.ns), cache })).toEqual({ ok: true });
    const d = await attach();
    expect([a.address, b.address, c.address]).not.toContain(d.address);
    // Concurrent ADDs never share an address.
    const many = await Promise.all([attach(), attach(), attach(), attach()]);
    expect(new Set([a, c, d, ...many].map((x) => x.address)).size).toBe(7);
    for (const x of [a, c, d, ...many])
      expect(await driver(nodeNs(), { op: 'del', conflist, id: x.id, netns: netnsPath(x.ns), cache })).toEqual({ ok: true });
  });

  it('honours a static address (ips capability) and refuses one outside the subnet', async () => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const r = await add(nodeNs(), { conflist, id, netns: netnsPath(ns), cache, ips: ['198.19.1.200/24'] });
    expect(r.ips[0]!.address).toBe('198.19.1.200/24');
    const other = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: containerId(),
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: ['198.19.1.200/24'],
    });
    expect(other.error).toMatchObject({ code: 100, msg: expect.stringContaining('198.19.1.200 is already used') as unknown });
    const outside = await driver(nodeNs(), {
      op: 'add',
      conflist,
      id: containerId(),
      netns: netnsPath(await topo.createInstanceNamespace()),
      cache,
      ips: ['198.19.9.5/24'],
    });
    expect(outside.error).toMatchObject({ code: 7, msg: expect.stringContaining('198.19.9.5') as unknown });
    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
  });

  it("chains with the stock tuning plugin: its sysctl applies to nodenet's interface; CHECK and DEL run the chain", async () => {
    const chained = await writeConflist(
      dir,
      'tuning.conflist',
      nodenetConflist({
        name: 'nodenet-tuned',
        socket: daemon.cniSocket,
        chain: [{ type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } }],
      }),
    );
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const r = await add(nodeNs(), { conflist: chained, id, netns: netnsPath(ns), cache });
    expect(r.interfaces[0]).toMatchObject({ name: 'eth0', sandbox: netnsPath(ns) });
    expect((await nsExec(ns, 'cat', ['/proc/sys/net/ipv4/conf/eth0/arp_ignore'])).stdout.trim()).toBe('1');
    expect(await driver(nodeNs(), { op: 'check', conflist: chained, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    expect(await driver(nodeNs(), { op: 'del', conflist: chained, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
  });

  it.each(['0.3.1', '0.4.0', '1.0.0', '1.1.0'])('the result of an ADD is in the form of cniVersion %s', async (cniVersion) => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: netnsPath(ns), CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' };
    const r = await execPlugin(env, pluginConfig({ cniVersion, socket: daemon.cniSocket }));
    expect(r.exitCode, r.stdout).toBe(0);
    const result = r.json as CniResult;
    expect(result.cniVersion).toBe(cniVersion);
    const legacy = cniVersion.startsWith('0.');
    expect(result.ips[0]).toEqual({
      ...(legacy ? { version: '4' } : {}),
      address: expect.stringMatching(/^198\.19\.1\.\d+\/24$/) as unknown,
      gateway: GATEWAY,
      interface: 0,
    });
    expect(result.interfaces[0]).toEqual({
      name: 'eth0',
      mac: expect.any(String) as unknown,
      sandbox: netnsPath(ns),
      ...(cniVersion === '1.1.0' ? { mtu: 1450 } : {}),
    });
    expect((await execPlugin({ ...env, CNI_COMMAND: 'DEL' }, pluginConfig({ cniVersion, socket: daemon.cniSocket }))).exitCode).toBe(0);
  });

  it('the socket is mode 0600; a request that is not one JSON object gets a CNI error object (code 6)', async () => {
    expect((await stat(daemon.cniSocket)).mode & 0o777).toBe(0o600);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = createConnection({ path: daemon.cniSocket });
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
      socket.write('not json\n');
    });
    expect(JSON.parse(answer)).toMatchObject({ error: { code: 6, msg: expect.stringContaining('not one JSON object') as unknown } });
  });

  it('VERSION lists 0.3.1 to 1.1.0', async () => {
    const r = await execPlugin({ CNI_COMMAND: 'VERSION' }, '{}');
    expect(r.json).toMatchObject({ supportedVersions: ['0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('GC removes every attachment of the network not listed as valid; STATUS answers', async () => {
    const keep = { ns: await topo.createInstanceNamespace(), id: containerId() };
    const drop = { ns: await topo.createInstanceNamespace(), id: containerId() };
    for (const c of [keep, drop]) await add(nodeNs(), { conflist, id: c.id, netns: netnsPath(c.ns), cache });
    const gc = await execPlugin(
      { CNI_COMMAND: 'GC', CNI_PATH: '/usr/lib/cni' },
      pluginConfig({
        cniVersion: '1.1.0',
        socket: daemon.cniSocket,
        extra: { 'cni.dev/valid-attachments': [{ containerID: keep.id, ifname: 'eth0' }] },
      }),
    );
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect((await nsExec(drop.ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], { allowFailure: true })).exitCode).not.toBe(0);
    expect((await nsExec(keep.ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], { allowFailure: true })).exitCode).toBe(0);
    const status = await execPlugin(
      { CNI_COMMAND: 'STATUS', CNI_PATH: '/usr/lib/cni' },
      pluginConfig({ cniVersion: '1.1.0', socket: daemon.cniSocket }),
    );
    expect(status).toMatchObject({ exitCode: 0, stdout: '' });
    const old = await execPlugin(
      { CNI_COMMAND: 'STATUS', CNI_PATH: '/usr/lib/cni' },
      pluginConfig({ cniVersion: '1.0.0', socket: daemon.cniSocket }),
    );
    expect(old.json).toMatchObject({ code: 1, msg: expect.stringContaining('1.1.0') as unknown });
    expect(await driver(nodeNs(), { op: 'del', conflist, id: keep.id, netns: netnsPath(keep.ns), cache })).toEqual({ ok: true });
  });

  describe('bad conflists are CNI errors that say what to fix', () => {
    const cases: Array<[string, Record<string, unknown>, number, string]> = [
      ['an unknown key', { bridge: 'cni0' }, 7, "'bridge'"],
      ['a bad subnet', { subnet: '198.19.1.0/33', gateway: GATEWAY }, 7, 'subnet'],
      ['a gateway without subnet', { gateway: GATEWAY }, 7, "'subnet' is missing"],
      ['a subnet other than the node CNI', { subnet: '198.19.7.0/24', gateway: '198.19.7.1' }, 7, '198.19.7.0/24'],
      ['ipam', { ipam: { type: 'host-local' } }, 7, "'ipam'"],
      ['a socket nobody listens on', { socket: '/run/nodenet-absent/cni.sock' }, 11, 'try again later'],
    ];
    it.each(cases)('%s', async (_what, extra, code, mentioned) => {
      const bad = await writeConflist(dir, `bad-${++counter}.conflist`, nodenetConflist({ socket: daemon.cniSocket, extra }));
      const out = await driver(nodeNs(), {
        op: 'add',
        conflist: bad,
        id: containerId(),
        netns: netnsPath(await topo.createInstanceNamespace()),
        cache,
      });
      expect(out.ok).toBe(false);
      expect(out.error!.code).toBe(code);
      expect(out.error!.msg).toContain(mentioned);
    });

    it('a hostIP nodenet cannot honour (::1), a cniVersion it does not speak', async () => {
      const ns = netnsPath(await topo.createInstanceNamespace());
      const hostIp = await driver(nodeNs(), {
        op: 'add',
        conflist,
        id: containerId(),
        netns: ns,
        cache,
        ports: [{ hostPort: 8081, containerPort: 80, protocol: 'tcp', hostIP: '::1' }],
      });
      expect(hostIp.error).toMatchObject({ code: 7, msg: expect.stringContaining('hostIP') as unknown });
      expect(hostIp.error!.msg).toContain('::1 cannot publish a port');
      const r = await execPlugin(
        { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId(), CNI_NETNS: ns, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni' },
        pluginConfig({ cniVersion: '0.2.0', socket: daemon.cniSocket }),
      );
      expect(r.exitCode).toBe(1);
      expect(r.json).toMatchObject({ code: 1 });
    });
  });

  it('after the container namespace is gone and the daemon restarted (a reboot for the container), CHECK reports it gone, DEL succeeds, the address is free', async () => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const r = await add(nodeNs(), {
      conflist,
      id,
      netns: netnsPath(ns),
      cache,
      ports: [{ hostPort: 8095, containerPort: 80, protocol: 'tcp' }],
    });
    await daemon.stop();
    await exec('ip', ['netns', 'del', ns]); // the runtime's namespace is gone (its veth with it)
    daemon = await daemon.restart(); // the restore releases the instance whose namespace went away
    const gone = await driver(nodeNs(), { op: 'check', conflist, id, netns: netnsPath(ns), cache });
    expect(gone.error).toMatchObject({ code: 102, msg: expect.stringContaining('gone from the node') as unknown });
    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    // Its static address can be taken again, and its port published again.
    const next = { id: containerId(), ns: netnsPath(await topo.createInstanceNamespace()) };
    const again = await add(nodeNs(), {
      conflist,
      id: next.id,
      netns: next.ns,
      cache,
      ips: [r.ips[0]!.address],
      ports: [{ hostPort: 8095, containerPort: 80, protocol: 'tcp' }],
    });
    expect(again.ips[0]!.address).toBe(r.ips[0]!.address);
    expect(await driver(nodeNs(), { op: 'del', conflist, id: next.id, netns: next.ns, cache })).toEqual({ ok: true });
  });

  it('attachments survive a daemon crash and restart: CHECK and DEL work after it; a dead daemon is code 11 (STATUS: 50)', async () => {
    const ns = await topo.createInstanceNamespace();
    const id = containerId();
    const r = await add(nodeNs(), {
      conflist,
      id,
      netns: netnsPath(ns),
      cache,
      ports: [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }],
    });
    await daemon.kill(); // SIGKILL: its socket file stays behind, stale
    const down = await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache });
    expect(down.error).toMatchObject({ code: 11, msg: expect.stringContaining('try again later') as unknown });
    const status = await execPlugin(
      { CNI_COMMAND: 'STATUS', CNI_PATH: '/usr/lib/cni' },
      pluginConfig({ cniVersion: '1.1.0', socket: daemon.cniSocket }),
    );
    expect(status.json).toMatchObject({ code: 50 });
    daemon = await daemon.restart();
    expect(
      await driver(nodeNs(), {
        op: 'check',
        conflist,
        id,
        netns: netnsPath(ns),
        cache,
        ports: [{ hostPort: 8090, containerPort: 80, protocol: 'tcp' }],
      }),
    ).toEqual({ ok: true });
    const state = await daemon.readState();
    expect(Object.keys(state).filter((k) => k.startsWith('cni-attachments/'))).toHaveLength(1);
    expect(await driver(nodeNs(), { op: 'del', conflist, id, netns: netnsPath(ns), cache })).toEqual({ ok: true });
    expect((await nsExec(ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'], { allowFailure: true })).exitCode).not.toBe(0);
    expect(
      (JSON.parse(await readFile(`${daemon.stateDir}/cni-allocation.json`, 'utf8')) as { record: { last: string } }).record.last,
    ).toMatch(/^198\.19\.1\./);
    expect(addressOf(r)).toMatch(/^198\.19\.1\./);
  });

  it('an attachment record that does not parse stops the start naming the file; the node is served again once it is moved away', async () => {
    await daemon.stop();
    const bad = `${daemon.stateDir}/cni-attachments/${'0'.repeat(40)}.json`;
    await writeFile(bad, '{"version":1,"kind":"cni-attachment","rec');
    await expect(daemon.restart()).rejects.toThrow(`state file ${bad} is unreadable`);
    await rm(bad);
    daemon = await daemon.restart();
    expect(await driver(nodeNs(), { op: 'del', conflist, id: containerId(), netns: '', cache })).toEqual({ ok: true });
  });
});
