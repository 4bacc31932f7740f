#!/usr/bin/env node
/**
 * Per-operation latency of Open vSwitch's tools against this package's long-lived clients, side by side
 * (reported, never asserted): N port adds through ovs-vsctl (one process each, waiting for ovs-vswitchd
 * as backend-ovs does, and with --no-wait) against OvsdbClient transactions (with and without waiting for
 * ovs-vswitchd); N flow adds through ovs-ofctl add-flow (a process each) against one OpenFlowConnection
 * (a flow-mod and barrier each), and the N flows as one bundle. Ports are veths made beforehand; every
 * variant starts from the same empty bridge. Needs root and a build (`npm run build`):
 *   node packages/openvswitch/scripts/measure.mjs [N]
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PrivateOvs, TestScope, ipBatch } from '@nodenet/testkit';
import { OpenFlowConnection, OvsdbClient, VswitchConfigWaiter, flowModOf, namedUuid, set } from '@nodenet/openvswitch';

const run = promisify(execFile);
const N = Number(process.argv[2] ?? 200);
const BRIDGE = 'nnbench0';

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))];
  return { p50: at(50), p99: at(99), total: xs.reduce((a, b) => a + b, 0) };
}
const fmt = (st) => `p50 ${st.p50.toFixed(2)} ms  p99 ${st.p99.toFixed(2)} ms  total ${st.total.toFixed(0)} ms`;

async function timed(n, op) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await op(i);
    out.push(performance.now() - t);
  }
  return out;
}

const scope = await TestScope.create();
try {
  const ns = await scope.createNamespace();
  const ovs = await PrivateOvs.start(scope, ns);
  await ovs.vsctl(['add-br', BRIDGE, '--', 'set', 'Bridge', BRIDGE, 'datapath_type=netdev', 'fail_mode=secure']);
  const names = Array.from({ length: N }, (_, i) => `nnb${i}`);
  await ipBatch(
    ns,
    names.flatMap((n) => [`link add ${n} type veth peer name ${n}p`, `link set ${n} up`, `link set ${n}p up`]),
  );

  const db = await OvsdbClient.connect({ remote: ovs.db });
  const waiter = await VswitchConfigWaiter.start(db);
  const vsctl = (args) => run('ovs-vsctl', [`--db=${ovs.db}`, '--timeout=10', ...args]);
  const clearPorts = () => vsctl(names.flatMap((n) => ['--', '--if-exists', 'del-port', BRIDGE, n]));
  const addPortOps = (name) => [
    { op: 'insert', table: 'Interface', row: { name }, 'uuid-name': 'i' },
    { op: 'insert', table: 'Port', row: { name, interfaces: namedUuid('i') }, 'uuid-name': 'p' },
    { op: 'mutate', table: 'Bridge', where: [['name', '==', BRIDGE]], mutations: [['ports', 'insert', set([namedUuid('p')])]] },
  ];

  const results = {};
  results['port add: ovs-vsctl (waits for ovs-vswitchd)'] = await timed(N, (i) => vsctl(['add-port', BRIDGE, names[i]]));
  await clearPorts();
  results['port add: OVSDB transact, waiting for ovs-vswitchd'] = await timed(N, (i) =>
    waiter.transactAndWait(addPortOps(names[i]), 'add port'),
  );
  await clearPorts();
  results['port add: ovs-vsctl --no-wait'] = await timed(N, (i) => vsctl(['--no-wait', 'add-port', BRIDGE, names[i]]));
  await clearPorts();
  results['port add: OVSDB transact, no wait'] = await timed(N, (i) => db.transact(addPortOps(names[i]), 'add port'));
  await clearPorts();

  const mgmt = `unix:${ovs.dir}/${BRIDGE}.mgmt`;
  const flow = (i) =>
    `cookie=0x6e6e01000000${(i + 1).toString(16).padStart(4, '0')},table=0,priority=200,ip,in_port=${i + 1},nw_src=198.19.${Math.floor(i / 250)}.${(i % 250) + 1},actions=goto_table:10`;
  const of = await OpenFlowConnection.connect({ target: mgmt });
  const delAll = () => run('ovs-ofctl', ['-O', 'OpenFlow14', 'del-flows', mgmt]);
  results['flow add: ovs-ofctl add-flow'] = await timed(N, (i) => run('ovs-ofctl', ['-O', 'OpenFlow14', 'add-flow', mgmt, flow(i)]));
  await delAll();
  results['flow add: OpenFlow connection (flow-mod + barrier)'] = await timed(N, (i) => of.flowMods([flowModOf('add', flow(i))]));
  await delAll();
  results[`flow add: ${N} flows in one bundle (one sample)`] = await timed(1, () =>
    of.bundle(names.map((_, i) => flowModOf('add', flow(i)))),
  );
  const count = (await of.dumpFlows()).length;
  if (count !== N) throw new Error(`expected ${N} flows after the bundle, found ${count}`);

  of.close();
  await waiter.cancel();
  db.close();
  console.log(`N = ${N} (sequential, one operation at a time; private OVS 3.1, userspace datapath)`);
  for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(56)} ${fmt(stats(v))}`);
} finally {
  await scope.cleanup();
}
