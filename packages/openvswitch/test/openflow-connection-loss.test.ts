/**
 * OpenFlowConnection when the connection drops in the middle of a call (against a fake switch that drops
 * it at a chosen message; the real switch is in openflow.int.test.ts): the call fails with
 * OpenFlowConnectionLostError, which says whether the switch may have acted on it (nothing that changes
 * the switch written yet, or a bundle not committed: no; flow-mods, packet-outs or a bundle commit written:
 * yes), and the next call dials again.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { FakeOpenFlowSwitch, type FakeOpenFlowDrop } from '@nodenet/testkit';
import { OpenFlowConnection, OpenFlowConnectionLostError, flowModOf, packetOutOf, type FlowMod } from '../src/index.js';

const MODS: FlowMod[] = [
  flowModOf('add', 'cookie=0x6e6e0100000000a1,table=0,priority=200,ip,in_port=1,nw_src=198.19.7.1,actions=goto_table:10'),
  flowModOf('add', 'cookie=0x6e6e0100000000a1,table=10,priority=0,actions=NORMAL'),
];
const PACKET = packetOutOf('in_port=LOCAL,packet=ffffffffffff020000000000080045,actions=output:1');

/** The rejection of `p`, which must be an OpenFlowConnectionLostError. */
async function lost(p: Promise<unknown>): Promise<OpenFlowConnectionLostError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(OpenFlowConnectionLostError);
  expect(e).toBeInstanceOf(UnavailableError);
  return e as OpenFlowConnectionLostError;
}

describe('OpenFlowConnection: a connection lost during a call', () => {
  let sw: FakeOpenFlowSwitch;
  let c: OpenFlowConnection | undefined;

  beforeEach(async () => {
    sw = await FakeOpenFlowSwitch.start();
  });
  afterEach(async () => {
    c?.close();
    c = undefined;
    await sw.close();
  });

  const open = async () => (c = await OpenFlowConnection.connect({ target: sw.target, requestTimeoutMs: 10_000 }));

  it.each<FakeOpenFlowDrop>([{ step: 'hello' }, { step: 'features' }])('while dialling (at $step): lost, nothing applied', async (drop) => {
    sw.dropAt(drop);
    const e = await lost(OpenFlowConnection.connect({ target: sw.target }));
    expect(e.mayHaveApplied).toBe(false);
    expect(e.message).toContain(sw.target);
  });

  it('a read (flow stats, aggregate): lost, nothing applied; the next call dials again and is answered', async () => {
    await open();
    sw.dropAt({ step: 'multipart' });
    const e = await lost(c!.dumpFlows({}, 'read the flows of br0'));
    expect(e.mayHaveApplied).toBe(false);
    expect(e.message).toMatch(
      /^read the flows of br0: the connection to ovs-vswitchd at .* was lost \(closed by ovs-vswitchd\) before the request was applied$/,
    );
    expect(await c!.dumpFlows()).toEqual([]);
    sw.dropAt({ step: 'multipart', when: 'after' });
    expect((await lost(c!.aggregate())).mayHaveApplied).toBe(false);
    expect((await c!.aggregate()).flowCount).toBe(0);
    expect(sw.connections).toBe(3);
  });

  it.each<[string, FakeOpenFlowDrop]>([
    ['the bundle is opened', { step: 'bundle-open' }],
    ['its flow-mods are added', { step: 'bundle-add', nth: 2 }],
    ['the switch answers its barrier', { step: 'barrier', when: 'after' }],
  ])('a bundle lost before its commit (when %s): nothing applied, and nothing was', async (_when, drop) => {
    await open();
    sw.dropAt(drop);
    const e = await lost(c!.bundle(MODS, 'add the flows'));
    expect(e.mayHaveApplied).toBe(false);
    expect(sw.stepsOn(1)).not.toContain('bundle-commit');
    expect(sw.flowModsApplied).toBe(0);
    // A new connection for the next bundle, which is applied.
    await c!.bundle(MODS);
    expect([sw.connections, sw.bundlesCommitted, sw.flowModsApplied]).toEqual([2, 1, MODS.length]);
  });

  it.each<['before' | 'after', number]>([
    ['before', 0],
    ['after', MODS.length],
  ])('a bundle lost once its commit was written (switch dropped %s committing): may have applied', async (when, applied) => {
    await open();
    sw.dropAt({ step: 'bundle-commit', when });
    const e = await lost(c!.bundle(MODS, 'add the flows'));
    expect(e.mayHaveApplied).toBe(true);
    expect(e.message).toMatch(
      /^add the flows: the connection .* was lost \(closed by ovs-vswitchd\) after the request was sent \(it may have been applied\)$/,
    );
    expect(sw.flowModsApplied).toBe(applied);
  });

  it('flow-mods outside a bundle lost once written: may have applied', async () => {
    await open();
    sw.dropAt({ step: 'flow-mod', nth: 2 });
    expect((await lost(c!.flowMods(MODS))).mayHaveApplied).toBe(true);
    expect(sw.flowModsApplied).toBe(1);
  });

  it('packet-outs lost once written: may have applied (the packet went out)', async () => {
    await open();
    sw.dropAt({ step: 'packet-out', when: 'after' });
    expect((await lost(c!.packetOuts([PACKET]))).mayHaveApplied).toBe(true);
    expect(sw.packetOutsSent).toBe(1);
  });

  it('packet-outs on a connection lost while dialling for them: nothing applied', async () => {
    await open();
    sw.dropAll();
    await waitFor(() => !c!.connected);
    sw.dropAt({ step: 'features' });
    expect((await lost(c!.packetOuts([PACKET]))).mayHaveApplied).toBe(false);
    expect(sw.packetOutsSent).toBe(0);
  });

  it('a connection dropped between calls: the next call dials again, and the owner hears of it', async () => {
    await open();
    const events: string[] = [];
    c!.on('disconnected', () => events.push('disconnected'));
    c!.on('reconnected', () => events.push('reconnected'));
    sw.dropAll();
    await waitFor(() => !c!.connected);
    await c!.bundle(MODS);
    await c!.echo();
    expect(events).toEqual(['disconnected', 'reconnected']);
    expect([sw.connections, sw.bundlesCommitted]).toEqual([2, 1]);
  });

  it('close() is not a loss: the call fails UNAVAILABLE without a loss to classify', async () => {
    await open();
    sw.dropAt({ step: 'multipart', when: 'after' });
    const pending = c!.dumpFlows();
    c!.close();
    const e = await pending.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(UnavailableError);
    expect(e).not.toBeInstanceOf(OpenFlowConnectionLostError);
  });
});

/** Polls `ok` (the client notices a drop on its socket's close event). */
async function waitFor(ok: () => boolean): Promise<void> {
  while (!ok()) await new Promise((resolve) => setTimeout(resolve, 5));
}
