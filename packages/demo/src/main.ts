/**
 * nodenet in one command (`npm run demo`): builds a cluster of nodes in network namespaces on this
 * machine (one nodenetd per node), creates instances through the gRPC API, prints who reaches whom (ping
 * latency, TCP with the source address the server saw), shows egress masquerading and a published port
 * reached from the world, and removes everything again. Nothing outside its own namespaces is touched.
 *
 *   node packages/demo/dist/main.js [--backend iproute2|ovs] [--overlay vxlan|host-gw] [--membership static|etcd] [--nodes N]
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { echo, serverMainPath, startEchoServer } from '@nodenet/testkit';
import {
  ClusterFixture,
  privateOvsOf,
  probePairs,
  type ClusterInstance,
  type MembershipType,
  type OverlayMode,
  type PairResult,
} from '@nodenet/conformance';

const USAGE = `usage: npm run demo -- [--backend iproute2|ovs] [--overlay vxlan|host-gw] [--membership static|etcd] [--nodes N]

Builds an N-node nodenet cluster (default 3) in network namespaces on this machine, creates two instances
per node through the gRPC API, prints the connectivity matrix, shows egress and a published port reached
from the world, and cleans up. Needs root (network namespaces) and a build (npm run build).

  --backend     the daemon's dataplane backend (default iproute2)
  --overlay     vxlan (default) or host-gw
  --membership  static (default: peers in each daemon's config) or etcd (a private etcd on the underlay)
  --nodes       2..9 (default 3)`;

interface DemoOptions {
  readonly backend: string;
  readonly overlay: OverlayMode;
  readonly membership: MembershipType;
  readonly nodes: number;
}

class UsageError extends Error {}

function parseOptions(argv: readonly string[]): DemoOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        backend: { type: 'string', default: 'iproute2' },
        overlay: { type: 'string', default: 'vxlan' },
        membership: { type: 'string', default: 'static' },
        nodes: { type: 'string', default: '3' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (!/^[a-z0-9-]+$/.test(v.backend)) throw new UsageError(`--backend: '${v.backend}' is not a backend name (e.g. iproute2, ovs)`);
  if (v.overlay !== 'vxlan' && v.overlay !== 'host-gw') throw new UsageError(`--overlay must be vxlan or host-gw (got '${v.overlay}')`);
  if (v.membership !== 'static' && v.membership !== 'etcd')
    throw new UsageError(`--membership must be static or etcd (got '${v.membership}')`);
  const nodes = Number(v.nodes);
  if (!/^\d+$/.test(v.nodes) || nodes < 2 || nodes > 9) throw new UsageError(`--nodes must be 2..9 (got '${v.nodes}')`);
  return { backend: v.backend, overlay: v.overlay, membership: v.membership, nodes };
}

// ---------------------------------------------------------------------------------------------------
// Output

const started = performance.now();
function elapsed(): string {
  return `${((performance.now() - started) / 1000).toFixed(1)}s`;
}
function step(text: string): void {
  console.log(`\n[${elapsed()}] ${text}`);
}
function line(text = ''): void {
  console.log(`  ${text}`);
}

function table(rows: readonly (readonly string[])[]): void {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  for (const r of rows)
    line(
      r
        .map((cell, col) => cell.padEnd(widths[col]!))
        .join('  ')
        .trimEnd(),
    );
}

function label(i: ClusterInstance, all: readonly ClusterInstance[]): string {
  const onNode = all.filter((x) => x.node === i.node);
  return `${i.node.name}/${String.fromCharCode(97 + onNode.indexOf(i))}`;
}

/** The cell of a pair: latency when ping and TCP worked and the server saw the sender's own address. */
function cell(r: PairResult | undefined): string {
  if (!r) return '-';
  const problems: string[] = [];
  if (!r.ping.ok) problems.push('no ping');
  if (!r.tcp.ok) problems.push('no tcp');
  else if (r.tcp.seenSource !== r.from.address) problems.push(`src ${r.tcp.seenSource}`);
  if (problems.length > 0) return `FAIL(${problems.join(',')})`;
  return r.ping.avgRttMs !== undefined ? `${r.ping.avgRttMs.toFixed(3)}ms` : 'ok';
}

/**
 * ovs: the flows of a node's CNI bridge that send a peer's subnet into the tunnel, shortened to
 * `SUBNET -> tunnel to UNDERLAY (cookie C)` (the kernel route only leads into the bridge).
 */
