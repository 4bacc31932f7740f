/**
 * OVSDB transaction operations (RFC 7047 section 5.2) as typed objects, and the errors a transaction
 * reports: one result per operation, an `error` member on the one that failed, and possibly one result
 * more than operations when the commit itself failed (e.g. a referential integrity or constraint violation).
 */
import { InternalError } from '@nodenet/core';
import type { OvsdbRow, OvsdbValue } from './values.js';

export type ConditionFunction = '<' | '<=' | '==' | '!=' | '>=' | '>' | 'includes' | 'excludes';
export type Condition = [column: string, fn: ConditionFunction, value: OvsdbValue];
export type Mutator = '+=' | '-=' | '*=' | '/=' | '%=' | 'insert' | 'delete';
export type Mutation = [column: string, mutator: Mutator, value: OvsdbValue];

export type Operation =
  | { op: 'insert'; table: string; row: OvsdbRow; 'uuid-name'?: string }
  | { op: 'select'; table: string; where: Condition[]; columns?: string[] }
  | { op: 'update'; table: string; where: Condition[]; row: OvsdbRow }
  | { op: 'mutate'; table: string; where: Condition[]; mutations: Mutation[] }
  | { op: 'delete'; table: string; where: Condition[] }
  | { op: 'wait'; table: string; where: Condition[]; columns: string[]; until: '==' | '!='; rows: OvsdbRow[]; timeout?: number }
  | { op: 'comment'; comment: string }
  | { op: 'assert'; lock: string };

export interface OperationResult {
  /** insert: the new row's UUID (`["uuid", U]`). */
  readonly uuid?: OvsdbValue;
  /** update, mutate, delete: rows matched. */
  readonly count?: number;
  /** select: the rows. */
  readonly rows?: OvsdbRow[];
  readonly error?: string;
  readonly details?: string;
}

/** A transaction OVSDB refused: which operation, OVSDB's error and its details. */
export class OvsdbTransactionError extends InternalError {
  constructor(
    step: string,
    readonly remote: string,
    /** OVSDB's error string (e.g. `constraint violation`, `referential integrity violation`, `timed out`). */
    readonly error: string,
    readonly details: string | undefined,
    /** The index of the failed operation, or undefined when the commit failed. */
    readonly operationIndex: number | undefined,
    readonly operation: Operation | undefined,
  ) {
    const which = operation === undefined ? 'the commit' : `operation ${operationIndex} (${describe(operation)})`;
    super(step, `OVSDB at ${remote} refused the transaction: ${which} failed with "${error}"${details ? `: ${details}` : ''}`);
  }
}

function describe(op: Operation): string {
  return op.op === 'comment' ? 'comment' : op.op === 'assert' ? `assert ${op.lock}` : `${op.op} ${op.table}`;
}

/** The first error a transaction's results hold, as an exception (undefined if it succeeded). */
export function transactionError(
  step: string,
  remote: string,
  ops: readonly Operation[],
  results: readonly (OperationResult | null)[],
): OvsdbTransactionError | undefined {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (r && typeof r.error === 'string') {
      // OVSDB reports the failed operation, then "aborted" for operations after it: the first error names it.
      return new OvsdbTransactionError(step, remote, r.error, r.details, i < ops.length ? i : undefined, ops[i]);
    }
  }
  return undefined;
}

/** `["_uuid", "==", ["uuid", U]]`. */
export function whereUuid(u: string): Condition[] {
  return [['_uuid', '==', ['uuid', u]]];
}

/** `["name", "==", NAME]`. */
export function whereName(name: string): Condition[] {
  return [['name', '==', name]];
}
