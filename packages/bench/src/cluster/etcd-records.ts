/**
 * Simulated nodes in etcd, written as nodenet writes its own: the key layout and record encoding of
 * @nodenet/membership-etcd/records, a node record and its subnet claim per node. Written through etcd's
 * JSON gateway with curl inside etcd's namespace (the bench process cannot reach the fabric). Unlike a
 * real node's, the records carry no lease (nothing renews them; they go when the bench deletes them).
 */
import type { NodeRecord } from '@nodenet/core';
import { KeyLayout, encodeNodeRecord } from '@nodenet/membership-etcd/records';
import { nsExec, type EtcdServer } from '@nodenet/testkit';

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;

type TxnOp = { request_put: { key: string; value: string } } | { request_delete_range: { key: string } };

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** The puts of a node record and its claim (what EtcdMembership.announce writes, without the lease). */
export function recordPuts(keys: KeyLayout, peer: NodeRecord): TxnOp[] {
  return [
    { request_put: { key: b64(keys.nodeKey(peer.name)), value: b64(encodeNodeRecord(peer)) } },
    { request_put: { key: b64(keys.claimKey(peer.subnet)), value: b64(peer.name) } },
  ];
}

/** Splits `ops` into transactions of at most MAX_TXN_OPS, keeping each node's ops (`perNode`) together. */
export function chunkOps<T>(ops: readonly T[], perNode: number): T[][] {
  const size = Math.floor(MAX_TXN_OPS / perNode) * perNode;
  const out: T[][] = [];
  for (let i = 0; i < ops.length; i += size) out.push(ops.slice(i, i + size));
  return out;
}

export class SimulatedNodes {
  readonly keys: KeyLayout;

  constructor(
    private readonly etcd: EtcdServer,
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
      await this.txn(ops);
  }

  /** Deletes the peers' node records in one transaction (at most MAX_TXN_OPS), then their claims. */
  async delete(peers: readonly NodeRecord[]): Promise<void> {
    if (peers.length > MAX_TXN_OPS) throw new Error(`one transaction deletes at most ${MAX_TXN_OPS} records, not ${peers.length}`);
    await this.txn(peers.map((p) => ({ request_delete_range: { key: b64(this.keys.nodeKey(p.name)) } })));
    await this.txn(peers.map((p) => ({ request_delete_range: { key: b64(this.keys.claimKey(p.subnet)) } })));
  }

  private async txn(success: TxnOp[]): Promise<void> {
    if (success.length === 0) return;
    const r = await nsExec(
      this.etcd.ns,
      'curl',
      ['-sS', '--max-time', '10', '-X', 'POST', `${this.etcd.url}/v3/kv/txn`, '--data-binary', '@-'],
      {
        input: JSON.stringify({ success }),
      },
    );
    const reply = JSON.parse(r.stdout) as { succeeded?: boolean; error?: string; message?: string };
    if (reply.succeeded !== true)
      throw new Error(`etcd refused the transaction: ${(reply.message ?? reply.error ?? r.stdout).slice(0, 300)}`);
  }
}
