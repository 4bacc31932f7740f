/**
 * The local copy of monitored tables: rows by UUID, kept current by monitor_cond's update2 notifications
 * (RFC 7047 as extended by OVS: `initial`/`insert` carry the row, `modify` a diff, `delete` nothing), with
 * a 'change' event per row and `waitFor` to wait until the replica satisfies a condition.
 */
import { EventEmitter } from 'node:events';
import { UnavailableError } from '@nodenet/core';
import type { Condition } from './operations.js';
import type { ColumnKinds } from './schema.js';
import type { OvsdbAtom, OvsdbRow, OvsdbValue } from './values.js';

/** Per table: the columns to follow (all if omitted) and optional conditions (monitor_cond `where`). */
export type MonitorRequests = Readonly<Record<string, { readonly columns?: readonly string[]; readonly where?: readonly Condition[] }>>;

type RowUpdate2 = { initial?: OvsdbRow; insert?: OvsdbRow; modify?: OvsdbRow; delete?: null };
export type TableUpdates2 = Record<string, Record<string, RowUpdate2>>;

export interface ReplicaEvents {
  /** A row changed: `old` undefined for an insert, `row` undefined for a delete. */
  change: [table: string, uuid: string, row: OvsdbRow | undefined, old: OvsdbRow | undefined];
  /** The replica was rebuilt from the server's rows (first monitor, or after a reconnection). */
  reset: [];
}

export class MonitorReplica extends EventEmitter<ReplicaEvents> {
  private readonly tables = new Map<string, Map<string, OvsdbRow>>();

  constructor(
    readonly id: string,
    private readonly monitored: MonitorRequests,
    private readonly kinds: ColumnKinds,
    private readonly onCancel: (r: MonitorReplica) => Promise<void>,
  ) {
    super();
    for (const t of Object.keys(monitored)) this.tables.set(t, new Map());
  }

  /** The rows of a table by UUID (empty for a table not monitored). */
  rows(table: string): ReadonlyMap<string, OvsdbRow> {
    return this.tables.get(table) ?? new Map();
  }

  /** The first row of `table` whose `column` equals `value`. */
  find(table: string, column: string, value: OvsdbAtom): [string, OvsdbRow] | undefined {
    for (const entry of this.rows(table)) if (entry[1][column] === value) return entry;
    return undefined;
  }

  /**
   * Resolves once `predicate` holds over the replica (checked now and after every change), or rejects
   * after `timeoutMs` with UnavailableError saying what was awaited.
   */
  waitFor<T>(predicate: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
    const now = predicate();
    if (now !== undefined && now !== false) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = predicate();
        if (v !== undefined && v !== false) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new UnavailableError(`${what}: not seen within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('change', check);
        this.off('reset', check);
      };
      this.on('change', check);
      this.on('reset', check);
    });
  }

  /** Stops monitoring (the replica keeps its last rows). */
  cancel(): Promise<void> {
    return this.onCancel(this);
  }

  /** The `monitor-cond-requests` argument of monitor_cond. */
  requests(): Record<string, { columns?: string[]; where?: Condition[] }> {
    return Object.fromEntries(
      Object.entries(this.monitored).map(([t, r]) => [
        t,
        { ...(r.columns ? { columns: [...r.columns] } : {}), ...(r.where ? { where: [...r.where] } : {}) },
      ]),
    );
  }

  /** Replaces the contents with a monitor_cond reply's initial rows. */
  reset(initial: TableUpdates2): void {
    for (const rows of this.tables.values()) rows.clear();
    this.apply(initial, false);
    this.emit('reset');
  }

  /** Applies an update2 notification. */
  apply(updates: TableUpdates2, announce = true): void {
    for (const [table, rowUpdates] of Object.entries(updates ?? {})) {
      let rows = this.tables.get(table);
      if (!rows) this.tables.set(table, (rows = new Map<string, OvsdbRow>()));
      for (const [uuid, u] of Object.entries(rowUpdates)) {
        const old = rows.get(uuid);
        let row: OvsdbRow | undefined;
        if (u.initial || u.insert) row = { ...(u.initial ?? u.insert) };
        else if (u.modify) row = this.patched(table, old ?? {}, u.modify);
        else if ('delete' in u) row = undefined;
        else continue;
        if (row) rows.set(uuid, row);
        else rows.delete(uuid);
        if (announce) this.emit('change', table, uuid, row, old);
      }
    }
  }

  private patched(table: string, old: OvsdbRow, diff: OvsdbRow): OvsdbRow {
    const row = { ...old };
    for (const [column, d] of Object.entries(diff)) {
      const kind = this.kinds.of(table, column);
      row[column] = kind === 'set' ? toggled(old[column], d) : kind === 'map' ? mapPatched(old[column], d) : d;
    }
    return row;
  }
}

const key = (a: unknown) => JSON.stringify(a);

function elements(v: OvsdbValue | undefined): OvsdbAtom[] {
  if (Array.isArray(v) && v[0] === 'set') return v[1];
  return v === undefined ? [] : [v as OvsdbAtom];
}

/** A set diff: elements present in both are removed, the others added. */
function toggled(old: OvsdbValue | undefined, diff: OvsdbValue): OvsdbValue {
  const out = new Map(elements(old).map((a) => [key(a), a]));
  for (const a of elements(diff)) {
    if (out.has(key(a))) out.delete(key(a));
    else out.set(key(a), a);
  }
  const atoms = [...out.values()];
  return atoms.length === 1 ? atoms[0]! : ['set', atoms];
}

/** A map diff: a pair whose key is absent is added; present with the same value, removed; else replaced. */
function mapPatched(old: OvsdbValue | undefined, diff: OvsdbValue): OvsdbValue {
  const pairs = (v: OvsdbValue | undefined) => (Array.isArray(v) && v[0] === 'map' ? (v[1] as [OvsdbAtom, OvsdbAtom][]) : []);
  const out = new Map(pairs(old).map(([k, v]) => [key(k), [k, v] as [OvsdbAtom, OvsdbAtom]]));
  for (const [k, v] of pairs(diff)) {
    const had = out.get(key(k));
    if (had && key(had[1]) === key(v)) out.delete(key(k));
    else out.set(key(k), [k, v]);
  }
  return ['map', [...out.values()]];
}
