/**
 * The in-process followers of Open vSwitch (ovs-change-sources.ts) against a real private OVS: flows of
 * nodenet's deleted by cookie, modified in place or replaced by others are reported per class (re-adding them
 * as they were is not), a deleted or
 * retagged Interface row is reported, and both followers report getting OVS back after it restarted (a
 * bridge appearing that was not expected yet is no reconnection).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateOvs, TestScope } from '@nodenet/testkit';
import { silentLogger } from '@nodenet/core';
import { OpenFlowConnection, flowModOf } from '@nodenet/openvswitch';
import { FlowTableWatch, OvsdbChangeSource, type ChangeSink } from '../src/ovs-change-sources.js';

const BRIDGE = 'nodenet0';
const INSTANCE = '0x6e6e01000000a1b2';
const PEER = '0x6e6e0300c6120002';

/** A sink that records what it is told. */
function recorder(): ChangeSink & { changes: string[]; reconnects: number; waitFor(p: () => boolean, what: string): Promise<void> } {
  const r = {
    changes: [] as string[],
    reconnects: 0,
    logger: silentLogger,
    change: (c: string) => void r.changes.push(c),
    reconnected: () => void r.reconnects++,
    async waitFor(p: () => boolean, what: string) {
      const deadline = Date.now() + 15_000;
      while (!p()) {
        if (Date.now() > deadline) throw new Error(`not seen within 15 s: ${what} (changes: ${JSON.stringify(r.changes)})`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
  return r;
}

describe('OVS change sources against a private Open vSwitch', () => {
  let scope: TestScope;
  let ovs: PrivateOvs;
  let of: OpenFlowConnection;
  const flows = [
    `cookie=${INSTANCE},table=0,priority=200,ip,in_port=1,nw_src=198.19.7.1,actions=drop`,
    `cookie=${INSTANCE},table=0,priority=200,arp,in_port=1,arp_spa=198.19.7.1,actions=drop`,
    `cookie=${PEER},table=10,priority=100,ip,nw_dst=198.19.8.0/24,actions=drop`,
  ];

  beforeAll(async () => {
    scope = await TestScope.create();
    ovs = await PrivateOvs.start(scope, await scope.createNamespace());
    await ovs.vsctl(['add-br', BRIDGE, '--', 'set', 'Bridge', BRIDGE, 'datapath_type=netdev', 'fail_mode=secure']);
    await ovs.vsctl([
      'add-port',
      BRIDGE,
      'nnh-0000a1b2',
      '--',
      'set',
      'Interface',
      'nnh-0000a1b2',
      'type=internal',
      'external_ids:nodenet-owner=nodenet:nni-0000a1b2',
    ]);
    of = await OpenFlowConnection.connect({ target: `unix:${ovs.dir}/${BRIDGE}.mgmt` });
    scope.defer('close the OpenFlow connection', () => of.close());
    await of.bundle(flows.map((f) => flowModOf('add', f)));
  });
  afterAll(() => scope?.cleanup());

  it('the flow table: deletions by cookie and modifications are reported per class; flows re-added as they were are not', async () => {
    const sink = recorder();
    const watch = new FlowTableWatch(BRIDGE, `unix:${ovs.dir}/${BRIDGE}.mgmt`, { pollMs: 20 });
    scope.defer('stop the flow watch', () => watch.stop());
    watch.start(sink);
    await sink.waitFor(() => watch.pollCount >= 3, 'three polls');
    // Re-asserting the peer's flows (delete by cookie, add, one bundle) as the overlay does on every pass.
    await of.bundle([flowModOf('delete', `cookie=${PEER}/-1`), flowModOf('add', flows[2]!)]);
    const polls = watch.pollCount;
    await sink.waitFor(() => watch.pollCount >= polls + 3, 'three more polls');
    expect(sink.changes).toEqual([]);
    // Modified in place (ovs-ofctl mod-flows): as many flows as before, other actions.
    await ovs.ofctl('mod-flows', BRIDGE, [`table=10,cookie=${PEER}/-1,actions=output:1`]);
    await sink.waitFor(() => sink.changes.length > 0, 'the peer flow modification');
    expect(sink.changes).toEqual([`1 peer flow on ${BRIDGE} changed in place`]);
    // Replaced by a flow of another match, with the same cookie (one bundle: the count never drops).
    await of.bundle([
      flowModOf('delete', `cookie=${INSTANCE}/-1,arp`),
      flowModOf('add', `cookie=${INSTANCE},table=0,priority=200,arp,in_port=1,arp_spa=198.19.7.9,actions=drop`),
    ]);
    await sink.waitFor(() => sink.changes.length > 1, 'the instance flow replaced');
    expect(sink.changes[1]).toBe(`1 instance flow on ${BRIDGE} changed in place`);
    await ovs.ofctl('del-flows', BRIDGE, [`cookie=${PEER}/-1`]);
    await sink.waitFor(() => sink.changes.length > 2, 'the peer flow deletion');
    expect(sink.changes[2]).toBe(`1 peer flow on ${BRIDGE} deleted`);
    await ovs.ofctl('del-flows', BRIDGE, [`cookie=${INSTANCE}/-1`]);
    await sink.waitFor(() => sink.changes.length > 3, 'the instance flow deletion');
    expect(sink.changes[3]).toBe(`2 instance flows on ${BRIDGE} deleted`);
    // Each change was reported once (the fingerprints see no deletion the counts already reported).
    const polls2 = watch.pollCount;
    await sink.waitFor(() => watch.pollCount >= polls2 + 5, 'five more polls');
    expect(sink.changes).toHaveLength(4);
    expect(sink.reconnects).toBe(0);
    // ovs-vswitchd restarted (its flows gone): the watch loses the switch and says when it is back.
    await ovs.stopSwitch('exit');
    await ovs.startSwitch();
    await sink.waitFor(() => sink.reconnects === 1, 'the flow table back');
    await watch.stop();
  });

  it('a bridge that was not to be there yet (a node without its CNI) appearing is no reconnection; one that was is', async () => {
    const bridge = 'nodenet9';
    let expected = false;
    const sink = recorder();
    const watch = new FlowTableWatch(bridge, `unix:${ovs.dir}/${bridge}.mgmt`, { pollMs: 20, bridgeExpected: () => expected });
    scope.defer('stop the second flow watch', () => watch.stop());
    watch.start(sink);
    await sink.waitFor(() => watch.pollCount >= 3, 'three failed polls');
    // nodenet creates its CNI: the bridge is expected from now on, and appears.
    expected = true;
    await ovs.vsctl(['add-br', bridge, '--', 'set', 'Bridge', bridge, 'datapath_type=netdev', 'fail_mode=secure']);
    scope.defer('delete the second bridge', async () => void (await ovs.vsctl(['--if-exists', 'del-br', bridge])));
    const polls = watch.pollCount;
    await sink.waitFor(() => watch.pollCount >= polls + 5, 'five more polls');
    expect(sink.reconnects).toBe(0);
    // Gone while expected (deleted behind nodenet's back), then back: a reconnection.
    await ovs.vsctl(['del-br', bridge]);
    const gone = watch.pollCount;
    await sink.waitFor(() => watch.pollCount >= gone + 3, 'polls without the bridge');
    await ovs.vsctl(['add-br', bridge, '--', 'set', 'Bridge', bridge, 'datapath_type=netdev', 'fail_mode=secure']);
    await sink.waitFor(() => sink.reconnects === 1, 'the bridge back');
    await watch.stop();
  });

  it('OVSDB: an owned Interface row deleted or its tags removed is reported; inserts are not; a restart is', async () => {
    const sink = recorder();
    const source = new OvsdbChangeSource(ovs.db);
    scope.defer('stop the OVSDB source', () => source.stop());
    source.start(sink);
    await sink.waitFor(() => source.rows !== undefined, 'the monitor');
    await ovs.vsctl(['add-port', BRIDGE, 'nnh-0000c3d4', '--', 'set', 'Interface', 'nnh-0000c3d4', 'type=internal']);
    await ovs.vsctl(['remove', 'Interface', 'nnh-0000a1b2', 'external_ids', 'nodenet-owner']);
    await sink.waitFor(() => sink.changes.length > 0, 'the tag removal');
    expect(sink.changes).toEqual(['Interface nnh-0000a1b2: external_ids nodenet-owner removed or changed']);
    await ovs.vsctl(['del-port', BRIDGE, 'nnh-0000c3d4']);
    await sink.waitFor(() => sink.changes.some((c) => c.includes('deleted')), 'the row deletion');
    expect(sink.changes).toContain('Interface nnh-0000c3d4 deleted from OVSDB');
    await ovs.stop('exit');
    await ovs.start();
    await sink.waitFor(() => sink.reconnects === 1, 'the session back');
    await source.stop();
  });
});
