/**
 * OvsSession's OpenFlow calls when the connection to the bridge drops during the call (a fake switch that
 * drops it at a chosen message; a real ovs-vswitchd in flow-connection-loss.int.test.ts): a call that is
 * safe to repeat (a flow bundle, a read, or anything the switch cannot have acted on) is repeated once on a
 * new connection, also when that connection was made within the call; packet-outs the switch may have sent
 * are not repeated (UNAVAILABLE); a second loss is reported.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { FakeOpenFlowSwitch } from '@nodenet/testkit';
import { OpenFlowConnectionLostError } from '@nodenet/openvswitch';
import { OvsSession } from '../src/ovs-session.js';

const BRIDGE = 'nnbr0';
const SCRIPT = [
  'add cookie=0x6e6e0100000000a1,table=0,priority=200,ip,in_port=1,nw_src=198.19.7.1,actions=goto_table:10',
  'add cookie=0x6e6e0100000000a1,table=10,priority=0,actions=NORMAL',
].join('\n');
const PACKET = 'in_port=LOCAL,packet=ffffffffffff020000000000080045,actions=output:1';

describe('OvsSession: an OpenFlow connection lost during a call', () => {
  let sw: FakeOpenFlowSwitch;
  let session: OvsSession;

  beforeEach(async () => {
    sw = await FakeOpenFlowSwitch.start(BRIDGE);
    // The OVSDB remote is never dialled by flow calls.
    session = new OvsSession({ db: `unix:${sw.runDir}/no-db.sock`, runDir: sw.runDir, timeoutSeconds: 10 });
  });
  afterEach(async () => {
    session.close();
    await sw.close();
  });

  it.each(['hello', 'features'] as const)(
    'a bundle whose first connection, made within the call, drops (at %s): repeated on a new one, applied once',
    async (step) => {
      sw.dropAt({ step });
      await session.bundle(BRIDGE, SCRIPT, 'add the flows');
      expect([sw.connections, sw.bundlesCommitted, sw.flowModsApplied]).toEqual([2, 1, 2]);
    },
  );

  it('a bundle on an open connection that drops before its commit: repeated, applied once', async () => {
    await session.dumpFlows(BRIDGE, {}, 'read the flows');
    sw.dropAt({ step: 'bundle-open' });
    await session.bundle(BRIDGE, SCRIPT, 'add the flows');
    expect([sw.connections, sw.bundlesCommitted]).toEqual([2, 1]);
    expect(sw.stepsOn(2)).toEqual(['hello', 'features', 'bundle-open', 'bundle-add', 'bundle-add', 'barrier', 'bundle-commit']);
  });

  it('a bundle whose commit may have applied: repeated all the same (the same flows again leave the same flows)', async () => {
    sw.dropAt({ step: 'bundle-commit', when: 'after' });
    await session.bundle(BRIDGE, SCRIPT, 'add the flows');
    expect([sw.connections, sw.bundlesCommitted]).toEqual([2, 2]);
  });

  it('a read on a connection made within the call that drops: repeated', async () => {
    sw.dropAt({ step: 'multipart' });
    expect(await session.dumpFlows(BRIDGE, {}, 'read the flows')).toEqual([]);
    expect(sw.connections).toBe(2);
  });

  it('packet-outs lost before they were written: repeated, sent once', async () => {
    sw.dropAt({ step: 'hello' });
    await session.packetOuts(BRIDGE, [PACKET], 'announce');
    expect([sw.connections, sw.packetOutsSent]).toEqual([2, 1]);
  });

  it('packet-outs lost once written: not repeated, UNAVAILABLE saying they may have gone out', async () => {
    sw.dropAt({ step: 'packet-out', when: 'after' });
    const e = await session.packetOuts(BRIDGE, [PACKET], 'announce').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(OpenFlowConnectionLostError);
    expect((e as Error).message).toMatch(
      /^announce: .* was lost \(closed by ovs-vswitchd\) after the request was sent \(it may have been applied\)$/,
    );
    expect([sw.connections, sw.packetOutsSent]).toEqual([1, 1]);
  });

  it('lost again on the new connection: UNAVAILABLE (repeated once only)', async () => {
    sw.dropAt({ step: 'bundle-open' });
    sw.dropAt({ step: 'bundle-open', nth: 2 });
    const e = await session.bundle(BRIDGE, SCRIPT, 'add the flows').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(UnavailableError);
    expect((e as Error).message).toMatch(
      /^add the flows: the connection .* was lost \(closed by ovs-vswitchd\) before the request was applied$/,
    );
    expect([sw.connections, sw.bundlesCommitted]).toEqual([2, 0]);
    // And the next call gets a new connection and goes through.
    await session.bundle(BRIDGE, SCRIPT, 'add the flows');
    expect([sw.connections, sw.bundlesCommitted]).toEqual([3, 1]);
  });
});
