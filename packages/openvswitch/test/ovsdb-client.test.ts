/**
 * The OVSDB session's JSON-RPC handling against a scripted peer on a unix socket (the real server is in
 * ovsdb.int.test.ts): replies matched to requests by id whatever their order, the peer's echo answered,
 * a JSON-RPC error and a transaction error reported with OVSDB's words, and a request in flight when the
 * connection drops failing as UNAVAILABLE naming the socket.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JsonObjectSplitter, OvsdbClient, OvsdbRpcError, OvsdbTransactionError } from '../src/index.js';

interface Request {
  readonly id: unknown;
  readonly method: string;
  readonly params: unknown[];
  readonly result?: unknown;
}

/** A peer that answers get_schema itself and hands every other message to the test. */
class ScriptedPeer {
  readonly messages: Request[] = [];
  socket: Socket | undefined;
  private waiters: Array<() => void> = [];

  constructor(readonly server: Server) {
    server.on('connection', (s) => {
      this.socket = s;
      const splitter = new JsonObjectSplitter();
      s.on('data', (chunk) => {
        for (const m of splitter.push(chunk) as Request[]) {
          if (m.method === 'get_schema') this.send({ id: m.id, result: { name: 'Open_vSwitch', tables: {} }, error: null });
          else {
            this.messages.push(m);
            for (const w of this.waiters.splice(0)) w();
          }
        }
      });
    });
  }

  send(m: unknown): void {
    this.socket!.write(JSON.stringify(m));
  }

  async next(count: number): Promise<Request[]> {
    while (this.messages.length < count) await new Promise<void>((r) => this.waiters.push(r));
    return this.messages.splice(0, count);
  }
}

describe('OvsdbClient JSON-RPC', () => {
  let dir: string;
  let peer: ScriptedPeer;
  let client: OvsdbClient;
  let remote: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nodenet-ovsdb-'));
    const path = join(dir, 'db.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    peer = new ScriptedPeer(server);
    remote = `unix:${path}`;
    client = await OvsdbClient.connect({ remote, echoIntervalMs: 0, backoff: { initialMs: 10_000, maxMs: 10_000 } });
  });
  afterEach(async () => {
    client.close();
    peer.socket?.destroy();
    await new Promise<void>((r) => peer.server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('matches replies to requests by id, in whatever order they come', async () => {
    const a = client.request('list_dbs', []);
    const b = client.request('list_dbs', []);
    const [ra, rb] = await peer.next(2);
    peer.send({ id: rb!.id, result: ['second'], error: null });
    peer.send({ id: ra!.id, result: ['first'], error: null });
    expect(await a).toEqual(['first']);
    expect(await b).toEqual(['second']);
  });

  it("answers the peer's echo with its own params", async () => {
    peer.send({ id: 'echo-1', method: 'echo', params: ['ping', 7] });
    const [reply] = await peer.next(1);
    expect(reply).toEqual({ id: 'echo-1', result: ['ping', 7], error: null });
  });

  it("reports a JSON-RPC error and a failed operation with OVSDB's error and details", async () => {
    const rpc = client.request('transact', ['Nope']);
    const [r1] = await peer.next(1);
    peer.send({ id: r1!.id, result: null, error: { error: 'unknown database', details: 'Nope is not a database' } });
    await expect(rpc).rejects.toThrow(OvsdbRpcError);
    await expect(rpc).rejects.toThrow(/unknown database: Nope is not a database/);

    const tx = client.transact([{ op: 'delete', table: 'Bridge', where: [['name', '==', 'x']] }], 'delete x');
    const [r2] = await peer.next(1);
    expect(r2!.params).toEqual(['Open_vSwitch', { op: 'delete', table: 'Bridge', where: [['name', '==', 'x']] }]);
    peer.send({ id: r2!.id, result: [{ error: 'referential integrity violation', details: 'cannot delete Bridge row' }], error: null });
    const e = (await tx.catch((x: unknown) => x)) as OvsdbTransactionError;
    expect(e).toBeInstanceOf(OvsdbTransactionError);
    expect(e.operationIndex).toBe(0);
    expect(e.message).toBe(
      `delete x: OVSDB at ${remote} refused the transaction: operation 0 (delete Bridge) failed with "referential integrity violation": cannot delete Bridge row`,
    );
  });

  it('a request in flight when the connection drops fails UNAVAILABLE, naming the socket', async () => {
    const pending = client.request('list_dbs', []);
    await peer.next(1);
    peer.socket!.destroy();
    const e = (await pending.catch((x: unknown) => x)) as { code: string; message: string };
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.message).toContain(remote);
    expect(e.message).toContain('list_dbs in flight');
  });
});
