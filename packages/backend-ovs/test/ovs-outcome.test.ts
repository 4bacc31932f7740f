/**
 * Failed requests to Open vSwitch count as failed commands (tools `ovsdb`, `openflow`): the ovs session's
 * OVSDB transactions and OpenFlow requests report their outcome to sys's observers, against fake switches
 * (unix sockets in a temp dir): none listening, one that never answers, one that answers with an error.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '@nodenet/core';
import { JsonObjectSplitter, OpenFlowError, OvsdbRpcError, OvsdbTransactionError, VswitchTimeoutError } from '@nodenet/openvswitch';
import { observeCommands, type CommandEvent } from '@nodenet/sys';
import { ovsFailureOutcome } from '../src/ovs-outcome.js';
import { OvsSession } from '../src/ovs-session.js';

let dir: string;
const servers: Server[] = [];
const sockets: Socket[] = [];
const sessions: OvsSession[] = [];
let events: CommandEvent[] = [];
let unobserve: () => void;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nn-ovs-outcome-'));
  unobserve = observeCommands((e) => void events.push(e));
});
afterEach(() => {
  for (const s of sessions.splice(0)) s.close();
  for (const s of sockets.splice(0)) s.destroy();
  events = [];
});
afterAll(async () => {
  unobserve();
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  await rm(dir, { recursive: true, force: true });
});

/** A unix socket server at `name` in the temp dir; `onData` answers (or not). */
async function fakeServer(name: string, onData: (socket: Socket, chunk: Buffer) => void = () => undefined): Promise<string> {
  const path = join(dir, name);
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (chunk) => onData(socket, chunk));
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((listening) => server.listen(path, listening));
  return path;
}

function session(db: string, runDir = dir): OvsSession {
  const s = new OvsSession({ db, runDir, timeoutSeconds: 0.3 });
  sessions.push(s);
  return s;
}

const failures = () => events.filter((e) => e.outcome !== 'ok');

describe('failed requests to Open vSwitch as command outcomes', () => {
  it('OVSDB: nobody listening is session_exited', async () => {
    await expect(session(`unix:${join(dir, 'no-db.sock')}`).transact([], 'test', false)).rejects.toThrow(UnavailableError);
    expect(failures()).toEqual([{ tool: 'ovsdb', outcome: 'session_exited' }]);
  });

  it('OVSDB: no answer in time is timeout', async () => {
    const db = await fakeServer('silent-db.sock');
    await expect(session(`unix:${db}`).interfaceColumn('nnh-0000001a', 'ofport', 'test')).rejects.toThrow(/no reply/);
    expect(failures()).toEqual([{ tool: 'ovsdb', outcome: 'timeout' }]);
  });

  it('OVSDB: an error answer is error_output', async () => {
    const splitter = new JsonObjectSplitter();
    const db = await fakeServer('refusing-db.sock', (socket, chunk) => {
      for (const m of splitter.push(chunk) as { id?: unknown }[])
        if (m.id !== undefined && m.id !== null) socket.write(JSON.stringify({ id: m.id, result: null, error: 'refused by the test' }));
    });
    await expect(session(`unix:${db}`).portUuids(['nnh-0000001a'], 'test')).rejects.toThrow(/refused by the test/);
    expect(failures()).toEqual([{ tool: 'ovsdb', outcome: 'error_output' }]);
  });

  it('OpenFlow: no management socket is session_exited, a switch that never answers is timeout', async () => {
    const s = session(`unix:${join(dir, 'no-db.sock')}`);
    await expect(s.dumpFlows('nnnone0', {}, 'test')).rejects.toThrow(/cannot reach ovs-vswitchd/);
    await fakeServer('nnsilent0.mgmt');
    await expect(s.dumpFlows('nnsilent0', {}, 'test')).rejects.toThrow(/no reply/);
    expect(failures()).toEqual([
      { tool: 'openflow', outcome: 'session_exited' },
      { tool: 'openflow', outcome: 'timeout' },
    ]);
  });

  it('classifies refusals, timeouts and lost connections', () => {
    expect(ovsFailureOutcome(new OpenFlowError('test', 'unix:x', 1, 5, 0))).toBe('error_output');
    expect(ovsFailureOutcome(new OvsdbTransactionError('test', 'unix:x', 'constraint violation', undefined, 0, undefined))).toBe(
      'error_output',
    );
    expect(ovsFailureOutcome(new OvsdbRpcError('transact', 'unix:x', 'no such database'))).toBe('error_output');
    expect(ovsFailureOutcome(new VswitchTimeoutError('test', 'unix:x', 1000))).toBe('timeout');
    expect(ovsFailureOutcome(new UnavailableError('OVSDB: the connection to unix:x was lost'))).toBe('session_exited');
  });
});
