/**
 * OvsdbClient against a real ovsdb-server and ovs-vswitchd (a private OVS in a test namespace, userspace
 * datapath): a bridge with ports in one transaction (applied by ovs-vswitchd before it returns), changes
 * made by ovs-vsctl seen by the monitor, OVSDB's own errors reported with their details and nothing
 * changed, and the session surviving an ovsdb-server restart with its monitor replayed.
 */
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateOvs, TestScope } from '@nodenet/testkit';
import {
  OvsdbClient,
  OvsdbTransactionError,
  VswitchConfigWaiter,
  map,
  mapOf,
  namedUuid,
  set,
  setOf,
  type MonitorReplica,
  type Operation,
} from '../src/index.js';

/** A bridge with its internal port and `ports` more internal ports, as one list of operations. */
function bridgeOps(bridge: string, ports: readonly string[]): Operation[] {
  const names = [bridge, ...ports];
  return [
    ...names.flatMap((name, i): Operation[] => [
      {
        op: 'insert',
        table: 'Interface',
        row: { name, type: 'internal', external_ids: map({ 'nodenet-test': 'yes' }) },
        'uuid-name': `iface${i}`,
      },
      { op: 'insert', table: 'Port', row: { name, interfaces: namedUuid(`iface${i}`) }, 'uuid-name': `port${i}` },
    ]),
    {
      op: 'insert',
      table: 'Bridge',
      row: { name: bridge, datapath_type: 'netdev', fail_mode: 'secure', ports: set(names.map((_, i) => namedUuid(`port${i}`))) },
      'uuid-name': 'bridge',
    },
    { op: 'mutate', table: 'Open_vSwitch', where: [], mutations: [['bridges', 'insert', set([namedUuid('bridge')])]] },
    { op: 'comment', comment: `nodenet test: add ${bridge}` },
  ];
}

