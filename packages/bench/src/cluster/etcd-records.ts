/**
 * Simulated nodes in etcd, written as nodenet writes its own: the key layout and record encoding of
 * @nodenet/membership-etcd/records, a node record and its subnet claim per node. Written through etcd's
 * JSON gateway over one kept-alive connection (the bench process cannot reach the fabric: the test kit's
 * proxy carries it into etcd's namespace), so a timed write costs a request, not a process. Unlike a real
 * node's, the records carry no lease (nothing renews them; they go when the bench deletes them).
 */
import { Agent, request } from 'node:http';
import { subnetsOfNode, type NodeRecord } from '@nodenet/core';
import { KeyLayout, encodeNodeRecord } from '@nodenet/membership-etcd/records';
import { proxyToNamespaceTcp, type EtcdServer, type TestScope } from '@nodenet/testkit';

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;

type TxnOp = { request_put: { key: string; value: string } } | { request_delete_range: { key: string } };

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** The puts of a node record and its claim (what EtcdMembership.announce writes, without the lease). */
export function recordPuts(keys: KeyLayout, peer: NodeRecord): TxnOp[] {
  return [
    { request_put: { key: b64(keys.nodeKey(peer.name)), value: b64(encodeNodeRecord(peer)) } },
    ...subnetsOfNode(peer).map((s) => ({ request_put: { key: b64(keys.claimKey(s)), value: b64(peer.name) } })),
  ];
}

/** Splits `ops` into transactions of at most MAX_TXN_OPS, keeping each node's ops (`perNode`) together. */
export function chunkOps<T>(ops: readonly T[], perNode: number): T[][] {
  const size = Math.floor(MAX_TXN_OPS / perNode) * perNode;
  const out: T[][] = [];
  for (let i = 0; i < ops.length; i += size) out.push(ops.slice(i, i + size));
  return out;
}

/** etcd's JSON gateway from the bench process: one connection, kept alive. */
export class EtcdGateway {
  private constructor(
    private readonly socketPath: string,
    private readonly agent: Agent,
  ) {}

  static async open(scope: TestScope, etcd: EtcdServer): Promise<EtcdGateway> {
    const proxy = await proxyToNamespaceTcp(scope, etcd.ns, etcd.address, etcd.clientPort);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    scope.defer('close the etcd gateway connection', () => agent.destroy());
    const gateway = new EtcdGateway(proxy.socketPath, agent);
    await gateway.post('/v3/kv/range', { key: Buffer.from('/').toString('base64') }); // connect now
    return gateway;
  }

  /** One transaction of unconditional operations. */
  async txn(success: readonly TxnOp[]): Promise<void> {
    if (success.length === 0) return;
    const reply = (await this.post('/v3/kv/txn', { success })) as { succeeded?: boolean; message?: string };
    if (reply.succeeded !== true) throw new Error(`etcd refused the transaction: ${JSON.stringify(reply).slice(0, 300)}`);
  }

  private post(path: string, body: unknown): Promise<unknown> {
    const data = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          agent: this.agent,
          method: 'POST',
          path,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
          timeout: 10_000,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            try {
              resolve(JSON.parse(text));
            } catch {
              reject(new Error(`etcd ${path} answered ${res.statusCode}: ${text.slice(0, 300)}`));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`etcd ${path}: no answer within 10 s`)));
      req.on('error', reject);
      req.end(data);
    });
  }
}

export class SimulatedNodes {
  readonly keys: KeyLayout;

  constructor(
    private readonly etcd: EtcdGateway,
    prefix: string,
  ) {
    this.keys = new KeyLayout(prefix);
  }

  /** Writes the peers' records and claims, MAX_TXN_OPS / 2 nodes per transaction. */
  async put(peers: readonly NodeRecord[]): Promise<void> {
    for (const ops of chunkOps(
      peers.flatMap((p) => recordPuts(this.keys, p)),
      2,
    ))
      await this.etcd.txn(ops);
  }

  /** Deletes the peers' node records in one transaction (at most MAX_TXN_OPS), then their claims. */
  async delete(peers: readonly NodeRecord[]): Promise<void> {
    if (peers.length > MAX_TXN_OPS) throw new Error(`one transaction deletes at most ${MAX_TXN_OPS} records, not ${peers.length}`);
    await this.etcd.txn(peers.map((p) => ({ request_delete_range: { key: b64(this.keys.nodeKey(p.name)) } })));
    await this.etcd.txn(peers.flatMap((p) => subnetsOfNode(p).map((s) => ({ request_delete_range: { key: b64(this.keys.claimKey(s)) } }))));
  }
}
