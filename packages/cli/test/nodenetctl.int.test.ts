/**
 * The built `nodenetctl` (bin/nodenetctl.js -> dist/main.js) against the real daemon in a node namespace:
 * the commands a README session uses, their output and exit codes; inspect and static peers (NetworkAdmin)
 * checked against the kernel. Needs `npm run build` (dist of server and cli).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, TestScope, Topology, ipv4AddressesOf, link, nsExec, routes, type NodeHost } from '@nodenet/testkit';

const BIN = fileURLToPath(new URL('../bin/nodenetctl.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const HANDLE_RE = /^nni-[0-9a-f]{8}$/;
const ISO_TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

interface CtlResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the bin in a fresh node process, as an operator would; output kept byte for byte (final newlines too). */
function runBin(args: readonly string[]): Promise<CtlResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout: 30_000, env: { ...process.env, NODENET_TARGET: '' } },
      (error, stdout, stderr) => {
        const code = error ? (error as { code?: unknown }).code : 0;
        if (typeof code !== 'number')
          reject(new Error(`nodenetctl ${args.join(' ')} did not exit normally: ${error ? error.message : 'no error'}; stderr: ${stderr}`));
        else resolve({ exitCode: code, stdout, stderr });
      },
    );
  });
}

describe('nodenetctl against the daemon', () => {
  let scope: TestScope;
  let topology: Topology;
  let node: NodeHost;
  let daemon: Daemon;
  const spawnMs: number[] = [];

  /** Runs the bin with --target set to the daemon's socket. */
  async function ctl(...args: string[]): Promise<CtlResult> {
    const started = performance.now();
    const r = await runBin(['--target', daemon.target, ...args]);
    spawnMs.push(performance.now() - started);
    return r;
  }

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` at the repository root first`);
    scope = await TestScope.create();
    topology = await Topology.create(scope, { nodes: 1, bridgeNfCall: false });
    node = topology.node(1);
    // No periodic reconcile during the run: the tests that break an interface on purpose see it missing
    // until they restart the daemon, whose restore pass repairs it (deterministically, not on a timer).
    daemon = await Daemon.start({ scope, node, config: { reconcileIntervalSeconds: 86_400, repairOnChange: false } });
  });

  afterAll(async () => {
    if (spawnMs.length > 0) {
      const sorted = [...spawnMs].sort((a, b) => a - b);
      console.log(
        `nodenetctl: ${sorted.length} runs, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms, ` +
          `min ${sorted[0]!.toFixed(0)} ms, max ${sorted[sorted.length - 1]!.toFixed(0)} ms per invocation (process start + call)`,
      );
    }
    await scope?.cleanup();
  });

  it('health: both services SERVING, exit 0; --json says serving', async () => {
    const human = await ctl('health');
    expect(human).toMatchObject({ exitCode: 0, stderr: '' });
    expect(human.stdout).toBe('""               SERVING\nnetwork.Network  SERVING\n');
    const json = await ctl('--json', 'health');
    expect(json.exitCode).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ serving: true, services: { '': 'SERVING', 'network.Network': 'SERVING' } });
  });

  it('create before the CNI exists: FAILED_PRECONDITION, exit 1', async () => {
    const r = await ctl('create', '--ip', '198.19.1.2');
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^nodenetctl: FAILED_PRECONDITION: .*CreateContainerNetworkInterface first/);
  });

  it('cni create prints the bridge name; the same again is idempotent', async () => {
    const first = await ctl('cni', 'create', '--gateway', '198.19.1.1', '--subnet', '198.19.1.0/24');
    expect(first).toMatchObject({ exitCode: 0, stdout: 'nodenet0\n', stderr: '' });
    expect(await ipv4AddressesOf(node.ns, 'nodenet0')).toEqual(['198.19.1.1/24']);
    const again = await ctl('cni', 'create', '--gateway', '198.19.1.1', '--subnet', '198.19.1.0/24');
    expect(again).toMatchObject({ exitCode: 0, stdout: 'nodenet0\n' });
    const other = await ctl('cni', 'create', '--gateway', '198.19.2.1', '--subnet', '198.19.2.0/24');
    expect(other.exitCode).toBe(1);
    expect(other.stderr).toMatch(/^nodenetctl: FAILED_PRECONDITION: /);
  });

  it('create --netns with a port and a tcp mapping, then delete', async () => {
    const instanceNs = await topology.createInstanceNamespace();
    const created = await ctl('create', '--ip', '198.19.1.2', '--port', '20001', '--map', '20002:80/tcp', '--netns', instanceNs, '--json');
    expect(created.stderr).toBe('');
    expect(created.exitCode).toBe(0);
    const response = JSON.parse(created.stdout) as Record<string, unknown>;
    expect(response).toMatchObject({ gateway: '198.19.1.1', prefixLength: 24, macAddress: '02:6e:c6:13:01:02' });
    const handle = String(response.interfaceName);
    expect(handle).toMatch(HANDLE_RE);
    expect(await ipv4AddressesOf(instanceNs, 'eth0')).toEqual(['198.19.1.2/24']);

    // The ports reached the daemon as asked: 20001 for both protocols, 20002 for TCP only.
    const samePort = await ctl('create', '--ip', '198.19.1.3', '--port', '20001');
    expect(samePort).toMatchObject({ exitCode: 1, stdout: '' });
    expect(samePort.stderr).toMatch(/^nodenetctl: ALREADY_EXISTS: .*20001/);
    expect(samePort.stderr.trim().split('\n')).toHaveLength(1);
    const tcpTaken = await ctl('create', '--ip', '198.19.1.3', '--map', '20002/tcp');
    expect(tcpTaken.stderr).toMatch(/^nodenetctl: ALREADY_EXISTS: /);
    const udpFree = await ctl('create', '--ip', '198.19.1.3', '--map', '20002/udp');
    expect(udpFree.stderr).toBe('');
    expect(udpFree.exitCode).toBe(0);
    const udpHandle = /^interface_name\s+(\S+)$/m.exec(udpFree.stdout)?.[1];
    expect(udpHandle).toMatch(HANDLE_RE);
    expect(udpFree.stdout).toMatch(/^mac_address\s+02:6e:c6:13:01:03$/m);

    const deleted = await ctl('delete', handle);
    expect(deleted).toMatchObject({ exitCode: 0, stdout: `deleted ${handle}\n`, stderr: '' });
    expect(await link(instanceNs, 'eth0')).toBeUndefined();
    // Idempotent: a handle the daemon issued whose interface is gone.
    expect(await ctl('delete', handle)).toMatchObject({ exitCode: 0 });
    expect(await ctl('delete', udpHandle!, '--json')).toMatchObject({ exitCode: 0, stdout: '{}\n' });
  });

  /** The cells of `inspect`'s interface row for `handle` (split on blanks: no cell has one). */
  function interfaceRow(inspectText: string, handle: string): string[] | undefined {
    return inspectText
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .find((cells) => cells[0] === handle);
  }

  /** The indented lines of a section of `inspect`'s human output (`interfaces (1)`, `last_reconcile`, ...). */
  function section(inspectText: string, titlePrefix: string): string[] {
    const lines = inspectText.split('\n');
    const start = lines.findIndex((l) => l.startsWith(titlePrefix));
    if (start < 0) return [];
    const body: string[] = [];
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith('  ')) break;
      body.push(line);
    }
    return body;
  }

  it('inspect after a create: the node, the interface present with its ports and namespace, the last reconcile; --json', async () => {
    const instanceNs = await topology.createInstanceNamespace();
    const created = await ctl('create', '--ip', '198.19.1.5', '--port', '20006', '--map', '20005:80/tcp', '--netns', instanceNs);
    expect(created.stderr).toBe('');
    const handle = /^interface_name\s+(\S+)$/m.exec(created.stdout)?.[1] ?? '';
    expect(handle).toMatch(HANDLE_RE);

    const human = await ctl('inspect');
    expect(human).toMatchObject({ exitCode: 0, stderr: '' });
    expect(human.stdout).toMatch(new RegExp(`^node_name {9}${node.name}$`, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^underlay_address {2}${node.address.replace(/\./g, '\\.')}$`, 'm'));
    expect(human.stdout).toMatch(/^backend {11}iproute2$/m);
    expect(human.stdout).toMatch(/^overlay_mode {6}vxlan$/m);
    expect(human.stdout).toMatch(/^cni {15}nodenet0 gateway 198\.19\.1\.1 subnet 198\.19\.1\.0\/24 mtu \d+ mac 02:6e:c6:13:01:01$/m);
    const row = interfaceRow(human.stdout, handle);
    expect(row).toBeDefined();
    const [, host, kind, address, ports, placement, state] = row!;
    expect({ host, kind, address, placement, state }).toEqual({
      host: handle.replace(/^nni-/, 'nnh-'),
      kind: 'veth',
      address: '198.19.1.5',
      placement: `${instanceNs}/eth0`,
      state: 'present',
    });
    expect(ports!.split(',').sort()).toEqual(['20005/tcp->80', '20006/tcp+udp->20006']);
    const reconcile = section(human.stdout, 'last_reconcile');
    expect(reconcile[0]).toMatch(/^ {2}started_at {3}\S+$/);
    expect(reconcile[0]!.trim().split(/\s+/)[1]).toMatch(ISO_TIME_RE);
    expect(reconcile[1]).toMatch(/^ {2}duration_ms {2}\d+$/);
    expect(reconcile.some((l) => /^ {2}repairs {6}\d+$/.test(l))).toBe(true);
    expect(reconcile.some((l) => /^ {2}errors {7}\d+$/.test(l))).toBe(true);

    const json = await ctl('--json', 'inspect');
    expect(json.exitCode).toBe(0);
    const parsed = JSON.parse(json.stdout) as {
      nodeName: string;
      cni: Record<string, unknown>;
      interfaces: Array<Record<string, unknown>>;
      lastReconcile: { startedAt: string; durationMs?: number };
    };
    expect(parsed).toMatchObject({
      nodeName: node.name,
      backend: 'iproute2',
      overlayMode: 'vxlan',
      cni: { name: 'nodenet0', subNetwork: '198.19.1.0/24' },
    });
    expect(parsed.interfaces.find((i) => i.interfaceName === handle)).toMatchObject({
      hostInterfaceName: handle.replace(/^nni-/, 'nnh-'),
      ipAddress: '198.19.1.5',
      netns: instanceNs,
      ifname: 'eth0',
      macAddress: '02:6e:c6:13:01:05',
      state: 'present',
    });
    expect(parsed.lastReconcile.startedAt).toMatch(ISO_TIME_RE);

    // Break it behind the daemon's back: deleting the instance end deletes the pair, so the bridge port goes.
    await nsExec(instanceNs, 'ip', ['link', 'del', 'eth0']);
    const broken = await ctl('inspect');
    expect(interfaceRow(broken.stdout, handle)?.[6]).toBe('missing');

    // The restore pass of a restarted daemon puts it back (its namespace still lives) and reports the repair.
    const before = parsed.lastReconcile.startedAt;
    daemon = await daemon.restart();
    const repaired = await ctl('inspect');
    expect(repaired.exitCode).toBe(0);
    expect(interfaceRow(repaired.stdout, handle)?.[6]).toBe('present');
    const afterRestart = section(repaired.stdout, 'last_reconcile');
    expect(afterRestart[0]!.trim().split(/\s+/)[1]! > before).toBe(true);
    const repairsRow = afterRestart.findIndex((l) => /^ {2}repairs {6}\d+$/.test(l));
    expect(Number(afterRestart[repairsRow]!.trim().split(/\s+/)[1])).toBeGreaterThanOrEqual(1);
    const listed = afterRestart.slice(repairsRow + 1).filter((l) => l.startsWith('    - '));
    expect(listed.some((l) => l.includes(handle) && l.includes('recreated'))).toBe(true);
    expect(await ipv4AddressesOf(instanceNs, 'eth0')).toEqual(['198.19.1.5/24']);

    expect(await ctl('delete', handle)).toMatchObject({ exitCode: 0 });
    expect(interfaceRow((await ctl('inspect')).stdout, handle)).toBeUndefined();
  });

  it('peers add / list / remove on a static-membership daemon, with the overlay route following', async () => {
    const peerRoute = async () => (await routes(node.ns)).find((r) => r.dst === '198.19.2.0/24');
    expect(await ctl('peers')).toEqual({ exitCode: 0, stdout: 'no peers (membership static)\n', stderr: '' });
    expect(await peerRoute()).toBeUndefined();

    const added = await ctl('peers', 'add', '--name', 'node-2', '--underlay', '198.18.0.2', '--subnet', '198.19.2.0/24');
    expect(added).toEqual({ exitCode: 0, stdout: 'added peer node-2\n', stderr: '' });
    const listed = await ctl('peers');
    expect(listed).toEqual({
      exitCode: 0,
      stdout: 'NAME    UNDERLAY    SUBNET         PROGRAMMED\nnode-2  198.18.0.2  198.19.2.0/24  yes\n',
      stderr: '',
    });
    expect(await peerRoute()).toBeDefined();
    const json = await ctl('peers', 'list', '--json');
    expect(JSON.parse(json.stdout)).toEqual({
      membership: 'static',
      peers: [{ peer: { name: 'node-2', underlayAddress: '198.18.0.2', subnet: '198.19.2.0/24' }, programmed: true }],
    });
    expect(section((await ctl('inspect')).stdout, 'peers (1)')).toEqual([
      '  NAME    UNDERLAY    SUBNET         PROGRAMMED',
      '  node-2  198.18.0.2  198.19.2.0/24  yes',
    ]);

    // The daemon judges peers: one overlapping this node's subnet is refused and nothing changes.
    const overlapping = await ctl('peers', 'add', '--name', 'node-3', '--underlay', '198.18.0.3', '--subnet', '198.19.1.0/24');
    expect(overlapping).toMatchObject({ exitCode: 1, stdout: '' });
    expect(overlapping.stderr).toMatch(/^nodenetctl: FAILED_PRECONDITION: .*198\.19\.1\.0\/24/);

    expect(await ctl('peers', 'remove', 'node-2')).toEqual({ exitCode: 0, stdout: 'removed peer node-2\n', stderr: '' });
    expect(await ctl('peers')).toMatchObject({ exitCode: 0, stdout: 'no peers (membership static)\n' });
    expect(await peerRoute()).toBeUndefined();
    // Idempotent: removing it again succeeds.
    expect(await ctl('--json', 'peers', 'remove', 'node-2')).toEqual({ exitCode: 0, stdout: '{}\n', stderr: '' });
  });

  it('errors: the gRPC code name on stderr, exit 1; usage errors exit 2 without a call', async () => {
    const denied = await ctl('delete', 'eth0');
    expect(denied).toMatchObject({ exitCode: 1, stdout: '' });
    expect(denied.stderr).toMatch(/^nodenetctl: PERMISSION_DENIED: .+\n$/);
    const invalid = await ctl('create', '--ip', '10.0.0.1');
    expect(invalid.exitCode).toBe(1);
    expect(invalid.stderr).toMatch(/^nodenetctl: INVALID_ARGUMENT: .*10\.0\.0\.1/);
    const usage = await ctl('create', '--ip', '198.19.1.4', '--map', '20003:x');
    expect(usage.exitCode).toBe(2);
    expect(usage.stderr).toMatch(/^nodenetctl: option '--map .*instance port 'x' is not a port number/);
  });

  it('health --wait: started right after the daemon is spawned, returns once it is SERVING', async () => {
    const otherNode = (await Topology.create(scope, { nodes: 1, bridgeNfCall: false })).node(1);
    const starting = await Daemon.spawn({ scope, node: otherNode });
    const r = await runBin(['--target', starting.target, '--timeout', '60000', 'health', '--wait']);
    expect(r).toEqual({ exitCode: 0, stdout: '""               SERVING\nnetwork.Network  SERVING\n', stderr: '' });
    await starting.stop();
  });

  it('an absent daemon: UNAVAILABLE, exit 1', async () => {
    const dir = await scope.createTempDir();
    const r = await runBin(['--target', `${dir}/absent.sock`, '--timeout', '5000', 'health']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^nodenetctl: UNAVAILABLE: .*absent\.sock/);
  });
});