describe('OvsdbClient against ovsdb-server', () => {
  let scope: TestScope;
  let ovs: PrivateOvs;
  let client: OvsdbClient;
  let replica: MonitorReplica;
  let waiter: VswitchConfigWaiter;

  beforeAll(async () => {
    scope = await TestScope.create();
    const ns = await scope.createNamespace();
    ovs = await PrivateOvs.start(scope, ns);
    client = await OvsdbClient.connect({ remote: ovs.db, backoff: { initialMs: 20, maxMs: 200 } });
    scope.defer('close the OVSDB session', () => client.close());
    replica = await client.monitor({
      Bridge: { columns: ['name', 'ports', 'fail_mode', 'external_ids'] },
      Port: { columns: ['name', 'interfaces'] },
      Interface: { columns: ['name', 'ofport', 'type'] },
    });
    waiter = await VswitchConfigWaiter.start(client);
  });
  afterAll(() => scope?.cleanup());

  it('creates a bridge and its ports in one transaction, applied by ovs-vswitchd when it returns', async () => {
    await waiter.transactAndWait(bridgeOps('nnbr0', ['nnp1', 'nnp2']), 'add nnbr0');
    expect((await ovs.vsctl(['list-br'])).stdout.trim()).toBe('nnbr0');
    expect((await ovs.vsctl(['list-ports', 'nnbr0'])).stdout.trim().split('\n')).toEqual(['nnp1', 'nnp2']);
    // ovs-vswitchd had assigned port numbers already (that is what waiting means).
    const ofports = (await ovs.vsctl(['--columns=name,ofport', '--format=csv', '--no-headings', 'list', 'Interface'])).stdout;
    expect(ofports).not.toMatch(/,-1|,\[\]/);
    // The monitor saw the rows.
    await replica.waitFor(() => replica.find('Port', 'name', 'nnp2'), 5000, 'port nnp2 in the replica');
    expect(setOf(replica.find('Bridge', 'name', 'nnbr0')![1]['fail_mode'])).toEqual(['secure']);
  });

  it('sees changes ovs-vsctl makes (insert, modify, delete)', async () => {
    await ovs.vsctl(['add-port', 'nnbr0', 'nnp3', '--', 'set', 'Interface', 'nnp3', 'type=internal']);
    await replica.waitFor(() => replica.find('Interface', 'name', 'nnp3'), 5000, 'interface nnp3');
    await ovs.vsctl(['set', 'Bridge', 'nnbr0', 'external_ids:seen=by-monitor']);
    await replica.waitFor(
      () => mapOf(replica.find('Bridge', 'name', 'nnbr0')![1]['external_ids'])['seen'] === 'by-monitor',
      5000,
      'external_ids:seen',
    );
    await ovs.vsctl(['del-port', 'nnbr0', 'nnp3']);
    await replica.waitFor(() => replica.find('Port', 'name', 'nnp3') === undefined, 5000, 'port nnp3 gone');
  });

  it("reports OVSDB's error and details (a duplicate port name) and changes nothing", async () => {
    const before = (await ovs.vsctl(['list-ports', 'nnbr0'])).stdout;
    const error = await client.transact(bridgeOps('nnbr1', ['nnp1']), 'add nnbr1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OvsdbTransactionError);
    expect((error as OvsdbTransactionError).error).toBe('constraint violation');
    expect((error as Error).message).toContain(ovs.db);
    expect((error as Error).message).toMatch(/constraint violation.*nnp1/);
    expect((await ovs.vsctl(['list-br'])).stdout.trim()).toBe('nnbr0');
    expect((await ovs.vsctl(['list-ports', 'nnbr0'])).stdout).toBe(before);
  });

  it('a wait operation that does not hold within its timeout aborts the transaction', async () => {
    const error = await client
      .transact([
        {
          op: 'wait',
          table: 'Bridge',
          where: [['name', '==', 'nnbr0']],
          columns: ['fail_mode'],
          until: '==',
          rows: [{ fail_mode: 'standalone' }],
          timeout: 0,
        },
        { op: 'update', table: 'Bridge', where: [['name', '==', 'nnbr0']], row: { external_ids: map({ changed: 'yes' }) } },
      ])
      .catch((e: unknown) => e);
    expect((error as OvsdbTransactionError).error).toBe('timed out');
    expect((error as OvsdbTransactionError).operationIndex).toBe(0);
    expect((await ovs.vsctl(['get', 'Bridge', 'nnbr0', 'external_ids'])).stdout).not.toContain('changed');
  });

  it('reconnects after ovsdb-server restarts, replays its monitors, and says so', async () => {
    let resets = 0;
    replica.on('reset', () => resets++);
    const reconnected = once(client, 'reconnected');
    await ovs.stop('kill');
    await ovs.start();
    await reconnected;
    // 'reconnected' comes after the monitors were re-issued.
    expect(resets).toBe(1);
    // The replica was rebuilt from the server's rows and follows changes again.
    expect(replica.find('Bridge', 'name', 'nnbr0')).toBeDefined();
    await ovs.vsctl(['--no-wait', 'set', 'Bridge', 'nnbr0', 'external_ids:after=restart']);
    await replica.waitFor(
      () => mapOf(replica.find('Bridge', 'name', 'nnbr0')![1]['external_ids'])['after'] === 'restart',
      5000,
      'external_ids:after',
    );
    // Transactions work again, and wait for the restarted ovs-vswitchd.
    await waiter.transactAndWait(
      [
        {
          op: 'mutate',
          table: 'Bridge',
          where: [['name', '==', 'nnbr0']],
          mutations: [['external_ids', 'insert', map({ reasserted: 'yes' })]],
        },
      ],
      're-assert',
    );
    expect((await ovs.vsctl(['get', 'Bridge', 'nnbr0', 'external_ids:reasserted'])).stdout.trim()).toBe('yes');
  });

  it('fails a request with UNAVAILABLE naming the socket when ovsdb-server stays down', async () => {
    const down = await OvsdbClient.connect({ remote: `unix:${ovs.dir}/nothing-here.sock` }).catch((e: unknown) => e);
    expect((down as { code: string }).code).toBe('UNAVAILABLE');
    expect((down as Error).message).toContain(`${ovs.dir}/nothing-here.sock`);
  });
});
