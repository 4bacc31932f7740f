/**
 * The schema version of the state records. Every record file is an envelope `{ version, kind, record }`;
 * `version` is the format of `record`. Rules (README, "Upgrades and rollback"):
 *
 * - A build writes RECORD_FORMAT_VERSION and reads every version from OLDEST_READABLE_FORMAT up to it: a
 *   record of an older format is upgraded in memory by the steps in UPGRADES (and written in the current
 *   format the next time it is saved), so an upgrade of nodenet never needs a migration run.
 * - A record of a NEWER format than the build knows is refused, naming the file: an older nodenet cannot
 *   know what a newer one recorded, and guessing could delete what it made. The daemon stops before it
 *   changes anything; the fix is to run a nodenet that reads that format (upgrade it).
 * - A change that an older build could read wrongly (a field renamed, a meaning changed) raises the version
 *   and adds an upgrade step; a new optional field that older builds may ignore does not.
 */
import { FailedPreconditionError } from '@nodenet/core';

/**
 * The newest format this build writes. Version 1: the records of nodenet 0.1 (fixture: test/fixtures/state-v1).
 * Version 2: an instance's published port may carry `hostAddress` (published on that one node address only).
 * A build that reads only format 1 would ignore it and publish the port on every address, so a record with
 * one is format 2 (refused by such a build); a record without one is still written as format 1 (see
 * recordFormatOf), so a rollback stays possible on nodes that publish no port on one address.
 * Version 3: that `hostAddress` may be IPv6 (the port then goes to the instance's IPv6 address only; the
 * family is the address's). A format-2 build would refuse the record as a bad address rather than as newer,
 * so a record with one is format 3; records without one keep the lowest format that holds them.
 */
export const RECORD_FORMAT_VERSION = 3;

/** The oldest format this build reads. */
export const OLDEST_READABLE_FORMAT = 1;

/**
 * Upgrade steps: UPGRADES[v] turns a `kind` record of format v into format v + 1. Each entry is pure (an
 * object in, an object out); the parsers in records.ts then check the result like any current record.
 */
export const UPGRADES: Readonly<Record<number, (kind: string, record: unknown) => unknown>> = {
  // Format 1 is format 2 without host addresses: every port on every address, which is what no hostAddress means.
  1: (_kind, record) => record,
  // Format 2 is format 3 with IPv4 host addresses only.
  2: (_kind, record) => record,
};

/**
 * The oldest format that holds `record` as it is: for an instance with a port on one host address, 3 when
 * one such address is IPv6, else 2; any other record 1.
 */
export function recordFormatOf(kind: string, record: unknown): number {
  const ports = kind === 'instance' && typeof record === 'object' && record !== null ? (record as { ports?: unknown }).ports : undefined;
  const hostAddresses = (Array.isArray(ports) ? ports : []).flatMap((p: unknown) =>
    typeof p === 'object' && p !== null && 'hostAddress' in p ? [String(p.hostAddress)] : [],
  );
  if (hostAddresses.some((a) => a.includes(':'))) return 3;
  return hostAddresses.length > 0 ? 2 : 1;
}

/** A record nodenet cannot read because of its format version: the daemon stops and changes nothing. */
export class RecordFormatError extends FailedPreconditionError {
  constructor(
    readonly file: string,
    readonly version: unknown,
  ) {
    super(describeVersionProblem(file, version));
  }
}

function describeVersionProblem(file: string, version: unknown): string {
  // Widened: the two are equal today, which would make the range branch `never` to the type checker.
  const oldest: number = OLDEST_READABLE_FORMAT;
  const newest: number = RECORD_FORMAT_VERSION;
  const readable = oldest === newest ? `${newest}` : `${oldest} to ${newest}`;
  if (typeof version === 'number' && Number.isInteger(version) && version > RECORD_FORMAT_VERSION) {
    return (
      `state file ${file} has record format version ${version}, written by a newer nodenet; this nodenet reads format ${readable}. ` +
      `Upgrade nodenet to the version that wrote it (or newer) and start that; nothing on this node was changed`
    );
  }
  if (typeof version === 'number' && Number.isInteger(version) && version >= 1 && version < OLDEST_READABLE_FORMAT) {
    return (
      `state file ${file} has record format version ${version}, older than this nodenet reads (format ${readable}). ` +
      `Start an intermediate nodenet release once (it rewrites the records it saves), then this one; nothing on this node was changed`
    );
  }
  return `state file ${file} has no valid record format version (got ${JSON.stringify(version) ?? String(version)}; this nodenet reads format ${readable}): restore the file from a backup`;
}

/** Brings a record of a readable format up to RECORD_FORMAT_VERSION; throws RecordFormatError otherwise. */
export function upgradeRecord(file: string, kind: string, version: unknown, record: unknown): unknown {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < OLDEST_READABLE_FORMAT || version > RECORD_FORMAT_VERSION) {
    throw new RecordFormatError(file, version);
  }
  let current = record;
  for (let v = version; v < RECORD_FORMAT_VERSION; v++) {
    const step = UPGRADES[v];
    if (!step) throw new Error(`no upgrade from record format ${v} to ${v + 1}: this build is inconsistent`);
    current = step(kind, current);
  }
  return current;
}
