/**
 * OvsSession against a real ovs-vswitchd (a private OVS in a test namespace) when the OpenFlow connection is
 * lost in the middle of a call: the session reaches the bridge through a relay (testkit's
 * FakeOpenFlowSwitch.relay) that cuts the connection at a chosen message. A bundle whose commit ovs-vswitchd
 * applied but whose reply was lost is repeated, and the bridge holds its flows once; a connection lost while
 * the call dialled it, or a read lost before its reply, is repeated; packet-outs lost once written are not
 * (UNAVAILABLE). And ovs-vswitchd itself drops every connection to a bridge whose datapath ID changes (its
 * other_config:hwaddr set): the next bundle goes through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { FakeOpenFlowSwitch, PrivateOvs, TestScope } from '@nodenet/testkit';
import { OpenFlowConnectionLostError } from '@nodenet/openvswitch';
import { deleteCookiesScript } from '../src/flows.js';
import { OvsSession } from '../src/ovs-session.js';

const BRIDGE = 'nnfl0';
const COOKIE = '0x6e6e0100000000f1';
const FLOWS = [
  `cookie=${COOKIE}, priority=200,ip,in_port=1,nw_src=198.19.9.1 actions=NORMAL`,
  `cookie=${COOKIE}, table=10, priority=0 actions=drop`,
];
const SCRIPT = [
  `add cookie=${COOKIE},table=0,priority=200,ip,in_port=1,nw_src=198.19.9.1,actions=NORMAL`,
  `add cookie=${COOKIE},table=10,priority=0,actions=drop`,
].join('\n');
const DELETE = deleteCookiesScript([BigInt(COOKIE)]);
const PACKET = 'in_port=LOCAL,packet=ffffffffffff020000000000080045,actions=output:1';

describe('OvsSession: the OpenFlow connection to ovs-vswitchd lost during a call', () => {
  let scope: TestScope;
  let ovs: PrivateOvs;
  let relay: FakeOpenFlowSwitch;
  let session: OvsSession;

  /** The bridge's flows as ovs-ofctl shows them (its own connection), sorted. */
  const flows = async () => (await ovs.flows(BRIDGE)).sort();

  beforeAll(async () => {
    scope = await TestScope.create();
    const host = await scope.createNamespace();
    ovs = await PrivateOvs.start(scope, host);
    await ovs.vsctl(['add-br', BRIDGE, '--', 'set', 'Bridge', BRIDGE, 'datapath_type=netdev', 'fail_mode=secure']);
    relay = await FakeOpenFlowSwitch.relay(`${ovs.dir}/${BRIDGE}.mgmt`, BRIDGE);
    scope.defer('close the relay', () => relay.close());
    session = new OvsSession({ db: ovs.db, runDir: relay.runDir, timeoutSeconds: 10 });
    scope.defer('close the session', () => session.close());
  });
  afterAll(() => scope?.cleanup());

  it('a bundle whose commit ovs-vswitchd applied, the reply lost: repeated on a new connection, the flows there once', async () => {
    relay.dropAt({ step: 'bundle-commit', when: 'after' });
    await session.bundle(BRIDGE, SCRIPT, 'add the flows');
    expect(relay.connections).toBe(2);
    expect(relay.stepsOn(1)).toContain('bundle-commit');
    expect(await flows()).toEqual([...FLOWS].sort());
    await session.bundle(BRIDGE, DELETE, 'delete the flows');
    expect(await flows()).toEqual([]);
  });

  it('a connection dialled within the call and lost before the switch answered: repeated', async () => {
    relay.dropAll();
    await waitFor(() => relay.connectionsOpen() === 0);
    relay.dropAt({ step: 'features' });
    const before = relay.connections;
    await session.bundle(BRIDGE, SCRIPT, 'add the flows');
    expect(relay.connections).toBe(before + 2);
    expect(await flows()).toEqual([...FLOWS].sort());
  });

  it('a read lost before its reply came: repeated, and answered', async () => {
    relay.dropAt({ step: 'multipart', when: 'after' });
    const read = await session.dumpFlows(BRIDGE, { cookie: BigInt(COOKIE), cookieMask: 0xffffffffffffffffn }, 'read the flows');
    expect(read.map((f) => f.priority).sort()).toEqual([0, 200]);
  });

  it('packet-outs lost once written: not repeated, UNAVAILABLE', async () => {
    const before = relay.connections;
    relay.dropAt({ step: 'packet-out' });
    const e = await session.packetOuts(BRIDGE, [PACKET], 'announce').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(OpenFlowConnectionLostError);
    expect(e).toBeInstanceOf(UnavailableError);
    expect(relay.connections).toBe(before);
  });

  it("ovs-vswitchd drops the bridge's connections when its datapath ID changes: the next bundle goes through", async () => {
    await session.dumpFlows(BRIDGE, {}, 'read the flows');
    const open = relay.connectionsOpen();
    expect(open).toBeGreaterThan(0);
    await ovs.vsctl(['set', 'Bridge', BRIDGE, 'other_config:hwaddr=02:00:00:00:f1:01']);
    // ovs-vsctl returns once ovs-vswitchd applied it: the relay sees the switch's side close.
    await waitFor(() => relay.connectionsOpen() === 0);
    await session.bundle(BRIDGE, DELETE, 'delete the flows');
    expect(await flows()).toEqual([]);
  });
});

/** Polls `ok`. */
async function waitFor(ok: () => boolean): Promise<void> {
  while (!ok()) await new Promise((resolve) => setTimeout(resolve, 10));
}