async function tunnelFlows(ns: string): Promise<string[]> {
  const ovs = privateOvsOf(ns);
  if (!ovs) return [];
  const out: string[] = [];
  for (const f of await ovs.flows('nodenet0')) {
    const dst = /nw_dst=([\d./]+)/.exec(f)?.[1];
    const tunnel = /set_field:([\d.]+)->tun_dst/.exec(f)?.[1];
    const cookie = /cookie=(0x[0-9a-f]+)/.exec(f)?.[1];
    // The flow for instance traffic (any in_port); its twin for the node's own (in_port=LOCAL) says the same.
    if (dst && tunnel && !f.includes('in_port=')) out.push(`${dst} -> tunnel to ${tunnel} (cookie ${cookie ?? '-'})`);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------------

async function demo(options: DemoOptions): Promise<boolean> {
  let ok = true;
  const check = (good: boolean, text: string): void => {
    ok &&= good;
    line(`${good ? 'ok  ' : 'FAIL'} ${text}`);
  };

  step(
    `Building a ${options.nodes}-node cluster: backend ${options.backend}, overlay ${options.overlay}, membership ${options.membership}`,
  );
  line('each node is a network namespace on a shared underlay (198.18.0.0/24) running its own nodenetd;');
  line('a "world" namespace (198.18.0.100, plus 203.0.113.10 for the internet) stands for everything else.');
  // The daemons' own default reconcile interval: the demo runs them as a user would.
  const c = await ClusterFixture.start({
    backend: options.backend,
    overlay: options.overlay,
    membership: options.membership,
    nodes: options.nodes,
    reconcileIntervalSeconds: 30,
  });
  try {
    if (c.etcd) line(`etcd: ${c.etcd.url} (its own namespace on the underlay)`);
    line('CreateContainerNetworkInterface on every node (gRPC):');
    table([
      ['node', 'underlay', 'gateway/subnet', 'daemon'],
      ...c.nodes.map((n) => [n.name, n.address, `${n.gateway} in ${n.subnet}`, n.daemon.target]),
    ]);

    const ovsFlows = options.backend === 'ovs' && options.overlay === 'vxlan';
    step(
      `Peers and overlay routes (NetworkAdmin.ListPeers, ip route show proto 78${ovsFlows ? ', and the OpenFlow rules that tunnel them: ovs-ofctl dump-flows nodenet0' : ''})`,
    );
    for (const n of c.nodes) {
      const [peers, routes, tunnelled] = await Promise.all([
        n.admin.listPeers(),
        n.overlayRoutes(),
        ovsFlows ? tunnelFlows(n.ns) : Promise.resolve([]),
      ]);
      const routed = routes.map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.dev ?? '-'}`);
      line(
        `${n.name}: ${peers.membership} peers ${peers.peers.map((p) => `${p.peer?.name}${p.programmed ? '' : ' (not programmed)'}`).join(', ') || 'none'}`,
      );
      for (const r of routed) line(`    ${r}`);
      for (const f of tunnelled) line(`    flow: ${f}`);
    }

    step('Creating 2 instances per node (CreateInterface with the netns extension: the daemon moves and configures eth0)');
    const instances = (await Promise.all(c.nodes.map((n) => Promise.all([n.addInstance(), n.addInstance()])))).flat();
    table([
      ['instance', 'address', 'handle', 'host side', 'mtu'],
      ...instances.map((i) => [
        label(i, instances),
        i.address,
        i.handle,
        i.response.hostInterfaceName ?? '-',
        String(i.response.mtu ?? '-'),
      ]),
    ]);

    step('Who reaches whom: ping (average rtt) and TCP from every instance to every other; the TCP server checks the source address');
    const pairs = instances.flatMap((a) => instances.filter((b) => b !== a).map((b) => [a, b] as const));
    const results = await probePairs(c.scope, pairs, { pingCount: 3 });
    const byPair = new Map(results.map((r) => [`${r.from.address}>${r.to.address}`, r]));
    table([
      ['from \\ to', ...instances.map((i) => label(i, instances))],
      ...instances.map((a) => [label(a, instances), ...instances.map((b) => cell(byPair.get(`${a.address}>${b.address}`)))]),
    ]);
    const failed = results.filter((r) => cell(r).startsWith('FAIL'));
    const crossNode = results.filter((r) => r.from.node !== r.to.node);
    check(
      failed.length === 0,
      `${results.length - failed.length}/${results.length} pairs reach each other (${crossNode.length} of them across nodes), every TCP server saw the client's own address`,
    );

    step('Egress: an instance of every node talks to the internet (203.0.113.10 in the world): masqueraded as its node');
    const port = 7100;
    const atWorld = await startEchoServer(c.scope, c.world.ns, { protocol: 'tcp', port });
    for (const n of c.nodes) {
      const inst = instances.find((i) => i.node === n)!;
      const r = await echo(inst.ns, { protocol: 'tcp', host: c.world.internetAddress, port });
      const seen = atWorld.receivedPayload(r.payload)[0]?.peerAddress;
      check(
        r.ok && seen === n.address,
        `${label(inst, instances)} (${inst.address}) -> ${c.world.internetAddress}:${port}: the world saw ${seen ?? 'nothing'} (${n.name}'s underlay address)`,
      );
    }

    step("A published port: an instance on node-1 publishes 8080; the world connects to node-1's underlay address");
    const n1 = c.node(1);
    const web = await n1.addInstance({ ports: [8080] });
    const server = await startEchoServer(c.scope, web.ns, { protocol: 'tcp', port: 8080 });
    const r = await echo(c.world.ns, { protocol: 'tcp', host: n1.address, port: 8080 });
    const seen = server.receivedPayload(r.payload)[0]?.peerAddress;
    check(
      r.ok && seen === c.world.address,
      `world (${c.world.address}) -> ${n1.address}:8080 reached ${web.address}:8080 (${web.handle}); the instance saw ${seen ?? 'nothing'}`,
    );
  } finally {
    step('Cleaning up (daemons stopped, namespaces and temp dirs removed)');
    await c.close();
  }
  return ok;
}

async function main(): Promise<number> {
  let options: DemoOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`nodenet demo: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (options === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    console.error('nodenet demo: needs root (it creates network namespaces): run it as root, e.g. sudo npm run demo');
    return 2;
  }
  if (!existsSync(serverMainPath)) {
    console.error(`nodenet demo: the daemon is not built (${serverMainPath} is missing): run npm run build first`);
    return 2;
  }
  const ok = await demo(options);
  step(ok ? 'Done: everything worked.' : 'Done, with failures (see FAIL above).');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    // The message says what failed; the stack only helps when debugging the demo itself.
    const detail = e instanceof Error ? (process.env.NODENET_DEMO_DEBUG ? (e.stack ?? e.message) : e.message) : String(e);
    console.error(`nodenet demo failed: ${detail}`);
    process.exit(1);
  },
);
