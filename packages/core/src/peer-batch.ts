/**
 * Peers in batches: an overlay programs or removes a set of peers in one go (one `ip -batch`, one OpenFlow
 * bundle) and says which of them failed. A peer that failed is not programmed (its entries may be partly
 * there: `replace` lines converge them on the retry), and PeerSync retries it with the next change or resync.
 */
import type { NodeRecord } from './cluster.js';

/** What a batch did: the peers that failed, by name, each with its own error. Every other peer is done. */
export interface PeerBatchResult {
  readonly failed: ReadonlyMap<string, Error>;
}

export const NO_FAILURES: PeerBatchResult = { failed: new Map() };

/** Every peer of the batch failed with the same error (the batch as a whole could not run). */
export function allFailed(peers: readonly NodeRecord[], error: unknown): PeerBatchResult {
  const e = error instanceof Error ? error : new Error(String(error));
  return { failed: new Map(peers.map((p) => [p.name, e])) };
}

/** Two results as one (e.g. a batch's kernel part and its flow part): a peer failed if either says so. */
export function mergeBatchResults(...results: readonly PeerBatchResult[]): PeerBatchResult {
  const failed = new Map<string, Error>();
  for (const r of results) for (const [name, e] of r.failed) if (!failed.has(name)) failed.set(name, e);
  return { failed };
}

/** A single peer's outcome from a batch of one: throws its error. */
export function throwIfFailed(result: PeerBatchResult, peer: NodeRecord): void {
  const e = result.failed.get(peer.name);
  if (e) throw e;
}
