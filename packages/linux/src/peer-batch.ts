/**
 * A set of peers' kernel lines as one `ip -force -batch` (or `bridge -force -batch`) process: the lines of
 * every peer in one script, each failure mapped back to the peer whose line it was. One process per batch
 * instead of one per peer (measured: ~5.5 ms per peer one at a time, the kernel's rate in one batch).
 */
import { allFailed, NO_FAILURES, type NodeRecord, type PeerBatchResult } from '@nodenet/core';
import type { IpBatchFailure, IpLine, IpRunner } from './ip-batch.js';
import { unexpectedFailure } from './link-failures.js';

/** One peer's part of a batch. */
export interface PeerLines {
  readonly peer: NodeRecord;
  readonly lines: readonly IpLine[];
}

/** Builds the error of a line that failed (the caller knows what a missing device means for it). */
export type ExplainLineFailure = (failure: IpBatchFailure, line: IpLine | undefined, step: string) => Error;

/**
 * Runs every peer's lines in one `-force` batch (every line runs) and reports the peers with a line that
 * failed other than a delete finding nothing (`deleteIds`). When the batch as a whole fails (ip could not
 * start, or stopped at a malformed line without naming it), every peer of it failed.
 */
export async function runPeerBatch(
  runner: IpRunner,
  parts: readonly PeerLines[],
  step: string,
  deleteIds: ReadonlySet<string>,
  explain: ExplainLineFailure,
): Promise<PeerBatchResult> {
  const lines: IpLine[] = [];
  const owners: string[] = [];
  for (const part of parts) {
    for (const line of part.lines) {
      lines.push(line);
      owners.push(part.peer.name);
    }
  }
  if (lines.length === 0) return NO_FAILURES;
  let failures: IpBatchFailure[];
  try {
    failures = await runner.batch(lines, { step, force: true });
  } catch (e) {
    return allFailed(
      parts.map((p) => p.peer),
      e,
    );
  }
  const failed = new Map<string, Error>();
  for (const failure of failures) {
    const unexpected = unexpectedFailure([failure], lines, deleteIds);
    if (!unexpected) continue;
    const owner = failure.line === undefined ? undefined : owners[failure.line - 1];
    if (owner === undefined)
      return allFailed(
        parts.map((p) => p.peer),
        explain(failure, unexpected.line, step),
      );
    if (!failed.has(owner)) failed.set(owner, explain(failure, unexpected.line, step));
  }
  return { failed };
}

/**
 * For removal batches: `neigh flush to ADDR` dumps the device's whole neighbour table for every line
 * (measured: ~14 ms a line at 1,000 entries against ~4 ms for `neigh del`, loaded machine), but a
 * `neigh del` that finds nothing ends the whole `ip -batch`, -force or not. So the table is read once and
 * each flush line (id `flushLineId`) becomes a `neigh del` of an entry that is there, or goes. An entry
 * removed by someone else in between fails the batch as a whole: every peer is reported and retried.
 */
export async function withNeighbourDeletes(
  runner: IpRunner,
  dev: string,
  parts: readonly PeerLines[],
  flushLineId: string,
): Promise<PeerLines[]> {
  const json = await runner.json(['neigh', 'show', 'dev', dev], `list the neighbour entries on ${dev}`);
  if (!Array.isArray(json)) return [...parts];
  const present = new Set(json.flatMap((n) => (typeof (n as { dst?: unknown }).dst === 'string' ? [(n as { dst: string }).dst] : [])));
  return parts.map(({ peer, lines }) => ({
    peer,
    lines: lines.flatMap((line) => {
      if (line.id !== flushLineId) return [line];
      const address = line.args[line.args.indexOf('to') + 1];
      if (address === undefined || !present.has(address)) return [];
      present.delete(address); // deleted once, even if two peers named it
      return [{ ...line, args: ['neigh', 'del', address, 'dev', dev] }];
    }),
  }));
}
